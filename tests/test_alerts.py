"""Alerts: opening, de-duplicating and resolving them, notifying by email and webhook, the digest."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection
from django.utils import timezone

from backups import tasks
from backups.alerts import config
from backups.alerts.channels import EmailChannel, WebhookChannel, configured_channels, scrub
from backups.alerts.digest import send_digest
from backups.alerts.evaluate import Evaluation, apply_changes, evaluate_alerts, plan_failures
from backups.models import Alert, AlertDelivery, AlertKind, DcsInstance
from dashboard.logformat import RedactSecretsFilter
from tests.factories import make_instance, make_record

BASE_DIR = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 20, 9, 30, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SECRET = "T0kenThatMustNeverLeak9f8e7d"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _alert_settings(settings):
    settings.DASHBOARD_ALERT_EMAILS = []
    settings.DASHBOARD_ALERT_WEBHOOK_URL = ""
    settings.DASHBOARD_ALERT_WEBHOOK_FORMAT = "generic"
    settings.DASHBOARD_ALERT_WEBHOOK_TEMPLATE = ""
    settings.DASHBOARD_ALERT_WEBHOOK_TIMEOUT = 5.0
    settings.DASHBOARD_ALERT_LOOKBACK_HOURS = 48
    settings.DASHBOARD_ALERT_MAX_ATTEMPTS = 3
    settings.DASHBOARD_ALERT_DIGEST = True
    settings.DASHBOARD_ALERT_DIGEST_HOUR = 8
    settings.DASHBOARD_AT_RISK_HOURS = 24
    settings.DASHBOARD_RPO_HOURS = 24
    settings.DASHBOARD_BASE_URL = "https://dcs.example.com"
    settings.DEFAULT_FROM_EMAIL = "dcs@example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def email_on(settings):
    settings.DASHBOARD_ALERT_EMAILS = ["dba@example.com", "oncall@example.com"]


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server.received.append({"path": self.path, "json": json.loads(body)})
        status, answer = server.answers.pop(0) if server.answers else (200, b"{}")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def webhook(settings):
    """A real HTTP server on loopback taking the webhook's POSTs; ``answers`` queues its replies."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.received, server.answers = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}/hook/{SECRET}?key={SECRET}"
    settings.DASHBOARD_ALERT_WEBHOOK_URL = server.url
    yield server
    server.shutdown()
    server.server_close()


def at_risk_instance(**fields) -> DcsInstance:
    instance = make_instance(**fields)
    make_record(instance, status="succeed", created_at=NOW - 30 * HOUR)
    return instance


def healthy_instance(**fields) -> DcsInstance:
    instance = make_instance(**fields)
    make_record(instance, status="succeed", created_at=NOW - 2 * HOUR)
    return instance


def open_alerts(kind=None):
    alerts = Alert.objects.filter(resolved_at=None)
    return list(alerts.filter(kind=kind) if kind else alerts)


# --- RPO ------------------------------------------------------------------------------


def test_it_opens_one_rpo_alert_per_instance_over_its_rpo_and_resolves_it_after_a_success():
    risky = at_risk_instance(name="orders")
    healthy_instance(name="carts")
    make_instance(name="cache", spec_code="redis.single.xu1.tiny.128")  # single-node: exempt

    evaluate_alerts(now=NOW)
    [alert] = open_alerts()
    assert (alert.kind, alert.key, alert.instance) == (AlertKind.RPO, f"rpo:{risky.pk}", risky)
    assert "orders" in alert.summary and "RPO" in alert.summary

    make_record(risky, status="succeed", created_at=NOW - HOUR)
    evaluation = evaluate_alerts(now=NOW + HOUR)
    alert.refresh_from_db()
    assert alert.resolved_at == NOW + HOUR
    assert evaluation.resolved == [alert]
    assert "succeeded" in alert.detail["resolved_because"]


def test_it_resolves_an_rpo_alert_of_an_instance_that_is_gone():
    risky = at_risk_instance()
    evaluate_alerts(now=NOW)
    DcsInstance.objects.filter(pk=risky.pk).update(gone_at=NOW)
    evaluate_alerts(now=NOW + HOUR)
    assert open_alerts() == []
    assert "no longer listed" in Alert.objects.get().detail["resolved_because"]


def test_it_opens_an_rpo_alert_for_an_instance_never_backed_up():
    make_instance(name="fresh")
    evaluate_alerts(now=NOW)
    [alert] = open_alerts(AlertKind.RPO)
    assert "never" in alert.summary and alert.detail["last_success_at"] is None


# --- failed backups ---------------------------------------------------------------------


def test_it_opens_one_alert_for_repeated_failures_and_resolves_it_when_a_newer_backup_succeeds(email_on):
    instance = healthy_instance(name="orders")
    first = make_record(
        instance, status="failed", error_code="DCS.4811", created_at=NOW - timedelta(minutes=30)
    )
    evaluate_alerts(now=NOW)
    [alert] = open_alerts(AlertKind.BACKUP_FAILED)
    assert alert.key == f"backup_failed:{instance.pk}" and alert.record == first
    assert "DCS.4811" in alert.summary
    assert len(mail.outbox) == 1

    second = make_record(instance, status="failed", created_at=NOW + timedelta(minutes=10))
    evaluate_alerts(now=NOW + HOUR)
    alert.refresh_from_db()
    assert alert.record == second and alert.detail["failures"] == 2 and alert.resolved_at is None
    assert Alert.objects.count() == 1
    assert len(mail.outbox) == 1  # nothing new to say

    make_record(instance, status="succeed", created_at=NOW + 2 * HOUR)
    evaluate_alerts(now=NOW + 3 * HOUR)
    alert.refresh_from_db()
    assert alert.resolved_at == NOW + 3 * HOUR
    assert [m.subject.split(":")[0] for m in mail.outbox] == [
        "[DCS Backups] Alert",
        "[DCS Backups] Recovered",
    ]


def test_it_ignores_a_running_backup_after_a_failure():
    instance = healthy_instance()
    make_record(instance, status="failed", created_at=NOW - HOUR)
    evaluate_alerts(now=NOW)
    make_record(instance, status="backuping", created_at=NOW + HOUR / 2, updated_at=None)
    evaluate_alerts(now=NOW + HOUR)
    assert len(open_alerts(AlertKind.BACKUP_FAILED)) == 1


def test_it_does_not_alert_for_failures_older_than_the_lookback():
    instance = healthy_instance()
    DcsInstance.objects.filter(pk=instance.pk)
    old = make_instance()
    make_record(old, status="succeed", created_at=NOW - 3 * HOUR)
    # Years of history, the newest finished backup failing long ago.
    quiet = make_instance(spec_code="redis.ha.xu1.large.r2.2")
    make_record(quiet, status="succeed", created_at=datetime(2019, 5, 1, tzinfo=UTC))
    make_record(quiet, status="failed", created_at=datetime(2019, 5, 2, tzinfo=UTC))
    evaluate_alerts(now=NOW)
    assert open_alerts(AlertKind.BACKUP_FAILED) == []


def test_it_does_not_alert_when_a_newer_backup_already_succeeded():
    instance = make_instance()
    make_record(instance, status="failed", created_at=NOW - 5 * HOUR)
    make_record(instance, status="succeed", created_at=NOW - 4 * HOUR)
    evaluate_alerts(now=NOW)
    assert open_alerts(AlertKind.BACKUP_FAILED) == []


# --- de-duplication -------------------------------------------------------------------


def test_it_notifies_once_however_often_it_evaluates(email_on):
    at_risk_instance()
    for minutes in (0, 5, 10):
        evaluate_alerts(now=NOW + timedelta(minutes=minutes))
    assert Alert.objects.count() == 1
    assert len(mail.outbox) == 1
    assert AlertDelivery.objects.filter(ok=True).count() == 1


def test_it_keeps_one_open_alert_when_two_evaluations_open_it_at_once(email_on):
    instance = healthy_instance()
    make_record(instance, status="failed", created_at=NOW - HOUR)
    # Both evaluations planned before either wrote: the second INSERT loses.
    first_plan, second_plan = plan_failures(now=NOW), plan_failures(now=NOW)
    first, second = Evaluation(), Evaluation()
    apply_changes(first_plan, now=NOW, evaluation=first)
    apply_changes(second_plan, now=NOW, evaluation=second)
    assert len(first.opened) == 1 and second.opened == []
    assert Alert.objects.count() == 1
    evaluate_alerts(now=NOW)
    assert len(mail.outbox) == 1


def test_the_database_refuses_a_second_open_alert_for_a_key():
    instance = make_instance()
    Alert.objects.create(kind="rpo", key="rpo:x", instance=instance, summary="a", opened_at=NOW)
    with pytest.raises(IntegrityError):
        Alert.objects.create(kind="rpo", key="rpo:x", instance=instance, summary="b", opened_at=NOW)


# --- channels ---------------------------------------------------------------------------


def test_it_records_alerts_and_sends_nothing_with_no_channel():
    at_risk_instance()
    evaluation = evaluate_alerts(now=NOW)
    assert len(evaluation.opened) == 1
    assert configured_channels() == []
    assert AlertDelivery.objects.count() == 0 and mail.outbox == []


def test_it_emails_an_alert_with_an_absolute_link(email_on):
    instance = at_risk_instance(name="orders")
    evaluate_alerts(now=NOW)
    [message] = mail.outbox
    assert message.to == ["dba@example.com", "oncall@example.com"]
    assert message.from_email == "dcs@example.com"
    assert f"https://dcs.example.com/instances/{instance.instance_id}/" in message.body
    assert "2026-11-20T09:30:00Z" in message.body
    [delivery] = AlertDelivery.objects.all()
    assert (delivery.channel, delivery.event, delivery.ok) == ("email", "opened", True)
    assert delivery.target == "dba@example.com, oncall@example.com"


def test_it_posts_the_generic_json_to_the_webhook_and_keeps_only_its_host(webhook):
    instance = healthy_instance(name="orders")
    record = make_record(instance, status="failed", created_at=NOW - HOUR)
    evaluate_alerts(now=NOW)
    [request] = webhook.received
    body = request["json"]
    assert body["event"] == "opened" and body["kind"] == "backup_failed"
    assert body["instance"]["id"] == instance.instance_id
    assert body["url"] == f"https://dcs.example.com/backups/{record.backup_id}/"
    assert body["opened_at"] == "2026-11-20T09:30:00Z" and body["resolved_at"] is None
    [delivery] = AlertDelivery.objects.all()
    assert delivery.ok and delivery.target == f"http://127.0.0.1:{webhook.server_port}"


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [
        ("slack", lambda b: b["text"]),
        ("feishu", lambda b: b["msg_type"] == "text" and b["content"]["text"]),
        ("wecom", lambda b: b["msgtype"] == "text" and b["text"]["content"]),
        ("dingtalk", lambda b: b["msgtype"] == "text" and b["text"]["content"]),
    ],
)
def test_it_speaks_each_chat_tools_text_format(webhook, settings, fmt, shape):
    settings.DASHBOARD_ALERT_WEBHOOK_FORMAT = fmt
    at_risk_instance(name="orders")
    evaluate_alerts(now=NOW)
    [request] = webhook.received
    text = shape(request["json"])
    assert text and "orders" in text and "https://dcs.example.com/instances/" in text


def test_it_renders_the_operators_template_as_the_body(webhook, settings, tmp_path):
    template = tmp_path / "hook.json"
    template.write_text(
        '{"msgtype": "markdown", "markdown": {"content": {{ text_json }}}, "kind": "{{ kind }}"}'
    )
    settings.DASHBOARD_ALERT_WEBHOOK_FORMAT = "template"
    settings.DASHBOARD_ALERT_WEBHOOK_TEMPLATE = str(template)
    at_risk_instance(name='or"ders')
    evaluate_alerts(now=NOW)
    body = webhook.received[0]["json"]
    assert body["kind"] == "rpo" and 'or"ders' in body["markdown"]["content"]


def test_a_failed_webhook_is_retried_up_to_the_cap_and_its_secret_never_shows(webhook, settings, client):
    webhook.answers = [(500, f'{{"error": "no such hook {SECRET}"}}'.encode())] * 10
    at_risk_instance()
    for minutes in range(0, 30, 5):
        evaluate_alerts(now=NOW + timedelta(minutes=minutes))
    deliveries = list(AlertDelivery.objects.order_by("id"))
    assert len(deliveries) == settings.DASHBOARD_ALERT_MAX_ATTEMPTS == 3
    assert all(not d.ok and "HTTP 500" in d.error for d in deliveries)
    for delivery in deliveries:
        assert SECRET not in delivery.error and SECRET not in delivery.target
    superuser = User.objects.create_superuser("root", password="not-a-real-password-1")
    client.force_login(superuser)
    page = client.get("/alerts/").content.decode()
    assert "HTTP 500" in page and SECRET not in page


def test_a_webhook_that_comes_back_gets_the_pending_notification(webhook):
    webhook.answers = [(503, b"down")]
    at_risk_instance()
    evaluate_alerts(now=NOW)
    evaluate_alerts(now=NOW + timedelta(minutes=5))
    assert [d.ok for d in AlertDelivery.objects.order_by("id")] == [False, True]
    assert len(webhook.received) == 2


def test_a_webhook_that_cannot_be_reached_is_recorded_without_its_url(settings):
    url = f"http://127.0.0.1:1/hook/{SECRET}"
    channel = WebhookChannel(url, fmt="generic", timeout=2)
    settings.DASHBOARD_ALERT_WEBHOOK_URL = url
    at_risk_instance()
    evaluate_alerts(now=NOW)
    [delivery] = AlertDelivery.objects.all()
    assert not delivery.ok and "ConnectionError" in delivery.error
    assert SECRET not in delivery.error and delivery.target == "http://127.0.0.1:1"
    assert SECRET not in repr(channel)


def test_a_chat_tools_error_code_in_a_200_is_a_failure(webhook, settings):
    settings.DASHBOARD_ALERT_WEBHOOK_FORMAT = "wecom"
    webhook.answers = [(200, b'{"errcode": 93000, "errmsg": "invalid webhook url"}')]
    at_risk_instance()
    evaluate_alerts(now=NOW)
    [delivery] = AlertDelivery.objects.all()
    assert not delivery.ok and "93000" in delivery.error


def test_scrub_removes_the_url_and_its_token_in_any_form():
    url = f"https://qyapi.example.com/cgi-bin/webhook/send?key={SECRET}"
    text = f"failed {url} with key={SECRET} path /cgi-bin/webhook/send%3Fkey%3D{SECRET}"
    assert SECRET not in scrub(text, url)


def test_an_email_that_fails_is_recorded_with_its_error(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2
    channel = EmailChannel(["dba@example.com"], sender="dcs@example.com")
    at_risk_instance()
    evaluate_alerts(now=NOW, channels=[channel])
    [delivery] = AlertDelivery.objects.all()
    assert not delivery.ok and delivery.error


# --- digest ---------------------------------------------------------------------------


def test_the_digest_goes_once_a_day_after_its_hour(email_on):
    at_risk_instance(name="orders")
    evaluate_alerts(now=NOW - 3 * HOUR)  # 06:30: opened
    mail.outbox.clear()
    assert not send_digest(now=NOW.replace(hour=7)).due
    report = send_digest(now=NOW)  # 09:30
    assert report.sent == 1
    [message] = mail.outbox
    assert "Daily digest 2026-11-20: 1 open, 1 new, 0 recovered" in message.subject
    assert "orders" in message.body and "https://dcs.example.com/alerts/" in message.body
    assert send_digest(now=NOW + HOUR).sent == 0
    assert len(mail.outbox) == 1
    assert send_digest(now=NOW + 24 * HOUR).sent == 1  # the next day
    assert AlertDelivery.objects.filter(event="digest", alert=None).count() == 2


def test_the_digest_by_webhook_lists_what_opened_and_recovered(webhook):
    instance = at_risk_instance()
    evaluate_alerts(now=NOW - 5 * HOUR)
    make_record(instance, status="succeed", created_at=NOW - 4 * HOUR)
    evaluate_alerts(now=NOW - 4 * HOUR)
    webhook.received.clear()
    send_digest(now=NOW)
    [request] = webhook.received
    body = request["json"]
    assert body["event"] == "digest" and body["open_now"] == []
    assert len(body["opened_last_24h"]) == 1 and len(body["resolved_last_24h"]) == 1


# --- settings ---------------------------------------------------------------------------


def test_the_settings_checks_refuse_bad_values(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="DASHBOARD_ALERT_EMAILS must be comma-separated"):
        config.check_emails("DASHBOARD_ALERT_EMAILS", ["dba@example.com", "not-an-address"])
    with pytest.raises(ImproperlyConfigured, match="DASHBOARD_BASE_URL must be"):
        config.check_base_url("DASHBOARD_BASE_URL", "dcs.example.com")
    assert config.check_base_url("X", "https://dcs.example.com/") == "https://dcs.example.com"
    with pytest.raises(ImproperlyConfigured) as refused:
        config.check_webhook_url("DASHBOARD_ALERT_WEBHOOK_URL", f"ftp://host/{SECRET}")
    assert SECRET not in str(refused.value)
    with pytest.raises(ImproperlyConfigured, match="readable template"):
        config.check_webhook_template("DASHBOARD_ALERT_WEBHOOK_TEMPLATE", str(tmp_path / "missing.json"))
    assert (
        config.webhook_target(f"https://open.example.com:8443/hook/{SECRET}?a=b")
        == "https://open.example.com:8443"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DASHBOARD_ALERT_EMAILS": "dba@example.com,oops"}, "DASHBOARD_ALERT_EMAILS must be"),
        ({"DASHBOARD_ALERT_WEBHOOK_URL": f"hook/{SECRET}"}, "DASHBOARD_ALERT_WEBHOOK_URL must be"),
        ({"DASHBOARD_ALERT_WEBHOOK_FORMAT": "teams"}, "DASHBOARD_ALERT_WEBHOOK_FORMAT must be one of"),
        ({"DASHBOARD_ALERT_DIGEST_HOUR": "25"}, "DASHBOARD_ALERT_DIGEST_HOUR must be at most 23"),
    ],
)
def test_a_bad_alert_setting_stops_start_up_with_one_line(env, message):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert SECRET not in result.stderr


# --- the page -------------------------------------------------------------------------


def viewer_client(client):
    user = User.objects.create_user("support", password="not-a-real-password-1")
    user.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(user)
    return client


def test_the_alert_page_shows_the_history_to_a_viewer(client, email_on, django_assert_max_num_queries):
    for _ in range(3):
        at_risk_instance()
    healthy = healthy_instance(name="orders")
    make_record(healthy, status="failed", created_at=NOW - HOUR)
    evaluate_alerts(now=NOW)
    viewer_client(client)
    client.get("/alerts/")  # the viewer's permissions, remembered for a minute
    with django_assert_max_num_queries(5):  # session, user, count, page, deliveries
        response = client.get("/alerts/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('badge--red">Open<') == 4
    assert f'href="/instances/{healthy.instance_id}/"' in html
    assert f'href="/backups/{healthy.backups.get(status="failed").backup_id}/"' in html
    assert "dba@example.com" in html and "2026-11-20 09:30:00" in html


def test_the_alert_page_filters_by_kind_state_and_instance(client):
    risky = at_risk_instance(name="orders")
    evaluate_alerts(now=NOW)
    make_record(risky, status="succeed", created_at=NOW)
    evaluate_alerts(now=NOW + HOUR)
    at_risk_instance(name="carts")
    evaluate_alerts(now=NOW + HOUR)
    viewer_client(client)
    assert "orders" not in client.get("/alerts/?state=open").content.decode()
    assert "orders" in client.get("/alerts/?state=recovered").content.decode()
    assert "carts" not in client.get("/alerts/?instance=orders").content.decode()
    assert "No alerts match" in client.get("/alerts/?kind=backup_failed").content.decode()
    bad = client.get("/alerts/?state=sideways&opened_after=yesterday-ish")
    assert bad.status_code == 200 and "was ignored" in bad.content.decode()


def test_the_alert_page_exports_csv(client):
    at_risk_instance(name="orders")
    evaluate_alerts(now=NOW)
    viewer_client(client)
    response = client.get("/alerts/?_export=csv")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    assert "orders" in text and "2026-11-20T09:30:00Z" in text


def test_a_viewer_changes_nothing_on_the_alert_page(client):
    viewer_client(client)
    assert client.post("/alerts/").status_code in (403, 405)


# --- the command ------------------------------------------------------------------------


def test_the_command_evaluates_and_its_dry_run_changes_nothing(email_on):
    at_risk_instance(name="orders")
    out = StringIO()
    call_command("send_alerts", "--dry-run", stdout=out)
    assert "Would open rpo:" in out.getvalue()
    assert Alert.objects.count() == 0 and mail.outbox == []
    out = StringIO()
    call_command("send_alerts", stdout=out)
    assert "1 opened" in out.getvalue() and "1 sent" in out.getvalue()
    assert len(mail.outbox) == 1


def test_the_command_sends_the_digest_when_forced(email_on):
    out = StringIO()
    call_command("send_alerts", "--digest", "--force", stdout=out)
    assert "1 sent" in out.getvalue()
    assert "Daily digest" in mail.outbox[0].subject


def test_the_command_refuses_force_without_digest():
    with pytest.raises(CommandError, match="--force goes with --digest"):
        call_command("send_alerts", "--force")


# --- Celery and logs --------------------------------------------------------------------


def test_the_tasks_run_the_same_services(email_on, settings):
    settings.DASHBOARD_ALERT_DIGEST_HOUR = 0
    at_risk_instance()
    assert tasks.evaluate_alerts_task() == {
        "opened": 1,
        "updated": 0,
        "resolved": 0,
        "sent": 1,
        "failed": 0,
        "busy": False,
    }
    assert tasks.send_alert_digest_task()["sent"] == 1
    assert tasks.send_alert_digest_task()["sent"] == 0  # once a day


def test_beat_evaluates_every_few_minutes_and_checks_the_digest():
    from dashboard.celery import app

    app.loader.import_default_modules()
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    assert schedule["alerts-evaluate"]["task"] == "backups.evaluate_alerts" in app.tasks
    assert schedule["alerts-evaluate"]["schedule"] == django_settings.DASHBOARD_ALERT_EVERY_MINUTES * 60
    assert schedule["alerts-digest"]["task"] == "backups.send_alert_digest" in app.tasks


def test_the_log_filter_blanks_the_webhook_url_and_its_path(settings):
    settings.DASHBOARD_ALERT_WEBHOOK_URL = f"https://hooks.example.com/services/{SECRET}"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "POST %s and /services/%s", None, None)
    record.args = (settings.DASHBOARD_ALERT_WEBHOOK_URL, SECRET)
    RedactSecretsFilter().filter(record)
    assert SECRET not in record.getMessage()


def test_a_finished_fleet_sync_queues_an_evaluation(monkeypatch):
    """The last instance of a fleet run, synced by its task against the simulator, queues the evaluation."""
    from backups.dcs.client import DcsClient
    from backups.simulator.server import SimulatorServer
    from backups.sync import planning, runs
    from tests.conftest import make_config, make_simulator

    queued = []
    monkeypatch.setattr(tasks.evaluate_alerts_task, "apply_async", lambda *a, **kw: queued.append(kw))
    with SimulatorServer(make_simulator(instances=1), host="127.0.0.1", port=0) as server:
        client = DcsClient(make_config(server.url), connect_timeout=2, read_timeout=10)
        monkeypatch.setattr(tasks.DcsClient, "from_settings", classmethod(lambda cls: client))
        run = planning.start_fleet_run(kind="full", trigger="command")
        planning.plan_fleet(run, client=client)
        items = []
        while (pk := runs.claim_next(run.pk)) is not None:
            items.append(pk)
        for pk in items[:-1]:
            tasks.sync_run_item(pk)
        assert queued == []  # not before the run is done
        tasks.sync_run_item(items[-1])
    run.refresh_from_db()
    assert run.finished_at is not None
    assert len(queued) == 1


def test_notifications_wait_while_another_evaluation_holds_the_lease(email_on):
    from backups import locks

    at_risk_instance()
    other = locks.acquire("alerts:deliver", holder="another-worker", ttl=60)
    evaluation = evaluate_alerts(now=NOW)
    assert evaluation.deliveries.busy and mail.outbox == []
    other.release()
    evaluate_alerts(now=NOW + timedelta(minutes=5))
    assert len(mail.outbox) == 1


def test_a_template_that_does_not_render_json_is_a_failed_delivery(webhook, settings, tmp_path):
    template = tmp_path / "hook.json"
    template.write_text("not json {{ summary }}")
    settings.DASHBOARD_ALERT_WEBHOOK_FORMAT = "template"
    settings.DASHBOARD_ALERT_WEBHOOK_TEMPLATE = str(template)
    at_risk_instance()
    evaluate_alerts(now=NOW)
    [delivery] = AlertDelivery.objects.all()
    assert not delivery.ok and "did not render JSON" in delivery.error
    assert webhook.received == []


def test_a_failing_digest_is_tried_up_to_the_cap_in_a_day(webhook, settings):
    webhook.answers = [(500, b"down")] * 10
    for minutes in range(0, 90, 15):
        send_digest(now=NOW + timedelta(minutes=minutes))
    assert AlertDelivery.objects.filter(event="digest").count() == settings.DASHBOARD_ALERT_MAX_ATTEMPTS


def test_the_digest_dry_run_prints_it_and_sends_nothing(email_on):
    at_risk_instance(name="orders")
    evaluate_alerts(now=timezone.now())
    mail.outbox.clear()
    out = StringIO()
    call_command("send_alerts", "--digest", "--dry-run", "--force", stdout=out)
    assert "Daily digest" in out.getvalue() and "orders" in out.getvalue()
    assert mail.outbox == [] and not AlertDelivery.objects.filter(event="digest").exists()


def test_the_filter_form_gets_the_table_region_back_over_htmx(client):
    at_risk_instance(name="orders")
    evaluate_alerts(now=NOW)
    viewer_client(client)
    response = client.get("/alerts/?kind=rpo", headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'id="alert-table"' in response.content.decode()


def test_the_admin_shows_alerts_and_changes_none(client):
    at_risk_instance()
    evaluate_alerts(now=NOW)
    client.force_login(User.objects.create_superuser("root", password="not-a-real-password-1"))
    alert = Alert.objects.get()
    assert client.get("/admin/backups/alert/").status_code == 200
    assert client.get(f"/admin/backups/alert/{alert.pk}/change/").status_code == 200
    assert client.get("/admin/backups/alert/add/").status_code == 403
    assert client.get("/admin/backups/alertdelivery/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_at_once_open_each_alert_once_and_send_each_once(email_on):
    failing = healthy_instance()
    make_record(failing, status="failed", created_at=NOW - HOUR)
    at_risk_instance()
    start, errors = threading.Barrier(2), []

    def evaluate():
        try:
            start.wait(timeout=10)
            evaluate_alerts(now=NOW)
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=evaluate) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    assert Alert.objects.count() == 2
    # Whatever the interleaving (one may have found the lease taken), the next
    # evaluation leaves every opening sent exactly once.
    evaluate_alerts(now=NOW + timedelta(minutes=5))
    assert len(mail.outbox) == 2
    assert AlertDelivery.objects.filter(ok=True).count() == 2
