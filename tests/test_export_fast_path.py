"""The export's shortcuts (no BoundRow, no Model.__init__) write exactly what django-tables2 would."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tables2.rows import BoundRow

from backups.exports.records import fast_records
from backups.models import BackupRecord
from backups.views.mixins import TablePageMixin
from tests.factories import T0, make_instance, make_record, make_status_change, make_sync_run

pytestmark = pytest.mark.django_db

EXPORT_URLS = ["/backups/", "/instances/", "/sync/", "/audit/"]


def the_slow_way(monkeypatch) -> None:
    """Every cell through BoundRow.get_cell_value() and every record through the ORM, as before."""
    monkeypatch.setattr("backups.exports.stream.tuple_rows", lambda table, fields: None)
    monkeypatch.setattr("backups.exports.records.fast_records", lambda queryset, named=(): None)
    monkeypatch.setattr(
        "backups.exports.fields.cell_value",
        lambda table, bound: (
            lambda record, raw=None: BoundRow(record, table=table).get_cell_value(bound.name)
        ),
    )
    monkeypatch.setattr(
        "backups.exports.fields.resolver",
        lambda accessor: lambda record: accessor.resolve(record, quiet=True),
    )


@pytest.fixture
def varied(db):
    """Records with every kind of value a cell can hold: empty, unknown, unicode, gone, formulas."""
    plain = make_instance(name="orders-cache", instance_id="inst-a")
    nameless = make_instance(name="", instance_id="inst-b", gone_at=T0)
    chinese = make_instance(name="订单缓存", instance_id="inst-c", capacity=0, capacity_minor=".125")
    records = [
        make_record(plain, status="succeed", size=3 * 1024**3, remark="=1+1"),
        make_record(plain, status="failed", error_code="dcs.08.0008", size=None, progress=Decimal("12.34")),
        make_record(plain, status="failed", error_code="dcs.99.9999", is_support_restore=False),
        make_record(nameless, status="backuping", progress=Decimal("42.50"), updated_at=None, gone_at=T0),
        make_record(nameless, status="waiting", progress=None, size=0, backup_name=""),
        make_record(
            chinese, status="weird-new-status", backup_type="", backup_format="AOF", remark='中文, "q"'
        ),
        make_record(chinese, status="expired", is_support_restore=None, updated_at=T0 - timedelta(days=1)),
        make_record(chinese, status="deleted", backup_type="manual", remark="line\nbreak\t@x"),
    ]
    make_status_change(records[0])
    make_sync_run(instances_seen=3, records_new=8)
    return records


@pytest.mark.parametrize("url", [*EXPORT_URLS, "/instances/inst-a/", "/instances/inst-c/"])
@pytest.mark.parametrize("export_format", ["csv", "json"])
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_it_writes_the_same_bytes_as_the_bound_rows(
    admin_client, varied, monkeypatch, url, export_format, language
):
    params = {"_export": export_format}
    # Both exports at one moment: the fleet's "over RPO by" moves with the clock.
    moment = timezone.now()
    monkeypatch.setattr(TablePageMixin, "now", property(lambda view: moment))
    fast = b"".join(admin_client.get(url, params, HTTP_ACCEPT_LANGUAGE=language).streaming_content)
    the_slow_way(monkeypatch)
    slow = b"".join(admin_client.get(url, params, HTTP_ACCEPT_LANGUAGE=language).streaming_content)

    if url == "/audit/":
        # The first export is itself an audit event, newest first in the second.
        slow = drop_first_item(slow, export_format)
    assert fast == slow
    assert fast.count(b"\n") >= 2


def drop_first_item(body: bytes, export_format: str) -> bytes:
    if export_format == "json":
        items = json.loads(body)
        return ("[\n" + ",\n".join(json.dumps(i, ensure_ascii=False) for i in items[1:]) + "\n]\n").encode()
    rows = list(csv.reader(io.StringIO(body.decode())))
    out = io.StringIO()
    csv.writer(out).writerows([rows[0], *rows[2:]])
    return out.getvalue().encode()


@pytest.mark.parametrize("sort", ["status", "-size", "updated_at", "-created_at"])
def test_it_keeps_the_order_and_filters_of_the_view(admin_client, varied, monkeypatch, sort):
    params = {"_export": "csv", "sort": sort, "status": ["failed", "succeed", "expired"]}
    fast = b"".join(admin_client.get("/backups/", params).streaming_content)
    the_slow_way(monkeypatch)

    assert fast == b"".join(admin_client.get("/backups/", params).streaming_content)


def test_it_loads_no_more_than_the_one_query_for_the_records(admin_client, varied):
    with CaptureQueriesContext(connection) as captured:
        b"".join(admin_client.get("/backups/", {"_export": "csv"}).streaming_content)

    records = [q["sql"] for q in captured.captured_queries if "backups_backuprecord" in q["sql"]]
    assert len(records) == 1
    # The raw JSON is not read by any column, so it is not fetched.
    assert '"raw"' not in records[0].split(" FROM ")[0]


def test_a_deferred_field_still_reads_right_when_a_column_needs_it(varied):
    table_records = fast_records(BackupRecord.objects.select_related("instance").order_by("pk"))
    first = next(iter(table_records))

    assert first.raw == BackupRecord.objects.order_by("pk").first().raw
    assert first.instance.created_at == varied[0].instance.created_at
