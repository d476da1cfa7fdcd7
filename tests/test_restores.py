"""Restores: parsing ListRestoreRecords, listing them, syncing them, and the pages that show them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backups import sync
from backups.choices import SyncOutcome
from backups.dcs.config import DcsProject
from backups.dcs.records import RecordParseError, as_datetime
from backups.dcs.restores import parse_restore_record
from backups.dcs.retry import RetryPolicy
from backups.models import BackupRecord, DcsInstance, RestoreRecord, RestoreStatusChange, SyncError
from backups.sync.restores import store_restores
from tests.conftest import PROJECTS
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db

DOC_EXAMPLE = {
    "backup_id": "2ea6a9f5-d9b7-4a45-8a4d-0a1b2c3d4e5f",
    "restore_id": "a5d9d8b4-0ba4-4f7c-8a5a-ffda0c6cd4a4",
    "backup_name": "backup_20170718000002",
    "updated_at": "2017-07-18T13:41:43.040Z",
    "restore_remark": "restore for incident",
    "created_at": "2017-07-18T13:41:20.316Z",
    "progress": "100.00",
    "error_code": {},
    "restore_name": "restore_20170718214120",
    "backup_remark": {},
    "status": "succeed",
}


# --- Parsing ----------------------------------------------------------------------


def test_it_parses_the_documented_example():
    data = parse_restore_record(DOC_EXAMPLE)
    assert data.restore_id == DOC_EXAMPLE["restore_id"]
    assert (data.status, data.progress, data.error_code, data.backup_remark) == (
        "succeed",
        Decimal("100.00"),
        "",
        "",
    )
    assert data.created_at == as_datetime("2017-07-18T13:41:20.316Z")
    assert data.updated_at.isoformat() == "2017-07-18T13:41:43.040000+00:00"
    assert data.raw is DOC_EXAMPLE
    assert data.problems == []


def test_it_reads_bad_values_as_empty_names_them_and_keeps_them_raw():
    raw = {
        **DOC_EXAMPLE,
        "progress": "abc",
        "created_at": "yesterday",
        "updated_at": None,
        "status": "PAUSED",
        "error_code": 7,
    }
    data = parse_restore_record(raw)
    assert (data.progress, data.created_at, data.updated_at) == (None, None, None)
    assert data.status == "paused"  # kept as sent, so the page shows it
    assert data.error_code == "7"
    assert len(data.problems) == 3
    assert any("progress 'abc'" in p for p in data.problems)
    assert any("created_at 'yesterday'" in p for p in data.problems)
    assert any("'paused' is not one of waiting, restoring, succeed, failed" in p for p in data.problems)
    assert data.raw["created_at"] == "yesterday"


def test_it_reads_upper_case_status_and_numbers_for_strings():
    data = parse_restore_record({"restore_id": 42, "status": "RESTORING", "progress": 37.5})
    assert (data.restore_id, data.status, data.progress, data.problems) == (
        "42",
        "restoring",
        Decimal("37.50"),
        [],
    )


@pytest.mark.parametrize(
    "raw", [None, "restore", [], {"restore_id": {}}, {"restore_id": "  "}, {"status": "x"}]
)
def test_it_refuses_an_item_without_identity(raw):
    with pytest.raises(RecordParseError):
        parse_restore_record(raw)


# --- The client against the simulator -------------------------------------------


def _restored_instance(simulator, now=None) -> tuple[DcsProject, str, list[dict]]:
    """The instance with the most restores listed, and its restores."""
    best = None
    for project in PROJECTS:
        for instance in simulator.list_instances(project.project_id, now=now):
            restores = simulator.list_restores(project.project_id, instance["instance_id"], now=now)
            if best is None or len(restores) > len(best[2]):
                best = (project, instance["instance_id"], restores)
    return best


def test_the_client_pages_through_restores(clocked_simulator, clocked_client):
    project, instance_id, truth = _restored_instance(clocked_simulator)
    assert len(truth) >= 3
    clocked_client.page_size = 2

    listing = clocked_client.list_restores(project, instance_id)

    assert listing.complete, listing.problems
    assert listing.items == truth
    assert listing.pages == -(-len(truth) // 2)
    assert clocked_simulator.endpoint_counts["ListRestoreRecords"] == listing.pages


def test_the_client_reads_204_as_no_restores(clocked_simulator, clocked_client):
    single = next(
        (project, i["instance_id"])
        for project in PROJECTS
        for i in clocked_simulator.list_instances(project.project_id)
        if ".single" in i["spec_code"]
    )
    listing = clocked_client.list_restores(*single)
    assert (listing.items, listing.total, listing.pages, listing.complete) == ([], 0, 1, True)


def test_the_client_sends_the_window_as_utc_compact_times(clocked_simulator, clocked_client, sim_clock):
    project, instance_id, truth = _restored_instance(clocked_simulator)
    begin = as_datetime(truth[1]["created_at"]).replace(microsecond=0)
    listing = clocked_client.list_restores(project, instance_id, begin=begin, end=sim_clock())
    assert [r["restore_id"] for r in listing] == [r["restore_id"] for r in truth[:2]]


# --- Sync -------------------------------------------------------------------------


def _restore_truth(simulator, now=None) -> dict[tuple[str, str], dict]:
    truth = {}
    for project in PROJECTS:
        for instance in simulator.list_instances(project.project_id, now=now):
            for restore in simulator.list_restores(project.project_id, instance["instance_id"], now=now):
                truth[(instance["instance_id"], restore["restore_id"])] = restore
    return truth


def _stored(**filters) -> dict[tuple[str, str], RestoreRecord]:
    return {
        (r.instance.instance_id, r.restore_id): r
        for r in RestoreRecord.objects.filter(**filters).select_related("instance")
    }


def _restore_writes(queries) -> list[str]:
    tables = ('"backups_restorerecord"', '"backups_restorestatuschange"')
    writes = tuple(f"{verb} {table}" for verb in ("INSERT INTO", "UPDATE", "DELETE FROM") for table in tables)
    return [q["sql"] for q in queries if q["sql"].startswith(writes)]


def test_a_fleet_sync_stores_every_restore_once_and_again_changes_nothing(clocked_simulator, clocked_client):
    run = sync.sync_fleet(client=clocked_client)

    truth = _restore_truth(clocked_simulator)
    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    assert len(truth) > 10
    stored = _stored()
    assert stored.keys() == truth.keys()
    some_key = next(iter(truth))
    record = stored[some_key]
    assert (record.status, record.restore_name, record.backup_id) == (
        truth[some_key]["status"],
        truth[some_key]["restore_name"],
        truth[some_key]["backup_id"],
    )
    assert {r.status for r in stored.values()} >= {"succeed", "failed"}
    assert {r.error_code for r in stored.values() if r.status == "failed"} == {"dcs.08.0007"}
    assert not RestoreStatusChange.objects.exists(), "each seen in one state: no change yet"

    with CaptureQueriesContext(connection) as queries:
        again = sync.sync_fleet(client=clocked_client, kind="incremental")

    assert again.outcome == SyncOutcome.SUCCEEDED, again.errors
    assert _restore_writes(queries.captured_queries) == [], "an unchanged listing writes nothing"
    assert RestoreRecord.objects.count() == len(truth)
    assert not RestoreStatusChange.objects.exists()


def test_it_restores_from_backups_that_had_succeeded(clocked_simulator, clocked_client):
    sync.sync_fleet(client=clocked_client)
    backups = dict(BackupRecord.objects.values_list("backup_id", "status"))
    known = [r for r in RestoreRecord.objects.all() if r.backup_id in backups]
    assert known, "some restores come from backups still listed"
    assert all(r.backup_name.startswith("backup_") for r in RestoreRecord.objects.all())


def _a_restore_created_after(simulator, moment):
    """A restore the simulator will create after ``moment``: (instance id, its record when done)."""
    later = _restore_truth(simulator, now=moment + timedelta(days=1))
    candidates = [
        (key, r)
        for key, r in later.items()
        if as_datetime(r["created_at"]) > moment + timedelta(minutes=1) and r["updated_at"]
    ]
    return min(candidates, key=lambda item: item[1]["created_at"])


def test_it_keeps_each_status_and_progress_it_saw(clocked_simulator, clocked_client, sim_clock):
    sync.sync_fleet(client=clocked_client)
    (instance_id, restore_id), done = _a_restore_created_after(clocked_simulator, sim_clock())
    instance = DcsInstance.objects.get(instance_id=instance_id)
    created, finished = as_datetime(done["created_at"]), as_datetime(done["updated_at"])

    for moment in (created + timedelta(seconds=1), created + (finished - created) * 0.8, finished):
        sim_clock.now = moment + timedelta(seconds=1)
        sync.sync_instance(instance=instance, client=clocked_client)
        sync.sync_instance(instance=instance, client=clocked_client)  # a second look changes nothing

    record = RestoreRecord.objects.get(instance=instance, restore_id=restore_id)
    seen = list(record.status_changes.values_list("status", "progress"))
    assert seen[0] == ("waiting", Decimal("0.00"))
    assert seen[-1] == (done["status"], Decimal(done["progress"]))
    assert len(seen) == 3
    assert seen[1][0] == "restoring" and Decimal(0) < seen[1][1] < seen[-1][1]
    assert (record.status, record.updated_at) == (done["status"], finished)


def test_a_restore_no_longer_listed_is_marked_gone_and_comes_back(
    clocked_simulator, clocked_client, settings
):
    settings.DCS_RESTORE_SYNC_INTERVAL = 0  # every incremental sync lists the restores
    sync.sync_fleet(client=clocked_client)
    project, instance_id, truth = _restored_instance(clocked_simulator)
    victim = truth[-1]["restore_id"]
    clocked_simulator.drop_restore(project.project_id, instance_id, victim)

    sync.sync_fleet(client=clocked_client)

    gone = _stored(gone_at__isnull=False)
    assert list(gone) == [(instance_id, victim)]
    assert gone[(instance_id, victim)].status == truth[-1]["status"], "its last known state stays"
    clocked_simulator._dropped_restores.clear()
    sync.sync_fleet(client=clocked_client, kind="incremental")
    assert not RestoreRecord.objects.filter(gone_at__isnull=False).exists()


def test_a_failed_restores_listing_is_an_error_of_its_instance_and_keeps_the_backups(
    clocked_simulator, clocked_client
):
    sync.sync_fleet(client=clocked_client)
    before = RestoreRecord.objects.count()
    clocked_client.retry = RetryPolicy(max_retries=0)
    clocked_simulator.faults.configure(
        endpoints=("ListRestoreRecords",), error_rate=1.0, error_statuses=(500,)
    )
    project, instance_id, _ = _restored_instance(clocked_simulator)
    instance = DcsInstance.objects.get(instance_id=instance_id)
    BackupRecord.objects.filter(instance=instance).delete()

    run = sync.sync_instance(instance=instance, client=clocked_client)

    assert run.outcome == SyncOutcome.PARTIAL
    assert run.api_calls == 2
    [error] = SyncError.objects.filter(run=run)
    assert (error.instance, error.scope, error.status, error.error_code) == (
        instance,
        f"instance {instance_id} restores",
        500,
        "DCS.5000",
    )
    listed = {r["backup_id"] for r in clocked_simulator.list_backups(project.project_id, instance_id)}
    assert set(instance.backups.values_list("backup_id", flat=True)) == listed, "the backups are stored"
    assert RestoreRecord.objects.count() == before
    assert not RestoreRecord.objects.filter(gone_at__isnull=False).exists()


def test_an_item_without_id_keeps_the_others_and_marks_nothing_gone():
    instance = make_instance()
    now = as_datetime("2026-11-20T12:00:00Z")
    store_restores(instance=instance, listing=[DOC_EXAMPLE, {**DOC_EXAMPLE, "restore_id": "r2"}], now=now)

    counts = store_restores(
        instance=instance,
        listing=[{**DOC_EXAMPLE, "progress": "zz"}, {"restore_id": None, "status": "failed"}],
        now=now + timedelta(minutes=5),
    )

    assert (counts.new, counts.updated, counts.gone) == (0, 1, 0)
    assert RestoreRecord.objects.filter(gone_at__isnull=True).count() == 2
    assert RestoreRecord.objects.get(restore_id=DOC_EXAMPLE["restore_id"]).raw["progress"] == "zz"


def test_the_active_poll_lists_no_restores(clocked_simulator, clocked_client):
    sync.sync_fleet(client=clocked_client)
    clocked_simulator.reset_counts()
    run = sync.sync_active_instances(client=clocked_client)
    assert run is not None, "the simulator's stream always has a backup going"
    assert clocked_simulator.endpoint_counts["ListBackupRecords"] == run.instances_seen > 0
    assert "ListRestoreRecords" not in clocked_simulator.endpoint_counts


# --- Pages ------------------------------------------------------------------------

HOUR = timedelta(hours=1)


def make_restore(instance, **fields) -> RestoreRecord:
    n = RestoreRecord.objects.count() + 1
    created = fields.pop("created_at", T0 + n * HOUR)
    values = {
        "restore_id": f"r{n:07d}-restore",
        "restore_name": f"restore_{n}",
        "status": "succeed",
        "progress": Decimal("100.00"),
        "created_at": created,
        "updated_at": created + timedelta(minutes=3),
        "first_seen": created,
        "last_seen": created,
    }
    values.update(fields)
    return RestoreRecord.objects.create(instance=instance, **values)


def viewer_client(client, django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("support", password="not-a-real-password-1")
    user.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(user)
    return client


@pytest.fixture
def restored():
    """An instance with backups of every kind and three restores, one from a backup we do not hold."""
    instance = make_instance(name="orders-cache")
    good = make_record(instance, backup_name="backup_good", created_at=T0)
    make_record(instance, backup_name="backup_gone", created_at=T0 + HOUR, gone_at=T0 + 3 * HOUR)
    make_record(instance, backup_name="backup_failed", status="failed", created_at=T0 + 2 * HOUR)
    make_record(instance, backup_name="backup_no_restore", is_support_restore=False, created_at=T0 + 3 * HOUR)
    make_restore(
        instance,
        restore_name="restore_ok",
        backup_id=good.backup_id,
        backup_name=good.backup_name,
        created_at=T0,
    )
    make_restore(
        instance,
        restore_name="restore_bad",
        status="failed",
        progress=Decimal("41.50"),
        error_code="dcs.08.0007",
        backup_id="not-held",
        backup_name="backup_old",
        restore_remark="回滚 after deploy",
        created_at=T0 + 4 * HOUR,
    )
    make_restore(
        instance,
        restore_name="restore_now",
        status="restoring",
        progress=Decimal("37.50"),
        updated_at=None,
        backup_id=good.backup_id,
        backup_name=good.backup_name,
        created_at=T0 + 5 * HOUR,
    )
    return instance, good


def _detail(instance) -> str:
    return reverse("backups:instance-detail", args=[instance.instance_id])


def test_the_instance_page_lists_its_restores(admin_client, restored):
    instance, good = restored
    html = admin_client.get(_detail(instance)).content.decode()
    section = html.split('id="restores-title"', 1)[1].split("</section>", 1)[0]

    assert section.index("restore_now") < section.index("restore_bad") < section.index("restore_ok")
    assert 'badge--red">Failed<' in section and 'badge--green">Succeeded<' in section
    assert 'badge--cyan">Restoring<' in section
    assert 'value="37.5"' in section, "a running restore shows its progress"
    assert "41.5" not in section, "a finished one does not"
    backup_url = reverse("backups:backup-detail", args=[good.backup_id])
    assert section.count(f'href="{backup_url}"') == 2
    assert "backup_old" in section and 'href="/backups/not-held/"' not in section
    assert "dcs.08.0007" in section and "回滚 after deploy" in section
    assert "2025-03-01 16:03:00" in section, "finished, exact"


def test_the_instance_page_shows_the_last_restorable_backup_and_the_last_restore(admin_client, restored):
    instance, good = restored
    html = admin_client.get(_detail(instance)).content.decode()
    facts = html.split('id="facts-title"', 1)[1].split("</section>", 1)[0]
    restorable = facts.split("Last restorable backup", 1)[1].split("</div>", 1)[0]
    last = facts.split("Last restore<", 1)[1].split("</div>", 1)[0]

    # The failed, gone and not-restorable backups are newer, but cannot be restored from.
    assert reverse("backups:backup-detail", args=[good.backup_id]) in restorable
    assert "2025-03-01 12:00:00" in restorable
    assert 'badge--cyan">Restoring<' in last and "2025-03-01 17:00:00" in last


def test_an_instance_without_restores_says_so(admin_client):
    instance = make_instance()
    html = admin_client.get(_detail(instance)).content.decode()
    assert "No restores of this instance." in html
    facts = html.split('id="facts-title"', 1)[1].split("</section>", 1)[0]
    assert "Last restore<" in facts and "never" in facts.split("Last restore<", 1)[1].split("</div>", 1)[0]


def test_the_instance_page_costs_one_query_for_its_restores_whatever_their_number(
    admin_client, restored, django_assert_max_num_queries
):
    instance, good = restored
    admin_client.get(_detail(instance))
    with CaptureQueriesContext(connection) as few:
        admin_client.get(_detail(instance))
    for n in range(30):
        make_restore(instance, backup_id=good.backup_id if n % 2 else f"x{n}", created_at=T0 - n * HOUR)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(_detail(instance))
    assert response.content.decode().count('class="restore__name"') == 33


def test_the_fleet_table_shows_restore_columns_in_its_queries(
    admin_client, restored, django_assert_max_num_queries
):
    assert restored
    other = make_instance(name="session-store")
    admin_client.get("/instances/")
    with django_assert_max_num_queries(5):
        html = admin_client.get("/instances/").content.decode()
    assert "Last restorable backup" in html and "Last restore" in html
    row = html.split(">orders-cache</a>", 1)[1].split("</tr>", 1)[0]
    assert 'badge--cyan">Restoring<' in row
    assert "2025-03-01T12:00:00" in row, "the last restorable backup's exact time"
    other_row = html.split(f">{other.name}</a>", 1)[1].split("</tr>", 1)[0]
    assert ">never<" in other_row and ">none<" in other_row

    for n in range(20):
        make_restore(make_instance(), created_at=T0 + n * HOUR)
    with django_assert_max_num_queries(5):
        admin_client.get("/instances/")


def test_the_fleet_export_carries_the_restore_facts_in_utc(admin_client, restored):
    import csv
    import io

    response = admin_client.get("/instances/", {"_export": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    [row] = [r for r in rows if r["Instance"].startswith("orders-cache")]
    assert row["Last restorable backup"] == "2025-03-01T12:00:00Z"
    assert (row["Last restore"], row["Last restore status"]) == ("2025-03-01T17:00:00Z", "restoring")


def test_a_viewer_sees_restores_and_cannot_sync(client, django_user_model, restored):
    instance, _ = restored
    viewer_client(client, django_user_model)
    html = client.get(_detail(instance)).content.decode()
    assert "restore_bad" in html and "Last restore" in html
    assert "Last restorable backup" in client.get("/instances/").content.decode()
    response = client.post(reverse("backups:instance-sync-now", args=[instance.instance_id]))
    assert response.status_code == 403


def test_an_incremental_sync_lists_restores_only_once_they_are_due(
    clocked_simulator, clocked_client, sim_clock, settings
):
    settings.DCS_RESTORE_SYNC_INTERVAL = 3600
    sync.sync_fleet(client=clocked_client)
    instances = DcsInstance.objects.count()
    assert DcsInstance.objects.filter(restores_checked_at=None).count() == 0

    # Listed by the full sync just now; only instances with a restore still running are asked again.
    running = (
        DcsInstance.objects.filter(restores__status__in=("waiting", "restoring"), restores__gone_at=None)
        .distinct()
        .count()
    )
    assert running < instances
    clocked_simulator.reset_counts()
    sync.sync_fleet(client=clocked_client, kind="incremental")
    assert clocked_simulator.endpoint_counts.get("ListRestoreRecords", 0) == running

    sim_clock.advance(seconds=3601)
    clocked_simulator.reset_counts()
    sync.sync_fleet(client=clocked_client, kind="incremental")
    assert clocked_simulator.endpoint_counts["ListRestoreRecords"] == instances


def test_sync_now_of_one_instance_always_lists_its_restores(clocked_simulator, clocked_client, settings):
    settings.DCS_RESTORE_SYNC_INTERVAL = 3600
    sync.sync_fleet(client=clocked_client)
    _project, instance_id, _truth = _restored_instance(clocked_simulator)
    instance = DcsInstance.objects.get(instance_id=instance_id)
    clocked_simulator.reset_counts()
    sync.sync_instance(instance=instance, client=clocked_client)
    assert clocked_simulator.endpoint_counts["ListRestoreRecords"] == 1
