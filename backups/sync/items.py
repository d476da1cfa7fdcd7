"""One run item: sync one instance's backups (and restores), the per-instance code of every driver.

An item is begun (marked running, its instance's lease taken), fetched (the
API calls, no database) and stored (its writes, its ``done`` and its counts
added to the run, in one transaction); only an item not yet done may count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backups import locks
from backups.choices import SyncOutcome
from backups.db import bulk_writer
from backups.dcs.client import DcsClient
from backups.dcs.errors import DcsError
from backups.models import SKIPPED, DcsInstance, SyncError, SyncKind, SyncRun, SyncRunItem
from backups.sync.listings import BackupsListed, Problem, StoredCounts, fetch_backups, store_backups
from backups.sync.restores import RestoresListed, fetch_restores, store_restores
from backups.sync.runs import describe_holder, instance_lease_name, run_lease_name

logger = logging.getLogger("backups.sync")

# A fleet run's item waits this long for an instance that another run (the
# active poll, a "Sync now") is syncing right now; those take seconds.
INSTANCE_LEASE_WAIT = 10.0
# Errors kept per item; a listing with thousands of bad records keeps a sample.
MAX_ERRORS_PER_ITEM = 20

State = SyncRunItem.State


def data_now(client: DcsClient) -> datetime:
    """The API's "now": the client's clock when it has one (tests move it by hand)."""
    return client.clock() if client.clock else timezone.now()


def api_counters(client: DcsClient) -> tuple[int, int, int]:
    return client.api_calls, client.retries, client.throttles


def api_calls_since(client: DcsClient, before: tuple[int, int, int]) -> tuple[int, int, int]:
    after = api_counters(client)
    return after[0] - before[0], after[1] - before[1], after[2] - before[2]


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
        with locks.keep_alive(lease, run_lease), bulk_writer():
            store_item(item, fetch_item(item, client=client))
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
    return item, instance_lease(item)


def instance_lease(item: SyncRunItem) -> locks.Lease | None:
    """Take the item's instance, waiting a little for another run that holds it.

    None: that run held it too long, and the item is finished already
    (skipped on the active poll, failed with the reason otherwise).
    """
    run = item.run
    wait = 0.0 if run.kind == SyncKind.ACTIVE else INSTANCE_LEASE_WAIT
    name = instance_lease_name(item.instance_id)
    lease = locks.acquire(name, holder=run.token, wait=wait)
    if lease is None:
        holder = describe_holder(locks.holder_of(name))
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


def fetch_item(item: SyncRunItem, *, client: DcsClient) -> Fetched:
    """The API half of an item: list (and parse) its backups and, when due, its restores.

    Touches no database, so the in-process driver runs it on other threads,
    each with its own client (:meth:`DcsClient.spawn`). Never raises: a
    failure is a problem of the instance.
    """
    instance = item.instance
    scope = f"instance {instance.instance_id}"
    before = api_counters(client)
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
    calls, retries, throttles = api_calls_since(client, before)
    return Fetched(now, listed, restores, problems, calls, retries, throttles)


def store_item(item: SyncRunItem, fetched: Fetched, *, tally: RunCounts | None = None) -> None:
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
class RunCounts:
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

    def add(self, other: RunCounts) -> None:
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
    tally: RunCounts | None = None,
) -> bool:
    """Mark the item done and add its counts to the run, once; False if it was done already.

    With ``tally``, the counts are added there, for the caller to write to
    the run in the same transaction (the in-process driver, a few items at once).
    """
    counts = counts or StoredCounts()
    # Its own transaction, or part of the item's (store_item) with no
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
        added = RunCounts(
            records_new=counts.new,
            records_updated=counts.updated,
            records_gone=counts.gone,
            api_calls=api_calls,
            retries=retries,
            throttles=throttles,
            error_count=record_errors(item.run_id, problems, instance=item.instance),
            instances_synced=1 if outcome == SyncOutcome.SUCCEEDED else 0,
            instances_failed=1 if outcome in (SyncOutcome.FAILED, SyncOutcome.PARTIAL) else 0,
        )
        if tally is not None:
            tally.add(added)
        else:
            # The run's row last, so concurrent items of the run hold its lock briefly.
            added.write(item.run_id)
    return True


def record_errors(run_id: int, problems: list[Problem], *, instance: DcsInstance | None) -> int:
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


__all__ = [
    "Fetched",
    "RunCounts",
    "api_calls_since",
    "api_counters",
    "data_now",
    "fetch_item",
    "instance_lease",
    "record_errors",
    "run_item",
    "store_item",
]
