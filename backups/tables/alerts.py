"""The alert history table (``/alerts/``).

Rows come with their instance and record joined and their deliveries
prefetched (see ``views.alerts``); nothing here queries.
"""

from __future__ import annotations

import django_tables2 as tables
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from backups.alerts.messages import alert_path
from backups.choices import ColoredChoices
from backups.models import Alert, AlertKind
from backups.tables.columns import ChoiceBadgeColumn, InstanceColumn, TimestampColumn, duration_text


class AlertState(ColoredChoices):
    OPEN = "open", _("Open")
    RECOVERED = "recovered", _("Recovered")

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {cls.OPEN: "red", cls.RECOVERED: "green"}

    @classmethod
    def of(cls, alert: Alert) -> str:
        return cls.OPEN.value if alert.resolved_at is None else cls.RECOVERED.value


class ColoredAlertKind(ColoredChoices):
    RPO = AlertKind.RPO.value, AlertKind.RPO.label
    BACKUP_FAILED = AlertKind.BACKUP_FAILED.value, AlertKind.BACKUP_FAILED.label

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {cls.RPO: "orange", cls.BACKUP_FAILED: "red"}


class StateColumn(tables.Column):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("empty_values", ())
        kwargs.setdefault("orderable", False)
        super().__init__(*args, **kwargs)

    def render(self, record):
        state = AlertState.of(record)
        return format_html(
            '<span class="badge badge--{}">{}</span>', AlertState.color_of(state), AlertState.label_of(state)
        )

    def value(self, record):
        return AlertState.label_of(AlertState.of(record))


class AlertDurationColumn(tables.Column):
    """How long it was (or has been) open."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("empty_values", ())
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("attrs", {"th": {"class": "cell--num"}, "td": {"class": "cell--num"}})
        super().__init__(*args, **kwargs)

    def _delta(self, record):
        return (record.resolved_at or timezone.now()) - record.opened_at

    def render(self, record):
        delta = self._delta(record)
        return format_html(
            '<span class="duration" title="{}">{}</span>', duration_text(delta, units=4), duration_text(delta)
        )

    def value(self, record):
        return str(int(self._delta(record).total_seconds()))


class DeliveriesColumn(tables.Column):
    """Every notification of the alert: event, channel, target, delivered or the error."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("empty_values", ())
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("attrs", {"td": {"class": "cell--wrap"}})
        super().__init__(*args, **kwargs)

    def render(self, record):
        deliveries = list(record.deliveries.all())
        if not deliveries:
            return format_html('<span class="delivery--none">{}</span>', _("none"))
        return format_html_join(
            "",
            '<div class="delivery delivery--{}"><span class="badge badge--{}">{}</span> '
            "{} · {} <code>{}</code>{}</div>",
            (
                (
                    "ok" if d.ok else "failed",
                    "green" if d.ok else "red",
                    _("sent") if d.ok else _("failed"),
                    d.get_event_display(),
                    d.get_channel_display(),
                    d.target,
                    format_html(' <span class="delivery__error">{}</span>', d.error) if d.error else "",
                )
                for d in deliveries
            ),
        )

    def value(self, record):
        return "; ".join(
            f"{d.event} {d.channel} {d.target} {'ok' if d.ok else 'failed: ' + d.error}"
            for d in record.deliveries.all()
        )


class SummaryColumn(tables.Column):
    """The summary, linked to the page the alert concerns (the failed backup, else the instance)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("attrs", {"td": {"class": "cell--wrap"}})
        super().__init__(*args, **kwargs)

    def render(self, value, record):
        return format_html('<a href="{}">{}</a>', alert_path(record), value)

    def value(self, value):
        return value


class AlertTable(tables.Table):
    state = StateColumn(verbose_name=_("State"))
    kind = ChoiceBadgeColumn(ColoredAlertKind, verbose_name=_("Kind"))
    instance = InstanceColumn(verbose_name=_("Instance"))
    summary = SummaryColumn(verbose_name=_("Summary"))
    opened_at = TimestampColumn(verbose_name=_("Opened"), orderable=True, order_by=("opened_at", "id"))
    resolved_at = TimestampColumn(verbose_name=_("Recovered"), orderable=False, default="—")
    duration = AlertDurationColumn(verbose_name=_("Duration"))
    deliveries = DeliveriesColumn(verbose_name=_("Notifications"))

    class Meta:
        model = Alert
        fields = ()
        sequence = (
            "state",
            "kind",
            "instance",
            "summary",
            "opened_at",
            "resolved_at",
            "duration",
            "deliveries",
        )
        order_by = ("-opened_at",)
        per_page = 50
        empty_text = _("No alerts yet.")
