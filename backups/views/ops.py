"""For machines, not people: ``/healthz`` for load balancers and monitors, ``/metrics`` for Prometheus.

``/healthz`` needs no sign-in and says only what is up and how old things
are: no host names, no URLs, no error texts (a broker's error can name its
host; a sync error can quote an instance). It answers 200 when the database,
the broker, a worker and the fleet sync are all healthy, 503 otherwise.

``/metrics`` needs no sign-in either, but answers only a request with
``Authorization: Bearer <METRICS_TOKEN>`` or from an address in
``METRICS_ALLOWED_IPS``; with neither configured it answers 404, so a fresh
deployment exposes nothing. Every value is read from the database on each
scrape with a constant number of queries; counts over windows are gauges
(``..._24h``), not counters, because the rows behind them are pruned and a
counter must never go down.
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.db.models import BooleanField, Count, ExpressionWrapper, Max, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from backups.exports import iso_utc
from backups.models import BackupHourlyCount, DcsInstance, SyncError, SyncRun
from backups.selectors import (
    at_risk_threshold,
    backup_status_counts,
    sync_freshness,
    with_risk,
    with_sync_staleness,
)
from backups.sync.health import WORKER_SILENT_AFTER, broker_state, health

# Recent activity is counted over this window.
WINDOW = timedelta(hours=24)
# The all-time record counts sum every row of the hourly summary: two years of
# a large fleet is some 100,000 rows, 80 ms on PostgreSQL. They change only by
# a sync's few writes, so each process remembers them for a minute.
STORED_COUNTS_CACHE_SECONDS = 60
STORED_COUNTS_CACHE_KEY = "dashboard:metrics:stored-records"
PREFIX = "dcs_dashboard_"


def _age_seconds(moment: datetime | None, now: datetime) -> float | None:
    return round((now - moment).total_seconds(), 1) if moment else None


def _iso(moment: datetime | None) -> str | None:
    return iso_utc(moment) if moment else None


# --- /healthz -------------------------------------------------------------------


def health_report(*, now: datetime | None = None) -> dict:
    """Each check's verdict and the few facts behind it; never raises because something is down."""
    now = now or timezone.now()
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        checks["database"] = {"ok": True}
    except DatabaseError:
        checks["database"] = {"ok": False}

    if checks["database"]["ok"]:
        try:
            machinery = health(now=now)
            freshness = sync_freshness(now=now)
        except DatabaseError:
            checks["database"] = {"ok": False}
    if not checks["database"]["ok"]:
        # Without the database neither the heartbeats nor the runs can be read.
        broker = broker_state()
        checks["broker"] = {"ok": broker.reachable, "kind": broker.kind}
        checks["worker"] = {"ok": False}
        checks["sync"] = {"ok": False}
    else:
        broker = machinery.broker
        checks["broker"] = {"ok": broker.reachable, "kind": broker.kind}
        checks["worker"] = {
            "ok": machinery.workers_alive,
            "last_heartbeat_at": _iso(machinery.last_worker_activity),
            "age_seconds": _age_seconds(machinery.last_worker_activity, now),
            "silent_after_seconds": int(WORKER_SILENT_AFTER.total_seconds()),
        }
        checks["sync"] = {
            "ok": freshness.state == "fresh",
            "state": freshness.state,
            "last_success_at": _iso(freshness.last_success_at),
            "age_seconds": _age_seconds(freshness.last_success_at, now),
            "stale_after_seconds": int(freshness.stale_after.total_seconds()),
            "running": freshness.running_since is not None,
        }
    healthy = all(check["ok"] for check in checks.values())
    return {"status": "ok" if healthy else "unhealthy", "checked_at": iso_utc(now), "checks": checks}


@login_not_required
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    report = health_report()
    response = JsonResponse(report, status=200 if report["status"] == "ok" else 503)
    # Django logs every 5xx as an error with a traceback-like line; a monitor
    # polling an unhealthy deployment every few seconds would bury the log.
    # The unhealthy state is what /metrics and the overview already say.
    response._has_been_logged = True
    return _without_body_for_head(request, response)


def _without_body_for_head(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    # Load balancers probe with HEAD; gunicorn drops a body sent with it, and
    # logs a warning each time.
    if request.method == "HEAD":
        response.content = b""
    return response


# --- /metrics -------------------------------------------------------------------


def _bearer_token(request: HttpRequest) -> str:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _peer_allowed(request: HttpRequest) -> bool:
    # REMOTE_ADDR, the direct peer: behind a proxy that is the proxy, which
    # is why the README says to scrape the app server, not the proxy.
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_IPS)


def metrics_access(request: HttpRequest) -> int:
    """200 when the request may read the metrics, else the status to answer (401, 403 or 404)."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS
    if not token and not networks:
        return 404
    if networks and _peer_allowed(request):
        return 200
    if token:
        given = _bearer_token(request)
        # Constant time: the comparison must not tell how much of a guess was right.
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return 200
        return 401
    return 403


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    """One gauge without labels."""
    return GaugeMetricFamily(PREFIX + name, help_text, value=value)


def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment else 0.0


class DashboardCollector(Collector):
    """Reads the current state from the database at each scrape."""

    def __init__(self, *, now: datetime) -> None:
        self.now = now

    def collect(self):
        now = self.now
        yield from self._records(now)
        yield from self._fleet(now)
        yield from self._sync_runs(now)
        yield from self._api_errors(now)
        yield from self._machinery(now)

    def _records(self, now: datetime):
        # From the hourly summary the database keeps exact (backups.summaries):
        # a few rows per hour, never the millions of records themselves.
        stored = GaugeMetricFamily(
            PREFIX + "backup_records",
            "Backup records stored (gone ones too), by status, region and project.",
            labels=["status", "region", "project"],
        )
        rows = cache.get(STORED_COUNTS_CACHE_KEY)
        if rows is None:
            rows = list(
                BackupHourlyCount.objects.order_by()
                .values("status", "region", "project_id")
                .annotate(n=Sum("records"))
                .order_by("status", "region", "project_id")
            )
            cache.set(STORED_COUNTS_CACHE_KEY, rows, STORED_COUNTS_CACHE_SECONDS)
        for row in rows:
            if row["n"]:
                stored.add_metric([row["status"] or "unknown", row["region"], row["project_id"]], row["n"])
        yield stored
        recent = backup_status_counts(since=now - WINDOW, now=now)
        created = GaugeMetricFamily(
            PREFIX + "backups_created_24h", "Backups created in the last 24 h, by status.", labels=["status"]
        )
        for status, count in recent.by_status.items():
            created.add_metric([status], count)
        if recent.other:
            created.add_metric(["other"], recent.other)
        yield created

    def _fleet(self, now: datetime):
        # The overview's definitions (with_risk, with_sync_staleness), counted
        # in the database: fleet_risk() would load every such instance's row.
        rows = (
            with_sync_staleness(with_risk(DcsInstance.objects.all(), now=now), now=now)
            .annotate(listed=ExpressionWrapper(Q(gone_at__isnull=True), output_field=BooleanField()))
            .order_by()
            .values("listed", "at_risk", "single_node", "sync_stale")
            .annotate(n=Count("pk"))
        )
        counts = dict.fromkeys(("listed", "gone", "at_risk", "single_node", "sync_stale"), 0)
        for row in rows:  # at most 16 groups
            counts["listed" if row["listed"] else "gone"] += row["n"]
            for flag in ("at_risk", "single_node", "sync_stale"):
                if row["listed"] and row[flag]:
                    counts[flag] += row["n"]
        instances = GaugeMetricFamily(
            PREFIX + "instances", "DCS instances, listed by the API or gone from it.", labels=["state"]
        )
        instances.add_metric(["listed"], counts["listed"])
        instances.add_metric(["gone"], counts["gone"])
        yield instances
        yield _gauge(
            "instances_at_risk",
            "Listed instances without a successful backup within their RPO "
            f"(default {settings.DASHBOARD_RPO_HOURS} h, or their RPO policy's).",
            counts["at_risk"],
        )
        yield _gauge(
            "instances_single_node",
            "Single-node instances (DCS cannot back them up).",
            counts["single_node"],
        )
        yield _gauge(
            "instances_sync_stale",
            "Listed instances whose backups no sync listed within DASHBOARD_SYNC_STALE_MINUTES.",
            counts["sync_stale"],
        )
        yield _gauge(
            "at_risk_threshold_seconds",
            "The default RPO (DASHBOARD_RPO_HOURS), in seconds.",
            at_risk_threshold().total_seconds(),
        )

    def _sync_runs(self, now: datetime):
        recent = (
            SyncRun.objects.filter(finished_at__gte=now - WINDOW)
            .order_by()
            .values("kind", "outcome")
            .annotate(
                runs=Count("pk"),
                api_calls=Sum("api_calls"),
                retries=Sum("retries"),
                throttles=Sum("throttles"),
                errors=Sum("error_count"),
            )
        )
        runs = GaugeMetricFamily(
            PREFIX + "sync_runs_24h", "Sync runs finished in the last 24 h.", labels=["kind", "outcome"]
        )
        totals: dict[str, dict[str, int]] = {}
        for row in recent:
            runs.add_metric([row["kind"], row["outcome"]], row["runs"])
            kind = totals.setdefault(row["kind"], {"api_calls": 0, "retries": 0, "throttles": 0, "errors": 0})
            for name in kind:
                kind[name] += row[name] or 0
        yield runs
        helps = {
            "api_calls": "DCS API calls made by sync runs finished in the last 24 h.",
            "retries": "DCS API calls retried by sync runs finished in the last 24 h.",
            "throttles": "DCS API calls throttled (429) in sync runs finished in the last 24 h.",
            "errors": "Errors recorded by sync runs finished in the last 24 h.",
        }
        for name, help_text in helps.items():
            family = GaugeMetricFamily(PREFIX + f"sync_{name}_24h", help_text, labels=["kind"])
            for kind, values in sorted(totals.items()):
                family.add_metric([kind], values[name])
            yield family

        # The newest finished run of each kind: how long it took and how it ended.
        newest = SyncRun.objects.finished().order_by().values("kind").annotate(pk=Max("pk")).values_list("pk")
        last_runs = SyncRun.objects.filter(pk__in=newest).order_by("kind")
        duration = GaugeMetricFamily(
            PREFIX + "sync_last_duration_seconds",
            "Duration of the newest finished sync run.",
            labels=["kind"],
        )
        outcome = GaugeMetricFamily(
            PREFIX + "sync_last_outcome",
            "Outcome of the newest finished sync run: 1 for its outcome.",
            labels=["kind", "outcome"],
        )
        finished = GaugeMetricFamily(
            PREFIX + "sync_last_finished_timestamp_seconds",
            "When the newest finished sync run ended (Unix time).",
            labels=["kind"],
        )
        for run in last_runs:
            duration.add_metric([run.kind], run.duration.total_seconds() if run.duration else 0.0)
            outcome.add_metric([run.kind, run.outcome], 1)
            finished.add_metric([run.kind], _timestamp(run.finished_at))
        yield duration
        yield outcome
        yield finished

        freshness = sync_freshness(now=now)
        yield _gauge(
            "sync_last_success_timestamp_seconds",
            "When the newest successful fleet sync ended (Unix time; 0: never).",
            _timestamp(freshness.last_success_at),
        )
        yield _gauge(
            "sync_fresh",
            "1 when the fleet sync is fresh (as /healthz says).",
            int(freshness.state == "fresh"),
        )

    def _api_errors(self, now: datetime):
        rows = (
            SyncError.objects.filter(occurred_at__gte=now - WINDOW)
            .order_by()
            .values("error_code", "status")
            .annotate(n=Count("pk"))
        )
        errors = GaugeMetricFamily(
            PREFIX + "api_errors_24h",
            "Errors of sync runs in the last 24 h, by API error code and HTTP status (429: throttled).",
            labels=["code", "status"],
        )
        for row in sorted(rows, key=lambda row: (row["error_code"], row["status"] or 0)):
            errors.add_metric([row["error_code"] or "none", str(row["status"] or "none")], row["n"])
        yield errors

    def _machinery(self, now: datetime):
        machinery = health(now=now)
        yield _gauge("broker_up", "1 when the Celery broker answers.", int(machinery.broker.reachable))
        if machinery.broker.queued is not None:
            yield _gauge("broker_queued_tasks", "Tasks waiting in the queue.", machinery.broker.queued)
        yield _gauge(
            "workers_alive",
            "1 when a worker sent a heartbeat recently.",
            int(machinery.workers_alive),
        )
        yield _gauge(
            "worker_last_heartbeat_timestamp_seconds",
            "The newest worker heartbeat (Unix time; 0: never).",
            _timestamp(machinery.last_worker_activity),
        )
        yield _gauge("sync_runs_running", "Sync runs in progress.", machinery.running_runs)


def render_metrics(*, now: datetime | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DashboardCollector(now=now or timezone.now()))
    return generate_latest(registry)


@login_not_required
@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    status = metrics_access(request)
    if status == 404:
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    if status == 401:
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if status == 403:
        return HttpResponse("This address may not read the metrics.\n", status=403, content_type="text/plain")
    try:
        body = render_metrics()
    except DatabaseError:
        return HttpResponse("The database is not available.\n", status=503, content_type="text/plain")
    return _without_body_for_head(request, HttpResponse(body, content_type=CONTENT_TYPE_LATEST))
