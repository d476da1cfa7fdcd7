"""``/metrics``: the Prometheus text format, behind a bearer token or an IP allow-list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from backups.dcs.config import DcsConfig
from backups.models import WorkerHeartbeat
from dashboard.env import envcidrs
from tests.factories import make_instance, make_record, make_sync_run

pytestmark = pytest.mark.django_db
URL = "/metrics"
TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    return TOKEN


def scrape(**extra) -> str:
    response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture
def fleet():
    now = timezone.now()
    east = make_instance(name="east", region="cn-north-4")
    west = make_instance(name="west", region="ap-southeast-1")
    make_instance(name="never-backed-up")
    make_instance(name="gone", gone_at=now - timedelta(days=1))
    make_record(east, status="succeed", created_at=now - timedelta(hours=2))
    make_record(east, status="failed", created_at=now - timedelta(hours=3))
    make_record(west, status="succeed", created_at=now - timedelta(days=5))  # west is at risk
    make_record(west, status="expired", created_at=now - timedelta(days=9))
    fleet_run = make_sync_run(
        kind="full",
        started_at=now - timedelta(minutes=10),
        finished_at=now - timedelta(minutes=9, seconds=18),
        api_calls=44,
        retries=3,
        throttles=2,
    )
    fleet_run.errors = [
        {
            "scope": "west",
            "error": "DcsThrottled",
            "status": 429,
            "error_code": "APIG.0308",
            "message": "slow",
        },
        {
            "scope": "west",
            "error": "DcsThrottled",
            "status": 429,
            "error_code": "APIG.0308",
            "message": "slow",
        },
        {"scope": "east", "error": "DcsServerError", "status": 500, "error_code": "DCS.5000", "message": "x"},
    ]
    fleet_run.save()
    make_sync_run(kind="incremental", outcome="partial", started_at=now - timedelta(minutes=4), api_calls=5)
    WorkerHeartbeat.objects.create(hostname="w@h", started_at=now, last_seen=now)
    return now, fleet_run


# --- access -----------------------------------------------------------------------


def test_it_is_not_there_without_a_token_or_an_allow_list(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", []
    response = Client().get(URL)
    assert response.status_code == 404
    assert b"dcs_dashboard" not in response.content


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token-000000000000", f"Basic {TOKEN}", f"Bearer {TOKEN}x"]
)
def test_it_answers_401_without_the_right_token(token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get(URL, **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"dcs_dashboard" not in response.content


def test_it_answers_the_right_token_without_a_sign_in(token):
    assert Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client().get(URL, HTTP_AUTHORIZATION=f"bearer  {TOKEN} ").status_code == 200


@pytest.mark.parametrize(
    ("allowed", "address", "status"),
    [
        ("127.0.0.1", "127.0.0.1", 200),
        ("10.0.0.0/8,192.168.1.0/24", "10.20.30.40", 200),
        ("10.0.0.0/8", "11.0.0.1", 403),
        ("::1,fd00::/8", "fd00::17", 200),
        ("10.0.0.0/8", "not-an-address", 403),
    ],
)
def test_it_answers_addresses_on_the_allow_list(settings, monkeypatch, allowed, address, status):
    monkeypatch.setenv("X_ALLOWED", allowed)
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", envcidrs("X_ALLOWED")
    assert Client().get(URL, REMOTE_ADDR=address).status_code == status


def test_it_takes_either_the_token_or_an_allowed_address(settings, monkeypatch):
    monkeypatch.setenv("X_ALLOWED", "10.0.0.0/8")
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = TOKEN, envcidrs("X_ALLOWED")
    assert Client().get(URL, REMOTE_ADDR="10.1.1.1").status_code == 200
    assert Client().get(URL, REMOTE_ADDR="8.8.8.8").status_code == 401
    assert Client().get(URL, REMOTE_ADDR="8.8.8.8", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


# --- content ----------------------------------------------------------------------


def test_it_counts_records_by_status_region_and_project(token, fleet):
    text = scrape()
    stored = samples(text, "dcs_dashboard_backup_records")
    by_status: dict[str, float] = {}
    for labels, value in stored.items():
        by_status[dict(labels)["status"]] = by_status.get(dict(labels)["status"], 0) + value
    assert by_status == {"succeed": 2, "failed": 1, "expired": 1}
    assert {dict(labels)["region"] for labels in stored} == {"cn-north-4", "ap-southeast-1"}
    created = {
        dict(labels)["status"]: value
        for labels, value in samples(text, "dcs_dashboard_backups_created_24h").items()
    }
    assert created["succeed"] == 1
    assert created["failed"] == 1


def test_it_reports_the_fleet_and_instances_at_risk(token, fleet):
    text = scrape()
    assert samples(text, "dcs_dashboard_instances") == {(("state", "listed"),): 3, (("state", "gone"),): 1}
    assert samples(text, "dcs_dashboard_instances_at_risk") == {(): 2}  # west, and never-backed-up
    # The default RPO (DASHBOARD_RPO_HOURS); policies may set others per instance.
    assert samples(text, "dcs_dashboard_at_risk_threshold_seconds") == {(): 26 * 3600}


def test_it_reports_sync_duration_outcome_and_api_calls(token, fleet):
    _now, fleet_run = fleet
    text = scrape()
    assert samples(text, "dcs_dashboard_sync_last_duration_seconds")[(("kind", "full"),)] == 42
    assert samples(text, "dcs_dashboard_sync_last_outcome") == {
        (("kind", "full"), ("outcome", "succeeded")): 1,
        (("kind", "incremental"), ("outcome", "partial")): 1,
    }
    assert samples(text, "dcs_dashboard_sync_runs_24h") == {
        (("kind", "full"), ("outcome", "succeeded")): 1,
        (("kind", "incremental"), ("outcome", "partial")): 1,
    }
    assert samples(text, "dcs_dashboard_sync_api_calls_24h") == {
        (("kind", "full"),): 44,
        (("kind", "incremental"),): 5,
    }
    assert samples(text, "dcs_dashboard_sync_retries_24h")[(("kind", "full"),)] == 3
    assert samples(text, "dcs_dashboard_sync_throttles_24h")[(("kind", "full"),)] == 2
    assert samples(text, "dcs_dashboard_sync_last_success_timestamp_seconds") == {
        (): pytest.approx(fleet_run.finished_at.timestamp())
    }
    # The newest fleet run was partial: not fresh, as /healthz and the overview say.
    assert samples(text, "dcs_dashboard_sync_fresh") == {(): 0}


def test_it_counts_api_errors_and_throttles_by_code(token, fleet):
    errors = samples(scrape(), "dcs_dashboard_api_errors_24h")
    assert errors == {
        (("code", "APIG.0308"), ("status", "429")): 2,
        (("code", "DCS.5000"), ("status", "500")): 1,
    }


def test_it_reports_the_broker_and_the_workers(token, fleet):
    text = scrape()
    assert samples(text, "dcs_dashboard_broker_up") == {(): 1}
    assert samples(text, "dcs_dashboard_workers_alive") == {(): 1}
    assert samples(text, "dcs_dashboard_worker_last_heartbeat_timestamp_seconds")[()] > 0


def test_it_reports_an_empty_dashboard(token):
    text = scrape()
    assert samples(text, "dcs_dashboard_sync_last_success_timestamp_seconds") == {(): 0}
    assert samples(text, "dcs_dashboard_instances_at_risk") == {(): 0}


def test_it_shows_no_secret(token, fleet, settings):
    settings.DCS_SK, settings.DCS_SECURITY_TOKEN = "sk-must-not-leak-0000", "token-must-not-leak-0000"
    text = scrape()
    for secret in (settings.DCS_SK, settings.DCS_SECURITY_TOKEN, TOKEN, settings.SECRET_KEY):
        assert secret not in text
    assert "DcsConfig" not in text and DcsConfig.__name__ not in text


def test_it_runs_the_same_number_of_queries_whatever_the_size(token, fleet):
    with CaptureQueriesContext(connection) as small:
        scrape()
    now = timezone.now()
    for n in range(30):
        instance = make_instance(name=f"more-{n}")
        make_record(instance, status="failed", created_at=now - timedelta(hours=n))
        make_sync_run(kind="active", started_at=now - timedelta(minutes=n))
    cache.clear()  # the stored-record counts are remembered for a minute
    with CaptureQueriesContext(connection) as large:
        scrape()
    assert len(small.captured_queries) == len(large.captured_queries) <= 8
    with CaptureQueriesContext(connection) as cached:
        scrape()
    assert len(cached.captured_queries) == len(large.captured_queries) - 1


def test_it_remembers_the_stored_counts_for_a_minute(token, fleet):
    before = samples(scrape(), "dcs_dashboard_backup_records")
    make_record(status="failed")
    assert samples(scrape(), "dcs_dashboard_backup_records") == before
    cache.clear()
    assert sum(samples(scrape(), "dcs_dashboard_backup_records").values()) == sum(before.values()) + 1
