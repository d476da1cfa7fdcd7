"""Real Celery worker processes run real syncs against the simulator over HTTP.

On `make test` the broker is the embedded filesystem transport and the
database SQLite; in `.ci/run`'s second leg they are the machine's Redis and
PostgreSQL. The simulator's clock stands still at the real now, so its truth
does not move while a test compares the database with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection
from django.utils import timezone

from backups import tasks
from backups.choices import SyncOutcome
from backups.models import SKIPPED, BackupRecord, SyncKind, SyncRun, SyncRunItem
from backups.simulator.server import SimulatorServer
from dashboard.celery import app
from tests.conftest import PROJECTS, TEST_AK, TEST_SK, FakeClock, make_simulator

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
def frozen():
    """A simulator whose clock stands still at the real now (signatures stay valid)."""
    simulator = make_simulator(clock=FakeClock(datetime.now(UTC)))
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield simulator, server


@pytest.fixture
def start_worker(tmp_path):
    """Starts worker processes (solo pool) on the test database; stops them all at the end."""
    started: list[subprocess.Popen] = []
    app.control.purge()

    def start(server: SimulatorServer, name: str = "worker", **env) -> tuple[subprocess.Popen, Path]:
        environment = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "DASHBOARD_DATA_DIR": str(settings.DATA_DIR),
            "HUAWEICLOUD_SDK_AK": TEST_AK,
            "HUAWEICLOUD_SDK_SK": TEST_SK,
            "DCS_PROJECTS": ",".join(f"{p.region}:{p.project_id}" for p in PROJECTS),
            "DCS_ENDPOINT": server.url,
            "DCS_SYNC_ON_WORKER_START": "false",
            "DCS_RATE_LIMIT": "0",
            **env,
        }
        log_path = tmp_path / f"{name}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool", "solo",
                 "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                cwd=BASE_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(process)
        return process, log_path

    yield start
    for process in started:
        # Killed outright: even a cold shutdown takes seconds on the filesystem
        # broker, and every task here is idempotent anyway.
        if process.poll() is None:
            process.kill()
        process.wait()
    app.control.purge()


def _wait_for(condition, *, timeout: float, what: str, logs: list[Path] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    tail = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
    pytest.fail(f"timed out waiting for {what}\n{tail}")


def _truth(simulator) -> set[tuple[str, str]]:
    return {
        (instance["instance_id"], record["backup_id"])
        for project in PROJECTS
        for instance in simulator.list_instances(project.project_id)
        for record in simulator.list_backups(project.project_id, instance["instance_id"])
    }


def _stored() -> list[tuple[str, str]]:
    return list(
        BackupRecord.objects.filter(gone_at__isnull=True).values_list("instance__instance_id", "backup_id")
    )


def _most_in_flight(run: SyncRun) -> int:
    """The most items of the run that were dispatched and not yet done at one moment."""
    spans = list(SyncRunItem.objects.filter(run=run).values_list("dispatched_at", "finished_at"))
    return max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)


def test_the_task_settings_stay_under_the_broker_visibility_timeout():
    # A task killed by its time limit is never still running when the broker
    # hands its message to another worker.
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT < visibility
    # Even at the largest limit the environment may set.
    assert 3000 + 60 < 3600
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_connection_max_retries is None
    for name in ("backups.sync_fleet", "backups.sync_run_item", "backups.sync_instance"):
        task = app.tasks[name]
        assert task.max_retries == 3
        assert set(task.autoretry_for) == set(tasks.RETRY_TRANSIENT["autoretry_for"])


def test_a_real_worker_fans_out_the_fleet_sync_and_refuses_an_overlapping_tick(frozen, start_worker):
    simulator, server = frozen
    _, log_path = start_worker(server, DCS_SYNC_CONCURRENCY="3")
    # Two ticks back to back: the second finds the first run's lease held.
    tasks.sync_fleet.delay(kind=SyncKind.FULL)
    tasks.sync_fleet.delay(kind=SyncKind.FULL)

    run = _wait_for(
        lambda: SyncRun.objects.fleet().exclude(outcome__in=[SKIPPED, SyncOutcome.RUNNING]).first(),
        timeout=90,
        what="a finished fleet sync",
        logs=[log_path],
    )
    log = log_path.read_text()

    assert run.outcome == SyncOutcome.SUCCEEDED, run.errors
    skipped = SyncRun.objects.get(outcome=SKIPPED)
    assert f"run #{run.pk}" in skipped.reason
    items = SyncRunItem.objects.filter(run=run)
    assert items.count() == run.instances_seen == run.instances_synced
    assert 1 <= _most_in_flight(run) <= 3
    stored = _stored()
    assert len(stored) == len(set(stored)) == run.records_new
    assert set(stored) == _truth(simulator)
    assert log.count("backups.sync_run_item") >= run.instances_seen
    assert TEST_SK not in log


def test_a_worker_killed_mid_sync_leaves_a_run_that_the_next_sync_finishes(frozen, start_worker):
    simulator, server = frozen
    env = {"DCS_SYNC_LEASE_TTL": "2", "DCS_SYNC_CONCURRENCY": "2"}
    # Slow answers (an item lists for at least 2 s), and the kill sent while
    # an item begun under 0.5 s ago is running: it lands mid-listing, never
    # in the moment between one item's commit and the next one's start,
    # which would leave the survivor a run it can finish cleanly.
    simulator.faults.configure(slow_rate=1.0, slow_seconds=1.0)
    first_worker, first_log = start_worker(server, name="doomed", **env)
    tasks.sync_fleet.delay(kind=SyncKind.FULL)

    def mid_sync():
        run = SyncRun.objects.fleet().first()
        if run is None:
            return None
        items = SyncRunItem.objects.filter(run=run)
        just_begun = timezone.now() - timedelta(seconds=0.5)
        busy = (
            items.filter(state="running", started_at__gte=just_begun).exists()
            and items.filter(state="done").exists()
        )
        return run if busy else None

    killed = _wait_for(mid_sync, timeout=60, what="a sync in progress", logs=[first_log])
    first_worker.send_signal(signal.SIGKILL)
    first_worker.wait(timeout=10)
    simulator.faults.reset()

    _, second_log = start_worker(server, name="survivor", **env)

    def next_run_done():
        # Beat's job, sped up: a fleet tick every second until one gets through.
        later = SyncRun.objects.fleet().filter(pk__gt=killed.pk).exclude(outcome=SKIPPED)
        if later.exclude(outcome=SyncOutcome.RUNNING).exists():
            return later.exclude(outcome=SyncOutcome.RUNNING).first()
        if not later.exists():
            tasks.sync_fleet.delay(kind=SyncKind.FULL)
            time.sleep(1)
        return None

    after = _wait_for(
        next_run_done, timeout=60, what="a clean sync after the kill", logs=[first_log, second_log]
    )

    killed.refresh_from_db()
    assert after.outcome == SyncOutcome.SUCCEEDED, after.errors
    assert killed.outcome in (SyncOutcome.PARTIAL, SyncOutcome.FAILED)
    assert "lease was not renewed for 2 s" in killed.reason
    assert killed.finished_at is not None
    assert not SyncRunItem.objects.filter(run=killed).exclude(state="done").exists()
    stored = _stored()
    assert len(stored) == len(set(stored)), "no duplicate rows"
    assert set(stored) == _truth(simulator)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_the_worker_carries_on_by_itself_after_redis_restarts(frozen, start_worker):
    _, server = frozen
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start_redis() -> subprocess.Popen:
        redis = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: _answers(port), timeout=10, what="redis-server")
        return redis

    redis = start_redis()
    # Not the current app: shared tasks sent by later tests in this process
    # must still go to the dashboard's broker, not to this Redis.
    publisher = Celery("probe", broker=url, set_as_current=False)
    try:
        _, log_path = start_worker(server, REDIS_URL=url)
        publisher.send_task("backups.sync_fleet", kwargs={"kind": SyncKind.FULL, "trigger": "command"})
        first = _wait_for(
            lambda: SyncRun.objects.fleet().filter(outcome=SyncOutcome.SUCCEEDED).first(),
            timeout=60,
            what="a sync through Redis",
            logs=[log_path],
        )

        redis.kill()  # a crash, not a clean shutdown
        redis.wait()
        time.sleep(1)
        redis = start_redis()
        publisher.send_task("backups.sync_fleet", kwargs={"kind": SyncKind.FULL, "trigger": "command"})

        second = _wait_for(
            lambda: SyncRun.objects.fleet().filter(pk__gt=first.pk, outcome=SyncOutcome.SUCCEEDED).first(),
            timeout=60,
            what="a sync after Redis came back",
            logs=[log_path],
        )
        assert second.records_new == 0
        assert "broker" in log_path.read_text().lower()
    finally:
        publisher.close()
        redis.kill()
        redis.wait()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
