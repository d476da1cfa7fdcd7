"""The sync service, over real HTTP against the simulator, into the real database.

`responses` stands in for the API only where a test needs an answer the
simulator does not give on its own (a 500 for one instance, a bad record).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import random
import re
import socket
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backups import locks, sync
from backups.choices import SyncOutcome
from backups.dcs.client import DcsClient
from backups.dcs.config import DcsConfig
from backups.dcs.retry import RetryPolicy
from backups.models import (
    SKIPPED,
    BackupRecord,
    BackupStatusChange,
    DcsInstance,
    SyncError,
    SyncKind,
    SyncLease,
    SyncRun,
    SyncRunItem,
    SyncTrigger,
    WorkerHeartbeat,
)
from backups.sync import items, planning, runs
from backups.sync.health import broker_state
from backups.tasks import SyncUnavailable, record_heartbeat, request_sync
from tests.conftest import PROJECTS, TEST_AK, TEST_SK, make_config

pytestmark = pytest.mark.django_db


def _truth(simulator, now=None) -> dict[tuple[str, str], list[dict]]:
    """Every (instance id, backup id) the simulator lists right now."""
    truth = {}
    for project in PROJECTS:
        for instance in simulator.list_instances(project.project_id, now=now):
            truth[(project.project_id, instance["instance_id"])] = simulator.list_backups(
                project.project_id, instance["instance_id"], now=now
            )
    return truth


def test_it_syncs_the_whole_fleet_over_http(clocked_simulator, clocked_client):
    # The simulator on a stopped clock: a live one may start a backup between the sync and the truth.
    run = sync.sync_fleet(client=clocked_client)

    truth = _truth(clocked_simulator)
    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    assert (run.kind, run.trigger) == (SyncKind.FULL, SyncTrigger.COMMAND)
    assert run.instances_seen == len(truth) == DcsInstance.objects.count() == run.instances_synced
    expected_records = sum(len(records) for records in truth.values())
    assert expected_records > 0
    assert run.records_new == expected_records == BackupRecord.objects.count()
    # One listing call per project, two per instance (backups, restores): pages are 1000 records.
    assert run.api_calls == len(PROJECTS) + 2 * len(truth)
    assert (run.retries, run.throttles, run.error_count) == (0, 0, 0)
    assert run.finished_at >= run.started_at
    assert DcsInstance.objects.filter(region="ap-southeast-1").exists()
    assert set(SyncRunItem.objects.filter(run=run).values_list("state", "outcome")) == {("done", "succeeded")}
    # The run let go of every lease it took.
    assert not SyncLease.objects.exists()


def test_it_stores_real_types(simulator, dcs_client):
    sync.sync_fleet(client=dcs_client)
    record = BackupRecord.objects.filter(status="succeed").select_related("instance").first()
    listed = {
        r["backup_id"]: r
        for r in simulator.list_backups(record.instance.project_id, record.instance.instance_id)
    }[record.backup_id]
    assert record.size == int(listed["size"])
    assert record.is_support_restore is True
    assert record.created_at.utcoffset().total_seconds() == 0
    assert record.raw == listed
    assert record.first_seen == record.last_seen
    assert not record.status_changes.exists(), "seen in one state: the row itself says which"
    instance = record.instance
    assert instance.backups_synced_at == instance.backups_checked_at is not None


def test_a_second_sync_creates_nothing_new(clocked_simulator, clocked_client):
    sync.sync_fleet(client=clocked_client)
    before = BackupRecord.objects.count()
    run = sync.sync_fleet(client=clocked_client)
    assert run.outcome == SyncOutcome.SUCCEEDED
    assert (run.records_new, run.records_updated, run.records_gone) == (0, 0, 0)
    assert BackupRecord.objects.count() == before


def test_it_keeps_records_that_vanish_upstream(simulator, dcs_client):
    sync.sync_fleet(client=dcs_client)
    record = BackupRecord.objects.filter(status="succeed").select_related("instance").first()
    simulator.drop_backup(record.instance.project_id, record.instance.instance_id, record.backup_id)

    run = sync.sync_fleet(client=dcs_client)

    record.refresh_from_db()
    assert record.gone_at is not None
    assert run.records_gone >= 1
    assert BackupRecord.objects.filter(gone_at__isnull=False, pk=record.pk).exists()


def test_it_keeps_instances_that_vanish_upstream(clocked_simulator, clocked_client):
    sync.sync_fleet(client=clocked_client)
    instance = DcsInstance.objects.filter(backups__isnull=False).distinct().first()
    kept = instance.backups.count()
    clocked_simulator.delete_instance(instance.project_id, instance.instance_id)

    run = sync.sync_fleet(client=clocked_client)

    instance.refresh_from_db()
    assert instance.gone_at is not None
    assert run.instances_gone == 1
    # Kept, and marked gone with their instance.
    assert instance.backups.count() == kept == instance.backups.filter(gone_at=instance.gone_at).count()
    assert run.records_gone == kept
    assert run.outcome == SyncOutcome.SUCCEEDED
    # Should it come back, it is listed completely again.
    assert instance.backups_synced_at is None


def test_it_marks_a_returning_record_present_again(clocked_simulator, clocked_client):
    sync.sync_fleet(client=clocked_client)
    record = BackupRecord.objects.first()
    BackupRecord.objects.filter(pk=record.pk).update(gone_at=record.created_at)
    run = sync.sync_fleet(client=clocked_client)
    record.refresh_from_db()
    assert record.gone_at is None
    assert run.records_updated == 1


def test_it_records_status_history_as_observed(clocked_simulator, clocked_client, sim_clock):
    sync.sync_fleet(client=clocked_client)
    # The simulator always has a backup waiting or running; take the newest.
    waiting = BackupRecord.objects.active().order_by("-created_at").first()
    assert waiting is not None, "the simulator always has a backup in progress"

    for _ in range(40):
        sim_clock.advance(seconds=20)
        sync.sync_active_instances(client=clocked_client)
        waiting.refresh_from_db()
        if waiting.status not in ("waiting", "backuping"):
            break

    history = list(waiting.status_changes.values_list("status", "progress"))
    statuses = [status for status, _ in history]
    assert statuses[0] in ("waiting", "backuping")
    assert statuses.count("backuping") >= 2, history
    assert statuses[-1] in ("succeed", "failed")
    running = [progress for status, progress in history if status == "backuping"]
    assert running == sorted(running)
    observed = list(waiting.status_changes.values_list("observed_at", flat=True))
    assert observed == sorted(observed)


def test_an_active_poll_marks_nothing_gone(clocked_simulator, clocked_client, sim_clock):
    sync.sync_fleet(client=clocked_client)
    total = BackupRecord.objects.count()
    sim_clock.advance(seconds=30)
    run = sync.sync_active_instances(client=clocked_client)
    assert run is not None and run.scope == "active" and run.kind == SyncKind.ACTIVE
    assert run.records_gone == 0
    assert BackupRecord.objects.filter(gone_at__isnull=False).count() == 0
    assert BackupRecord.objects.count() >= total
    # Each active instance was asked for a window, not for everything.
    assert SyncRunItem.objects.filter(run=run, begin__isnull=True).count() == 0


def test_it_records_no_active_run_when_nothing_is_running(dcs_client):
    assert sync.sync_active_instances(client=dcs_client) is None
    assert not SyncRun.objects.exists()


def test_a_rejected_signature_fails_the_run_and_deletes_nothing(simulator, simulator_server, dcs_client):
    sync.sync_fleet(client=dcs_client)
    records = BackupRecord.objects.count()
    bad = DcsClient(dataclasses.replace(make_config(simulator_server.url), secret_key="wrong"))

    run = sync.sync_fleet(client=bad)

    assert run.outcome == SyncOutcome.FAILED
    assert {error["error_code"] for error in run.errors} == {"APIG.0301"}
    assert all(error["request_id"] for error in run.errors)
    assert run.error_count == len(PROJECTS)
    assert BackupRecord.objects.filter(gone_at__isnull=True).count() == records
    assert DcsInstance.objects.filter(gone_at__isnull=False).count() == 0


# --- Incremental syncs --------------------------------------------------------


def _backup_writes(queries) -> list[str]:
    tables = ('"backups_backuprecord"', '"backups_backupstatuschange"')
    writes = tuple(f"{verb} {table}" for verb in ("INSERT INTO", "UPDATE", "DELETE FROM") for table in tables)
    return [q["sql"] for q in queries if q["sql"].startswith(writes)]


def test_an_incremental_sync_of_an_unchanged_fleet_asks_once_per_instance_and_writes_no_record(
    clocked_simulator, clocked_client
):
    sync.sync_fleet(client=clocked_client)
    instances = DcsInstance.objects.count()
    clocked_simulator.reset_counts()

    with CaptureQueriesContext(connection) as queries:
        run = sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)

    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    assert run.kind == SyncKind.INCREMENTAL
    # The restores were listed by the full sync a moment ago: not due yet.
    assert run.api_calls == len(PROJECTS) + instances
    assert clocked_simulator.endpoint_counts == {
        "ListInstances": len(PROJECTS),
        "ListBackupRecords": instances,
    }
    assert (run.records_new, run.records_updated, run.records_gone) == (0, 0, 0)
    assert _backup_writes(queries.captured_queries) == []


def test_an_incremental_sync_stores_what_is_new_and_marks_nothing_gone(
    clocked_simulator, clocked_client, sim_clock
):
    sync.sync_fleet(client=clocked_client)
    record = BackupRecord.objects.filter(status="succeed").select_related("instance").first()
    clocked_simulator.drop_backup(record.instance.project_id, record.instance.instance_id, record.backup_id)
    sim_clock.advance(minutes=10)

    run = sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)

    truth = _truth(clocked_simulator)
    listed = {r["backup_id"] for records in truth.values() for r in records}
    stored = set(BackupRecord.objects.values_list("backup_id", flat=True))
    assert run.records_new > 0
    assert listed <= stored, "every record listed now is stored"
    assert run.records_gone == 0
    assert not BackupRecord.objects.filter(gone_at__isnull=False).exists()

    # The next full sync does the gone-marking.
    full = sync.sync_fleet(client=clocked_client)
    record.refresh_from_db()
    assert record.gone_at is not None
    assert full.records_gone >= 1


def test_the_beat_tick_is_full_only_when_the_last_full_sync_is_old(
    settings, clocked_simulator, clocked_client
):
    settings.DCS_FULL_SYNC_INTERVAL = 3600
    assert planning.resolve_fleet_kind(planning.AUTO) == SyncKind.FULL  # never synced
    first = sync.sync_fleet(client=clocked_client, kind=planning.AUTO)
    assert first.kind == SyncKind.FULL
    assert sync.sync_fleet(client=clocked_client, kind=planning.AUTO).kind == SyncKind.INCREMENTAL
    SyncRun.objects.filter(pk=first.pk).update(started_at=timezone.now() - timedelta(hours=2))
    assert planning.resolve_fleet_kind(planning.AUTO) == SyncKind.FULL


# --- Locks, fan-out, the reaper --------------------------------------------------


def test_a_fleet_sync_refused_by_the_lease_is_recorded_as_skipped(simulator, dcs_client, caplog):
    assert locks.acquire(runs.FLEET_LEASE, holder="run-999999") is not None
    simulator.reset_counts()

    with caplog.at_level(logging.INFO, logger="backups.sync"):
        run = sync.sync_fleet(client=dcs_client)

    assert run.outcome == SKIPPED
    assert "run #999999" in run.reason
    assert run.finished_at is not None
    assert simulator.request_count == 0
    assert not BackupRecord.objects.exists()
    assert any("outcome=skipped" in message for message in caplog.messages)


def _finish_with_fake_workers(
    run: SyncRun, client: DcsClient, *, seed: int, queue: list[int] | None = None
) -> int:
    """Drive a planned run as Celery would, with tasks taken from the queue in random order.

    Returns the largest number of items that were in flight at once.
    """
    queue = [] if queue is None else queue
    rng = random.Random(seed)
    runs.dispatch_window(run, dispatch=queue.append)
    most = 0
    while queue:
        in_flight = SyncRunItem.objects.filter(run=run, state__in=["dispatched", "running"]).count()
        most = max(most, in_flight)
        item_pk = queue.pop(rng.randrange(len(queue)))
        items.run_item(item_pk, client=client)
        runs.advance_run(run.pk, dispatch=queue.append)
    return most


def test_the_fan_out_keeps_at_most_the_concurrency_in_flight(settings, clocked_simulator, clocked_client):
    settings.DCS_SYNC_CONCURRENCY = 3
    run = planning.start_fleet_run(kind=SyncKind.FULL, trigger=SyncTrigger.BEAT, task_id="celery-task-1")
    planning.plan_fleet(run, client=clocked_client)
    assert run.concurrency == 3

    most = _finish_with_fake_workers(run, clocked_client, seed=1)

    run.refresh_from_db()
    truth = _truth(clocked_simulator)
    assert most == 3
    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    assert run.instances_synced == len(truth)
    assert run.records_new == sum(len(r) for r in truth.values()) == BackupRecord.objects.count()
    assert run.api_calls == len(PROJECTS) + 2 * len(truth)
    assert not SyncLease.objects.exists()


def test_a_task_delivered_again_neither_syncs_nor_counts_twice(clocked_simulator, clocked_client):
    run = planning.start_fleet_run(kind=SyncKind.FULL, trigger=SyncTrigger.BEAT, task_id="celery-task-2")
    planning.plan_fleet(run, client=clocked_client)
    # The fleet task again: the same run, planned once, and no more than the window dispatched.
    assert (
        planning.start_fleet_run(kind=SyncKind.FULL, trigger=SyncTrigger.BEAT, task_id="celery-task-2") == run
    )
    queue: list[int] = []
    runs.dispatch_window(run, dispatch=queue.append)
    runs.dispatch_window(run, dispatch=queue.append)
    assert len(queue) == run.concurrency
    _finish_with_fake_workers(run, clocked_client, seed=2, queue=queue)
    run.refresh_from_db()
    counts = (run.records_new, run.api_calls, run.instances_synced)
    clocked_simulator.reset_counts()

    for item_pk in SyncRunItem.objects.filter(run=run).values_list("pk", flat=True):
        assert items.run_item(item_pk, client=clocked_client) is None

    run.refresh_from_db()
    assert (run.records_new, run.api_calls, run.instances_synced) == counts
    assert clocked_simulator.request_count == 0


def test_the_reaper_finishes_a_run_whose_worker_died(settings, clocked_simulator, clocked_client):
    settings.DCS_SYNC_LEASE_TTL = 60
    run = planning.start_fleet_run(kind=SyncKind.FULL, trigger=SyncTrigger.BEAT)
    planning.plan_fleet(run, client=clocked_client)
    first = runs.claim_next(run.pk)
    items.run_item(first, client=clocked_client)
    runs.claim_next(run.pk)  # dispatched to a worker that then died
    assert runs.reap_stuck_runs() == [], "a run whose lease is alive is left alone"

    # A minute later nobody has renewed the run's lease.
    SyncRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=2))
    SyncLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    reaped = runs.reap_stuck_runs()

    assert [r.pk for r in reaped] == [run.pk]
    run.refresh_from_db()
    assert run.outcome == SyncOutcome.PARTIAL
    assert "lease was not renewed for 60 s" in run.reason
    assert run.finished_at is not None
    assert not SyncRunItem.objects.filter(run=run).exclude(state="done").exists()
    assert SyncError.objects.filter(run=run, error="Stalled").count() == 1
    assert not SyncLease.objects.exists()
    # The next fleet sync gets the lease.
    assert sync.sync_fleet(client=clocked_client).outcome == SyncOutcome.SUCCEEDED


def test_a_fleet_sync_waits_for_a_busy_instance_and_then_reports_it(
    monkeypatch, clocked_simulator, clocked_client
):
    monkeypatch.setattr(items, "INSTANCE_LEASE_WAIT", 0.3)
    sync.sync_fleet(client=clocked_client)
    busy = DcsInstance.objects.filter(backups__isnull=False).distinct().first()
    locks.acquire(runs.instance_lease_name(busy.pk), holder="run-424242")

    run = sync.sync_fleet(client=clocked_client)

    assert run.outcome == SyncOutcome.PARTIAL
    assert [(e["scope"], e["error"]) for e in run.errors] == [
        (f"instance {busy.instance_id}", "InstanceBusy")
    ]
    assert "run #424242" in run.errors[0]["message"]


def test_an_active_poll_skips_a_busy_instance_quietly(clocked_simulator, clocked_client):
    sync.sync_fleet(client=clocked_client)
    for pk in BackupRecord.objects.active().values_list("instance_id", flat=True).distinct():
        locks.acquire(runs.instance_lease_name(pk), holder="run-424242")

    run = sync.sync_active_instances(client=clocked_client)

    assert run.outcome == SyncOutcome.SUCCEEDED
    assert run.api_calls == 0
    assert set(SyncRunItem.objects.filter(run=run).values_list("outcome", flat=True)) == {SKIPPED}


def test_old_items_and_runs_are_pruned(settings, clocked_simulator, clocked_client):
    settings.DCS_SYNC_RUN_RETENTION_DAYS = 7
    old = sync.sync_fleet(client=clocked_client)
    recent = sync.sync_fleet(client=clocked_client)
    SyncRun.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=8))
    SyncRun.objects.filter(pk=recent.pk).update(finished_at=timezone.now() - timedelta(days=2))

    pruned = runs.prune_history()

    assert pruned["runs_pruned"] == 1
    assert list(SyncRun.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not SyncRunItem.objects.exists()


def test_one_log_line_per_run_with_the_counts_and_no_secret(simulator, dcs_client, caplog):
    with caplog.at_level(logging.INFO, logger="backups.sync"):
        run = sync.sync_fleet(client=dcs_client)
    lines = [r.getMessage() for r in caplog.records if r.name == "backups.sync"]
    assert len(lines) == 1
    assert f"sync run={run.pk} kind=full trigger=command" in lines[0]
    assert f"api_calls={run.api_calls} retries=0 throttles=0 errors=0" in lines[0]
    assert f"records_new={run.records_new}" in lines[0]
    assert TEST_SK not in caplog.text


# --- Errors, retries and throttles, at the HTTP boundary ---------------------------

BASE = "https://dcs.cn-north-4.myhuaweicloud.com"
ONE_PROJECT = (PROJECTS[0],)


def _no_restores(pid: str) -> None:
    """Every instance lists no restore (204), so these tests count only what they are about."""
    responses.get(re.compile(rf"{re.escape(BASE)}/v2/{pid}/instances/[^/]+/restores"), status=204)


def _api_client():
    # No waiting between retries: the retries are counted, not slept through.
    return DcsClient(
        DcsConfig(access_key=TEST_AK, secret_key="x", projects=ONE_PROJECT),
        retry=RetryPolicy(max_retries=2),
        sleep=lambda seconds: None,
    )


def _record(backup_id: str, created: str = "2026-11-01T00:00:00Z") -> dict:
    return {"backup_id": backup_id, "status": "succeed", "created_at": created}


@responses.activate
def test_a_record_with_a_nul_in_its_text_is_stored_with_its_listing():
    # PostgreSQL's text and jsonb refuse U+0000: one such remark used to fail the
    # whole listing's write, so none of the instance's records were stored.
    pid = PROJECTS[0].project_id
    responses.get(
        f"{BASE}/v2/{pid}/instances", json={"instance_num": 1, "instances": [{"instance_id": "i1"}]}
    )
    nul = {**_record("b1"), "remark": "before\u0000after", "extra\u0000key": "\u0000"}
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups",
        json={"total_num": 2, "backup_record_response": [nul, _record("b2")]},
    )
    _no_restores(pid)

    run = sync.sync_fleet(client=_api_client())

    assert run.outcome == SyncOutcome.SUCCEEDED
    assert run.records_new == 2
    record = BackupRecord.objects.get(backup_id="b1")
    assert record.remark == "before\ufffdafter"
    assert record.raw["extra\ufffdkey"] == "\ufffd"


@responses.activate
def test_a_failed_instance_listing_is_partial_and_marks_nothing_gone():
    pid = PROJECTS[0].project_id
    instances = {"instance_num": 2, "instances": [{"instance_id": "i1"}, {"instance_id": "i2"}]}
    responses.get(f"{BASE}/v2/{pid}/instances", json=instances)
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups",
        json={"total_num": 1, "backup_record_response": [_record("b1")]},
    )
    responses.get(f"{BASE}/v2/{pid}/instances/i2/backups", status=204)
    _no_restores(pid)
    sync.sync_fleet(client=_api_client())

    responses.reset()
    _no_restores(pid)
    responses.get(f"{BASE}/v2/{pid}/instances", json=instances)
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups",
        status=500,
        json={"error_code": "DCS.5078", "error_msg": "failed to query the backup record"},
        headers={"X-Request-Id": "req-500"},
    )
    responses.get(f"{BASE}/v2/{pid}/instances/i2/backups", status=204)
    run = sync.sync_fleet(client=_api_client())

    assert run.outcome == SyncOutcome.PARTIAL
    assert (run.instances_synced, run.instances_failed) == (1, 1)
    assert run.retries == 2  # the client's retries, counted on the run
    # i1's backups three times, then nothing more of i1; i2's backups and restores.
    assert run.api_calls == 1 + 3 + 2
    [error] = run.errors
    assert {k: error[k] for k in ("scope", "error", "status", "error_code", "request_id")} == {
        "scope": "instance i1",
        "error": "DcsServerError",
        "status": 500,
        "error_code": "DCS.5078",
        "request_id": "req-500",
    }
    assert "failed to query the backup record" in error["message"]
    row = SyncError.objects.get()
    assert row.instance.instance_id == "i1"
    assert BackupRecord.objects.get(backup_id="b1").gone_at is None


@responses.activate
def test_it_counts_throttles_and_retries_on_the_run():
    pid = PROJECTS[0].project_id
    responses.get(
        f"{BASE}/v2/{pid}/instances", json={"instance_num": 1, "instances": [{"instance_id": "i1"}]}
    )
    url = f"{BASE}/v2/{pid}/instances/i1/backups"
    _no_restores(pid)
    responses.get(url, status=429, json={"error_code": "APIG.0308", "error_msg": "throttled"})
    responses.get(url, json={"total_num": 1, "backup_record_response": [_record("b1")]})

    run = sync.sync_fleet(client=_api_client())

    assert run.outcome == SyncOutcome.SUCCEEDED
    assert (run.api_calls, run.retries, run.throttles) == (4, 1, 1)


@responses.activate
def test_a_bad_record_is_skipped_and_the_listing_counts_as_partial():
    pid = PROJECTS[0].project_id
    responses.get(
        f"{BASE}/v2/{pid}/instances", json={"instance_num": 1, "instances": [{"instance_id": "i1"}]}
    )
    good = {"backup_id": "b1", "status": "succeed", "progress": "100.00"}
    old = {"backup_id": "b0", "status": "succeed"}
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups", json={"total_num": 2, "backup_record_response": [good, old]}
    )
    _no_restores(pid)
    sync.sync_fleet(client=_api_client())

    responses.reset()
    _no_restores(pid)
    responses.get(
        f"{BASE}/v2/{pid}/instances", json={"instance_num": 1, "instances": [{"instance_id": "i1"}]}
    )
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups",
        json={"total_num": 2, "backup_record_response": [good, {"backup_id": None, "status": "???"}]},
    )
    run = sync.sync_fleet(client=_api_client())

    assert run.outcome == SyncOutcome.PARTIAL
    assert any("without backup_id" in error["message"] for error in run.errors)
    # b0 is missing from a listing that was not complete: it is not gone.
    assert BackupRecord.objects.get(backup_id="b0").gone_at is None


@responses.activate
def test_duplicates_across_pages_make_one_row():
    pid = PROJECTS[0].project_id
    responses.get(
        f"{BASE}/v2/{pid}/instances", json={"instance_num": 1, "instances": [{"instance_id": "i1"}]}
    )
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups",
        json={
            "total_num": 3,
            "backup_record_response": [{"backup_id": "b1"}, {"backup_id": "b2"}, {"backup_id": "b1"}],
        },
    )
    _no_restores(pid)
    run = sync.sync_fleet(client=_api_client())
    assert run.records_new == 2
    assert BackupRecord.objects.count() == 2
    assert not BackupStatusChange.objects.exists()


def _begin_times(instance_id: str) -> list[str | None]:
    begins = []
    for call in responses.calls:
        url = urlparse(call.request.url)
        if url.path.endswith(f"/instances/{instance_id}/backups"):
            begins.append(parse_qs(url.query).get("begin_time", [None])[0])
    return begins


@responses.activate
def test_an_incremental_window_starts_an_overlap_before_the_last_listing(settings):
    settings.DCS_INCREMENTAL_OVERLAP = 3600
    pid = PROJECTS[0].project_id
    instances_url = f"{BASE}/v2/{pid}/instances"
    responses.get(instances_url, json={"instance_num": 1, "instances": [{"instance_id": "i1"}]})
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups",
        json={"total_num": 1, "backup_record_response": [_record("b1")]},
    )
    responses.get(f"{BASE}/v2/{pid}/instances/i2/backups", status=204)
    _no_restores(pid)
    sync.sync_fleet(client=_api_client())
    checked = DcsInstance.objects.get(instance_id="i1").backups_checked_at
    # A new instance appears: it is listed completely, the known one from its window.
    responses.replace(
        responses.GET,
        instances_url,
        json={"instance_num": 2, "instances": [{"instance_id": "i1"}, {"instance_id": "i2"}]},
    )

    run = sync.sync_fleet(client=_api_client(), kind=SyncKind.INCREMENTAL)

    assert run.outcome == SyncOutcome.SUCCEEDED
    expected = (checked - timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    assert _begin_times("i1") == [None, expected]
    assert _begin_times("i2") == [None]
    assert DcsInstance.objects.get(instance_id="i2").backups_synced_at is not None


# --- SyncRun.errors, status, health, "Sync now" ----------------------------------


def test_errors_given_to_a_new_run_are_stored_as_rows():
    run = SyncRun.objects.create(
        scope="fleet",
        started_at=timezone.now(),
        errors=[{"scope": "project p", "error": "DcsAuthError", "message": "bad", "status": 401}, "odd"],
    )
    assert run.error_count == 2
    assert [(e["scope"], e["message"], e["status"]) for e in SyncRun.objects.get().errors] == [
        ("project p", "bad", 401),
        ("", "odd", None),
    ]


def _status(*args) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("sync_status", *args, stdout=out)
    except SystemExit as exited:
        return exited.code, out.getvalue()
    return 0, out.getvalue()


def test_sync_status_says_never_and_exits_2_before_any_sync():
    code, out = _status()
    assert code == 2
    assert "(no sync runs yet)" in out
    assert "never synced" in out


def test_sync_status_prints_the_last_runs_and_exits_0_when_fresh(clocked_simulator, clocked_client):
    run = sync.sync_fleet(client=clocked_client)
    sync.sync_fleet(client=clocked_client, kind=SyncKind.INCREMENTAL)

    code, out = _status("--limit", "1")

    assert code == 0, out
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["id", "started", "(UTC)", "kind"]
    assert row.split()[0] == str(run.pk + 1)
    assert "incremental" in row
    assert "broker:  filesystem reachable" in out or "broker:  redis reachable" in out
    assert f"last sync #{run.pk + 1} succeeded" in out


def test_sync_status_exits_1_when_the_last_fleet_sync_failed(settings):
    start = timezone.now() - timedelta(minutes=5)
    SyncRun.objects.create(scope="fleet", started_at=start, finished_at=start, outcome="succeeded")
    SyncRun.objects.create(scope="fleet", started_at=start, finished_at=timezone.now(), outcome="failed")
    SyncRun.objects.create(
        scope="fleet", started_at=timezone.now(), finished_at=timezone.now(), outcome=SKIPPED
    )
    code, out = _status()
    assert code == 1
    assert "FAILED" in out


def test_sync_status_exits_2_when_stale(settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    long_ago = timezone.now() - timedelta(hours=1)
    SyncRun.objects.create(scope="fleet", started_at=long_ago, finished_at=long_ago, outcome="succeeded")
    code, out = _status()
    assert code == 2
    assert "STALE" in out


@pytest.fixture
def hung_broker(settings):
    """A broker that takes the connection and never answers, as a wedged Redis does."""
    with socket.create_server(("127.0.0.1", 0)) as server:  # listens, never accepts or reads
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
        yield


def test_health_reports_a_down_broker_without_raising(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    state = sync.health()
    assert state.broker.kind == "redis"
    assert not state.broker.reachable
    assert "127.0.0.1:9/0" not in state.broker.error
    assert not state.ok


def test_health_reports_worker_heartbeats():
    assert sync.health().last_worker_activity is None
    record_heartbeat("celery@test", starting=True)
    state = sync.health()
    assert state.workers_alive
    assert state.last_worker_activity == WorkerHeartbeat.objects.get().last_seen
    record_heartbeat("celery@test", stopping=True)
    assert not sync.health().workers_alive


def test_a_hung_broker_times_out_instead_of_holding_the_page(hung_broker):
    # Without the socket timeout, the PING would wait for ever (until pytest-timeout fails the test).
    state = broker_state()
    assert not state.reachable
    assert state.error.startswith("TimeoutError")


def test_sync_now_refuses_when_the_broker_is_down(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    with pytest.raises(SyncUnavailable):
        request_sync()


def test_sync_now_refuses_when_the_broker_hangs(hung_broker):
    with pytest.raises(SyncUnavailable, match="TimeoutError"):
        request_sync()


@pytest.mark.skipif(not broker_state().reachable, reason="the test broker is not reachable")
def test_sync_now_queues_a_task_after_commit(django_capture_on_commit_callbacks):
    from dashboard.celery import app

    app.control.purge()
    before = broker_state().queued
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        request_sync()
    assert broker_state().queued == before, "nothing is sent before the commit"
    for callback in callbacks:
        callback()
    assert broker_state().queued == before + 1
    app.control.purge()


@pytest.fixture
def cloud_settings(settings, simulator_server):
    """Settings as a deployment would have them, pointed at the simulator."""
    settings.DCS_DEMO = False
    settings.DCS_AK = TEST_AK
    settings.DCS_SK = TEST_SK
    settings.DCS_PROJECTS = [f"{p.region}:{p.project_id}" for p in PROJECTS]
    settings.DCS_ENDPOINT = simulator_server.url
    settings.DCS_RATE_LIMIT = 0


def test_sync_backups_runs_incremental_syncs_and_exits_3_when_refused(cloud_settings):
    call_command("sync_backups", "--no-progress", stdout=io.StringIO())
    out = io.StringIO()
    call_command("sync_backups", "--incremental", stdout=out)
    assert SyncRun.objects.first().kind == SyncKind.INCREMENTAL
    assert "kind:       incremental" in out.getvalue()

    locks.acquire(runs.FLEET_LEASE, holder="run-77")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("sync_backups", stdout=out)
    assert exited.value.code == 3
    assert "Sync skipped (fleet)" in out.getvalue()
    assert "run #77" in out.getvalue()
