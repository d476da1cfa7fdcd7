import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backups.models import Alert, WorkerHeartbeat
from tests.factories import make_instance, make_record, make_sync_run

URL = "/"
# Pinned: session, user, the status counts (summary and partial hours in
# one query), the running backups, the at-risk, single-node and sync-stale
# instances, and the newest fleet sync with the machinery's health as
# subqueries. The live partial asks session, user, the running backups, the
# freshness (with health) and the stale instances.
OVERVIEW_QUERIES = 6
LIVE_QUERIES = 5
HOUR = timedelta(hours=1)
# Nothing listens on port 1: a broker that is down.
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def count_of(html: str, status: str) -> int:
    match = re.search(
        r'<a class="card stat stat--\w+" href="/backups/\?status=' + status + r'&amp;created_after=\w+">\s*'
        r'<span class="stat__count">(\d+)</span>',
        html,
    )
    assert match, f"no tile for {status}"
    return int(match.group(1))


def section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</section>", start)]


# --- URLs ------------------------------------------------------------------------


def test_it_names_the_overview():
    assert reverse("backups:overview") == "/"
    assert reverse("backups:home") == "/"


@pytest.mark.django_db
def test_it_shows_the_overview_at_the_root(admin_client):
    response = admin_client.get(URL)

    assert response.status_code == 200
    assert "<h1>Overview</h1>" in response.text
    assert 'href="/static/css/fleet.css"' in response.text
    assert 'aria-current="page">Overview</a>' in response.text


@pytest.mark.django_db
def test_it_asks_for_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert "/login/" in response.url


# --- Counts ----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_counts_backups_of_the_last_24_hours_by_default(admin_client):
    now = timezone.now()
    instance = make_instance()
    make_record(instance, status="succeed", created_at=now - HOUR)
    make_record(instance, status="succeed", created_at=now - 2 * HOUR)
    make_record(instance, status="failed", created_at=now - 3 * HOUR)
    make_record(instance, status="failed", created_at=now - 3 * 24 * HOUR)

    html = admin_client.get(URL).text

    assert count_of(html, "succeed") == 2
    assert count_of(html, "failed") == 1
    assert count_of(html, "waiting") == 0
    assert "Backups created in the last 24 hours" in html


@pytest.mark.django_db
def test_it_links_each_count_to_the_backup_list(admin_client):
    html = admin_client.get(URL + "?window=7d").text

    for status in ("waiting", "backuping", "succeed", "failed", "expired", "deleted"):
        assert f'href="/backups/?status={status}&amp;created_after=7d"' in html
    assert 'href="/backups/?created_after=7d"' in html


@pytest.mark.django_db
@pytest.mark.parametrize(("window", "included"), [("24h", 1), ("7d", 2), ("30d", 3)])
def test_it_counts_over_the_window_asked_for(admin_client, window, included):
    now = timezone.now()
    for age in (HOUR, 3 * 24 * HOUR, 20 * 24 * HOUR, 60 * 24 * HOUR):
        make_record(status="failed", created_at=now - age)

    html = admin_client.get(URL, {"window": window}).text

    assert count_of(html, "failed") == included
    assert f'href="?window={window}" aria-current="true"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("window", ["1y", "<script>", "24", "-7d"])
def test_it_explains_a_window_it_does_not_offer_and_uses_the_default(admin_client, window):
    make_record(status="failed", created_at=timezone.now() - 3 * 24 * HOUR)

    response = admin_client.get(URL, {"window": window})

    assert response.status_code == 200
    assert "is not a period this page offers (24h, 7d, 30d): showing 24h." in response.text
    assert "<script>" not in response.text.split("<main", 1)[1]
    assert count_of(response.text, "failed") == 0
    assert 'href="?window=24h" aria-current="true"' in response.text


@pytest.mark.django_db
def test_it_shows_the_success_rate_with_one_decimal_and_its_counts(admin_client):
    now = timezone.now()
    for status in ("succeed", "succeed", "failed", "waiting"):
        make_record(status=status, created_at=now - HOUR)

    html = admin_client.get(URL).text

    assert '<span class="stat__count">66.7 %</span>' in html
    assert "2 succeeded, 1 failed (3 finished)" in html


@pytest.mark.django_db
def test_it_shows_no_success_rate_when_nothing_finished(admin_client):
    make_record(status="backuping", created_at=timezone.now() - HOUR)

    html = admin_client.get(URL).text

    assert "No backup finished in this period." in html
    assert '<span class="stat__count">—</span>' in html


# --- Running now -----------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_running_backups_with_progress_and_instance_links(admin_client):
    now = timezone.now()
    instance = make_instance(name="orders-cache")
    make_record(instance, backup_name="running-one", status="backuping", progress=42.5, created_at=now - HOUR)
    make_record(instance, backup_name="waiting-one", status="waiting", progress=None, created_at=now)
    make_record(instance, backup_name="frozen", status="backuping", created_at=now, gone_at=now)
    make_record(instance, backup_name="done", status="succeed", created_at=now)

    live = section(admin_client.get(URL).text, "running-title")

    assert '<span class="overview-card__count">2</span>' in live
    assert f'href="/instances/{instance.instance_id}/">orders-cache</a>' in live
    assert 'value="42.50"' in live and "42.5%" in live
    assert "waiting-one" in live
    assert "frozen" not in live and "done" not in live
    assert re.search(r'started <time class="age" datetime="[^"]+" title="[^"]+">1 h ago</time>', live)


@pytest.mark.django_db
def test_it_says_when_nothing_is_running(admin_client):
    assert "No backup is waiting or running." in admin_client.get(URL).text


# --- At risk -----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_instances_at_risk_worst_first_with_their_age(admin_client):
    now = timezone.now()
    old = make_instance(name="old-one")
    make_record(old, status="succeed", created_at=now - 50 * HOUR)
    older = make_instance(name="older-one")
    make_record(older, status="succeed", created_at=now - 80 * HOUR)
    never = make_instance(name="never-one")
    fine = make_instance(name="fine-one")
    make_record(fine, status="succeed", created_at=now - HOUR)

    html = section(admin_client.get(URL).text, "risk-title")

    names = re.findall(r'class="instance__name" href="[^"]+">([^<]+)</a>', html)
    assert names == ["never-one", "older-one", "old-one"]
    assert "never backed up" in html
    assert "3 d ago" in html and "2 d ago" in html
    assert '<span class="overview-card__count overview-card__count--red">3</span>' in html
    assert never.instance_id in html


@pytest.mark.django_db
def test_it_lists_single_node_instances_apart(admin_client):
    make_instance(name="tiny-cache", spec_code="redis.single.xu1.tiny.128")

    html = section(admin_client.get(URL).text, "risk-title")

    assert "Every listed instance that can be backed up has a recent successful backup." in html
    assert "Not backed up by design" in html
    assert "tiny-cache" in html
    assert '<span class="overview-card__count">1</span>' in html


@pytest.mark.django_db
def test_it_caps_the_single_node_list_and_counts_the_rest(admin_client):
    for n in range(27):
        make_instance(name=f"tiny-{n:02d}", spec_code="dcs.memcached.single_node")

    html = section(admin_client.get(URL).text, "risk-title")

    assert "tiny-24" in html and "tiny-25" not in html
    assert "2 more" in html


@pytest.mark.django_db
def test_it_leaves_gone_instances_out(admin_client):
    make_instance(name="gone-one", gone_at=timezone.now())

    html = admin_client.get(URL).text

    assert "gone-one" not in html


@pytest.mark.django_db
def test_it_caps_the_at_risk_list_and_links_to_the_rest(admin_client):
    for n in range(27):
        make_instance(name=f"risky-{n:02d}")

    html = admin_client.get(URL).text

    assert "and 2 more instances at risk" in html
    assert 'href="/instances/?at_risk=yes"' in html


@pytest.mark.django_db
def test_it_escapes_instance_names(admin_client):
    make_instance(name="<script>alert(1)</script>")
    make_instance(name="<b>single</b>", spec_code="redis.single.x")

    html = admin_client.get(URL).text

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>single</b>" not in html


# --- Freshness -----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_warns_when_no_sync_has_finished(admin_client):
    html = section(admin_client.get(URL).text, "freshness-title")

    assert "No fleet sync has finished yet" in html
    assert "alert--warning" in html


def make_heartbeat(*, age: timedelta = timedelta(seconds=5), **fields) -> WorkerHeartbeat:
    seen = timezone.now() - age
    values = {"hostname": "celery@worker-1", "started_at": seen - HOUR, "last_seen": seen}
    values.update(fields)
    return WorkerHeartbeat.objects.create(**values)


@pytest.mark.django_db
def test_it_says_up_to_date_after_a_recent_sync(admin_client):
    make_heartbeat()
    now = timezone.now()
    make_sync_run(started_at=now - 2 * timedelta(minutes=1), finished_at=now - timedelta(minutes=1))

    html = section(admin_client.get(URL).text, "freshness-title")

    assert "Up to date." in html
    assert 'class="alert' not in html, "no warning"
    assert '<span class="badge badge--green">Succeeded</span>' in html


@pytest.mark.django_db
def test_it_warns_when_the_last_success_is_stale(admin_client, settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    now = timezone.now()
    make_sync_run(started_at=now - 2 * HOUR, finished_at=now - HOUR)

    html = section(admin_client.get(URL).text, "freshness-title")

    assert "The last successful fleet sync is more than 30 minutes old" in html
    assert "1 h ago" in html


@pytest.mark.django_db
def test_it_warns_about_a_failed_sync_and_shows_its_errors_escaped(admin_client):
    now = timezone.now()
    make_sync_run(started_at=now - 3 * HOUR, finished_at=now - 3 * HOUR)
    make_sync_run(
        started_at=now - HOUR,
        outcome="failed",
        errors=[{"scope": "project cn-north-4", "message": "<img src=x onerror=alert(1)> APIG.0301"}],
    )

    html = section(admin_client.get(URL).text, "freshness-title")

    assert "The last fleet sync failed" in html
    assert "alert--error" in html
    assert '<span class="badge badge--red">Failed</span>' in html
    assert "<img src=x" not in html
    assert "project cn-north-4: &lt;img src=x onerror=alert(1)&gt; APIG.0301" in html
    assert "3 h ago" in html


@pytest.mark.django_db
def test_it_warns_about_a_partial_sync(admin_client):
    make_sync_run(started_at=timezone.now() - HOUR, outcome="partial", errors=["instance abc: timed out"])

    html = section(admin_client.get(URL).text, "freshness-title")

    assert "The last fleet sync was partial" in html
    assert "instance abc: timed out" in html


# --- Live refresh ----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refreshes_the_live_part_every_5_seconds(admin_client):
    html = admin_client.get(URL + "?window=7d").text

    assert re.search(
        r'<div id="overview-live" class="overview__live" hx-get="/\?window=7d" hx-trigger="every 5s" '
        r'hx-select="#overview-live" hx-swap="outerHTML">',
        html,
    )


@pytest.mark.django_db
def test_it_answers_htmx_with_the_live_part_only(admin_client):
    instance = make_instance(name="live-cache")
    make_record(instance, status="backuping", progress=10, created_at=timezone.now())

    response = admin_client.get(URL, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="overview-live"')
    assert "<html" not in response.text
    assert "live-cache" in response.text
    assert "Data freshness" in response.text
    assert "stat__count" not in response.text
    assert "HX-Request" in response["Vary"]


@pytest.mark.django_db
def test_it_gives_the_whole_page_to_a_history_restore(admin_client):
    response = admin_client.get(URL, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})

    assert "<html" in response.text


# --- Queries -----------------------------------------------------------------------------


def make_fleet(size: int) -> None:
    now = timezone.now()
    for n in range(size):
        instance = make_instance()
        make_record(instance, status="succeed", created_at=now - HOUR * (n + 1) * 10)
        make_record(instance, status="failed", created_at=now - HOUR)
        make_record(instance, status="backuping", progress=n, created_at=now - timedelta(minutes=n))
        make_instance(spec_code="redis.single.x")
        make_sync_run(started_at=now - HOUR * n, outcome="partial", errors=[f"error {n}", "again"])


def queries_of(client, url: str, **kwargs) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url, **kwargs)
    assert response.status_code == 200
    return len(context.captured_queries)


@pytest.mark.django_db
def test_it_asks_a_constant_number_of_queries(admin_client):
    make_fleet(2)
    small = queries_of(admin_client, URL)
    make_fleet(8)
    large = queries_of(admin_client, URL)

    assert small == large == OVERVIEW_QUERIES


@pytest.mark.django_db
def test_it_asks_fewer_queries_for_the_live_part(admin_client):
    make_fleet(2)
    small = queries_of(admin_client, URL, headers={"HX-Request": "true"})
    make_fleet(8)
    large = queries_of(admin_client, URL, headers={"HX-Request": "true"})

    assert small == large == LIVE_QUERIES


# --- The sync machinery -------------------------------------------------------------------


def machinery(html: str) -> str:
    return section(html, "freshness-title")


@pytest.mark.django_db
def test_it_keeps_working_and_says_so_while_the_broker_is_down(admin_client, settings):
    settings.CELERY_BROKER_URL = UNREACHABLE_BROKER
    make_heartbeat()
    make_sync_run(started_at=timezone.now() - 2 * HOUR, finished_at=timezone.now() - HOUR)
    make_record(status="succeed", created_at=timezone.now() - HOUR)

    page = admin_client.get(URL)
    live = admin_client.get(URL, headers={"HX-Request": "true"})

    for response in (page, live):
        assert response.status_code == 200
        assert (
            "Broker unreachable — pages keep working from the database; syncs resume when it is back."
            in machinery(response.text)
        )
    assert count_of(page.text, "succeed") == 1
    assert "Tasks waiting in the queue" not in machinery(page.text)


@pytest.mark.django_db
def test_it_tells_only_staff_what_the_broker_said(client, admin_client, settings, django_user_model):
    settings.CELERY_BROKER_URL = UNREACHABLE_BROKER
    client.force_login(django_user_model.objects.create_user("viewer", password="not-a-real-password-1"))

    staff = machinery(admin_client.get(URL).text)
    viewer = machinery(client.get(URL).text)

    assert "Broker unreachable" in staff and "Broker unreachable" in viewer
    assert "<code>ConnectionError" in staff
    assert "127.0.0.1" not in viewer


@pytest.mark.django_db
def test_it_says_how_long_the_workers_have_been_silent(admin_client):
    make_heartbeat(age=timedelta(minutes=3, seconds=10))

    html = machinery(admin_client.get(URL).text)

    assert "Workers: no heartbeat for 3 min — syncs wait until a worker is back." in html


@pytest.mark.django_db
def test_it_counts_a_stopped_worker_as_down(admin_client):
    make_heartbeat(stopped_at=timezone.now())

    assert "Workers: no heartbeat for" in machinery(admin_client.get(URL).text)


@pytest.mark.django_db
def test_it_says_when_no_worker_ever_reported(admin_client):
    html = machinery(admin_client.get(URL).text)

    assert "Workers: none has reported yet — syncs wait until a worker starts." in html


@pytest.mark.django_db
def test_it_says_nothing_of_the_machinery_when_it_is_fine(admin_client):
    make_heartbeat()

    html = machinery(admin_client.get(URL).text)

    assert "Broker unreachable" not in html
    assert "Workers:" not in html
    assert "<dt>Tasks waiting in the queue</dt><dd>" in html


@pytest.mark.django_db
def test_it_links_the_last_sync_and_the_sync_list(admin_client):
    run = make_sync_run(started_at=timezone.now() - HOUR, finished_at=timezone.now() - HOUR)

    html = machinery(admin_client.get(URL).text)

    assert f'<a href="/sync/{run.pk}/"><span class="badge badge--green">Succeeded</span></a>' in html
    assert '<a href="/sync/">Every sync, with its counts and errors</a>' in html


# --- Instances whose sync is stale -------------------------------------------------------


@pytest.fixture
def sync_ages(settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    now = timezone.now()
    return {
        "late": make_instance(
            name="late-cache", backups_checked_at=now - 2 * HOUR, backups_synced_at=now - 3 * HOUR
        ),
        "fresh": make_instance(name="fresh-cache", backups_checked_at=now - timedelta(minutes=5)),
        # Only complete listings so far (incremental ones not yet), recently.
        "complete": make_instance(name="complete-cache", backups_synced_at=now - timedelta(minutes=5)),
        "never": make_instance(name="never-cache", first_seen=now - 2 * HOUR),
        # Found by the sync running now: not stale before its turn comes.
        "new": make_instance(name="new-cache", first_seen=now - timedelta(minutes=1)),
        "gone": make_instance(name="gone-cache", backups_checked_at=now - 5 * HOUR, gone_at=now - 4 * HOUR),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}])
def test_it_flags_instances_whose_sync_is_stale(admin_client, sync_ages, headers):
    html = machinery(admin_client.get(URL, headers=headers).text)

    assert "2 instances not synced for more than 30 minutes" in html
    stale = html[html.index('<ul class="stale-list">') :]
    assert stale.index("never-cache") < stale.index("late-cache")
    assert "never synced" in stale
    assert re.search(
        r"late-cache</a>\s*<span class=\"stale-list__age\">last synced <time [^>]*>2 h ago</time>", stale
    )
    for name in ("fresh-cache", "complete-cache", "new-cache", "gone-cache"):
        assert name not in stale


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}])
def test_it_names_ten_stale_instances_and_counts_the_rest(admin_client, settings, headers):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    for n in range(13):
        make_instance(name=f"stale-{n:02d}", backups_checked_at=timezone.now() - HOUR - timedelta(minutes=n))

    html = machinery(admin_client.get(URL, headers=headers).text)

    assert "13 instances not synced for more than 30 minutes" in html
    assert html.count('<li><a href="/instances/') == 10
    assert "stale-12" in html and "stale-03" in html and "stale-02" not in html
    assert "and 3 more" in html


@pytest.mark.django_db
def test_it_flags_nothing_when_every_instance_synced_lately(admin_client, settings):
    settings.DASHBOARD_SYNC_STALE_MINUTES = 30
    make_instance(backups_checked_at=timezone.now() - timedelta(minutes=29))

    assert "not synced for more than" not in machinery(admin_client.get(URL).text)


# --- Sync now -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_offers_a_superuser_to_sync_the_fleet_outside_the_live_part(admin_client):
    html = admin_client.get(URL).text

    form = html.index('<form class="sync-now" method="post" action="/sync/now/">')
    # Not in the part that is swapped every 5 s, which would take the focus away.
    assert form < html.index('id="overview-live"')
    assert "Sync the fleet now" in html


def test_it_counts_the_open_alerts_and_links_to_them(admin_client):
    make_sync_run(outcome="succeeded", finished_at=timezone.now())
    instance = make_instance()
    now = timezone.now()
    for n, resolved in enumerate((None, None, now)):
        Alert.objects.create(
            kind="rpo", key=f"rpo:{n}", instance=instance, summary="over", opened_at=now, resolved_at=resolved
        )
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(reverse("backups:overview")).content.decode()
    assert len(queries) == OVERVIEW_QUERIES, "the count rides on the freshness query"
    link = re.search(r'<a class="badge badge--red" href="([^"]+)">(\d+)</a>', html)
    assert link and link.group(2) == "2"
    assert link.group(1) == reverse("backups:alert-list") + "?state=open"
    assert "over" in admin_client.get(link.group(1)).content.decode()


@pytest.mark.django_db
def test_a_fleet_never_synced_asks_one_query_more_for_the_machinery_and_alerts(admin_client):
    # No finished fleet run for the freshness query's row: the workers'
    # heartbeats and the open alerts are asked together, in one query.
    instance = make_instance()
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="worker-1", started_at=now, last_seen=now)
    Alert.objects.create(kind="rpo", key="rpo:1", instance=instance, summary="over", opened_at=now)
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(URL).content.decode()
    assert len(queries) == OVERVIEW_QUERIES + 1
    assert re.search(r'<a class="badge badge--red" href="[^"]+">1</a>', html)
