"""Notes and incident references on backups and instances: who writes them, what is valid, where they show."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backups import roles
from backups.models import Note
from backups.notes import normalise_incident, note_create
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db
PASSWORD = "not-a-real-password-1"


def user_with(role: str, django_user_model, name: str | None = None):
    with roles.no_default_role():
        user = django_user_model.objects.create_user(name or role.lower(), password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def operator_client(client, django_user_model):
    client.force_login(user_with(roles.OPERATOR, django_user_model, "dba"))
    return client


@pytest.fixture
def viewer_client(client, django_user_model):
    client.force_login(user_with(roles.VIEWER, django_user_model, "support"))
    return client


@pytest.fixture
def record(db):
    return make_record(make_instance(name="orders-cache", instance_id="inst-1"), backup_id="bk-1")


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("inc-1234", "INC-1234"),
        (" INC-7 ", "INC-7"),
        ("ops_db-12", "OPS_DB-12"),
        ("CHG2-15", "CHG2-15"),
        ("", ""),
    ],
)
def test_it_normalises_incident_references(raw, expected):
    assert normalise_incident(raw) == expected


@pytest.mark.parametrize(
    "raw", ["1234", "INC", "INC-", "INC 12", "-12", "INC-12a", "I" * 62 + "-12", "<b>-1"]
)
def test_it_refuses_what_is_not_an_incident_reference(raw):
    with pytest.raises(ValueError):
        normalise_incident(raw)


def test_it_writes_a_note_on_a_backup_for_an_operator(operator_client, record):
    response = operator_client.post(
        "/backups/bk-1/notes/", {"incident": "inc-42", "text": "  restore asked  "}
    )

    assert response.status_code == 302
    assert response.url == "/backups/bk-1/#notes"
    note = Note.objects.get()
    assert (note.instance_id, note.record_id, note.incident, note.text) == (
        record.instance_id,
        record.pk,
        "INC-42",
        "restore asked",
    )
    assert note.author_name == "dba"
    page = operator_client.get("/backups/bk-1/").text
    assert "Note added." in page
    assert "INC-42" in page and "restore asked" in page
    assert note.created_at.strftime("%Y-%m-%dT%H:%M:%S") in page


def test_it_writes_a_note_on_an_instance_and_lists_its_backups_notes_there(operator_client, record):
    note_create(author=None, instance=record.instance, record=record, text="on the backup", incident="")
    response = operator_client.post("/instances/inst-1/notes/", {"incident": "", "text": "whole instance"})

    assert response.status_code == 302 and response.url == "/instances/inst-1/#notes"
    assert Note.objects.filter(record=None).get().text == "whole instance"
    page = operator_client.get("/instances/inst-1/").text
    assert "whole instance" in page and "on the backup" in page
    assert 'action="/instances/inst-1/notes/"' in page


def test_a_viewer_reads_notes_but_cannot_write_one(viewer_client, record):
    note_create(author=None, instance=record.instance, record=record, text="read me", incident="INC-1")

    assert viewer_client.post("/backups/bk-1/notes/", {"text": "x"}).status_code == 403
    assert viewer_client.post("/instances/inst-1/notes/", {"text": "x"}).status_code == 403
    assert Note.objects.count() == 1
    page = viewer_client.get("/backups/bk-1/").text
    assert "read me" in page
    assert "/backups/bk-1/notes/" not in page  # no form


def test_it_needs_a_login_to_write_a_note(client, record):
    response = client.post("/backups/bk-1/notes/", {"text": "x"})

    assert response.status_code == 302 and "/accounts/login/" in response.url
    assert not Note.objects.exists()


@pytest.mark.parametrize(
    "data,message",
    [
        ({"incident": "", "text": "   "}, "Write a note, an incident reference, or both."),
        ({"incident": "not a ref", "text": "x"}, "is not an incident reference"),
        ({"incident": "INC-1", "text": "x" * 4001}, "at most 4000 characters"),
        ({"incident": "I" * 70 + "-1", "text": ""}, "at most 64 characters"),
    ],
)
def test_it_refuses_a_bad_note_with_a_clear_message(operator_client, record, data, message):
    response = operator_client.post("/backups/bk-1/notes/", data, follow=True)

    assert response.status_code == 200
    assert not Note.objects.exists()
    assert "The note was not saved." in response.text
    assert message in response.text


def test_it_is_404_for_an_unknown_backup(operator_client, db):
    assert operator_client.post("/backups/nope/notes/", {"text": "x"}).status_code == 404


def test_it_refuses_get_on_the_note_url(operator_client, record):
    assert operator_client.get("/backups/bk-1/notes/").status_code == 405


def test_it_escapes_what_a_note_says(operator_client, record):
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    note_create(author=None, instance=record.instance, record=record, text=payload, incident="INC-9")

    for url in ("/backups/bk-1/", "/instances/inst-1/"):
        page = operator_client.get(url).text
        assert payload not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_it_filters_backups_by_incident_in_any_case(admin_client, record):
    other = make_record(record.instance, backup_id="bk-2", backup_name="unnoted-backup")
    note_create(author=None, instance=record.instance, record=record, text="", incident="INC-5")
    note_create(author=None, instance=record.instance, text="instance only", incident="INC-6")

    page = admin_client.get("/backups/", {"incident": "inc-5"}).text
    assert record.backup_name in page and other.backup_name not in page
    # A note on the instance alone names no backup.
    assert (
        "No backup records match these filters." in admin_client.get("/backups/", {"incident": "INC-6"}).text
    )


def test_it_filters_instances_by_an_incident_on_them_or_their_backups(admin_client, record):
    on_instance = make_instance(name="sessions-cache")
    make_instance(name="quiet-cache")
    note_create(author=None, instance=record.instance, record=record, text="", incident="INC-5")
    note_create(author=None, instance=on_instance, text="", incident="INC-5")

    page = admin_client.get("/instances/", {"incident": "Inc-5"}).text
    assert "orders-cache" in page and "sessions-cache" in page and "quiet-cache" not in page


@pytest.mark.parametrize("url", ["/backups/", "/instances/"])
def test_it_says_why_a_bad_incident_filter_is_ignored(admin_client, record, url):
    response = admin_client.get(url, {"incident": "12<b>"})

    assert response.status_code == 200
    assert "Incident (incident) was ignored" in response.text
    assert "is not an incident reference" in response.text
    assert "<b>" not in response.text.split("Incident (incident) was ignored")[1][:200]


def test_it_exports_the_notes_of_each_backup(admin_client, record):
    plain = make_record(record.instance, backup_id="bk-2")
    note_create(author=None, instance=record.instance, record=record, text="first\nline", incident="INC-1")
    note_create(author=None, instance=record.instance, record=record, text="second", incident="INC-2")
    note_create(author=None, instance=record.instance, record=record, text="", incident="INC-1")
    note_create(author=None, instance=record.instance, text="not on a backup", incident="INC-3")

    body = b"".join(admin_client.get("/backups/", {"_export": "csv"}).streaming_content).decode()
    rows = {row["Backup id"]: row for row in csv.DictReader(io.StringIO(body))}
    assert rows["bk-1"]["Incidents"] == "INC-1, INC-2"
    assert rows["bk-1"]["Notes"] == "first line | second"
    assert rows[plain.backup_id]["Incidents"] == rows[plain.backup_id]["Notes"] == ""

    items = json.loads(b"".join(admin_client.get("/backups/", {"_export": "json"}).streaming_content))
    noted = next(item for item in items if item["backup_id"] == "bk-1")
    assert (noted["incidents"], noted["notes"]) == ("INC-1, INC-2", "first line | second")


def note_queries(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if 'FROM "backups_note"' in q["sql"]]


@pytest.fixture
def nine_in_chunks_of_three(record, monkeypatch):
    """Nine backups, newest first in the export, in chunks of three; the first and the eighth noted."""
    monkeypatch.setattr("backups.exports.records.CHUNK_SIZE", 3)
    records = [make_record(record.instance, created_at=T0 - timedelta(hours=n)) for n in range(1, 9)]
    record.created_at = T0
    record.save(update_fields=["created_at"])
    records = [record, *records]
    note_create(author=None, instance=record.instance, record=records[0], text="first", incident="INC-1")
    note_create(author=None, instance=record.instance, record=records[0], text="", incident="INC-2")
    note_create(author=None, instance=record.instance, record=records[7], text="late,\nchunk", incident="")
    note_create(author=None, instance=record.instance, text="on the instance", incident="INC-3")
    return records


@pytest.mark.parametrize("export_format", ["csv", "json"])
def test_it_exports_the_notes_across_chunks(admin_client, nine_in_chunks_of_three, export_format):
    records = nine_in_chunks_of_three
    response = admin_client.get("/backups/", {"_export": export_format})
    body = b"".join(response.streaming_content).decode()
    if export_format == "csv":
        cells = [
            (row["Backup id"], row["Incidents"], row["Notes"]) for row in csv.DictReader(io.StringIO(body))
        ]
    else:
        cells = [(item["backup_id"], item["incidents"], item["notes"]) for item in json.loads(body)]

    expected = [(r.backup_id, "", "") for r in records]
    expected[0] = (records[0].backup_id, "INC-1, INC-2", "first")
    expected[7] = (records[7].backup_id, "", "late, chunk")
    assert cells == expected


def test_it_asks_for_notes_only_in_the_chunks_of_noted_backups(admin_client, nine_in_chunks_of_three):
    records = nine_in_chunks_of_three
    with CaptureQueriesContext(connection) as captured:
        b"".join(admin_client.get("/backups/", {"_export": "csv"}).streaming_content)

    # The noted backups' ids once, then the first and the third chunk's
    # notes, by the ids of their noted backups alone; none for the second.
    learned, first, third = note_queries(captured)
    assert "DISTINCT" in learned
    assert f"IN ({records[0].pk})" in first
    assert f"IN ({records[7].pk})" in third


def test_it_asks_no_notes_for_an_export_without_noted_backups(admin_client, record, monkeypatch):
    monkeypatch.setattr("backups.exports.records.CHUNK_SIZE", 2)
    for _ in range(6):
        make_record(record.instance)
    note_create(author=None, instance=record.instance, text="on the instance only", incident="INC-3")
    with CaptureQueriesContext(connection) as captured:
        body = b"".join(admin_client.get("/backups/", {"_export": "csv"}).streaming_content).decode()

    assert len(note_queries(captured)) == 1  # the noted backups' ids, found none: four chunks ask nothing
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 7 and {(row["Incidents"], row["Notes"]) for row in rows} == {("", "")}


def test_past_the_noted_backups_it_keeps_it_asks_each_chunk_by_all_its_ids(
    admin_client, nine_in_chunks_of_three, monkeypatch
):
    from backups import notes

    kept = b"".join(admin_client.get("/backups/", {"_export": "csv"}).streaming_content)
    monkeypatch.setattr(notes, "EXPORT_NOTED_RECORDS_MAX", 1)
    with CaptureQueriesContext(connection) as captured:
        asked = b"".join(admin_client.get("/backups/", {"_export": "csv"}).streaming_content)

    assert asked == kept
    assert len(note_queries(captured)) == 1 + 3  # the ids (two: too many), then every chunk


def test_export_notes_give_each_record_its_cells_once_learned(record):
    from backups.models import BackupRecord
    from backups.notes import ExportNotes

    quiet, noted = make_record(record.instance), make_record(record.instance)
    note_create(author=None, instance=record.instance, record=noted, text="before", incident="INC-1")
    notes = ExportNotes()

    def chunk(*chosen) -> list[tuple[str, str]]:
        records = [BackupRecord(pk=r.pk) for r in chosen]
        notes.attach(records)
        return [(r.note_incidents, r.note_texts) for r in records]

    assert chunk(record, noted, noted) == [("", ""), ("INC-1", "before"), ("INC-1", "before")]
    # Written after the first chunk: seen on a backup that had notes then, not on another.
    note_create(author=None, instance=record.instance, record=noted, text="after", incident="")
    note_create(author=None, instance=record.instance, record=quiet, text="after", incident="")
    with CaptureQueriesContext(connection) as captured:
        assert chunk(quiet, noted) == [("", ""), ("INC-1", "before | after")]
        assert chunk(quiet) == [("", "")]
        assert chunk() == []
    assert len(captured) == 1


def test_a_note_service_refuses_a_backup_of_another_instance(record):
    with pytest.raises(ValueError):
        note_create(author=None, instance=make_instance(), record=record, text="x", incident="")
