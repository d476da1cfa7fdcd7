"""Times: stored in UTC, shown in the viewer's zone, exported in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from backups.models import BackupRecord
from backups.tables import BackupRecordTable
from backups.tables.columns import TimestampColumn
from backups.templatetags.dashboard_tags import local_text, timestamp, utc_iso, utc_text, utc_z
from tests.factories import T0, make_record

SHANGHAI = "Asia/Shanghai"
NEW_YORK = "America/New_York"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The backup list caches its row count for a minute; a count left over
    # from another test would hide this test's rows.
    cache.clear()


def parts(html: str) -> tuple[str, str, str]:
    """(datetime attribute, title, text) of a rendered ``<time>``."""
    match = re.fullmatch(r'<time datetime="([^"]*)" title="([^"]*)">([^<]*)</time>', str(html))
    assert match, html
    return match[1], match[2], match[3]


# --- The filter ------------------------------------------------------------


def test_it_shows_utc_by_default():
    assert str(timestamp(T0)) == (
        '<time datetime="2025-03-01T12:00:00+00:00" title="2025-03-01T12:00:00+00:00">'
        "2025-03-01 12:00:00 UTC</time>"
    )


def test_it_shows_a_time_in_the_viewers_zone_with_both_iso_values_as_tooltip():
    with timezone.override(SHANGHAI):
        machine, title, text = parts(timestamp(T0))

    assert text == "2025-03-01 20:00:00 CST"
    assert machine == "2025-03-01T12:00:00+00:00"  # always UTC
    assert title.splitlines() == [
        "2025-03-01T20:00:00+08:00 (Asia/Shanghai)",
        "2025-03-01T12:00:00+00:00 (UTC)",
    ]


@pytest.mark.parametrize(
    ("zone", "text"),
    [
        # The tz database has no letters for these: the offset is clearer than "+08".
        ("Asia/Singapore", "2025-03-01 20:00:00 UTC+08:00"),
        ("Asia/Kathmandu", "2025-03-01 17:45:00 UTC+05:45"),
        ("America/Sao_Paulo", "2025-03-01 09:00:00 UTC-03:00"),
        ("Europe/Paris", "2025-03-01 13:00:00 CET"),
        ("Europe/London", "2025-03-01 12:00:00 GMT"),
    ],
)
def test_it_names_the_zone_by_abbreviation_or_offset(zone, text):
    with timezone.override(zone):
        assert parts(timestamp(T0))[2] == text


@pytest.mark.parametrize(
    ("utc", "text", "local_iso"),
    [
        # Spring forward, 9 March 2025: 02:00 EST becomes 03:00 EDT.
        (datetime(2025, 3, 9, 6, 59, 59, tzinfo=UTC), "2025-03-09 01:59:59 EST", "2025-03-09T01:59:59-05:00"),
        (datetime(2025, 3, 9, 7, 0, 0, tzinfo=UTC), "2025-03-09 03:00:00 EDT", "2025-03-09T03:00:00-04:00"),
        # Fall back, 2 November 2025: 01:30 happens twice; the zone tells them apart.
        (datetime(2025, 11, 2, 5, 30, tzinfo=UTC), "2025-11-02 01:30:00 EDT", "2025-11-02T01:30:00-04:00"),
        (datetime(2025, 11, 2, 6, 30, tzinfo=UTC), "2025-11-02 01:30:00 EST", "2025-11-02T01:30:00-05:00"),
    ],
)
def test_it_follows_daylight_saving_time(utc, text, local_iso):
    with timezone.override(NEW_YORK):
        machine, title, shown = parts(timestamp(utc))

    assert shown == text
    assert machine == utc.isoformat()
    assert title.splitlines() == [f"{local_iso} ({NEW_YORK})", f"{utc.isoformat()} (UTC)"]


def test_it_reads_a_naive_time_as_utc():
    with timezone.override(SHANGHAI):
        assert local_text(datetime(2025, 3, 1, 12, 0, 0)) == "2025-03-01 20:00:00 CST"


def test_it_renders_nothing_for_no_time():
    assert timestamp(None) == ""
    assert timestamp("") == ""


def test_it_escapes_a_value_that_is_not_a_time():
    assert str(timestamp("<b>soon</b>")) == "&lt;b&gt;soon&lt;/b&gt;"


def test_it_keeps_the_utc_helpers_in_utc_whatever_the_zone():
    with timezone.override(SHANGHAI):
        assert utc_text(T0) == "2025-03-01 12:00:00 UTC"
        assert utc_iso(T0) == "2025-03-01T12:00:00+00:00"
        assert utc_z(T0) == "2025-03-01T12:00:00Z"


# --- The column ------------------------------------------------------------


def test_it_renders_the_column_like_the_filter():
    column = TimestampColumn()

    with timezone.override(SHANGHAI):
        assert column.render(T0) == timestamp(T0)
        assert parts(column.render(T0))[2] == "2025-03-01 20:00:00 CST"


@pytest.mark.parametrize("zone", ["UTC", SHANGHAI, NEW_YORK])
def test_it_exports_utc_with_z_in_any_zone(zone):
    column = TimestampColumn()
    moment = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

    with timezone.override(zone):
        assert column.value(moment) == "2026-11-26T12:00:00Z"
        assert column.value(moment.astimezone(timezone.get_current_timezone())) == "2026-11-26T12:00:00Z"


@pytest.mark.django_db
def test_it_exports_the_table_in_utc_while_showing_the_viewers_zone():
    make_record(created_at=T0)
    table = BackupRecordTable(BackupRecord.objects.select_related("instance"))

    with timezone.override(SHANGHAI):
        exported = list(table.as_values())
        cell = table.rows[0].get_cell("created_at")

    header, row = exported
    assert row[header.index(str(table.columns["created_at"].header))] == "2025-03-01T12:00:00Z"
    assert ">2025-03-01 20:00:00 CST</time>" in cell


# --- Pages -----------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_the_pages_in_the_zone_of_the_cookie(admin_client):
    make_record(created_at=T0, updated_at=T0 + timedelta(minutes=3))
    admin_client.cookies["dashboard_tz"] = SHANGHAI

    html = admin_client.get("/backups/").text

    assert (
        '<time datetime="2025-03-01T12:00:00+00:00" title="2025-03-01T20:00:00+08:00 (Asia/Shanghai)' in html
    )
    assert ">2025-03-01 20:00:00 CST</time>" in html
    assert ">2025-03-01 20:03:00 CST</time>" in html
    assert "Times are shown in Asia/Shanghai." in html


@pytest.mark.django_db
def test_it_says_times_are_in_utc_by_default(admin_client):
    make_record(created_at=T0)

    html = admin_client.get("/backups/").text

    assert ">2025-03-01 12:00:00 UTC</time>" in html
    assert "Times are shown in UTC." in html
