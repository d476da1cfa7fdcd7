from django.contrib import admin
from django.urls import include, path

from backups.views import ops

urlpatterns = [
    # For machines: no sign-in, outside the app's namespace, exempt from the HTTPS redirect.
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("", include("backups.urls")),
]

# A database that is down is a 503 that says so, not a 500 (dashboard.views).
handler500 = "dashboard.views.server_error"
