"""What we keep of the DCS fleet: instances, their backup records, the status
changes our syncs observed, and the sync runs themselves (with their per-instance
items, their errors, the leases that keep two syncs of one thing apart, and the
workers' heartbeats).

Nothing the API stops listing is deleted: it is marked ``gone_at`` and kept,
because the cloud drops automatic backups after 7 days and we keep history.

``first_seen``/``last_seen`` of a record: when a sync first stored it, and the
last time a sync either saw it change or found it in a listing without a time
window (a full sync). Incremental syncs leave unchanged rows alone, so an
unchanged fleet costs no writes; ``last_seen`` of a present record is therefore
at most one full-sync interval old.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backups.choices import BackupFormat, BackupStatus, BackupType, RestoreStatus, SyncOutcome


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
    # When a listing of its backups last succeeded, as written on this row:
    # by a listing of all of them (a full sync, "Sync now"). Incremental
    # syncs list a recent window every few minutes and record that check on
    # their SyncRunItem (checked_at) instead, so an unchanged fleet costs no
    # write here. When the backups were last listed at all is the newer of
    # the two (backups.selectors.with_sync_staleness,
    # backups.sync.planning.latest_checks); the next incremental sync asks from
    # there, less an overlap.
    backups_checked_at = models.DateTimeField(_("backups last checked"), null=True, blank=True)
    # When a full sync or "Sync now" last listed the instance's restores; an
    # incremental sync lists them once they are due and records that on its
    # SyncRunItem (restores_checked_at), the same way.
    restores_checked_at = models.DateTimeField(_("restores last checked"), null=True, blank=True)
    raw = models.JSONField(_("raw JSON as last received"), default=dict)
    # A summary of the instance's backup records, kept current by database
    # triggers on every write to them (backups.summaries): the fleet pages
    # rank and filter thousands of instances by these without reading their
    # millions of records. The newest backup is the newest by created_at
    # (then id); records without a created_at are not counted as newest.
    last_backup_at = models.DateTimeField(_("last backup"), null=True, blank=True, editable=False)
    last_backup_status = models.CharField(
        _("last backup status"), max_length=32, blank=True, default="", editable=False
    )
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True, editable=False)
    # The RPO that applies (backups.rpo): the maximum age of the last success,
    # from the most specific RpoPolicy, else DASHBOARD_RPO_HOURS. Kept here,
    # recomputed when a policy or the instance's region or tags change, so the
    # fleet can be filtered and ranked by how far over it each instance is.
    rpo = models.DurationField(_("RPO"), null=True, blank=True, editable=False)
    rpo_source = models.CharField(_("RPO from"), max_length=255, blank=True, editable=False)

    objects = DcsInstanceQuerySet.as_manager()

    class Meta:
        verbose_name = _("DCS instance")
        verbose_name_plural = _("DCS instances")
        ordering = ["name", "instance_id"]
        constraints = [
            models.UniqueConstraint(fields=["project_id", "instance_id"], name="uniq_instance_per_project"),
        ]
        # The fleet table's sorts (DcsInstanceTable): read off an index, a
        # page's per-instance statistics are computed for its rows only.
        indexes = [
            models.Index(fields=["last_success_at", "id"], name="instance_last_success"),
            models.Index(fields=["last_backup_at", "id"], name="instance_last_backup"),
            models.Index(fields=["name", "instance_id", "id"], name="instance_name"),
            models.Index(fields=["region", "name", "instance_id"], name="instance_region"),
            models.Index(fields=["engine", "engine_version", "name"], name="instance_engine"),
            models.Index(fields=["status", "name", "instance_id"], name="instance_status"),
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


# finished_key of a backup without an end time. A literal the database
# reads as a time (PostgreSQL) or compares as text (SQLite, which stores
# times as "YYYY-MM-DD HH:MM:SS"); a datetime parameter cannot be part of a
# generated column's definition.
NEVER_FINISHED = "0001-01-01 00:00:00"


class BackupRecordQuerySet(models.QuerySet):
    def present(self):
        return self.filter(gone_at__isnull=True)

    def active(self):
        return self.filter(status__in=BackupStatus.active())

    def newest_first(self):
        return self.order_by("-created_at", "-id")


class BackupRecord(models.Model):
    """One BackupRecordResponse (dcs-api.md §1.3), with real types."""

    # No index of its own: (instance, backup_id) and (instance, created_at)
    # both start with it, and every index costs each write of a record.
    instance = models.ForeignKey(
        DcsInstance, on_delete=models.CASCADE, related_name="backups", db_index=False
    )
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
    # Anomalies (backups.anomalies): the size and the duration of a succeeded
    # backup against the median of the instance's recent succeeded backups,
    # as a ratio (0.55: 45 % smaller), and the flags they raised ("size",
    # "duration", or both, comma-separated; empty: nothing unusual).
    size_ratio = models.FloatField(_("size vs median"), null=True, blank=True, editable=False)
    duration_ratio = models.FloatField(_("duration vs median"), null=True, blank=True, editable=False)
    anomaly = models.CharField(
        _("anomaly"), max_length=32, blank=True, default="", db_default="", editable=False
    )
    # The sort keys of size and finished, computed by the database: an
    # unknown size or end (a backup still running) sorts below every known
    # one, and a key that is never null needs no NULLS FIRST/LAST, which
    # PostgreSQL and SQLite place differently and SQLite cannot index.
    size_key = models.GeneratedField(
        expression=Coalesce("size", Value(-1)), output_field=models.BigIntegerField(), db_persist=True
    )
    finished_key = models.GeneratedField(
        expression=Coalesce("updated_at", Value(NEVER_FINISHED), output_field=models.DateTimeField()),
        output_field=models.DateTimeField(),
        db_persist=True,
    )

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
        # One index behind every order the list offers (BackupRecordTable),
        # each ending in id so that a page boundary is one point to seek
        # from, and each serving both directions.
        indexes = [
            models.Index(fields=["instance", "-created_at", "-id"], name="backup_instance_created"),
            models.Index(fields=["-created_at", "-id"], name="backup_created"),
            # The status filter in the default order, and the status sort.
            models.Index(fields=["status", "-created_at", "-id"], name="backup_status_created"),
            models.Index(fields=["status", "id"], name="backup_status_id"),
            models.Index(fields=["size_key", "id"], name="backup_size_key"),
            models.Index(fields=["finished_key", "id"], name="backup_finished_key"),
            # The anomaly filter: few rows are flagged, so only they are indexed.
            models.Index(fields=["-created_at", "-id"], name="backup_anomalous", condition=~Q(anomaly="")),
            # The kept backups (succeeded, still listed) of each instance: the
            # fleet page sums their sizes off this index alone, not the ~1,000
            # rows of an instance, and finds an instance's last restorable
            # backup in order (selectors.instances_with_stats, backups.restores).
            models.Index(
                fields=["instance", "-created_at", "-id", "size"],
                name="backup_kept_size",
                condition=Q(status=BackupStatus.SUCCEED, gone_at__isnull=True),
            ),
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


class BackupHourlyCount(models.Model):
    """How many backup records were created in one hour, by status, per project.

    A summary table kept exact by database triggers on every insert, update
    and delete of a record (``backups.summaries``), whoever writes: the
    sync, the admin, a retention job. The overview counts a window from
    these rows (at most a few thousand) plus the records of its two
    partial hours, instead of counting millions of records on every view.
    Records without a created_at are counted in the hour ``NO_HOUR``, so the
    sum of every row is the number of records.
    """

    NO_HOUR = datetime(1, 1, 1, tzinfo=UTC)

    hour = models.DateTimeField(_("hour"))
    status = models.CharField(_("status"), max_length=32, blank=True, choices=BackupStatus.choices)
    region = models.CharField(_("region"), max_length=64)
    project_id = models.CharField(_("project id"), max_length=64)
    records = models.BigIntegerField(_("records"), default=0)

    class Meta:
        verbose_name = _("hourly backup count")
        verbose_name_plural = _("hourly backup counts")
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "status", "region", "project_id"], name="uniq_hourly_count"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00Z {self.status} {self.records}"


class SummaryBatch(models.Model):
    """A bulk insert of records open on SQLite, summarised once when it ends (``summaries.batched``).

    While a row is here, SQLite's insert trigger stands aside for the
    records with ids above ``after_id``, the others count nothing of them
    (should they be updated or deleted meanwhile), and the batch adds them
    to the summaries in two grouped statements when it ends. A row lives
    only inside the transaction that writes the batch: SQLite has one
    writer at a time and readers see committed data, so no other connection
    ever finds one. PostgreSQL summarises per statement already and never
    uses the table.
    """

    after_id = models.BigIntegerField(_("records after id"))

    class Meta:
        verbose_name = _("summary batch")
        verbose_name_plural = _("summary batches")

    def __str__(self) -> str:
        return f"records after {self.after_id}"


# --- Sync runs ------------------------------------------------------------------

# A run refused because another sync of the same scope holds the lease. Added
# here unless SyncOutcome already has it, so the field's choices stay the same
# either way.
SKIPPED = "skipped"
RUN_OUTCOMES = [*SyncOutcome.choices]
if SKIPPED not in SyncOutcome.values:
    RUN_OUTCOMES.append((SKIPPED, _("Skipped")))


class RestoreRecord(models.Model):
    """A restore of an instance from one of its backups (ListRestoreRecords).

    Kept for good like the backups: a restore the API stops listing is
    marked ``gone_at``. ``backup_id`` is the backup it restored from, as the
    API gives it; the backup may be unknown to us or long gone.
    """

    instance = models.ForeignKey(DcsInstance, on_delete=models.CASCADE, related_name="restores")
    restore_id = models.CharField(_("restore id"), max_length=64)
    restore_name = models.CharField(_("restore name"), max_length=255, blank=True)
    backup_id = models.CharField(_("backup id"), max_length=64, blank=True)
    backup_name = models.CharField(_("backup name"), max_length=255, blank=True)
    status = models.CharField(_("status"), max_length=32, blank=True, choices=RestoreStatus.choices)
    progress = models.DecimalField(_("progress (%)"), max_digits=5, decimal_places=2, null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    restore_remark = models.TextField(_("restore remark"), blank=True)
    backup_remark = models.TextField(_("backup remark"), blank=True)
    created_at = models.DateTimeField(_("created"), null=True, blank=True)
    updated_at = models.DateTimeField(_("finished"), null=True, blank=True)
    first_seen = models.DateTimeField(_("first seen"))
    last_seen = models.DateTimeField(_("last seen"))
    gone_at = models.DateTimeField(_("gone since"), null=True, blank=True)
    raw = models.JSONField(_("raw JSON as last received"), default=dict)

    class Meta:
        verbose_name = _("restore record")
        verbose_name_plural = _("restore records")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "restore_id"], name="uniq_restore_per_instance"),
        ]
        indexes = [
            models.Index(fields=["instance", "-created_at", "-id"], name="restore_instance_created"),
            models.Index(fields=["-created_at", "-id"], name="restore_created"),
        ]

    def __str__(self) -> str:
        return self.restore_name or self.restore_id


class RestoreStatusChange(models.Model):
    """A change of a restore's status or progress, as one of our syncs saw it."""

    restore = models.ForeignKey(RestoreRecord, on_delete=models.CASCADE, related_name="status_changes")
    observed_at = models.DateTimeField(_("observed"))
    status = models.CharField(_("status"), max_length=32, blank=True, choices=RestoreStatus.choices)
    progress = models.DecimalField(_("progress (%)"), max_digits=5, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["restore", "observed_at", "id"]
        indexes = [models.Index(fields=["restore", "observed_at"], name="restore_change_restore")]

    def __str__(self) -> str:
        return f"{self.status} {self.progress}% @ {self.observed_at:%Y-%m-%d %H:%M:%S}Z"


class RpoPolicy(models.Model):
    """A maximum age for the last successful backup, for a region, a tag or an instance.

    The most specific policy wins: instance, then tag, then region; with
    none, DASHBOARD_RPO_HOURS. Single-node instances have no backups and are
    exempt whatever applies. See backups.rpo.
    """

    class Scope(models.TextChoices):
        REGION = "region", _("Region")
        TAG = "tag", _("Tag")
        INSTANCE = "instance", _("Instance")

    scope = models.CharField(_("applies to"), max_length=16, choices=Scope.choices)
    region = models.CharField(_("region"), max_length=64, blank=True)
    tag_key = models.CharField(_("tag key"), max_length=128, blank=True)
    tag_value = models.CharField(_("tag value"), max_length=255, blank=True)
    instance = models.ForeignKey(
        DcsInstance, null=True, blank=True, on_delete=models.CASCADE, related_name="rpo_policies"
    )
    max_age = models.DurationField(_("maximum age of the last success"))
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("changed"), auto_now=True)

    class Meta:
        verbose_name = _("RPO policy")
        verbose_name_plural = _("RPO policies")
        ordering = ["scope", "region", "tag_key", "tag_value", "instance_id"]
        constraints = [
            models.CheckConstraint(condition=Q(max_age__gt=timedelta(0)), name="rpo_positive"),
            models.UniqueConstraint(fields=["region"], condition=Q(scope="region"), name="uniq_rpo_region"),
            models.UniqueConstraint(
                fields=["tag_key", "tag_value"], condition=Q(scope="tag"), name="uniq_rpo_tag"
            ),
            models.UniqueConstraint(
                fields=["instance"], condition=Q(scope="instance"), name="uniq_rpo_instance"
            ),
        ]

    def __str__(self) -> str:
        if self.scope == self.Scope.REGION:
            target = self.region
        elif self.scope == self.Scope.TAG:
            target = f"{self.tag_key}={self.tag_value}"
        else:
            target = str(self.instance) if self.instance_id else "?"
        return f"{self.get_scope_display()} {target}: {self.max_age}"


class Note(models.Model):
    """An Operator's note on an instance or on one of its backups, with an incident reference.

    ``instance`` is set for a backup's note too (the backup's instance), so
    an instance's page and the ``?incident=`` filters find every note of it
    in one query. ``author_name`` keeps who wrote it after the user is gone.
    """

    instance = models.ForeignKey(DcsInstance, on_delete=models.CASCADE, related_name="notes")
    record = models.ForeignKey(
        BackupRecord, null=True, blank=True, on_delete=models.CASCADE, related_name="notes"
    )
    text = models.TextField(_("note"), blank=True)
    incident = models.CharField(_("incident"), max_length=64, blank=True, db_index=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(_("author"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("written"), default=timezone.now)

    class Meta:
        verbose_name = _("note")
        verbose_name_plural = _("notes")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["instance", "-created_at"], name="note_instance_created")]
        constraints = [
            models.CheckConstraint(condition=~Q(text="") | ~Q(incident=""), name="note_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.incident or '-'}: {self.text[:40]}"


class AlertKind(models.TextChoices):
    RPO = "rpo", _("Over its RPO")
    BACKUP_FAILED = "backup_failed", _("Backup failed")


class Alert(models.Model):
    """One problem, from when it was noticed to when it recovered (backups.alerts).

    ``key`` de-duplicates: while an alert with a key is open, the same
    problem seen again is the same alert, notified once. ``resolved_at`` set:
    it recovered, and the recovery was notified.
    """

    kind = models.CharField(_("kind"), max_length=32, choices=AlertKind.choices)
    key = models.CharField(_("key"), max_length=255)
    instance = models.ForeignKey(DcsInstance, on_delete=models.CASCADE, related_name="alerts")
    record = models.ForeignKey(
        BackupRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    summary = models.CharField(_("summary"), max_length=500)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    opened_at = models.DateTimeField(_("opened"))
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(resolved_at=None), name="uniq_open_alert"),
        ]
        indexes = [
            models.Index(fields=["-opened_at", "-id"], name="alert_opened"),
            models.Index(fields=["instance", "-opened_at"], name="alert_instance"),
        ]

    def __str__(self) -> str:
        return self.summary

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class AlertDelivery(models.Model):
    """One notification sent (or tried) on one channel: an alert opening, its recovery, or a digest.

    ``target`` is what may be shown: an address, or a webhook's scheme and
    host, never its path or query (a chat webhook's URL is its secret).
    """

    class Event(models.TextChoices):
        OPENED = "opened", _("Opened")
        RESOLVED = "resolved", _("Recovered")
        DIGEST = "digest", _("Daily digest")

    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        WEBHOOK = "webhook", _("Webhook")

    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(_("event"), max_length=16, choices=Event.choices)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    target = models.CharField(_("to"), max_length=255, blank=True)
    sent_at = models.DateTimeField(_("sent"))
    ok = models.BooleanField(_("delivered"), default=False)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("alert delivery")
        verbose_name_plural = _("alert deliveries")
        ordering = ["-sent_at", "-id"]
        indexes = [models.Index(fields=["-sent_at", "-id"], name="alert_delivery_sent")]

    def __str__(self) -> str:
        return f"{self.event} via {self.channel} @ {self.sent_at:%Y-%m-%d %H:%M:%S}Z"


class SyncKind(models.TextChoices):
    # Every instance, every record: the only kind that marks things gone.
    FULL = "full", _("Full")
    # Every instance, only records of a recent window; marks nothing gone.
    INCREMENTAL = "incremental", _("Incremental")
    # Only instances with a waiting or running backup, to move their progress.
    ACTIVE = "active", _("Running backups")
    # One instance, completely ("Sync now" on its page, or the command).
    INSTANCE = "instance", _("One instance")


class SyncTrigger(models.TextChoices):
    BEAT = "beat", _("Schedule")
    STARTUP = "startup", _("Worker start")
    USER = "user", _("User")
    COMMAND = "command", _("Command")


class SyncRunQuerySet(models.QuerySet):
    def fleet(self):
        return self.filter(scope=SyncRun.FLEET_SCOPE)

    def running(self):
        return self.filter(outcome=SyncOutcome.RUNNING)

    def counted(self):
        """Runs that did something: without those refused as skipped."""
        return self.exclude(outcome=SKIPPED)

    def finished(self):
        return self.counted().filter(finished_at__isnull=False)


class SyncRun(models.Model):
    """One sync: of the whole fleet, of the instances with running backups, or of one instance.

    A fleet sync lists the instances and then syncs each one as a
    :class:`SyncRunItem`; the items add their counts here as they finish.
    """

    FLEET_SCOPE = "fleet"
    ACTIVE_SCOPE = "active"

    scope = models.CharField(_("scope"), max_length=255)
    kind = models.CharField(_("kind"), max_length=16, choices=SyncKind.choices, default=SyncKind.FULL)
    trigger = models.CharField(
        _("trigger"), max_length=16, choices=SyncTrigger.choices, default=SyncTrigger.COMMAND
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # The one instance of an instance sync.
    instance = models.ForeignKey(
        DcsInstance,
        verbose_name=_("instance"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(_("started"), db_index=True)
    # When the list of instances to sync was made; until then nothing is queued.
    planned_at = models.DateTimeField(_("planned"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=RUN_OUTCOMES, default=SyncOutcome.RUNNING)
    # Why it ended as it did when that is not in the counts: skipped, or stalled.
    reason = models.TextField(_("reason"), blank=True)
    concurrency = models.IntegerField(_("concurrency"), default=1)
    instances_seen = models.IntegerField(_("instances"), default=0)
    instances_gone = models.IntegerField(_("instances gone"), default=0)
    instances_synced = models.IntegerField(_("instances synced"), default=0)
    instances_failed = models.IntegerField(_("instances failed"), default=0)
    records_new = models.IntegerField(_("new records"), default=0)
    records_updated = models.IntegerField(_("updated records"), default=0)
    records_gone = models.IntegerField(_("gone records"), default=0)
    api_calls = models.IntegerField(_("API calls"), default=0)
    retries = models.IntegerField(_("retries"), default=0)
    throttles = models.IntegerField(_("throttles"), default=0)
    error_count = models.IntegerField(_("errors"), default=0)
    # The Celery task that started it: a redelivered task resumes this run.
    task_id = models.CharField(_("task id"), max_length=64, blank=True)

    objects = SyncRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        # "Sync now" on the overview, /sync/ and an instance's page.
        permissions = [("trigger_sync", _("Can start a sync now"))]
        indexes = [
            models.Index(fields=["scope", "-started_at"], name="sync_run_scope_started"),
            models.Index(fields=["outcome"], name="sync_run_outcome"),
            models.Index(fields=["task_id"], name="sync_run_task"),
        ]

    def __init__(self, *args, **kwargs) -> None:
        self._pending_errors = None
        super().__init__(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.scope} @ {self.started_at:%Y-%m-%d %H:%M:%S}Z"

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        if self._pending_errors is not None:
            rows = [SyncError.from_entry(entry, run=self) for entry in _entries(self._pending_errors)]
            self._pending_errors = None
            SyncError.objects.bulk_create(rows)
            if rows:
                SyncRun.objects.filter(pk=self.pk).update(error_count=models.F("error_count") + len(rows))
                self.error_count += len(rows)

    @property
    def token(self) -> str:
        """Who holds this run's leases (backups.locks)."""
        return f"run-{self.pk}"

    @property
    def is_skipped(self) -> bool:
        return self.outcome == SKIPPED

    @property
    def duration(self):
        if self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def errors(self) -> list[dict]:
        """The run's errors as dicts: scope, error, message, status, error_code, request_id.

        Reads ``sync_errors``, so ``prefetch_related("sync_errors")`` serves a list of runs.
        """
        if self._pending_errors is not None:
            return [SyncError.from_entry(entry).as_dict() for entry in _entries(self._pending_errors)]
        if self.pk is None:
            return []
        return [error.as_dict() for error in self.sync_errors.all()]

    @errors.setter
    def errors(self, entries) -> None:
        # SyncRun(errors=[{"scope": ..., "message": ...}, ...]): kept until save().
        self._pending_errors = entries


def _entries(entries) -> list:
    # Anything but a list (a hand-edited fixture, an old JSON value) is no errors.
    return list(entries) if isinstance(entries, list | tuple) else []


class SyncRunItem(models.Model):
    """One instance of a run: queued, handed to a worker, running, done.

    At most ``run.concurrency`` items of a run are dispatched or running at once;
    each item that ends hands the next queued one to a worker.
    """

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        DISPATCHED = "dispatched", _("Dispatched")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="items")
    instance = models.ForeignKey(DcsInstance, on_delete=models.CASCADE, related_name="+")
    position = models.IntegerField(_("position"))
    # The start of the time window listed; None: every record (a complete listing).
    begin = models.DateTimeField(_("window start"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    outcome = models.CharField(_("outcome"), max_length=16, choices=RUN_OUTCOMES, blank=True)
    records_new = models.IntegerField(_("new records"), default=0)
    records_updated = models.IntegerField(_("updated records"), default=0)
    records_gone = models.IntegerField(_("gone records"), default=0)
    api_calls = models.IntegerField(_("API calls"), default=0)
    dispatched_at = models.DateTimeField(_("dispatched"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # The API's "now" when this item listed its instance's backups (a window,
    # or all) completely, and when it listed its restores. An incremental
    # sync keeps these check times here, on its own bookkeeping, rather than
    # writing every instance's row on every tick: the instance's
    # backups_checked_at and restores_checked_at are written by complete
    # listings only, and readers take the newer (see DcsInstance).
    checked_at = models.DateTimeField(_("backups listed"), null=True, blank=True)
    restores_checked_at = models.DateTimeField(_("restores listed"), null=True, blank=True)
    # Whether the item lists the restores too, decided when the run is planned
    # (backups.sync.planning._restores_due): always on a full sync, when due on an
    # incremental one, never on the active poll.
    list_restores = models.BooleanField(_("lists restores"), default=False)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "instance"], name="uniq_instance_per_run"),
        ]
        indexes = [
            models.Index(fields=["run", "state", "position"], name="sync_item_run_state"),
            # An instance's latest check: the incremental windows, the sync-stale pages.
            models.Index(fields=["instance", "checked_at"], name="sync_item_instance_checked"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} #{self.position} {self.state}"


class SyncError(models.Model):
    """One error of a run: an API error with its code and request id, a bad record, a stall."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="sync_errors")
    instance = models.ForeignKey(
        DcsInstance,
        verbose_name=_("instance"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    scope = models.CharField(_("scope"), max_length=255, blank=True)
    # The kind of failure: the exception's class name (DcsServerError, ...).
    error = models.CharField(_("error"), max_length=64, blank=True)
    status = models.IntegerField(_("HTTP status"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_msg = models.TextField(_("message"), blank=True)
    request_id = models.CharField(_("request id"), max_length=128, blank=True)
    occurred_at = models.DateTimeField(_("when"))

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["run", "occurred_at"], name="sync_error_run")]

    def __str__(self) -> str:
        return f"{self.scope}: {self.error_msg}"

    def as_dict(self) -> dict:
        return {
            "scope": self.scope,
            "error": self.error,
            "message": self.error_msg,
            "status": self.status,
            "error_code": self.error_code,
            "request_id": self.request_id,
        }

    @classmethod
    def from_entry(cls, entry, **fields) -> SyncError:
        """A row from an ``errors`` dict (as :meth:`as_dict` gives) or a plain string."""
        from django.utils import timezone

        if not isinstance(entry, dict):
            entry = {"message": str(entry)}
        status = entry.get("status")
        return cls(
            scope=str(entry.get("scope") or "")[:255],
            error=str(entry.get("error") or "")[:64],
            error_msg=str(entry.get("message") or ""),
            status=status if isinstance(status, int) else None,
            error_code=str(entry.get("error_code") or "")[:64],
            request_id=str(entry.get("request_id") or "")[:128],
            occurred_at=timezone.now(),
            **fields,
        )


class SyncLease(models.Model):
    """A named lease: who may sync one thing (the fleet, one instance) until when.

    See :mod:`backups.locks`. Times are the database's clock, so workers on
    machines whose clocks disagree still agree on when a lease ran out.
    """

    name = models.CharField(_("name"), max_length=128, primary_key=True)
    holder = models.CharField(_("holder"), max_length=64)
    acquired_at = models.DateTimeField(_("acquired"))
    renewed_at = models.DateTimeField(_("renewed"))
    expires_at = models.DateTimeField(_("expires"))

    class Meta:
        indexes = [models.Index(fields=["holder"], name="sync_lease_holder")]

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%H:%M:%S}Z"


class WorkerHeartbeat(models.Model):
    """A Celery worker's sign of life, written every few seconds while it runs."""

    hostname = models.CharField(_("worker"), max_length=255, primary_key=True)
    started_at = models.DateTimeField(_("started"))
    last_seen = models.DateTimeField(_("last seen"))
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.hostname


class AuditAction(models.TextChoices):
    LOGIN = "login", _("Signed in")
    LOGIN_FAILED = "login_failed", _("Sign-in failed")
    LOGOUT = "logout", _("Signed out")
    LOCKOUT = "lockout", _("Locked out")
    SYNC_TRIGGERED = "sync_triggered", _("Sync started")
    EXPORT = "export", _("Export")
    PERMISSION_CHANGED = "permission_changed", _("Permissions changed")
    USER_CREATED = "user_created", _("User created")
    RETENTION = "retention", _("Retention")


class AuditEvent(models.Model):
    """One security-relevant action: who, what, from where (see ``backups.audit``).

    ``username`` is kept as text besides ``user``: a failed sign-in has no
    user, and the row must still say who it was after the user is deleted.
    ``detail`` never holds a password or a secret.
    """

    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["-at", "-id"], name="audit_at_desc")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action}"


# The audit log's signal receivers (sign-ins, permission changes) listen from
# the moment the models are loaded, in the web process and in commands alike.
import backups.audit  # noqa: E402, F401
