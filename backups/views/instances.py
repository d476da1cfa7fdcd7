"""Pages about DCS instances: the fleet table and one instance's history."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import Http404
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import DetailView
from django_tables2 import SingleTableView

from backups.charts import backup_chart
from backups.filters.instances import DcsInstanceFilterSet
from backups.incident import incident_link
from backups.models import DcsInstance, Note
from backups.restores import RESTORES_ON_PAGE, restores_of, with_restore_facts
from backups.rpo import source_label
from backups.selectors import (
    SUCCEEDED,
    at_risk_threshold,
    backups_in_window,
    find_gaps,
    instance_for_page,
    instances_with_stats,
    sync_stale_after,
)
from backups.tables import BackupRecordTable, DcsInstanceTable
from backups.tables.columns import duration_text
from backups.tables.instances import age_html, last_success_html
from backups.tables.restores import RestoreRecordTable, restore_status_badge
from backups.timewindow import PRESETS
from backups.views.mixins import TablePageMixin
from backups.views.notes import instance_notes, notes_context
from backups.views.overview import WINDOW_LABELS, parse_window
from backups.views.sync import can_trigger_sync

CHART_WINDOWS = ("7d", "30d", "90d")
DEFAULT_CHART_WINDOW = "30d"


class InstanceListView(TablePageMixin, SingleTableView):
    """The fleet: every instance with its backup health, filterable and sortable.

    Five queries whatever the fleet's size: session, user, the filter's
    regions/engines/statuses, the count (cached by the mixin without
    filters), and one page of annotated rows. ``now`` (the mixin's, one per
    request) is the reference of every age and of the at-risk rule.
    """

    model = DcsInstance
    table_class = DcsInstanceTable
    filterset_class = DcsInstanceFilterSet
    export_filename = "dcs-instances"
    template_name = "backups/dcsinstance_list.html"
    filtered_empty_text = gettext_lazy("No DCS instances match these filters.")

    def get_queryset(self):
        # The restore columns are subqueries too: for the rows of the page only.
        # Nothing on the page or in its exports reads the API's JSON of an
        # instance (~1.7 kB a row to send and decode).
        return with_restore_facts(instances_with_stats(now=self.now)).defer("raw")

    def get_table_kwargs(self) -> dict:
        return {"now": self.now}

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["risk_hours"] = int(at_risk_threshold().total_seconds() // 3600)
        return context


class InstanceDetailView(TablePageMixin, DetailView):
    """One instance: its facts, a chart of its backups with the gaps, and its backup table.

    Five queries: session, user, the instance (with its last success, risk,
    sync staleness, restore facts, backup count and whether it has notes as
    subqueries and expressions), the chart's backups in the window and the
    table's page; one more for its notes when it has any, and one for its
    restores when it has any. Whether to offer "Sync now" is remembered per
    user for a minute (views.sync.can_trigger_sync).
    """

    model = DcsInstance
    context_object_name = "instance"
    table_class = BackupRecordTable
    template_name = "backups/dcsinstance_detail.html"
    partial_template_name = "backups/_backup_table.html"

    @cached_property
    def window(self) -> tuple[str, str]:
        return parse_window(
            self.request.GET.get("window"), choices=CHART_WINDOWS, default=DEFAULT_CHART_WINDOW
        )

    @property
    def window_start(self):
        return self.now - PRESETS[self.window[0]]

    def get_object(self, queryset=None) -> DcsInstance:
        instance = instance_for_page(self.kwargs["instance_id"], now=self.now, window_start=self.window_start)
        if instance is None:
            raise Http404(_("No DCS instance with this id."))
        return instance

    def count_rows(self, data) -> tuple[int, bool]:
        # The table is the instance's backups, unfiltered: counted in the
        # instance's own query (selectors.instance_for_page), capped as any count.
        total = self.object.backups_total
        return min(total, self.count_cap + 1), total <= self.count_cap

    def get_table_data(self):
        # The reverse relation sets record.instance to self.object, so the
        # rows need no join and no query of their own.
        return self.object.backups.newest_first()

    def get_table_kwargs(self) -> dict:
        return {
            "exclude": ("instance",),
            "caption": _("Backups of %(instance)s") % {"instance": self.object},
        }

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        # The last 24 hours of this instance, frozen when the link is opened.
        context["incident_view_url"] = incident_link(
            instance_ids=[self.object.instance_id], start=self.now - PRESETS["24h"], end=self.now
        )
        if self.is_partial_request():
            return context  # the table only: no chart to compute
        context.update(self.history_context(self.object))
        context.update(self.sync_context(self.object))
        notes = instance_notes(self.object) if self.object.has_notes else Note.objects.none()
        context.update(notes_context(self.request, notes))
        context.update(self.restores_context(self.object))
        context["incident_filter_url"] = reverse("backups:instance-list")
        return context

    def restores_context(self, instance: DcsInstance) -> dict:
        """Its restores (one query, none when its last restore says it has none), and the last one."""
        rows = restores_of(instance) if instance.last_restore_status is not None else []
        shown = rows[:RESTORES_ON_PAGE]
        return {
            "restores_table": RestoreRecordTable(
                shown, caption=_("Restores of %(instance)s") % {"instance": instance}
            ),
            "restores_more": len(rows) > RESTORES_ON_PAGE,
            "restores_shown": RESTORES_ON_PAGE,
            "last_restore": shown[0] if shown else None,
            "last_restore_badge": restore_status_badge(shown[0].status) if shown else "",
        }

    def sync_context(self, instance: DcsInstance) -> dict:
        """When its backups were last listed, whether that is stale, and "Sync now"."""
        return {
            "last_synced_at": instance.last_synced_at,
            "last_synced_age": age_html(instance.last_synced_at, now=self.now),
            "sync_stale": instance.sync_stale,
            "stale_minutes": int(sync_stale_after().total_seconds() // 60),
            "syncs_url": f"{reverse('backups:sync-list')}?{urlencode({'instance': instance.instance_id})}",
            "can_sync": can_trigger_sync(self.request),
        }

    def history_context(self, instance: DcsInstance) -> dict:
        now, start = self.now, self.window_start
        window, problem = self.window
        # Its own RPO (backups.rpo): the at-risk rule and the gaps measure by it.
        threshold = getattr(instance, "effective_rpo", None) or at_risk_threshold()
        points = backups_in_window(instance, start=start, end=now)
        gaps = []
        if not instance.single_node:
            # Before the instance existed nothing could be backed up; after it
            # is gone nothing needs to be.
            opened = max(start, instance.created_at) if instance.created_at else start
            closed = min(now, instance.gone_at) if instance.gone_at else now
            gaps = find_gaps(
                (p.created_at for p in points if p.status == SUCCEEDED),
                start=opened,
                end=closed,
                threshold=threshold,
                previous=instance.success_before_window_at,
            )
        chart = backup_chart(
            points,
            start=start,
            end=now,
            gaps=gaps,
            title=_("Backups of %(instance)s, last %(window)s") % {"instance": instance, "window": window},
        )
        return {
            "param_errors": [problem] if problem else [],
            "window": window,
            "windows": [(name, WINDOW_LABELS[name], name == window) for name in CHART_WINDOWS],
            "window_label": WINDOW_LABELS[window],
            "chart": chart,
            "chart_points": points,
            "gaps": gaps,
            "gap_rows": [
                {
                    "gap": gap,
                    "length": duration_text(gap.length),
                    "ongoing": gap.open_ended and not instance.gone_at,
                }
                for gap in gaps
            ],
            "risk_hours": int(threshold.total_seconds() // 3600),
            "rpo_text": duration_text(threshold, units=2),
            "rpo_source": source_label(instance.rpo_source),
            "overdue_text": duration_text(instance.overdue, units=2) if instance.overdue is not None else "",
            "last_success": last_success_html(instance, now=now, threshold=threshold),
            "last_success_age": age_html(instance.last_success_at, now=now),
            "now": now,
        }
