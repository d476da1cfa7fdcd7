"""The sync service: DCS API → our database.

One fleet sync lists each project's instances, then pages through every
instance's backup records and upserts them in bulk. A record or instance that
a *complete* listing no longer contains is kept and marked gone; a failed or
partial listing never marks anything gone. Every run is recorded as a SyncRun.

The Celery tasks and the ``sync_backups`` command both call in here, so the
whole pipeline is testable without a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from backups.choices import SyncOutcome
from backups.dcs.client import DcsClient
from backups.dcs.config import DcsProject
from backups.dcs.errors import DcsApiError, DcsError, DcsMalformedResponse
from backups.dcs.records import (
    BackupRecordData,
    InstanceData,
    RecordParseError,
    parse_backup_record,
    parse_instance,
)
from backups.models import BackupRecord, BackupStatusChange, DcsInstance, SyncRun

logger = logging.getLogger(__name__)

# Rows per INSERT/UPDATE: under SQLite's bound-variable limit for our widest row.
BATCH_SIZE = 500
# A SyncRun keeps this many error entries; the rest are counted.
MAX_ERRORS_KEPT = 100
# An incremental listing reaches this far before the oldest running backup, so
# a record that moved a little in time is still inside the window.
ACTIVE_WINDOW_OVERLAP = timedelta(hours=1)

ProgressCallback = Callable[[int, int], None]  # (instances done, instances total)


@dataclass
class SyncTally:
    instances_seen: int = 0
    instances_gone: int = 0
    instances_ok: int = 0
    records_new: int = 0
    records_updated: int = 0
    records_gone: int = 0
    errors: list[dict] = field(default_factory=list)
    errors_dropped: int = 0

    def add_error(self, scope: str, exc: Exception) -> None:
        if len(self.errors) >= MAX_ERRORS_KEPT:
            self.errors_dropped += 1
            return
        entry = {"scope": scope, "error": type(exc).__name__, "message": str(exc)[:1024]}
        if isinstance(exc, DcsApiError):
            entry.update(status=exc.status, error_code=exc.error_code, request_id=exc.request_id)
        elif isinstance(exc, DcsMalformedResponse) and exc.request_id:
            entry["request_id"] = exc.request_id
        self.errors.append(entry)


def _chunks(items: list, size: int = BATCH_SIZE) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Instances ----------------------------------------------------------------


def sync_project_instances(
    *, project: DcsProject, client: DcsClient, now: datetime, tally: SyncTally
) -> list[DcsInstance]:
    """Upsert the instances of one project; returns those listed now."""
    listed: dict[str, InstanceData] = {}
    complete = True
    for raw in client.list_instances(project):
        try:
            data = parse_instance(raw)
        except RecordParseError as exc:
            complete = False
            tally.add_error(f"project {project.region}/{project.project_id}", exc)
            continue
        listed.setdefault(data.instance_id, data)

    rows = [
        DcsInstance(
            region=project.region,
            project_id=project.project_id,
            instance_id=data.instance_id,
            first_seen=now,
            last_seen=now,
            gone_at=None,
            **data.model_values(),
        )
        for data in listed.values()
    ]
    with transaction.atomic():
        DcsInstance.objects.bulk_create(
            rows,
            batch_size=BATCH_SIZE,
            update_conflicts=True,
            unique_fields=["project_id", "instance_id"],
            update_fields=["region", *InstanceData.MODEL_FIELDS, "last_seen", "gone_at"],
        )
        if complete:
            tally.instances_gone += (
                DcsInstance.objects.filter(project_id=project.project_id, gone_at__isnull=True)
                .filter(last_seen__lt=now)
                .update(gone_at=now)
            )
    tally.instances_seen += len(rows)
    return list(DcsInstance.objects.filter(project_id=project.project_id, last_seen=now))


# --- Backup records -----------------------------------------------------------


@dataclass
class _Existing:
    pk: int
    status: str
    progress: object
    raw: dict
    gone: bool


def _existing_records(instance: DcsInstance, backup_ids: list[str]) -> dict[str, _Existing]:
    existing = {}
    for chunk in _chunks(backup_ids):
        rows = instance.backups.filter(backup_id__in=chunk).values_list(
            "backup_id", "pk", "status", "progress", "raw", "gone_at"
        )
        for backup_id, pk, status, progress, raw, gone_at in rows:
            existing[backup_id] = _Existing(pk, status, progress, raw, gone_at is not None)
    return existing


def sync_instance_backups(
    *,
    instance: DcsInstance,
    client: DcsClient,
    now: datetime,
    tally: SyncTally,
    begin: datetime | None = None,
) -> None:
    """Fetch and upsert one instance's backup records.

    With ``begin`` only a recent window is listed: that is not a complete
    listing, so nothing is marked gone.
    """
    project = DcsProject(instance.region, instance.project_id)
    listed: dict[str, BackupRecordData] = {}
    complete = begin is None
    for raw in client.list_backup_records(project, instance.instance_id, begin=begin):
        try:
            data = parse_backup_record(raw, instance_id=instance.instance_id)
        except RecordParseError as exc:
            complete = False
            tally.add_error(f"instance {instance.instance_id}", exc)
            continue
        # The list is newest first; a record repeated on a later page is the
        # same record seen again after the list shifted, so the first wins.
        listed.setdefault(data.backup_id, data)

    with transaction.atomic():
        existing = _existing_records(instance, list(listed))
        upserts: list[BackupRecord] = []
        unchanged: list[int] = []
        for data in listed.values():
            before = existing.get(data.backup_id)
            if before is not None and before.raw == data.raw and not before.gone:
                unchanged.append(before.pk)
                continue
            upserts.append(
                BackupRecord(
                    instance=instance,
                    backup_id=data.backup_id,
                    first_seen=now,
                    last_seen=now,
                    gone_at=None,
                    **data.model_values(),
                )
            )
        BackupRecord.objects.bulk_create(
            upserts,
            batch_size=BATCH_SIZE,
            update_conflicts=True,
            unique_fields=["instance", "backup_id"],
            update_fields=[*BackupRecordData.MODEL_FIELDS, "last_seen", "gone_at"],
        )
        changes = []
        for record in upserts:
            before = existing.get(record.backup_id)
            if before is None:
                tally.records_new += 1
            else:
                tally.records_updated += 1
            if before is None or (before.status, before.progress) != (record.status, record.progress):
                changes.append(
                    BackupStatusChange(
                        record_id=record.pk, observed_at=now, status=record.status, progress=record.progress
                    )
                )
        BackupStatusChange.objects.bulk_create(changes, batch_size=BATCH_SIZE)
        for chunk in _chunks(unchanged):
            BackupRecord.objects.filter(pk__in=chunk).update(last_seen=now)
        if complete:
            tally.records_gone += instance.backups.filter(gone_at__isnull=True, last_seen__lt=now).update(
                gone_at=now
            )
            DcsInstance.objects.filter(pk=instance.pk).update(backups_synced_at=now)
    tally.instances_ok += 1


# --- Runs ---------------------------------------------------------------------


def _finish_run(run: SyncRun, tally: SyncTally, client: DcsClient, calls_before: int) -> SyncRun:
    if not tally.errors and not tally.errors_dropped:
        run.outcome = SyncOutcome.SUCCEEDED
    elif tally.instances_ok:
        run.outcome = SyncOutcome.PARTIAL
    else:
        run.outcome = SyncOutcome.FAILED
    if tally.errors_dropped:
        tally.errors.append({"scope": "run", "message": f"{tally.errors_dropped} more errors not kept"})
    run.finished_at = timezone.now()
    run.instances_seen = tally.instances_seen
    run.instances_gone = tally.instances_gone
    run.records_new = tally.records_new
    run.records_updated = tally.records_updated
    run.records_gone = tally.records_gone
    run.api_calls = client.api_calls - calls_before
    run.errors = tally.errors
    run.save()
    logger.info(
        "sync run=%s scope=%s outcome=%s instances=%d instances_gone=%d records_new=%d "
        "records_updated=%d records_gone=%d api_calls=%d errors=%d duration=%.2fs",
        run.pk,
        run.scope,
        run.outcome,
        run.instances_seen,
        run.instances_gone,
        run.records_new,
        run.records_updated,
        run.records_gone,
        run.api_calls,
        len(tally.errors),
        run.duration.total_seconds(),
    )
    return run


def _run_sync(
    scope: str,
    client: DcsClient | None,
    plan: Callable[[DcsClient, datetime, SyncTally], list[tuple[DcsInstance, datetime | None]]],
    on_progress: ProgressCallback | None,
) -> SyncRun:
    client = client or DcsClient.from_settings()
    calls_before = client.api_calls
    now = timezone.now()
    run = SyncRun.objects.create(scope=scope, started_at=now)
    tally = SyncTally()
    work: list[tuple[DcsInstance, datetime | None]] = []
    try:
        work = plan(client, now, tally)
        for done, (instance, begin) in enumerate(work, start=1):
            try:
                sync_instance_backups(instance=instance, client=client, now=now, tally=tally, begin=begin)
            except DcsError as exc:
                tally.add_error(f"instance {instance.instance_id}", exc)
            if on_progress:
                on_progress(done, len(work))
    except Exception as exc:
        # A bug or a database failure: the run is recorded as failed with the
        # reason rather than left "running" forever.
        logger.exception("sync run=%s scope=%s crashed", run.pk, scope)
        tally.add_error("run", exc)
        tally.instances_ok = 0
    return _finish_run(run, tally, client, calls_before)


def sync_fleet(*, client: DcsClient | None = None, on_progress: ProgressCallback | None = None) -> SyncRun:
    """A full sync: every project's instances and every instance's backups."""

    def plan(client: DcsClient, now: datetime, tally: SyncTally):
        work = []
        for project in client.config.projects:
            try:
                instances = sync_project_instances(project=project, client=client, now=now, tally=tally)
            except DcsError as exc:
                tally.add_error(f"project {project.region}/{project.project_id}", exc)
                continue
            work.extend((instance, None) for instance in instances)
        if on_progress:
            on_progress(0, len(work))
        return work

    return _run_sync("fleet", client, plan, on_progress)


def sync_instance(
    *, instance: DcsInstance, client: DcsClient | None = None, on_progress: ProgressCallback | None = None
) -> SyncRun:
    """A full sync of one instance's backups."""

    def plan(client: DcsClient, now: datetime, tally: SyncTally):
        tally.instances_seen = 1
        return [(instance, None)]

    return _run_sync(f"instance {instance.instance_id}", client, plan, on_progress)


def sync_active_instances(*, client: DcsClient | None = None) -> SyncRun | None:
    """Re-list recent backups of instances with a waiting or running backup.

    Asks only for a window that starts a little before the oldest running
    backup, so the progress bars move without a full listing every time.
    Returns None, and records no run, when nothing is running.
    """
    oldest_active = dict(
        BackupRecord.objects.active()
        .filter(gone_at__isnull=True, instance__gone_at__isnull=True)
        .values_list("instance_id")
        .annotate(oldest=Min("created_at"))
    )
    if not oldest_active:
        return None
    instances = DcsInstance.objects.filter(pk__in=oldest_active)

    def plan(client: DcsClient, now: datetime, tally: SyncTally):
        work = [
            (instance, (oldest_active[instance.pk] or now) - ACTIVE_WINDOW_OVERLAP) for instance in instances
        ]
        tally.instances_seen = len(work)
        return work

    return _run_sync("active", client, plan, None)


__all__ = ["sync_active_instances", "sync_fleet", "sync_instance"]
