"""Filters of the alert history (``/alerts/``): ``kind``, ``state``, ``instance``,
``opened_after``, ``opened_before``. A value we cannot use is reported and left out."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from backups.filters.records import MAX_SEARCH_LENGTH, TimeBoundFilter
from backups.models import Alert, AlertKind
from backups.tables.alerts import AlertState


class AlertFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=AlertKind.choices, label=_("Kind"), empty_label=_("Any kind"))
    state = django_filters.ChoiceFilter(
        choices=AlertState.choices, label=_("State"), empty_label=_("Any state"), method="filter_state"
    )
    instance = django_filters.CharFilter(
        method="filter_instance",
        label=_("Instance"),
        max_length=MAX_SEARCH_LENGTH,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("Instance id or name")}),
    )
    opened_after = TimeBoundFilter(field_name="opened_at", lookup_expr="gte", label=_("Opened after"))
    opened_before = TimeBoundFilter(
        field_name="opened_at", lookup_expr="lt", label=_("Opened before"), upper=True
    )

    class Meta:
        model = Alert
        fields = ("kind", "state", "instance", "opened_after", "opened_before")

    def filter_state(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(resolved_at__isnull=(value == AlertState.OPEN))

    def filter_instance(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(instance__instance_id=value) | Q(instance__name__icontains=value))
