"""The sync service, over real HTTP against the simulator, into the real database."""

from __future__ import annotations

import dataclasses

import pytest
import responses

from backups import sync
from backups.choices import SyncOutcome
from backups.dcs.client import DcsClient
from backups.models import BackupRecord, BackupStatusChange, DcsInstance, SyncRun
from tests.conftest import PROJECTS, TEST_AK, make_config

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


def test_it_syncs_the_whole_fleet_over_http(simulator, dcs_client):
    run = sync.sync_fleet(client=dcs_client)

    truth = _truth(simulator)
    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    assert run.instances_seen == len(truth) == DcsInstance.objects.count()
    expected_records = sum(len(records) for records in truth.values())
    assert expected_records > 0
    assert run.records_new == expected_records == BackupRecord.objects.count()
    # One listing call per project, one per instance: pages are 1000 records.
    assert run.api_calls == len(PROJECTS) + len(truth)
    assert run.finished_at >= run.started_at
    assert DcsInstance.objects.filter(region="ap-southeast-1").exists()


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
    assert record.status_changes.count() == 1


def test_a_second_sync_creates_nothing_new(simulator, dcs_client):
    sync.sync_fleet(client=dcs_client)
    before = BackupRecord.objects.count()
    run = sync.sync_fleet(client=dcs_client)
    assert run.outcome == SyncOutcome.SUCCEEDED
    assert run.records_new == 0
    assert run.records_gone == 0
    assert BackupRecord.objects.count() == before
    # Only records still moving (waiting/backuping) can have changed.
    assert (
        run.records_updated
        <= BackupRecord.objects.filter(status__in=["waiting", "backuping", "succeed", "failed"]).count()
    )


def test_it_keeps_records_that_vanish_upstream(simulator, dcs_client):
    sync.sync_fleet(client=dcs_client)
    record = BackupRecord.objects.filter(status="succeed").select_related("instance").first()
    simulator.drop_backup(record.instance.project_id, record.instance.instance_id, record.backup_id)

    run = sync.sync_fleet(client=dcs_client)

    record.refresh_from_db()
    assert record.gone_at is not None
    assert run.records_gone == 1
    assert BackupRecord.objects.filter(gone_at__isnull=True).count() == BackupRecord.objects.count() - 1


def test_it_keeps_instances_that_vanish_upstream(simulator, dcs_client):
    sync.sync_fleet(client=dcs_client)
    instance = DcsInstance.objects.filter(backups__isnull=False).distinct().first()
    kept = instance.backups.count()
    simulator.delete_instance(instance.project_id, instance.instance_id)

    run = sync.sync_fleet(client=dcs_client)

    instance.refresh_from_db()
    assert instance.gone_at is not None
    assert run.instances_gone == 1
    assert instance.backups.count() == kept
    assert run.outcome == SyncOutcome.SUCCEEDED


def test_it_marks_a_returning_record_present_again(simulator, dcs_client):
    sync.sync_fleet(client=dcs_client)
    record = BackupRecord.objects.first()
    BackupRecord.objects.filter(pk=record.pk).update(gone_at=record.created_at)
    sync.sync_fleet(client=dcs_client)
    record.refresh_from_db()
    assert record.gone_at is None


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


def test_an_incremental_window_marks_nothing_gone(clocked_simulator, clocked_client, sim_clock):
    sync.sync_fleet(client=clocked_client)
    total = BackupRecord.objects.count()
    sim_clock.advance(seconds=30)
    run = sync.sync_active_instances(client=clocked_client)
    assert run is not None and run.scope == "active"
    assert run.records_gone == 0
    assert BackupRecord.objects.filter(gone_at__isnull=False).count() == 0
    assert BackupRecord.objects.count() >= total


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
    assert BackupRecord.objects.filter(gone_at__isnull=True).count() == records
    assert DcsInstance.objects.filter(gone_at__isnull=False).count() == 0


BASE = "https://dcs.cn-north-4.myhuaweicloud.com"
ONE_PROJECT = (PROJECTS[0],)


def _api_client():
    from backups.dcs.config import DcsConfig

    return DcsClient(DcsConfig(access_key=TEST_AK, secret_key="x", projects=ONE_PROJECT))


@responses.activate
def test_a_failed_instance_listing_is_partial_and_marks_nothing_gone():
    pid = PROJECTS[0].project_id
    instances = {"instance_num": 2, "instances": [{"instance_id": "i1"}, {"instance_id": "i2"}]}
    record = {
        "backup_id": "b1",
        "instance_id": "i1",
        "status": "succeed",
        "created_at": "2026-11-01T00:00:00Z",
    }
    responses.get(f"{BASE}/v2/{pid}/instances", json=instances)
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups", json={"total_num": 1, "backup_record_response": [record]}
    )
    responses.get(f"{BASE}/v2/{pid}/instances/i2/backups", status=204)
    sync.sync_fleet(client=_api_client())

    responses.reset()
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
    assert run.errors == [
        {
            "scope": "instance i1",
            "error": "DcsServerError",
            "message": "HTTP 500 DCS.5078: failed to query the backup record (request id req-500)",
            "status": 500,
            "error_code": "DCS.5078",
            "request_id": "req-500",
        }
    ]
    assert BackupRecord.objects.get(backup_id="b1").gone_at is None


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
    sync.sync_fleet(client=_api_client())

    responses.reset()
    responses.get(
        f"{BASE}/v2/{pid}/instances", json={"instance_num": 1, "instances": [{"instance_id": "i1"}]}
    )
    responses.get(
        f"{BASE}/v2/{pid}/instances/i1/backups",
        json={"total_num": 2, "backup_record_response": [good, {"backup_id": None, "status": "???"}]},
    )
    run = sync.sync_fleet(client=_api_client())

    assert run.outcome == SyncOutcome.PARTIAL
    assert "without backup_id" in run.errors[0]["message"]
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
    run = sync.sync_fleet(client=_api_client())
    assert run.records_new == 2
    assert BackupRecord.objects.count() == 2
    assert BackupStatusChange.objects.count() == 2
