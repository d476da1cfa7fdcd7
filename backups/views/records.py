"""Pages about backup records: the list of all of them, and one backup."""

from __future__ import annotations

import json

from django.http import Http404
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import DetailView
from django_tables2 import SingleTableView

from backups import selectors
from backups.choices import BackupFormat, BackupStatus, BackupType, ColoredChoices
from backups.exports import iso_utc
from backups.filters.records import BackupRecordFilterSet
from backups.incident import MAX_INSTANCES, incident_link
from backups.models import BackupRecord
from backups.selectors import record_total
from backups.tables import BackupRecordTable
from backups.tables.anomalies import anomaly_badges
from backups.tables.columns import duration_text
from backups.tables.instances import instance_url
from backups.timewindow import PRESETS
from backups.views.mixins import TablePageMixin
from backups.views.notes import notes_context, record_notes


class BackupRecordListView(TablePageMixin, SingleTableView):
    """Every backup record, filterable, sortable, exportable.

    Four queries at most: session, user, the count (from the hourly
    summary and cached for a minute without filters, capped with them) and
    one page of records with their instances joined. Deep pages seek from
    the last row shown (backups.keyset) through the index of the sort.
    """

    model = BackupRecord
    table_class = BackupRecordTable
    filterset_class = BackupRecordFilterSet
    export_filename = "dcs-backups"
    filtered_empty_text = gettext_lazy("No backup records match these filters.")
    template_name = "backups/backuprecord_list.html"
    partial_template_name = "backups/_backup_table.html"

    def get_queryset(self):
        return BackupRecord.objects.select_related("instance").newest_first()

    def unfiltered_count(self, queryset) -> int:
        # Every record is in exactly one hourly count: no COUNT(*) over millions of rows.
        return record_total()

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        if not self.export_format:
            context["incident_view_url"] = self.incident_view_url()
        return context

    def incident_view_url(self) -> str:
        """The incident view of this page's instance filter and time window, or "" without one."""
        ids = getattr(self.filterset, "matched_instance_ids", None)
        if not ids or len(ids) > MAX_INSTANCES:
            return ""
        data = self.filterset.form.cleaned_data
        end = data.get("created_before") or self.now
        start = data.get("created_after") or end - PRESETS["24h"]
        if end <= start:
            return ""
        return incident_link(instance_ids=ids, start=start, end=end, incident=data.get("incident") or "")


def badge(choices: type[ColoredChoices], value: str):
    return format_html(
        '<span class="badge badge--{}">{}</span>', choices.color_of(value), choices.label_of(value)
    )


class BackupRecordDetailView(DetailView):
    """One backup: every field, its status history as our syncs saw it, the raw JSON.

    Five queries: session, user, the record with its instance, its status
    changes, its notes.
    """

    model = BackupRecord
    context_object_name = "record"
    template_name = "backups/backuprecord_detail.html"

    def get_object(self, queryset=None) -> BackupRecord:
        record = selectors.backup_by_id(self.kwargs["backup_id"])
        if record is None:
            raise Http404(_("No backup with this id."))
        return record

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        record = self.object
        changes = list(record.status_changes.order_by("observed_at", "id"))
        times = [
            (_("Created"), record.created_at),
            (_("Finished"), record.updated_at),
            (_("Executed"), record.execution_at),
            (_("First seen by our sync"), record.first_seen),
            (_("Last seen by our sync"), record.last_seen),
            (_("Gone since"), record.gone_at),
        ]
        context.update(
            instance_url=instance_url(record.instance),
            status_badge=badge(BackupStatus, record.status),
            type_badge=badge(BackupType, record.backup_type),
            format_badge=badge(BackupFormat, record.backup_format),
            duration=duration_text(record.duration, units=4) if record.duration is not None else "",
            anomaly_badges=anomaly_badges(record),
            times=[(label, value, iso_utc(value) if value else "") for label, value in times],
            history=[
                {
                    "change": change,
                    "badge": badge(BackupStatus, change.status),
                    "iso": iso_utc(change.observed_at),
                }
                for change in changes
            ],
            raw_json=json.dumps(record.raw, indent=2, ensure_ascii=False, sort_keys=True),
            incident_filter_url=reverse("backups:backup-list"),
        )
        context.update(notes_context(self.request, record_notes(record)))
        return context
