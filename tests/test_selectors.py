from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backups.models import DcsInstance
from backups.selectors import (
    Gap,
    backup_status_counts,
    backups_in_window,
    find_gaps,
    fleet_risk,
    instance_for_page,
    instances_with_stats,
    running_backups,
    single_node_q,
    success_rate,
    sync_freshness,
)
from tests.factories import T0, make_instance, make_record, make_sync_run

NOW = T0 + timedelta(days=40)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# The default RPO (DASHBOARD_RPO_HOURS) of an instance no policy names.
RPO = 26 * HOUR


def stats_of(instance, now=NOW):
    return instances_with_stats(now=now).get(pk=instance.pk)


# --- Single-node instances -----------------------------------------------------

SPEC_CODES = [
    ("redis.single.xu1.tiny.128", True),
    ("dcs.memcached.single_node", True),
    ("single.redis", True),
    ("REDIS.SINGLE.XU1", True),
    ("redis.singleton", True),
    ("redis.ha.xu1.large.r2.2", False),
    ("redis.cluster.xu1.large.4", False),
    ("redis.notsingle.x", False),
    ("redis_single", False),
    ("", False),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("spec_code", "single"), SPEC_CODES)
def test_it_finds_single_node_instances_as_the_property_does(spec_code, single):
    instance = make_instance(spec_code=spec_code)

    assert instance.is_single_node is single
    assert DcsInstance.objects.filter(single_node_q(), pk=instance.pk).exists() is single


@pytest.mark.django_db
@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="singleSINGLE._x4", max_size=24))
def test_it_agrees_with_the_property_on_any_spec_code(spec_code):
    instance = make_instance(spec_code=spec_code)
    try:
        assert DcsInstance.objects.filter(single_node_q(), pk=instance.pk).exists() is instance.is_single_node
    finally:
        instance.delete()


# --- Success rate --------------------------------------------------------------


@pytest.mark.parametrize(
    ("succeeded", "failed", "rate"),
    [(0, 0, None), (None, None, None), (3, 0, 100.0), (0, 2, 0.0), (2, 1, 200 / 3)],
)
def test_it_computes_the_success_rate_without_dividing_by_zero(succeeded, failed, rate):
    assert success_rate(succeeded, failed) == rate


# --- Status counts -------------------------------------------------------------


@pytest.mark.django_db
def test_it_counts_backups_by_status_in_the_window():
    instance = make_instance()
    for status in ("succeed", "succeed", "failed", "backuping", "brand-new"):
        make_record(instance, status=status, created_at=NOW - HOUR)
    make_record(instance, status="failed", created_at=NOW - 2 * DAY)  # before the window
    make_record(instance, status="succeed", created_at=NOW - 2 * HOUR, gone_at=NOW)  # gone still counts

    counts = backup_status_counts(since=NOW - DAY)

    assert counts.total == 6
    assert counts.by_status["succeed"] == 3
    assert counts.by_status["failed"] == 1
    assert counts.by_status["backuping"] == 1
    assert counts.by_status["waiting"] == 0
    assert counts.other == 1
    assert counts.finished == 4
    assert counts.success_rate == 75.0


@pytest.mark.django_db
def test_it_has_no_success_rate_when_nothing_finished():
    make_record(status="waiting", created_at=NOW - HOUR)

    counts = backup_status_counts(since=NOW - DAY)

    assert counts.total == 1
    assert counts.success_rate is None


# --- Running backups -----------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_running_backups_longest_running_first():
    instance = make_instance()
    newer = make_record(instance, status="waiting", progress=None, created_at=NOW - HOUR)
    older = make_record(instance, status="backuping", progress=40, created_at=NOW - 2 * HOUR)
    make_record(instance, status="succeed", created_at=NOW - HOUR)
    make_record(instance, status="backuping", created_at=NOW - HOUR, gone_at=NOW)  # frozen: not running
    make_record(make_instance(gone_at=NOW), status="backuping", created_at=NOW - HOUR)

    assert running_backups() == [older, newer]


# --- At risk -------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_an_instance_whose_last_success_is_exactly_at_the_threshold():
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - RPO)

    assert fleet_risk(now=NOW).at_risk == []
    assert stats_of(instance).at_risk is False


@pytest.mark.django_db
def test_it_puts_an_instance_at_risk_a_second_past_the_threshold():
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - RPO - timedelta(seconds=1))

    assert fleet_risk(now=NOW).at_risk == [instance]
    assert stats_of(instance).at_risk is True


@pytest.mark.django_db
def test_it_follows_the_at_risk_setting(settings):
    settings.DASHBOARD_RPO_HOURS = 2
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - 3 * HOUR)

    assert fleet_risk(now=NOW).at_risk == [instance]


@pytest.mark.django_db
def test_it_counts_only_successes_as_backups_that_protect():
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - 3 * DAY)
    make_record(instance, status="failed", created_at=NOW - HOUR)
    make_record(instance, status="backuping", created_at=NOW - HOUR)

    assert fleet_risk(now=NOW).at_risk == [instance]


@pytest.mark.django_db
def test_it_lists_instances_at_risk_worst_first():
    recent_ish = make_instance(name="b-two-days")
    make_record(recent_ish, status="succeed", created_at=NOW - 2 * DAY)
    oldest = make_instance(name="c-five-days")
    make_record(oldest, status="succeed", created_at=NOW - 5 * DAY)
    never = make_instance(name="z-never")
    fine = make_instance(name="a-fine")
    make_record(fine, status="succeed", created_at=NOW - HOUR)

    risk = fleet_risk(now=NOW)

    assert risk.at_risk == [never, oldest, recent_ish]
    assert risk.at_risk[0].last_success_at is None
    assert risk.threshold == RPO


@pytest.mark.django_db
def test_it_lists_single_node_instances_apart_and_never_at_risk():
    single = make_instance(spec_code="redis.single.xu1.tiny.128")
    old_single = make_instance(spec_code="dcs.memcached.single_node")
    make_record(old_single, status="succeed", created_at=NOW - 9 * DAY)

    risk = fleet_risk(now=NOW)

    assert risk.at_risk == []
    assert {i.pk for i in risk.single_node} == {single.pk, old_single.pk}
    assert stats_of(single).at_risk is False
    assert stats_of(single).single_node is True


@pytest.mark.django_db
def test_it_sends_only_the_first_single_node_instances_asked_for_and_counts_them_all():
    names = ["delta", "alpha", "echo", "charlie", "bravo"]
    for name in names:
        make_instance(name=name, spec_code="redis.single.xu1.tiny.128")
    at_risk = make_instance(name="aardvark")

    risk = fleet_risk(now=NOW, single_limit=2)

    assert [i.name for i in risk.single_node] == ["alpha", "bravo"]
    assert risk.single_node_total == 5
    assert risk.at_risk == [at_risk], "the at-risk list is not cut"
    everything = fleet_risk(now=NOW)
    assert [i.name for i in everything.single_node] == sorted(names)
    assert everything.single_node_total == 5


@pytest.mark.django_db
def test_it_leaves_gone_instances_out_of_the_risk():
    gone = make_instance(gone_at=NOW - DAY)
    make_instance(spec_code="redis.single.x", gone_at=NOW - DAY)

    risk = fleet_risk(now=NOW)

    assert risk.at_risk == [] and risk.single_node == []
    assert stats_of(gone).at_risk is False


@pytest.mark.django_db
def test_it_counts_a_success_the_api_no_longer_lists():
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - HOUR, gone_at=NOW)

    assert fleet_risk(now=NOW).at_risk == []


# --- The fleet table's facts ---------------------------------------------------


@pytest.mark.django_db
def test_it_annotates_every_fact_of_the_fleet_table():
    instance = make_instance()
    make_record(instance, status="succeed", size=100, created_at=NOW - 40 * DAY)  # out of 30 days
    make_record(instance, status="succeed", size=1000, created_at=NOW - 2 * DAY)
    make_record(instance, status="succeed", size=5000, created_at=NOW - 3 * DAY, gone_at=NOW)
    make_record(instance, status="failed", size=None, created_at=NOW - DAY)
    make_record(instance, status="expired", size=7, created_at=NOW - 5 * DAY)
    newest = make_record(instance, status="backuping", size=None, created_at=NOW - HOUR)

    row = stats_of(instance)

    assert row.last_backup_at == newest.created_at
    assert row.last_backup_status == "backuping"
    assert row.last_success_at == NOW - 2 * DAY
    assert row.backups_30d == 5
    assert row.succeeded_30d == 2
    assert row.failed_30d == 1
    assert float(row.success_rate_30d) == pytest.approx(66.7)
    assert row.backed_up_size == 1100  # present succeeded records only
    assert row.at_risk is True


@pytest.mark.django_db
def test_it_gives_zeros_and_nulls_for_an_instance_never_backed_up():
    row = stats_of(make_instance())

    assert row.last_backup_at is None
    assert row.last_backup_status == ""
    assert row.last_success_at is None
    assert (row.backups_30d, row.succeeded_30d, row.failed_30d, row.backed_up_size) == (0, 0, 0, 0)
    assert row.success_rate_30d is None


@pytest.mark.django_db
def test_it_picks_the_listed_instance_when_two_projects_share_an_id():
    make_instance(instance_id="shared", gone_at=NOW - DAY)
    listed = make_instance(instance_id="shared")

    assert instance_for_page("shared", now=NOW, window_start=NOW - 30 * DAY) == listed
    assert instance_for_page("nope", now=NOW, window_start=NOW - 30 * DAY) is None


@pytest.mark.django_db
def test_it_finds_the_last_success_before_the_window():
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - 40 * DAY)
    make_record(instance, status="succeed", created_at=NOW - 35 * DAY)
    make_record(instance, status="failed", created_at=NOW - 32 * DAY)

    page = instance_for_page(instance.instance_id, now=NOW, window_start=NOW - 30 * DAY)

    assert page.success_before_window_at == NOW - 35 * DAY


@pytest.mark.django_db
def test_it_reads_the_backups_of_the_window_oldest_first():
    instance = make_instance()
    make_record(instance, created_at=NOW - 40 * DAY)
    second = make_record(instance, backup_name="second", created_at=NOW - DAY, size=None, status="failed")
    first = make_record(instance, backup_name="first", created_at=NOW - 2 * DAY)
    make_record(make_instance(), created_at=NOW - DAY)  # another instance

    points = backups_in_window(instance, start=NOW - 30 * DAY, end=NOW)

    assert [(p.name, p.backup_id, p.status, p.size) for p in points] == [
        ("first", first.backup_id, "succeed", first.size),
        ("second", second.backup_id, "failed", None),
    ]


# --- Freshness -----------------------------------------------------------------


@pytest.mark.django_db
def test_it_says_never_when_no_fleet_sync_finished():
    make_sync_run(scope="instance abc", started_at=NOW - HOUR)
    make_sync_run(started_at=NOW - HOUR, finished_at=None, outcome="running")

    freshness = sync_freshness(now=NOW)

    assert freshness.state == "never"
    assert freshness.is_warning
    assert freshness.last_run is None


@pytest.mark.django_db
def test_it_says_fresh_after_a_recent_successful_fleet_sync():
    run = make_sync_run(started_at=NOW - 10 * timedelta(minutes=1))

    freshness = sync_freshness(now=NOW)

    assert freshness.state == "fresh"
    assert not freshness.is_warning
    assert freshness.last_run == run
    assert freshness.last_success_at == run.finished_at


@pytest.mark.django_db
def test_it_says_stale_when_the_last_success_is_older_than_the_setting(settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    make_sync_run(started_at=NOW - timedelta(minutes=31), finished_at=NOW - timedelta(minutes=30, seconds=1))

    assert sync_freshness(now=NOW).state == "stale"


@pytest.mark.django_db
def test_it_is_fresh_exactly_at_the_stale_edge(settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    make_sync_run(started_at=NOW - timedelta(minutes=31), finished_at=NOW - timedelta(minutes=30))

    assert sync_freshness(now=NOW).state == "fresh"


@pytest.mark.django_db
def test_it_reports_a_failed_last_sync_with_its_errors():
    ok = make_sync_run(started_at=NOW - 3 * HOUR)
    make_sync_run(
        started_at=NOW - HOUR,
        outcome="failed",
        errors=[
            {
                "scope": "project cn-north-4/abc",
                "error": "DcsAuthError",
                "message": "APIG.0301 bad signature",
            },
            {"scope": "run", "message": "3 more errors not kept"},
        ],
    )
    make_sync_run(started_at=NOW - 30 * timedelta(seconds=1), finished_at=None, outcome="running")

    freshness = sync_freshness(now=NOW)

    assert freshness.state == "failed"
    assert freshness.last_success_at == ok.finished_at
    assert freshness.errors == [
        "project cn-north-4/abc: APIG.0301 bad signature",
        "run: 3 more errors not kept",
    ]
    assert freshness.running_since == NOW - 30 * timedelta(seconds=1)


@pytest.mark.django_db
def test_it_reports_a_partial_last_sync():
    make_sync_run(started_at=NOW - HOUR, outcome="partial", errors=["odd entry"])

    freshness = sync_freshness(now=NOW)

    assert freshness.state == "partial"
    assert freshness.last_success_at is None
    assert freshness.errors == ["odd entry"]


@pytest.mark.django_db
def test_it_quotes_the_first_errors_and_counts_the_rest():
    make_sync_run(started_at=NOW - HOUR, outcome="failed", errors=[f"error {n}" for n in range(5)])

    freshness = sync_freshness(now=NOW)

    assert freshness.errors == ["error 0", "error 1", "error 2"]
    assert freshness.more_errors == 2


@pytest.mark.django_db
def test_it_leaves_out_runs_refused_for_the_lease():
    make_sync_run(started_at=NOW - HOUR, outcome="failed")
    make_sync_run(started_at=NOW - timedelta(minutes=1), outcome="skipped")

    assert sync_freshness(now=NOW).state == "failed"


@pytest.mark.django_db
def test_it_survives_errors_that_are_not_a_list():
    make_sync_run(started_at=NOW - HOUR, outcome="failed", errors={"oops": 1})

    assert sync_freshness(now=NOW).errors == []


@pytest.mark.django_db
def test_it_ignores_syncs_of_part_of_the_fleet():
    make_sync_run(started_at=NOW - 2 * HOUR)
    make_sync_run(scope="active", started_at=NOW - timedelta(minutes=1), outcome="failed")

    freshness = sync_freshness(now=NOW)

    assert freshness.state == "stale"
    assert freshness.last_run.scope == "fleet"


# --- Gaps ----------------------------------------------------------------------

START = T0
END = T0 + 10 * DAY


def test_it_finds_no_gap_in_regular_successes():
    times = [START + k * 12 * HOUR for k in range(21)]

    assert find_gaps(times, start=START, end=END, threshold=24 * HOUR) == []


def test_it_finds_the_gap_between_two_successes():
    times = [START + k * DAY for k in range(11) if k not in (4, 5)]

    gaps = find_gaps(reversed(times), start=START, end=END, threshold=24 * HOUR)

    assert gaps == [Gap(START + 3 * DAY, START + 6 * DAY)]
    assert gaps[0].length == 3 * DAY


def test_it_counts_exactly_the_threshold_as_in_time():
    times = [START, START + DAY, START + 2 * DAY + timedelta(seconds=1)]

    gaps = find_gaps(times, start=START, end=START + 2 * DAY + timedelta(seconds=1), threshold=DAY)

    assert gaps == [Gap(START + DAY, START + 2 * DAY + timedelta(seconds=1))]


def test_it_finds_one_open_gap_without_any_success():
    gaps = find_gaps([], start=START, end=END, threshold=24 * HOUR)

    assert gaps == [Gap(START, END, open_ended=True)]


def test_it_finds_gaps_at_both_ends_of_the_window():
    gaps = find_gaps([START + 3 * DAY, START + 3 * DAY + HOUR], start=START, end=END, threshold=24 * HOUR)

    assert gaps == [Gap(START, START + 3 * DAY), Gap(START + 3 * DAY + HOUR, END, open_ended=True)]
    assert [g.open_ended for g in gaps] == [False, True]


def test_it_starts_the_first_gap_at_the_last_success_before_the_window():
    gaps = find_gaps(
        [START + 10 * HOUR],
        start=START,
        end=START + 20 * HOUR,
        threshold=24 * HOUR,
        previous=START - 20 * HOUR,
    )

    assert gaps == [Gap(START - 20 * HOUR, START + 10 * HOUR)]


def test_it_sees_no_gap_when_the_success_before_the_window_was_recent():
    gaps = find_gaps(
        [START + 10 * HOUR],
        start=START,
        end=START + 20 * HOUR,
        threshold=24 * HOUR,
        previous=START - 2 * HOUR,
    )

    assert gaps == []


def test_it_ignores_successes_outside_the_window_and_an_empty_window():
    assert find_gaps([START - DAY, END + DAY], start=START, end=START + HOUR, threshold=DAY) == []
    assert find_gaps([], start=END, end=START, threshold=DAY) == []
