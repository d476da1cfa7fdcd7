"""Sync runs: start one, plan its instances, run each instance, finish, and reap the stuck.

A run is planned into one :class:`SyncRunItem` per instance. The same
per-instance code (:func:`run_item`) serves two drivers:

- **in-process** (``manage.py sync_backups``, tests, one-instance syncs): the
  items run one after the other in this process, no broker needed;
- **Celery** (beat, "Sync now"): the fleet task plans the run and dispatches the
  first ``concurrency`` items as tasks; each item task that ends claims the
  next queued item and dispatches it (a sliding window, so at most
  ``concurrency`` items of a run are in flight), and the last one to end
  finishes the run.

Exactly-once counting: an item's writes, its ``done`` state and its counts
added to the run (F() updates) commit in one transaction, and only an item not
yet done may count. A redelivered or late task finds its item done and does
nothing. A run whose workers died stops renewing its lease; the reaper
(:func:`reap_stuck_runs`, on beat and before every fleet sync) finishes it as
partial or failed with the reason.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Min
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
    SyncError,
    SyncKind,
    SyncRun,
    SyncRunItem,
    SyncTrigger,
)
from backups.sync.listings import (
    BackupsListed,
    Problem,
    StoredCounts,
    fetch_backups,
    store_backups,
    sync_project_instances,
)
from backups.sync.restores import RestoresListed, fetch_restores, store_restores

logger = logging.getLogger("backups.sync")

FLEET_LEASE = "sync:fleet"
ACTIVE_LEASE = "sync:active"
# A fleet run's item waits this long for an instance that another run (the
# active poll, a "Sync now") is syncing right now; those take seconds.
INSTANCE_LEASE_WAIT = 10.0
# Errors kept per item; a listing with thousands of bad records keeps a sample.
MAX_ERRORS_PER_ITEM = 20
AUTO = "auto"

ProgressCallback = Callable[[int, int], None]  # (instances done, instances total)
Dispatch = Callable[[int], None]  # hands an item's pk to a worker

State = SyncRunItem.State


def data_now(client: DcsClient) -> datetime:
    """The API's "now": the client's clock when it has one (tests move it by hand)."""
    return client.clock() if client.clock else timezone.now()


def _counters(client: DcsClient) -> tuple[int, int, int]:
    return client.api_calls, client.retries, client.throttles


def _delta(client: DcsClient, before: tuple[int, int, int]) -> tuple[int, int, int]:
    after = _counters(client)
    return after[0] - before[0], after[1] - before[1], after[2] - before[2]


def run_lease_name(run: SyncRun) -> str:
    if run.kind == SyncKind.ACTIVE:
        return ACTIVE_LEASE
    if run.kind == SyncKind.INSTANCE:
        return f"sync:instance:{run.instance_id}"
    return FLEET_LEASE


def instance_lease_name(instance_pk: int) -> str:
    return f"instance:{instance_pk}"


def _describe_holder(holder: str | None) -> str:
    if holder and holder.startswith("run-"):
        return f"run #{holder[4:]}"
    return holder or "another run"


# --- Starting and planning ----------------------------------------------------


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
        reason = f"{_describe_holder(locks.holder_of(name))} of the same scope ({scope}) was still running"
        SyncRun.objects.filter(pk=run.pk).update(outcome=SKIPPED, finished_at=timezone.now(), reason=reason)
        run.refresh_from_db()
        _log_run(run)
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

    Items are kept a day (:data:`ITEM_RETENTION`); older checks are on the
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
    before = _counters(client)
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
    _record_errors(run.pk, problems, instance=None)
    calls, retries, throttles = _delta(client, before)
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


# --- Claiming items -------------------------------------------------------------


def claim_next(run_id: int) -> int | None:
    """Move the run's next queued item to dispatched; its pk, or None when none is left.

    A conditional UPDATE: of two workers claiming at once, one gets it and the
    other moves on to the next item.
    """
    while True:
        pk = (
            SyncRunItem.objects.filter(run_id=run_id, state=State.QUEUED)
            .order_by("position")
            .values_list("pk", flat=True)
            .first()
        )
        if pk is None:
            return None
        claimed = SyncRunItem.objects.filter(pk=pk, state=State.QUEUED).update(
            state=State.DISPATCHED, dispatched_at=timezone.now()
        )
        if claimed:
            return pk


def _dispatch(pk: int, dispatch: Dispatch) -> bool:
    try:
        dispatch(pk)
    except Exception:
        # The broker is down: put the item back. Nothing is in flight to pick it
        # up, so the run stalls and the reaper finishes it as partial.
        logger.exception("sync: could not dispatch item %s", pk)
        SyncRunItem.objects.filter(pk=pk, state=State.DISPATCHED).update(
            state=State.QUEUED, dispatched_at=None
        )
        return False
    return True


def dispatch_window(run: SyncRun, *, dispatch: Dispatch) -> SyncRun | None:
    """Dispatch items until ``run.concurrency`` are in flight; finish a run with none."""
    if run.outcome != SyncOutcome.RUNNING:
        return None
    in_flight = SyncRunItem.objects.filter(run_id=run.pk, state__in=[State.DISPATCHED, State.RUNNING]).count()
    for _ in range(max(0, run.concurrency - in_flight)):
        pk = claim_next(run.pk)
        if pk is None:
            break
        if not _dispatch(pk, dispatch):
            break
    return finish_if_done(run.pk)


def advance_run(run_id: int, *, dispatch: Dispatch) -> SyncRun | None:
    """After an item ended: dispatch the next one, or finish the run when all are done."""
    if not SyncRun.objects.filter(pk=run_id, outcome=SyncOutcome.RUNNING).exists():
        return None
    pk = claim_next(run_id)
    if pk is not None:
        _dispatch(pk, dispatch)
        return None
    return finish_if_done(run_id)


# --- One instance ---------------------------------------------------------------


def run_item(item_pk: int, *, client: DcsClient) -> SyncRunItem | None:
    """Sync one item's instance: the per-instance code of every driver.

    Returns None when there was nothing to do (the item is done already, or
    its run was finished without it).
    """
    started = _begin_item(item_pk)
    if started is None:
        return None
    item, lease = started
    if lease is None:
        return item
    run_lease = locks.held(run_lease_name(item.run), holder=item.run.token)
    try:
        with locks.keep_alive(lease, run_lease):
            _store_item(item, _fetch_item(item, client=client))
    finally:
        lease.release()
    return item


def _begin_item(item_pk: int) -> tuple[SyncRunItem, locks.Lease | None] | None:
    """Mark the item running and take its instance's lease: the database half before the API.

    None: nothing to do (the item is done, or its run was finished without
    it). A lease of None: another run holds the instance, and the item is
    finished already (skipped, or failed with the reason).
    """
    item = SyncRunItem.objects.select_related("run", "instance").filter(pk=item_pk).first()
    if item is None or item.state == State.DONE or item.run.outcome != SyncOutcome.RUNNING:
        return None
    run = item.run
    SyncRunItem.objects.filter(pk=item.pk).exclude(state=State.DONE).update(
        state=State.RUNNING, started_at=timezone.now()
    )
    locks.held(run_lease_name(run), holder=run.token).renew()
    return item, _instance_lease(item)


def _instance_lease(item: SyncRunItem) -> locks.Lease | None:
    """Take the item's instance, waiting a little for another run that holds it.

    None: that run held it too long, and the item is finished already
    (skipped on the active poll, failed with the reason otherwise).
    """
    run = item.run
    wait = 0.0 if run.kind == SyncKind.ACTIVE else INSTANCE_LEASE_WAIT
    name = instance_lease_name(item.instance_id)
    lease = locks.acquire(name, holder=run.token, wait=wait)
    if lease is None:
        holder = _describe_holder(locks.holder_of(name))
        if run.kind == SyncKind.ACTIVE:
            # Another run is listing this instance right now: its progress moves anyway.
            _finish_item(item, outcome=SKIPPED, problems=[])
        else:
            problem = Problem(
                f"instance {item.instance.instance_id}",
                "InstanceBusy",
                f"not synced: {holder} was syncing this instance for longer than {INSTANCE_LEASE_WAIT:g} s",
            )
            _finish_item(item, outcome=SyncOutcome.FAILED, problems=[problem])
    return lease


@dataclass
class Fetched:
    """What the API said of one item's instance, parsed; no database was touched to get it."""

    now: datetime  # the API's "now" when the listing began
    listed: BackupsListed | None  # None: the backups could not be listed
    restores: RestoresListed | None  # None: not due, or not listed
    problems: list[Problem]
    calls: int = 0
    retries: int = 0
    throttles: int = 0


def _fetch_item(item: SyncRunItem, *, client: DcsClient) -> Fetched:
    """The API half of an item: list (and parse) its backups and, when due, its restores.

    Touches no database, so the in-process driver runs it on other threads,
    each with its own client (:meth:`DcsClient.spawn`). Never raises: a
    failure is a problem of the instance.
    """
    instance = item.instance
    scope = f"instance {instance.instance_id}"
    before = _counters(client)
    now = data_now(client)
    listed = None
    try:
        listed = fetch_backups(instance=instance, client=client, begin=item.begin)
        problems = listed.problems
    except DcsError as exc:
        problems = [Problem.from_exception(scope, exc)]
    except Exception as exc:
        # A bug, not the API: recorded on the run, which goes on with the next instance.
        logger.exception("sync: instance %s failed", instance.instance_id)
        problems = [Problem.from_exception(scope, exc)]
    restores: RestoresListed | None = None
    # The restores right after the backups, one whole listing (they are few),
    # when the plan says so (_restores_due); not when the backups could not
    # be listed: the instance is unreachable.
    if listed is not None and item.list_restores:
        try:
            restores = fetch_restores(instance=instance, client=client)
            problems = [*problems, *restores.problems]
        except Exception as exc:
            if not isinstance(exc, DcsError):
                logger.exception("sync: restores of instance %s failed", instance.instance_id)
            # Recorded for the instance; the backups listed above are stored all the same.
            problems = [*problems, Problem.from_exception(f"{scope} restores", exc)]
    calls, retries, throttles = _delta(client, before)
    return Fetched(now, listed, restores, problems, calls, retries, throttles)


def _store_item(item: SyncRunItem, fetched: Fetched, *, tally: _RunCounts | None = None) -> None:
    """The database half of an item: store what was listed and finish the item, in one transaction."""
    instance = item.instance
    scope = f"instance {instance.instance_id}"
    listed, restores, problems, now = fetched.listed, fetched.restores, fetched.problems, fetched.now
    windowed = item.begin is not None
    checked_at = restores_checked_at = None
    # Its own transaction, or a part of the in-process driver's, which
    # stores the items ready together (_Pipeline._store_ready).
    with transaction.atomic(savepoint=False):
        counts = StoredCounts()
        if listed is not None:
            counts = store_backups(
                instance=instance,
                records=listed.records,
                now=now,
                windowed=windowed,
                complete=listed.complete,
            )
            if listed.complete:
                # The next incremental listing starts here, less the overlap.
                checked_at = now
                if not windowed:
                    # A listing of everything writes the records' last_seen
                    # anyway; its check stays on the instance for good (the
                    # item's goes after a day).
                    DcsInstance.objects.filter(pk=instance.pk).update(
                        backups_checked_at=now, backups_synced_at=now
                    )
        if restores is not None:
            try:
                with transaction.atomic():  # a savepoint: a failure here keeps the backups
                    store_restores(instance=instance, listing=restores, now=now, touch=not windowed)
                    if not windowed:
                        DcsInstance.objects.filter(pk=instance.pk).update(restores_checked_at=now)
                restores_checked_at = now
            except Exception as exc:
                logger.exception("sync: storing the restores of instance %s failed", instance.instance_id)
                problems = [*problems, Problem.from_exception(f"{scope} restores", exc)]
        if listed is None:
            outcome = SyncOutcome.FAILED
        elif problems:
            outcome = SyncOutcome.PARTIAL
        else:
            outcome = SyncOutcome.SUCCEEDED
        _finish_item(
            item,
            outcome=outcome,
            problems=problems,
            counts=counts,
            api_calls=fetched.calls,
            retries=fetched.retries,
            throttles=fetched.throttles,
            checked_at=checked_at,
            restores_checked_at=restores_checked_at,
            tally=tally,
        )


@dataclass
class _RunCounts:
    """What finished items add to their run's counters: one UPDATE of F() sums for any number of items."""

    records_new: int = 0
    records_updated: int = 0
    records_gone: int = 0
    api_calls: int = 0
    retries: int = 0
    throttles: int = 0
    error_count: int = 0
    instances_synced: int = 0
    instances_failed: int = 0

    def add(self, other: _RunCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def write(self, run_id: int) -> None:
        """Add them to the run; call it in the transaction that finished the items."""
        added = {
            name: F(name) + value for name in self.__dataclass_fields__ if (value := getattr(self, name))
        }
        if added:
            SyncRun.objects.filter(pk=run_id).update(**added)


def _finish_item(
    item: SyncRunItem,
    *,
    outcome: str,
    problems: list[Problem],
    counts: StoredCounts | None = None,
    api_calls: int = 0,
    retries: int = 0,
    throttles: int = 0,
    checked_at: datetime | None = None,
    restores_checked_at: datetime | None = None,
    tally: _RunCounts | None = None,
) -> bool:
    """Mark the item done and add its counts to the run, once; False if it was done already.

    With ``tally``, the counts are added there, for the caller to write to
    the run in the same transaction (the in-process driver, a few items at once).
    """
    counts = counts or StoredCounts()
    # Its own transaction, or part of the item's (_store_item) with no
    # savepoint: nothing here is worth rolling back alone.
    with transaction.atomic(savepoint=False):
        done = (
            SyncRunItem.objects.filter(pk=item.pk)
            .exclude(state=State.DONE)
            .update(
                state=State.DONE,
                outcome=outcome,
                records_new=counts.new,
                records_updated=counts.updated,
                records_gone=counts.gone,
                api_calls=api_calls,
                finished_at=timezone.now(),
                checked_at=checked_at,
                restores_checked_at=restores_checked_at,
            )
        )
        if not done:
            # The reaper gave up on this item while it ran: what it wrote is
            # good data, but the run's counts are closed.
            return False
        added = _RunCounts(
            records_new=counts.new,
            records_updated=counts.updated,
            records_gone=counts.gone,
            api_calls=api_calls,
            retries=retries,
            throttles=throttles,
            error_count=_record_errors(item.run_id, problems, instance=item.instance),
            instances_synced=1 if outcome == SyncOutcome.SUCCEEDED else 0,
            instances_failed=1 if outcome in (SyncOutcome.FAILED, SyncOutcome.PARTIAL) else 0,
        )
        if tally is not None:
            tally.add(added)
        else:
            # The run's row last, so concurrent items of the run hold its lock briefly.
            added.write(item.run_id)
    return True


def _record_errors(run_id: int, problems: list[Problem], *, instance: DcsInstance | None) -> int:
    if not problems:
        return 0
    kept = problems[:MAX_ERRORS_PER_ITEM]
    now = timezone.now()
    rows = [
        SyncError(
            run_id=run_id,
            instance=instance,
            scope=p.scope[:255],
            error=p.error[:64],
            status=p.status,
            error_code=p.error_code[:64],
            error_msg=p.message,
            request_id=p.request_id[:128],
            occurred_at=now,
        )
        for p in kept
    ]
    if len(problems) > len(kept):
        rows.append(
            SyncError(
                run_id=run_id,
                instance=instance,
                scope=kept[0].scope[:255],
                error="MoreErrors",
                error_msg=f"{len(problems) - len(kept)} more errors not kept",
                occurred_at=now,
            )
        )
    SyncError.objects.bulk_create(rows)
    return len(rows)


# --- Finishing ----------------------------------------------------------------


def _outcome_of(run_id: int) -> str:
    by_outcome = dict(
        SyncRunItem.objects.filter(run_id=run_id).order_by().values_list("outcome").annotate(n=Count("id"))
    )
    run_errors = SyncError.objects.filter(run_id=run_id, instance__isnull=True).exists()
    got_data = by_outcome.get(SyncOutcome.SUCCEEDED, 0) + by_outcome.get(SyncOutcome.PARTIAL, 0)
    bad = by_outcome.get(SyncOutcome.FAILED, 0) + by_outcome.get(SyncOutcome.PARTIAL, 0)
    if not bad and not run_errors:
        return SyncOutcome.SUCCEEDED
    return SyncOutcome.PARTIAL if got_data else SyncOutcome.FAILED


def finish_if_done(run_id: int) -> SyncRun | None:
    """Finish the run when none of its items is left; the run, or None."""
    if SyncRunItem.objects.filter(run_id=run_id).exclude(state=State.DONE).exists():
        return None
    return finalize_run(run_id)


def finalize_run(run_id: int, *, reason: str = "") -> SyncRun | None:
    """Set the run's outcome and end, release its leases and log its line; once.

    Returns None when another worker finished it first.
    """
    outcome = _outcome_of(run_id)
    finished = SyncRun.objects.filter(pk=run_id, outcome=SyncOutcome.RUNNING).update(
        outcome=outcome, finished_at=timezone.now(), reason=reason
    )
    if not finished:
        return None
    locks.release_all(f"run-{run_id}")
    run = SyncRun.objects.get(pk=run_id)
    _log_run(run)
    return run


def abandon_run(run_id: int, *, reason: str, error: str = "Stalled") -> SyncRun | None:
    """Give up on a run's unfinished items and finish it with the reason."""
    now = timezone.now()
    with transaction.atomic():
        abandoned = (
            SyncRunItem.objects.filter(run_id=run_id)
            .exclude(state=State.DONE)
            .update(state=State.DONE, outcome=SyncOutcome.FAILED, finished_at=now)
        )
        if abandoned:
            reason = f"{reason}; {abandoned} instance(s) not synced"
        SyncError.objects.create(run_id=run_id, scope="run", error=error, error_msg=reason, occurred_at=now)
        SyncRun.objects.filter(pk=run_id).update(
            error_count=F("error_count") + 1, instances_failed=F("instances_failed") + abandoned
        )
    return finalize_run(run_id, reason=reason)


def reap_stuck_runs() -> list[SyncRun]:
    """Finish runs whose leases ran out: their worker died, or their tasks were lost.

    A working run renews its lease every ttl/3; one that has not for a whole
    ttl has nobody left working on it.
    """
    ttl = settings.DCS_SYNC_LEASE_TTL
    cutoff = timezone.now() - timedelta(seconds=ttl)
    reaped = []
    for run_id in SyncRun.objects.running().filter(started_at__lt=cutoff).values_list("pk", flat=True):
        if locks.holds_any(f"run-{run_id}"):
            continue
        reason = (
            f"stopped making progress: its lease was not renewed for {ttl} s "
            "(a worker died, or a task was lost while the broker or the workers were down)"
        )
        run = abandon_run(run_id, reason=reason)
        if run is not None:
            logger.warning("sync run=%s reaped: %s", run.pk, run.reason)
            reaped.append(run)
    return reaped


# What the run's log line says, by the name it uses there.
_LOGGED_COUNTS = {
    "instances": "instances_seen",
    "instances_gone": "instances_gone",
    "instances_synced": "instances_synced",
    "instances_failed": "instances_failed",
    "records_new": "records_new",
    "records_updated": "records_updated",
    "records_gone": "records_gone",
    "api_calls": "api_calls",
    "retries": "retries",
    "throttles": "throttles",
    "errors": "error_count",
}


def _log_run(run: SyncRun) -> None:
    """One line per run, with the counts the run records; no secret is ever in a run.

    The same facts ride along as ``extra={"sync_run": {...}}`` for a JSON formatter.
    """
    facts: dict = {"run": run.pk, "kind": run.kind, "trigger": run.trigger, "scope": run.scope}
    facts["outcome"] = run.outcome
    if run.outcome == SKIPPED:
        facts["reason"] = run.reason
    else:
        facts.update({name: getattr(run, field) for name, field in _LOGGED_COUNTS.items()})
        facts["duration_s"] = round(run.duration.total_seconds() if run.duration else 0.0, 2)
    text = " ".join(
        f"{key}={json.dumps(value) if isinstance(value, str) and key in ('scope', 'reason') else value}"
        for key, value in facts.items()
    )
    logger.info("sync %s", text, extra={"sync_run": facts})


# --- Housekeeping ---------------------------------------------------------------

# Items say which instance a run synced how; after a day the run's counts and
# errors say enough.
ITEM_RETENTION = timedelta(days=1)
PRUNE_BATCH = 1000


def prune_history(*, now: datetime | None = None) -> dict[str, int]:
    """Delete, a batch at a time, items of runs older than a day and runs past their retention."""
    now = now or timezone.now()
    item_pks = list(
        SyncRunItem.objects.filter(run__finished_at__lt=now - ITEM_RETENTION).values_list("pk", flat=True)[
            :PRUNE_BATCH
        ]
    )
    items = SyncRunItem.objects.filter(pk__in=item_pks).delete()[0] if item_pks else 0
    retention = timedelta(days=settings.DCS_SYNC_RUN_RETENTION_DAYS)
    run_pks = list(
        SyncRun.objects.filter(finished_at__lt=now - retention)
        .order_by("pk")
        .values_list("pk", flat=True)[:PRUNE_BATCH]
    )
    if run_pks:
        # The runs' items and errors go with them (CASCADE).
        SyncRun.objects.filter(pk__in=run_pks).delete()
    return {"items_pruned": items, "runs_pruned": len(run_pks)}


# --- In-process driver ----------------------------------------------------------


def run_in_process(
    run: SyncRun,
    *,
    client: DcsClient,
    plan: Callable[[], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> SyncRun:
    """Plan (if needed) and run every item here; returns the finished run.

    Up to ``run.concurrency`` items are listed at once on other threads
    (:class:`_Pipeline`) while this thread stores them one at a time.
    """
    if run.outcome != SyncOutcome.RUNNING:
        return run
    try:
        with locks.keep_alive(locks.held(run_lease_name(run), holder=run.token)):
            if plan is not None:
                plan()
            _Pipeline(run, client=client, on_progress=on_progress).run()
    except Exception as exc:
        # A bug or a database failure: the run is recorded as failed with the
        # reason rather than left "running" until the reaper finds it.
        logger.exception("sync run=%s crashed", run.pk)
        abandon_run(run.pk, reason=f"{type(exc).__name__}: {exc}"[:1024], error=type(exc).__name__)
    finish_if_done(run.pk)
    return SyncRun.objects.get(pk=run.pk)


class _Pipeline:
    """The in-process driver: the API calls of the next items overlap the storing of the last.

    One item after the other, a sync spends each instance's API round trips,
    its rate-limiter wait and its database writes in turn, and stays well
    under the configured rate. Here up to ``run.concurrency`` items are
    fetched at once (:func:`_fetch_item`, on a pool of as many threads, each
    with its own client, all drawing on the client's one rate limiter) while
    this thread, the only one that touches the database, begins the next
    items and stores the fetched ones. An item is the same unit as a Celery
    task's: its instance's lease is held from begin to store, and its
    writes, its ``done`` and its counts commit together.

    The database's round trips, not its work, are what an item's bookkeeping
    costs (on a busy machine each waits for the server's turn), so they are
    shared: the items are claimed and their leases taken a window at a time,
    and the items fetched by the time one is stored are stored in the same
    transaction.
    """

    def __init__(self, run: SyncRun, *, client: DcsClient, on_progress: ProgressCallback | None) -> None:
        self.run_pk = run.pk
        self.width = max(1, run.concurrency)
        self.client = client
        self.on_progress = on_progress
        self.in_flight: dict[Future, tuple[SyncRunItem, locks.Lease]] = {}
        self._local = threading.local()
        self._clients: list[DcsClient] = []
        self.total = SyncRunItem.objects.filter(run_id=run.pk).count()
        self.done = SyncRunItem.objects.filter(run_id=run.pk, state=State.DONE).count()

    def run(self) -> None:
        self._progress()
        pool = ThreadPoolExecutor(max_workers=self.width, thread_name_prefix=f"sync-run-{self.run_pk}")
        try:
            queued = True
            while queued or self.in_flight:
                # Up to twice the threads' number of items are begun, so the
                # threads always have the next one while this one writes, and
                # the items are begun a window at a time, not one by one.
                if queued and len(self.in_flight) <= self.width:
                    queued = self._begin_next(pool, 2 * self.width - len(self.in_flight))
                if self.in_flight:
                    self._store_ready()
        finally:
            # After a crash: the fetches under way end on their own (timeouts
            # and retries are bounded) and the run's leases go with the run.
            pool.shutdown(wait=True, cancel_futures=True)
            for spawned in self._clients:
                self.client.add_counts(spawned)

    def _claim(self, count: int) -> list[SyncRunItem]:
        """Move up to ``count`` of the next queued items straight to running; those claimed.

        This driver alone claims its run's items (a run is driven in
        process or by Celery, never both); only the reaper, finishing the
        run, may take some first.
        """
        items = list(
            SyncRunItem.objects.select_related("run", "instance")
            .filter(run_id=self.run_pk, state=State.QUEUED)
            .order_by("position")[:count]
        )
        if not items or items[0].run.outcome != SyncOutcome.RUNNING:
            return []
        now = timezone.now()
        pks = [item.pk for item in items]
        claimed = SyncRunItem.objects.filter(pk__in=pks, state=State.QUEUED).update(
            state=State.RUNNING, dispatched_at=now, started_at=now
        )
        if claimed < len(items):
            running = set(
                SyncRunItem.objects.filter(pk__in=pks, state=State.RUNNING).values_list("pk", flat=True)
            )
            items = [item for item in items if item.pk in running]
        return items

    def _begin_next(self, pool: ThreadPoolExecutor, count: int) -> bool:
        """Begin up to ``count`` queued items and hand their API calls to the pool; False: none left."""
        items = self._claim(count)
        if not items:
            return False
        token = items[0].run.token
        taken = locks.acquire_each([instance_lease_name(item.instance_id) for item in items], holder=token)
        for item in items:
            # An instance another run holds is waited for as a Celery task would.
            lease = taken.get(instance_lease_name(item.instance_id)) or _instance_lease(item)
            if lease is None:
                self._items_done(1)  # finished already: skipped, or failed as busy
                continue
            self.in_flight[pool.submit(self._fetch, item)] = (item, lease)
        return True

    def _fetch(self, item: SyncRunItem) -> Fetched:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.client.spawn()
            self._clients.append(client)
        return _fetch_item(item, client=client)

    def _store_ready(self) -> None:
        """Store the items whose listings have come, together; renew the leases of those still under way."""
        # Woken at least every third of the lease's ttl, so a listing that
        # takes long (a throttled API's Retry-After) keeps its instance's lease.
        ready, _ = wait(self.in_flight, timeout=locks.default_ttl() / 3, return_when=FIRST_COMPLETED)
        stored = [(future, *self.in_flight.pop(future)) for future in ready]
        if stored:
            self._store(stored)
        for _item, lease in self.in_flight.values():
            lease.keep_alive()

    def _store(self, stored: list[tuple[Future, SyncRunItem, locks.Lease]]) -> None:
        try:
            with transaction.atomic():
                tally = _RunCounts()
                for future, item, _lease in stored:
                    _store_item(item, future.result(), tally=tally)
                tally.write(self.run_pk)
        finally:
            locks.release_each([lease for _future, _item, lease in stored])
        self._items_done(len(stored))

    def _items_done(self, count: int) -> None:
        for _ in range(count):  # the callback hears of every item, as from one after the other
            self.done += 1
            self._progress()

    def _progress(self) -> None:
        if self.on_progress:
            self.on_progress(self.done, self.total)


__all__ = [
    "AUTO",
    "FLEET_LEASE",
    "abandon_run",
    "advance_run",
    "claim_next",
    "data_now",
    "dispatch_window",
    "finalize_run",
    "finish_if_done",
    "plan_fleet",
    "prune_history",
    "reap_stuck_runs",
    "resolve_fleet_kind",
    "run_in_process",
    "run_item",
    "start_active_run",
    "start_fleet_run",
    "start_instance_run",
    "start_run",
]
