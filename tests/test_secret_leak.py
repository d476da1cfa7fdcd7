"""The SK and the security token never show: not in pages, exports, the admin, logs or errors.

A real sync runs against the simulator with a unique SK and token, then a
second one with a wrong SK (the API answers 401), all with every logger at
DEBUG. Then every page, export, admin page and error page is fetched, and the
secrets are searched for everywhere the test can see.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib import admin

from backups.dcs.client import DcsClient
from backups.dcs.config import DcsConfig
from backups.models import BackupRecord, DcsInstance, SyncError, SyncRun
from backups.simulator.server import DcsSimulator, SimulatorServer
from backups.sync import sync_fleet
from dashboard.logformat import JsonFormatter
from tests.conftest import PROJECTS

AK = "LEAKTESTACCESSKEY01"
SK = "sk-LEAK-3f9a1c77e2b54d0c9e1b2a6f8d4c7e05"
WRONG_SK = "sk-WRONG-81d2c4b6a0e94f17b3c5d7e9f1a2b4c6"
TOKEN = "tok-LEAK-a1b2c3d4e5f60718293a4b5c6d7e8f9"
SECRETS = (SK, WRONG_SK, TOKEN)


def _config(url: str, secret_key: str) -> DcsConfig:
    return DcsConfig(
        access_key=AK, secret_key=secret_key, projects=PROJECTS, endpoint_override=url, security_token=TOKEN
    )


def _assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"
        # Fragments too: a secret cut short in a message still leaks.
        assert secret[3:20] not in text, f"part of a secret leaked into {where}"


@pytest.fixture
def synced(db, settings, caplog):
    settings.DCS_AK = AK
    settings.DCS_SK = SK
    settings.DCS_SECURITY_TOKEN = TOKEN
    for name in (None, "urllib3", "backups", "django", "requests", "celery"):
        caplog.set_level(logging.DEBUG, logger=name)
    simulator = DcsSimulator(
        projects={p.project_id: p.region for p in PROJECTS}, credentials={AK: SK}, instances=4, seed=11
    )
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        good = sync_fleet(client=DcsClient(_config(server.url, SK), connect_timeout=2, read_timeout=10))
        bad = sync_fleet(client=DcsClient(_config(server.url, WRONG_SK), connect_timeout=2, read_timeout=10))
    return good, bad


def test_it_never_shows_the_sk_or_the_token(admin_client, synced, caplog, settings):
    good, _bad = synced
    assert good.outcome == "succeeded"
    assert BackupRecord.objects.exists()
    errors = list(SyncError.objects.all())
    assert errors, "the wrong SK must have produced errors"
    assert any(e.status == 401 for e in errors)

    urls = ["/", "/backups/", "/instances/", "/sync/", "/no-such-page/", "/backups/no-such-backup/"]
    urls += [f"/sync/{run.pk}/" for run in SyncRun.objects.all()]
    urls += [f"/instances/{i.instance_id}/" for i in DcsInstance.objects.all()]
    urls += [
        f"/instances/{i.instance_id}/?_export={f}"
        for i in DcsInstance.objects.all()[:1]
        for f in ("csv", "json")
    ]
    urls += [f"/backups/{r.backup_id}/" for r in BackupRecord.objects.all()[:10]]
    urls += ["/backups/?_export=csv", "/backups/?_export=json", "/admin/"]
    for model, _model_admin in admin.site._registry.items():
        if model._meta.app_label != "backups":
            continue
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        urls.append(base)
        first = model._default_manager.first()
        if first is not None:
            urls.append(f"{base}{first.pk}/change/")

    for url in urls:
        response = admin_client.get(url)
        assert response.status_code in (200, 404), url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        _assert_clean(url, body.decode())
        _assert_clean(f"headers of {url}", str(dict(response.headers)))

    # The URLs for machines, and a JSON log line of every record.
    settings.METRICS_TOKEN = "metrics-token-for-the-leak-test"
    for url, headers in (
        ("/healthz", {}),
        ("/metrics", {"HTTP_AUTHORIZATION": f"Bearer {settings.METRICS_TOKEN}"}),
    ):
        response = admin_client.get(url, **headers)
        assert response.status_code in (200, 503), url
        _assert_clean(url, response.content.decode())
    formatter = JsonFormatter()
    _assert_clean("the JSON logs", "\n".join(formatter.format(record) for record in caplog.records))

    for error in errors:
        _assert_clean("a SyncError row", " ".join(str(v) for v in vars(error).values()))
    for run in SyncRun.objects.all():
        _assert_clean("a SyncRun row", " ".join(str(v) for v in vars(run).values()))
    log = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''} {r.exc_info!r}" for r in caplog.records)
    assert caplog.records, "the sync logs something at DEBUG"
    _assert_clean("the logs", log + caplog.text)


def test_it_keeps_secrets_out_of_the_reprs(settings):
    config = _config("http://127.0.0.1:1", SK)
    client = DcsClient(config)
    for text in (repr(config), str(config), repr(client), str(client), repr(vars(client))):
        for secret in (SK, TOKEN):
            assert secret not in text
