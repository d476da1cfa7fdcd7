"""The fleet calendar (``/calendar/``): cells by UTC day, their links, the at-risk filter, paging."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backups.calendar import (
    BEFORE,
    FAILURE,
    NONE,
    OTHER,
    SUCCESS,
    DayCounts,
    daily_counts,
    day_records_url,
    state_of,
    window_days,
)
from backups.views.calendar import PER_PAGE
from tests.factories import make_instance, make_record

URL = "/calendar/"
# Session, user, the paginator's count, the page of instances, and one
# aggregate of their records over the window.
CALENDAR_QUERIES = 5
DAY = timedelta(days=1)
CELL_RE = re.compile(
    r'<(?:a|span) class="cal-day cal-day--(\w+)"(?: href="([^"]*)")?[^>]*aria-label="([^"]*)"'
)


def today() -> datetime:
    """The start of the current UTC day."""
    return datetime.combine(timezone.now().astimezone(UTC).date(), time.min, tzinfo=UTC)


def cells(html: str, instance_name: str) -> dict[str, tuple[str, str, str]]:
    """The row of ``instance_name``: {"2026-11-20": (state, link, label)}."""
    start = html.index(f">{instance_name}</a>")
    row = html[start : html.index("</tr>", start)]
    result = {}
    for state, href, label in CELL_RE.findall(row):
        label = html_lib.unescape(label)
        result[label.split(" ")[0]] = (state, html_lib.unescape(href or ""), label)
    return result


def row_names(html: str) -> list[str]:
    return re.findall(r'<th scope="row" class="calendar__instance">\s*<a href="[^"]*">([^<]*)</a>', html)


@pytest.fixture
def fleet():
    """Three instances, seen from 20 days ago, with a week of known outcomes."""
    base = today()
    seen = base - 20 * DAY
    ok = make_instance(name="a-ok", first_seen=seen, last_success_at=None)
    failing = make_instance(name="b-failing", first_seen=seen)
    quiet = make_instance(name="c-quiet", first_seen=base - 3 * DAY)
    day = base - 5 * DAY
    # a-ok: one success and one failure 5 days ago, only a running one 4 days ago.
    make_record(ok, status="succeed", created_at=day + timedelta(hours=1))
    make_record(ok, status="failed", created_at=day + timedelta(hours=2))
    make_record(ok, status="backuping", created_at=day + DAY + timedelta(hours=3))
    make_record(ok, status="succeed", created_at=base + timedelta(minutes=1))
    # b-failing: failures only, and nothing since.
    make_record(failing, status="failed", created_at=day)
    make_record(failing, status="failed", created_at=day + DAY - timedelta(seconds=1))
    return {"ok": ok, "failing": failing, "quiet": quiet, "day": day.date()}


# --- The selector ----------------------------------------------------------------------


def test_it_lists_the_window_oldest_first():
    days = window_days(today=datetime(2026, 11, 30).date(), days=30)

    assert len(days) == 30
    assert days[0].isoformat() == "2026-11-01"
    assert days[-1].isoformat() == "2026-11-30"


@pytest.mark.parametrize(
    ("counts", "state"),
    [
        (DayCounts(3, 1, 2), SUCCESS),
        (DayCounts(2, 0, 2), FAILURE),
        (DayCounts(1, 0, 0), OTHER),
        (DayCounts(), NONE),
    ],
)
def test_it_colours_a_day_by_its_best_outcome(counts, state):
    assert state_of(counts, day=datetime(2026, 11, 20).date(), known_since=None) == state


def test_it_hatches_only_empty_days_before_the_instance_was_known():
    known = datetime(2026, 11, 20).date()

    assert state_of(DayCounts(), day=known - DAY, known_since=known) == BEFORE
    assert state_of(DayCounts(), day=known, known_since=known) == NONE
    # History imported with the instance is shown, not hidden.
    assert state_of(DayCounts(1, 1, 0), day=known - DAY, known_since=known) == SUCCESS


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/Los_Angeles"])
def test_it_counts_utc_days_in_any_active_zone(zone):
    instance = make_instance()
    day = datetime(2026, 11, 20, tzinfo=UTC)
    make_record(instance, status="failed", created_at=day - timedelta(seconds=1))
    make_record(instance, status="succeed", created_at=day)
    make_record(instance, status="failed", created_at=day + DAY - timedelta(seconds=1))
    make_record(instance, status="succeed", created_at=day + DAY)

    with timezone.override(zone):
        counts = daily_counts([instance.pk], first=day.date() - DAY, last=day.date() + DAY)

    assert counts == {
        (instance.pk, day.date() - DAY): DayCounts(1, 0, 1),
        (instance.pk, day.date()): DayCounts(2, 1, 1),
        (instance.pk, day.date() + DAY): DayCounts(1, 1, 0),
    }


@pytest.mark.django_db
def test_it_leaves_out_records_outside_the_window():
    instance = make_instance()
    day = datetime(2026, 11, 20, tzinfo=UTC)
    make_record(instance, created_at=day - timedelta(microseconds=1))
    make_record(instance, created_at=day + DAY)

    assert daily_counts([instance.pk], first=day.date(), last=day.date()) == {}


# --- The page ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_each_days_outcome(admin_client, fleet):
    html = admin_client.get(URL).text
    day = fleet["day"]

    ok = cells(html, "a-ok")
    assert len(ok) == 30
    assert ok[day.isoformat()][0] == SUCCESS
    assert ok[day.isoformat()][2] == f"{day.isoformat()} UTC: 1 succeeded, 1 failed, 0 other"
    assert ok[(day + DAY).isoformat()][0] == OTHER
    assert ok[(day + 2 * DAY).isoformat()][0] == NONE
    assert ok[today().date().isoformat()][0] == SUCCESS
    failing = cells(html, "b-failing")
    assert failing[day.isoformat()][0] == FAILURE
    assert failing[day.isoformat()][2].endswith("0 succeeded, 2 failed, 0 other")
    assert failing[(day + DAY).isoformat()][0] == NONE


@pytest.mark.django_db
def test_it_hatches_the_days_before_an_instance_was_first_seen(admin_client, fleet):
    quiet = cells(admin_client.get(URL).text, "c-quiet")
    states = [state for state, _, _ in quiet.values()]

    assert states == [BEFORE] * 26 + [NONE] * 4
    assert all(link == "" for _, link, _ in quiet.values())


@pytest.mark.django_db
def test_it_hatches_from_the_clouds_creation_time_when_it_is_earlier(admin_client):
    base = today()
    make_instance(name="d-created", first_seen=base - 2 * DAY, created_at=base - 10 * DAY)

    quiet = cells(admin_client.get(URL).text, "d-created")

    assert [state for state, _, _ in quiet.values()].count(BEFORE) == 19


@pytest.mark.django_db
def test_it_links_a_cell_to_exactly_that_days_records(admin_client, fleet):
    day = fleet["day"]
    other = make_instance(name="z-other", first_seen=fleet["ok"].first_seen)
    make_record(other, status="succeed", created_at=datetime.combine(day, time(12), tzinfo=UTC))
    link = cells(admin_client.get(URL).text, "b-failing")[day.isoformat()][1]

    listed = admin_client.get(link).text

    assert link == day_records_url(fleet["failing"], day)
    shown = set(re.findall(r'href="/backups/([^/"]+)/"', listed))
    expected = {
        record.backup_id
        for record in fleet["failing"].backups.all()
        if record.created_at.astimezone(UTC).date() == day
    }
    assert len(expected) == 2
    assert shown == expected


@pytest.mark.django_db
def test_it_includes_the_first_and_last_second_of_the_day_in_the_link(admin_client):
    instance = make_instance(name="edges", first_seen=today() - 20 * DAY)
    start = today() - 6 * DAY
    inside = [
        make_record(instance, created_at=start),
        make_record(instance, created_at=start + DAY - timedelta(microseconds=1)),
    ]
    make_record(instance, created_at=start - timedelta(microseconds=1))
    make_record(instance, created_at=start + DAY)

    link = day_records_url(instance, start.date())
    listed = admin_client.get(link).text

    assert set(re.findall(r'href="/backups/([^/"]+)/"', listed)) == {r.backup_id for r in inside}


@pytest.mark.django_db
def test_it_uses_utc_days_whatever_zone_the_viewer_picked(admin_client, fleet):
    admin_client.cookies["dashboard_tz"] = "Asia/Shanghai"

    html = admin_client.get(URL).text

    # 23:59:59 UTC is the next morning in Shanghai: still the same UTC day here.
    failing = cells(html, "b-failing")
    assert failing[fleet["day"].isoformat()][2].endswith("0 succeeded, 2 failed, 0 other")
    assert "UTC days" in html


@pytest.mark.django_db
def test_it_shows_ninety_days_when_asked(admin_client, fleet):
    html = admin_client.get(URL, {"days": "90"}).text

    assert len(cells(html, "a-ok")) == 90
    assert "calendar__table--90" in html


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["7", "abc", "-1", "90; DROP", "\x00"])
def test_it_explains_a_period_it_does_not_offer_and_shows_thirty_days(admin_client, fleet, days):
    response = admin_client.get(URL, {"days": days})

    assert response.status_code == 200
    assert "is not a number of days this page offers" in response.text
    assert len(cells(response.text, "a-ok")) == 30


@pytest.mark.django_db
def test_it_shows_only_the_instances_at_risk_when_asked(admin_client, fleet):
    everyone = row_names(admin_client.get(URL).text)
    at_risk = row_names(admin_client.get(URL, {"at_risk": "1"}).text)

    assert everyone == ["a-ok", "b-failing", "c-quiet"]
    # a-ok succeeded today; the others never did.
    assert at_risk == ["b-failing", "c-quiet"]


@pytest.mark.django_db
def test_it_explains_an_at_risk_value_it_does_not_know(admin_client, fleet):
    response = admin_client.get(URL, {"at_risk": "maybe"})

    assert response.status_code == 200
    assert "is not a value at_risk takes" in response.text
    assert len(row_names(response.text)) == 3


@pytest.mark.django_db
def test_it_narrows_to_a_region_and_a_project(admin_client, fleet):
    make_instance(name="e-elsewhere", region="ap-southeast-1", project_id="p-other")

    by_region = row_names(admin_client.get(URL, {"region": "ap-southeast-1"}).text)
    by_project = row_names(admin_client.get(URL, {"project": fleet["ok"].project_id}).text)

    assert by_region == ["e-elsewhere"]
    assert by_project == ["a-ok"]


@pytest.mark.django_db
def test_it_ignores_a_nul_in_the_scope(admin_client, fleet):
    response = admin_client.get(URL, {"region": "cn\x00north"})

    assert response.status_code == 200
    assert "holds a character no name can have" in response.text
    assert len(row_names(response.text)) == 3


@pytest.mark.django_db
def test_it_pages_the_instances_and_keeps_the_filters(admin_client):
    seen = today() - 40 * DAY
    for n in range(PER_PAGE + 3):
        make_instance(name=f"i-{n:03d}", first_seen=seen)

    first = admin_client.get(URL, {"days": "90"}).text
    second = admin_client.get(URL, {"days": "90", "page": "2"}).text
    beyond = admin_client.get(URL, {"page": "abc"})

    assert len(row_names(first)) == PER_PAGE
    assert row_names(second) == ["i-050", "i-051", "i-052"]
    assert 'href="?days=90&amp;page=2" rel="next"' in first
    assert beyond.status_code == 200


@pytest.mark.django_db
def test_it_asks_a_fixed_number_of_queries_however_many_instances(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer"))
    seen = today() - 40 * DAY
    for n in range(PER_PAGE + 5):
        instance = make_instance(name=f"q-{n:03d}", first_seen=seen)
        for day in range(0, 90, 7):
            make_record(instance, status="succeed" if n % 3 else "failed", created_at=today() - day * DAY)
    client.get(URL)  # the viewer's role is remembered after the first page

    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"days": "90"})

    assert response.status_code == 200
    assert len(row_names(response.text)) == PER_PAGE
    assert len(queries) <= CALENDAR_QUERIES, [q["sql"] for q in queries]


@pytest.mark.django_db
def test_it_is_read_only(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer"))

    assert client.get(URL).status_code == 200
    assert client.post(URL).status_code == 405


@pytest.mark.django_db
def test_it_links_the_calendar_from_the_header(admin_client):
    html = admin_client.get(URL).text

    assert 'href="/calendar/" aria-current="page">Calendar</a>' in html
    assert 'href="/static/css/calendar.css"' in html
    for label in ("At least one backup succeeded", "Backups failed, none succeeded", "No backup"):
        assert label in html
