"""Anomalies: a succeeded backup whose size or duration is far from its instance's recent median."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backups.anomalies import describe, detect_anomalies, ratio_of
from backups.models import BackupRecord
from backups.sync import sync_fleet
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def history(instance, sizes, *, minutes=None, start=T0, status="succeed"):
    """One backup an hour, oldest first, with these sizes and durations (minutes)."""
    minutes = minutes or [2] * len(sizes)
    records = []
    for n, (size, length) in enumerate(zip(sizes, minutes, strict=True)):
        created = start + n * HOUR
        records.append(
            make_record(
                instance,
                status=status,
                size=size,
                created_at=created,
                updated_at=None if length is None else created + length * MINUTE,
            )
        )
    return records


def flagged(record) -> tuple:
    record.refresh_from_db()
    return record.anomaly, record.size_ratio, record.duration_ratio


# --- The arithmetic -------------------------------------------------------------------


def test_it_needs_five_known_values_and_a_positive_median():
    assert ratio_of(50, [100] * 4) is None
    assert ratio_of(50, [100] * 5) == 0.5
    assert ratio_of(None, [100] * 5) is None
    assert ratio_of(50, [0] * 5) is None
    assert ratio_of(0, [100] * 5) == 0.0


def test_it_flags_a_backup_much_smaller_than_the_median():
    instance = make_instance()
    *_, small = history(instance, [100, 110, 90, 100, 105, 95, 55])

    detect_anomalies(instance=instance)

    anomaly, size_ratio, duration_ratio = flagged(small)
    assert anomaly == "size"
    assert size_ratio == pytest.approx(0.55)
    assert duration_ratio == pytest.approx(1.0)
    assert describe(small) == ["size 45% below median"]


def test_it_leaves_a_backup_within_the_ratio_alone():
    instance = make_instance()
    *_, smaller, larger = history(instance, [100] * 6 + [70, 139])

    detect_anomalies(instance=instance)

    assert flagged(smaller)[0] == "" and flagged(smaller)[1] == pytest.approx(0.7)
    assert flagged(larger)[0] == ""  # 139 against 100 of the previous ones


def test_it_flags_a_slow_backup_and_one_unusual_in_both():
    instance = make_instance()
    *_, slow, both = history(instance, [100] * 6 + [100, 300], minutes=[2] * 6 + [5, 6])

    detect_anomalies(instance=instance)

    assert flagged(slow)[0] == "duration"
    assert describe(slow) == ["duration 2.5x median"]
    assert flagged(both)[0] == "size,duration"
    assert describe(both) == ["size 3.0x median", "duration 3.0x median"]


def test_it_follows_the_ratio_setting(settings):
    settings.DASHBOARD_ANOMALY_RATIO = 0.6
    instance = make_instance()
    *_, small = history(instance, [100] * 6 + [55])

    detect_anomalies(instance=instance)

    assert flagged(small)[0] == ""


def test_it_compares_with_the_previous_window_only(settings):
    settings.DASHBOARD_ANOMALY_WINDOW = 14
    instance = make_instance()
    # Big long ago, small lately: the last one is compared with the last 14.
    *_, last = history(instance, [1000] * 20 + [100] * 14 + [100])

    detect_anomalies(instance=instance)

    assert flagged(last) == ("", 1.0, 1.0)


def test_it_says_nothing_with_too_few_earlier_backups():
    instance = make_instance()
    records = history(instance, [100, 100, 100, 100, 10])

    detect_anomalies(instance=instance)

    assert [flagged(r) for r in records] == [("", None, None)] * 5


def test_it_skips_unknown_sizes_and_counts_a_zero_size():
    instance = make_instance()
    # Sizes unknown in between do not count as values, nor shrink the window.
    *_, empty = history(instance, [100, None, 100, None, 100, 100, 100, 0], minutes=[2] * 8)
    all_zero = make_instance()
    *_, after_zeros = history(all_zero, [0] * 6 + [100])

    detect_anomalies(instance=instance)
    detect_anomalies(instance=all_zero)

    assert flagged(empty)[:2] == ("size", 0.0)
    assert describe(empty) == ["size 100% below median"]
    # A median of zero says nothing about a backup of any size.
    assert flagged(after_zeros)[:2] == ("", None)


def test_it_ignores_backups_that_did_not_succeed():
    instance = make_instance()
    history(instance, [100] * 6)
    failed = make_record(instance, status="failed", size=1, created_at=T0 + 7 * HOUR)
    history(instance, [5] * 3, start=T0 + 10 * HOUR, status="failed")
    last = make_record(instance, status="succeed", size=100, created_at=T0 + 20 * HOUR)

    detect_anomalies(instance=instance)

    assert flagged(failed) == ("", None, None)
    assert flagged(last)[0] == ""


def test_it_evaluates_only_the_records_it_is_given_in_few_queries(django_assert_num_queries):
    instance = make_instance()
    old = history(instance, [100] * 20)
    new = [make_record(instance, size=10, created_at=T0 + (30 + n) * HOUR) for n in range(3)]

    with django_assert_num_queries(0):
        assert detect_anomalies(instance=instance, records=[]) == 0
    # The span from the oldest given, the earlier sizes and durations, one write.
    with django_assert_num_queries(4):
        assert detect_anomalies(instance=instance, records=new) == 3

    assert all(flagged(record)[0] == "" for record in old)
    assert flagged(new[0])[0] == "size"
    # The second small one is compared with 13 normal ones and the first small one.
    assert flagged(new[1])[0] == "size" and flagged(new[2])[0] == "size"


def test_it_reevaluates_the_backups_after_one_stored_late():
    instance = make_instance()
    usual = history(instance, [100] * 6)
    later = make_record(instance, size=100, created_at=T0 + 20 * HOUR)
    detect_anomalies(instance=instance)
    assert flagged(later)[1] == 1.0
    # Older than `later`, listed only now: eight tiny ones make its median small.
    late = [make_record(instance, size=1, created_at=T0 + (10 + n) * HOUR) for n in range(8)]

    detect_anomalies(instance=instance, records=late)

    assert flagged(later)[:2] == ("size", 100.0)
    assert all(flagged(record)[0] == "" for record in usual)


def test_it_agrees_with_a_recompute_after_a_sync(dcs_client):
    sync_fleet(client=dcs_client, kind="full")
    compared = BackupRecord.objects.filter(status="succeed", size_ratio__isnull=False).count()

    out = io.StringIO()
    call_command("detect_anomalies", "--all", stdout=out)

    assert compared > 0
    # What the sync worked out record by record is what a recompute finds.
    assert "; 0 backup records changed" in out.getvalue()


def test_an_unchanged_incremental_sync_evaluates_nothing(clocked_client):
    sync_fleet(client=clocked_client, kind="full")

    with CaptureQueriesContext(connection) as queries:
        sync_fleet(client=clocked_client, kind="incremental")

    # The clock stood still: nothing new or changed, so no history was read for a median.
    assert not [q["sql"] for q in queries.captured_queries if "size_ratio" in q["sql"]]


# --- The command ------------------------------------------------------------------------


def test_the_command_recomputes_one_instance_or_all():
    one = make_instance(instance_id="inst-1")
    *_, small = history(one, [100] * 6 + [10])
    other = make_instance(instance_id="inst-2")
    *_, other_small = history(other, [100] * 6 + [10])

    out = io.StringIO()
    call_command("detect_anomalies", "--instance", "inst-1", stdout=out)
    assert "Checked 1 instances; 2 backup records changed" in out.getvalue()
    assert flagged(small)[0] == "size" and flagged(other_small)[0] == ""

    call_command("detect_anomalies", "--all", stdout=out)
    assert flagged(other_small)[0] == "size"


@pytest.mark.parametrize(
    ("args", "message"),
    [((), "either --instance ID or --all"), (("--instance", "nope"), "No DCS instance with the id 'nope'")],
)
def test_the_command_refuses_unclear_or_unknown_targets(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("detect_anomalies", *args)


# --- Pages ---------------------------------------------------------------------------------


@pytest.fixture
def fleet():
    instance = make_instance(name="orders-cache", instance_id="inst-1")
    records = history(instance, [100] * 6 + [100, 30, 100], minutes=[2] * 6 + [9, 2, 2])
    detect_anomalies(instance=instance)
    slow, small, usual = records[-3:]
    return {"slow": slow, "small": small, "usual": usual, "instance": instance}


def listed_ids(response) -> list[str]:
    return [row["backup_id"] for row in json.loads(b"".join(response.streaming_content))]


def test_it_filters_the_backups_by_anomaly(admin_client, fleet):
    assert listed_ids(admin_client.get("/backups/", {"anomaly": "any", "_export": "json"})) == [
        fleet["small"].backup_id,
        fleet["slow"].backup_id,
    ]
    assert listed_ids(admin_client.get("/backups/", {"anomaly": "size", "_export": "json"})) == [
        fleet["small"].backup_id
    ]
    assert listed_ids(admin_client.get("/backups/", {"anomaly": "duration", "_export": "json"})) == [
        fleet["slow"].backup_id
    ]


def test_it_explains_an_anomaly_filter_it_does_not_know(admin_client, fleet):
    response = admin_client.get("/backups/", {"anomaly": "weird"})

    assert response.status_code == 200
    assert "Anomaly (anomaly) was ignored" in response.text


def test_it_shows_badges_in_the_list_and_the_instance_history(
    admin_client, fleet, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        html = admin_client.get("/backups/").text

    assert 'badge--anomaly" title="Unusual for this instance' in html
    assert "size 70% below median" in html and "duration 4.5x median" in html
    assert "size 70% below median" in admin_client.get("/instances/inst-1/").text


def test_it_explains_the_anomaly_on_the_detail_page(admin_client, fleet):
    small = admin_client.get(f"/backups/{fleet['small'].backup_id}/").text
    usual = admin_client.get(f"/backups/{fleet['usual'].backup_id}/").text
    first = BackupRecord.objects.order_by("created_at").first()

    assert "size 70% below median" in small and "size 0.30x median" in small
    assert "badge--anomaly" not in usual and "size 1.00x median" in usual
    assert "not compared" in admin_client.get(f"/backups/{first.backup_id}/").text


def test_it_exports_the_anomaly_and_its_ratios(admin_client, fleet):
    response = admin_client.get("/backups/", {"anomaly": "any", "_export": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    items = json.loads(
        b"".join(admin_client.get("/backups/", {"anomaly": "any", "_export": "json"}).streaming_content)
    )

    assert [(row["Anomaly"], row["Size vs median"]) for row in rows] == [("size", "0.3"), ("duration", "1.0")]
    assert items[0]["anomaly"] == "size" and items[0]["size_ratio"] == pytest.approx(0.3)
    assert items[1]["duration_ratio"] == pytest.approx(4.5)


@pytest.mark.parametrize("kind", ["any", "size", "duration"])
def test_it_reads_the_anomaly_filter_off_its_partial_index(fleet, kind):
    from django.db import transaction

    from backups.anomalies import anomaly_q

    queryset = BackupRecord.objects.select_related("instance").filter(anomaly_q(kind)).newest_first()[:26]
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            # Priced out, so that the plan shows which index can serve at all, whatever the table's size.
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = queryset.explain()
        assert "backup_anomalous" in plan and "Sort" not in plan, plan
    else:
        plan = queryset.explain()
        assert "backup_anomalous" in plan and "TEMP B-TREE" not in plan, plan
