"""Filters of the backup records list (``/backups/``).

Every filter is a query parameter people paste into tickets, so a value we
cannot use never fails the page: the form reports it (the list view turns that
into a message) and the filter is left out, while the others still apply.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backups.anomalies import anomaly_q
from backups.choices import BackupFormat, BackupStatus, BackupType
from backups.models import BackupRecord, DcsInstance, Note
from backups.notes import IncidentField
from backups.timewindow import parse_time_bound

# Longer search text is a paste gone wrong, and a LIKE over it is wasted work.
MAX_SEARCH_LENGTH = 200


class LenientMultipleChoiceField(forms.MultipleChoiceField):
    """Keeps the values it knows and sets the others aside in ``rejected``.

    A plain MultipleChoiceField drops the whole parameter for one bad value:
    ``?status=failed&status=typo`` should still show the failed backups.
    """

    widget = forms.CheckboxSelectMultiple

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rejected: list[str] = []

    def clean(self, value):
        values = self.to_python(value)
        self.rejected = [v for v in values if not self.valid_value(v)]
        return [v for v in values if self.valid_value(v)]


class LenientMultipleChoiceFilter(django_filters.Filter):
    """``field IN (...)`` over the known values; no DISTINCT (one row per record already)."""

    field_class = LenientMultipleChoiceField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("lookup_expr", "in")
        super().__init__(*args, **kwargs)


class TimeBoundField(forms.CharField):
    """An absolute ISO date or datetime, or a preset such as ``24h`` or ``7d``.

    Cleans to an aware UTC datetime (``backups.timewindow.parse_time_bound``).
    """

    def __init__(self, *args, upper: bool = False, **kwargs):
        self.upper = upper
        kwargs.setdefault("max_length", 64)
        super().__init__(*args, **kwargs)
        self.widget.attrs.update(
            {"list": "time-presets", "placeholder": _("2026-11-01, 2026-11-01T08:00Z or 7d")}
        )

    def clean(self, value):
        text = super().clean(value)
        if not text:
            return None
        try:
            return parse_time_bound(text, now=timezone.now(), upper=self.upper)
        except ValueError as error:
            raise forms.ValidationError(str(error), code="invalid") from None
        except OverflowError:
            # A valid date whose next day, or whose UTC time, falls outside
            # what datetime can hold (9999-12-31 as an upper bound).
            raise forms.ValidationError(_("that time is out of range"), code="invalid") from None


class TimeBoundFilter(django_filters.Filter):
    field_class = TimeBoundField


class IncidentFilter(django_filters.Filter):
    """``?incident=INC-1234``, any case: the rows with a note that names it (see ``method``)."""

    field_class = IncidentField


ANOMALY_CHOICES = (
    ("any", _("Unusual size or duration")),
    ("size", _("Unusual size")),
    ("duration", _("Unusual duration")),
)


class BackupRecordFilterSet(django_filters.FilterSet):
    """``status`` (repeatable), ``backup_type``, ``backup_format``, ``instance``,
    ``region``, ``project``, ``engine``, ``created_after``, ``created_before`` and ``q``."""

    q = django_filters.CharFilter(
        method="filter_search",
        label=_("Search"),
        max_length=MAX_SEARCH_LENGTH,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("Name, id, instance or remark")}),
    )
    status = LenientMultipleChoiceFilter(choices=BackupStatus.choices, label=_("Status"))
    backup_type = django_filters.ChoiceFilter(
        choices=BackupType.choices, label=_("Type"), empty_label=_("Any type")
    )
    backup_format = django_filters.ChoiceFilter(
        choices=BackupFormat.choices, label=_("Format"), empty_label=_("Any format")
    )
    instance = django_filters.CharFilter(
        method="filter_instance", label=_("Instance"), max_length=MAX_SEARCH_LENGTH
    )
    region = django_filters.CharFilter(
        field_name="instance__region", lookup_expr="iexact", label=_("Region"), max_length=64
    )
    project = django_filters.CharFilter(
        field_name="instance__project_id", lookup_expr="exact", label=_("Project"), max_length=64
    )
    engine = django_filters.CharFilter(
        field_name="instance__engine", lookup_expr="iexact", label=_("Engine"), max_length=32
    )
    created_after = TimeBoundFilter(field_name="created_at", lookup_expr="gte", label=_("Created after"))
    # A bare date as the upper bound means the whole of that day.
    created_before = TimeBoundFilter(
        field_name="created_at", lookup_expr="lt", label=_("Created before"), upper=True
    )
    incident = IncidentFilter(method="filter_incident", label=_("Incident"))
    anomaly = django_filters.ChoiceFilter(
        choices=ANOMALY_CHOICES, method="filter_anomaly", label=_("Anomaly"), empty_label=_("Any backup")
    )

    class Meta:
        model = BackupRecord
        fields = (
            "q",
            "status",
            "backup_type",
            "backup_format",
            "instance",
            "region",
            "project",
            "engine",
            "created_after",
            "created_before",
            "incident",
            "anomaly",
        )

    def filter_anomaly(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # Flagged rows only: the partial index backup_anomalous holds just them.
        return queryset.filter(anomaly_q(value))

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(backup_name__icontains=value)
            | Q(backup_id__icontains=value)
            | Q(instance__name__icontains=value)
            | Q(instance__instance_id__icontains=value)
            | Q(remark__icontains=value)
        )

    def filter_incident(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # The backups a note names with this incident (incidents are stored in
        # upper case, as the field cleans the value). A note on the instance
        # alone names no backup: the fleet's filter finds those.
        noted = Note.objects.filter(incident=value, record__isnull=False).values("record_id")
        return queryset.filter(pk__in=noted)

    def filter_instance(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # An id is pasted whole; a name is remembered in part. The instances
        # are looked up first (a small table): filtering the records by their
        # instance keys then reads one instance's history off the (instance,
        # created_at) index, where an OR across the join would scan the list.
        matches = DcsInstance.objects.filter(Q(instance_id=value) | Q(name__icontains=value))
        found = list(matches.values_list("pk", "instance_id"))
        # Kept for the page's "Freeze as incident view" link, at no extra query.
        self.matched_instance_ids = [instance_id for _pk, instance_id in found]
        return queryset.filter(instance_id__in=[pk for pk, _instance_id in found])
