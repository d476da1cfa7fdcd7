from django.urls import path

from backups import views

app_name = "backups"

urlpatterns = [
    path("backups/", views.BackupRecordListView.as_view(), name="backup-list"),
]
