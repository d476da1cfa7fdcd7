"""``/healthz``: database, broker, workers and sync freshness as JSON; 200 only when all are well."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from backups.models import WorkerHeartbeat
from tests.factories import make_sync_run

pytestmark = pytest.mark.django_db
URL = "/healthz"
ALL_HEALTHY = {"database": True, "broker": True, "worker": True, "sync": True}


def verdicts(body: dict) -> dict[str, bool]:
    return {name: check["ok"] for name, check in body["checks"].items()}


@pytest.fixture
def client():
    # Anonymous on purpose: monitors and load balancers do not sign in.
    return Client()


def beat(*, age: timedelta = timedelta(seconds=5), hostname: str = "worker@db-host-17.internal"):
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        hostname=hostname, started_at=now - timedelta(hours=1), last_seen=now - age
    )


def synced(*, age: timedelta = timedelta(minutes=2), outcome: str = "succeeded"):
    finished = timezone.now() - age
    return make_sync_run(started_at=finished - timedelta(seconds=30), finished_at=finished, outcome=outcome)


def test_it_answers_200_when_everything_is_healthy(client):
    beat()
    synced()
    response = client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert verdicts(body) == ALL_HEALTHY
    assert body["checks"]["sync"]["state"] == "fresh"
    assert body["checks"]["sync"]["age_seconds"] == pytest.approx(120, abs=5)
    assert body["checks"]["worker"]["age_seconds"] == pytest.approx(5, abs=5)
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]


def test_it_needs_no_sign_in(client):
    response = client.get(URL)
    assert response.status_code in (200, 503)
    assert response["Content-Type"] == "application/json"


def test_it_answers_503_without_a_live_worker(client):
    beat(age=timedelta(minutes=5))
    synced()
    response = client.get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["sync"]["ok"] is True


def test_it_answers_503_when_the_worker_has_stopped(client):
    beat()
    WorkerHeartbeat.objects.update(stopped_at=timezone.now())
    synced()
    assert client.get(URL).json()["checks"]["worker"]["ok"] is False


@pytest.mark.parametrize(
    ("run", "state"),
    [
        (None, "never"),
        ({"age": timedelta(hours=2)}, "stale"),
        ({"outcome": "failed"}, "failed"),
        ({"outcome": "partial"}, "partial"),
    ],
)
def test_it_answers_503_when_the_sync_is_not_fresh(client, run, state):
    beat()
    if run is not None:
        synced(**run)
    response = client.get(URL)
    assert response.status_code == 503
    assert response.json()["checks"]["sync"] == {
        **response.json()["checks"]["sync"],
        "ok": False,
        "state": state,
    }


def test_it_answers_503_when_the_broker_is_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://:hunter2-broker-password@127.0.0.1:1/0"
    beat()
    synced()
    response = client.get(URL)
    assert response.status_code == 503
    broker = response.json()["checks"]["broker"]
    assert broker == {"ok": False, "kind": "redis"}
    assert b"hunter2" not in response.content


def test_it_answers_503_when_the_database_is_down(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused: host=db.internal password=secret")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == {"ok": False}
    assert body["checks"]["worker"] == {"ok": False}
    assert b"secret" not in response.content
    assert b"db.internal" not in response.content


def test_it_says_nothing_sensitive(client, settings):
    beat(hostname="worker@db-host-17.internal")
    run = synced(outcome="failed")
    run.errors = [{"scope": "instance prod-payments", "message": "APIG.0301 for AK AKSECRETISH"}]
    run.save()
    body = client.get(URL).content.decode()
    for secret in (
        "db-host-17",
        "prod-payments",
        "AKSECRETISH",
        settings.CELERY_BROKER_URL,
        settings.SECRET_KEY,
    ):
        assert secret not in body


def test_it_runs_a_constant_number_of_queries(client, django_assert_max_num_queries):
    beat()
    for n in range(20):
        synced(age=timedelta(minutes=n + 1), outcome="partial" if n % 3 else "succeeded")
    with django_assert_max_num_queries(5):
        client.get(URL)


def test_it_refuses_a_post(client):
    assert client.post(URL).status_code == 405


def test_it_is_not_redirected_to_https_in_production(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get(URL).status_code in (200, 503)
    assert client.get("/metrics").status_code == 404  # neither token nor allow-list: not there
    assert client.get("/backups/").status_code == 301


def test_it_answers_a_head_request(client):
    # Some load balancers probe with HEAD.
    response = client.head(URL)
    assert response.status_code in (200, 503)
    assert response.content == b""
