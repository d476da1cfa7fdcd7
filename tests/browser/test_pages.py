"""What a DBA does in the browser: filter, sort, page, open, export, switch zone,
language and theme, copy a link, and get around with the keyboard.

Each test fills the database with a real sync from the simulator (our client,
over HTTP) and looks only at what the page shows. Most use the simulator on a
hand-moved clock (a fixed fleet history); the two whose links are relative to
the present ("last 24 h", "last 30 days") use the one on the real clock, so
they keep working as the calendar moves on.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from backups import sync
from backups.models import BackupRecord, DcsInstance, SyncRun

pytestmark = pytest.mark.django_db(transaction=True)

DASH = "\u2013"  # the en dash of "1-25 of 60" in a caption
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")

# The cells of one column of a table region, by its header, as the user sees
# them (text), with the exact value of a size or a time where the cell has one.
COLUMN_JS = """([region, header]) => {
    const table = document.querySelector(`#${region} table`);
    const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
    const index = heads.findIndex(text => text.toLowerCase() === header.toLowerCase());
    if (index < 0) throw new Error(`no column ${header} in ${heads}`);
    return [...table.querySelectorAll('tbody tr')].map(row => {
        const cell = row.children[index];
        const exact = cell.querySelector('.bytes, time');
        return {
            text: cell.innerText.trim(),
            title: exact ? exact.getAttribute('title') : null,
            datetime: exact ? exact.getAttribute('datetime') : null,
        };
    });
}"""


def column(page: Page, header: str, region: str = "backup-table") -> list[dict]:
    return page.evaluate(COLUMN_JS, [region, header])


def texts(page: Page, header: str, region: str = "backup-table") -> list[str]:
    return [cell["text"] for cell in column(page, header, region)]


def exact_bytes(cell: dict) -> int | None:
    """``1,238,737,666 bytes`` (the tooltip) -> 1238737666; None for "—"."""
    if not cell["title"]:
        return None
    return int(re.sub(r"\D", "", cell["title"]))


def caption_total(page: Page, region: str = "backup-table") -> int:
    """The N of "1-25 of N" (with an en dash) in the table's caption."""
    text = page.locator(f"#{region} .table-caption__count").inner_text()
    return int(re.sub(r"\D", "", text.split("of")[-1]))


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


@pytest.fixture
def fleet(clocked_client):
    """The simulated fleet as of 2026-11-20 12:00 UTC, synced once."""
    sync.sync_fleet(client=clocked_client)


@pytest.fixture
def live_fleet(dcs_client):
    """The simulated fleet as of now, synced once: its backups run up to the present."""
    sync.sync_fleet(client=dcs_client)


def test_it_filters_the_backup_list_and_rerenders_only_the_table(logged_in, live_server, fleet):
    page = logged_in
    page.goto(f"{live_server.url}/backups/")
    page.evaluate(
        """() => {
            window.__marker = 'still here';
            window.__form = document.querySelector('form.filter-form');
            window.__table = document.getElementById('backup-table');
        }"""
    )
    assert "Succeeded" in texts(page, "Status")

    form = page.get_by_role("search", name="Filter backups")
    form.get_by_role("checkbox", name="Failed").check()
    form.get_by_role("button", name="Filter").click()

    expect(page).to_have_url(re.compile(r"[?&]status=failed(&|$)"))
    assert query_of(page.url)["status"] == ["failed"]
    page.wait_for_function("document.getElementById('backup-table') !== window.__table")
    statuses = texts(page, "Status")
    assert statuses and set(statuses) == {"Failed"}
    assert caption_total(page) == BackupRecord.objects.filter(status="failed").count()
    # The page around the table was not reloaded, and the form kept its choice.
    assert page.evaluate("window.__marker") == "still here"
    assert page.evaluate("document.contains(window.__form)")
    expect(form.get_by_role("checkbox", name="Failed")).to_be_checked()


def test_it_sorts_by_size_both_ways(logged_in, live_server, fleet):
    page = logged_in
    # Succeeded backups: failed ones are all 0 B, which would sort trivially.
    page.goto(f"{live_server.url}/backups/?status=succeed")
    size_header = page.locator("#backup-table th", has_text="Size")

    size_header.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"[?&]sort=size(&|$)"))
    expect(size_header).to_have_attribute("aria-sort", "ascending")
    ascending = [exact_bytes(cell) for cell in column(page, "Size")]
    assert len(ascending) == 25 and None not in ascending
    assert ascending == sorted(ascending)
    assert ascending[0] < ascending[-1]
    assert set(texts(page, "Status")) == {"Succeeded"}  # the filter survived the sort

    size_header.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"[?&]sort=-size(&|$)"))
    expect(size_header).to_have_attribute("aria-sort", "descending")
    descending = [exact_bytes(cell) for cell in column(page, "Size")]
    assert None not in descending
    assert descending == sorted(descending, reverse=True)
    assert descending[0] == max(BackupRecord.objects.filter(status="succeed").values_list("size", flat=True))
    assert descending[-1] > ascending[-1]


def test_it_pages_through_the_list_and_changes_the_page_size(logged_in, live_server, fleet):
    page = logged_in
    page.goto(f"{live_server.url}/backups/?status=succeed")
    total = BackupRecord.objects.filter(status="succeed").count()
    first = texts(page, "Backup")
    assert len(first) == 25
    expect(page.locator("#backup-table caption")).to_contain_text(f"1{DASH}25 of {total:,}")

    page.locator("#backup-table .pagination").get_by_role("link", name="Next").click()
    expect(page).to_have_url(re.compile(r"[?&]page=2(&|$)"))
    expect(page.locator("#backup-table caption")).to_contain_text(f"26{DASH}50 of {total:,}")
    second = texts(page, "Backup")
    assert len(second) == 25
    assert not set(first) & set(second)
    expect(page.locator("#backup-table .pagination [aria-current=page]")).to_have_text("Page 2")

    page.get_by_role("navigation", name="Rows per page").get_by_role("link", name="50", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]per_page=50(&|$)"))
    assert "page" not in query_of(page.url)  # a new page size starts at the first page
    assert query_of(page.url)["status"] == ["succeed"]
    fifty = texts(page, "Backup")
    assert fifty == first + second
    expect(page.locator("#backup-table caption")).to_contain_text(f"1{DASH}50 of {total:,}")


def test_it_opens_an_instances_history_from_the_list(logged_in, live_server, fleet):
    page = logged_in
    page.goto(f"{live_server.url}/backups/?status=failed")
    link = page.locator("#backup-table tbody tr").first.locator("a.instance__name")
    name = link.inner_text()
    link.click()

    expect(page).to_have_url(re.compile(r"/instances/[^/]+/$"))
    instance = DcsInstance.objects.get(instance_id=page.url.rstrip("/").rsplit("/", 1)[-1])
    assert str(instance) == name
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    chart = page.locator("figure.chart-figure svg")
    expect(chart).to_be_visible()
    assert chart.bounding_box()["width"] > 300
    # The backup table is this instance's, and only its.
    expect(page.locator("#backup-table caption")).to_contain_text(f"Backups of {name}")
    shown = texts(page, "Backup")
    assert shown
    own = set(instance.backups.values_list("backup_name", flat=True))
    assert set(shown) <= own
    assert caption_total(page) == len(own)


def test_it_opens_a_backup_with_its_status_history_and_raw_json(
    logged_in, live_server, fleet, clocked_client, sim_clock
):
    running = BackupRecord.objects.filter(status="backuping").order_by("-created_at").first()
    if running is None:  # the stream had just started a backup: let it run
        sim_clock.advance(seconds=45)
        sync.sync_active_instances(client=clocked_client)
        running = BackupRecord.objects.filter(status="backuping").order_by("-created_at").first()
    # Two more looks at it, so our syncs record its progress moving.
    for _ in range(2):
        sim_clock.advance(seconds=40)
        sync.sync_active_instances(client=clocked_client)
    running.refresh_from_db()
    steps = running.status_changes.count()
    assert steps >= 2

    page = logged_in
    page.goto(f"{live_server.url}/backups/?q={running.backup_id}")
    page.locator("#backup-table").get_by_role("link", name=running.backup_name).click()

    expect(page).to_have_url(re.compile(rf"/backups/{running.backup_id}/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(running.backup_name)
    history = page.locator("section", has=page.get_by_role("heading", name="Status history"))
    expect(history.locator(".status-history__step")).to_have_count(steps)
    expect(history.locator(".status-history__step").first).to_contain_text("Backing up")
    expect(history.locator(".status-history__step").first.locator("code.time-utc")).to_have_text(ISO_Z)
    raw = json.loads(page.locator("pre.raw-json").inner_text())
    assert raw["backup_id"] == running.backup_id
    assert raw["status"] == running.status


def test_it_exports_the_filtered_view_as_csv_and_json(logged_in, live_server, fleet):
    page = logged_in
    # Viewed in Shanghai time, exported in UTC all the same.
    page.context.add_cookies([{"name": "dashboard_tz", "value": "Asia/Shanghai", "url": live_server.url}])
    page.goto(f"{live_server.url}/backups/?status=failed&sort=size")
    expect(page.locator("footer")).to_contain_text("Asia/Shanghai")
    total = caption_total(page)
    assert total == BackupRecord.objects.filter(status="failed").count() > 25  # more than one page
    exports = page.get_by_role("navigation", name="Export")

    with page.expect_download() as download:
        exports.get_by_role("link", name="CSV").click()
    assert download.value.suggested_filename.endswith(".csv")
    with open(download.value.path(), newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    header, body = rows[0], rows[1:]
    assert {"Instance", "Backup", "Status", "Size", "Created", "Finished"} <= set(header)
    assert len(body) == total
    created = header.index("Created")
    status = header.index("Status")
    assert all(ISO_Z.match(row[created]) for row in body)
    assert {row[status] for row in body} == {"Failed"}
    assert not [cell for row in rows for cell in row if "<" in cell]

    with page.expect_download() as download:
        exports.get_by_role("link", name="JSON").click()
    assert download.value.suggested_filename.endswith(".json")
    with open(download.value.path(), encoding="utf-8") as file:
        items = json.load(file)
    assert len(items) == total
    assert all(ISO_Z.match(item["created_at"]) for item in items)
    assert {item["status"] for item in items} == {"failed"}  # JSON carries the API code
    assert not [value for item in items for value in item.values() if isinstance(value, str) and "<" in value]
    # The same records, in the same order.
    assert [item["backup_id"] for item in items] == [row[header.index("Backup id")] for row in body]


def test_it_switches_the_time_zone_and_remembers_it(logged_in, live_server, fleet):
    page = logged_in
    page.goto(f"{live_server.url}/backups/?status=failed")
    first = column(page, "Created")[0]
    utc_moment = datetime.fromisoformat(first["datetime"])
    assert first["text"] == utc_moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    cell = page.locator(f'#backup-table time[datetime="{first["datetime"]}"]').first

    page.locator("#pref-timezone").select_option("Asia/Shanghai")
    expect(page.locator("footer")).to_contain_text("Times are shown in Asia/Shanghai.")
    shanghai = (utc_moment + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    expect(cell).to_have_text(f"{shanghai} CST")
    # The tooltip keeps the exact moment, in UTC too; the attribute stays UTC.
    title = cell.get_attribute("title")
    assert f"{utc_moment.astimezone(UTC).isoformat()} (UTC)" in title
    assert "+08:00 (Asia/Shanghai)" in title
    assert query_of(page.url)["status"] == ["failed"]  # back on the same view

    # Remembered: a new page load, in a new tab, is in Shanghai time still.
    other = page.context.new_page()
    other.goto(f"{live_server.url}/backups/?status=failed")
    expect(other.locator(f'#backup-table time[datetime="{first["datetime"]}"]').first).to_have_text(
        f"{shanghai} CST"
    )
    expect(other.locator("#pref-timezone")).to_have_value("Asia/Shanghai")

    other.get_by_role("button", name="Show in UTC").click()
    expect(other.locator("footer")).to_contain_text("Times are shown in UTC.")
    expect(other.locator(f'#backup-table time[datetime="{first["datetime"]}"]').first).to_have_text(
        first["text"]
    )
    expect(other.get_by_role("button", name="Show in UTC")).to_have_count(0)
    other.close()


def test_it_switches_the_language_to_chinese_and_back(logged_in, live_server):
    page = logged_in
    page.goto(f"{live_server.url}/backups/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_contain_text("Overview")

    page.locator("#pref-language").select_option("zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page).to_have_url(re.compile(r"/backups/$"))
    nav = page.locator("nav.site-nav")
    for word in ("总览", "实例", "备份", "同步"):
        expect(nav.get_by_role("link", name=word, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("备份")
    expect(page.locator("#backup-table caption")).to_contain_text("备份记录")
    expect(page.get_by_role("button", name="筛选")).to_be_visible()
    expect(page.locator("#pref-language")).to_have_value("zh-hans")

    page.locator("#pref-language").select_option("en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Instances")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Backups")


def test_it_shows_the_fleet_at_a_glance_and_opens_a_count(logged_in, live_server, live_fleet):
    page = logged_in
    opened_at = datetime.now(UTC)
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.get_by_role("heading", name="Backups created in the last 24 hours")).to_be_visible()

    tiles = page.locator(".stat-grid a.stat").evaluate_all(
        """links => links.map(a => ({
            count: Number(a.querySelector('.stat__count').textContent.trim()),
            label: (a.querySelector('.badge, .stat__label')).textContent.trim(),
            href: a.getAttribute('href'),
        }))"""
    )
    assert tiles[0]["label"] == "All backups" and tiles[0]["count"] > 0
    assert {"Waiting", "Backing up", "Succeeded", "Failed", "Expired", "Deleted"} <= {
        t["label"] for t in tiles
    }
    expect(page.locator(".stat--rate .stat__count")).to_have_text(re.compile(r"^\d+(\.\d)? %$"))

    # The at-risk list and its count agree; single-node instances are listed apart.
    at_risk = int(page.locator("#risk-title .overview-card__count").inner_text())
    if at_risk:
        expect(page.locator("table.table--risk tbody tr")).to_have_count(min(at_risk, 25))
    else:
        expect(page.get_by_text("Every listed instance that can be backed up")).to_be_visible()
    single = [i.name for i in DcsInstance.objects.all() if i.is_single_node]
    risk_names = page.locator("table.table--risk .instance__name").all_inner_texts()
    assert not set(single) & set(risk_names)

    freshness = page.locator("section", has=page.get_by_role("heading", name="Data freshness"))
    expect(freshness).to_contain_text("Up to date.")
    expect(freshness).to_contain_text("Last fleet sync finished")

    # A count opens the backup list filtered to it: the same number of rows.
    busiest = max(tiles[1:], key=lambda tile: tile["count"])
    page.locator(f'.stat-grid a.stat[href="{busiest["href"]}"]').click()
    expect(page).to_have_url(re.compile(r"/backups/\?"))
    query = query_of(page.url)
    assert query["created_after"] == ["24h"]
    assert len(query["status"]) == 1
    # "The last 24 hours" moved on by a second or two between the pages: the
    # list may have lost the backups created at the very start of the window.
    listed = caption_total(page)
    slipped = BackupRecord.objects.filter(
        status=query["status"][0],
        created_at__gte=opened_at - timedelta(hours=24),
        created_at__lt=datetime.now(UTC) - timedelta(hours=24),
    ).count()
    assert busiest["count"] - slipped <= listed <= busiest["count"]
    assert set(texts(page, "Status")) == {busiest["label"]}
    form = page.get_by_role("search", name="Filter backups")
    expect(form.get_by_role("checkbox", name=busiest["label"], exact=True)).to_be_checked()
    expect(form.get_by_label("Created after")).to_have_value("24h")


def test_it_toggles_the_theme_and_remembers_it(logged_in, live_server):
    page = logged_in
    page.goto(f"{live_server.url}/backups/")
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "system")
    light_background = page.evaluate("getComputedStyle(document.body).backgroundColor")

    page.locator("label.theme-switch__option", has=page.locator("input[value=dark]")).click()
    expect(html).to_have_attribute("data-theme", "dark")
    dark_background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark_background != light_background

    page.reload()
    expect(html).to_have_attribute("data-theme", "dark")
    expect(page.locator(".theme-switch input[value=dark]")).to_be_checked()
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == dark_background

    page.locator("label.theme-switch__option", has=page.locator("input[value=light]")).click()
    expect(html).to_have_attribute("data-theme", "light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == light_background


def test_it_copies_a_permalink_with_absolute_times_that_shows_the_same_rows(
    logged_in, live_server, live_fleet
):
    page = logged_in
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    # Oldest first, so the first page is the rows right after the window's start.
    page.goto(f"{live_server.url}/backups/?created_after=30d&sort=created_at")
    rows = texts(page, "Backup")
    total = caption_total(page)
    assert rows

    button = page.get_by_role("button", name="Copy link")
    button.click()
    expect(button).to_have_class(re.compile(r"\bis-copied\b"))
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.get_by_label("Link to this view").input_value()
    assert copied.startswith(f"{live_server.url}/backups/?")
    query = query_of(copied)
    assert query["sort"] == ["created_at"]
    (after,) = query["created_after"]
    assert ISO_Z.match(after), after
    start = datetime.fromisoformat(after)
    assert abs(start - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=1)

    page.goto(copied)
    # The link's bound is whole seconds, so it may also show a backup created
    # in the fraction of a second before the page's own bound.
    extra = set(
        BackupRecord.objects.filter(
            created_at__gte=start, created_at__lt=start + timedelta(seconds=1)
        ).values_list("backup_name", flat=True)
    )
    again = [name for name in texts(page, "Backup") if name not in extra]
    assert again == rows[: len(again)]
    assert total <= caption_total(page) <= total + len(extra)


def test_it_reaches_the_skip_link_first_and_it_moves_focus_to_main(logged_in, live_server):
    page = logged_in
    page.goto(f"{live_server.url}/backups/")
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    expect(skip).to_have_text("Skip to main content")
    expect(skip).to_have_attribute("href", "#main")
    box = skip.bounding_box()
    assert box["y"] >= 0 and box["height"] > 0  # shown on focus, not parked off screen

    page.keyboard.press("Enter")
    expect(page.locator(":focus")).to_have_id("main")
    assert page.url.endswith("#main")
    page.keyboard.press("Tab")
    # The next stop is inside main (the filter form's first field), not back in the header.
    assert page.evaluate("document.getElementById('main').contains(document.activeElement)")


PHONE = {"width": 390, "height": 844}
# What sticks out past the right edge of the window, when the page is wider than it.
OVERFLOW_JS = """() => {
    const width = window.innerWidth;
    if (document.documentElement.scrollWidth <= width) return [];
    const framed = el => {
        for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
            if (getComputedStyle(up).overflowX !== 'visible') return true;
        }
        return false;
    };
    return [...document.querySelectorAll('body *')]
        .filter(el => el.getBoundingClientRect().right > width + 1 && !framed(el))
        .map(el => `${el.tagName.toLowerCase()}.${el.className}`);
}"""


@pytest.mark.parametrize(
    "path", ["/", "/instances/", "/backups/", "/calendar/", "/sync/", "/alerts/", "/rpo/", "/errors/"]
)
def test_a_phone_shows_every_page_without_scrolling_it_sideways(logged_in, live_server, fleet, path):
    page = logged_in
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}{path}")
    # Wide tables scroll inside their own frame; nothing else may push the page wider.
    assert page.evaluate(OVERFLOW_JS) == []
    for link in page.locator(".site-nav a").all():
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]


def test_a_phone_shows_the_incident_view_without_scrolling_it_sideways(logged_in, live_server, fleet):
    page = logged_in
    page.set_viewport_size(PHONE)
    instances = "&".join(f"instance={i}" for i in DcsInstance.objects.values_list("instance_id", flat=True))
    window = "start=2026-11-13T00:00:00Z&end=2026-11-20T12:00:00Z&as_of=2026-11-20T12:00:00Z"
    page.goto(f"{live_server.url}/incident/?{window}&{instances}")
    expect(page.locator("#incident-backups tbody tr").first).to_be_visible()
    assert page.evaluate(OVERFLOW_JS) == []


def test_a_phone_shows_an_instance_a_backup_and_a_sync_without_scrolling_them_sideways(
    logged_in, live_server, fleet
):
    page = logged_in
    page.set_viewport_size(PHONE)
    record = BackupRecord.objects.select_related("instance").order_by("-size").first()
    for path in (
        f"/instances/{record.instance.instance_id}/",
        f"/backups/{record.backup_id}/",
        f"/sync/{SyncRun.objects.get().pk}/",
    ):
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate(OVERFLOW_JS) == [], path
