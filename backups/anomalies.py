"""Backups whose size or duration is unusual for their instance.

A succeeded backup is compared with the median of the instance's previous
``DASHBOARD_ANOMALY_WINDOW`` succeeded backups (by creation time) that have a
known value: its size, and its duration (finished minus created). The ratio
value ÷ median is kept on the record (``size_ratio``, ``duration_ratio``);
the record is flagged when ``|ratio - 1| > DASHBOARD_ANOMALY_RATIO``
(0.4: more than 40 % smaller or larger). Fewer than ``MIN_SAMPLES`` known
values before it, or a median of zero, say nothing: the ratio stays NULL.

A sync evaluates the succeeded records it wrote (new or changed) and those
created after them, whose medians they are part of; an unchanged incremental
sync costs nothing here. ``detect_anomalies`` without ``records`` (the
management command) recomputes a whole instance.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from statistics import median

from django.conf import settings
from django.db.models import F, Q
from django.utils.translation import gettext

from backups.choices import BackupStatus
from backups.models import BackupRecord, DcsInstance

SUCCEEDED = BackupStatus.SUCCEED.value
# Fewer known values than this before a backup: no median worth comparing with.
MIN_SAMPLES = 5
BATCH_SIZE = 500
SIZE, DURATION = "size", "duration"
_COLUMNS = ("pk", "created_at", "updated_at", "size", "size_ratio", "duration_ratio", "anomaly")


@dataclass
class _Row:
    pk: int
    created_at: datetime
    updated_at: datetime | None
    size: int | None
    size_ratio: float | None
    duration_ratio: float | None
    anomaly: str

    @property
    def key(self) -> tuple[datetime, int]:
        return (self.created_at, self.pk)

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
    return [_Row(*values) for values in queryset.values_list(*_COLUMNS)]


def _history(instance: DcsInstance, targets: list[int] | None, window: int) -> tuple[list[_Row], list[_Row]]:
    """The succeeded rows to evaluate and the rows their medians come from.

    For a few targets: every succeeded row from the oldest target on (a sync's
    window), evaluated, plus the ``window`` newest with a known size and with
    a known duration before it: three queries on the (instance, created_at) index.
    """
    succeeded = BackupRecord.objects.filter(instance=instance, status=SUCCEEDED, created_at__isnull=False)
    if targets is None:
        rows = _rows(succeeded.order_by())
        return rows, rows
    oldest = succeeded.filter(pk__in=targets).order_by("created_at").values_list("created_at", flat=True)[:1]
    span = _rows(succeeded.filter(created_at__gte=oldest).order_by())
    if not span:
        return [], []
    start = min(row.created_at for row in span)
    earlier = succeeded.filter(created_at__lt=start).order_by("-created_at", "-id")
    sized = _rows(earlier.filter(size__isnull=False)[:window])
    timed = _rows(earlier.filter(updated_at__isnull=False, updated_at__gte=F("created_at"))[:window])
    # Every row of the span, not only the targets: a backup stored late (an
    # older one a listing brought only now) moves the medians of the ones
    # after it. They are read anyway; only those whose flags change are written.
    return span, [*span, *sized, *timed]


def detect_anomalies(*, instance: DcsInstance, records: Iterable[BackupRecord | int] | None = None) -> int:
    """Compute the ratios and flags of ``records`` and the backups after them (or of every
    succeeded backup of the instance).

    ``records`` are records or their ids; those not succeeded are skipped.
    Only rows whose ratios or flags change are written, in batches. Returns
    how many were written.
    """
    window = settings.DASHBOARD_ANOMALY_WINDOW
    targets = None if records is None else [getattr(r, "pk", r) for r in records]
    if targets is not None and not targets:
        return 0
    evaluate, history = _history(instance, targets, window)
    unique = {row.pk: row for row in history}.values()
    sizes = _Known(unique, lambda row: row.size)
    durations = _Known(unique, lambda row: row.duration)
    changed: list[BackupRecord] = []
    for row in evaluate:
        size_ratio = ratio_of(row.size, sizes.before(row.key, window))
        duration_ratio = ratio_of(row.duration, durations.before(row.key, window))
        anomaly = flags(size_ratio, duration_ratio)
        if (row.size_ratio, row.duration_ratio, row.anomaly) != (size_ratio, duration_ratio, anomaly):
            changed.append(
                BackupRecord(pk=row.pk, size_ratio=size_ratio, duration_ratio=duration_ratio, anomaly=anomaly)
            )
    for start in range(0, len(changed), BATCH_SIZE):
        BackupRecord.objects.bulk_update(
            changed[start : start + BATCH_SIZE], ["size_ratio", "duration_ratio", "anomaly"]
        )
    return len(changed)


def anomaly_q(kind: str) -> Q:
    """The records flagged for ``kind`` ("any", "size" or "duration"), on the partial index."""
    flagged = ~Q(anomaly="")
    if kind == SIZE:
        return flagged & Q(anomaly__contains=SIZE)
    if kind == DURATION:
        return flagged & Q(anomaly__contains=DURATION)
    return flagged


__all__ = ["MIN_SAMPLES", "anomaly_q", "describe", "detect_anomalies", "flags", "is_anomalous", "ratio_of"]
