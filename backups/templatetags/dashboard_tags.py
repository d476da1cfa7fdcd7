"""Presentation helpers shared by the table columns and the page templates.

Each helper is a plain function (the columns call it) and a filter (the
templates use it), so a time or a size looks the same in a table cell and on a
detail page. Everything here escapes its input: the values come from the DCS
API and are untrusted text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

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


@register.filter
def timestamp(value: datetime | None) -> SafeString | str:
    """A ``<time>`` element in UTC, with the exact ISO 8601 value as tooltip."""
    if value is None or value == "":
        return ""
    iso = utc_iso(value)
    return format_html('<time datetime="{}" title="{}">{}</time>', iso, iso, utc_text(value))


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
