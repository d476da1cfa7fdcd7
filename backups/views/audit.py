"""The audit log (``/audit/``): for admins only (``backups.view_auditevent``).

Filterable by ``action`` (repeatable), ``user`` (a username, or part of one),
``since`` and ``until`` (times as on the other lists: ``24h``, a date, an ISO
time); sortable, paged and exportable like every table page. Four queries:
session, user, the count and one page of events; a user who is not a
superuser adds two (their permissions) once a minute (``backups.access``).
"""

from __future__ import annotations

import json

import django_filters
import django_tables2 as tables
from django import forms
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.utils.translation import gettext_lazy as _
from django_tables2 import SingleTableView

from backups.access import access_of
from backups.filters.records import MAX_SEARCH_LENGTH, LenientMultipleChoiceFilter, TimeBoundFilter
from backups.models import AuditAction, AuditEvent
from backups.roles import AUDIT_PERMISSION
from backups.tables.columns import TimestampColumn
from backups.views.mixins import TablePageMixin


class AuditEventFilterSet(django_filters.FilterSet):
    action = LenientMultipleChoiceFilter(choices=AuditAction.choices, label=_("Action"))
    user = django_filters.CharFilter(
        field_name="username",
        lookup_expr="icontains",
        label=_("User"),
        max_length=MAX_SEARCH_LENGTH,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("Username")}),
    )
    since = TimeBoundFilter(field_name="at", lookup_expr="gte", label=_("Since"))
    until = TimeBoundFilter(field_name="at", lookup_expr="lt", label=_("Until"), upper=True)

    class Meta:
        model = AuditEvent
        fields = ("action", "user", "since", "until")


class DetailColumn(tables.Column):
    """The event's detail as compact JSON text (escaped like any text)."""

    def render(self, value):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else "—"

    def value(self, value):
        return value


class AuditEventTable(tables.Table):
    at = TimestampColumn(verbose_name=_("When"))
    username = tables.Column(verbose_name=_("User"))
    action = tables.Column(verbose_name=_("Action"))
    detail = DetailColumn(verbose_name=_("Detail"), orderable=False)
    ip = tables.Column(verbose_name=_("Address"), default="—")
    path = tables.Column(verbose_name=_("Path"), orderable=False, default="—")

    class Meta:
        model = AuditEvent
        fields = ("at", "username", "action", "detail", "ip", "path")
        order_by = ("-at",)
        per_page = 50
        empty_text = _("Nothing has been recorded yet.")

    def order_at(self, queryset, is_descending: bool):
        prefix = "-" if is_descending else ""
        return queryset.order_by(f"{prefix}at", f"{prefix}id"), True

    def render_action(self, value, record):
        return record.get_action_display()

    def value_action(self, value, record):
        return value


class AuditEventListView(PermissionRequiredMixin, TablePageMixin, SingleTableView):
    permission_required = AUDIT_PERMISSION
    raise_exception = True
    model = AuditEvent
    table_class = AuditEventTable
    filterset_class = AuditEventFilterSet
    export_filename = "dcs-audit"
    template_name = "backups/auditevent_list.html"
    filtered_empty_text = _("No events match these filters.")
    time_bound_params = ("since", "until")
    per_page_choices = (50, 100, 250)

    def has_permission(self) -> bool:
        # The answer backups.access remembers for a minute: no permission queries on most views.
        return access_of(self.request.user)["audit"]

    def get_queryset(self):
        return AuditEvent.objects.order_by("-at", "-id")
