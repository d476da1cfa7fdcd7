"""Template filters of the incident view."""

from __future__ import annotations

from datetime import datetime

from django import template

from backups.exports import iso_utc

register = template.Library()


@register.filter
def iso_z(value: datetime | None) -> str:
    """The exact UTC time as exports write it: ``2026-11-26T12:00:00Z``."""
    if not isinstance(value, datetime):
        return ""
    return iso_utc(value)
