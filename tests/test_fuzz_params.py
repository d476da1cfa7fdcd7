"""Hypothesis throws random query strings at every page: none may answer 5xx.

Keys come from the parameters the pages know (filters, sort, paging, time
bounds, chart windows, export) plus garbage; values are anything from valid
choices to huge numbers, negative numbers, dates, presets and unicode with
control characters. Repeated keys are drawn too. A bad parameter must give the
page with a message and defaults, never a server error.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backups.choices import BackupFormat, BackupStatus, BackupType
from backups.filters.instances import DcsInstanceFilterSet
from backups.filters.records import BackupRecordFilterSet
from backups.filters.sync import SyncRunFilterSet
from backups.timewindow import PRESETS
from tests.factories import T0, make_instance, make_record, make_sync_run

# The filters come from the filtersets themselves, so a filter added later is
# fuzzed too; the rest are the paging, sorting and page parameters.
KNOWN_KEYS = sorted(
    {
        *BackupRecordFilterSet.base_filters,
        *DcsInstanceFilterSet.base_filters,
        *SyncRunFilterSet.base_filters,
        "page",
        "per_page",
        "sort",
        "_export",
        "window",
        "errors-page",
        "errors-sort",
        "errors-per_page",
        "items-page",
        "items-sort",
        "next",
    }
)
GOOD_VALUES = [
    *BackupStatus.values,
    *BackupType.values,
    *BackupFormat.values,
    *PRESETS,
    "csv",
    "json",
    "xlsx",
    "7d",
    "30d",
    "90d",
    "24h",
    "yes",
    "no",
    "true",
    "created_at",
    "-created_at",
    "size",
    "-size",
    "name",
    "-name",
    "started_at",
    "-instance",
    "cn-north-4",
    "Redis",
    "2025-03-01",
    "2025-03-01T12:00",
    "2025-03-01T12:00:00+08:00",
    "9999-12-31",
    "0001-01-01",
    "2025-02-30",
    "now-7d",
    "0",
    "-1",
    "1",
    "2",
    "250",
    "1000000",
]
# Any text, NUL included: `?q=%00` is a valid URL, and PostgreSQL refuses NUL
# in text (test_every_parameter_takes_a_nul below tries it on every key).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
VALUES = st.one_of(
    st.sampled_from(GOOD_VALUES),
    TEXT,
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
KEYS = st.one_of(st.sampled_from(KNOWN_KEYS), st.sampled_from(KNOWN_KEYS).map(lambda k: k + "_"), TEXT)
PARAMS = st.lists(st.tuples(KEYS, VALUES), max_size=8)

EXAMPLES = 300  # 7 pages: 2,100 cases, well under a minute
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)


@pytest.fixture
def seeded(db):
    """A small fleet: two instances, a handful of records in every status, one sync run."""
    first = make_instance(name="alpha", tags={"env": "prod"})
    second = make_instance(name="beta", region="ap-southeast-1", engine="Memcached")
    statuses = list(BackupStatus.values)
    for n, status in enumerate(statuses * 2):
        make_record(
            first if n % 2 else second,
            status=status,
            created_at=T0 + timedelta(hours=n),
            error_code="dcs.08.0001" if status == "failed" else "",
        )
    run = make_sync_run()
    return {"instance": first, "record": first.backups.first(), "run": run}


def _pages(seeded) -> dict[str, str]:
    return {
        "overview": "/",
        "backups": "/backups/",
        "instances": "/instances/",
        "sync": "/sync/",
        "instance": f"/instances/{seeded['instance'].instance_id}/",
        "backup": f"/backups/{seeded['record'].backup_id}/",
        "sync-run": f"/sync/{seeded['run'].pk}/",
    }


@pytest.mark.parametrize(
    "page", ["overview", "backups", "instances", "sync", "instance", "backup", "sync-run"]
)
def test_it_never_answers_5xx_to_any_query_string(admin_client, seeded, page):
    url = _pages(seeded)[page]

    @FUZZ
    @given(params=PARAMS, htmx=st.booleans())
    def check(params, htmx):
        headers = {"HX-Request": "true"} if htmx else {}
        data: dict[str, list[str]] = {}
        for key, value in params:
            data.setdefault(key, []).append(value)
        response = admin_client.get(url, data, headers=headers)
        assert response.status_code < 500, (url, params)
        if response.streaming:
            # Exports stream: the whole body must be produced without an error.
            b"".join(response.streaming_content)

    check()


# The pages the Hypothesis run above leaves out, with the parameters they read.
MORE_PAGES = {
    "/calendar/": ("days", "at_risk", "region", "project"),
    "/alerts/": ("state", "kind", "instance", "page", "sort"),
    "/audit/": ("action", "user", "username", "page", "sort"),
    "/rpo/": ("page", "sort"),
    "/errors/": ("code",),
    "/incident/": ("start", "end", "as_of", "instance", "incident"),
}


@pytest.mark.parametrize(
    "page", ["overview", "backups", "instances", "sync", "instance", "backup", "sync-run", *MORE_PAGES]
)
@pytest.mark.parametrize("export", [None, "csv", "json"])
def test_every_parameter_takes_a_nul(admin_client, seeded, page, export):
    url = page if page in MORE_PAGES else _pages(seeded)[page]
    for key in [*KNOWN_KEYS, *MORE_PAGES.get(page, ()), "sea\x00rch"]:
        data = {key: ["a\x00b", "\x00"]}
        if export:
            data["_export"] = export
        response = admin_client.get(url, data)
        assert response.status_code < 500, (url, key)
        if response.streaming:
            b"".join(response.streaming_content)
