"""The anomaly badges of a backup (backups.anomalies): the lists, the instance history, the detail page."""

from __future__ import annotations

import django_tables2 as tables
from django.utils.html import format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from backups.anomalies import describe

# Amber rather than red: unusual is worth a look, not a failure.
ANOMALY_COLOR = "orange"


def anomaly_badges(record) -> SafeString | str:
    """One badge per flag ("size 45% below median"), or "" for an unremarkable backup."""
    if not getattr(record, "anomaly", ""):
        return ""
    return format_html_join(
        " ",
        '<span class="badge badge--{} badge--anomaly" title="{}">{}</span>',
        (
            (
                ANOMALY_COLOR,
                _("Unusual for this instance: compared with the median of its recent backups."),
                text,
            )
            for text in describe(record)
        ),
    )


class AnomalyColumn(tables.Column):
    """The badges on a page; the stored flags ("size", "duration", "size,duration") in exports."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("attrs", {"td": {"class": "cell--anomaly"}})
        kwargs.setdefault("empty_values", ("",))
        super().__init__(*args, **kwargs)

    def render(self, record):
        return anomaly_badges(record)

    def value(self, value):
        return value or ""
