"""The backup records list (``/backups/``): filters, sorting, paging, counts, permalink."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backups.views.records import BackupRecordListView
from tests.factories import T0, make_instance, make_record

LIST_URL = "/backups/"
# Session, user, the count (a cache miss), one page of records with their
# instances joined. A cached count saves one.
LIST_QUERIES = 4
# A cursor for the -updated_at sort: the rows finished before 2100-01-01.
SEEK_FROM = "WyItdXBkYXRlZF9hdCIsIjIxMDAtMDEtMDFUMDA6MDA6MDArMDA6MDAiLDBd"


@pytest.fixture(autouse=True)
def fresh_cache():
    # The unfiltered total is cached for a minute, across requests and tests.
    cache.clear()
    yield
    cache.clear()


def rows_of(html: str) -> list[str]:
    body = html.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr\b.*?</tr>", body, flags=re.S)


def names(response) -> list[str]:
    """The backup names of the table's rows, in order."""
    return [
        html_lib.unescape(re.search(r'class="backup__name">([^<]*)<', row).group(1))
        for row in rows_of(response.text)
        if "table__empty" not in row
    ]


def notices(response) -> list[str]:
    match = re.search(
        r'<div class="alert alert--error notices" role="alert">(.*?)</div>', response.text, re.S
    )
    if not match:
        return []
    return [html_lib.unescape(item) for item in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)]


def count_text(response) -> str:
    """The caption's "1-25 of 60", with a plain hyphen for the en dash."""
    match = re.search(r'<span class="table-caption__count">\s*(.*?)\s*</span>', response.text, re.S)
    return match.group(1).replace("\u2013", "-") if match else ""


def get(client, params=None, **kwargs):
    response = client.get(LIST_URL, params or {}, **kwargs)
    assert response.status_code == 200
    return response


# --- Filters ---------------------------------------------------------------


@pytest.fixture
def mixed(db):
    """Records that differ in every filtered field."""
    orders = make_instance(
        name="orders-cache", instance_id="inst-orders-0001", region="cn-north-4", engine="Redis"
    )
    sessions = make_instance(
        name="Sessions-EU", instance_id="inst-sessions-02", region="eu-west-101", engine="Memcached"
    )
    return {
        "ok": make_record(
            orders, backup_name="ok", status="succeed", backup_type="auto", backup_format="rdb"
        ),
        "broken": make_record(
            orders, backup_name="broken", status="failed", backup_type="manual", backup_format="aof"
        ),
        "running": make_record(
            sessions, backup_name="running", status="backuping", backup_type="manual", backup_format="rdb"
        ),
        "queued": make_record(
            sessions, backup_name="queued", status="waiting", backup_type="auto", backup_format="aof"
        ),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "failed"}, {"broken"}),
        ({"status": ["failed", "waiting"]}, {"broken", "queued"}),
        ({"backup_type": "manual"}, {"broken", "running"}),
        ({"backup_format": "aof"}, {"broken", "queued"}),
        ({"instance": "inst-orders-0001"}, {"ok", "broken"}),
        ({"instance": "sessions"}, {"running", "queued"}),  # a name, in part, any case
        ({"instance": "inst-orders"}, set()),  # an id only whole
        ({"region": "EU-WEST-101"}, {"running", "queued"}),
        ({"engine": "redis"}, {"ok", "broken"}),
        ({"status": "failed", "instance": "orders"}, {"broken"}),
        ({"backup_type": "auto", "backup_format": "aof", "region": "eu-west-101"}, {"queued"}),
        ({"status": ["succeed", "failed"], "backup_type": "manual", "engine": "Redis"}, {"broken"}),
    ],
)
def test_it_filters_by_each_parameter(admin_client, mixed, params, expected):
    response = get(admin_client, params)

    assert set(names(response)) == expected
    assert notices(response) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backup_name", "nightly_orders_FULL"),
        ("backup_id", "5f0c-UNIQUE-id"),
        ("remark", "before the Black Friday freeze"),
    ],
)
def test_it_searches_record_text(admin_client, db, field, value):
    make_record(backup_name="other", remark="")
    hit = make_record(**{"backup_name": "hit", field: value})

    response = get(admin_client, {"q": value[3:12].lower()})

    assert names(response) == [hit.backup_name]


@pytest.mark.parametrize("value", ["Payments-Primary", "inst-payments-77"])
def test_it_searches_instance_name_and_id(admin_client, db, value):
    make_record(make_instance(name="Payments-Primary", instance_id="inst-payments-77"), backup_name="hit")
    make_record(make_instance(name="other", instance_id="inst-other-01"), backup_name="miss")

    response = get(admin_client, {"q": value[2:10].upper()})

    assert names(response) == ["hit"]


def test_it_filters_by_absolute_created_bounds(admin_client, db):
    make_record(backup_name="oct-31", created_at=datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
    make_record(backup_name="nov-01-start", created_at=datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
    make_record(backup_name="nov-01-end", created_at=datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC))
    make_record(backup_name="nov-02", created_at=datetime(2026, 11, 2, 0, 0, tzinfo=UTC))

    whole_day = get(admin_client, {"created_after": "2026-11-01", "created_before": "2026-11-01"})
    after_noon_cst = get(admin_client, {"created_after": "2026-11-01T08:00:00+08:00"})
    before_z = get(admin_client, {"created_before": "2026-11-01T00:00:00Z"})

    # A bare date as the upper bound includes the whole of that day.
    assert names(whole_day) == ["nov-01-end", "nov-01-start"]
    assert names(after_noon_cst) == ["nov-02", "nov-01-end", "nov-01-start"]
    assert names(before_z) == ["oct-31"]


def test_it_filters_by_relative_presets(admin_client, db):
    now = timezone.now()
    make_record(backup_name="an-hour-ago", created_at=now - timedelta(hours=1))
    make_record(backup_name="two-days-ago", created_at=now - timedelta(days=2))
    make_record(backup_name="ten-days-ago", created_at=now - timedelta(days=10))

    assert names(get(admin_client, {"created_after": "24h"})) == ["an-hour-ago"]
    assert names(get(admin_client, {"created_after": "7d"})) == ["an-hour-ago", "two-days-ago"]
    assert names(get(admin_client, {"created_before": "7d"})) == ["ten-days-ago"]
    assert names(get(admin_client, {"created_after": "7d", "created_before": "24h"})) == ["two-days-ago"]


def test_it_says_when_nothing_matches_the_filters(admin_client, mixed):
    response = get(admin_client, {"status": "expired"})

    assert "No backup records match these filters." in response.text
    assert "No backup records yet." not in response.text


@pytest.mark.parametrize(
    ("params", "expected", "message"),
    [
        # One bad status: the good one still applies.
        ({"status": ["failed", "typo"]}, {"broken"}, "Status (status): “typo” is not a value we know"),
        ({"status": "FAILED"}, {"ok", "broken", "running", "queued"}, "“FAILED” is not a value we know"),
        ({"backup_type": "hourly"}, {"ok", "broken", "running", "queued"}, "Type (backup_type) was ignored"),
        ({"backup_format": "xml", "status": "failed"}, {"broken"}, "Format (backup_format) was ignored"),
        (
            {"created_after": "yesterday", "instance": "orders"},
            {"ok", "broken"},
            "Created after (created_after) was ignored: “yesterday” is not a date",
        ),
        (
            {"created_before": "2026-13-45"},
            {"ok", "broken", "running", "queued"},
            "“2026-13-45” is not a date",
        ),
        (
            {"created_after": "01/11/2026"},
            {"ok", "broken", "running", "queued"},
            "Created after (created_after)",
        ),
        (
            {"created_before": "9999-12-31"},
            {"ok", "broken", "running", "queued"},
            "that time is out of range",
        ),
        ({"q": "x" * 201}, {"ok", "broken", "running", "queued"}, "Search (q) was ignored"),
        (
            {"instance": "nul\x00byte"},
            {"ok", "broken", "running", "queued"},
            "Instance (instance) was ignored",
        ),
    ],
)
def test_it_ignores_a_bad_filter_and_says_why(admin_client, mixed, params, expected, message):
    response = get(admin_client, params)

    assert set(names(response)) == expected
    assert any(message in notice for notice in notices(response)), notices(response)
    assert 'role="alert"' in response.text


def test_it_shows_every_message_at_once(admin_client, mixed):
    response = get(
        admin_client,
        {
            "status": "zzz",
            "created_after": "soon",
            "sort": "bogus",
            "page": "abc",
            "per_page": "1000000000",
            "_export": "xml",
        },
    )

    assert len(notices(response)) == 6
    assert len(names(response)) == 4


def test_it_renders_the_filter_form_for_htmx_and_without_js(admin_client, mixed):
    html = get(admin_client, {"status": ["failed", "waiting"], "q": "bro", "sort": "size"}).text

    form = re.search(r"<form class=\"card filter-form\"[^>]*>", html).group(0)
    assert 'method="get"' in form
    assert 'action="/backups/"' in form
    assert 'hx-get="/backups/"' in form
    assert 'hx-target="#backup-table"' in form
    assert 'hx-push-url="true"' in form
    assert 'role="search"' in form
    assert re.search(r'<input type="checkbox" name="status" value="failed"[^>]*checked', html)
    assert re.search(r'<input type="checkbox" name="status" value="waiting"[^>]*checked', html)
    assert not re.search(r'<input type="checkbox" name="status" value="succeed"[^>]*checked', html)
    assert 'name="q" value="bro"' in html
    # A change of filters keeps the sort in effect.
    assert '<input type="hidden" name="sort" value="size">' in html
    assert '<label for="id_instance">Instance</label>' in html
    assert "<legend>Status</legend>" in html


def test_it_does_not_keep_a_bad_sort_in_the_filter_form(admin_client, mixed):
    html = get(admin_client, {"sort": "bogus", "per_page": "7"}).text

    assert 'type="hidden" name="sort"' not in html
    assert '<input type="hidden" name="per_page" value="25">' in html


def test_it_answers_a_change_of_filters_with_the_table_only(admin_client, mixed):
    response = get(admin_client, {"status": "backuping"}, headers={"HX-Request": "true"})

    html = response.text.strip()
    assert html.startswith('<div id="backup-table"')
    assert "<form" not in html
    assert names(response) == ["running"]
    # Still live: it refreshes itself with the same filters.
    assert 'hx-get="/backups/?status=backuping"' in html
    assert 'hx-trigger="every 5s"' in html


def test_it_shows_messages_in_the_htmx_partial_too(admin_client, mixed):
    response = get(admin_client, {"status": "nope"}, headers={"HX-Request": "true"})

    assert any("“nope”" in notice for notice in notices(response))


# --- Sorting ---------------------------------------------------------------


@pytest.fixture
def sortable(db):
    instance = make_instance()
    return [
        make_record(
            instance,
            backup_name="a",
            status="succeed",
            size=300,
            created_at=T0,
            updated_at=T0 + timedelta(minutes=9),
        ),
        make_record(
            instance,
            backup_name="b",
            status="failed",
            size=None,
            created_at=T0 + timedelta(minutes=1),
            updated_at=None,
        ),
        make_record(
            instance,
            backup_name="c",
            status="backuping",
            size=100,
            created_at=T0 + timedelta(minutes=2),
            updated_at=T0 + timedelta(minutes=3),
        ),
        make_record(
            instance,
            backup_name="d",
            status="succeed",
            size=300,
            created_at=T0 + timedelta(minutes=3),
            updated_at=T0 + timedelta(minutes=4),
        ),
    ]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("", ["d", "c", "b", "a"]),
        ("-created_at", ["d", "c", "b", "a"]),
        ("created_at", ["a", "b", "c", "d"]),
        # Every sort is its column, then id, both in the sort's direction.
        ("status", ["c", "b", "a", "d"]),
        ("-status", ["d", "a", "b", "c"]),
        # An unknown size or end is below every known one: first going up, last going down.
        ("size", ["b", "c", "a", "d"]),
        ("-size", ["d", "a", "c", "b"]),
        ("updated_at", ["b", "c", "d", "a"]),
        ("-updated_at", ["a", "d", "c", "b"]),
    ],
)
def test_it_sorts_by_each_offered_column(admin_client, sortable, sort, expected):
    response = get(admin_client, {"sort": sort})

    assert names(response) == expected
    assert notices(response) == []


def test_it_breaks_ties_by_id_in_the_sorts_direction(admin_client, db):
    instance = make_instance()
    first = make_record(instance, backup_name="first", created_at=T0, size=5)
    second = make_record(instance, backup_name="second", created_at=T0, size=5)
    assert second.pk > first.pk

    assert names(get(admin_client, {"sort": "-created_at"})) == ["second", "first"]
    assert names(get(admin_client, {"sort": "created_at"})) == ["first", "second"]
    assert names(get(admin_client, {"sort": "size"})) == ["first", "second"]
    assert names(get(admin_client, {"sort": "-size"})) == ["second", "first"]


def test_it_marks_the_sorted_column(admin_client, sortable):
    default = get(admin_client).text
    by_size = get(admin_client, {"sort": "-size"}).text

    assert re.search(r'aria-sort="descending">\s*<a class="sort-link" href="\?sort=created_at"', default)
    assert re.search(r'aria-sort="descending">\s*<a class="sort-link" href="\?sort=size"', by_size)


@pytest.mark.parametrize(
    "sort",
    ["bogus", "instance", "remark", "--created_at", "created_at,size", ",", "duration", "-"],
)
def test_it_keeps_the_default_order_for_an_unknown_sort(admin_client, sortable, sort):
    response = get(admin_client, {"sort": sort})

    assert names(response) == ["d", "c", "b", "a"]
    assert any("is not a column this table sorts by" in notice for notice in notices(response))


def test_it_takes_one_sort_only(admin_client, sortable):
    response = get(admin_client, [("sort", "size"), ("sort", "status")])

    assert names(response) == ["d", "c", "b", "a"]
    assert len(notices(response)) == 1


# --- Paging ----------------------------------------------------------------


@pytest.fixture
def sixty(db):
    instance = make_instance()
    return [
        make_record(instance, backup_name=f"r{i:02d}", created_at=T0 + timedelta(minutes=i))
        for i in range(60)
    ]


def test_it_pages_and_keeps_the_filters(admin_client, sixty):
    response = get(admin_client, {"q": "r", "page": "2"})

    assert names(response) == [f"r{i:02d}" for i in range(34, 9, -1)]
    assert count_text(response) == "26-50 of 60"
    assert 'href="?q=r&amp;page=3"' in response.text
    assert notices(response) == []


@pytest.mark.parametrize(("per_page", "rows"), [("25", 25), ("50", 50), ("100", 60), ("250", 60)])
def test_it_offers_page_sizes(admin_client, sixty, per_page, rows):
    response = get(admin_client, {"per_page": per_page})

    assert len(names(response)) == rows
    assert f'per_page={per_page}" aria-current="true"' in response.text
    assert notices(response) == []


@pytest.mark.parametrize(
    ("params", "rows", "message"),
    [
        (
            {"per_page": "1000000000"},
            60,
            "“1000000000” rows per page is not offered (25, 50, 100, 250): showing 250.",
        ),
        ({"per_page": "30"}, 25, "“30” rows per page is not offered"),
        ({"per_page": "lots"}, 25, "“lots” rows per page is not offered"),
        ({"page": "abc"}, 25, "“abc” is not a page number: showing the first page."),
        ({"page": "2.5"}, 25, "“2.5” is not a page number"),
        ({"page": "999"}, 10, "There is no page 999: showing the last page, 3."),
        ({"page": "0"}, 10, "There is no page 0: showing the last page, 3."),
        ({"page": "99999999999999999999999"}, 10, "showing the last page, 3."),
    ],
)
def test_it_pages_tolerantly_and_says_so(admin_client, sixty, params, rows, message):
    response = get(admin_client, params)

    assert len(names(response)) == rows
    assert any(message in notice for notice in notices(response)), notices(response)


# --- Counting --------------------------------------------------------------


def count_queries(client, params=None, **kwargs) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        get(client, params, **kwargs)
    return [query["sql"] for query in queries.captured_queries]


def full_counts(sqls: list[str]) -> list[str]:
    """COUNT queries that are not stopped by a LIMIT."""
    return [sql for sql in sqls if "COUNT(" in sql.upper() and "LIMIT" not in sql.upper()]


def total_reads(sqls: list[str]) -> list[str]:
    """Reads of the unfiltered total: the sum of the hourly summary."""
    return [sql for sql in sqls if "SUM(" in sql.upper() and "backups_backuphourlycount" in sql]


def test_it_caches_the_unfiltered_total_for_a_minute(admin_client, sixty, monkeypatch):
    monkeypatch.setattr(BackupRecordListView, "count_cache_min_rows", 50)
    first = count_queries(admin_client)
    make_record(backup_name="newer", created_at=T0 + timedelta(days=1))
    second = count_queries(admin_client)
    later = get(admin_client)

    # Never a COUNT(*) over the records: the total is the summary's.
    assert full_counts(first) == full_counts(second) == []
    assert len(total_reads(first)) == 1
    assert total_reads(second) == []
    assert len(second) == len(first) - 1
    # Up to a minute old: the new record is listed, the total catches up later.
    assert names(later)[0] == "newer"
    assert count_text(later) == "1-25 of 60"
    cache.clear()
    assert count_text(get(admin_client)) == "1-25 of 61"


def test_it_counts_filtered_views_up_to_a_cap(admin_client, sixty, monkeypatch):
    monkeypatch.setattr(BackupRecordListView, "count_cap", 30)

    queries = count_queries(admin_client, {"q": "r"})
    first, second = get(admin_client, {"q": "r"}), get(admin_client, {"q": "r", "page": "2"})
    last = get(admin_client, {"q": "r", "page": "3"})

    assert full_counts(queries) == []
    assert any("LIMIT 31" in sql.upper() for sql in queries)
    assert count_text(first) == "1-25 of 30+"
    assert count_text(second) == "26-50 of 30+"
    # The last page knows the exact total from its own rows.
    assert count_text(last) == "51-60 of 60"
    assert len(names(last)) == 10
    assert 'title="More pages follow"' in first.text


def test_it_pages_deep_into_an_uncounted_view_without_counting(admin_client, sixty, monkeypatch):
    monkeypatch.setattr(BackupRecordListView, "count_cap", 10)

    with CaptureQueriesContext(connection) as queries:
        response = get(admin_client, {"q": "r", "page": "2"})

    assert full_counts([q["sql"] for q in queries.captured_queries]) == []
    assert names(response) == [f"r{i:02d}" for i in range(34, 9, -1)]
    assert 'rel="next"' in response.text


def test_it_counts_an_uncounted_view_only_to_find_the_last_page(admin_client, sixty, monkeypatch):
    monkeypatch.setattr(BackupRecordListView, "count_cap", 10)

    with CaptureQueriesContext(connection) as queries:
        response = get(admin_client, {"q": "r", "page": "40"})

    assert len(full_counts([q["sql"] for q in queries.captured_queries])) == 1
    assert len(names(response)) == 10
    assert "There is no page 40: showing the last page, 3." in notices(response)


def test_it_counts_a_filtered_view_exactly_below_the_cap(admin_client, sixty):
    response = get(admin_client, {"q": "r0"})

    assert count_text(response) == "1-10 of 10"


def make_rows(count: int):
    instances = [make_instance() for _ in range(max(1, count // 3))]
    for i in range(count):
        make_record(
            instances[i % len(instances)],
            status=["succeed", "backuping", "failed", "waiting"][i % 4],
            remark="nightly",
            gone_at=T0 if i % 7 == 0 else None,
        )


@pytest.mark.parametrize(
    ("params", "headers", "budget"),
    [
        ({"per_page": "100"}, {}, LIST_QUERIES),
        ({"per_page": "100", "sort": "size"}, {}, LIST_QUERIES),
        (
            {
                "per_page": "100",
                "status": ["failed", "backuping"],
                "q": "nightly",
                "created_after": "2020-01-01",
            },
            {},
            4,
        ),
        ({"per_page": "100", "status": "backuping"}, {"HX-Request": "true"}, 4),
        ({"per_page": "100"}, {"HX-Request": "true"}, LIST_QUERIES),
        # One instance's records: the instances matching are looked up first.
        ({"per_page": "100", "instance": "dcs-redis"}, {}, LIST_QUERIES + 1),
        ({"per_page": "100", "sort": "-updated_at", "after": SEEK_FROM}, {}, LIST_QUERIES),
    ],
)
def test_it_lists_any_number_of_rows_in_the_same_queries(admin_client, db, params, headers, budget):
    make_rows(5)
    few = count_queries(admin_client, params, headers=headers)
    make_rows(55)
    cache.clear()
    many = count_queries(admin_client, params, headers=headers)

    assert len(few) == len(many) == budget


def test_it_does_not_cache_a_small_total(admin_client, db):
    make_rows(3)
    first = count_queries(admin_client)
    make_rows(3)
    assert len(total_reads(count_queries(admin_client))) == len(total_reads(first)) == 1
    assert count_text(get(admin_client)).endswith("of 6")


def test_it_needs_one_query_less_with_the_total_cached(admin_client, db, monkeypatch):
    monkeypatch.setattr(BackupRecordListView, "count_cache_min_rows", 1)
    make_rows(20)
    count_queries(admin_client)

    assert len(count_queries(admin_client)) == LIST_QUERIES - 1


# --- Permalink and live updates --------------------------------------------


def permalink_of(response) -> str:
    value = re.search(r'<input class="permalink__input"[^>]*value="([^"]*)"', response.text).group(1)
    return html_lib.unescape(value)


def test_it_gives_an_absolute_permalink_with_absolute_times(admin_client, mixed):
    before = timezone.now().replace(microsecond=0)
    response = get(
        admin_client,
        {
            "created_after": "24h",
            "created_before": "2026-11-01",
            "status": "failed",
            "q": "",
            "_export": "xml",
        },
    )
    after = timezone.now()

    link = permalink_of(response)
    parts = urlsplit(link)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://testserver/backups/"
    assert query["status"] == ["failed"]
    assert query["created_before"] == ["2026-11-01"]  # already absolute: kept as typed
    assert "q" not in query  # empty values are noise in a pasted link
    assert "_export" not in query
    bound = datetime.fromisoformat(query["created_after"][0].replace("Z", "+00:00"))
    assert query["created_after"][0].endswith("Z")
    assert before - timedelta(hours=24, seconds=1) <= bound <= after - timedelta(hours=24)


def test_it_shows_the_same_records_later_from_the_permalink(admin_client, db):
    now = timezone.now()
    make_record(backup_name="recent", created_at=now - timedelta(hours=2))
    link = permalink_of(get(admin_client, {"created_after": "24h"}))
    make_record(backup_name="older", created_at=now - timedelta(hours=30))

    # Tomorrow, "24h" would mean another window; the permalink does not.
    query = urlsplit(link).query
    assert names(get(admin_client, parse_qs(query))) == ["recent"]


def test_it_has_a_copy_button_and_a_selectable_link(admin_client, mixed):
    response = get(admin_client, {"status": "failed"})

    link = permalink_of(response)
    assert link == "http://testserver/backups/?status=failed"
    button = re.search(r"<button[^>]*data-copy-text=\"([^\"]*)\"[^>]*>(.*?)</button>", response.text)
    assert button.group(2) == "Copy link"
    assert 'type="button"' in button.group(0)
    assert html_lib.unescape(button.group(1)) == link
    assert re.search(r'<label class="permalink__label" for="permalink">', response.text)
    assert re.search(r'<input class="permalink__input" id="permalink" type="text" readonly', response.text)


def test_it_links_each_backup_to_its_page(admin_client, db):
    record = make_record(backup_name="nightly")

    html = get(admin_client).text

    assert f'<a href="/backups/{record.backup_id}/" class="backup__name">nightly</a>' in html


def test_it_shows_a_backup_id_the_url_cannot_carry_unlinked(admin_client, db):
    make_record(backup_name="", backup_id="a/b")

    assert '<span class="backup__name">a/b</span>' in get(admin_client).text


@pytest.mark.parametrize(
    ("created", "finished", "text"),
    [
        (T0, T0 + timedelta(minutes=3, seconds=12), "3 min 12 s"),
        (T0, T0 + timedelta(seconds=45), "45 s"),
        (T0, T0 + timedelta(hours=1, minutes=2, seconds=3), "1 h 2 min"),
        (T0, None, None),
        (T0, T0 - timedelta(seconds=5), None),  # a clock gone backwards: unknown
    ],
)
def test_it_shows_how_long_a_backup_took(admin_client, db, created, finished, text):
    make_record(created_at=created, updated_at=finished)

    row = rows_of(get(admin_client).text)[0]

    if text:
        assert f">{text}</span>" in row
    else:
        assert 'class="duration"' not in row


def test_it_polls_only_while_a_visible_row_is_running(admin_client, db):
    make_record(backup_name="done", status="succeed")
    make_record(backup_name="going", status="backuping", progress=Decimal("12.5"))

    running = get(admin_client, {"status": "backuping"}).text
    finished = get(admin_client, {"status": "succeed"}).text

    assert 'hx-trigger="every 5s"' in running
    assert "every 5s" not in finished


# --- Nothing in the URL makes it fail --------------------------------------

PARAM_NAMES = [
    "status",
    "backup_type",
    "backup_format",
    "instance",
    "region",
    "engine",
    "created_after",
    "created_before",
    "q",
    "sort",
    "page",
    "per_page",
    "_export",
]
GOOD_VALUES = [
    "failed",
    "waiting",
    "auto",
    "manual",
    "aof",
    "rdb",
    "24h",
    "7d",
    "0h",
    "99999d",
    "2026-11-01",
    "2026-11-01T08:00:00+08:00",
    "9999-12-31",
    "0001-01-01T00:00:00+01:00",
    "-size",
    "status",
    "created_at",
    "-updated_at",
    "1",
    "3",
    "0",
    "-1",
    "250",
    "1e400",
    "99999999999999999999999999",
    "csv",
    "json",
    "%",
    "_",
    "' OR 1=1 --",
]
text_without_surrogates = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)


@pytest.fixture
def some_records(db):
    make_rows(8)
    make_record(make_instance(name="", instance_id="x/y"), backup_name="", backup_id="a/b", status="weird")


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    params=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(PARAM_NAMES), text_without_surrogates),
            st.one_of(st.sampled_from(GOOD_VALUES), text_without_surrogates),
        ),
        max_size=8,
    ),
    htmx=st.booleans(),
)
def test_it_never_fails_on_any_query(admin_client, some_records, params, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    response = admin_client.get(f"{LIST_URL}?{urlencode(params)}", headers=headers)
    if response.streaming:
        b"".join(response.streaming_content)

    assert response.status_code == 200
