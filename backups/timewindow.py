"""Time bounds in query strings: absolute ISO values and relative presets.

``created_after=2026-11-01``, ``created_after=2026-11-01T08:00:00+08:00`` and
``created_after=24h`` are all accepted. A relative preset ("the last 24 h")
shows different records tomorrow, so a permalink replaces presets with the
absolute UTC times they stood for when the page was rendered.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from django.http import QueryDict
from django.utils.translation import gettext as _

# Presets a page offers, in order, and how far back each reaches.
PRESETS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
_RELATIVE_RE = re.compile(r"^(\d{1,4})([hd])$")
# Names of the query parameters that hold time bounds.
TIME_BOUND_PARAMS = ("created_after", "created_before")


def parse_relative(raw: str) -> timedelta | None:
    """``24h`` → 24 hours, ``7d`` → 7 days; None when it is not a preset."""
    match = _RELATIVE_RE.match(raw.strip().lower())
    if not match:
        return None
    amount, unit = int(match[1]), match[2]
    if amount == 0 or (unit == "d" and amount > 3660) or (unit == "h" and amount > 3660 * 24):
        return None
    return timedelta(hours=amount) if unit == "h" else timedelta(days=amount)


def parse_time_bound(raw: str, *, now: datetime, upper: bool = False) -> datetime:
    """An aware UTC datetime from a query-string value, or ValueError saying why.

    A bare date is the start of that day in UTC, or for an upper bound
    (``upper=True``) the start of the next day, so ``created_before=2026-11-01``
    includes all of 1 November. A datetime without an offset is UTC.
    """
    text = raw.strip()
    if not text:
        raise ValueError(_("an empty time"))
    relative = parse_relative(text)
    if relative is not None:
        return now - relative
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time.min, tzinfo=UTC)
            return start + timedelta(days=1) if upper else start
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise ValueError(
            _(
                "“%(value)s” is not a date (2026-11-01), a date and time "
                "(2026-11-01T08:00:00Z) or a preset (24h, 7d)"
            )
            % {"value": text[:40]}
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_bound(value: datetime) -> str:
    """The canonical form of a bound in a permalink: ``2026-11-01T08:00:00Z``."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def absolute_query(
    params: QueryDict, *, now: datetime, names: tuple[str, ...] = TIME_BOUND_PARAMS
) -> QueryDict:
    """A copy of ``params`` whose relative time bounds are absolute UTC times.

    Values that do not parse are left as they are: the page shows the error.
    """
    absolute = params.copy()
    for name in names:
        values = []
        for raw in params.getlist(name):
            if parse_relative(raw) is not None:
                values.append(format_bound(parse_time_bound(raw, now=now)))
            else:
                values.append(raw)
        if values:
            absolute.setlist(name, values)
    return absolute
