from django.urls import path
from django.views.generic import RedirectView

from backups import views

app_name = "backups"

urlpatterns = [
    # The overview page (backups:overview) comes later; until then, the list.
    path("", RedirectView.as_view(pattern_name="backups:backup-list"), name="home"),
    path("backups/", views.BackupRecordListView.as_view(), name="backup-list"),
    path("instances/<str:instance_id>/", views.InstanceDetailView.as_view(), name="instance-detail"),
]
