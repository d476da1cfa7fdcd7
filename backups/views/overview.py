"""The overview (``/``): the fleet's backup health at a glance.

Six queries whatever the fleet's size: session, user, the status counts
(the hourly summary plus the records of the two partial hours, in one
query), the running backups, the at-risk, single-node and sync-stale
instances (one query on the instances' summary columns, split in Python),
and the newest fleet sync with its last success and the machinery's health
(workers' heartbeats, running runs, the last finished run) as subqueries.
The broker is pinged with a 0.5 s timeout. The live part (running
backups, data freshness and the state of the sync machinery) refreshes
itself every 5 s: an HTMX request gets only ``_overview_live.html``, which
asks just those questions (the stale instances on their own then).

Nothing here needs the broker: while Redis or the workers are down the page
renders from the database and says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView

from backups.choices import BackupStatus, SyncOutcome
from backups.rpo import source_label
from backups.selectors import (
    FleetRisk,
    FleetScope,
    StaleInstances,
    backup_status_counts,
    fleet_risk,
    running_backups,
    stale_instances,
    sync_freshness,
)
from backups.sync.health import SyncHealth
from backups.tables.columns import duration_text
from backups.tables.instances import age_html, instance_url
from backups.timewindow import PRESETS
from backups.views.sync import can_trigger_sync

OVERVIEW_WINDOWS = ("24h", "7d", "30d")
# Region names and project ids are short; a longer value is a paste gone wrong.
MAX_SCOPE_LENGTH = 64
WINDOW_LABELS = {
    "24h": gettext_lazy("the last 24 hours"),
    "7d": gettext_lazy("the last 7 days"),
    "30d": gettext_lazy("the last 30 days"),
    "90d": gettext_lazy("the last 90 days"),
}
DEFAULT_WINDOW = "24h"
# The overview lists this many at-risk (and single-node) instances; the fleet
# page has the rest.
LIST_LIMIT = 25
# The freshness card names this many instances whose sync is stale.
STALE_LIMIT = 10
# How the at-risk list can be ordered (``?risk_sort=``); the first is the default.
RISK_SORTS = {
    "overdue": gettext_lazy("over RPO by"),
    "last_success": gettext_lazy("last success"),
    "name": gettext_lazy("name"),
}
_NEVER = datetime.min.replace(tzinfo=UTC)


def sort_at_risk(rows: list, order: str) -> list:
    """The at-risk list in another order; fleet_risk gives it most overdue first already."""
    if order == "last_success":
        return sorted(rows, key=lambda row: (row.last_success_at or _NEVER, row.name, row.instance_id))
    if order == "name":
        return sorted(rows, key=lambda row: (row.name, row.instance_id))
    return rows


def parse_window(raw: str | None, *, choices: tuple[str, ...], default: str) -> tuple[str, str]:
    """The window asked for and "", or the default and a message saying why."""
    if raw is None or not raw.strip():
        return default, ""
    value = raw.strip().lower()
    if value in choices:
        return value, ""
    return default, _("“%(value)s” is not a period this page offers (%(choices)s): showing %(default)s.") % {
        "value": raw.strip()[:40],
        "choices": ", ".join(choices),
        "default": default,
    }


def is_partial_request(request) -> bool:
    htmx = getattr(request, "htmx", None)
    # A history restore wants the whole page back, not a fragment.
    return bool(htmx) and not htmx.history_restore_request


class OverviewView(TemplateView):
    template_name = "backups/overview.html"
    partial_template_name = "backups/_overview_live.html"

    def get_template_names(self) -> list[str]:
        if is_partial_request(self.request):
            return [self.partial_template_name]
        return [self.template_name]

    @cached_property
    def scope_problems(self) -> list[str]:
        return []

    @cached_property
    def scope(self) -> FleetScope:
        """The region and project asked for (``?region=``, ``?project=``); none is the whole fleet.

        No region or project id holds a NUL (PostgreSQL text cannot): such a
        value is ignored, and the page says so.
        """
        values = {}
        for param in ("region", "project"):
            value = self.request.GET.get(param, "").strip()[:MAX_SCOPE_LENGTH]
            if "\x00" in value:
                self.scope_problems.append(
                    _("“%(param)s” holds a character no name can have, so it was ignored.") % {"param": param}
                )
                value = ""
            values[param] = value
        return FleetScope(region=values["region"], project_id=values["project"])

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        now = timezone.now()
        scope = self.scope
        scope_query = urlencode(scope.params())
        window, problem = parse_window(
            self.request.GET.get("window"), choices=OVERVIEW_WINDOWS, default=DEFAULT_WINDOW
        )
        risk_sort = (self.request.GET.get("risk_sort") or "overdue").strip().lower()
        if risk_sort not in RISK_SORTS:
            sort_problem = _(
                "“%(value)s” is not an order of the at-risk list (%(choices)s): showing %(default)s."
            ) % {
                "value": risk_sort[:40],
                "choices": ", ".join(RISK_SORTS),
                "default": "overdue",
            }
            self.scope_problems.append(sort_problem)
            risk_sort = "overdue"
        self.risk_sort = risk_sort
        if is_partial_request(self.request):
            context.update(now=now, window=window, **self.live_context(now))
            return context
        # One query gives the at-risk list and the stale instances of the live part.
        risk = fleet_risk(now=now, scope=scope, stale_limit=STALE_LIMIT, single_limit=LIST_LIMIT)
        stale = StaleInstances(shown=risk.sync_stale, total=risk.sync_stale_total)
        context.update(
            now=now,
            window=window,
            param_errors=([problem] if problem else []) + self.scope_problems,
            windows=[(name, WINDOW_LABELS[name], name == window) for name in OVERVIEW_WINDOWS],
            scope=scope,
            # Appended to the window links, so a change of period keeps the scope.
            scope_query=f"&{scope_query}" if scope_query else "",
            window_label=WINDOW_LABELS[window],
            can_sync=can_trigger_sync(self.request),
            **self.live_context(now, stale=stale),
            **self.counts_context(now, window),
            **self.risk_context(now, risk),
        )
        return context

    def live_context(self, now, *, stale: StaleInstances | None = None) -> dict:
        freshness = sync_freshness(now=now)
        if stale is None:
            stale = stale_instances(now=now, limit=STALE_LIMIT, scope=self.scope)
        running = [
            {
                "record": record,
                "url": instance_url(record.instance),
                "age": age_html(record.created_at, now=now),
            }
            for record in running_backups(scope=self.scope)
        ]
        return {
            "running": running,
            "freshness": freshness,
            "freshness_color": SyncOutcome.color_of(
                freshness.last_run.outcome if freshness.last_run else None
            ),
            "freshness_finished_age": age_html(
                freshness.last_run.finished_at if freshness.last_run else None, now=now
            ),
            "freshness_success_age": age_html(freshness.last_success_at, now=now),
            "freshness_running_age": age_html(freshness.running_since, now=now),
            "stale_minutes": int(freshness.stale_after.total_seconds() // 60),
            "stale": stale,
            "stale_items": [
                {
                    "instance": instance,
                    "url": instance_url(instance),
                    "age": age_html(instance.last_synced_at, now=now),
                }
                for instance in stale.shown
            ],
            **self.machinery_context(freshness.health, now),
        }

    def machinery_context(self, health: SyncHealth, now) -> dict:
        """What to say about the broker and the workers; nothing when both are fine."""
        silent_for = ""
        if not health.workers_alive and health.last_worker_activity is not None:
            silent_for = duration_text(now - health.last_worker_activity, units=1)
        return {
            "health": health,
            "broker_down": not health.broker.reachable,
            # The reason names the broker's host: for the people who run it.
            "broker_error": health.broker.error if self.request.user.is_staff else "",
            "workers_down": not health.workers_alive,
            "workers_silent_for": silent_for,
        }

    def counts_context(self, now, window: str) -> dict:
        scope = self.scope
        counts = backup_status_counts(since=now - PRESETS[window], now=now, scope=scope)
        list_url = reverse("backups:backup-list")
        window_params = {"created_after": window, **scope.params()}
        tiles = [
            {
                "status": status.value,
                "label": status.label,
                "color": BackupStatus.color_of(status.value),
                "count": counts.by_status[status.value],
                "url": f"{list_url}?{urlencode({'status': status.value, **window_params})}",
            }
            for status in BackupStatus
        ]
        return {
            "counts": counts,
            "status_tiles": tiles,
            "all_backups_url": f"{list_url}?{urlencode(window_params)}",
            "success_rate": counts.success_rate,
        }

    def risk_context(self, now, risk: FleetRisk) -> dict:
        fleet_url = reverse("backups:instance-list")

        def item(instance):
            overdue = getattr(instance, "overdue", None)
            rpo = getattr(instance, "effective_rpo", None)
            return {
                "instance": instance,
                "url": instance_url(instance),
                "age": age_html(instance.last_success_at, now=now),
                "rpo": duration_text(rpo, units=2) if rpo is not None else "",
                "rpo_source": source_label(instance.rpo_source),
                "overdue": duration_text(overdue, units=2) if overdue is not None else "",
            }

        at_risk = sort_at_risk(risk.at_risk, self.risk_sort)

        def sorted_by(name: str) -> str:
            # The same page (period, scope) in another order.
            params = self.request.GET.copy()
            params["risk_sort"] = name
            return f"?{params.urlencode()}#risk-title"

        return {
            "risk": risk,
            "risk_hours": int(risk.threshold.total_seconds() // 3600),
            "at_risk": [item(instance) for instance in at_risk[:LIST_LIMIT]],
            "risk_sort": self.risk_sort,
            "risk_sorts": [
                (
                    name,
                    label,
                    name == self.risk_sort,
                    sorted_by(name),
                )
                for name, label in RISK_SORTS.items()
            ],
            "at_risk_more": max(len(risk.at_risk) - LIST_LIMIT, 0),
            "single_node": [item(instance) for instance in risk.single_node[:LIST_LIMIT]],
            "single_node_more": max(risk.single_node_total - LIST_LIMIT, 0),
            "at_risk_url": f"{fleet_url}?{urlencode({'at_risk': 'yes', **self.scope.params()})}",
        }

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        # The same URL answers with a fragment or a page: caches must not mix them.
        patch_vary_headers(response, ("HX-Request",))
        return response
