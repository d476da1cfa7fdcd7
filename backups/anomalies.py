"""Backups whose size or duration is unusual for their instance.

A succeeded backup is compared with the median of the instance's previous
``DASHBOARD_ANOMALY_WINDOW`` succeeded backups (by creation time) that have a
known value: its size, and its duration (finished minus created). The ratio
value ÷ median is kept on the record (``size_ratio``, ``duration_ratio``);
the record is flagged when ``|ratio - 1| > DASHBOARD_ANOMALY_RATIO``
(0.4: more than 40 % smaller or larger). Fewer than ``MIN_SAMPLES`` known
values before it, or a median of zero, say nothing: the ratio stays NULL.

A sync evaluates the succeeded records it writes (new or changed) and those
created after them, whose medians they are part of; an unchanged incremental
sync costs nothing here. It does so before it writes (``assess_pending``),
so the ratios go in the same statement as the records: evaluating after
the write updated nearly every row of a new listing a second time, which
cost more than the insert. ``detect_anomalies`` evaluates what is stored:
records given by id, or a whole instance (the management command).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from statistics import median

from django.conf import settings
from django.db.models import F, Q
from django.utils.translation import gettext

from backups.choices import BackupStatus
from backups.db import ValueList, bulk_update
from backups.models import BackupRecord, DcsInstance

SUCCEEDED = BackupStatus.SUCCEED.value
# Fewer known values than this before a backup: no median worth comparing with.
MIN_SAMPLES = 5
SIZE, DURATION = "size", "duration"
# The columns this module writes, in the order of the values it returns.
FIELDS = ("size_ratio", "duration_ratio", "anomaly")
# What a backup that was never evaluated has (the columns' defaults).
_NOTHING = (None, None, "")
_COLUMNS = ("pk", "created_at", "updated_at", "size", "size_ratio", "duration_ratio", "anomaly")


@dataclass
class _Row:
    pk: int | None
    created_at: datetime
    updated_at: datetime | None
    size: int | None
    size_ratio: float | None = None
    duration_ratio: float | None = None
    anomaly: str = ""
    # Where the row sorts among those of the same created_at: a stored row by
    # its id; one about to be inserted after every stored one, in the order
    # of the insert, as the ids it will get.
    order: tuple[int, int] = (0, 0)

    @property
    def key(self) -> tuple[datetime, tuple[int, int]]:
        return (self.created_at, self.order)

    @property
    def duration(self) -> float | None:
        if self.updated_at is None or self.updated_at < self.created_at:
            return None
        return (self.updated_at - self.created_at).total_seconds()


def ratio_of(value: float | None, previous: list[float]) -> float | None:
    """value ÷ the median of ``previous``; None when either is unknown or there are too few."""
    if value is None or len(previous) < MIN_SAMPLES:
        return None
    middle = median(previous)
    if middle <= 0:
        return None
    return value / middle


def is_anomalous(ratio: float | None) -> bool:
    return ratio is not None and abs(ratio - 1) > settings.DASHBOARD_ANOMALY_RATIO


def flags(size_ratio: float | None, duration_ratio: float | None) -> str:
    """``size``, ``duration``, ``size,duration`` or ""."""
    raised = [name for name, ratio in ((SIZE, size_ratio), (DURATION, duration_ratio)) if is_anomalous(ratio)]
    return ",".join(raised)


def describe(record: BackupRecord) -> list[str]:
    """What is unusual about a flagged record, in words: "size 45% below median", "duration 2.1x median"."""
    texts = []
    for name, ratio in ((SIZE, record.size_ratio), (DURATION, record.duration_ratio)):
        if name not in (record.anomaly or "").split(",") or ratio is None:
            continue
        label = gettext("size") if name == SIZE else gettext("duration")
        if ratio < 1:
            texts.append(
                gettext("%(what)s %(percent)d%% below median")
                % {"what": label, "percent": round((1 - ratio) * 100)}
            )
        elif ratio < 2:
            texts.append(
                gettext("%(what)s %(percent)d%% above median")
                % {"what": label, "percent": round((ratio - 1) * 100)}
            )
        else:
            texts.append(gettext("%(what)s %(ratio).1fx median") % {"what": label, "ratio": ratio})
    return texts


class _Known:
    """The known values of one measure, in creation order, to find the ones before a record."""

    def __init__(self, rows: Iterable[_Row], value):
        pairs = sorted((row.key, v) for row in rows if (v := value(row)) is not None)
        self.keys = [key for key, _ in pairs]
        self.values = [v for _, v in pairs]

    def before(self, key, window: int) -> list[float]:
        end = bisect_left(self.keys, key)
        return self.values[max(0, end - window) : end]


def _rows(queryset) -> list[_Row]:
    return [_Row(*values, order=(0, values[0])) for values in queryset.values_list(*_COLUMNS)]


def _succeeded(instance: DcsInstance):
    return BackupRecord.objects.filter(instance=instance, status=SUCCEEDED, created_at__isnull=False)


def _earlier(instance: DcsInstance, start: datetime, limit: int) -> tuple[list[_Row], list[_Row]]:
    """The ``limit`` newest succeeded rows before ``start`` with a known size; those with a known duration."""
    earlier = _succeeded(instance).filter(created_at__lt=start).order_by("-created_at", "-id")
    sized = _rows(earlier.filter(size__isnull=False)[:limit])
    timed = _rows(earlier.filter(updated_at__isnull=False, updated_at__gte=F("created_at"))[:limit])
    return sized, timed


def _history(instance: DcsInstance, targets: list[int] | None, window: int) -> tuple[list[_Row], list[_Row]]:
    """The succeeded rows to evaluate and the rows their medians come from.

    For a few targets: every succeeded row from the oldest target on (a sync's
    window), evaluated, plus the ``window`` newest with a known size and with
    a known duration before it: three queries on the (instance, created_at) index.
    """
    succeeded = _succeeded(instance)
    if targets is None:
        rows = _rows(succeeded.order_by())
        return rows, rows
    oldest = succeeded.filter(pk__in=targets).order_by("created_at").values_list("created_at", flat=True)[:1]
    span = _rows(succeeded.filter(created_at__gte=oldest).order_by())
    if not span:
        return [], []
    start = min(row.created_at for row in span)
    # Every row of the span, not only the targets: a backup stored late (an
    # older one a listing brought only now) moves the medians of the ones
    # after it. They are read anyway; only those whose flags change are written.
    sized, timed = _earlier(instance, start, window)
    return span, [*span, *sized, *timed]


def _median(values: list[float]) -> float:
    """statistics.median, without its checks: ``values`` is a non-empty list of numbers."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _evaluate(evaluate: list[_Row], history: list[_Row], window: int) -> Iterator[tuple[_Row, tuple]]:
    """Each row to evaluate whose ratios or flags are not what is stored, with its new values (FIELDS).

    :func:`ratio_of` and :func:`flags` for each row, written out in one loop:
    a listing's 1,000 new backups are 2,000 ratios, and calls cost more than
    the arithmetic.
    """
    unique = {id(row) if row.pk is None else row.pk: row for row in history}.values()
    sizes = _Known(unique, lambda row: row.size)
    durations = _Known(unique, lambda row: row.duration)
    size_keys, size_values = sizes.keys, sizes.values
    duration_keys, duration_values = durations.keys, durations.values
    limit = settings.DASHBOARD_ANOMALY_RATIO
    for row in evaluate:
        key = row.key
        size_ratio = duration_ratio = None
        if row.size is not None:
            end = bisect_left(size_keys, key)
            if end >= MIN_SAMPLES:
                middle = _median(size_values[max(0, end - window) : end])
                if middle > 0:
                    size_ratio = row.size / middle
        duration = row.duration
        if duration is not None:
            end = bisect_left(duration_keys, key)
            if end >= MIN_SAMPLES:
                middle = _median(duration_values[max(0, end - window) : end])
                if middle > 0:
                    duration_ratio = duration / middle
        if size_ratio is not None and abs(size_ratio - 1) > limit:
            flagged = (
                "size,duration" if duration_ratio is not None and abs(duration_ratio - 1) > limit else SIZE
            )
        elif duration_ratio is not None and abs(duration_ratio - 1) > limit:
            flagged = DURATION
        else:
            flagged = ""
        values = (size_ratio, duration_ratio, flagged)
        if (row.size_ratio, row.duration_ratio, row.anomaly) != values:
            yield row, values


def detect_anomalies(*, instance: DcsInstance, records: Iterable[BackupRecord | int] | None = None) -> int:
    """Compute the ratios and flags of ``records`` and the backups after them (or of every
    succeeded backup of the instance).

    ``records`` are records or their ids; those not succeeded are skipped.
    Only rows whose ratios or flags change are written, in one statement.
    Returns how many were written.
    """
    window = settings.DASHBOARD_ANOMALY_WINDOW
    targets = None if records is None else [getattr(r, "pk", r) for r in records]
    if targets is not None and not targets:
        return 0
    evaluate, history = _history(instance, targets, window)
    changed = [(row.pk, *values) for row, values in _evaluate(evaluate, history, window)]
    bulk_update(BackupRecord, fields=FIELDS, rows=changed)
    return len(changed)


@dataclass(frozen=True)
class Pending:
    """A backup about to be written: its values after the write, and its id if it is stored already."""

    pk: int | None
    status: str
    created_at: datetime | None
    updated_at: datetime | None
    size: int | None


def assess_pending(
    *, instance: DcsInstance, pending: list[Pending], nothing_stored: bool = False
) -> list[tuple]:
    """The ratios and flags (FIELDS) each backup about to be written is to have, in ``pending``'s order.

    What ``detect_anomalies(records=...)`` would find after the write, found
    before it, so that the write carries them and no row is written twice:
    the succeeded ones among ``pending`` are the targets; the span from the
    oldest of them on and the medians' history are read as they will be
    after the write (stored rows, with the pending ones in place of their
    stored selves). Stored rows of the span that are not pending and whose
    values change (those after a backup stored late) are updated here.

    The others are not evaluated and keep what they have: none for a new
    one, and its stored values for a stored one (one more query, only when
    the listing changed such a row). Otherwise three queries, as
    ``detect_anomalies``; none without a target, and none when the caller
    knows that ``nothing_stored`` for the instance (a listing of everything
    found no row of it: a first sync), as there is nothing to read.
    """
    assessed: list[tuple] = [_NOTHING] * len(pending)
    targets = [n for n, row in enumerate(pending) if row.status == SUCCEEDED and row.created_at is not None]
    kept = {row.pk: n for n, row in enumerate(pending) if row.pk is not None}
    for n in targets:
        kept.pop(pending[n].pk, None)
    if kept:
        pks = ValueList(kept, BackupRecord._meta.pk)
        for pk, *values in BackupRecord.objects.filter(pk__in=pks).values_list("pk", *FIELDS):
            assessed[kept[pk]] = tuple(values)
    if not targets:
        return assessed
    window = settings.DASHBOARD_ANOMALY_WINDOW
    oldest = min(pending[n].created_at for n in targets)
    # A pending row that is stored now is read from the database as it was;
    # it is dropped there, and, if still succeeded, is among the targets.
    rewritten = {row.pk for row in pending if row.pk is not None}
    if nothing_stored:
        span, sized, timed = [], [], []
    else:
        stored = _rows(_succeeded(instance).filter(created_at__gte=oldest).order_by())
        span = [row for row in stored if row.pk not in rewritten]
        # Every pending row dropped from the earlier ones could leave fewer than
        # the window: read as many more.
        sized, timed = (
            [row for row in rows if row.pk not in rewritten][:window]
            for rows in _earlier(instance, oldest, window + len(rewritten))
        )
    by_row = {}
    for n in targets:
        value = pending[n]
        row = _Row(value.pk, value.created_at, value.updated_at, value.size)
        # Unlike a stored one, a target's values are written whatever they
        # are: no stored value is what anything compares equal to.
        row.anomaly = None
        row.order = (0, value.pk) if value.pk is not None else (1, n)
        span.append(row)
        by_row[id(row)] = n
    changed = []
    for row, values in _evaluate(span, [*span, *sized, *timed], window):
        if id(row) in by_row:
            assessed[by_row[id(row)]] = values
        else:
            changed.append((row.pk, *values))
    bulk_update(BackupRecord, fields=FIELDS, rows=changed)
    return assessed


def anomaly_q(kind: str) -> Q:
    """The records flagged for ``kind`` ("any", "size" or "duration"), on the partial index."""
    flagged = ~Q(anomaly="")
    if kind == SIZE:
        return flagged & Q(anomaly__contains=SIZE)
    if kind == DURATION:
        return flagged & Q(anomaly__contains=DURATION)
    return flagged


__all__ = [
    "FIELDS",
    "MIN_SAMPLES",
    "Pending",
    "anomaly_q",
    "assess_pending",
    "describe",
    "detect_anomalies",
    "flags",
    "is_anomalous",
    "ratio_of",
]
