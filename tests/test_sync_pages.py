"""The sync pages: the runs (``/sync/``), one run (``/sync/<pk>/``), and "Sync now"."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from backups import tasks
from backups.choices import SyncOutcome, describe_api_error_code
from backups.models import SyncError, SyncRun, SyncRunItem
from tests.factories import T0, make_instance, make_sync_run

LIST_URL = "/sync/"
SYNC_NOW_URL = "/sync/now/"
# Session, user, the count and one page of runs with their user and instance.
LIST_QUERIES = 4
# Session, user, the run, its errors, its items.
DETAIL_QUERIES = 5
# What a user who is not a superuser adds, once a minute: their permissions
# and their groups' (views.sync.can_trigger_sync remembers the answer).
PERMISSION_QUERIES = 2
# Nothing listens on port 1: a broker that is down.
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
MINUTE = timedelta(minutes=1)


def detail_url(run: SyncRun) -> str:
    return f"/sync/{run.pk}/"


def rows_of(html: str) -> list[str]:
    body = html[html.index("<tbody") : html.index("</tbody>")]
    return re.findall(r"<tr[ >].*?</tr>", body, flags=re.S)


def run_ids_in(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<a href="/sync/(\d+)/"><time', html)]


def make_user(username: str = "viewer", *, can_sync: bool = False) -> User:
    user = User.objects.create_user(username, password="not-a-real-password-1")
    if can_sync:
        user.user_permissions.add(Permission.objects.get(codename="trigger_sync"))
    return user


def client_for(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def queries_of(client: Client, url: str, **kwargs) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url, **kwargs)
    assert response.status_code == 200
    return len(context.captured_queries)


@pytest.fixture
def queued(monkeypatch):
    """What "Sync now" sent to the broker: the tasks' apply_async, recorded instead of sent."""
    sent = []

    def recorder(name):
        def apply_async(*args, **kwargs):
            sent.append((name, kwargs.get("kwargs")))

        return apply_async

    monkeypatch.setattr(tasks.sync_fleet, "apply_async", recorder("sync_fleet"))
    monkeypatch.setattr(tasks.sync_instance, "apply_async", recorder("sync_instance"))
    return sent


# --- Choices ---------------------------------------------------------------------


def test_it_knows_skipped_runs_last_and_grey():
    assert SyncOutcome.values[-1] == "skipped"
    assert SyncOutcome.color_of("skipped") == "gray"
    assert SyncOutcome.label_of("skipped") == "Skipped"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("APIG.0308", "rate limit"),
        ("apigw.0301", "access key"),
        ("APIGW.0301", "15 minutes"),
        ("DCS.3022", "does not exist"),
        ("111404022", "does not exist"),
        ("DCS.4800", "paging offset"),
        ("DCS.08.0002", "timed out"),
    ],
)
def test_it_explains_api_error_codes(code, words):
    assert words in describe_api_error_code(code)


@pytest.mark.parametrize("code", ["", None, "APIG.9999", "DCS.0000", "<b>"])
def test_it_says_nothing_of_codes_it_does_not_know(code):
    assert describe_api_error_code(code) == ""


# --- URLs and login ---------------------------------------------------------------


def test_it_names_the_sync_urls():
    assert reverse("backups:sync-list") == "/sync/"
    assert reverse("backups:sync-detail", args=[7]) == "/sync/7/"
    assert reverse("backups:sync-now") == "/sync/now/"
    assert reverse("backups:instance-sync-now", args=["6f4f-1"]) == "/instances/6f4f-1/sync/"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("url", [LIST_URL, "/sync/1/", SYNC_NOW_URL, "/instances/abc/sync/"])
def test_it_asks_for_login(client, method, url):
    response = getattr(client, method)(url)

    assert response.status_code == 302
    assert "/login/" in response.url


# --- The list --------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_the_runs_newest_first_with_their_facts(admin_client):
    alice = make_user("alice")
    old = make_sync_run(started_at=T0, kind="full", trigger="beat", api_calls=7)
    new = make_sync_run(
        started_at=T0 + timedelta(hours=1),
        finished_at=T0 + timedelta(hours=1, minutes=3, seconds=12),
        kind="incremental",
        trigger="user",
        requested_by=alice,
        outcome="partial",
        instances_seen=12,
        instances_synced=11,
        instances_failed=1,
        records_new=3,
        records_updated=5,
        records_gone=2,
        api_calls=40,
        retries=4,
        throttles=2,
        errors=[{"scope": "instance x", "message": "HTTP 500"}],
    )

    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    html = response.text
    assert "<h1>Syncs</h1>" in html
    assert 'aria-current="page">Syncs</a>' in html
    assert run_ids_in(html) == [new.pk, old.pk]
    first = rows_of(html)[0]
    assert "Incremental" in first
    assert 'User <span class="sync__user">(alice)</span>' in first
    assert ">Fleet<" in first
    assert '<span class="badge badge--orange">Partial</span>' in first
    assert "3 min 12 s" in first
    assert '<span class="count">12 listed</span>' in first
    assert '<span class="count count--alarm">1 failed</span>' in first
    assert '<span class="count">3 new</span> · <span class="count">5 updated</span>' in first
    assert '<td class="cell--num">40</td>' in first
    assert f'href="/sync/{new.pk}/#errors"' in first
    assert "Schedule" in rows_of(html)[1]


@pytest.mark.django_db
def test_it_shows_skipped_and_running_runs(admin_client):
    make_sync_run(outcome="skipped", reason="another sync held the lease")
    make_sync_run(started_at=T0 + MINUTE, outcome="running", finished_at=None)

    html = admin_client.get(LIST_URL).text

    assert '<span class="badge badge--gray">Skipped</span>' in html
    assert '<span class="badge badge--cyan">Running</span>' in html
    # A run still going: the table refreshes itself.
    assert 'hx-trigger="every 5s" hx-select="#sync-table"' in html


@pytest.mark.django_db
def test_it_does_not_refresh_a_table_of_finished_runs(admin_client):
    make_sync_run()

    html = admin_client.get(LIST_URL).text

    assert 'id="sync-table"' in html
    assert "every 5s" not in html


@pytest.mark.django_db
def test_it_links_an_instance_run_to_its_instance(admin_client):
    instance = make_instance(name="orders-cache")
    make_sync_run(scope=f"instance {instance.instance_id}", kind="instance", instance=instance)

    html = admin_client.get(LIST_URL).text

    assert f'<a class="instance__name" href="/instances/{instance.instance_id}/">orders-cache</a>' in html
    assert "One instance" in html


@pytest.mark.django_db
def test_it_says_when_there_is_no_run_yet(admin_client):
    html = admin_client.get(LIST_URL).text

    assert "No sync has run yet." in html


@pytest.mark.django_db
def test_it_escapes_what_it_shows(admin_client):
    make_sync_run(requested_by=make_user("<b>eve</b>"), trigger="user", scope="<script>x</script>")

    html = admin_client.get(LIST_URL).text.split("<main", 1)[1]

    assert "<b>eve</b>" not in html
    assert "&lt;b&gt;eve&lt;/b&gt;" in html
    assert "<script>x" not in html


# --- Filters ---------------------------------------------------------------------------


@pytest.fixture
def runs():
    instance = make_instance(name="orders-cache", instance_id="6f4f2b1c-aaaa")
    other = make_instance(name="sessions", instance_id="6f4f2b1c-bbbb")
    made = {
        "ok": make_sync_run(started_at=T0, kind="full", trigger="beat"),
        "failed": make_sync_run(started_at=T0 + timedelta(days=1), outcome="failed", trigger="command"),
        "partial": make_sync_run(
            started_at=T0 + timedelta(days=2), outcome="partial", kind="incremental", trigger="beat"
        ),
        "instance": make_sync_run(
            started_at=T0 + timedelta(days=3),
            scope=f"instance {instance.instance_id}",
            kind="instance",
            trigger="user",
            instance=instance,
        ),
        "skipped": make_sync_run(started_at=T0 + timedelta(days=4), outcome="skipped", trigger="startup"),
    }
    SyncError.objects.create(
        run=made["partial"], instance=other, scope="instance 6f4f2b1c-bbbb", occurred_at=T0
    )
    return made


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"outcome": "failed"}, ["failed"]),
        ({"outcome": ["failed", "partial"]}, ["partial", "failed"]),
        ({"outcome": "skipped"}, ["skipped"]),
        ({"kind": "incremental"}, ["partial"]),
        ({"trigger": "user"}, ["instance"]),
        ({"trigger": "command"}, ["failed"]),
        ({"started_after": "2025-03-03"}, ["skipped", "instance", "partial"]),
        ({"started_before": "2025-03-02"}, ["failed", "ok"]),
        ({"started_after": "2025-03-02T12:00:00Z", "started_before": "2025-03-03T12:00:00Z"}, ["failed"]),
        ({"instance": "6f4f2b1c-aaaa"}, ["instance"]),
        ({"instance": "orders"}, ["instance"]),
        ({"instance": "sessions"}, ["partial"]),
        ({"instance": "6f4f2b1c"}, []),
    ],
)
def test_it_filters_the_runs(admin_client, runs, params, names):
    html = admin_client.get(LIST_URL, params).text

    assert run_ids_in(html) == [runs[name].pk for name in names]


@pytest.mark.django_db
def test_it_takes_relative_time_bounds(admin_client):
    recent = make_sync_run(started_at=timezone.now() - timedelta(hours=2))
    make_sync_run(started_at=timezone.now() - timedelta(days=3))

    html = admin_client.get(LIST_URL, {"started_after": "24h"}).text

    assert run_ids_in(html) == [recent.pk]


@pytest.mark.django_db
def test_it_fixes_relative_bounds_in_the_permalink(admin_client):
    html = admin_client.get(LIST_URL, {"started_after": "24h", "outcome": "failed"}).text

    permalink = re.search(r'id="permalink" type="text" readonly value="([^"]+)"', html)[1]
    assert re.search(r"started_after=\d{4}-\d\d-\d\dT\d\d%3A\d\d%3A\d\dZ", permalink)
    assert "outcome=failed" in permalink


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"outcome": "typo"}, "Outcome (outcome): “typo” is not a value we know, so it was ignored."),
        ({"kind": "weekly"}, "Kind (kind) was ignored"),
        ({"trigger": "cron"}, "Trigger (trigger) was ignored"),
        ({"started_after": "yesterday"}, "Started after (started_after) was ignored"),
        ({"started_before": "2025-13-45"}, "Started before (started_before) was ignored"),
        ({"started_before": "9999-12-31"}, "that time is out of range"),
        ({"instance": "x" * 500}, "Instance (instance) was ignored"),
        ({"sort": "api_calls"}, "is not a column this table sorts by"),
        ({"page": "abc"}, "is not a page number: showing the first page."),
        ({"page": "99"}, "There is no page 99"),
        ({"per_page": "7"}, "rows per page is not offered"),
        ({"_export": "xlsx"}, "is not an export format"),
    ],
)
def test_it_explains_bad_parameters_instead_of_failing(admin_client, runs, params, message):
    response = admin_client.get(LIST_URL, params)

    assert response.status_code == 200
    assert message in response.text
    assert len(run_ids_in(response.text)) == len(runs)


@pytest.mark.django_db
def test_it_keeps_the_good_filters_next_to_a_bad_one(admin_client, runs):
    html = admin_client.get(LIST_URL, {"outcome": ["failed", "typo"], "kind": "weekly"}).text

    assert run_ids_in(html) == [runs["failed"].pk]
    assert "“typo” is not a value we know" in html


# --- Sorting -----------------------------------------------------------------------


@pytest.fixture
def timed_runs():
    return {
        "short": make_sync_run(started_at=T0, finished_at=T0 + timedelta(seconds=10)),
        "long": make_sync_run(started_at=T0 + MINUTE, finished_at=T0 + timedelta(minutes=30)),
        "running": make_sync_run(started_at=T0 + 2 * MINUTE, finished_at=None, outcome="running"),
        "medium": make_sync_run(started_at=T0 + 3 * MINUTE, finished_at=T0 + timedelta(minutes=5)),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sort", "names"),
    [
        ("", ["medium", "running", "long", "short"]),
        ("started_at", ["short", "long", "running", "medium"]),
        ("-started_at", ["medium", "running", "long", "short"]),
        ("duration", ["short", "medium", "long", "running"]),
        ("-duration", ["long", "medium", "short", "running"]),
    ],
)
def test_it_sorts_by_start_and_duration(admin_client, timed_runs, sort, names):
    html = admin_client.get(LIST_URL, {"sort": sort} if sort else {}).text

    assert run_ids_in(html) == [timed_runs[name].pk for name in names]


# --- Exports -----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_exports_the_filtered_runs_as_csv(admin_client, runs):
    response = admin_client.get(LIST_URL, {"outcome": ["failed", "partial"], "_export": "csv"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="dcs-syncs-' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    header = rows[0]
    assert header[:3] == ["Started", "Run", "Finished"]
    assert "Requested by" in header and "Instances failed" in header and "Gone records" in header
    assert len(rows) == 3
    partial = dict(zip(header, rows[1], strict=True))
    assert partial["Started"] == "2025-03-03T12:00:00Z"
    assert partial["Outcome"] == "Partial"
    assert partial["Kind"] == "Incremental"
    assert partial["Scope"] == "fleet"
    assert partial["Instances listed"] == "1"
    assert partial["Duration (s)"] == "30"
    assert not any("<" in cell for row in rows for cell in row)


@pytest.mark.django_db
def test_it_exports_the_runs_as_json_with_numbers(admin_client):
    alice = make_user("alice")
    make_sync_run(trigger="user", requested_by=alice, records_new=3, api_calls=9, error_count=0)

    response = admin_client.get(LIST_URL, {"_export": "json"})

    items = json.loads(b"".join(response.streaming_content))
    assert len(items) == 1
    item = items[0]
    assert item["requested_by"] == "alice"
    assert item["trigger"] == "User"
    assert item["records_new"] == 3
    assert item["api_calls"] == 9
    assert item["duration_seconds"] == 30
    assert item["finished_at"] == "2025-03-01T12:00:30Z"


# --- Queries -----------------------------------------------------------------------------


def make_runs(count: int) -> None:
    for n in range(count):
        instance = make_instance()
        run = make_sync_run(
            started_at=T0 + MINUTE * n,
            scope=f"instance {instance.instance_id}",
            kind="instance",
            trigger="user",
            instance=instance,
            requested_by=make_user(f"user-{instance.pk}"),
            errors=[f"error {n}", "again"],
        )
        SyncRunItem.objects.create(run=run, instance=instance, position=0, state="done", outcome="failed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params", [{}, {"outcome": "succeeded", "instance": "dcs", "started_after": "2025-01-01"}]
)
def test_it_lists_the_runs_in_a_constant_number_of_queries(admin_client, params):
    make_runs(2)
    small = queries_of(admin_client, LIST_URL, data=params)
    make_runs(8)
    large = queries_of(admin_client, LIST_URL, data=params)

    assert small == large <= LIST_QUERIES


@pytest.mark.django_db
def test_it_costs_a_user_who_may_sync_two_queries_a_minute(client):
    client.force_login(make_user(can_sync=True))
    make_runs(3)

    first = queries_of(client, LIST_URL)
    then = queries_of(client, LIST_URL)

    assert first == LIST_QUERIES + PERMISSION_QUERIES <= 6
    assert then == LIST_QUERIES


# --- One run -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_a_run_with_every_field(admin_client):
    alice = make_user("alice")
    run = make_sync_run(
        kind="full",
        trigger="user",
        requested_by=alice,
        outcome="partial",
        planned_at=T0 + timedelta(seconds=2),
        concurrency=4,
        instances_seen=12,
        instances_synced=11,
        instances_failed=1,
        instances_gone=1,
        records_new=3,
        records_updated=5,
        records_gone=2,
        api_calls=40,
        retries=4,
        throttles=2,
        task_id="3f1c-task",
    )

    response = admin_client.get(detail_url(run))

    assert response.status_code == 200
    html = response.text
    assert f"Sync {run.pk}" in html
    assert 'aria-current="page">Syncs</a>' in html
    assert '<span class="badge badge--orange">Partial</span>' in html
    for label, value in [
        ("Trigger", "User (alice)"),
        ("Concurrency", "4"),
        ("Instances listed", "12"),
        ("Instances synced", "11"),
        ("Instances gone", "1"),
        ("New records", "3"),
        ("Updated records", "5"),
        ("Gone records", "2"),
        ("API calls", "40"),
        ("Retries", "4"),
        ("Throttled", "2"),
        ("Duration", "30 s"),
    ]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in html
    assert "<code>3f1c-task</code>" in html
    assert "This sync recorded no errors." in html


@pytest.mark.django_db
def test_it_lists_the_errors_of_a_run_with_what_their_codes_mean(admin_client):
    instance = make_instance(name="orders-cache")
    run = make_sync_run(outcome="partial")
    SyncError.objects.create(
        run=run,
        instance=instance,
        scope=f"instance {instance.instance_id}",
        error="DcsThrottled",
        status=429,
        error_code="APIG.0308",
        error_msg="The throttling threshold has been reached",
        request_id="req-0308-abc",
        occurred_at=T0,
    )
    SyncError.objects.create(
        run=run,
        scope="project cn-north-4/0a1b",
        error="DcsAuthError",
        status=401,
        error_code="APIGW.0301",
        error_msg="<img src=x onerror=alert(1)>",
        occurred_at=T0 + MINUTE,
    )
    SyncError.objects.create(run=run, scope="run", error="Stalled", error_msg="no progress", occurred_at=T0)

    html = admin_client.get(detail_url(run)).text

    errors = html[html.index('id="errors"') :]
    assert f'<a class="instance__name" href="/instances/{instance.instance_id}/">orders-cache</a>' in errors
    assert "rate limit was reached" in errors
    assert "<code>req-0308-abc</code>" not in errors  # shown in its own class
    assert '<code class="request-id">req-0308-abc</code>' in errors
    assert '<td class="cell--num">429</td>' in errors
    assert "Authentication failed" in errors
    assert "<img src=x" not in errors
    assert "&lt;img src=x onerror=alert(1)&gt;" in errors
    assert "<code>project cn-north-4/0a1b</code>" in errors
    assert errors.index("no progress") < errors.index("&lt;img")  # oldest first


@pytest.mark.django_db
def test_it_lists_the_instances_of_a_run(admin_client):
    first, second = make_instance(name="alpha"), make_instance(name="beta")
    run = make_sync_run()
    SyncRunItem.objects.create(run=run, instance=second, position=1, state="running")
    SyncRunItem.objects.create(
        run=run, instance=first, position=0, state="done", outcome="succeeded", records_new=4, api_calls=2
    )

    html = admin_client.get(detail_url(run)).text

    items = html[html.index("Instances of this run") :]
    assert items.index(">alpha<") < items.index(">beta<")
    assert '<span class="count">4 new</span>' in items
    assert "every backup" in items


@pytest.mark.django_db
def test_it_explains_why_a_run_has_no_instances(admin_client):
    run = make_sync_run(
        outcome="skipped", reason="a fleet sync (run 4) of the same scope (fleet) was still running"
    )

    html = admin_client.get(detail_url(run)).text

    assert '<span class="badge badge--gray">Skipped</span>' in html
    assert "a fleet sync (run 4) of the same scope (fleet) was still running" in html
    assert "No per-instance steps are kept for this sync" in html


@pytest.mark.django_db
def test_it_refreshes_a_running_run(admin_client):
    running = make_sync_run(outcome="running", finished_at=None)
    done = make_sync_run()

    assert 'hx-trigger="every 5s" hx-select="#sync-run"' in admin_client.get(detail_url(running)).text
    assert "every 5s" not in admin_client.get(detail_url(done)).text


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/sync/999999/", "/sync/abc/", "/sync/-1/"])
def test_it_answers_404_for_an_unknown_run(admin_client, url):
    assert admin_client.get(url).status_code == 404


@pytest.mark.django_db
def test_it_shows_a_run_in_a_constant_number_of_queries(admin_client):
    run = make_sync_run(outcome="partial")

    def add(n):
        for _ in range(n):
            instance = make_instance()
            SyncRunItem.objects.create(run=run, instance=instance, position=SyncRunItem.objects.count())
            SyncError.objects.create(run=run, instance=instance, scope="x", occurred_at=T0)

    add(2)
    small = queries_of(admin_client, detail_url(run))
    add(8)
    large = queries_of(admin_client, detail_url(run))

    assert small == large <= DETAIL_QUERIES


# --- "Sync now" ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_queues_a_fleet_sync_for_a_superuser(
    admin_client, admin_user, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(SYNC_NOW_URL, {"next": "/?window=7d"})

    assert response.status_code == 302
    assert response.url == "/?window=7d"
    assert len(callbacks) == 1
    assert queued == [("sync_fleet", {"kind": "full", "trigger": "user", "user_id": admin_user.pk})]
    page = admin_client.get(response.url).text
    assert '<p class="alert alert--info" role="status">Sync of the fleet queued' in page


@pytest.mark.django_db
def test_it_queues_only_once_the_transaction_commits(
    admin_client, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        admin_client.post(SYNC_NOW_URL)

    assert len(callbacks) == 1
    assert queued == []


@pytest.mark.django_db
def test_it_queues_an_instance_sync(admin_client, admin_user, queued, django_capture_on_commit_callbacks):
    instance = make_instance(name="orders-cache")

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/instances/{instance.instance_id}/sync/")

    assert response.status_code == 302
    assert response.url == f"/instances/{instance.instance_id}/"
    assert queued == [
        ("sync_instance", {"instance_pk": instance.pk, "trigger": "user", "user_id": admin_user.pk})
    ]
    assert "Sync of orders-cache queued" in admin_client.get(response.url).text


@pytest.mark.django_db
def test_it_says_when_a_fleet_sync_is_already_running(
    admin_client, queued, django_capture_on_commit_callbacks
):
    make_sync_run(outcome="running", finished_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(SYNC_NOW_URL, follow=True)

    assert "A fleet sync is already running" in response.text
    assert len(queued) == 1


@pytest.mark.django_db
def test_it_does_not_sync_an_instance_that_is_gone(admin_client, queued, django_capture_on_commit_callbacks):
    instance = make_instance(name="old-cache", gone_at=T0)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(f"/instances/{instance.instance_id}/sync/", follow=True)

    assert "old-cache is no longer listed by the API" in response.text
    assert callbacks == [] and queued == []


@pytest.mark.django_db
def test_it_answers_404_for_an_unknown_instance(admin_client, queued):
    assert admin_client.post("/instances/no-such-instance/sync/").status_code == 404
    assert queued == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/backups/?status=failed", "/backups/?status=failed"),
        ("https://evil.example/", "/sync/"),
        ("//evil.example/", "/sync/"),
        ("javascript:alert(1)", "/sync/"),
        ("", "/sync/"),
    ],
)
def test_it_goes_back_only_to_pages_of_this_site(admin_client, queued, next_url, expected):
    response = admin_client.post(SYNC_NOW_URL, {"next": next_url})

    assert response.status_code == 302
    assert response.url == expected


@pytest.mark.django_db
@pytest.mark.parametrize("url", [SYNC_NOW_URL, "/instances/abc/sync/"])
def test_it_takes_only_posts(admin_client, url):
    make_instance(instance_id="abc")

    assert admin_client.get(url).status_code == 405


@pytest.mark.django_db
def test_it_refuses_a_user_without_the_permission(queued, django_capture_on_commit_callbacks):
    client = client_for(make_user())
    instance = make_instance()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        fleet = client.post(SYNC_NOW_URL)
        one = client.post(f"/instances/{instance.instance_id}/sync/")

    assert fleet.status_code == 403
    assert one.status_code == 403
    assert callbacks == [] and queued == []


@pytest.mark.django_db
def test_it_hides_the_button_from_a_user_without_the_permission():
    client = client_for(make_user())
    instance = make_instance()

    for url in (LIST_URL, "/", f"/instances/{instance.instance_id}/"):
        html = client.get(url).text
        assert 'class="sync-now"' not in html, url
        assert "/sync/now/" not in html, url


@pytest.mark.django_db
def test_it_shows_the_button_to_a_user_with_the_permission(queued, django_capture_on_commit_callbacks):
    user = make_user(can_sync=True)
    client = client_for(user)
    instance = make_instance()

    for url, action in (
        (LIST_URL, "/sync/now/"),
        ("/", "/sync/now/"),
        (f"/instances/{instance.instance_id}/", f"/instances/{instance.instance_id}/sync/"),
    ):
        html = client.get(url).text
        form = re.search(
            r'<form class="sync-now" method="post" action="([^"]+)">(.*?)</form>', html, flags=re.S
        )
        assert form, url
        assert form[1] == action
        assert 'name="csrfmiddlewaretoken"' in form[2]
        assert f'name="next" value="{url}"' in form[2]
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(SYNC_NOW_URL).status_code == 302
    assert queued == [("sync_fleet", {"kind": "full", "trigger": "user", "user_id": user.pk})]


@pytest.mark.django_db
def test_it_offers_no_sync_of_a_gone_instance(admin_client):
    instance = make_instance(gone_at=T0)

    assert 'class="sync-now"' not in admin_client.get(f"/instances/{instance.instance_id}/").text


@pytest.mark.django_db
def test_it_requires_the_csrf_token(admin_user, queued, django_capture_on_commit_callbacks):
    client = client_for(admin_user, enforce_csrf_checks=True)

    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(SYNC_NOW_URL)
        html = client.get(LIST_URL).text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]
        accepted = client.post(SYNC_NOW_URL, {"csrfmiddlewaretoken": token})

    assert refused.status_code == 403
    assert accepted.status_code == 302
    assert len(queued) == 1


@pytest.mark.django_db
def test_it_says_at_once_when_the_broker_is_down(
    admin_client, settings, queued, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_URL = UNREACHABLE_BROKER

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(SYNC_NOW_URL, {"next": "/backups/"})

    assert response.status_code == 302
    assert response.url == "/backups/"
    assert callbacks == [] and queued == []
    page = admin_client.get(response.url).text
    assert '<p class="alert alert--error" role="alert">The sync could not be queued: the task broker' in page
    assert "The pages keep working from the database" in page


@pytest.mark.django_db
def test_it_tells_only_staff_why_the_broker_is_down(settings, queued):
    settings.CELERY_BROKER_URL = UNREACHABLE_BROKER
    client = client_for(make_user(can_sync=True))

    page = client.post(SYNC_NOW_URL, follow=True).text

    assert "The sync could not be queued" in page
    assert "127.0.0.1" not in page


@pytest.mark.django_db
def test_it_says_so_when_the_broker_fails_to_take_the_message(admin_client, monkeypatch):
    def refuse(**kwargs):
        raise KombuOperationalError("connection reset")

    monkeypatch.setattr(tasks, "request_sync", refuse)

    response = admin_client.post(SYNC_NOW_URL, follow=True)

    assert response.status_code == 200
    assert "The sync could not be queued" in response.text
