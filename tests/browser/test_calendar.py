"""The fleet calendar in a browser: colours, hatching, a click to a day's records, the at-risk filter."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.factories import make_instance, make_record

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)
# The computed background of each state (static/css/calendar.css).
GREEN = "rgb(45, 164, 78)"
RED = "rgb(207, 34, 46)"


def start_of_today() -> datetime:
    return datetime.combine(timezone.now().astimezone(UTC).date(), time.min, tzinfo=UTC)


@pytest.fixture
def seeded():
    today = start_of_today()
    day = today - 4 * DAY
    healthy = make_instance(name="healthy", first_seen=today - 40 * DAY)
    for offset in range(0, 10):
        make_record(healthy, status="succeed", created_at=today - offset * DAY + timedelta(minutes=5))
    make_record(healthy, status="failed", created_at=day + timedelta(hours=3))
    broken = make_instance(name="broken", first_seen=today - 10 * DAY)
    failures = [make_record(broken, status="failed", created_at=day + timedelta(hours=h)) for h in (1, 23)]
    make_record(broken, status="failed", created_at=day + DAY)  # the next day: not in that day's list
    return {"day": day.date(), "failures": failures}


def cell(page: Page, instance: str, day) -> object:
    row = page.locator("tr", has=page.locator("th", has_text=instance))
    return row.locator(f'.cal-day[aria-label^="{day.isoformat()} UTC"]')


def background(locator) -> str:
    return locator.evaluate("element => getComputedStyle(element).backgroundColor")


def test_it_paints_the_days_and_opens_one_days_records(logged_in: Page, live_server, seeded):
    page = logged_in
    day = seeded["day"]
    page.goto(f"{live_server.url}/calendar/")

    expect(page.get_by_role("heading", name="Fleet calendar")).to_be_visible()
    assert background(cell(page, "healthy", day)) == GREEN
    assert background(cell(page, "broken", day)) == RED
    # "broken" was first seen 10 days ago: the 19 days before it in the window are hatched.
    hatched = page.locator("tr", has=page.locator("th", has_text="broken")).locator(".cal-day--before")
    expect(hatched).to_have_count(19)
    image = hatched.first.evaluate("element => getComputedStyle(element).backgroundImage")
    assert image.startswith("repeating-linear-gradient")
    expect(cell(page, "broken", day)).to_have_attribute(
        "title", f"{day.isoformat()} UTC: 0 succeeded, 2 failed, 0 other"
    )
    expect(page.locator(".calendar-legend")).to_contain_text("Before the dashboard knew the instance")

    cell(page, "broken", day).click()
    page.wait_for_url("**/backups/?*")

    rows = page.locator("#backup-table tbody tr")
    expect(rows).to_have_count(2)
    for record in seeded["failures"]:
        expect(page.locator(f'#backup-table a[href="/backups/{record.backup_id}/"]')).to_have_count(1)


def test_it_narrows_to_the_instances_at_risk(logged_in: Page, live_server, seeded):
    page = logged_in
    page.goto(f"{live_server.url}/calendar/")
    rows = page.locator("tbody th[scope=row]")
    expect(rows).to_have_count(2)

    page.get_by_role("link", name="Only instances at risk").click()

    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("broken")
    assert "at_risk=1" in page.url
