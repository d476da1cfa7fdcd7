from django.urls import path
from django.views.generic import RedirectView

from backups.views import instances, records

app_name = "backups"

urlpatterns = [
    # The overview page (backups:overview) comes later; until then, the list.
    path("", RedirectView.as_view(pattern_name="backups:backup-list"), name="home"),
    path("backups/", records.BackupRecordListView.as_view(), name="backup-list"),
    path("instances/<str:instance_id>/", instances.InstanceDetailView.as_view(), name="instance-detail"),
]
