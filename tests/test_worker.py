"""A real Celery worker process runs a real sync against the simulator over HTTP.

On `make test` the broker is the embedded filesystem transport and the
database SQLite; in `.ci/run`'s second leg they are the machine's Redis and
PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from backups import tasks
from backups.choices import SyncOutcome
from backups.models import BackupRecord, SyncRun
from dashboard.celery import app
from tests.conftest import PROJECTS, TEST_AK, TEST_SK

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parent.parent


def _test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or ""
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(simulator_server, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DASHBOARD_DATA_DIR": str(settings.DATA_DIR),
        "HUAWEICLOUD_SDK_AK": TEST_AK,
        "HUAWEICLOUD_SDK_SK": TEST_SK,
        "DCS_PROJECTS": ",".join(f"{p.region}:{p.project_id}" for p in PROJECTS),
        "DCS_ENDPOINT": simulator_server.url,
        "DCS_SYNC_ON_WORKER_START": "false",
    }
    app.control.purge()
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dashboard",
                "worker",
                "--pool",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_real_worker_syncs_the_fleet(worker, simulator):
    process, log_path = worker
    tasks.sync_fleet.delay()

    deadline = time.monotonic() + 90
    run = None
    while time.monotonic() < deadline:
        run = SyncRun.objects.filter(finished_at__isnull=False).first()
        if run is not None or process.poll() is not None:
            break
        time.sleep(0.5)
    log = log_path.read_text()
    assert run is not None, f"the worker finished no sync; its log:\n{log[-4000:]}"

    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    expected = sum(
        len(simulator.list_backups(p.project_id, i["instance_id"]))
        for p in PROJECTS
        for i in simulator.list_instances(p.project_id)
    )
    # Running backups may have started since, but none may be missing.
    assert BackupRecord.objects.count() >= expected > 0
    assert "backups.sync_fleet" in log
    assert TEST_SK not in log
