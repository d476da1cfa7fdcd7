"""Starting sync runs and planning them: one queued item per instance, with its listing window.

A fleet run lists every project's instances first (:func:`plan_fleet`); an
incremental one gives each instance a window that starts an overlap before its
last complete listing, and lists restores only when due. An active run and a
one-instance run are planned from the database alone.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Min
from django.utils import timezone

from backups import locks
from backups.choices import RestoreStatus, SyncOutcome
from backups.db import ValueList
from backups.dcs.client import DcsClient
from backups.dcs.errors import DcsError
from backups.models import (
    SKIPPED,
    BackupRecord,
    DcsInstance,
    RestoreRecord,
    SyncKind,
    SyncRun,
    SyncRunItem,
    SyncTrigger,
)
from backups.sync.items import api_calls_since, api_counters, data_now, record_errors
from backups.sync.listings import Problem, sync_project_instances
from backups.sync.runs import ACTIVE_LEASE, describe_holder, log_run, reap_stuck_runs, run_lease_name

logger = logging.getLogger("backups.sync")

AUTO = "auto"


def resolve_fleet_kind(kind: str) -> str:
    """``auto`` (beat's tick): full when the last full fleet sync that got through is too old."""
    if kind in (SyncKind.FULL, SyncKind.INCREMENTAL):
        return kind
    last_full = (
        SyncRun.objects.fleet()
        .filter(kind=SyncKind.FULL, outcome__in=[SyncOutcome.SUCCEEDED, SyncOutcome.PARTIAL])
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    due = last_full is None or timezone.now() - last_full >= timedelta(
        seconds=settings.DCS_FULL_SYNC_INTERVAL
    )
    return SyncKind.FULL if due else SyncKind.INCREMENTAL


def start_run(
    *,
    scope: str,
    kind: str,
    trigger: str,
    requested_by_id: int | None = None,
    instance: DcsInstance | None = None,
    task_id: str = "",
) -> SyncRun:
    """Record a run and take its lease; a run refused by the lease is recorded as skipped.

    A Celery task delivered again (its worker died before acknowledging it)
    gets back the run it started the first time, to resume it.
    """
    if task_id:
        existing = SyncRun.objects.filter(task_id=task_id).first()
        if existing is not None:
            return existing
    run = SyncRun.objects.create(
        scope=scope,
        kind=kind,
        trigger=trigger,
        requested_by_id=requested_by_id,
        instance=instance,
        started_at=timezone.now(),
        concurrency=settings.DCS_SYNC_CONCURRENCY,
        task_id=task_id,
    )
    name = run_lease_name(run)
    if locks.acquire(name, holder=run.token) is None:
        reason = f"{describe_holder(locks.holder_of(name))} of the same scope ({scope}) was still running"
        SyncRun.objects.filter(pk=run.pk).update(outcome=SKIPPED, finished_at=timezone.now(), reason=reason)
        run.refresh_from_db()
        log_run(run)
    return run


def _plan(
    run: SyncRun, targets: list[tuple[DcsInstance, datetime | None]], *, restores: set[int], **run_fields
) -> None:
    """Queue one item per target (instance, window start); those in ``restores`` list restores too."""
    items = [
        SyncRunItem(
            run=run, instance=instance, position=position, begin=begin, list_restores=instance.pk in restores
        )
        for position, (instance, begin) in enumerate(targets)
    ]
    with transaction.atomic():
        SyncRunItem.objects.bulk_create(items, batch_size=500)
        SyncRun.objects.filter(pk=run.pk).update(planned_at=timezone.now(), **run_fields)
    run.refresh_from_db()


def _newest(*moments: datetime | None) -> datetime | None:
    return max((moment for moment in moments if moment is not None), default=None)


def latest_checks(instance_pks: list[int]) -> dict[int, tuple[datetime | None, datetime | None]]:
    """Instance pk → (backups, restores) last listed by an incremental sync, from the run items.

    Items are kept a day (:data:`~backups.sync.runs.ITEM_RETENTION`); older checks are on the
    instance's own row, written by the full syncs.
    """
    if not instance_pks:
        return {}
    pks = ValueList(instance_pks, DcsInstance._meta.pk)
    return {
        pk: (backups, restores)
        for pk, backups, restores in SyncRunItem.objects.filter(instance_id__in=pks, checked_at__isnull=False)
        .order_by()
        .values_list("instance_id")
        .annotate(Max("checked_at"), Max("restores_checked_at"))
    }


def _incremental_windows(
    instances: list[DcsInstance],
    overlap: timedelta,
    checks: dict[int, tuple[datetime | None, datetime | None]],
) -> dict[int, datetime | None]:
    """Where each instance's listing starts; None: it has never been listed completely."""
    oldest_active = _oldest_active()
    windows: dict[int, datetime | None] = {}
    for instance in instances:
        checked, _restores = checks.get(instance.pk, (None, None))
        since = _newest(checked, instance.backups_checked_at, instance.backups_synced_at)
        if instance.backups_synced_at is None or since is None:
            windows[instance.pk] = None
            continue
        begin = since - overlap
        if instance.pk in oldest_active:
            # A backup still running may be older than the window: reach back to it.
            oldest = oldest_active[instance.pk]
            begin = None if oldest is None else min(begin, oldest - overlap)
        windows[instance.pk] = begin
    return windows


def _oldest_active() -> dict[int, datetime | None]:
    """Instance pk → created_at of its oldest waiting or running backup."""
    return dict(
        BackupRecord.objects.active()
        .filter(gone_at__isnull=True, instance__gone_at__isnull=True)
        .order_by()
        .values_list("instance_id")
        .annotate(oldest=Min("created_at"))
    )


def _restores_due(
    instances: list[DcsInstance], now: datetime, checks: dict[int, tuple[datetime | None, datetime | None]]
) -> set[int]:
    """The instances whose restores an incremental sync lists: due, or one still running.

    Due once DCS_RESTORE_SYNC_INTERVAL has passed since they were last
    listed, so an unchanged fleet costs one call per instance per tick, not
    two. A full sync and "Sync now" always list them; the active poll, which
    only moves running backups' progress, never does.
    """
    cutoff = now - timedelta(seconds=settings.DCS_RESTORE_SYNC_INTERVAL)
    due = set()
    for instance in instances:
        _backups, listed = checks.get(instance.pk, (None, None))
        checked = _newest(listed, instance.restores_checked_at)
        if checked is None or checked <= cutoff:
            due.add(instance.pk)
    # Restores still running are few, fleet-wide.
    running = set(
        RestoreRecord.objects.filter(status__in=RestoreStatus.active(), gone_at=None)
        .order_by()
        .values_list("instance_id", flat=True)
        .distinct()
    )
    return due | {instance.pk for instance in instances if instance.pk in running}


def _overlap() -> timedelta:
    return timedelta(seconds=settings.DCS_INCREMENTAL_OVERLAP)


def plan_fleet(run: SyncRun, *, client: DcsClient) -> None:
    """List every project's instances and queue one item per instance listed."""
    if run.planned_at is not None:
        return
    before = api_counters(client)
    now = data_now(client)
    instances: list[DcsInstance] = []
    gone = records_gone = 0
    problems: list[Problem] = []
    for project in client.config.projects:
        try:
            listed = sync_project_instances(
                project=project, client=client, now=now, mark_gone=run.kind == SyncKind.FULL
            )
        except DcsError as exc:
            problems.append(Problem.from_exception(f"project {project.region}/{project.project_id}", exc))
            continue
        problems.extend(listed.problems)
        instances.extend(listed.instances)
        gone += listed.gone
        records_gone += listed.records_gone
    if run.kind == SyncKind.INCREMENTAL:
        checks = latest_checks([instance.pk for instance in instances])
        windows = _incremental_windows(instances, _overlap(), checks)
        restores = _restores_due(instances, now, checks)
    else:
        windows, restores = {}, {instance.pk for instance in instances}
    record_errors(run.pk, problems, instance=None)
    calls, retries, throttles = api_calls_since(client, before)
    _plan(
        run,
        [(instance, windows.get(instance.pk)) for instance in instances],
        restores=restores,
        instances_seen=len(instances),
        instances_gone=gone,
        records_gone=F("records_gone") + records_gone,
        api_calls=F("api_calls") + calls,
        retries=F("retries") + retries,
        throttles=F("throttles") + throttles,
        error_count=F("error_count") + len(problems),
    )


def start_fleet_run(
    *, kind: str = SyncKind.FULL, trigger: str, requested_by_id: int | None = None, task_id: str = ""
) -> SyncRun:
    reap_stuck_runs()
    return start_run(
        scope=SyncRun.FLEET_SCOPE,
        kind=resolve_fleet_kind(kind),
        trigger=trigger,
        requested_by_id=requested_by_id,
        task_id=task_id,
    )


def start_active_run(*, trigger: str = SyncTrigger.BEAT, task_id: str = "") -> SyncRun | None:
    """A run over the instances with a waiting or running backup; None when there are none.

    Each lists only a window that starts an overlap before its oldest running
    backup, so progress bars move without a full listing every few seconds.
    """
    oldest_active = _oldest_active()
    if not oldest_active:
        return None
    if locks.holder_of(ACTIVE_LEASE) is not None:
        # The previous poll is still at it; a poll every few seconds needs no record of this.
        logger.debug("sync: active poll skipped, the previous one is still running")
        return None
    run = start_run(scope=SyncRun.ACTIVE_SCOPE, kind=SyncKind.ACTIVE, trigger=trigger, task_id=task_id)
    if run.outcome != SyncOutcome.RUNNING or run.planned_at is not None:
        return run
    now = timezone.now()
    overlap = _overlap()
    instances = DcsInstance.objects.filter(pk__in=list(oldest_active)).order_by("pk")
    targets = [(instance, (oldest_active[instance.pk] or now) - overlap) for instance in instances]
    _plan(run, targets, restores=set(), instances_seen=len(targets))
    return run


def start_instance_run(
    *,
    instance: DcsInstance,
    trigger: str,
    requested_by_id: int | None = None,
    task_id: str = "",
) -> SyncRun:
    run = start_run(
        scope=f"instance {instance.instance_id}",
        kind=SyncKind.INSTANCE,
        trigger=trigger,
        requested_by_id=requested_by_id,
        instance=instance,
        task_id=task_id,
    )
    if run.outcome == SyncOutcome.RUNNING and run.planned_at is None:
        _plan(run, [(instance, None)], restores={instance.pk}, instances_seen=1)
    return run


__all__ = [
    "AUTO",
    "plan_fleet",
    "resolve_fleet_kind",
    "start_active_run",
    "start_fleet_run",
    "start_instance_run",
    "start_run",
]
