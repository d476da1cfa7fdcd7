"""The tables' body rows (backups.tables.rendering): the same HTML as django-tables2's own cell path.

Each page is fetched once; on that one request every table's rows are
rendered both ways, from the same table and the same template context, and
compared as text. The records cover every kind of cell: running, waiting,
failed (known and unknown error codes), gone, unknown size and end,
anomalies, values the enums do not know, ids a URL cannot carry, and markup
in every string the API sends.
"""

from __future__ import annotations

import html
import itertools
import re
from datetime import timedelta
from decimal import Decimal

import django_tables2 as tables
import pytest
from django.contrib.auth.models import Group
from django.template import Context, Template
from django.utils import timezone
from django_tables2.rows import BoundRow

from backups.models import (
    Alert,
    AlertDelivery,
    AuditEvent,
    BackupRecord,
    DcsInstance,
    RestoreRecord,
    SyncError,
    SyncRunItem,
)
from backups.tables import rendering
from backups.templatetags import table_rows
from tests.factories import make_instance, make_record, make_sync_run

XSS = '<script>alert("x")</script>&amp;'
HOUR = timedelta(hours=1)

# django-tables2's cell path with the loop includes/table.html had: the reference.
STANDARD_ROWS = Template(
    "{% for row in rows %}<tr {{ row.attrs.as_html }}>"
    "{% for column, cell in row.items %}<td {{ column.attrs.td.as_html }}>{{ cell }}</td>{% endfor %}"
    "</tr>{% if not forloop.last %}\n{% endif %}{% endfor %}"
)


def standard_body_rows(table, context) -> str:
    # Rows numbered from the page's first, for even/odd, as a fresh table's are.
    records = [row.record for row in table.paginated_rows]
    table._counter = itertools.count()
    rows = [BoundRow(record, table=table) for record in records]
    with context.push(rows=rows):
        return STANDARD_ROWS.render(context)


@pytest.fixture
def rendered(monkeypatch):
    """Each table rendered on a request: (table class, django-tables2's rows, ours)."""
    seen = []

    def both(table, context):
        ours = rendering.render_body_rows(table, context)
        seen.append((type(table).__name__, standard_body_rows(table, context), str(ours)))
        return ours

    monkeypatch.setattr(table_rows, "render_body_rows", both)
    return seen


def assert_same_rows(rendered, *tables_expected):
    assert {name for name, _standard, _ours in rendered} >= set(tables_expected)
    for name, standard, ours in rendered:
        assert ours == standard, name
    assert any(ours for _name, _standard, ours in rendered)


@pytest.fixture
def fleet(db):
    """Instances and records with every kind of cell."""
    now = timezone.now()
    named = make_instance(name="orders-cache")
    unnamed = make_instance(name="")
    hostile = make_instance(name=XSS, engine_version="", status=XSS)
    gone = make_instance(name="old-cache", gone_at=now - 3 * HOUR)
    single = make_instance(name="single", spec_code="redis.single.xu1.large.1", capacity=1)
    never = make_instance(name="never-backed-up")  # noqa: F841 (a row with no backups at all)
    slash = make_instance(name="slashed", instance_id="id/with/slash")
    base = now - 30 * HOUR
    records = [
        make_record(named, created_at=base, status="succeed"),
        make_record(
            named, created_at=base + HOUR, status="backuping", progress=Decimal("42.50"), updated_at=None
        ),
        make_record(named, created_at=base + 2 * HOUR, status="waiting", progress=None, updated_at=None),
        make_record(named, created_at=base + 3 * HOUR, status="failed", error_code="dcs.08.0001"),
        make_record(unnamed, created_at=base + 4 * HOUR, status="failed", error_code=XSS, remark=XSS),
        make_record(unnamed, created_at=base + 5 * HOUR, gone_at=now - HOUR, backup_name=""),
        make_record(hostile, created_at=base + 6 * HOUR, backup_name=XSS, size=None, is_support_restore=None),
        make_record(hostile, created_at=base + 7 * HOUR, backup_type=XSS, backup_format="", status=XSS),
        make_record(gone, created_at=base + 8 * HOUR, is_support_restore=False, size=0),
        make_record(slash, created_at=base + 9 * HOUR, backup_id="backup/with/slash"),
        make_record(named, created_at=base + 10 * HOUR, size=5 * 1024**4, progress=Decimal("100.00")),
        make_record(single, created_at=base + 11 * HOUR, backup_id=""),
    ]
    BackupRecord.objects.filter(pk=records[0].pk).update(anomaly="size", size_ratio=0.3)
    BackupRecord.objects.filter(pk=records[3].pk).update(
        anomaly="size,duration", size_ratio=2.5, duration_ratio=4.0
    )
    for n, (status, backup) in enumerate(
        [
            ("succeed", records[0]),
            ("restoring", records[1]),
            ("failed", None),
            (XSS, None),
            ("waiting", records[9]),
        ]
    ):
        RestoreRecord.objects.create(
            instance=named,
            restore_id=f"r{n}",
            restore_name="" if n == 2 else f"restore {n} {XSS}",
            backup_id=backup.backup_id if backup else f"unknown-{n}",
            backup_name=backup.backup_name if backup else "",
            status=status,
            progress=None if n == 4 else Decimal("37.00"),
            error_code="dcs.08.0007" if status == "failed" else "",
            restore_remark=XSS,
            created_at=base + n * HOUR,
            updated_at=None if n in (1, 4) else base + n * HOUR + timedelta(minutes=5),
            first_seen=base,
            last_seen=base,
            gone_at=now if n == 3 else None,
        )
    return {"named": named, "unnamed": unnamed, "hostile": hostile, "gone": gone, "records": records}


BACKUP_URLS = [
    "/backups/",
    "/backups/?per_page=50",
    "/backups/?status=failed",
    "/backups/?sort=-size",
    "/backups/?sort=size",
    "/backups/?sort=status",
    "/backups/?sort=-updated_at",
    "/backups/?anomaly=any",
    "/backups/?per_page=25&page=2",
]


@pytest.mark.parametrize("url", BACKUP_URLS)
def test_it_renders_the_backup_list_as_django_tables2_does(admin_client, fleet, rendered, url):
    response = admin_client.get(url)
    assert response.status_code == 200
    assert_same_rows(rendered, "BackupRecordTable")


def test_it_renders_a_page_sought_from_a_cursor_as_django_tables2_does(
    admin_client, fleet, rendered, monkeypatch
):
    # Numbered pages end after the first 25 rows here: the second page is sought.
    monkeypatch.setattr("backups.views.mixins.MAX_NUMBERED_ROWS", 25)
    for _ in range(20):
        make_record(fleet["named"])
    first = admin_client.get("/backups/?per_page=25").text
    link = re.search(r'href="(\?[^"]*after=[^"]*)" rel="next"', first).group(1)
    response = admin_client.get("/backups/" + html.unescape(link))
    assert response.status_code == 200
    assert "after=" in response.text or "before=" in response.text
    assert_same_rows(rendered, "BackupRecordTable")


def test_it_renders_the_htmx_partial_as_django_tables2_does(admin_client, fleet, rendered):
    response = admin_client.get("/backups/?status=backuping", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "hx-trigger" in response.text
    assert_same_rows(rendered, "BackupRecordTable")


@pytest.mark.parametrize("url", ["/instances/", "/instances/?gone=all", "/instances/?sort=-overdue"])
def test_it_renders_the_fleet_as_django_tables2_does(admin_client, fleet, rendered, url):
    response = admin_client.get(url)
    assert response.status_code == 200
    assert_same_rows(rendered, "DcsInstanceTable")


@pytest.mark.parametrize("who", ["named", "unnamed", "hostile", "gone"])
def test_it_renders_an_instance_page_as_django_tables2_does(admin_client, fleet, rendered, who):
    response = admin_client.get(f"/instances/{fleet[who].instance_id}/")
    assert response.status_code == 200
    expected = ("BackupRecordTable", "RestoreRecordTable") if who == "named" else ("BackupRecordTable",)
    assert_same_rows(rendered, *expected)


def test_it_renders_in_another_language_and_time_zone(admin_client, fleet, rendered):
    admin_client.cookies["dashboard_tz"] = "Asia/Kolkata"
    for url in ("/backups/", "/instances/", f"/instances/{fleet['named'].instance_id}/"):
        assert admin_client.get(url, HTTP_ACCEPT_LANGUAGE="zh-CN").status_code == 200
    assert "+05:30" in rendered[0][2]
    assert_same_rows(rendered, "BackupRecordTable", "DcsInstanceTable", "RestoreRecordTable")


def test_it_renders_the_sync_alert_and_audit_tables_as_django_tables2_does(admin_client, fleet, rendered):
    now = timezone.now()
    run = make_sync_run(started_at=now - HOUR, outcome="partial", instances_failed=1)
    make_sync_run(started_at=now - 2 * HOUR, outcome="running", finished_at=None)
    SyncError.objects.create(
        run=run,
        instance=fleet["named"],
        scope=XSS,
        error="DcsServerError",
        status=500,
        error_code="DCS.4001",
        error_msg=XSS,
        request_id="req-1",
        occurred_at=now - HOUR,
    )
    SyncError.objects.create(run=run, scope="fleet", error=XSS, occurred_at=now - HOUR)
    SyncRunItem.objects.create(
        run=run, instance=fleet["named"], position=0, state="done", outcome="succeeded"
    )
    SyncRunItem.objects.create(run=run, instance=fleet["hostile"], position=1, state="queued")
    alert = Alert.objects.create(
        kind="rpo", key="rpo:1", instance=fleet["named"], summary=XSS, opened_at=now - 5 * HOUR
    )
    Alert.objects.create(
        kind="failed",
        key="failed:1",
        instance=fleet["hostile"],
        summary="down",
        opened_at=now - 9 * HOUR,
        resolved_at=now - HOUR,
    )
    AlertDelivery.objects.create(
        alert=alert, event="opened", channel="webhook", target=XSS, sent_at=now, error=XSS
    )
    AuditEvent.objects.create(username=XSS, action="export", detail={"format": XSS}, ip="10.0.0.1", path="/x")
    for url in ("/sync/", f"/sync/{run.pk}/", "/alerts/", "/audit/"):
        assert admin_client.get(url).status_code == 200, url
    assert_same_rows(
        rendered, "SyncRunTable", "SyncErrorTable", "SyncRunItemTable", "AlertTable", "AuditEventTable"
    )


def test_it_renders_nothing_for_an_empty_page(admin_client, db, rendered):
    html = admin_client.get("/backups/").text
    assert "No backup records yet." in html
    assert rendered == [("BackupRecordTable", "", "")]


# --- What none of our tables has, but django-tables2 offers: its own path, cell by cell --------


class Pet:
    def __init__(self, name, owner=None):
        self.name, self.owner = name, owner

    def get_absolute_url(self):
        return f"/pets/{self.name}/"


class EdgeTable(tables.Table):
    name = tables.Column(linkify=True)
    owner = tables.Column(default="nobody", attrs={"td": {"data-value": lambda value: value}})
    everything = tables.Column(empty_values=(), accessor="name")
    missing = tables.Column(empty_values=())
    bad = tables.Column(accessor="no__such__thing")
    labelled = tables.Column(accessor="name", attrs={"td": {"class": "a b"}, "th": {"class": "c"}})

    class Meta:
        row_attrs = {"data-name": lambda record: record.name, "class": lambda table: ""}
        attrs = {"td": {"class": "from-table"}}

    def render_everything(self, **kwargs):
        return f"{sorted(kwargs)} {kwargs['bound_row'].record.name}"

    def render_missing(self, value, unknown):
        return "never called"


def test_it_falls_back_to_django_tables2_for_what_depends_on_each_cell(rf):
    table = EdgeTable([Pet("rex", owner=XSS), Pet("<b>", owner=None), Pet("tom", owner="ann")])
    context = Context({"request": rf.get("/")})
    assert rendering.render_body_rows(table, context) == standard_body_rows(table, context)


def test_it_binds_each_columns_render_once_per_page(fleet, monkeypatch):
    from backups.tables import BackupRecordTable

    calls = []
    real = rendering.signature
    monkeypatch.setattr(rendering, "signature", lambda fn: calls.append(fn) or real(fn))
    table = BackupRecordTable(BackupRecord.objects.select_related("instance"))
    rendering.render_body_rows(table, Context())
    # Per column, and the row attributes: never per cell.
    assert len(calls) <= 3 * len(table.columns) + 1
    assert BackupRecord.objects.count() * len(table.columns) > len(calls)


def test_it_counts_rows_from_the_first_for_even_and_odd(fleet):
    from backups.tables import BackupRecordTable

    table = BackupRecordTable(BackupRecord.objects.select_related("instance"))
    html = rendering.render_body_rows(table, Context())
    classes = [line.split('class="', 1)[1].split('"', 1)[0].split()[-1] for line in html.split("\n")]
    assert classes[:3] == ["even", "odd", "even"]


def test_the_viewer_group_sees_the_same_rows(client, django_user_model, fleet, rendered):
    user = django_user_model.objects.create_user("viewer", password="not-a-real-password-1")
    user.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(user)
    assert client.get("/backups/").status_code == 200
    assert_same_rows(rendered, "BackupRecordTable")


def test_every_instance_in_the_fleet_fixture_is_listed(fleet):
    assert DcsInstance.objects.count() == 7


def test_the_cells_built_once_are_built_once_per_table_and_language(fleet):
    from django.utils import translation

    from backups.tables import BackupRecordTable

    def badges_and_yes(language):
        with translation.override(language):
            table = BackupRecordTable(BackupRecord.objects.select_related("instance"))
            return str(rendering.render_body_rows(table, Context()))

    english, chinese = badges_and_yes("en"), badges_and_yes("zh-hans")
    assert ">Succeeded</span>" in english and ">Yes</span>" in english
    assert ">Succeeded</span>" not in chinese and ">Yes</span>" not in chinese
    assert badges_and_yes("en") == english


@pytest.mark.parametrize("prefix", ["/", "/dash/"])
def test_a_pages_backup_links_equal_reversing_each_id(prefix):
    # Reversed once per page with the id put in place: the same URL as
    # reverse() for every id, or "" where the URL pattern cannot carry it.
    from django.urls import get_script_prefix, set_script_prefix

    from backups.tables.backups import PageBackupUrls, backup_url

    ids = [
        "abc-DEF_123",
        "0",
        "backup_id",
        ".",
        "..",
        "",
        "a/b",
        "a b",
        "x%y",
        "ä",
        "a\n",
        "~",
        "?q=1#f",
        "backup_id-x",
    ]
    old = get_script_prefix()
    set_script_prefix(prefix)
    try:
        urls = PageBackupUrls()
        for backup_id in ids:
            record = BackupRecord(backup_id=backup_id)
            assert urls(record) == backup_url(record), backup_id
        assert urls(BackupRecord(backup_id="abc")).startswith(prefix)
    finally:
        set_script_prefix(old)
