"""Presentation helpers shared by the table columns and the page templates.

Each helper is a plain function (the columns call it) and a filter (the
templates use it), so a time or a size looks the same in a table cell and on a
detail page. Everything here escapes its input: the values come from the DCS
API and are untrusted text.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _

from backups.middleware import common_timezones, selectable_timezones

register = template.Library()

_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def as_utc(value: datetime) -> datetime:
    # USE_TZ is on, so naive values should not occur; if one does, it was
    # written as UTC (our TIME_ZONE), not in the viewer's zone.
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """``2025-01-31 23:59:59 UTC``: what the fleet's operators read and compare."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_iso(value: datetime) -> str:
    return as_utc(value).isoformat()


def utc_z(value: datetime) -> str:
    """``2026-11-26T12:00:00Z``: the form exports carry, whatever the viewer's zone."""
    return utc_iso(value).replace("+00:00", "Z")


def as_local(value: datetime) -> datetime:
    """The moment in the viewer's zone (the one ``ViewerTimezoneMiddleware`` activated)."""
    return as_utc(value).astimezone(timezone.get_current_timezone())


def offset_text(local: datetime) -> str:
    """``UTC+08:00``, ``UTC-03:30``."""
    minutes = int((local.utcoffset() or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def zone_abbreviation(local: datetime) -> str:
    """``UTC``, ``CST``, ``EDT``; or the offset where the tz database has no letters.

    The tz database spells many zones' abbreviations as numbers (``+08`` for
    Asia/Singapore), which read like a typo next to a time: those become
    ``UTC+08:00``.
    """
    name = local.tzname() or ""
    return name if name.isalpha() else offset_text(local)


def local_text(value: datetime, *, local: datetime | None = None) -> str:
    """``2025-01-31 23:59:59 CST`` in the viewer's zone (``... UTC`` by default)."""
    local = local or as_local(value)
    return f"{local:%Y-%m-%d %H:%M:%S} {zone_abbreviation(local)}"


def local_iso(value: datetime) -> str:
    return as_local(value).isoformat()


def timestamp_title(value: datetime, *, local: datetime | None = None) -> str:
    """The tooltip: the exact ISO 8601 value in the viewer's zone and in UTC.

    In UTC the two are the same, so it is given once. ``local`` is the value
    in the viewer's zone when the caller has it already.
    """
    local = local or as_local(value)
    if local.tzname() == "UTC":
        return utc_iso(value)
    zone = timezone.get_current_timezone_name()
    return f"{local.isoformat()} ({zone})\n{utc_iso(value)} (UTC)"


@register.filter
def timestamp(value: datetime | None) -> SafeString | str:
    """A ``<time>`` element in the viewer's zone.

    The ``datetime`` attribute is always UTC, so machines (and people reading
    the source) get one unambiguous value; the tooltip has both ISO values.
    """
    if value is None or value == "":
        return ""
    if not isinstance(value, datetime):
        return conditional_escape(value)
    # Two tables' time columns make this a hundred times a page: the zone is converted to once.
    local = as_local(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        utc_iso(value),
        timestamp_title(value, local=local),
        local_text(value, local=local),
    )


def human_bytes_text(size: int) -> str:
    """Binary units (1 KiB = 1024 B), as the DCS console counts them."""
    if abs(size) < 1024:
        return _("%(size)d B") % {"size": size}
    value = float(size)
    for unit in _BINARY_UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _BINARY_UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def exact_bytes_text(size: int) -> str:
    return ngettext("%(size)s byte", "%(size)s bytes", size) % {"size": f"{size:,}"}


@register.filter
def human_bytes(value: int | None) -> SafeString | str:
    """``1.5 GiB`` with the exact byte count as tooltip."""
    if value is None or value == "":
        return ""
    size = int(value)
    return format_html(
        '<span class="bytes" title="{}">{}</span>', exact_bytes_text(size), human_bytes_text(size)
    )


@register.simple_tag
def timezone_options(current: str) -> SafeString:
    """The ``<option>``s of the time zone selector: common zones, then all of them.

    Built here rather than in a template loop: about 600 options on every page
    are one string join, not 600 template iterations. An option without a value
    attribute submits its text, which keeps the page small. The current zone is
    selected once, in the first group that has it.
    """
    return _timezone_options(current, get_language())


# Every page has the selector, and it is the same for everyone in a zone and
# a language: built once per pair (about 3 ms), not per request. The zone is
# one the middleware accepted, so the pairs are few.
@functools.lru_cache(maxsize=64)
def _timezone_options(current: str, language: str | None) -> SafeString:
    common = common_timezones()
    groups = (
        (_("Common time zones"), common, current in common),
        (_("All time zones"), selectable_timezones(), current not in common),
    )
    return format_html_join(
        "",
        '<optgroup label="{}">{}</optgroup>',
        ((label, _options(names, current if selects else None)) for label, names, selects in groups),
    )


def _options(names: tuple[str, ...], selected: str | None) -> SafeString:
    return format_html_join(
        "", "<option{}>{}</option>", ((" selected" if name == selected else "", name) for name in names)
    )
