"""Exports of table pages (``?_export=csv`` / ``?_export=json``): the whole filtered, sorted view."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from tests.factories import T0, make_instance, make_record

LIST_URL = "/backups/"
# Session, user, the records with their instances, the ids of the backups with
# notes (once per export; a chunk without one asks no more), and the audit
# event: no count, no page, nothing per chunk.
EXPORT_QUERIES = 5
CSV_HEADER = [
    "Instance",
    "Instance id",
    "Backup",
    "Backup id",
    "Type",
    "Status",
    "Progress",
    "Size",
    "Format",
    "Created",
    "Finished",
    "Duration (s)",
    "Anomaly",
    "Size vs median",
    "Duration vs median",
    "Error",
    "Remark",
    "Restorable",
    "Incidents",
    "Notes",
]
JSON_KEYS = [
    "instance",
    "instance_id",
    "backup_name",
    "backup_id",
    "backup_type",
    "status",
    "progress",
    "size",
    "backup_format",
    "created_at",
    "updated_at",
    "duration_seconds",
    "anomaly",
    "size_ratio",
    "duration_ratio",
    "error_code",
    "remark",
    "is_support_restore",
    "incidents",
    "notes",
]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
# Markup our columns render on the page; none of it may reach an export.
OUR_MARKUP = ("<span", "<a ", "<time", "<progress", "<code", "&lt;", "&amp;", "badge")


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def download(client, url, params=None, **kwargs) -> tuple[StreamingHttpResponse, str]:
    response = client.get(url, params or {}, **kwargs)
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    return response, b"".join(response.streaming_content).decode("utf-8")


def csv_rows(client, params=None, url=LIST_URL, **kwargs) -> list[list[str]]:
    _response, body = download(client, url, {**(params or {}), "_export": "csv"}, **kwargs)
    return list(csv.reader(io.StringIO(body)))


def json_items(client, params=None, url=LIST_URL, **kwargs) -> list[dict]:
    _response, body = download(client, url, {**(params or {}), "_export": "json"}, **kwargs)
    return json.loads(body)


@pytest.fixture
def sixty(db):
    """60 records over two instances, every third one failed."""
    a = make_instance(name="orders-cache", instance_id="inst-a")
    b = make_instance(name="sessions", instance_id="inst-b")
    return [
        make_record(
            a if i % 2 else b,
            backup_name=f"r{i:02d}",
            status="failed" if i % 3 == 0 else "succeed",
            size=1000 + i,
            created_at=T0 + timedelta(minutes=i),
        )
        for i in range(60)
    ]


# --- CSV -------------------------------------------------------------------


def test_it_exports_csv_as_an_attachment(admin_client, sixty):
    response, body = download(admin_client, LIST_URL, {"_export": "csv"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="dcs-backups-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"]
    )
    assert body.splitlines()[0].split(",") == CSV_HEADER


def test_it_exports_the_whole_filtered_sorted_view_not_one_page(admin_client, sixty):
    rows = csv_rows(admin_client, {"status": "failed", "sort": "-size", "page": "2", "per_page": "25"})

    header, body = rows[0], rows[1:]
    expected = sorted((r for r in sixty if r.status == "failed"), key=lambda r: -r.size)
    assert len(body) == 20
    names = [row[header.index("Backup")] for row in body]
    assert names == [r.backup_name for r in expected]
    assert {row[header.index("Status")] for row in body} == {"Failed"}


def test_it_exports_more_rows_than_one_chunk(admin_client, sixty, monkeypatch):
    monkeypatch.setattr("backups.exports.records.CHUNK_SIZE", 7)

    assert len(csv_rows(admin_client)) == 61
    assert len(json_items(admin_client)) == 60


def test_it_writes_plain_text_and_utc_times_in_csv(admin_client, db):
    make_record(
        make_instance(name="orders-cache", instance_id="inst-1"),
        backup_name="nightly",
        backup_id="bk-1",
        status="backuping",
        backup_type="manual",
        backup_format="aof",
        progress=Decimal("37.50"),
        size=1536,
        error_code="dcs.08.0002",
        remark="before the freeze",
        created_at=T0,
        updated_at=T0 + timedelta(minutes=3, seconds=12, microseconds=166000),
        is_support_restore=False,
    )

    header, row = csv_rows(admin_client)

    assert dict(zip(header, row, strict=True)) == {
        "Instance": "orders-cache (inst-1)",
        "Instance id": "inst-1",
        "Backup": "nightly",
        "Backup id": "bk-1",
        "Type": "Manual",
        "Status": "Backing up",
        "Progress": "37.5",
        "Size": "1536",
        "Format": "AOF",
        "Created": "2025-03-01T12:00:00Z",
        "Finished": "2025-03-01T12:03:12.166Z",
        "Duration (s)": "192",
        "Anomaly": "",
        "Size vs median": "",
        "Duration vs median": "",
        "Error": "dcs.08.0002: The backup timed out.",
        "Remark": "before the freeze",
        "Restorable": "False",
        "Incidents": "",
        "Notes": "",
    }


def test_it_leaves_unknown_values_empty(admin_client, db):
    make_record(size=None, progress=None, updated_at=None, is_support_restore=None, error_code="", remark="")

    header, row = csv_rows(admin_client)
    values = dict(zip(header, row, strict=True))
    item = json_items(admin_client)[0]

    for name in ("Size", "Progress", "Finished", "Duration (s)", "Error", "Remark", "Restorable"):
        assert values[name] == "", name
    for key in (
        "size",
        "progress",
        "updated_at",
        "duration_seconds",
        "error_code",
        "remark",
        "is_support_restore",
    ):
        assert item[key] is None, key


def test_it_puts_no_html_in_any_cell(admin_client, db):
    instance = make_instance(name="orders-cache")
    make_record(instance, status="backuping", progress=Decimal("10"), gone_at=T0, error_code="dcs.08.0001")
    make_record(instance, status="waiting", progress=None, size=5 * 1024**3)
    make_record(make_instance(name="", instance_id="a/b"), backup_name="", backup_id="x/y", status="weird")

    rows = csv_rows(admin_client)
    items = json_items(admin_client)

    for cell in [cell for row in rows for cell in row] + [v for item in items for v in item.values()]:
        assert not any(markup in str(cell) for markup in OUR_MARKUP), cell


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_it_neutralises_formulas_in_csv(admin_client, db, start):
    make_record(
        make_instance(name=f"{start}cmd|' /C calc'!A0"),
        backup_name=f'{start}HYPERLINK("http://evil")',
        remark=f"{start}1+1",
    )

    header, row = csv_rows(admin_client)
    values = dict(zip(header, row, strict=True))

    assert values["Backup"] == f'\'{start}HYPERLINK("http://evil")'
    assert values["Remark"] == f"'{start}1+1"
    assert values["Instance"].startswith(f"'{start}cmd")
    # JSON is data, not a spreadsheet: it carries the text as received.
    assert json_items(admin_client)[0]["remark"] == f"{start}1+1"


def test_it_keeps_api_text_as_text(admin_client, db):
    make_record(backup_name='a "quoted", name', remark="line one\nline two, 中文 <b>")

    header, row = csv_rows(admin_client)
    values = dict(zip(header, row, strict=True))

    assert values["Backup"] == 'a "quoted", name'
    assert values["Remark"] == "line one\nline two, 中文 <b>"


# --- JSON ------------------------------------------------------------------


def test_it_exports_json_with_stable_keys_and_real_types(admin_client, db):
    make_record(
        make_instance(name="orders-cache", instance_id="inst-1"),
        backup_name="nightly",
        backup_id="bk-1",
        status="succeed",
        progress=Decimal("100.00"),
        size=3 * 1024**3,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=2),
        is_support_restore=True,
    )
    make_record(status="backuping", progress=Decimal("42.50"), is_support_restore=False)

    response, body = download(admin_client, LIST_URL, {"_export": "json", "sort": "created_at"})
    items = json.loads(body)

    assert response["Content-Type"] == "application/json"
    assert re.fullmatch(
        r'attachment; filename="dcs-backups-\d{8}T\d{6}Z\.json"', response["Content-Disposition"]
    )
    assert [list(item) for item in items] == [JSON_KEYS, JSON_KEYS]
    first, second = items
    assert first["instance_id"] == "inst-1"
    assert first["backup_id"] == "bk-1"
    assert first["size"] == 3221225472
    assert first["progress"] == 100
    assert second["progress"] == 42.5
    assert first["is_support_restore"] is True
    assert second["is_support_restore"] is False
    assert first["created_at"] == "2025-03-01T12:00:00Z"
    assert first["duration_seconds"] == 120
    assert first["status"] == "succeed"  # the stored code, the same in every language
    assert all(ISO_UTC.match(item["created_at"]) for item in items)


def test_it_exports_an_empty_json_array(admin_client, db):
    assert json_items(admin_client) == []
    assert csv_rows(admin_client) == [CSV_HEADER]


def test_it_exports_the_filtered_view_as_json(admin_client, sixty):
    items = json_items(
        admin_client, {"instance": "inst-a", "status": "failed", "created_after": "2025-03-01T12:30Z"}
    )

    expected = [
        r
        for r in reversed(sixty)
        if r.instance.instance_id == "inst-a"
        and r.status == "failed"
        and r.created_at >= T0 + timedelta(minutes=30)
    ]
    assert [item["backup_name"] for item in items] == [r.backup_name for r in expected]


def test_it_exports_utc_whatever_zone_the_viewer_picked(admin_client, db):
    make_record(created_at=T0)
    admin_client.cookies["dashboard_tz"] = "Asia/Shanghai"

    assert json_items(admin_client)[0]["created_at"] == "2025-03-01T12:00:00Z"
    header, row = csv_rows(admin_client)
    assert row[header.index("Created")] == "2025-03-01T12:00:00Z"


# --- Around the export -----------------------------------------------------


@pytest.mark.parametrize("value", ["xml", "CSV", "csv ", "1", "<script>"])
def test_it_shows_the_page_for_an_unknown_export_format(admin_client, sixty, value):
    response = admin_client.get(LIST_URL, {"_export": value})

    assert response.status_code == 200
    assert not response.streaming
    assert "is not an export format: use csv, json." in response.text
    assert "<table" in response.text
    assert "<script>" not in response.text


def test_it_offers_export_links_for_the_whole_view(admin_client, sixty):
    html = admin_client.get(LIST_URL, {"status": "failed", "page": "2", "q": ""}).text

    assert 'href="/backups/?status=failed&amp;_export=csv" download' in html
    assert 'href="/backups/?status=failed&amp;_export=json" download' in html


def test_it_exports_an_instance_page_too(admin_client, db):
    mine = make_instance(name="orders-cache")
    make_record(mine, backup_name="mine")
    make_record(make_instance(), backup_name="theirs")

    rows = csv_rows(admin_client, url=f"/instances/{mine.instance_id}/")

    assert [row[rows[0].index("Backup")] for row in rows[1:]] == ["mine"]
    assert "Instance" not in rows[0]  # the page leaves that column out


@pytest.mark.parametrize("export_format", ["csv", "json"])
def test_it_exports_any_number_of_rows_in_the_same_queries(admin_client, db, export_format, monkeypatch):
    monkeypatch.setattr("backups.exports.records.CHUNK_SIZE", 4)  # one chunk, then eleven

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            download(admin_client, LIST_URL, {"_export": export_format, "status": "succeed"})
        # The audit write's savepoint exists only under the test's transaction: a
        # request runs in autocommit, where the write is its own transaction.
        return sum(not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) for q in captured)

    instance = make_instance()
    for _ in range(3):
        make_record(instance)
    few = queries()
    for i in range(40):
        make_record(make_instance() if i % 5 == 0 else instance)
    many = queries()

    assert few == many == EXPORT_QUERIES
