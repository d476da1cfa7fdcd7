"""What the pages can say about the sync machinery: is the broker up, are workers alive.

:func:`health` never raises because Redis is down or slow: it asks the broker
with a 0.5 s timeout and reports what it found. The facts about workers and
runs come from the database, which the pages need anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone

from backups.choices import SyncOutcome
from backups.db import select_scalars
from backups.models import SyncRun, WorkerHeartbeat

BROKER_TIMEOUT = 0.5  # seconds
# Workers write a heartbeat every WORKER_HEARTBEAT_SECONDS; one silent for
# longer than this is taken for gone.
WORKER_HEARTBEAT_SECONDS = 15
WORKER_SILENT_AFTER = timedelta(seconds=4 * WORKER_HEARTBEAT_SECONDS)
QUEUE = "celery"  # Celery's default queue: every task of ours goes there


@dataclass(frozen=True)
class BrokerState:
    kind: str  # "redis" or "filesystem"
    reachable: bool
    error: str = ""  # never the URL: it may carry a password
    queued: int | None = None  # messages waiting in our queue, when the broker says


@dataclass(frozen=True)
class SyncHealth:
    checked_at: datetime
    broker: BrokerState
    last_worker_activity: datetime | None  # the newest heartbeat of any worker, stopped or not
    workers_alive: bool  # a worker that has not stopped sent a heartbeat recently
    running_runs: int
    last_run_finished_at: datetime | None  # any scope, skipped runs aside

    @property
    def ok(self) -> bool:
        return self.broker.reachable and self.workers_alive


def broker_state(timeout: float = BROKER_TIMEOUT) -> BrokerState:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return BrokerState("filesystem", False, f"the queue folder {folder} is missing or not writable")
        try:
            queued = sum(1 for name in os.listdir(folder) if name.endswith(f".{QUEUE}.msg"))
        except OSError as exc:
            return BrokerState("filesystem", False, f"{type(exc).__name__}: {exc.strerror}")
        return BrokerState("filesystem", True, queued=queued)

    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        queued = client.llen(QUEUE)
    except (redis.RedisError, OSError) as exc:
        return BrokerState("redis", False, f"{type(exc).__name__}: {str(exc)[:200]}")
    except ValueError as exc:  # a malformed URL
        return BrokerState("redis", False, f"{type(exc).__name__}")
    finally:
        client.close()
    return BrokerState("redis", True, queued=int(queued))


def health_queries() -> dict[str, QuerySet]:
    """The database's part of :func:`health`: one-value queries, for ``select_scalars`` or subqueries.

    Each reads an index or a table of a few rows (one per worker), however
    long the history of runs.
    """
    beats = WorkerHeartbeat.objects.order_by("-last_seen").values("last_seen")
    running = SyncRun.objects.filter(outcome=SyncOutcome.RUNNING).order_by()
    return {
        "health_last_beat": beats[:1],
        "health_last_running_beat": beats.filter(stopped_at__isnull=True)[:1],
        "health_running_runs": running.values("outcome").annotate(n=Count("pk")).values("n"),
        "health_last_finished": SyncRun.objects.finished().order_by("-started_at").values("finished_at")[:1],
    }


def health_from(values, *, now: datetime) -> SyncHealth:
    """A SyncHealth from the values of :func:`health_queries` (a dict, or a row annotated with them)."""
    get = values.get if isinstance(values, dict) else lambda name: getattr(values, name)
    last_running = get("health_last_running_beat")
    return SyncHealth(
        checked_at=now,
        broker=broker_state(),
        last_worker_activity=get("health_last_beat"),
        workers_alive=last_running is not None and now - last_running <= WORKER_SILENT_AFTER,
        running_runs=get("health_running_runs") or 0,
        last_run_finished_at=get("health_last_finished"),
    )


def health(*, now: datetime | None = None) -> SyncHealth:
    """Broker, workers and runs in one query and one broker round trip (≤ 0.5 s)."""
    now = now or timezone.now()
    return health_from(select_scalars(**health_queries()), now=now)


__all__ = ["BrokerState", "SyncHealth", "broker_state", "health", "health_from", "health_queries"]
