"""Filters of the sync runs list (``/sync/``).

As on the other lists, a value we cannot use never fails the page: the view
says so above the table and leaves that filter out.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from backups.choices import SyncOutcome
from backups.filters.records import MAX_SEARCH_LENGTH, LenientMultipleChoiceFilter, TimeBoundFilter
from backups.models import SyncError, SyncKind, SyncRun, SyncTrigger


class SyncRunFilterSet(django_filters.FilterSet):
    """``outcome`` (repeatable), ``kind``, ``trigger``, ``started_after``,
    ``started_before`` and ``instance``."""

    outcome = LenientMultipleChoiceFilter(choices=SyncOutcome.choices, label=_("Outcome"))
    kind = django_filters.ChoiceFilter(choices=SyncKind.choices, label=_("Kind"), empty_label=_("Any kind"))
    trigger = django_filters.ChoiceFilter(
        choices=SyncTrigger.choices, label=_("Trigger"), empty_label=_("Any trigger")
    )
    instance = django_filters.CharFilter(
        method="filter_instance",
        label=_("Instance"),
        max_length=MAX_SEARCH_LENGTH,
        # Runs of that instance alone, and runs with an error about it (see filter_instance).
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("Instance id or name")}),
    )
    started_after = TimeBoundFilter(field_name="started_at", lookup_expr="gte", label=_("Started after"))
    # A bare date as the upper bound means the whole of that day.
    started_before = TimeBoundFilter(
        field_name="started_at", lookup_expr="lt", label=_("Started before"), upper=True
    )

    class Meta:
        model = SyncRun
        fields = ("outcome", "kind", "trigger", "instance", "started_after", "started_before")

    def filter_instance(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # An id is pasted whole; a name is remembered in part. Every fleet run
        # lists every instance, so "runs that listed it" would be all of them:
        # what helps is the runs of that instance, and those that failed on it.
        # Exists, not a join: one row per run, no DISTINCT.
        matches = Q(instance__instance_id=value) | Q(instance__name__icontains=value)
        errors = SyncError.objects.filter(matches, run=OuterRef("pk"))
        return queryset.filter(matches | Q(Exists(errors)))
