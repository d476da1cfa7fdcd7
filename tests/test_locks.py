"""Leases (backups.locks), on the real database: atomic under races, expiring, renewable.

The races run in threads, each with its own database connection, so they race
in the database as separate processes would (the suite also runs on PostgreSQL).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from backups import locks, sync
from backups.choices import SyncOutcome
from backups.dcs.client import DcsClient
from backups.models import SKIPPED, BackupRecord, SyncLease, SyncRun, SyncRunItem
from backups.simulator.server import SimulatorServer
from tests.conftest import PROJECTS, FakeClock, make_config, make_simulator

pytestmark = pytest.mark.django_db(transaction=True)

RACERS = 12


def _race(target, n: int = RACERS) -> list:
    """Run ``target(i)`` in n threads released at once; each thread uses and closes its own connection."""
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait()
            return target(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_it_refuses_a_held_lease_and_gives_it_up_on_release():
    lease = locks.acquire("sync:fleet", holder="run-1", ttl=60)
    assert lease is not None
    assert locks.acquire("sync:fleet", holder="run-2", ttl=60) is None
    assert locks.holder_of("sync:fleet") == "run-1"
    lease.release()
    assert locks.holder_of("sync:fleet") is None
    assert locks.acquire("sync:fleet", holder="run-2", ttl=60) is not None


def test_taking_a_lease_you_hold_renews_it():
    locks.acquire("instance:1", holder="run-1", ttl=1)
    before = SyncLease.objects.get().expires_at
    assert locks.acquire("instance:1", holder="run-1", ttl=60) is not None
    assert SyncLease.objects.get().expires_at > before + timedelta(seconds=30)


def test_a_lease_that_ran_out_can_be_taken_and_its_old_holder_knows():
    old = locks.acquire("instance:1", holder="run-1", ttl=0.3)
    time.sleep(0.5)
    assert locks.holder_of("instance:1") is None
    assert locks.acquire("instance:1", holder="run-2", ttl=60) is not None
    assert old.renew() is False
    assert old.lost
    old.release()  # releases nothing: the lease is someone else's now
    assert locks.holder_of("instance:1") == "run-2"


def test_acquire_waits_for_a_release():
    lease = locks.acquire("instance:1", holder="run-1", ttl=60)
    releasing = threading.Event()

    def release():
        releasing.set()
        lease.release()
        connection.close()

    threading.Timer(0.3, release).start()
    assert locks.acquire("instance:1", holder="run-2", wait=30) is not None
    assert releasing.is_set()  # it waited for the release, and took the lease once it came
    assert locks.holder_of("instance:1") == "run-2"


def test_exactly_one_of_many_racers_gets_a_free_lease():
    for round_ in range(3):
        won = _race(lambda i, r=round_: locks.acquire(f"race:{r}", holder=f"run-{i}", ttl=60) is not None)
        assert sum(won) == 1, won


def test_exactly_one_of_many_racers_takes_over_a_lease_that_ran_out():
    for round_ in range(3):
        name = f"expired:{round_}"
        locks.acquire(name, holder="dead-worker", ttl=60)
        SyncLease.objects.filter(name=name).update(expires_at=timezone.now() - timedelta(seconds=1))
        won = _race(lambda i, n=name: locks.acquire(n, holder=f"run-{i}", ttl=60) is not None)
        assert sum(won) == 1, won
        assert locks.holder_of(name) != "dead-worker"


def test_keep_alive_renews_a_lease_while_work_runs():
    # A ttl of seconds, not tenths: a renewal comes every 0.4 s, with room for a loaded machine.
    lease = locks.acquire("instance:1", holder="run-1", ttl=1.2)
    with locks.keep_alive(lease):
        time.sleep(2.6)  # more than twice the ttl
        assert locks.holder_of("instance:1") == "run-1"
    assert not lease.lost
    time.sleep(1.4)
    assert locks.holder_of("instance:1") is None, "no renewal after the block"


@pytest.fixture
def frozen():
    """A simulator whose clock stands still at the real now, so its truth does not move."""
    simulator = make_simulator(clock=FakeClock(datetime.now(UTC)))
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield simulator, server


def test_two_fleet_syncs_started_at_once_do_the_work_once(frozen):
    simulator, server = frozen
    # Slow answers keep the first sync busy while the second one starts.
    simulator.faults.configure(slow_rate=1.0, slow_seconds=0.05)

    def fleet_sync(i):
        client = DcsClient(make_config(server.url), connect_timeout=2, read_timeout=10)
        return sync.sync_fleet(client=client).pk

    ran = SyncRun.objects.filter(pk__in=_race(fleet_sync, n=2))

    assert sorted(ran.values_list("outcome", flat=True)) == sorted([SyncOutcome.SUCCEEDED, SKIPPED])
    skipped = ran.get(outcome=SKIPPED)
    winner = ran.get(outcome=SyncOutcome.SUCCEEDED)
    assert f"run #{winner.pk}" in skipped.reason
    assert not SyncRunItem.objects.filter(run=skipped).exists()
    assert simulator.endpoint_counts == {
        "ListInstances": len(PROJECTS),
        "ListBackupRecords": winner.instances_seen,
        "ListRestoreRecords": winner.instances_seen,
    }, "every project and instance was listed once"
    expected = {
        (instance["instance_id"], record["backup_id"])
        for project in PROJECTS
        for instance in simulator.list_instances(project.project_id)
        for record in simulator.list_backups(project.project_id, instance["instance_id"])
    }
    stored = list(BackupRecord.objects.values_list("instance__instance_id", "backup_id"))
    assert len(stored) == len(set(stored)) == len(expected), "no duplicate rows"
    assert set(stored) == expected
    assert not SyncLease.objects.exists()
