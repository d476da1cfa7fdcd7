"""Filters of the fleet table (``/instances/``)."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from backups.filters.records import MAX_SEARCH_LENGTH, IncidentFilter
from backups.models import DcsInstance, Note

YES_NO = (("yes", _("Yes")), ("no", _("No")))
GONE_CHOICES = (
    ("no", _("Listed only")),
    ("yes", _("Gone only")),
    ("all", _("Listed and gone")),
)


class DcsInstanceFilterSet(django_filters.FilterSet):
    """``q``, ``region``, ``project``, ``engine``, ``status``, ``at_risk`` and ``gone``.

    Works on ``selectors.instances_with_stats()``, whose ``at_risk`` annotation
    the ``at_risk`` filter reads. Without ``gone``, only the instances the API
    still lists are shown: a gone instance is history, not fleet.
    """

    q = django_filters.CharFilter(
        method="filter_search",
        label=_("Search"),
        max_length=MAX_SEARCH_LENGTH,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("Name or instance id")}),
    )
    region = django_filters.ChoiceFilter(label=_("Region"), empty_label=_("Any region"))
    project = django_filters.ChoiceFilter(
        field_name="project_id", label=_("Project"), empty_label=_("Any project")
    )
    engine = django_filters.ChoiceFilter(label=_("Engine"), empty_label=_("Any engine"))
    status = django_filters.ChoiceFilter(label=_("Status"), empty_label=_("Any status"))
    at_risk = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_at_risk", label=_("At risk"), empty_label=_("Either")
    )
    gone = django_filters.ChoiceFilter(
        choices=GONE_CHOICES, method="filter_gone", label=_("Gone"), empty_label=None
    )
    rpo_policy = django_filters.ChoiceFilter(
        choices=YES_NO, method="filter_rpo_policy", label=_("RPO from a policy"), empty_label=_("Either")
    )
    incident = IncidentFilter(method="filter_incident", label=_("Incident"))

    class Meta:
        model = DcsInstance
        fields = ("q", "region", "project", "engine", "status", "at_risk", "gone", "incident", "rpo_policy")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The offered regions, projects, engines and statuses are the ones we
        # have, read in one query here; a callable choices would query on every use.
        seen = (
            DcsInstance.objects.order_by().values_list("region", "project_id", "engine", "status").distinct()
        )
        regions, projects, engines, statuses = set(), set(), set(), set()
        for region, project_id, engine, status in seen:
            regions.add(region)
            projects.add(project_id)
            engines.add(engine)
            statuses.add(status)
        offered = (("region", regions), ("project", projects), ("engine", engines), ("status", statuses))
        for name, values in offered:
            self.filters[name].extra["choices"] = [(value, value) for value in sorted(values) if value]

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(instance_id__icontains=value))

    def filter_at_risk(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(at_risk=value == "yes")

    def filter_incident(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # A note on the instance or on any of its backups: both carry the instance.
        return queryset.filter(pk__in=Note.objects.filter(incident=value).values("instance_id"))

    def filter_rpo_policy(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # backups.rpo keeps rpo NULL where the default applies (and for single-node instances).
        return queryset.filter(rpo__isnull=value != "yes")

    def filter_gone(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == "yes":
            return queryset.filter(gone_at__isnull=False)
        if value == "all":
            return queryset
        return queryset.filter(gone_at__isnull=True)

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        # No (valid) gone value: the default, listed instances only.
        if not self.form.cleaned_data.get("gone"):
            queryset = queryset.filter(gone_at__isnull=True)
        return queryset
