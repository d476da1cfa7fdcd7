"""The fleet calendar's reads: which instances had a successful backup on which day.

Days are UTC days, whatever zone the viewer picked: an incident review
compares notes across teams and zones, and the backup list reads a bare date
(``created_after=2026-11-01``) as a UTC day too, so a cell and the list it
links to always agree.

One aggregate query answers for a whole page of instances: the records of
those instances in the window, grouped by instance and UTC day, with
conditional counts per status. It reads the (instance, created_at) index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.urls import reverse

from backups.choices import BackupStatus
from backups.models import BackupRecord, DcsInstance

SUCCEEDED = BackupStatus.SUCCEED.value
FAILED = BackupStatus.FAILED.value

# A cell's state, its CSS modifier; the order is the legend's.
SUCCESS = "success"  # at least one backup that succeeded
FAILURE = "failure"  # failures, and no success
OTHER = "other"  # only backups still running, expired or deleted
NONE = "none"  # no backup that day
BEFORE = "before"  # before we knew the instance, and no backup either
STATES = (SUCCESS, FAILURE, OTHER, NONE, BEFORE)


@dataclass(frozen=True)
class DayCounts:
    total: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def other(self) -> int:
        return self.total - self.succeeded - self.failed


EMPTY = DayCounts()


@dataclass(frozen=True)
class Cell:
    day: date
    state: str
    counts: DayCounts
    url: str  # that day's records in the backup list; "" for a day without any


@dataclass(frozen=True)
class CalendarRow:
    instance: DcsInstance
    known_since: date | None  # the UTC day we first knew of the instance
    cells: list[Cell]


def window_days(*, today: date, days: int) -> list[date]:
    """The ``days`` UTC days that end with ``today``, oldest first."""
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def daily_counts(instance_pks: list[int], *, first: date, last: date) -> dict[tuple[int, date], DayCounts]:
    """(instance pk, UTC day) -> the counts of its backups created that day: one query.

    The day is truncated in UTC by the database itself (``TruncDate`` with an
    explicit zone; without it Django would use the viewer's zone).
    """
    if not instance_pks:
        return {}
    rows = (
        BackupRecord.objects.filter(
            instance_id__in=instance_pks,
            created_at__gte=day_start(first),
            created_at__lt=day_start(last + timedelta(days=1)),
        )
        .order_by()
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("instance_id", "day")
        .annotate(
            total=Count("pk"),
            succeeded=Count("pk", filter=Q(status=SUCCEEDED)),
            failed=Count("pk", filter=Q(status=FAILED)),
        )
    )
    counts = {}
    for row in rows:
        day = row["day"]
        if isinstance(day, str):  # a backend that hands back text
            day = date.fromisoformat(day)
        counts[(row["instance_id"], day)] = DayCounts(row["total"], row["succeeded"], row["failed"])
    return counts


def state_of(counts: DayCounts, *, day: date, known_since: date | None) -> str:
    if counts.succeeded:
        return SUCCESS
    if counts.failed:
        return FAILURE
    if counts.total:
        return OTHER
    if known_since is not None and day < known_since:
        return BEFORE
    return NONE


def known_since(instance: DcsInstance) -> date | None:
    """The UTC day of the earliest of first_seen and the cloud's created_at, when known."""
    moments = [moment for moment in (instance.first_seen, instance.created_at) if moment is not None]
    if not moments:
        return None
    return min(moments).astimezone(UTC).date()


def day_records_url(instance: DcsInstance, day: date, *, list_url: str = "") -> str:
    """The backup list of ``instance``'s records created on the UTC day ``day``.

    A bare date as ``created_before`` means the whole of that day (backups.timewindow).
    """
    query = urlencode(
        {
            "instance": instance.instance_id,
            "created_after": day.isoformat(),
            "created_before": day.isoformat(),
        }
    )
    return f"{list_url or reverse('backups:backup-list')}?{query}"


def calendar_rows(instances: list[DcsInstance], *, days: list[date]) -> list[CalendarRow]:
    """A row of cells per instance, for the days given (oldest first): one query."""
    if not days:
        return [CalendarRow(instance, known_since(instance), []) for instance in instances]
    counts = daily_counts([instance.pk for instance in instances], first=days[0], last=days[-1])
    list_url = reverse("backups:backup-list")  # once, not once per cell
    rows = []
    for instance in instances:
        since = known_since(instance)
        cells = []
        for day in days:
            day_counts = counts.get((instance.pk, day), EMPTY)
            cells.append(
                Cell(
                    day=day,
                    state=state_of(day_counts, day=day, known_since=since),
                    counts=day_counts,
                    url=day_records_url(instance, day, list_url=list_url) if day_counts.total else "",
                )
            )
        rows.append(CalendarRow(instance, since, cells))
    return rows
