"""Sync runs as a whole: their leases, the Celery fan-out, finishing, the reaper and pruning.

A run is planned (:mod:`backups.sync.planning`) into one :class:`SyncRunItem`
per instance. The same per-instance code (:func:`backups.sync.items.run_item`)
serves two drivers:

- **in-process** (``manage.py sync_backups``, tests, one-instance syncs): the
  items' listings are fetched on a few threads while this process's one
  writer stores them, no broker needed (:mod:`backups.sync.pipeline`);
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
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from backups import locks
from backups.choices import SyncOutcome
from backups.models import SKIPPED, SyncError, SyncKind, SyncRun, SyncRunItem

logger = logging.getLogger("backups.sync")

FLEET_LEASE = "sync:fleet"
ACTIVE_LEASE = "sync:active"

Dispatch = Callable[[int], None]  # hands an item's pk to a worker

State = SyncRunItem.State


def run_lease_name(run: SyncRun) -> str:
    if run.kind == SyncKind.ACTIVE:
        return ACTIVE_LEASE
    if run.kind == SyncKind.INSTANCE:
        return f"sync:instance:{run.instance_id}"
    return FLEET_LEASE


def instance_lease_name(instance_pk: int) -> str:
    return f"instance:{instance_pk}"


def describe_holder(holder: str | None) -> str:
    if holder and holder.startswith("run-"):
        return f"run #{holder[4:]}"
    return holder or "another run"


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
    log_run(run)
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


def log_run(run: SyncRun) -> None:
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


__all__ = [
    "ACTIVE_LEASE",
    "FLEET_LEASE",
    "abandon_run",
    "advance_run",
    "claim_next",
    "describe_holder",
    "dispatch_window",
    "finalize_run",
    "finish_if_done",
    "instance_lease_name",
    "log_run",
    "prune_history",
    "reap_stuck_runs",
    "run_lease_name",
]
