"""Backup history as a pure function of the seed and the time asked about.

A record's fixed facts (id, when it was created, how long it waits and runs,
whether it fails, its size) come from a generator seeded by its instance and
its time slot, so the same record always looks the same whenever it is asked
for. Only what a record *shows* depends on "now": its status, progress and
completion fields, and whether it is listed at all.

Three sources of records, all in UTC:

- a daily automatic backup at each instance's own hour;
- occasional manual backups, some of them later deleted by the user;
- a fleet-wide stream of manual backups, one every ~90 seconds on a rotating
  instance, so something is always waiting or backing up (the dashboard demo
  shows progress moving).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backups.simulator.fleet import (
    MS_PER_DAY,
    MS_PER_HOUR,
    MS_PER_SECOND,
    SimInstance,
    api_time,
    random_uuid,
    seeded_random,
)

# The cloud shows an automatic backup as expired after 7 days and stops
# listing it after 10; that loss is why the dashboard keeps history.
AUTO_EXPIRES_AFTER_MS = 7 * MS_PER_DAY
AUTO_VANISHES_AFTER_MS = 10 * MS_PER_DAY
# Manual backups go back several weeks; older ones are out of the simulation.
MANUAL_VANISHES_AFTER_MS = 42 * MS_PER_DAY
MANUAL_BACKUPS_PER_DAY = 0.12
# The demo stream: a new backup every 90 s, kept for 3 days so an instance
# lists a few hundred records, not thousands.
STREAM_INTERVAL_MS = 90 * MS_PER_SECOND
STREAM_JITTER_MS = 20 * MS_PER_SECOND
STREAM_VANISHES_AFTER_MS = 3 * MS_PER_DAY

AUTO_FAILURE_RATE = 0.05
NOT_RUNNING_AUTO_FAILURE_RATE = 0.4
MANUAL_FAILURE_RATE = 0.07
MANUAL_DELETED_RATE = 0.12
UPPER_CASE_FORMAT_RATE = 0.15  # old manual records written as "RDB"/"AOF"
NO_FORMAT_RATE = 0.04
NO_EXECUTION_AT_RATE = 0.04

BUSY_ERROR = "dcs.08.0008"  # the scheduled backup did not run: the instance was busy
_AUTO_OTHER_ERRORS = ("dcs.08.0002", "dcs.08.0001", "dcs.08.0006")
_MANUAL_ERRORS = ("dcs.08.0001", "dcs.08.0002", "dcs.08.0003", "dcs.08.0004", "dcs.08.0005", "dcs.08.0006")
_MANUAL_REMARKS = (
    "before release 2.14", "升级前备份", "pre-migration snapshot", "每周手动备份", "", "ticket OPS-4471",
    "before FLUSHDB on staging", "扩容前备份",
)  # fmt: skip
_STREAM_REMARKS = ("on-demand backup", "手动备份", "backup before deploy", "nightly job (manual trigger)")

# backup_name carries a local UTC+8 timestamp (dcs-api.md §7.5).
BACKUP_NAME_OFFSET = timedelta(hours=8)
_MAX_CACHED_PLANS = 100_000


@dataclass(frozen=True, slots=True)
class BackupPlan:
    """The fixed facts of one backup; :func:`render_record` shows it at a moment."""

    backup_id: str
    backup_type: str
    created_ms: int
    wait_ms: int
    run_ms: int  # from execution start to success or failure
    error_code: str | None
    failed_at_progress: float  # how far it got when it failed
    size: int | None  # on success; a failure keeps 0 or None
    backup_format: str | None  # None: the key is left out
    has_execution_at: bool
    period: str | None
    remark: str
    deleted_after_ms: int | None  # the user deletes it this long after completion
    vanishes_after_ms: int

    @property
    def execution_ms(self) -> int:
        return self.created_ms + self.wait_ms

    @property
    def finished_ms(self) -> int:
        return self.execution_ms + self.run_ms


class BackupHistory:
    """Generates the backup plans of a fleet, cached per (instance, day) and per stream slot.

    The caches only remember what a pure function returned, so results never
    depend on what was asked before.
    """

    def __init__(self, fleet: list[SimInstance], seed: int) -> None:
        self._seed = seed
        # The stream rotates over instances that can take a backup right now.
        self._stream_instances = [i for i in fleet if i.backupable and i.status == "RUNNING"]
        self._stream_position = {inst.index: pos for pos, inst in enumerate(self._stream_instances)}
        self._stream_offset = seeded_random(seed, "stream").randrange(max(1, len(self._stream_instances)))
        self._day_cache: dict[tuple[int, int], tuple[BackupPlan, ...]] = {}
        self._slot_cache: dict[int, BackupPlan] = {}

    def listed_plans(self, instance: SimInstance, now_ms: int) -> list[BackupPlan]:
        """The backups listed at ``now_ms``, newest first; render them with :func:`render_record`."""
        if not instance.backupable:
            return []
        plans = [plan for plan in self._plans(instance, now_ms) if is_listed(plan, now_ms)]
        plans.sort(key=lambda plan: (plan.created_ms, plan.backup_id), reverse=True)
        return plans

    def _plans(self, instance: SimInstance, now_ms: int) -> Iterator[BackupPlan]:
        first_day = (now_ms - MANUAL_VANISHES_AFTER_MS) // MS_PER_DAY
        for day in range(first_day, now_ms // MS_PER_DAY + 1):
            yield from self._day_plans(instance, day)
        yield from self._stream_plans(instance, now_ms)

    def _day_plans(self, instance: SimInstance, day: int) -> tuple[BackupPlan, ...]:
        key = (instance.index, day)
        plans = self._day_cache.get(key)
        if plans is None:
            plans = tuple(
                p for p in _generate_day(self._seed, instance, day) if p.created_ms >= instance.created_ms
            )
            if len(self._day_cache) > _MAX_CACHED_PLANS:
                self._day_cache.clear()
            self._day_cache[key] = plans
        return plans

    def _stream_plans(self, instance: SimInstance, now_ms: int) -> Iterator[BackupPlan]:
        position = self._stream_position.get(instance.index)
        if position is None:
            return
        count = len(self._stream_instances)
        first_slot = (now_ms - STREAM_VANISHES_AFTER_MS - STREAM_JITTER_MS) // STREAM_INTERVAL_MS
        # Slot k goes to instance (k + offset) % count: step through this one's slots only.
        first_slot += (position - self._stream_offset - first_slot) % count
        for slot in range(first_slot, now_ms // STREAM_INTERVAL_MS + 1, count):
            plan = self._slot_cache.get(slot)
            if plan is None:
                plan = _generate_stream_slot(self._seed, instance, slot)
                if len(self._slot_cache) > _MAX_CACHED_PLANS:
                    self._slot_cache.clear()
                self._slot_cache[slot] = plan
            if plan.created_ms >= instance.created_ms:
                yield plan


def _backup_size(instance: SimInstance, at_ms: int, backup_format: str, noise: float) -> int:
    # An AOF file is roughly the data size; an RDB is compressed.
    factor = 1.1 if backup_format == "aof" else instance.compression
    return max(1024, int(instance.data_bytes_at(at_ms) * factor * noise))


def _formats(rng: random.Random, instance: SimInstance, *, allow_upper: bool) -> tuple[str, str | None, bool]:
    """(format used for sizing, format as listed or None, execution_at listed?)."""
    backup_format = instance.preferred_format if rng.random() < 0.85 else rng.choice(("aof", "rdb"))
    listed: str | None = backup_format
    if allow_upper and rng.random() < UPPER_CASE_FORMAT_RATE:
        listed = backup_format.upper()
    if rng.random() < NO_FORMAT_RATE:
        listed = None
    return backup_format, listed, rng.random() >= NO_EXECUTION_AT_RATE


def _generate_day(seed: int, instance: SimInstance, day: int) -> Iterator[BackupPlan]:
    rng = seeded_random(seed, "day", instance.instance_id, day)
    day_ms = day * MS_PER_DAY
    # Automatic: within a few minutes of the policy hour.
    created = day_ms + instance.backup_hour * MS_PER_HOUR + rng.randrange(0, 6 * 60 * MS_PER_SECOND)
    failure_rate = AUTO_FAILURE_RATE if instance.status == "RUNNING" else NOT_RUNNING_AUTO_FAILURE_RATE
    failed = rng.random() < failure_rate
    error = (BUSY_ERROR if rng.random() < 0.8 else rng.choice(_AUTO_OTHER_ERRORS)) if failed else None
    backup_format, listed_format, has_execution_at = _formats(rng, instance, allow_upper=False)
    size = _backup_size(instance, created, backup_format, rng.uniform(0.97, 1.03))
    # Bigger data takes longer: about a minute per GB, at least 30 s.
    run_ms = int(max(30.0, 60.0 * size / 2**30) * MS_PER_SECOND * rng.uniform(0.8, 1.3))
    if error == BUSY_ERROR:
        run_ms = rng.randrange(1, 5) * MS_PER_SECOND  # it gives up as soon as it sees the other task
    yield BackupPlan(
        backup_id=random_uuid(rng),
        backup_type="auto",
        created_ms=created,
        wait_ms=rng.randrange(3, 40) * MS_PER_SECOND + rng.randrange(MS_PER_SECOND),
        run_ms=run_ms,
        error_code=error,
        # A busy instance never starts the backup; other failures stop part way.
        failed_at_progress=0.0 if error == BUSY_ERROR else rng.uniform(5, 95),
        size=size if not failed else rng.choice((0, None)),
        backup_format=listed_format,
        has_execution_at=has_execution_at,
        period=f"{instance.backup_hour:02d}:00-{(instance.backup_hour + 1) % 24:02d}:00",
        remark="",
        deleted_after_ms=None,
        vanishes_after_ms=AUTO_VANISHES_AFTER_MS,
    )
    if rng.random() < MANUAL_BACKUPS_PER_DAY:
        created = day_ms + rng.randrange(MS_PER_DAY)
        yield _manual_plan(
            rng, instance, created, MANUAL_VANISHES_AFTER_MS, _MANUAL_REMARKS, allow_upper=True
        )


def _generate_stream_slot(seed: int, instance: SimInstance, slot: int) -> BackupPlan:
    rng = seeded_random(seed, "stream", slot)
    created = slot * STREAM_INTERVAL_MS + rng.randrange(STREAM_JITTER_MS)
    return _manual_plan(rng, instance, created, STREAM_VANISHES_AFTER_MS, _STREAM_REMARKS, allow_upper=False)


def _manual_plan(
    rng: random.Random,
    instance: SimInstance,
    created: int,
    vanishes_after_ms: int,
    remarks: tuple[str, ...],
    *,
    allow_upper: bool,
) -> BackupPlan:
    failed = rng.random() < MANUAL_FAILURE_RATE
    backup_format, listed_format, has_execution_at = _formats(rng, instance, allow_upper=allow_upper)
    size = _backup_size(instance, created, backup_format, rng.uniform(0.97, 1.03))
    # Two to six minutes from the click to the end, waiting included.
    total_ms = rng.randrange(120, 360) * MS_PER_SECOND + rng.randrange(MS_PER_SECOND)
    wait_ms = rng.randrange(5, 30) * MS_PER_SECOND + rng.randrange(MS_PER_SECOND)
    deleted = not failed and rng.random() < MANUAL_DELETED_RATE
    return BackupPlan(
        backup_id=random_uuid(rng),
        backup_type="manual",
        created_ms=created,
        wait_ms=wait_ms,
        run_ms=total_ms - wait_ms,
        error_code=rng.choice(_MANUAL_ERRORS) if failed else None,
        failed_at_progress=rng.uniform(5, 95),
        size=size if not failed else rng.choice((0, None)),
        backup_format=listed_format,
        has_execution_at=has_execution_at,
        period=None,
        remark=rng.choice(remarks),
        deleted_after_ms=rng.randrange(MS_PER_HOUR, 10 * MS_PER_DAY) if deleted else None,
        vanishes_after_ms=vanishes_after_ms,
    )


def backup_name(created_ms: int) -> str:
    local = datetime.fromtimestamp(created_ms // MS_PER_SECOND, UTC) + BACKUP_NAME_OFFSET
    return f"backup_{local:%Y%m%d%H%M%S}"


def _progress_text(percent: float) -> str:
    # Rounded down, so a running backup never reads "100.00".
    return f"{math.floor(percent * 100) / 100:.2f}"


def is_listed(plan: BackupPlan, now_ms: int) -> bool:
    """Created by now (no future records) and not yet dropped by the cloud."""
    return 0 <= now_ms - plan.created_ms < plan.vanishes_after_ms


def render_record(
    plan: BackupPlan, instance_id: str, now_ms: int, *, doc_example_mode: bool = False
) -> dict | None:
    """The BackupRecordResponse for ``plan`` at ``now_ms``, or None when it is not listed."""
    if not is_listed(plan, now_ms):
        return None
    age = now_ms - plan.created_ms
    empty = {} if doc_example_mode else None  # the doc example renders null as {} (dcs-api.md §7.1)
    succeeded = plan.error_code is None
    execution_at: str | None = None
    updated_at: str | None = None
    error_code = empty
    size: int | None = 0
    if now_ms < plan.execution_ms:
        status, progress = "waiting", "0.00"
    elif now_ms < plan.finished_ms:
        status = "backuping"
        target = 100.0 if succeeded else plan.failed_at_progress
        progress = _progress_text(target * (now_ms - plan.execution_ms) / plan.run_ms)
        execution_at = api_time(plan.execution_ms)
    else:
        execution_at = api_time(plan.execution_ms)
        updated_at = api_time(plan.finished_ms)
        size = plan.size
        if succeeded:
            status, progress = "succeed", "100.00"
        else:
            status, progress, error_code = "failed", _progress_text(plan.failed_at_progress), plan.error_code
        if plan.backup_type == "auto" and age >= AUTO_EXPIRES_AFTER_MS:
            status = "expired"
        elif plan.deleted_after_ms is not None and now_ms >= plan.finished_ms + plan.deleted_after_ms:
            status = "deleted"
    record = {
        "backup_id": plan.backup_id,
        "period": plan.period if plan.period is not None else empty,
        "backup_name": backup_name(plan.created_ms),
        "instance_id": instance_id,
        "size": size,
        "backup_type": plan.backup_type,
        "created_at": api_time(plan.created_ms),
        "updated_at": updated_at,
        "progress": progress,
        "error_code": error_code,
        "remark": plan.remark,
        "status": status,
        "is_support_restore": "TRUE" if status == "succeed" else "FALSE",
    }
    if plan.backup_format is not None:
        record["backup_format"] = plan.backup_format
    if plan.has_execution_at:
        record["execution_at"] = execution_at
    return record
