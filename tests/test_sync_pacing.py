"""A fleet sync at the API's rate, and an unchanged fleet that costs no write.

The in-process driver lists the next instances on other threads while it
stores the last ones (pipeline._Pipeline); an incremental sync keeps each
instance's check time on its run item instead of writing the instance.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import responses
from django.db import connection
from django.utils import timezone

from backups import locks, sync
from backups.choices import RestoreStatus, SyncOutcome
from backups.dcs.client import DcsClient
from backups.dcs.config import DcsConfig
from backups.dcs.ratelimit import LocalRateLimiter
from backups.dcs.retry import RetryPolicy
from backups.models import DcsInstance, SyncKind, SyncLease, SyncRunItem
from backups.selectors import stale_instances, with_sync_staleness
from backups.sync import items, runs
from tests.conftest import PROJECTS, TEST_AK
from tests.factories import make_instance, make_sync_run

pytestmark = pytest.mark.django_db

BASE = "https://dcs.cn-north-4.myhuaweicloud.com"
PID = PROJECTS[0].project_id
# The sync's own bookkeeping; every other table holds data.
BOOKKEEPING = ("backups_syncrun", "backups_syncrunitem", "backups_syncerror", "backups_synclease")


def _data_writes(statements: list[str]) -> list[str]:
    writes = []
    for sql in statements:
        if not sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            continue
        table = re.search(r'(?:INTO|UPDATE|FROM)\s+"?(\w+)"?', sql, re.IGNORECASE).group(1)
        if table not in BOOKKEEPING:
            writes.append(sql)
    return writes


class _Statements:
    """Every statement this thread's connection runs (all the sync's writes happen on it)."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)


def _client(**kwargs) -> DcsClient:
    return DcsClient(
        DcsConfig(access_key=TEST_AK, secret_key="x", projects=(PROJECTS[0],)),
        retry=RetryPolicy(max_retries=2),
        sleep=lambda seconds: None,
        **kwargs,
    )


def _instances(*ids: str, name: str = "") -> dict:
    return {"instance_num": len(ids), "instances": [{"instance_id": i, "name": name or i} for i in ids]}


def _backups(*ids: str) -> dict:
    records = [{"backup_id": b, "status": "succeed", "created_at": "2026-11-01T00:00:00Z"} for b in ids]
    return {"total_num": len(records), "backup_record_response": records}


def _no_restores() -> None:
    responses.get(re.compile(rf"{re.escape(BASE)}/v2/{PID}/instances/[^/]+/restores"), status=204)


# --- Listing on other threads -------------------------------------------------------


@responses.activate
def test_the_listings_of_several_instances_are_under_way_at_once(settings):
    settings.DCS_SYNC_CONCURRENCY = 2
    responses.get(f"{BASE}/v2/{PID}/instances", json=_instances("i1", "i2", "i3"))
    _no_restores()
    # Each of the first two listings waits for the other: one after the other,
    # neither would get through the barrier.
    barrier = threading.Barrier(2, timeout=30)

    def meet(request):
        if "/i3/" not in request.url:
            barrier.wait()
        instance = request.url.split("/instances/")[1].split("/")[0]
        return 200, {}, json.dumps(_backups(f"{instance}-b1"))

    responses.add_callback(
        responses.GET, re.compile(rf"{re.escape(BASE)}/v2/{PID}/instances/i\d/backups"), meet
    )

    run = sync.sync_fleet(client=_client())

    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    assert (run.instances_synced, run.records_new) == (3, 3)


@responses.activate
def test_the_counts_of_every_thread_add_up_on_the_run_and_the_client(settings):
    settings.DCS_SYNC_CONCURRENCY = 3
    ids = [f"i{n}" for n in range(7)]
    responses.get(f"{BASE}/v2/{PID}/instances", json=_instances(*ids))
    _no_restores()
    for n, instance in enumerate(ids):
        url = f"{BASE}/v2/{PID}/instances/{instance}/backups"
        if n % 3 == 0:  # throttled once, then answered
            responses.get(url, status=429, json={"error_code": "APIG.0308", "error_msg": "throttled"})
        responses.get(url, json=_backups(f"{instance}-b1", f"{instance}-b2"))
    client = _client()

    run = sync.sync_fleet(client=client)

    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    # The instances, 7 backups listings and 3 retries of them, 7 restores listings.
    assert (run.api_calls, run.retries, run.throttles) == (1 + 7 + 3 + 7, 3, 3)
    assert (client.api_calls, client.retries, client.throttles) == (run.api_calls, 3, 3)
    assert client.error_counts == {"APIG.0308": 3}
    assert sum(SyncRunItem.objects.filter(run=run).values_list("api_calls", flat=True)) == run.api_calls - 1
    assert run.records_new == 14


@responses.activate
def test_one_instance_failing_on_its_thread_fails_only_that_instance(settings):
    settings.DCS_SYNC_CONCURRENCY = 4
    responses.get(f"{BASE}/v2/{PID}/instances", json=_instances("i1", "i2", "i3"))
    _no_restores()
    responses.get(f"{BASE}/v2/{PID}/instances/i1/backups", json=_backups("b1"))
    responses.get(
        f"{BASE}/v2/{PID}/instances/i2/backups",
        status=500,
        json={"error_code": "DCS.5078", "error_msg": "failed to query the backup record"},
    )
    responses.get(f"{BASE}/v2/{PID}/instances/i3/backups", json={"total_num": 1})  # no list: malformed

    run = sync.sync_fleet(client=_client())

    assert run.outcome == SyncOutcome.PARTIAL
    assert (run.instances_synced, run.instances_failed) == (1, 2)
    assert {e["scope"]: e["error"] for e in run.errors} == {
        "instance i2": "DcsServerError",
        "instance i3": "DcsMalformedResponse",
    }
    assert not SyncRunItem.objects.exclude(state=SyncRunItem.State.DONE).exists()
    assert not runs.locks.holds_any(run.token)


@responses.activate
def test_a_crash_while_storing_fails_the_run_and_leaves_no_lease(settings, monkeypatch):
    settings.DCS_SYNC_CONCURRENCY = 2
    responses.get(f"{BASE}/v2/{PID}/instances", json=_instances("i1", "i2", "i3"))
    _no_restores()
    responses.get(re.compile(rf"{re.escape(BASE)}/v2/{PID}/instances/i\d/backups"), json=_backups("b1"))

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(items, "store_backups", broken)

    run = sync.sync_fleet(client=_client())

    assert run.outcome == SyncOutcome.FAILED
    assert "RuntimeError: the disk is full" in run.reason
    assert not SyncRunItem.objects.exclude(state=SyncRunItem.State.DONE).exists()
    assert not runs.locks.holds_any(run.token)


def test_a_spawned_client_shares_the_budget_and_counts_on_its_own():
    limiter = LocalRateLimiter(10)
    parent = _client(rate_limiter=limiter, page_size=50)
    parent.api_calls = 5

    child = parent.spawn()

    assert child.rate_limiter is limiter
    assert (child.config, child.page_size, child.retry, child.sleep) == (
        parent.config,
        50,
        parent.retry,
        parent.sleep,
    )
    assert child.session is not parent.session
    assert child.api_calls == 0
    child.api_calls, child.retries = 3, 1
    parent.add_counts(child)
    assert (parent.api_calls, parent.retries) == (8, 1)


# --- An unchanged fleet writes nothing ------------------------------------------------


def test_an_incremental_sync_of_an_unchanged_fleet_writes_no_data_table(
    clocked_simulator, clocked_client, sim_clock
):
    sync.sync_fleet(client=clocked_client)
    statements = _Statements()

    with connection.execute_wrapper(statements):
        run = sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)

    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    assert _data_writes(statements.sql) == []
    # The check is kept on the run's items: one per instance, at the API's now.
    items = SyncRunItem.objects.filter(run=run)
    assert items.count() == DcsInstance.objects.count() > 0
    assert set(items.values_list("checked_at", flat=True)) == {sim_clock.now}


def test_the_next_window_starts_from_the_check_kept_on_the_item(
    settings, clocked_simulator, clocked_client, sim_clock
):
    settings.DCS_INCREMENTAL_OVERLAP = 600
    sync.sync_fleet(client=clocked_client)
    full_at = sim_clock.now
    sim_clock.advance(hours=2)
    sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)
    incremental_at = sim_clock.now
    sim_clock.advance(hours=2)

    run = sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)

    instance = DcsInstance.objects.filter(backups_synced_at__isnull=False).first()
    assert instance.backups_checked_at == instance.backups_synced_at == full_at
    item = SyncRunItem.objects.get(run=run, instance=instance)
    assert item.begin == incremental_at - timedelta(seconds=600)


def test_an_instance_that_failed_its_last_check_is_listed_from_the_one_before(
    clocked_simulator, clocked_client, sim_clock
):
    sync.sync_fleet(client=clocked_client)
    sim_clock.advance(hours=1)
    first = sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)
    item = SyncRunItem.objects.filter(run=first).first()
    # As if its listing had failed: the item records no check.
    SyncRunItem.objects.filter(pk=item.pk).update(checked_at=None)
    sim_clock.advance(hours=1)

    run = sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)

    again = SyncRunItem.objects.get(run=run, instance_id=item.instance_id)
    other = SyncRunItem.objects.filter(run=run).exclude(instance_id=item.instance_id).first()
    overlap = timedelta(seconds=runs.settings.DCS_INCREMENTAL_OVERLAP)
    assert again.begin == sim_clock.now - timedelta(hours=2) - overlap
    assert other.begin == sim_clock.now - timedelta(hours=1) - overlap


def test_restores_listed_by_an_incremental_sync_are_not_due_again_until_the_interval(
    settings, clocked_simulator, clocked_client, sim_clock
):
    settings.DCS_RESTORE_SYNC_INTERVAL = 3600
    sync.sync_fleet(client=clocked_client)
    stamped = dict(DcsInstance.objects.values_list("pk", "restores_checked_at"))
    sim_clock.advance(hours=2)
    due = sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)
    sim_clock.advance(minutes=10)
    clocked_simulator.reset_counts()

    sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)

    # The due listing was recorded on the items, not on the instances.
    assert dict(DcsInstance.objects.values_list("pk", "restores_checked_at")) == stamped
    listed = SyncRunItem.objects.filter(run=due, restores_checked_at__isnull=False).count()
    assert listed == DcsInstance.objects.count()
    # Only the instances with a restore still running are listed again.
    running = (
        DcsInstance.objects.filter(restores__status__in=RestoreStatus.active(), restores__gone_at=None)
        .distinct()
        .count()
    )
    assert clocked_simulator.endpoint_counts.get("ListRestoreRecords", 0) == running


@responses.activate
def test_only_a_changed_instance_is_written_and_a_full_sync_moves_last_seen():
    responses.get(f"{BASE}/v2/{PID}/instances", json=_instances("i1", "i2"))
    _no_restores()
    responses.get(re.compile(rf"{re.escape(BASE)}/v2/{PID}/instances/i\d/backups"), status=204)
    sync.sync_fleet(client=_client())
    seen = dict(DcsInstance.objects.values_list("instance_id", "last_seen"))
    changed = _instances("i1", "i2")
    changed["instances"][1]["name"] = "renamed"
    responses.replace(responses.GET, f"{BASE}/v2/{PID}/instances", json=changed)
    statements = _Statements()

    with connection.execute_wrapper(statements):
        sync.sync_fleet(client=_client(), kind=SyncKind.INCREMENTAL)

    writes = [sql for sql in _data_writes(statements.sql) if "backups_dcsinstance" in sql]
    assert len(writes) == 1 and writes[0].startswith("INSERT")
    rows = {row.instance_id: row for row in DcsInstance.objects.all()}
    assert rows["i2"].name == "renamed" and rows["i2"].last_seen > seen["i2"]
    assert rows["i1"].last_seen == seen["i1"]

    sync.sync_fleet(client=_client())

    assert DcsInstance.objects.get(instance_id="i1").last_seen > seen["i1"]


# --- Pages read the check from the items ---------------------------------------------


def test_a_check_on_an_item_keeps_the_instance_fresh_and_dates_its_last_sync(settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    now = timezone.now()
    run = make_sync_run(started_at=now - timedelta(hours=3))
    fresh = make_instance(
        backups_checked_at=now - timedelta(hours=3), backups_synced_at=now - timedelta(hours=3)
    )
    stale = make_instance(
        backups_checked_at=now - timedelta(hours=3), backups_synced_at=now - timedelta(hours=3)
    )
    old_item = make_instance(backups_checked_at=now - timedelta(hours=1))
    found = make_instance(first_seen=now - timedelta(minutes=5))
    for position, (instance, checked) in enumerate(
        [(fresh, now - timedelta(minutes=5)), (stale, None), (old_item, now - timedelta(hours=2))]
    ):
        SyncRunItem.objects.create(
            run=run,
            instance=instance,
            position=position,
            state="done",
            outcome="succeeded",
            checked_at=checked,
        )

    rows = {row.pk: row for row in with_sync_staleness(DcsInstance.objects.all(), now=now)}

    assert (rows[fresh.pk].sync_stale, rows[fresh.pk].last_synced_at) == (False, now - timedelta(minutes=5))
    assert (rows[stale.pk].sync_stale, rows[stale.pk].last_synced_at) == (True, now - timedelta(hours=3))
    # The instance's own check is newer than its item's.
    assert (rows[old_item.pk].sync_stale, rows[old_item.pk].last_synced_at) == (
        True,
        now - timedelta(hours=1),
    )
    assert (rows[found.pk].sync_stale, rows[found.pk].last_synced_at) == (False, None)
    shown = stale_instances(now=now, limit=10)
    assert [row.pk for row in shown.shown] == [stale.pk, old_item.pk]


# --- Leases a window at a time ---------------------------------------------------------


def test_acquire_each_takes_the_free_the_run_out_and_its_own_and_leaves_the_held():
    locks.acquire("instance:1", holder="run-2", ttl=60)  # held by another
    locks.acquire("instance:2", holder="run-2", ttl=0)  # ran out
    mine = locks.acquire("instance:3", holder="run-1", ttl=60)
    acquired_at = SyncLease.objects.get(name="instance:3").acquired_at

    taken = locks.acquire_each(
        ["instance:1", "instance:2", "instance:3", "instance:4"], holder="run-1", ttl=60
    )

    assert sorted(taken) == ["instance:2", "instance:3", "instance:4"]
    assert dict(SyncLease.objects.values_list("name", "holder")) == {
        "instance:1": "run-2",
        "instance:2": "run-1",
        "instance:3": "run-1",
        "instance:4": "run-1",
    }
    assert SyncLease.objects.get(name="instance:3").acquired_at == acquired_at  # renewed, not taken anew
    assert mine.renew()

    locks.release_each([taken["instance:2"], taken["instance:4"], locks.held("instance:1", holder="run-1")])

    assert dict(SyncLease.objects.values_list("name", "holder")) == {
        "instance:1": "run-2",
        "instance:3": "run-1",
    }


@pytest.mark.django_db(transaction=True)
def test_racing_acquire_each_gives_every_name_to_one_holder():
    names = [f"instance:{n}" for n in range(8)]
    barrier = threading.Barrier(6)

    def take(i: int) -> set[str]:
        try:
            barrier.wait()
            return set(locks.acquire_each(names, holder=f"run-{i}", ttl=60))
        finally:
            connection.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(take, range(6)))

    held = dict(SyncLease.objects.values_list("name", "holder"))
    assert sorted(held) == names
    for i, taken in enumerate(results):
        assert taken == {name for name, holder in held.items() if holder == f"run-{i}"}
