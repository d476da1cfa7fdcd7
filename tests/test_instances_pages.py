import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backups.filters.instances import DcsInstanceFilterSet
from backups.models import DcsInstance, RestoreRecord
from backups.notes import note_create
from backups.selectors import instances_with_stats
from tests.factories import make_instance, make_record

LIST_URL = "/instances/"
# Pinned. The list: session, user, the filter's choices (regions, engines,
# statuses in one query), the count, one page of annotated rows. The detail
# page: session, user, the instance with its last success, its backup count
# and whether it has notes, the chart's backups, the table's page; its notes
# and its restores only when it has some (one query each).
LIST_QUERIES = 5
DETAIL_QUERIES = 5
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def fresh_counts():
    # The list page caches its unfiltered count for a minute; every test
    # starts without one.
    cache.clear()
    yield
    cache.clear()


def detail_url(instance, **params) -> str:
    url = reverse("backups:instance-detail", args=[instance.instance_id])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def names_in(html: str) -> list[str]:
    body = html.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'class="instance__name" href="[^"]*">([^<]*)</a>', body)


def cells_of(html: str, name: str) -> list[str]:
    body = html.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    for row in re.findall(r"<tr\b.*?</tr>", body, flags=re.S):
        if f">{name}</a>" in row:
            return [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
    raise AssertionError(f"no row for {name}")


def queries_of(client, url: str, **kwargs) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url, **kwargs)
    assert response.status_code == 200
    return len(context.captured_queries)


# --- URLs ----------------------------------------------------------------------------


def test_it_names_the_instance_urls():
    assert reverse("backups:instance-list") == "/instances/"
    assert reverse("backups:instance-detail", args=["abc"]) == "/instances/abc/"


@pytest.mark.parametrize(
    ("instance_id", "url"),
    [
        ("dcs-a1_B2", "/instances/dcs-a1_B2/"),  # plain: put into the URL reversed once
        ("with space", "/instances/with%20space/"),  # quoted by reverse()
        ("a/b", ""),  # no URL can carry it
        ("", ""),
    ],
)
def test_an_instance_url_is_what_reverse_gives(instance_id, url):
    from backups.models import DcsInstance
    from backups.tables.instances import instance_url

    assert instance_url(DcsInstance(instance_id=instance_id)) == url


def test_an_instance_url_follows_the_script_prefix():
    from django.urls import get_script_prefix, set_script_prefix

    from backups.models import DcsInstance
    from backups.tables.instances import instance_url

    before = get_script_prefix()
    set_script_prefix("/dashboard/")
    try:
        assert instance_url(DcsInstance(instance_id="abc")) == "/dashboard/instances/abc/"
    finally:
        set_script_prefix(before)
    assert instance_url(DcsInstance(instance_id="abc")) == "/instances/abc/"


# --- The list --------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_every_listed_instance_with_its_backup_health(admin_client):
    now = timezone.now()
    instance = make_instance(
        name="orders-cache", engine="Redis", engine_version="6.0", region="ap-southeast-1"
    )
    make_record(instance, status="succeed", size=3 * 1024**3, created_at=now - 3 * HOUR)
    make_record(instance, status="succeed", size=1024**3, created_at=now - 3 * HOUR - DAY, gone_at=now)
    make_record(instance, status="failed", size=None, created_at=now - HOUR)

    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    assert 'aria-current="page">Instances</a>' in response.text
    cells = cells_of(response.text, "orders-cache")
    assert instance.instance_id in cells[0]
    assert cells[1] == 'Redis <span class="engine__version">6.0</span>'
    assert cells[2] == "ap-southeast-1"
    assert '<td class="cell--nowrap">ap-southeast-1</td>' in response.text  # not broken at its hyphens
    assert cells[3] == '<span class="badge badge--gray">RUNNING</span>'
    assert cells[4].startswith('<span class="badge badge--red">Failed</span> <time class="age"')
    assert cells[4].endswith(">1 h ago</time>")
    assert cells[5].startswith('<span class="badge badge--green"><time class="age"')
    assert ">3 h ago</time>" in cells[5]
    assert cells[6] == "3"
    assert cells[7] == '<span title="2 succeeded, 1 failed">66.7 %</span>'
    assert ">3.0 GiB</span>" in cells[8]  # the gone backup's size is not kept


@pytest.mark.django_db
def test_it_colours_the_last_success_by_the_threshold(admin_client):
    now = timezone.now()
    late = make_instance(name="late")
    make_record(late, status="succeed", created_at=now - 27 * HOUR)  # past the default RPO, 26 h
    never = make_instance(name="never")
    single = make_instance(name="single", spec_code="redis.single.xu1.tiny.128")

    html = admin_client.get(LIST_URL).text

    assert cells_of(html, "late")[5].startswith('<span class="badge badge--red"><time class="age"')
    assert '<span class="visually-hidden">(at risk)</span>' in cells_of(html, "late")[5]
    assert cells_of(html, "never")[5] == '<span class="badge badge--gray">never</span>'
    assert "not backed up by design" in cells_of(html, "single")[5]
    assert never and single


@pytest.mark.django_db
def test_it_says_there_is_no_rate_without_finished_backups(admin_client):
    instance = make_instance(name="quiet")
    make_record(instance, status="backuping", created_at=timezone.now() - HOUR)

    assert cells_of(admin_client.get(LIST_URL).text, "quiet")[7] == "—"


@pytest.mark.django_db
def test_it_escapes_api_text_in_the_list(admin_client):
    make_instance(name="<script>x</script>", status="<b>odd</b>")

    html = admin_client.get(LIST_URL).text

    assert "<script>x</script>" not in html
    assert "&lt;b&gt;odd&lt;/b&gt;" in html


# --- Filters -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_hides_gone_instances_unless_asked(admin_client):
    make_instance(name="listed")
    make_instance(name="gone", gone_at=timezone.now())

    assert names_in(admin_client.get(LIST_URL).text) == ["listed"]
    assert names_in(admin_client.get(LIST_URL, {"gone": "no"}).text) == ["listed"]
    assert names_in(admin_client.get(LIST_URL, {"gone": "yes"}).text) == ["gone"]
    assert names_in(admin_client.get(LIST_URL, {"gone": "all"}).text) == ["gone", "listed"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"q": "ORDERS"}, ["orders-cache"]),
        ({"q": "AAAA-1"}, ["orders-cache", "sessions"]),
        ({"region": "ap-southeast-1"}, ["sessions"]),
        ({"engine": "Memcached"}, ["tiny"]),
        ({"status": "FROZEN"}, ["orders-cache"]),
        ({"at_risk": "yes"}, ["sessions"]),
        ({"at_risk": "no"}, ["orders-cache", "tiny"]),
        ({"region": "cn-north-4", "at_risk": "no"}, ["orders-cache", "tiny"]),
    ],
)
def test_it_filters_the_fleet(admin_client, params, names):
    now = timezone.now()
    orders = make_instance(name="orders-cache", instance_id="0c9d-aaaa-1-orders", status="FROZEN")
    make_record(orders, status="succeed", created_at=now - HOUR)
    make_instance(name="sessions", instance_id="77e0-aaaa-1-sessions", region="ap-southeast-1")
    make_instance(
        name="tiny", instance_id="5b1f-bbbb-1-tiny", engine="Memcached", spec_code="dcs.memcached.single_node"
    )

    response = admin_client.get(LIST_URL, params)

    assert response.status_code == 200
    assert names_in(response.text) == names


@pytest.mark.django_db
def test_it_offers_the_regions_engines_and_statuses_it_has():
    make_instance(region="cn-north-4", engine="Redis", status="RUNNING")
    make_instance(region="eu-west-101", engine="Memcached", status="")

    form = DcsInstanceFilterSet({}, queryset=DcsInstance.objects.none()).form

    assert [value for value, _ in form.fields["region"].choices] == ["", "cn-north-4", "eu-west-101"]
    assert [value for value, _ in form.fields["engine"].choices] == ["", "Memcached", "Redis"]
    assert [value for value, _ in form.fields["status"].choices] == ["", "RUNNING"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"at_risk": "maybe"}, "At risk (at_risk) was ignored"),
        ({"region": "<script>mars</script>"}, "Region (region) was ignored"),
        ({"gone": "sometimes"}, "Gone (gone) was ignored"),
        ({"q": "x" * 201}, "Search (q) was ignored"),
        ({"sort": "size"}, "is not a column this table sorts by"),
        ({"page": "abc"}, "is not a page number"),
        ({"per_page": "7"}, "rows per page is not offered"),
        ({"_export": "xls"}, "is not an export format"),
    ],
)
def test_it_explains_bad_parameters_instead_of_failing(admin_client, params, message):
    make_instance(name="listed")
    make_instance(name="gone", gone_at=timezone.now())

    response = admin_client.get(LIST_URL, params)

    assert response.status_code == 200
    assert message in response.text
    assert "<script>mars" not in response.text
    # A bad gone value falls back to the default: listed instances only.
    assert names_in(response.text) == ["listed"]


# --- Sorting ----------------------------------------------------------------------------------


@pytest.fixture
def three_instances():
    now = timezone.now()
    recent = make_instance(name="b-recent", region="eu-west-101", engine="Memcached", status="RUNNING")
    make_record(recent, status="succeed", created_at=now - HOUR)
    old = make_instance(name="c-old", region="ap-southeast-1", engine="Redis", status="FROZEN")
    make_record(old, status="succeed", created_at=now - 5 * DAY)
    make_record(old, status="failed", created_at=now - 2 * HOUR)
    make_instance(name="a-never", region="cn-north-4", engine="Redis", status="CREATING")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sort", "names"),
    [
        ("name", ["a-never", "b-recent", "c-old"]),
        ("-name", ["c-old", "b-recent", "a-never"]),
        ("region", ["c-old", "a-never", "b-recent"]),
        ("engine", ["b-recent", "a-never", "c-old"]),
        ("status", ["a-never", "c-old", "b-recent"]),
        # "Never" is the oldest: first going up, last going down.
        ("last_success_at", ["a-never", "c-old", "b-recent"]),
        ("-last_success_at", ["b-recent", "c-old", "a-never"]),
        ("last_backup_at", ["a-never", "c-old", "b-recent"]),
        ("-last_backup_at", ["b-recent", "c-old", "a-never"]),
    ],
)
def test_it_sorts_the_fleet(admin_client, three_instances, sort, names):
    assert names_in(admin_client.get(LIST_URL, {"sort": sort}).text) == names


@pytest.mark.django_db
def test_it_links_sortable_headers(admin_client, three_instances):
    html = admin_client.get(LIST_URL, {"sort": "-last_success_at"}).text

    assert 'aria-sort="descending"' in html
    for column in ("name", "engine", "region", "status", "last_backup_at"):
        assert f'href="?sort={column}"' in html


# --- Exports ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_exports_the_fleet_as_csv(admin_client):
    now = timezone.now()
    instance = make_instance(name="orders-cache", engine_version="6.0")
    make_record(instance, status="succeed", size=2048, created_at=now - 2 * DAY)
    make_record(instance, status="failed", size=None, created_at=now - HOUR)
    make_instance(name="gone", gone_at=now)

    response = admin_client.get(LIST_URL, {"_export": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["Instance"] == f"orders-cache ({instance.instance_id})"
    assert row["Instance id"] == instance.instance_id
    assert row["Engine"] == "Redis"
    assert row["Engine version"] == "6.0"
    assert row["Last backup"].endswith("Z")
    assert row["Last backup status"] == "failed"
    assert row["Last success"].endswith("Z")
    assert row["Backups (30 d)"] == "2"
    assert row["Success rate (30 d)"] == "50.0"
    assert row["Backed-up size"] == "2048"


@pytest.mark.django_db
def test_it_exports_the_filtered_fleet_as_json(admin_client):
    make_instance(name="never")
    fine = make_instance(name="fine")
    make_record(fine, status="succeed", size=10, created_at=timezone.now() - HOUR)

    response = admin_client.get(LIST_URL, {"_export": "json", "at_risk": "yes"})

    data = json.loads(b"".join(response.streaming_content))
    assert [item["name"] for item in data] == [f"never ({DcsInstance.objects.get(name='never').instance_id})"]
    assert data[0]["at_risk"] is True
    assert data[0]["last_success_at"] is None
    assert data[0]["success_rate_30d"] is None
    assert data[0]["backed_up_size"] == 0


# --- Queries -----------------------------------------------------------------------------------


def make_fleet(size: int) -> None:
    now = timezone.now()
    for n in range(size):
        instance = make_instance(region=f"region-{n % 3}")
        # Some within the threshold, some at risk, at every size.
        make_record(instance, status="succeed", created_at=now - HOUR * (n + 1) * 10)
        make_record(instance, status="failed", created_at=now - HOUR)
        make_instance(spec_code="redis.single.x", gone_at=now if n % 2 else None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params", [{}, {"at_risk": "yes", "sort": "-last_success_at"}, {"q": "dcs", "gone": "all"}]
)
def test_it_lists_the_fleet_in_a_constant_number_of_queries(admin_client, params):
    make_fleet(3)
    cache.clear()
    small = queries_of(admin_client, LIST_URL, data=params)
    make_fleet(30)
    cache.clear()
    large = queries_of(admin_client, LIST_URL, data=params)

    assert small == large <= LIST_QUERIES


# --- The detail page ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_the_instance_with_its_last_success(admin_client):
    instance = make_instance(name="orders-cache")
    make_record(instance, status="succeed", created_at=timezone.now() - 3 * HOUR)

    response = admin_client.get(detail_url(instance))

    assert response.status_code == 200
    assert "Last successful backup" in response.text
    assert ">3 h ago</time>" in response.text
    assert "At risk" not in response.text
    assert 'href="/instances/">Instances</a>' in response.text


@pytest.mark.django_db
def test_it_says_when_the_instance_is_at_risk(admin_client):
    instance = make_instance()
    make_record(instance, status="succeed", created_at=timezone.now() - 3 * DAY)

    html = admin_client.get(detail_url(instance)).text

    assert "At risk: the last successful backup was" in html
    assert "more than 26 hours ago." in html  # the default RPO
    assert '<span class="badge badge--red">at risk</span>' in html


@pytest.mark.django_db
def test_it_says_when_the_instance_was_never_backed_up(admin_client):
    html = admin_client.get(detail_url(make_instance())).text

    assert "At risk: this instance has never had a successful backup." in html


@pytest.mark.django_db
def test_it_answers_404_for_an_unknown_instance(admin_client):
    assert admin_client.get("/instances/nope/").status_code == 404


def chart_of(html: str) -> ET.Element:
    svg = re.search(
        r"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\".*?</svg>", html, flags=re.S
    ).group(0)
    return ET.fromstring(svg)  # noqa: S314 (our own markup)


def chart_marks(root: ET.Element) -> list[ET.Element]:
    return [el for el in root.iter() if "chart__mark" in el.get("class", "").split()]


@pytest.mark.django_db
def test_it_charts_the_backups_of_the_last_30_days(admin_client):
    now = timezone.now()
    instance = make_instance()
    make_record(instance, status="succeed", created_at=now - 2 * DAY)
    make_record(instance, status="failed", size=None, created_at=now - DAY)
    make_record(instance, status="succeed", created_at=now - 40 * DAY)

    html = admin_client.get(detail_url(instance)).text

    root = chart_of(html)
    assert root.get("role") == "img"
    assert len(chart_marks(root)) == 2
    assert "Backups in the last 30 days" in html
    assert 'href="?window=30d" aria-current="true"' in html
    assert "Succeeded (1)" in html and "Failed (1)" in html


@pytest.mark.django_db
@pytest.mark.parametrize(("window", "marks"), [("7d", 1), ("30d", 2), ("90d", 3)])
def test_it_charts_the_window_asked_for(admin_client, window, marks):
    now = timezone.now()
    instance = make_instance()
    for age in (DAY, 20 * DAY, 60 * DAY, 200 * DAY):
        make_record(instance, status="succeed", created_at=now - age)

    html = admin_client.get(detail_url(instance, window=window)).text

    assert len(chart_marks(chart_of(html))) == marks


@pytest.mark.django_db
@pytest.mark.parametrize("window", ["24h", "1y", "<b>"])
def test_it_explains_a_chart_window_it_does_not_offer(admin_client, window):
    instance = make_instance()

    response = admin_client.get(detail_url(instance), {"window": window})

    assert response.status_code == 200
    assert "is not a period this page offers (7d, 30d, 90d): showing 30d." in response.text
    assert "<b>" not in response.text.split("<main", 1)[1]


@pytest.mark.django_db
def test_it_lists_and_shades_the_gaps(admin_client):
    now = timezone.now()
    instance = make_instance(created_at=now - 100 * DAY)
    for day in range(0, 31):
        if day not in (10, 11, 12):
            make_record(instance, status="succeed", created_at=now - day * DAY - HOUR)

    html = admin_client.get(detail_url(instance)).text

    gaps = html.split('id="gaps-caption"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>.*?</tr>", gaps.split("<tbody>", 1)[1], flags=re.S)
    assert len(rows) == 1
    assert '<td class="cell--num">4 d</td>' in rows[0]
    bands = [el for el in chart_of(html).iter() if el.get("class") == "chart__gap"]
    assert len(bands) == 1


@pytest.mark.django_db
def test_it_shows_an_ongoing_gap_of_an_instance_never_backed_up(admin_client):
    instance = make_instance(created_at=timezone.now() - 100 * DAY)

    html = admin_client.get(detail_url(instance)).text

    assert "now (no success since)" in html
    assert '<td class="cell--num">30 d</td>' in html


@pytest.mark.django_db
def test_it_starts_gaps_when_the_instance_was_created(admin_client):
    instance = make_instance(created_at=timezone.now() - 10 * HOUR)

    html = admin_client.get(detail_url(instance)).text

    assert "No period of more than 26 hours without a successful backup in this window." in html


@pytest.mark.django_db
def test_it_shows_no_gaps_for_a_single_node_instance(admin_client):
    instance = make_instance(spec_code="redis.single.xu1.tiny.128", created_at=timezone.now() - 100 * DAY)

    html = admin_client.get(detail_url(instance)).text

    assert "Single-node instances cannot be backed up: no gaps to show." in html
    assert "At risk" not in html
    assert not [el for el in chart_of(html).iter() if el.get("class") == "chart__gap"]


@pytest.mark.django_db
def test_it_escapes_backup_names_in_the_chart(admin_client):
    instance = make_instance(name="<i>inst</i>")
    make_record(instance, backup_name="<script>alert(1)</script>", created_at=timezone.now() - HOUR)

    html = admin_client.get(detail_url(instance)).text

    assert "<script>alert(1)</script>" not in html
    assert "<i>inst</i>" not in html
    titles = [el.find("{http://www.w3.org/2000/svg}title").text for el in chart_marks(chart_of(html))]
    assert titles[0].startswith("<script>alert(1)</script> — ")


@pytest.mark.django_db
def test_it_keeps_the_backup_table_paged_and_filtered_to_the_instance(admin_client):
    instance = make_instance()
    for n in range(30):
        make_record(instance, backup_name=f"mine-{n}", created_at=timezone.now() - n * HOUR)
    make_record(make_instance(), backup_name="not-mine")

    html = admin_client.get(detail_url(instance, page=2)).text

    assert "26\u201330 of 30" in html
    assert "not-mine" not in html


@pytest.mark.django_db
def test_it_answers_htmx_with_the_backup_table_only(admin_client):
    instance = make_instance()
    make_record(instance, status="backuping", created_at=timezone.now())

    response = admin_client.get(detail_url(instance), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="backup-table"')
    assert "<svg" not in response.text


def make_history(instance, size: int) -> None:
    now = timezone.now()
    for n in range(size):
        make_record(instance, status="failed" if n % 4 == 0 else "succeed", created_at=now - n * 20 * HOUR)


@pytest.mark.django_db
def test_it_shows_an_instance_in_a_constant_number_of_queries(admin_client):
    instance = make_instance()
    make_history(instance, 3)
    small = queries_of(admin_client, detail_url(instance))
    make_history(instance, 60)
    large = queries_of(admin_client, detail_url(instance, window="90d"))

    assert small == large <= DETAIL_QUERIES


@pytest.mark.django_db
def test_it_asks_for_notes_and_restores_only_of_an_instance_that_has_some(admin_client, django_user_model):
    instance = make_instance()
    make_history(instance, 30)
    without = queries_of(admin_client, detail_url(instance))
    author = django_user_model.objects.create(username="dba")
    note_create(author=author, instance=instance, text="Disk full during the backup.", incident="INC-77")
    now = timezone.now()
    RestoreRecord.objects.create(
        instance=instance,
        restore_id="r1",
        restore_name="restore_1",
        status="succeed",
        created_at=now,
        first_seen=now,
        last_seen=now,
    )
    with_both = queries_of(admin_client, detail_url(instance))
    html = admin_client.get(detail_url(instance)).text

    assert without == DETAIL_QUERIES
    assert with_both == DETAIL_QUERIES + 2
    assert "Disk full during the backup." in html and "INC-77" in html
    assert "restore_1" in html
    # The count came with the instance: every record, not a page of them.
    assert "1\u201325 of 30</span>" in html  # an en dash


def test_it_reads_the_fleet_table_from_one_queryset():
    # The table's columns need nothing the annotated queryset does not carry.
    queryset = instances_with_stats(now=timezone.now())
    fields = {field.name for field in queryset.model._meta.fields}

    # The summary columns the triggers keep (backups.summaries).
    for name in ("last_backup_at", "last_backup_status", "last_success_at"):
        assert name in fields
    for name in (
        "backups_30d",
        "succeeded_30d",
        "failed_30d",
        "success_rate_30d",
        "backed_up_size",
        "single_node",
        "at_risk",
    ):
        assert name in queryset.query.annotations


# --- Sync state and "Sync now" -----------------------------------------------------------------


@pytest.mark.django_db
def test_it_says_when_the_backups_were_last_synced(admin_client, settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    now = timezone.now()
    instance = make_instance(backups_checked_at=now - timedelta(minutes=5), backups_synced_at=now - 2 * HOUR)

    html = admin_client.get(detail_url(instance)).text

    assert re.search(
        r"<dt>Backups last synced</dt><dd><time [^>]*>[^<]+</time> \(<time [^>]*>5 min ago</time>\)", html
    )
    assert "<dt>Last complete listing</dt><dd><time" in html
    assert "stale" not in html


@pytest.mark.django_db
def test_it_warns_when_the_backups_were_not_synced_lately(admin_client, settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    instance = make_instance(backups_checked_at=timezone.now() - 2 * HOUR)

    html = admin_client.get(detail_url(instance)).text

    assert '<span class="badge badge--orange">stale</span>' in html
    assert "The backups of this instance were last synced" in html
    assert "more than 30 minutes ago: what this page shows may be out of date." in html


@pytest.mark.django_db
def test_it_warns_when_the_backups_were_never_synced(admin_client, settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    instance = make_instance(first_seen=timezone.now() - 2 * HOUR)

    html = admin_client.get(detail_url(instance)).text

    assert "<dt>Backups last synced</dt><dd>never" in html
    assert "The backups of this instance have never been synced" in html


@pytest.mark.django_db
def test_it_does_not_call_a_gone_instance_stale(admin_client):
    instance = make_instance(backups_checked_at=timezone.now() - 9 * DAY, gone_at=timezone.now() - 8 * DAY)

    assert "stale" not in admin_client.get(detail_url(instance)).text


@pytest.mark.django_db
def test_it_links_the_syncs_of_the_instance(admin_client):
    instance = make_instance()

    html = admin_client.get(detail_url(instance)).text

    assert f'<a href="/sync/?instance={instance.instance_id}">Syncs of this instance</a>' in html


@pytest.mark.django_db
def test_it_offers_a_superuser_to_sync_the_instance(admin_client):
    instance = make_instance()

    html = admin_client.get(detail_url(instance)).text

    assert f'<form class="sync-now" method="post" action="/instances/{instance.instance_id}/sync/">' in html
    assert "Sync this instance now" in html


@pytest.mark.django_db
def test_it_shows_an_instance_to_a_user_who_may_sync_within_the_budget(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("operator", password="not-a-real-password-1")
    user.user_permissions.add(Permission.objects.get(codename="trigger_sync"))
    client.force_login(user)
    instance = make_instance()
    make_history(instance, 3)

    # The permission costs two queries the first time in a minute (views.sync.can_trigger_sync).
    first = queries_of(client, detail_url(instance))
    then = queries_of(client, detail_url(instance))

    assert first == then + 2
    assert then <= DETAIL_QUERIES
    assert "Sync this instance now" in client.get(detail_url(instance)).text
