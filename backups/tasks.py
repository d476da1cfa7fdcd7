"""Celery tasks: thin wrappers that take ids and call the sync service.

Every task may run twice (``acks_late`` with ``task_reject_on_worker_lost``: a
task whose worker died is delivered again) and is idempotent: a run started by
a task is found again by its task id and resumed, an item that is done is not
synced or counted again.

Retries: a task is retried only for a database hiccup (a lost connection, a
locked SQLite file), at most three times with backoff. Failures of the DCS API
are retried by the client alone (one layer), then recorded on the run.
"""

from __future__ import annotations

import logging
import socket
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from backups import retention, sync
from backups.choices import SyncOutcome
from backups.dcs.client import DcsClient
from backups.models import DcsInstance, SyncKind, SyncRun, SyncRunItem, SyncTrigger, WorkerHeartbeat
from backups.sync import items, planning, runs
from backups.sync.health import WORKER_HEARTBEAT_SECONDS, broker_state

logger = logging.getLogger(__name__)

RETRY_TRANSIENT = {
    "autoretry_for": (OperationalError, InterfaceError),
    "max_retries": 3,
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "retry_jitter": True,
}


def _dispatch_item(item_pk: int) -> None:
    sync_run_item.apply_async(args=[item_pk])


def _client_or_abandon(run_id: int) -> DcsClient | None:
    try:
        return DcsClient.from_settings()
    except ImproperlyConfigured as exc:
        runs.abandon_run(run_id, reason=f"configuration: {exc}", error="ImproperlyConfigured")
        return None


@shared_task(bind=True, name="backups.sync_fleet", **RETRY_TRANSIENT)
def sync_fleet(
    self, kind: str = planning.AUTO, trigger: str = SyncTrigger.BEAT, user_id: int | None = None
) -> int:
    """List the instances, then fan out one ``sync_run_item`` task per instance."""
    run = planning.start_fleet_run(
        kind=kind, trigger=trigger, requested_by_id=user_id, task_id=self.request.id or ""
    )
    if run.outcome == SyncOutcome.RUNNING:
        if run.planned_at is None:
            client = _client_or_abandon(run.pk)
            if client is None:
                return run.pk
            planning.plan_fleet(run, client=client)
        runs.dispatch_window(run, dispatch=_dispatch_item)
    return run.pk


@shared_task(bind=True, name="backups.sync_run_item", **RETRY_TRANSIENT)
def sync_run_item(self, item_pk: int) -> None:
    """Sync one instance of a run, then hand the run's next instance to a worker."""
    run_id = SyncRunItem.objects.filter(pk=item_pk).values_list("run_id", flat=True).first()
    if run_id is None:  # pruned since it was queued: nothing to do
        return
    client = _client_or_abandon(run_id)
    if client is None:
        return
    items.run_item(item_pk, client=client)
    finished = runs.advance_run(run_id, dispatch=_dispatch_item)
    if finished is not None and finished.scope == SyncRun.FLEET_SCOPE:
        _queue_alert_evaluation()


@shared_task(bind=True, name="backups.sync_instance", **RETRY_TRANSIENT)
def sync_instance(
    self, instance_pk: int, trigger: str = SyncTrigger.USER, user_id: int | None = None
) -> int | None:
    """A full sync of one instance, run inside this task."""
    instance = DcsInstance.objects.filter(pk=instance_pk).first()
    if instance is None:  # deleted since the task was queued: nothing to do
        return None
    run = sync.sync_instance(
        instance=instance, trigger=trigger, requested_by_id=user_id, task_id=self.request.id or ""
    )
    return run.pk


@shared_task(bind=True, name="backups.sync_active_instances", **RETRY_TRANSIENT)
def sync_active_instances(self) -> int | None:
    run = planning.start_active_run(trigger=SyncTrigger.BEAT, task_id=self.request.id or "")
    if run is None:
        return None
    runs.dispatch_window(run, dispatch=_dispatch_item)
    return run.pk


@shared_task(name="backups.sync_housekeeping", **RETRY_TRANSIENT)
def sync_housekeeping() -> dict:
    """Finish stuck runs; drop old run items and runs past their retention."""
    reaped = runs.reap_stuck_runs()
    pruned = runs.prune_history()
    return {"reaped": [run.pk for run in reaped], **pruned}


@shared_task(name="backups.apply_retention", **RETRY_TRANSIENT)
def apply_retention() -> dict:
    """Beat's daily retention, when DASHBOARD_RETENTION_GONE_DAYS is set (nothing otherwise)."""
    if not settings.DASHBOARD_RETENTION_GONE_DAYS:
        return {"records_deleted": 0, "off": True}
    return retention.prune_gone_records().as_dict()


# --- Alerts (backups/alerts/) ------------------------------------------------------


@shared_task(name="backups.evaluate_alerts", **RETRY_TRANSIENT)
def evaluate_alerts_task() -> dict:
    """Open and resolve alerts, and send what is pending (beat, and after each fleet sync)."""
    from backups.alerts.evaluate import evaluate_alerts

    return evaluate_alerts().as_dict()


@shared_task(name="backups.send_alert_digest", **RETRY_TRANSIENT)
def send_alert_digest_task() -> dict:
    """The daily digest, when it is due and not sent yet today (beat asks every quarter hour)."""
    from backups.alerts.digest import send_digest

    report = send_digest()
    return {"due": report.due, "sent": report.sent, "failed": report.failed, "busy": report.busy}


def _queue_alert_evaluation() -> None:
    # The fleet's data just changed: alerts need not wait for beat. A broker
    # hiccup here must not fail the sync; beat evaluates in a few minutes anyway.
    try:
        evaluate_alerts_task.apply_async(expires=settings.DASHBOARD_ALERT_EVERY_MINUTES * 60)
    except Exception:
        logger.warning("could not queue the alert evaluation after a fleet sync", exc_info=True)


# --- "Sync now" -----------------------------------------------------------------


class SyncUnavailable(Exception):
    """The broker cannot take a sync request now; the message says why (never the URL)."""


def request_sync(*, instance: DcsInstance | None = None, user=None, kind: str = SyncKind.FULL) -> None:
    """Queue a sync of the fleet or of one instance once the current transaction commits.

    Raises SyncUnavailable within about half a second when the broker is down,
    so a "Sync now" button can say so at once.
    """
    state = broker_state()
    if not state.reachable:
        raise SyncUnavailable(state.error or "the broker is not reachable")
    user_id = getattr(user, "pk", None)
    # A tight publish retry: the broker answered a moment ago.
    policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
    if instance is None:
        kwargs = {"kind": kind, "trigger": SyncTrigger.USER, "user_id": user_id}

        def send():
            sync_fleet.apply_async(kwargs=kwargs, retry_policy=policy)

    else:
        kwargs = {"instance_pk": instance.pk, "trigger": SyncTrigger.USER, "user_id": user_id}

        def send():
            sync_instance.apply_async(kwargs=kwargs, retry_policy=policy)

    transaction.on_commit(send)


# --- The worker's heartbeat -------------------------------------------------------

_heartbeat: _Heartbeat | None = None


def record_heartbeat(hostname: str, *, starting: bool = False, stopping: bool = False) -> None:
    now = timezone.now()
    fields = {"last_seen": now, "stopped_at": now if stopping else None}
    if starting:
        fields["started_at"] = now
    if not WorkerHeartbeat.objects.filter(hostname=hostname).update(**fields):
        fields.setdefault("started_at", now)
        WorkerHeartbeat.objects.create(hostname=hostname, **fields)


class _Heartbeat(threading.Thread):
    """Writes the worker's heartbeat every few seconds, busy or idle."""

    def __init__(self, hostname: str) -> None:
        super().__init__(name="dashboard-heartbeat", daemon=True)
        self.hostname = hostname
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(WORKER_HEARTBEAT_SECONDS):
            try:
                record_heartbeat(self.hostname)
            except Exception:  # the database is down: the pages say so by the silence
                logger.warning("could not write the worker heartbeat", exc_info=True)
            finally:
                # A connection held between beats would be inherited by forked pool children.
                connection.close()


def _hostname(sender) -> str:
    return getattr(sender, "hostname", None) or f"celery@{socket.gethostname()}"


@worker_ready.connect
def worker_started(sender, **kwargs) -> None:
    global _heartbeat
    hostname = _hostname(sender)
    try:
        record_heartbeat(hostname, starting=True)
    except Exception:
        logger.warning("could not write the worker heartbeat", exc_info=True)
    finally:
        connection.close()
    if _heartbeat is None:
        _heartbeat = _Heartbeat(hostname)
        _heartbeat.start()
    # Without this, a fresh deployment shows nothing until beat's first tick.
    if settings.DCS_SYNC_ON_WORKER_START:
        sync_fleet.apply_async(
            kwargs={"kind": planning.AUTO, "trigger": SyncTrigger.STARTUP}, expires=settings.DCS_SYNC_INTERVAL
        )


@worker_shutdown.connect
def worker_stopping(sender, **kwargs) -> None:
    if _heartbeat is None:
        return
    _heartbeat.stopped.set()
    try:
        record_heartbeat(_heartbeat.hostname, stopping=True)
    except Exception:
        logger.warning("could not record the worker's stop", exc_info=True)
