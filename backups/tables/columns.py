"""Columns the dashboard's tables are made of.

A column's ``render()`` builds the HTML of a cell with ``format_html`` (the
values come from the DCS API and are untrusted text); its ``value()`` gives the
same fact as plain text, for CSV/JSON exports.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import django_tables2 as tables
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from backups.choices import (
    ColoredChoices,
    describe_error_code,
)
from backups.templatetags.dashboard_tags import (
    exact_bytes_text,
    human_bytes_text,
    local_text,
    timestamp,
    utc_z,
)
from backups.templatetags.error_codes import error_code_html


def _raw_value(record, bound_column):
    # django-tables2 hands render() the get_FOO_display() label of a field
    # with choices; the colour is looked up by the stored value instead.
    return bound_column.accessor.resolve(record, quiet=True)


class KeptCells(dict):
    """A column's cells by what they show, each built once per table.

    A page shows a handful of statuses, a yes or a no, often one instance, in
    many rows. A table copies its columns, so this lives for one table, in
    one language.
    """

    def cell(self, key, build: Callable[[], str]) -> str:
        try:
            return self[key]
        except KeyError:
            built = self[key] = build()
            return built


class ChoiceBadgeColumn(tables.Column):
    """A badge whose label and colour come from a ``ColoredChoices`` enum.

    A value the API added after we wrote the enum is shown as received, in the
    neutral colour.
    """

    raw_in_json = True

    def __init__(self, choices: type[ColoredChoices], *args, **kwargs):
        self.choices = choices
        self._badges = KeptCells()
        super().__init__(*args, **kwargs)

    def render(self, record, bound_column):
        raw = _raw_value(record, bound_column)
        return self._badges.cell(
            raw,
            lambda: format_html(
                '<span class="badge badge--{}">{}</span>',
                self.choices.color_of(raw),
                self.choices.label_of(raw),
            ),
        )

    def value(self, record, bound_column):
        return self.choices.label_of(_raw_value(record, bound_column))


def _percent_text(progress) -> str:
    try:
        number = Decimal(str(progress))
    except InvalidOperation:
        return ""
    # 42.50 -> "42.5", 100.00 -> "100"
    return f"{number.normalize():f}"


class ProgressColumn(tables.Column):
    """A progress bar, only for a record that is still going.

    A finished backup's progress says nothing new (its status does), so its
    cell stays empty. A ``<progress>`` element needs no inline style, which
    keeps the page compatible with a strict Content Security Policy.
    """

    empty_values = ()

    def __init__(self, *args, is_active=lambda record: record.is_active, **kwargs):
        self.is_active = is_active
        kwargs.setdefault("attrs", {"td": {"class": "cell--progress"}})
        super().__init__(*args, **kwargs)

    def render(self, value, record, bound_column):
        if not self.is_active(record):
            return bound_column.default
        label = _("Backup progress")
        if value is None or value == "":
            # Waiting for the backup to start: an indeterminate bar.
            return format_html('<progress class="progress" max="100" aria-label="{}"></progress>', label)
        percent = _percent_text(value)
        return format_html(
            '<span class="progress-wrap"><progress class="progress" max="100" value="{}" aria-label="{}">'
            '{}%</progress><span class="progress__text">{}%</span></span>',
            percent,
            label,
            percent,
            percent,
        )

    def value(self, value):
        if value is None or value == "":
            return ""
        return _percent_text(value)


class BytesColumn(tables.Column):
    """A size in binary units (KiB, MiB, GiB), the exact bytes as tooltip."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("attrs", {"th": {"class": "cell--num"}, "td": {"class": "cell--num"}})
        super().__init__(*args, **kwargs)

    def render(self, value):
        size = int(value)
        return format_html(
            '<span class="bytes" title="{}">{}</span>', exact_bytes_text(size), human_bytes_text(size)
        )

    def value(self, value):
        # Exports carry the exact count, which a spreadsheet can sum.
        return str(int(value))


class YesNoColumn(tables.BooleanColumn):
    """django-tables2's BooleanColumn, its two cells built once per table (KeptCells)."""

    def __init__(self, *args, **kwargs):
        self._cells = KeptCells()
        super().__init__(*args, **kwargs)

    def render(self, value, record, bound_column):
        key = self._get_bool_value(record, value, bound_column)
        return self._cells.cell(key, lambda: super(YesNoColumn, self).render(value, record, bound_column))


class TimestampColumn(tables.Column):
    """``YYYY-MM-DD HH:MM:SS <zone>`` in the viewer's zone, in a ``<time>`` element.

    The tooltip has the ISO 8601 value in the viewer's zone and in UTC. Exports
    are read by scripts and compared across teams, so ``value()`` is always
    UTC, whatever zone the viewer picked: ``2026-11-26T12:00:00Z``.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("attrs", {"td": {"class": "cell--time"}})
        super().__init__(*args, **kwargs)

    def render(self, value):
        return timestamp(value)

    def value(self, value):
        return utc_z(value)


class ErrorCodeColumn(tables.Column):
    """An error code, with what it means when we know the code."""

    def __init__(self, *args, describe=describe_error_code, **kwargs):
        self.describe = describe
        kwargs.setdefault("attrs", {"td": {"class": "cell--wrap"}})
        super().__init__(*args, **kwargs)

    def render(self, value):
        # The "?" beside the code opens the catalogue (/errors/) at this code,
        # with what a DBA can do next.
        return error_code_html(value, meaning=self.describe(value))

    def value(self, value):
        meaning = self.describe(value)
        return f"{value}: {meaning}" if meaning else value


class InstanceColumn(tables.Column):
    """The instance's name and id, linked to its page."""

    def __init__(self, *args, url_name="backups:instance-detail", **kwargs):
        self.url_name = url_name
        kwargs.setdefault("order_by", ("instance__name", "instance__instance_id"))
        # An instance's history, or a filter by instance, shows one instance
        # on every row: its cell is built once per table.
        self._cells = KeptCells()
        super().__init__(*args, **kwargs)

    def render(self, value):
        return self._cells.cell((value.instance_id, value.name, value.gone_at), lambda: self._cell(value))

    def _cell(self, value):
        name = value.name or value.instance_id
        try:
            url = reverse(self.url_name, args=[value.instance_id])
        except NoReverseMatch:
            # An id our URL pattern cannot carry (empty, or with a slash):
            # show it, unlinked, rather than break the whole page.
            link = format_html('<span class="instance__name">{}</span>', name)
        else:
            link = format_html('<a class="instance__name" href="{}">{}</a>', url, name)
        gone = gone_marker(value.gone_at, _("This instance is no longer listed by the API."))
        if value.name:
            return format_html('{}{} <code class="instance__id">{}</code>', link, gone, value.instance_id)
        return format_html("{}{}", link, gone)

    def value(self, value):
        if value.name:
            return f"{value.name} ({value.instance_id})"
        return value.instance_id


def gone_marker(gone_at, explanation):
    if gone_at is None:
        return ""
    return format_html(
        ' <span class="marker marker--gone" title="{} {}">{}</span>',
        explanation,
        _("Gone since %(time)s.") % {"time": local_text(gone_at)},
        _("gone"),
    )


def duration_text(delta, *, units: int = 2) -> str:
    """``3 min 12 s``, ``2 h 5 min``, ``1 d 4 h``: the largest ``units``, enough to compare runs."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        (days, _("%(n)d d")),
        (hours, _("%(n)d h")),
        (minutes, _("%(n)d min")),
        (seconds, _("%(n)d s")),
    ]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = [str(text) % {"n": amount} for amount, text in parts[:units] if amount]
    return " ".join(shown) or str(_("%(n)d s")) % {"n": 0}


class DurationColumn(tables.Column):
    """How long a backup took (finished minus created); empty while unknown.

    The tooltip has every unit down to the second; exports carry whole
    seconds, which a spreadsheet can add up.
    """

    export_key = "duration_seconds"
    export_header = _("Duration (s)")

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("accessor", "duration")
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("default", "")
        kwargs.setdefault("attrs", {"th": {"class": "cell--num"}, "td": {"class": "cell--num"}})
        super().__init__(*args, **kwargs)

    def render(self, value):
        return format_html(
            '<span class="duration" title="{}">{}</span>', duration_text(value, units=4), duration_text(value)
        )

    def value(self, value):
        return str(int(value.total_seconds()))
