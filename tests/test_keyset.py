"""Keyset paging of the backup list: every sort, both ways, to any depth, through an index."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from urllib.parse import urljoin

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backups.keyset import BadCursor, Keyset
from backups.models import BackupRecord
from backups.tables import BackupRecordTable
from tests.factories import T0, make_instance, make_record
from tests.test_records_list import LIST_QUERIES, notices

LIST_URL = "/backups/"
PER_PAGE = 25
SORTS = ("", "created_at", "status", "-status", "size", "-size", "updated_at", "-updated_at")
STATUSES = ("succeed", "failed", "waiting", "backuping", "expired")


@pytest.fixture(autouse=True)
def shallow_numbering(monkeypatch):
    # Two numbered pages, then seeks: a small table shows the deep mechanism.
    monkeypatch.setattr("backups.views.mixins.MAX_NUMBERED_ROWS", 2 * PER_PAGE)
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fleet(db):
    """130 records over two instances: ties in every sort key, and NULLs in all the nullable ones."""
    instances = [make_instance(), make_instance()]
    for n in range(130):
        created = T0 + timedelta(minutes=n // 3)  # three records share each created_at
        fields = {"status": STATUSES[n % 5], "size": (n % 7) * 1024 if n % 11 else None}
        if n % 17 == 0:
            fields.update(created_at=None, updated_at=None)
        elif n % 5 in (2, 3):
            fields.update(updated_at=None)
        else:
            fields.update(created_at=created, updated_at=created + timedelta(minutes=n % 4))
        make_record(instances[n % 2], backup_name=f"b{n:03d}", **fields)
    return instances


def expected_names(sort: str) -> list[str]:
    """The whole list in the sort's order, as the database orders it (NULL placement and all)."""
    table = BackupRecordTable(BackupRecord.objects.select_related("instance").newest_first())
    if sort:
        table.order_by = sort
    return [record.backup_name for record in table.data.data]


def names(response) -> list[str]:
    body = response.text.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    return [html_lib.unescape(name) for name in re.findall(r'class="backup__name">([^<]*)<', body)]


def link(response, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]*)" rel="{rel}">', response.text)
    return urljoin(LIST_URL, html_lib.unescape(match.group(1))) if match else None


def walk(client, url: str, rel: str) -> tuple[list[list[str]], list]:
    pages, responses = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(names(response))
        responses.append(response)
        url = link(response, rel)
        assert len(pages) < 50, "paging does not end"
    return pages, responses


@pytest.mark.django_db
@pytest.mark.parametrize("sort", SORTS)
def test_it_pages_through_every_row_once_in_every_sort(admin_client, fleet, sort):
    query = f"?per_page={PER_PAGE}" + (f"&sort={sort}" if sort else "")
    pages, responses = walk(admin_client, LIST_URL + query, "next")

    assert [name for page in pages for name in page] == expected_names(sort)
    # Past the numbered pages, the links seek.
    assert "after=" in link(responses[1], "next")
    assert all(len(page) == PER_PAGE for page in pages[:-1])


@pytest.mark.django_db
@pytest.mark.parametrize("sort", SORTS)
def test_it_pages_back_to_the_first_page_the_same_way(admin_client, fleet, sort):
    query = f"?per_page={PER_PAGE}" + (f"&sort={sort}" if sort else "")
    forward, responses = walk(admin_client, LIST_URL + query, "next")

    backward, _ = walk(admin_client, link(responses[-1], "prev"), "prev")

    assert list(reversed(backward)) == forward[:-1]


@pytest.mark.django_db
def test_it_shows_a_sought_page_as_rows_of_the_total(admin_client, fleet):
    response = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&page=2")
    deep = admin_client.get(link(response, "next"))

    assert re.search(r"25 rows of 130", deep.text)
    assert "First page" in deep.text


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["nonsense", "W10", "!!!", "x" * 2000, "WyIiLG51bGwsbnVsbF0"])
def test_it_shows_the_first_page_for_a_cursor_it_did_not_make(admin_client, fleet, token):
    response = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&after={token}")

    assert response.status_code == 200
    assert names(response) == expected_names("")[:PER_PAGE]
    assert any("does not fit this view" in notice for notice in notices(response))


@pytest.mark.django_db
def test_it_does_not_take_a_cursor_from_another_sort(admin_client, fleet):
    first = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&page=2&sort=size")
    token = re.search(r"after=([^&\"]+)", link(first, "next")).group(1)

    response = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&after={token}&sort=-size")

    assert names(response) == expected_names("-size")[:PER_PAGE]
    assert any("another sort order" in notice for notice in notices(response))


@pytest.mark.django_db
def test_it_caps_page_numbers_at_the_numbered_depth(admin_client, fleet):
    response = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&page=4")

    assert names(response) == expected_names("")[PER_PAGE : 2 * PER_PAGE]
    assert any("deeper than pages are numbered" in notice for notice in notices(response))


@pytest.mark.django_db
def test_it_keeps_the_cursor_out_of_sort_links_and_exports(admin_client, fleet):
    first = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&page=2")
    deep = admin_client.get(link(first, "next"))

    sort_links = re.findall(r'class="sort-link" href="([^"]*)"', deep.text)
    export_links = re.findall(r'<a href="([^"]*_export=[^"]*)"', deep.text)
    assert sort_links and export_links
    assert not any("after=" in href for href in sort_links + export_links)


@pytest.mark.django_db
def test_it_seeks_any_page_in_the_same_queries(admin_client, fleet):
    first = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&page=2")
    url = link(first, "next")
    admin_client.get(url)  # the count is cached from here on
    with CaptureQueriesContext(connection) as captured:
        admin_client.get(url)
    assert len(captured) <= LIST_QUERIES


@pytest.mark.parametrize("sort", SORTS)
def test_a_numbered_page_read_by_its_ids_is_the_offset_page(fleet, sort):
    # The deferred join (ids off the index, then their rows) against plain
    # OFFSET: the same rows in the same order at every depth, NULL blocks,
    # ties and a filter included.
    table = BackupRecordTable(BackupRecord.objects.select_related("instance").newest_first())
    if sort:
        table.order_by = sort
    for queryset in (table.data.data, table.data.data.filter(status__in=["failed", "waiting"])):
        keyset = Keyset.of(queryset)
        for start in (0, 1, 24, 50, 125):
            expected = [record.backup_name for record in queryset[start : start + PER_PAGE]]
            page = keyset.page_slice(queryset, start, start + PER_PAGE)
            assert [record.backup_name for record in page] == expected


def test_a_deep_numbered_page_reads_its_ids_in_a_subquery(admin_client, fleet):
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(f"{LIST_URL}?per_page={PER_PAGE}&page=2")
    assert names(response) == expected_names("")[PER_PAGE : 2 * PER_PAGE]
    (page_query,) = [query["sql"] for query in captured if "backups_dcsinstance" in query["sql"]]
    assert " IN (SELECT " in page_query and "OFFSET" in page_query


def test_it_refuses_orders_it_cannot_seek():
    records = BackupRecord.objects.all()
    assert Keyset.of(records.order_by("-created_at", "-id")) is not None
    assert Keyset.of(records.order_by("created_at")) is None  # not total
    assert Keyset.of(records.order_by("status", "-id")) is None  # mixed directions
    assert Keyset.of(records.order_by("instance__name", "id")) is None  # another table
    assert Keyset.of(records.order_by("size", "id")) is not None  # a nullable first key is seekable
    assert Keyset.of(records.order_by("status", "size", "id")) is None  # a nullable key past the first
    assert Keyset.of(records.order_by("id", "size")) is None  # not ending in the primary key


def test_it_round_trips_a_cursor_and_rejects_it_for_another_order():
    keyset = Keyset.of(BackupRecord.objects.order_by("-created_at", "-id"))
    token = keyset.encode((T0, 42), order="")
    assert keyset.decode(token, order="") == (T0, 42)
    with pytest.raises(BadCursor):
        keyset.decode(token, order="size")
