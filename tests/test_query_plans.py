"""The list and history queries read an index in order: no sort of the rows, at any depth.

On PostgreSQL the plan is read with sorting and sequential scans priced out
(``enable_sort``/``enable_seqscan`` off): a Sort node left in the plan then
means no index can give that order at all, whatever the table's size. On
SQLite, EXPLAIN QUERY PLAN says "USE TEMP B-TREE FOR ORDER BY" when it sorts.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection, transaction

from backups.keyset import Keyset
from backups.models import BackupRecord
from backups.tables import BackupRecordTable
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db

SORTS = ("", "created_at", "status", "-status", "size", "-size", "updated_at", "-updated_at")


@pytest.fixture
def records():
    instance = make_instance()
    return [make_record(instance, created_at=T0 + timedelta(minutes=n)) for n in range(5)]


def listed(sort: str = "", **filters):
    """The list page's queryset, as the table orders it."""
    table = BackupRecordTable(
        BackupRecord.objects.select_related("instance").filter(**filters).newest_first()
    )
    if sort:
        table.order_by = sort
    return table.data.data


def plan_nodes(queryset) -> list[str]:
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = json.loads(queryset.explain(format="json"))
        nodes, stack = [], [plan[0]["Plan"]]
        while stack:
            node = stack.pop()
            nodes.append(node["Node Type"])
            stack.extend(node.get("Plans", []))
        return nodes
    return [queryset.explain()]


def assert_read_in_index_order(queryset) -> None:
    nodes = plan_nodes(queryset)
    if connection.vendor == "postgresql":
        assert "Sort" not in nodes and "Incremental Sort" not in nodes, nodes
        assert any(node in ("Index Scan", "Index Only Scan", "Index Scan Backward") for node in nodes), nodes
    else:
        (text,) = nodes
        assert "TEMP B-TREE" not in text, text
        assert "INDEX" in text, text


@pytest.mark.parametrize("sort", SORTS)
def test_it_reads_a_page_of_every_sort_off_an_index(records, sort):
    assert_read_in_index_order(listed(sort)[:51])


@pytest.mark.parametrize("sort", SORTS)
def test_it_seeks_a_deep_page_of_every_sort_off_an_index(records, sort):
    queryset = listed(sort)
    keyset = Keyset.of(queryset)
    middle = queryset[2]
    seek = queryset.filter(keyset.beyond(keyset.values_of(middle)))

    assert_read_in_index_order(seek[:51])


@pytest.mark.parametrize("sort", SORTS)
def test_it_skips_a_numbered_pages_offset_in_the_index_alone(records, sort):
    # The page's ids are picked off the sort's index without reading a table
    # row (SQLite: a covering index; PostgreSQL: an index-only scan).
    queryset = listed(sort)
    keyset = Keyset.of(queryset)
    nodes = plan_nodes(keyset.page_slice(queryset, 2, 4))
    if connection.vendor == "postgresql":
        assert "Index Only Scan" in nodes, nodes
    elif not any(field.generated for field in keyset.fields):
        # SQLite does not count an index on a virtual generated column (the
        # size and finished sorts) as covering: it reads each skipped row,
        # though still without joining its instance.
        (text,) = nodes
        assert "COVERING INDEX" in text, text


def test_it_reads_a_status_filter_off_the_status_index(records):
    assert_read_in_index_order(listed(status__in=["failed"])[:51])


def test_it_reads_an_instances_history_off_its_index(records):
    instance = records[0].instance

    assert_read_in_index_order(instance.backups.newest_first()[:51])
    assert_read_in_index_order(listed(instance_id__in=[instance.pk])[:51])


def index_names(queryset) -> str:
    """Every index the plan reads, as text (PostgreSQL with sorts and sequential scans priced out).

    Sorting is priced out as in plan_nodes: the test tables are small, and
    with few rows the planner may sort a handful rather than read an index
    that serves the order; a Sort left in the plan then has no index to use.
    """
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            return queryset.explain(format="json")
    return queryset.explain()


def test_it_sums_the_fleet_pages_backed_up_sizes_off_their_index(records):
    from django.utils import timezone

    from backups.restores import with_restore_facts
    from backups.selectors import instances_with_stats

    # Not the ~1,000 rows of each instance: an index of the kept backups, in
    # order, which the last restorable backup reads too, without a sort.
    page = with_restore_facts(instances_with_stats(now=timezone.now())).order_by("name", "instance_id", "pk")
    plan = index_names(page[:50])
    assert "backup_kept_size" in plan
    assert "TEMP B-TREE" not in plan and '"Sort"' not in plan, plan
