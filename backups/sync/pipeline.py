"""The in-process driver: a whole run here, the API calls of the next items overlapping the last's writes.

It serves ``manage.py sync_backups``, the tests and one-instance syncs; no
broker needed. Each item is the same unit as a Celery task's
(:mod:`backups.sync.items`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.db import transaction
from django.utils import timezone

from backups import locks
from backups.choices import SyncOutcome
from backups.db import bulk_writer
from backups.dcs.client import DcsClient
from backups.models import SyncRun, SyncRunItem
from backups.sync.items import Fetched, RunCounts, fetch_item, instance_lease, store_item
from backups.sync.runs import abandon_run, finish_if_done, instance_lease_name, run_lease_name

logger = logging.getLogger("backups.sync")

ProgressCallback = Callable[[int, int], None]  # (instances done, instances total)

State = SyncRunItem.State


def run_in_process(
    run: SyncRun,
    *,
    client: DcsClient,
    plan: Callable[[], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> SyncRun:
    """Plan (if needed) and run every item here; returns the finished run.

    Up to ``run.concurrency`` items are listed at once on other threads
    (:class:`_Pipeline`) while this thread stores them, those ready
    together in one transaction.
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
    fetched at once (:func:`fetch_item`, on a pool of as many threads, each
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
            with bulk_writer():
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
            lease = taken.get(instance_lease_name(item.instance_id)) or instance_lease(item)
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
        return fetch_item(item, client=client)

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
                tally = RunCounts()
                for future, item, _lease in stored:
                    store_item(item, future.result(), tally=tally)
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
    "ProgressCallback",
    "run_in_process",
]
