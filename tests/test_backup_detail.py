"""One backup's page (``/backups/<backup_id>/``)."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import T0, make_instance, make_record, make_status_change

# Session, user, the record with its instance, its status changes, its notes.
DETAIL_QUERIES = 5


def detail_url(record) -> str:
    return reverse("backups:backup-detail", args=[record.backup_id])


def facts(html: str) -> dict[str, str]:
    """The page's <dt>/<dd> pairs, tags stripped and whitespace collapsed."""
    pairs = re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", html, flags=re.S)
    return {dt: " ".join(re.sub(r"<[^>]+>", " ", dd).split()) for dt, dd in pairs}


@pytest.fixture
def record(db):
    instance = make_instance(
        name="orders-cache",
        instance_id="inst-orders-1",
        region="ap-southeast-1",
        engine="Redis",
        engine_version="6.0",
    )
    return make_record(
        instance,
        backup_id="bk-2f0c-0001",
        backup_name="backup_20250301",
        backup_type="manual",
        status="failed",
        backup_format="aof",
        period="00:00-01:00",
        size=3 * 1024**3,
        progress=Decimal("35.00"),
        error_code="dcs.08.0002",
        remark="before the freeze",
        is_support_restore=False,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=4, seconds=7),
        execution_at=T0 + timedelta(seconds=30),
        first_seen=T0 + timedelta(seconds=5),
        last_seen=T0 + timedelta(hours=1),
        gone_at=T0 + timedelta(days=8),
        raw={"backup_id": "bk-2f0c-0001", "status": "failed", "size": 3221225472, "备注": "中文"},
    )


def test_it_names_the_url():
    assert reverse("backups:backup-detail", args=["abc"]) == "/backups/abc/"


def test_it_shows_every_field(admin_client, record):
    response = admin_client.get(detail_url(record))

    assert response.status_code == 200
    shown = facts(response.text)
    assert shown["Backup name"] == "backup_20250301"
    assert shown["Backup id"] == "bk-2f0c-0001"
    assert shown["Instance"] == "orders-cache inst-orders-1"
    assert shown["Region"] == "ap-southeast-1"
    assert shown["Engine"] == "Redis 6.0"
    assert shown["Status"] == "Failed"
    assert shown["Type"] == "Manual"
    assert shown["Format"] == "AOF"
    assert shown["Progress"] == "35%"
    assert shown["Size"] == "3.0 GiB (3221225472 B)"
    assert shown["Period"] == "00:00-01:00"
    assert shown["Duration"] == "4 min 7 s"
    assert shown["Restorable"] == "No"
    # The meaning, then what to do next, with a "?" link to the catalogue.
    assert shown["Error"].startswith("dcs.08.0002 The backup timed out. ? What to do: ")
    assert shown["Remark"] == "before the freeze"
    assert '<span class="badge badge--red">Failed</span>' in response.text
    assert '<span class="badge badge--purple">Manual</span>' in response.text


@pytest.mark.parametrize(
    ("label", "iso"),
    [
        ("Created", "2025-03-01T12:00:00Z"),
        ("Finished", "2025-03-01T12:04:07Z"),
        ("Executed", "2025-03-01T12:00:30Z"),
        ("First seen by our sync", "2025-03-01T12:00:05Z"),
        ("Last seen by our sync", "2025-03-01T13:00:00Z"),
        ("Gone since", "2025-03-09T12:00:00Z"),
    ],
)
def test_it_shows_every_time_in_the_viewers_zone_and_in_utc(admin_client, record, label, iso):
    html = admin_client.get(detail_url(record)).text

    dd = re.search(rf"<dt>{label}</dt><dd>(.*?)</dd>", html, flags=re.S).group(1)
    # The timestamp filter (viewer's zone, UTC in its datetime attribute)...
    assert re.search(r'<time datetime="' + re.escape(iso.replace("Z", "+00:00")) + '"', dd)
    # ...and the exact UTC value, readable as is.
    assert f'<code class="time-utc" title="UTC, ISO 8601">{iso}</code>' in dd


def test_it_shows_a_dash_for_unknown_values(admin_client, db):
    record = make_record(
        backup_name="",
        period="",
        size=None,
        progress=None,
        error_code="",
        remark="",
        is_support_restore=None,
        updated_at=None,
        execution_at=None,
    )

    shown = facts(admin_client.get(detail_url(record)).text)

    for label in ("Backup name", "Period", "Size", "Progress", "Error", "Remark", "Restorable", "Duration"):
        assert shown[label] == "—", label
    assert shown["Finished"] == "—"
    assert shown["Gone since"] == "—"


def test_it_shows_the_status_history_oldest_first(admin_client, record):
    # Written out of order: the page orders by observation time.
    make_status_change(record, observed_at=T0 + timedelta(minutes=4), status="failed", progress=Decimal("35"))
    make_status_change(record, observed_at=T0, status="waiting", progress=None)
    make_status_change(
        record, observed_at=T0 + timedelta(minutes=1), status="backuping", progress=Decimal("35")
    )

    html = admin_client.get(detail_url(record)).text

    history = re.search(r'<ol class="status-history">(.*?)</ol>', html, flags=re.S).group(1)
    steps = re.findall(r'<li class="status-history__step">(.*?)</li>', history, flags=re.S)
    assert [re.search(r'class="badge badge--\w+">([^<]+)<', step).group(1) for step in steps] == [
        "Waiting",
        "Backing up",
        "Failed",
    ]
    assert [re.search(r'<code class="time-utc">([^<]+)<', step).group(1) for step in steps] == [
        "2025-03-01T12:00:00Z",
        "2025-03-01T12:01:00Z",
        "2025-03-01T12:04:00Z",
    ]
    assert "at 35%" not in steps[0]
    assert "at 35%" in steps[1]


def test_it_says_when_no_change_was_observed(admin_client, record):
    html = admin_client.get(detail_url(record)).text

    assert "No change recorded yet" in html


def test_it_pretty_prints_the_raw_json(admin_client, record):
    html = admin_client.get(detail_url(record)).text

    raw = html_lib.unescape(
        re.search(r'<pre class="raw-json"[^>]*><code>(.*?)</code></pre>', html, re.S).group(1)
    )
    assert raw == (
        '{\n  "backup_id": "bk-2f0c-0001",\n  "size": 3221225472,\n  "status": "failed",\n  "备注": "中文"\n}'
    )


def test_it_escapes_api_text(admin_client, db):
    evil = "<script>alert(1)</script>"
    record = make_record(
        make_instance(name="<i>evil</i>"),
        backup_name=evil,
        remark=evil,
        status="<b>x</b>",
        error_code='"><img src=x onerror=alert(1)>',
        raw={"remark": evil, evil: [evil]},
    )
    make_status_change(record, status="<b>y</b>")

    html = admin_client.get(detail_url(record)).text

    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "<i>evil</i>" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    pre = re.search(r'<pre class="raw-json"[^>]*>(.*?)</pre>', html, re.S).group(1)
    assert "&lt;script&gt;" in pre
    assert "<script" not in pre


def test_it_links_the_instance_and_back_to_the_list(admin_client, record):
    html = admin_client.get(detail_url(record)).text

    crumbs = re.search(r'<nav class="breadcrumbs"[^>]*>(.*?)</nav>', html, re.S).group(1)
    assert '<a href="/backups/">Backups</a>' in crumbs
    assert '<a href="/instances/inst-orders-1/">orders-cache</a>' in crumbs
    assert '<span aria-current="page">backup_20250301</span>' in crumbs


def test_it_marks_a_gone_backup(admin_client, record):
    html = admin_client.get(detail_url(record)).text

    assert 'class="marker marker--gone"' in html
    assert "The API stopped listing this backup" in html


def test_it_shows_the_listed_record_when_two_instances_share_a_backup_id(admin_client, db):
    make_record(make_instance(name="gone-one"), backup_id="shared", backup_name="old", gone_at=T0)
    make_record(make_instance(name="first-listed"), backup_id="shared", backup_name="listed-1")
    make_record(make_instance(name="second-listed"), backup_id="shared", backup_name="listed-2")

    html = admin_client.get("/backups/shared/").text

    assert "listed-1" in html
    assert "listed-2" not in html
    assert "old" not in facts(html)["Backup name"]


def test_it_shows_a_gone_record_when_it_is_the_only_one(admin_client, db):
    make_record(backup_id="only", backup_name="kept", gone_at=T0)

    assert "kept" in admin_client.get("/backups/only/").text


def test_it_gives_a_friendly_404_for_an_unknown_backup(admin_client, db):
    response = admin_client.get("/backups/no-such-backup/")

    assert response.status_code == 404
    assert "site-header" in response.text
    assert 'href="/backups/"' in response.text


def test_it_requires_a_login(client, record):
    response = client.get(detail_url(record))

    assert response.status_code == 302
    assert "/accounts/login/" in response.url


def test_it_shows_a_backup_with_any_history_in_the_same_queries(admin_client, record):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(detail_url(record)).status_code == 200
        return len(captured)

    make_status_change(record, observed_at=T0, status="waiting")
    few = queries()
    for i in range(40):
        make_status_change(record, observed_at=T0 + timedelta(seconds=i + 1), status="backuping", progress=i)
    many = queries()

    assert few == many == DETAIL_QUERIES


def test_it_keeps_the_exact_utc_value_in_another_viewer_zone(admin_client, record):
    admin_client.cookies["dashboard_tz"] = "Asia/Shanghai"

    html = admin_client.get(detail_url(record)).text

    dd = re.search(r"<dt>Created</dt><dd>(.*?)</dd>", html, flags=re.S).group(1)
    assert '<time datetime="2025-03-01T12:00:00+00:00"' in dd
    assert '<code class="time-utc" title="UTC, ISO 8601">2025-03-01T12:00:00Z</code>' in dd
