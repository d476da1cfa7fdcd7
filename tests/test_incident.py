"""The incident view: backups, restores and notes of a window as the dashboard knew them at as_of."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest

from backups.models import AuditEvent, BackupStatusChange, RestoreRecord, RestoreStatusChange
from backups.notes import note_create
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db
MIN = timedelta(minutes=1)
AS_OF = T0 + 30 * MIN
# Session, user, instances, backups at as_of, backups learned later, restores
# at as_of, restores learned later, notes (and the audit event of an export).
INCIDENT_QUERIES = 8


def url(instance, **params) -> str:
    query = {"start": "2025-03-01T11:00:00Z", "end": "2025-03-01T13:00:00Z", "instance": instance.instance_id}
    query.update(params)
    return "/incident/?" + "&".join(f"{k}={v}" for k, v in query.items())


def change(record, minutes, status, progress=None):
    BackupStatusChange.objects.create(
        record=record, observed_at=T0 + minutes * MIN, status=status, progress=progress
    )


@pytest.fixture
def fleet(db):
    instance = make_instance(name="orders-cache", instance_id="inst-1")
    # Backing up at as_of, succeeded later.
    running = make_record(instance, backup_id="bk-running", created_at=T0, first_seen=T0, status="succeed")
    change(running, 0, "waiting", Decimal("0"))
    change(running, 10, "backuping", Decimal("40"))
    change(running, 45, "succeed", Decimal("100"))
    # First seen after as_of: excluded.
    late = make_record(instance, backup_id="bk-late", created_at=T0 + 5 * MIN, first_seen=T0 + 40 * MIN)
    change(late, 40, "succeed", Decimal("100"))
    # Gone after as_of: still listed then.
    gone_later = make_record(instance, backup_id="bk-gone-later", created_at=T0 - 30 * MIN, first_seen=T0)
    gone_later.gone_at = T0 + 50 * MIN
    gone_later.save()
    change(gone_later, 0, "succeed", Decimal("100"))
    # Gone before as_of.
    gone = make_record(
        instance, backup_id="bk-gone", created_at=T0 - 40 * MIN, first_seen=T0, gone_at=T0 + 20 * MIN
    )
    change(gone, 0, "failed")
    # Outside the window.
    make_record(instance, backup_id="bk-old", created_at=T0 - 5 * 60 * MIN, first_seen=T0)
    # Another instance's backup.
    make_record(make_instance(), backup_id="bk-other", created_at=T0, first_seen=T0)
    restore = RestoreRecord.objects.create(
        instance=instance,
        restore_id="rs-1",
        backup_id="bk-gone-later",
        status="succeed",
        created_at=T0 + 5 * MIN,
        first_seen=T0 + 5 * MIN,
        last_seen=T0 + 60 * MIN,
    )
    RestoreStatusChange.objects.create(
        restore=restore, observed_at=T0 + 5 * MIN, status="restoring", progress=10
    )
    RestoreStatusChange.objects.create(
        restore=restore, observed_at=T0 + 55 * MIN, status="succeed", progress=100
    )
    RestoreRecord.objects.create(
        instance=instance,
        restore_id="rs-late",
        status="failed",
        created_at=T0 + 6 * MIN,
        first_seen=T0 + 35 * MIN,
        last_seen=T0 + 35 * MIN,
    )
    return instance


def backups_of(admin_client, instance, **params) -> dict:
    body = json.loads(
        admin_client.get(url(instance, as_of="2025-03-01T12:30:00Z", format="json", **params)).content
    )
    return body


def test_it_shows_the_status_a_backup_had_at_as_of(admin_client, fleet):
    body = backups_of(admin_client, fleet)
    rows = {row["id"]: row for row in body["backups"]}

    assert rows["bk-running"]["status_as_of"] == "backuping"
    assert rows["bk-running"]["progress_as_of"] == 40
    assert rows["bk-running"]["status_now"] == "succeed"
    assert rows["bk-running"]["observed_at"] == "2025-03-01T12:10:00Z"


def test_it_leaves_out_what_was_first_seen_after_as_of(admin_client, fleet):
    body = backups_of(admin_client, fleet)

    assert {row["id"] for row in body["backups"]} == {"bk-running", "bk-gone-later", "bk-gone"}
    assert body["learned_later"] == {"backups": 1, "restores": 1}
    page = admin_client.get(url(fleet, as_of="2025-03-01T12:30:00Z")).text
    assert 'data-later-backup="bk-late"' in page
    assert 'data-backup-id="bk-late"' not in page


def test_it_shows_what_went_later_as_still_listed_then(admin_client, fleet):
    rows = {row["id"]: row for row in backups_of(admin_client, fleet)["backups"]}

    assert rows["bk-gone-later"]["gone_as_of"] is False
    assert rows["bk-gone"]["gone_as_of"] is True


def test_it_rebuilds_restores_as_of_then(admin_client, fleet):
    restores = backups_of(admin_client, fleet)["restores"]

    assert [(r["id"], r["status_as_of"], r["progress_as_of"]) for r in restores] == [
        ("rs-1", "restoring", 10)
    ]


def test_a_later_as_of_shows_the_later_state(admin_client, fleet):
    body = json.loads(admin_client.get(url(fleet, as_of="2025-03-01T13:30:00Z", format="json")).content)
    rows = {row["id"]: row for row in body["backups"]}

    assert rows["bk-running"]["status_as_of"] == "succeed"
    assert "bk-late" in rows


def test_it_shows_notes_written_by_then_and_flags_later_ones(admin_client, fleet):
    record = fleet.backups.get(backup_id="bk-running")
    early = note_create(author=None, instance=fleet, record=record, text="slow backup", incident="INC-7")
    early.created_at = T0 + 20 * MIN
    early.save()
    note_create(author=None, instance=fleet, text="post-mortem", incident="INC-7")  # now: after as_of

    body = backups_of(admin_client, fleet)
    assert [(n["text"], n["written_later"]) for n in body["notes"]] == [
        ("slow backup", False),
        ("post-mortem", True),
    ]
    running = next(row for row in body["backups"] if row["id"] == "bk-running")
    assert (running["incidents"], running["notes"]) == ("INC-7", "slow backup")


def test_it_freezes_a_link_without_as_of_at_now(admin_client, fleet):
    response = admin_client.get(url(fleet, incident="inc-7"))

    assert response.status_code == 302
    params = parse_qs(urlparse(response.url).query)
    assert params["start"] == ["2025-03-01T11:00:00Z"]
    assert params["instance"] == ["inst-1"]
    assert params["incident"] == ["INC-7"]
    as_of = params["as_of"][0]
    assert len(as_of) == len("2025-03-01T12:30:00Z") and as_of.endswith("Z")
    assert admin_client.get(response.url).status_code == 200


@pytest.mark.parametrize(
    "query,message",
    [
        ("start=nope&end=2025-03-01&instance=x", "is not a date"),
        ("end=2025-03-01&instance=x", "Window start (start) is missing."),
        ("start=2025-03-02&end=2025-03-01&instance=x", "The window ends before it starts"),
        ("start=2025-03-01&end=2025-03-02", "Name at least one instance"),
        ("start=2025-03-01&end=2025-03-02&instance=x&as_of=2999-01-01", "is in the future"),
        ("start=2025-03-01&end=2025-03-02&instance=x&incident=%3Cb%3E", "is not an incident reference"),
        ("start=2025-03-01&end=9999-12-31&instance=x", "out of range"),
        ("start=2025-03-01&end=2025-03-02&instance=x&as_of=2025-03-03&format=xml", "is not an export format"),
    ],
)
def test_it_explains_bad_parameters_without_failing(admin_client, db, query, message):
    response = admin_client.get(f"/incident/?{query}")

    assert response.status_code == 200
    assert message in response.text
    assert "<b>" not in response.text.split("alert--error")[1][:300]


def test_a_bad_export_is_a_plain_400(admin_client, db):
    response = admin_client.get("/incident/?start=x&end=2025-03-01&instance=a&format=csv")

    assert response.status_code == 400
    assert "is not a date" in response.text


def test_it_reads_an_incident_in_a_constant_number_of_queries(
    admin_client, fleet, django_assert_max_num_queries
):
    link = url(fleet, as_of="2025-03-01T12:30:00Z")
    with django_assert_max_num_queries(INCIDENT_QUERIES):
        assert admin_client.get(link).status_code == 200
    for n in range(30):
        record = make_record(fleet, created_at=T0 + n * MIN, first_seen=T0)
        change(record, 1, "backuping", Decimal("5"))
        note_create(author=None, instance=fleet, record=record, text=f"n{n}", incident="")
    with django_assert_max_num_queries(INCIDENT_QUERIES):
        page = admin_client.get(link).text
    assert page.count("data-backup-id=") == 33


def test_it_caps_the_rows_and_says_so(admin_client, fleet, monkeypatch):
    from backups import incident

    monkeypatch.setattr(incident, "MAX_ROWS", 2)
    page = admin_client.get(url(fleet, as_of="2025-03-01T12:30:00Z")).text

    assert page.count("data-backup-id=") == 2
    assert "Narrow the window or the instances." in page


def test_it_exports_csv_with_the_as_of_and_the_window_and_audits_it(admin_client, fleet):
    response = admin_client.get(url(fleet, as_of="2025-03-01T12:30:00Z", format="csv"))

    assert response["Content-Disposition"].endswith('dcs-incident-20250301T123000Z.csv"')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["as_of"] for row in rows} == {"2025-03-01T12:30:00Z"}
    assert {(row["window_start"], row["window_end"]) for row in rows} == {
        ("2025-03-01T11:00:00Z", "2025-03-01T13:00:00Z")
    }
    running = next(row for row in rows if row["id"] == "bk-running")
    assert (running["kind"], running["status_as_of"], running["progress_as_of"]) == (
        "backup",
        "backuping",
        "40",
    )
    assert {row["kind"] for row in rows} == {"backup", "restore"}
    event = AuditEvent.objects.get(action="export")
    assert event.detail["view"] == "incident" and event.detail["format"] == "csv"


def test_it_prints_without_navigation(admin_client, fleet):
    page = admin_client.get(url(fleet, as_of="2025-03-01T12:30:00Z")).text

    assert "css/incident.css" in page
    assert "data-as-of>2025-03-01T12:30:00Z<" in page


def test_the_backup_list_and_the_instance_page_link_to_it(admin_client, fleet):
    page = admin_client.get("/backups/", {"instance": "inst-1", "created_after": "2025-03-01T11:00:00Z"}).text
    assert "Freeze as incident view" in page
    assert "/incident/?start=2025-03-01T11%3A00%3A00Z&amp;end=" in page
    assert "instance=inst-1" in page
    assert "Freeze as incident view" not in admin_client.get("/backups/").text
    assert "/incident/?start=" in admin_client.get("/instances/inst-1/").text


def test_a_viewer_may_open_it(client, django_user_model, fleet):
    from django.contrib.auth.models import Group

    from backups import roles

    with roles.no_default_role():
        user = django_user_model.objects.create_user("support", password="not-a-real-password-1")
    user.groups.add(Group.objects.get(name=roles.VIEWER))
    client.force_login(user)

    assert client.get(url(fleet, as_of="2025-03-01T12:30:00Z")).status_code == 200
    assert client.post(url(fleet, as_of="2025-03-01T12:30:00Z")).status_code == 405


def test_a_frozen_link_shows_the_same_after_the_sync_sees_a_change(admin_client):
    """A backup seen running and not changed by as_of has no change row then; its later change must not
    change what the link shows (its first change logs the state it was first seen in, at first_seen)."""
    from backups.dcs.records import parse_backup_record
    from backups.sync.listings import store_backups

    instance = make_instance(instance_id="inst-9")
    raw = {
        "backup_id": "bk-sync",
        "status": "backuping",
        "progress": "40.00",
        "created_at": "2025-03-01T12:00:00.000Z",
    }

    def sync(now, **changed):
        record = parse_backup_record({**raw, **changed}, instance_id="inst-9")
        store_backups(
            instance=instance, records={record.backup_id: record}, now=now, windowed=False, complete=True
        )

    def as_of_row() -> dict:
        body = json.loads(
            admin_client.get(url(instance, as_of="2025-03-01T12:30:00Z", format="json")).content
        )
        (row,) = body["backups"]
        return row

    sync(T0 + 10 * MIN)
    before = as_of_row()
    sync(T0 + 45 * MIN, status="succeed", progress="100.00")
    after = as_of_row()

    assert (before["status_as_of"], before["progress_as_of"], before["observed_at"]) == (
        "backuping",
        40,
        "2025-03-01T12:10:00Z",
    )
    assert after["status_now"] == "succeed"
    assert {k: v for k, v in after.items() if k != "status_now"} == {
        k: v for k, v in before.items() if k != "status_now"
    }
