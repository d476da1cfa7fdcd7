"""The suite's settings: the project's own, with each pytest-xdist worker kept apart.

``make test`` runs the suite in one process per core (pytest-xdist). pytest-django
already gives each worker its own test database (``test_…_gw0``); what it cannot
see is the rest of the machine state a test shares with the others: the data
folder (the embedded broker's queue, the beat schedule, the SQLite files) and
the Redis database (broker, rate limiter, cache). A Celery worker started by one
test must never take a task queued by another process's test, and a cache
cleared by one must not vanish under another, so each xdist worker gets a
folder and a Redis database of its own.

This runs before Django reads its settings: xdist names the worker in the
environment before pytest starts in that process, and the variables are set in
``os.environ`` so that the subprocesses a test starts (manage.py, gunicorn, a
Celery worker) inherit the same separation, unless the test gives them their own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Redis has databases 0-15; plain `pytest` uses 15 (REDIS_URL in .ci/run) and
# tests/test_gunicorn.py 14, so workers count down from 13.
_FIRST_WORKER_DB = 13
_REDIS_DB = re.compile(r"^(rediss?://[^/?#]*)(?:/\d*)?(\?.*)?$")


def _apart(worker: str) -> None:
    number = int(worker.removeprefix("gw"))
    data_dir = Path(os.environ.get("DASHBOARD_DATA_DIR") or Path(__file__).resolve().parent.parent / "var")
    os.environ["DASHBOARD_DATA_DIR"] = str(data_dir / f"xdist-{worker}")
    redis_url = os.environ.get("REDIS_URL", "")
    match = _REDIS_DB.match(redis_url)
    # A malformed URL is left as it is: the settings tests check how it is refused.
    if match and number <= _FIRST_WORKER_DB:
        os.environ["REDIS_URL"] = f"{match[1]}/{_FIRST_WORKER_DB - number}{match[2] or ''}"


# Once per worker: a subprocess inherits both variables, and keeps the
# folder and URL its test gave it (a tmp_path, a URL that must be refused).
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and os.environ.get("DASHBOARD_TEST_WORKER") != _worker:
    os.environ["DASHBOARD_TEST_WORKER"] = _worker
    _apart(_worker)

from dashboard.settings import *  # noqa: E402, F403
