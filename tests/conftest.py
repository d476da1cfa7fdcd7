"""Shared fixtures: a DCS simulator on loopback and a client that talks to it.

The cloud is faked at the HTTP boundary only: tests run our real client
against the real simulator over real HTTP.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backups.dcs.client import DcsClient
from backups.dcs.config import DcsConfig, DcsProject
from backups.simulator.server import DcsSimulator, SimulatorServer

TEST_AK = "TESTACCESSKEY0000"
TEST_SK = "test-secret-key-not-a-real-one"
PROJECTS = (
    DcsProject("cn-north-4", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
    DcsProject("ap-southeast-1", "f9e8d7c6b5a40392817f6e5d4c3b2a10"),
)


class FakeClock:
    """A clock the test moves by hand; the simulator and our code share it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, dropped only once no other session uses it (PostgreSQL).

    A process a test ended (a Celery worker it killed) closes its
    connection as it dies, but the server's side may still be on its way out
    when the last test ends; DROP DATABASE refuses a database in use, and the
    next run would find it there. A session that stays longer than this is a
    leak and fails the drop as before, named in a warning (the one seen
    before: Playwright's event loop kept for the session, tests/browser/conftest.py).
    """
    yield
    with django_db_blocker.unblock():
        _wait_for_other_sessions(seconds=15)


def _wait_for_other_sessions(*, seconds: float) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT application_name, state, backend_start, left(query, 200) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            others = cursor.fetchall()
            if not others:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    warnings.warn(f"sessions left on the test database: {others}", stacklevel=1)


BASE_DIR = Path(__file__).resolve().parent.parent


def manage_py(*args: str, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``manage.py ARGS`` in a process of its own, from the project's folder, with exactly ``env``.

    For what only a fresh process shows: settings read at start-up, and what
    the command line prints and exits with.
    """
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _no_event_loop_left_running(request):
    """No test but a browser test starts with an event loop running in its thread.

    A loop left running (Playwright's, kept past its tests) makes the thread
    count as async: the ORM goes onto connections of its own, which nothing
    closes (tests/browser/conftest.py: ``browser``).
    """
    if request.node.get_closest_marker("browser") is None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            pytest.fail("an event loop is running in this thread: a fixture left it so")


@pytest.fixture(autouse=True)
def _clear_cache():
    """Counts and aggregates are cached; one test's must not leak into the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def sim_clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC))


def make_simulator(clock=None, instances: int = 12, seed: int = 7, **kwargs) -> DcsSimulator:
    return DcsSimulator(
        projects={p.project_id: p.region for p in PROJECTS},
        credentials={TEST_AK: TEST_SK},
        instances=instances,
        seed=seed,
        clock=clock,
        **kwargs,
    )


@pytest.fixture
def simulator() -> DcsSimulator:
    """A small deterministic fleet on the real clock."""
    return make_simulator()


@pytest.fixture
def simulator_server(simulator):
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield server


def make_config(url: str, **kwargs) -> DcsConfig:
    return DcsConfig(
        access_key=TEST_AK, secret_key=TEST_SK, projects=PROJECTS, endpoint_override=url, **kwargs
    )


@pytest.fixture
def dcs_config(simulator_server) -> DcsConfig:
    return make_config(simulator_server.url)


@pytest.fixture
def dcs_client(dcs_config) -> DcsClient:
    return DcsClient(dcs_config, connect_timeout=2, read_timeout=10)


@pytest.fixture
def clocked_simulator(sim_clock) -> DcsSimulator:
    """A fleet on a clock the test moves by hand."""
    return make_simulator(clock=sim_clock)


@pytest.fixture
def clocked_client(clocked_simulator, sim_clock):
    """A client whose signatures use the same hand-moved clock as the simulator."""
    with SimulatorServer(clocked_simulator, host="127.0.0.1", port=0) as server:
        yield DcsClient(make_config(server.url), connect_timeout=2, read_timeout=10, clock=sim_clock)
