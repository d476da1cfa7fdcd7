"""The Django admin over what the syncs keep: for looking, not for editing.

Everything here is written by the sync from the DCS API, and the next sync
would overwrite a hand edit or bring a deleted row back, so the admin adds and
changes nothing. Only the sync's own bookkeeping may be deleted: a lease (which
expires by itself anyway) and the heartbeat of a worker that is gone for good.

The ``raw`` JSON of instances and backups is left out: it is what the API
sent, and nothing says it never carries something an admin user should not
read; a backup's raw JSON is on its own page for those who need it.
"""

from __future__ import annotations

from django.contrib import admin

from backups.models import (
    AuditEvent,
    BackupRecord,
    BackupStatusChange,
    DcsInstance,
    SyncError,
    SyncLease,
    SyncRun,
    SyncRunItem,
    WorkerHeartbeat,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists, filters, searches and shows; never adds or changes (see the module's docstring)."""

    # Whether rows may be deleted, one at a time (see the module's docstring).
    deletable = False
    # No "select all, then delete" on data the sync owns.
    actions = None
    list_per_page = 50
    show_full_result_count = False  # a COUNT(*) of a large table on every page is not worth it

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.deletable and super().has_delete_permission(request, obj)


class SyncErrorInline(admin.TabularInline):
    model = SyncError
    fields = ("occurred_at", "scope", "error", "status", "error_code", "error_msg", "request_id")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


@admin.register(DcsInstance)
class DcsInstanceAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "instance_id",
        "region",
        "engine",
        "engine_version",
        "status",
        "spec_code",
        "backups_synced_at",
        "gone_at",
    )
    list_filter = ("region", "engine", "status", ("gone_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "instance_id", "project_id", "domain_name")
    exclude = ("raw",)
    ordering = ("name", "instance_id")


@admin.register(BackupRecord)
class BackupRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "backup_name",
        "backup_id",
        "instance",
        "status",
        "backup_type",
        "backup_format",
        "progress",
        "size",
        "created_at",
        "updated_at",
        "error_code",
        "gone_at",
    )
    list_filter = ("status", "backup_type", "backup_format", ("gone_at", admin.EmptyFieldListFilter))
    search_fields = ("backup_name", "backup_id", "instance__name", "instance__instance_id", "error_code")
    list_select_related = ("instance",)
    exclude = ("raw",)
    raw_id_fields = ("instance",)
    date_hierarchy = "created_at"


@admin.register(BackupStatusChange)
class BackupStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("record", "observed_at", "status", "progress")
    list_filter = ("status",)
    search_fields = ("record__backup_id", "record__backup_name")
    list_select_related = ("record",)
    raw_id_fields = ("record",)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "scope",
        "kind",
        "trigger",
        "requested_by",
        "outcome",
        "started_at",
        "finished_at",
        "instances_seen",
        "instances_failed",
        "records_new",
        "records_updated",
        "records_gone",
        "api_calls",
        "retries",
        "throttles",
        "error_count",
    )
    list_filter = ("outcome", "kind", "trigger")
    search_fields = ("scope", "task_id", "reason")
    list_select_related = ("requested_by",)
    raw_id_fields = ("requested_by", "instance")
    date_hierarchy = "started_at"
    inlines = (SyncErrorInline,)


@admin.register(SyncRunItem)
class SyncRunItemAdmin(ReadOnlyAdmin):
    list_display = (
        "run",
        "position",
        "instance",
        "state",
        "outcome",
        "records_new",
        "api_calls",
        "finished_at",
    )
    list_filter = ("state", "outcome")
    search_fields = ("instance__name", "instance__instance_id")
    list_select_related = ("run", "instance")
    raw_id_fields = ("run", "instance")


@admin.register(SyncError)
class SyncErrorAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "run", "scope", "error", "status", "error_code", "request_id")
    list_filter = ("error", "status")
    search_fields = ("scope", "error_code", "error_msg", "request_id")
    list_select_related = ("run",)
    raw_id_fields = ("run", "instance")


@admin.register(SyncLease)
class SyncLeaseAdmin(ReadOnlyAdmin):
    # A lease held by a worker that died expires by itself; deleting it frees
    # the scope at once.
    deletable = True
    list_display = ("name", "holder", "acquired_at", "renewed_at", "expires_at")
    search_fields = ("name", "holder")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    # The heartbeat of a worker that was retired for good.
    deletable = True
    list_display = ("hostname", "started_at", "last_seen", "stopped_at")
    search_fields = ("hostname",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    # The audit log is evidence: nobody edits or deletes it from here.
    list_display = ("at", "username", "action", "ip", "path")
    list_filter = ("action",)
    search_fields = ("username", "ip", "path")
    raw_id_fields = ("user",)
    date_hierarchy = "at"


# --- Alerts (backups.alerts): opened and resolved by the evaluation, shown on /alerts/ too.
from backups.models import Alert, AlertDelivery  # noqa: E402 - kept with its section


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    fields = ("sent_at", "event", "channel", "target", "ok", "error")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("opened_at", "kind", "instance", "summary", "resolved_at")
    list_filter = ("kind",)
    search_fields = ("summary", "key", "instance__instance_id", "instance__name")
    raw_id_fields = ("instance", "record")
    inlines = [AlertDeliveryInline]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("sent_at", "event", "channel", "target", "ok", "alert")
    list_filter = ("event", "channel", "ok")
    raw_id_fields = ("alert",)


# --- RPO policies (backups.rpo) ---------------------------------------------------

from backups.models import RpoPolicy  # noqa: E402 - kept with its section


@admin.register(RpoPolicy)
class RpoPolicyAdmin(admin.ModelAdmin):
    """Editable: saving or deleting one recomputes the fleet's RPOs (the receivers in backups.rpo)."""

    list_display = ("scope", "region", "tag_key", "tag_value", "instance", "max_age", "reason", "updated_at")
    list_filter = ("scope",)
    search_fields = ("region", "tag_key", "tag_value", "instance__instance_id", "instance__name", "reason")
    raw_id_fields = ("instance",)
    readonly_fields = ("created_by", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
