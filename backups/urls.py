from django.urls import path

from backups.views import alerts as alert_views
from backups.views import audit, instances, overview, preferences, records, sync
from backups.views import calendar as calendar_views
from backups.views import errors as error_views
from backups.views import incident as incident_views
from backups.views import notes as note_views
from backups.views import rpo as rpo_views

app_name = "backups"

urlpatterns = [
    path("preferences/timezone/", preferences.set_timezone, name="set-timezone"),
    path("preferences/language/", preferences.set_language, name="set-language"),
    path("", overview.OverviewView.as_view(), name="overview"),
    # base.html and older links say "home": the same page.
    path("", overview.OverviewView.as_view(), name="home"),
    path("backups/", records.BackupRecordListView.as_view(), name="backup-list"),
    path("backups/<str:backup_id>/", records.BackupRecordDetailView.as_view(), name="backup-detail"),
    path("backups/<str:backup_id>/notes/", note_views.BackupNoteCreateView.as_view(), name="backup-note"),
    path("instances/", instances.InstanceListView.as_view(), name="instance-list"),
    path("instances/<str:instance_id>/", instances.InstanceDetailView.as_view(), name="instance-detail"),
    path("instances/<str:instance_id>/sync/", sync.InstanceSyncNowView.as_view(), name="instance-sync-now"),
    path(
        "instances/<str:instance_id>/notes/",
        note_views.InstanceNoteCreateView.as_view(),
        name="instance-note",
    ),
    path("incident/", incident_views.IncidentView.as_view(), name="incident"),
    path("sync/", sync.SyncRunListView.as_view(), name="sync-list"),
    path("sync/now/", sync.SyncNowView.as_view(), name="sync-now"),
    path("sync/<int:pk>/", sync.SyncRunDetailView.as_view(), name="sync-detail"),
    path("audit/", audit.AuditEventListView.as_view(), name="audit-list"),
    path("alerts/", alert_views.AlertListView.as_view(), name="alert-list"),
    path("calendar/", calendar_views.CalendarView.as_view(), name="calendar"),
    path("errors/", error_views.ErrorCodesView.as_view(), name="error-codes"),
    path("rpo/", rpo_views.RpoPolicyListView.as_view(), name="rpo-list"),
    path("rpo/new/", rpo_views.RpoPolicyEditView.as_view(), name="rpo-create"),
    path("rpo/<int:pk>/", rpo_views.RpoPolicyEditView.as_view(), name="rpo-edit"),
    path("rpo/<int:pk>/delete/", rpo_views.RpoPolicyDeleteView.as_view(), name="rpo-delete"),
]
