"""The backup list's export from tuple rows (exports.rows.tuple_rows): the very bytes of the general way."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backups.exports import csv_lines, export_fields, iso_utc
from backups.exports.rows import RowPlan, iso_utc_text, tuple_rows
from backups.exports.stream import csv_rows_text
from backups.models import BackupRecord, Note
from backups.tables import BackupRecordTable
from tests.factories import T0, make_instance, make_record
from tests.test_export_fast_path import the_slow_way

pytestmark = pytest.mark.django_db

MS = timedelta(microseconds=123_456)


@pytest.fixture
def every_case(db):
    """Records with every kind of cell the backup list exports."""
    named = make_instance(name="orders-cache", instance_id="inst-a")
    gone = make_instance(name="", instance_id="inst-b", gone_at=T0)
    chinese = make_instance(name="订单缓存, 主", instance_id="inst-c")
    formula = make_instance(name="=cmd|' /C calc'!A0", instance_id="inst-d")
    records = [
        make_record(named, size=3 * 1024**3, remark="=1+1", created_at=T0 + MS),
        make_record(named, status="failed", error_code="dcs.08.0008", size=None, remark="-5"),
        make_record(named, status="failed", error_code="dcs.99.9999", is_support_restore=False, remark="@x"),
        make_record(gone, status="backuping", progress=Decimal("42.50"), updated_at=None, gone_at=T0),
        make_record(gone, status="waiting", progress=None, size=0, backup_name=""),
        make_record(
            chinese, status="weird-new-status", backup_type="", backup_format="AOF", remark='中文, "q"'
        ),
        make_record(chinese, status="expired", is_support_restore=None, remark="line\nbreak\r\n\tx"),
        make_record(
            chinese, status="deleted", backup_type="manual", backup_name="=HYPERLINK(1)", remark="+1"
        ),
        make_record(formula, created_at=None, updated_at=None, remark="\ttab"),
        # Finished before it was created (a clock skew upstream): no duration.
        make_record(formula, created_at=T0, updated_at=T0 - timedelta(seconds=5)),
        # Under a millisecond: ".000"; a round millisecond: ".500".
        make_record(
            formula,
            created_at=T0 + timedelta(microseconds=500),
            updated_at=T0 + timedelta(seconds=90, microseconds=500_000),
        ),
        make_record(
            named,
            anomaly="size,duration",
            size_ratio=0.45,
            duration_ratio=3.25,
            size=-1,
            remark=",",
            backup_name='"quoted"',
        ),
        make_record(named, anomaly="size", size_ratio=1e-05, remark=""),
    ]
    for record, incident, text in [
        (records[0], "INC-1", "first, with a comma"),
        (records[0], "INC-2", "second\nline"),
        (records[0], "INC-1", ""),
        (records[3], "", '=she said "hi"'),
        (records[5], "INC-中", "中文"),
    ]:
        Note.objects.create(instance=record.instance, record=record, incident=incident, text=text)
    return records


def export(client, url: str, params: dict, language: str = "en") -> bytes:
    response = client.get(url, {"_export": "csv", **params}, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("url", ["/backups/", "/instances/inst-a/", "/instances/inst-d/"])
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_it_writes_the_bytes_of_the_general_way(admin_client, every_case, monkeypatch, url, language):
    fast = export(admin_client, url, {}, language)
    the_slow_way(monkeypatch)
    slow = export(admin_client, url, {}, language)

    assert fast == slow
    assert fast.count(b"INC-1") >= 1 or url != "/backups/"


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "status"},
        {"sort": "-size"},
        {"sort": "updated_at"},
        {"status": ["failed", "expired"]},
        {"anomaly": "any"},
        {"q": "orders"},
    ],
)
def test_it_keeps_the_filters_and_order_of_the_view(admin_client, every_case, monkeypatch, params):
    fast = export(admin_client, "/backups/", params)
    the_slow_way(monkeypatch)

    assert fast == export(admin_client, "/backups/", params)


def test_the_backup_list_takes_the_tuple_rows(every_case):
    table = BackupRecordTable(data=BackupRecord.objects.select_related("instance").newest_first())

    assert tuple_rows(table, export_fields(table)) is not None


def test_a_distinct_queryset_takes_the_general_way(every_case):
    records = BackupRecord.objects.select_related("instance").newest_first().distinct()
    table = BackupRecordTable(data=records)

    assert tuple_rows(table, export_fields(table)) is None


def test_a_value_function_it_does_not_know_takes_the_general_way(admin_client, every_case):
    class Overridden(BackupRecordTable):
        def value_remark(self, value):
            return value.upper()

    table = Overridden(data=BackupRecord.objects.select_related("instance").newest_first())
    assert tuple_rows(table, export_fields(table)) is None
    assert any(",=1+1," not in line and "'=1+1" in line for line in csv_lines(table))


def test_it_reads_the_records_once_and_the_notes_of_noted_chunks_only(admin_client, every_case, monkeypatch):
    monkeypatch.setattr("backups.exports.records.CHUNK_SIZE", 5)
    with CaptureQueriesContext(connection) as captured:
        body = export(admin_client, "/backups/", {})

    sql = [query["sql"] for query in captured.captured_queries]
    assert len([q for q in sql if "backups_backuprecord" in q.split(" FROM ")[-1].split(" WHERE ")[0]]) == 1
    # 13 records in chunks of 5: the ids of the noted backups once, then a
    # query for the notes of each chunk holding one of them (three are noted);
    # the instances are joined, never loaded one by one.
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    noted_chunks = {n // 5 for n, row in enumerate(rows) if row["Notes"]}
    assert len(noted_chunks) == 2  # (where NULL times sort differs by database); the third asks nothing
    assert len([q for q in sql if 'FROM "backups_note"' in q]) == 1 + len(noted_chunks)
    assert not [q for q in sql if 'FROM "backups_dcsinstance"' in q]
    assert body.count(b"\r\n") >= 14


def test_the_stand_ins_of_a_chunk_keep_nothing_of_the_last(every_case, monkeypatch):
    monkeypatch.setattr("backups.exports.records.CHUNK_SIZE", 4)
    seen = []

    class Marking(BackupRecordTable):
        def prepare_export_chunk(self, records):
            seen.append([record.__dict__.get("note_texts", "unset") for record in records])
            super().prepare_export_chunk(records)
            for record in records:
                assert record._state.adding is False
                assert record._state.fields_cache == {}

    table = Marking(data=BackupRecord.objects.select_related("instance").newest_first())
    list(csv_lines(table))

    assert len(seen) == 4
    assert all(text == "unset" for chunk in seen for text in chunk)


def test_the_export_command_writes_the_same_bytes_as_the_general_way(every_case, monkeypatch, tmp_path):
    fast, slow = tmp_path / "fast.csv", tmp_path / "slow.csv"
    call_command("export_backups", "--format", "csv", "--output", str(fast), "--language", "zh-hans")
    the_slow_way(monkeypatch)
    call_command("export_backups", "--format", "csv", "--output", str(slow), "--language", "zh-hans")

    assert fast.read_bytes() == slow.read_bytes()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26 12:00:00", "2026-11-26T12:00:00Z"),
        ("2026-11-26 12:00:00.123456", "2026-11-26T12:00:00.123Z"),
        ("2026-11-26 12:00:00.000500", "2026-11-26T12:00:00.000Z"),
        ("2026-11-26 12:00:00+00", "2026-11-26T12:00:00Z"),
        ("2026-11-26 12:00:00.5+00", "2026-11-26T12:00:00.500Z"),
        ("2026-11-26 12:00:00.0005+00", "2026-11-26T12:00:00.000Z"),
        ("2026-11-26 12:00:00.999999+00", "2026-11-26T12:00:00.999Z"),
        # Spellings it has no shortcut for are parsed.
        ("2026-11-26 20:00:00+08", "2026-11-26T12:00:00Z"),
        ("2026-11-26T12:00:00.250+00:00", "2026-11-26T12:00:00.250Z"),
    ],
)
def test_a_time_as_the_database_spells_it_is_written_as_iso_utc(text, expected):
    assert iso_utc_text(text) == expected


def test_a_time_read_back_as_text_is_iso_utc_on_this_database(every_case):
    moments = [
        datetime(2026, 11, 26, 12, 0, 0, microsecond, tzinfo=UTC)
        for microsecond in (0, 1, 500, 1000, 123_456, 500_000, 999_999)
    ]
    record = every_case[0]
    for moment in moments:
        BackupRecord.objects.filter(pk=record.pk).update(created_at=moment)
        plan = RowPlan(BackupRecord.objects.filter(pk=record.pk))
        at = plan.at("created_at", text=True)
        [row] = next(iter(plan.chunks()))
        assert iso_utc_text(row[at]) == iso_utc(moment)


@pytest.mark.parametrize(
    "cells",
    [
        ["a", "b", ""],
        ["a,b", "c"],
        ['say "hi"', ""],
        ["line\nbreak", "x"],
        ["cr\rhere", "x"],
        [""],
        ["", ""],
        ["only"],
        [],
        ["\t", " lead", "trail "],
        ["中文", "'=1"],
    ],
)
def test_rows_are_joined_exactly_as_the_csv_module_writes_them(cells):
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def write_row(row):
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        return buffer.getvalue()

    expected = io.StringIO()
    csv.writer(expected).writerows([cells, cells])
    assert csv_rows_text(iter([cells, cells]), write_row) == expected.getvalue()
