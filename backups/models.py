"""What we keep of the DCS fleet: instances, their backup records, the status
changes our syncs observed, and the sync runs themselves.

Nothing the API stops listing is deleted: it is marked ``gone_at`` and kept,
because the cloud drops automatic backups after 7 days and we keep history.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from backups.choices import BackupFormat, BackupStatus, BackupType, SyncOutcome


class DcsInstanceQuerySet(models.QuerySet):
    def present(self):
        return self.filter(gone_at__isnull=True)


class DcsInstance(models.Model):
    region = models.CharField(_("region"), max_length=64, db_index=True)
    project_id = models.CharField(_("project id"), max_length=64)
    instance_id = models.CharField(_("instance id"), max_length=64)
    name = models.CharField(_("name"), max_length=255, blank=True)
    engine = models.CharField(_("engine"), max_length=32, blank=True)
    engine_version = models.CharField(_("engine version"), max_length=32, blank=True)
    status = models.CharField(_("status"), max_length=32, blank=True)
    # Whole GB; sub-GB instances report 0 here and the real size in
    # capacity_minor, e.g. ".125".
    capacity = models.IntegerField(_("capacity (GB)"), null=True, blank=True)
    capacity_minor = models.CharField(_("capacity below 1 GB"), max_length=16, blank=True)
    spec_code = models.CharField(_("spec code"), max_length=128, blank=True)
    ip = models.CharField(_("IP addresses"), max_length=1024, blank=True)
    port = models.IntegerField(_("port"), null=True, blank=True)
    domain_name = models.CharField(_("domain name"), max_length=255, blank=True)
    az_codes = models.JSONField(_("availability zones"), default=list, blank=True)
    tags = models.JSONField(_("tags"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), null=True, blank=True)
    first_seen = models.DateTimeField(_("first seen"))
    last_seen = models.DateTimeField(_("last seen"))
    gone_at = models.DateTimeField(_("gone since"), null=True, blank=True)
    # When a complete listing of this instance's backups last succeeded.
    backups_synced_at = models.DateTimeField(_("backups last synced"), null=True, blank=True)
    raw = models.JSONField(_("raw JSON as last received"), default=dict)

    objects = DcsInstanceQuerySet.as_manager()

    class Meta:
        verbose_name = _("DCS instance")
        verbose_name_plural = _("DCS instances")
        ordering = ["name", "instance_id"]
        constraints = [
            models.UniqueConstraint(fields=["project_id", "instance_id"], name="uniq_instance_per_project"),
        ]

    def __str__(self) -> str:
        return self.name or self.instance_id

    @property
    def is_single_node(self) -> bool:
        """Single-node instances cannot be backed up (dcs-api.md §2.2)."""
        # redis.single.xu1.tiny.128, dcs.memcached.single_node, ...
        return any(part.startswith("single") for part in self.spec_code.lower().split("."))

    @property
    def capacity_display(self) -> str:
        if self.capacity:
            return f"{self.capacity} GB"
        if self.capacity_minor:
            minor = self.capacity_minor
            return f"{'0' if minor.startswith('.') else ''}{minor} GB"
        return ""


class BackupRecordQuerySet(models.QuerySet):
    def present(self):
        return self.filter(gone_at__isnull=True)

    def active(self):
        return self.filter(status__in=BackupStatus.active())

    def newest_first(self):
        return self.order_by("-created_at", "-id")


class BackupRecord(models.Model):
    """One BackupRecordResponse (dcs-api.md §1.3), with real types."""

    instance = models.ForeignKey(DcsInstance, on_delete=models.CASCADE, related_name="backups")
    backup_id = models.CharField(_("backup id"), max_length=64)
    backup_name = models.CharField(_("backup name"), max_length=255, blank=True)
    # Choices give label and colour; a value the API adds later is stored as
    # received, so these are not enforced at the database.
    backup_type = models.CharField(_("type"), max_length=32, blank=True, choices=BackupType.choices)
    status = models.CharField(_("status"), max_length=32, blank=True, choices=BackupStatus.choices)
    backup_format = models.CharField(_("format"), max_length=32, blank=True, choices=BackupFormat.choices)
    period = models.CharField(_("period"), max_length=255, blank=True)
    size = models.BigIntegerField(_("size (bytes)"), null=True, blank=True)
    progress = models.DecimalField(_("progress (%)"), max_digits=5, decimal_places=2, null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    remark = models.TextField(_("remark"), blank=True)
    is_support_restore = models.BooleanField(_("restorable"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), null=True, blank=True)
    # The API's name for the time the backup completed.
    updated_at = models.DateTimeField(_("finished"), null=True, blank=True)
    execution_at = models.DateTimeField(_("executed"), null=True, blank=True)
    first_seen = models.DateTimeField(_("first seen"))
    last_seen = models.DateTimeField(_("last seen"))
    gone_at = models.DateTimeField(_("gone since"), null=True, blank=True)
    raw = models.JSONField(_("raw JSON as last received"), default=dict)

    objects = BackupRecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("backup record")
        verbose_name_plural = _("backup records")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "backup_id"], name="uniq_backup_per_instance"),
            models.CheckConstraint(
                condition=Q(progress__isnull=True) | Q(progress__gte=0, progress__lte=100),
                name="backup_progress_0_to_100",
            ),
        ]
        indexes = [
            models.Index(fields=["instance", "-created_at", "-id"], name="backup_instance_created"),
            models.Index(fields=["-created_at", "-id"], name="backup_created"),
            models.Index(fields=["status"], name="backup_status"),
        ]

    def __str__(self) -> str:
        return self.backup_name or self.backup_id

    @property
    def is_active(self) -> bool:
        return self.status in BackupStatus.active()

    @property
    def duration(self):
        if self.created_at and self.updated_at and self.updated_at >= self.created_at:
            return self.updated_at - self.created_at
        return None


class BackupStatusChange(models.Model):
    """A change of a backup's status or progress, as one of our syncs saw it."""

    record = models.ForeignKey(BackupRecord, on_delete=models.CASCADE, related_name="status_changes")
    observed_at = models.DateTimeField(_("observed"))
    status = models.CharField(_("status"), max_length=32, blank=True, choices=BackupStatus.choices)
    progress = models.DecimalField(_("progress (%)"), max_digits=5, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["record", "observed_at", "id"]
        indexes = [models.Index(fields=["record", "observed_at"], name="status_change_record")]

    def __str__(self) -> str:
        return f"{self.status} {self.progress}% @ {self.observed_at:%Y-%m-%d %H:%M:%S}Z"


class SyncRun(models.Model):
    """One sync: of the whole fleet, or of a single instance."""

    scope = models.CharField(_("scope"), max_length=255)
    started_at = models.DateTimeField(_("started"), db_index=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=SyncOutcome.choices, default=SyncOutcome.RUNNING
    )
    instances_seen = models.IntegerField(_("instances"), default=0)
    instances_gone = models.IntegerField(_("instances gone"), default=0)
    records_new = models.IntegerField(_("new records"), default=0)
    records_updated = models.IntegerField(_("updated records"), default=0)
    records_gone = models.IntegerField(_("gone records"), default=0)
    api_calls = models.IntegerField(_("API calls"), default=0)
    errors = models.JSONField(_("errors"), default=list, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.scope} @ {self.started_at:%Y-%m-%d %H:%M:%S}Z"

    @property
    def duration(self):
        if self.finished_at:
            return self.finished_at - self.started_at
        return None
