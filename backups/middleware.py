"""The viewer's time zone: chosen in the header, kept in a cookie, active per request.

Times are stored in UTC and shown in the zone the viewer picked (UTC unless
they picked another: incident reviews compare in UTC). The choice lives in a
cookie, not in the session or the user row, so activating it costs no query
and works on the login page too.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, tzinfo

from django.conf import settings
from django.utils import timezone

TIMEZONE_COOKIE = "dashboard_tz"
TIMEZONE_COOKIE_MAX_AGE = 365 * 24 * 60 * 60
DEFAULT_TIMEZONE = "UTC"

# Offered first in the selector: UTC, then the zones of the Huawei Cloud regions
# DCS runs in and of the teams that read this dashboard.
COMMON_TIMEZONES = (
    "UTC",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "Asia/Bangkok",
    "Asia/Jakarta",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Riyadh",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Dublin",
    "Europe/London",
    "Africa/Johannesburg",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/New_York",
    "America/Chicago",
    "America/Mexico_City",
    "America/Los_Angeles",
)

# In the tz database but not a zone a person lives in: "Factory" has no
# offset, "localtime" is whatever the server happens to use.
_NOT_SELECTABLE = frozenset({"Factory", "localtime"})


@functools.cache
def selectable_timezones() -> tuple[str, ...]:
    """Every IANA zone name the server knows, sorted. Read from disk once per process."""
    return tuple(sorted((zoneinfo.available_timezones() - _NOT_SELECTABLE) | {DEFAULT_TIMEZONE}))


@functools.cache
def common_timezones() -> tuple[str, ...]:
    known = set(selectable_timezones())
    return tuple(name for name in COMMON_TIMEZONES if name in known)


@functools.cache
def _known_timezones() -> frozenset[str]:
    return frozenset(selectable_timezones())


def default_timezone_name() -> str:
    """The deployment's default zone (``DASHBOARD_TIME_ZONE``, checked at start-up), UTC unless set."""
    name = getattr(settings, "DASHBOARD_TIME_ZONE", DEFAULT_TIMEZONE)
    return name if name in _known_timezones() else DEFAULT_TIMEZONE


def clean_timezone_name(raw: str | None) -> str:
    """The zone name if the server knows it, otherwise the deployment's default.

    A cookie is user input: a stale name (a zone removed from the tz
    database), a typo or an attempt at a path all become the default, silently.
    """
    if raw and raw in _known_timezones():
        return raw
    return default_timezone_name()


def zone_of(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # Listed but unreadable (a broken tz file), or no tz database at all:
        # UTC needs none.
        return UTC


class ViewerTimezoneMiddleware:
    """Activates the viewer's zone for the request; reads a cookie, never the database."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = clean_timezone_name(request.COOKIES.get(TIMEZONE_COOKIE))
        timezone.activate(zone_of(name))
        try:
            return self.get_response(request)
        finally:
            # The thread serves other requests next; they start from UTC.
            timezone.deactivate()
