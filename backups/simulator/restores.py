"""Restore records as a pure function of the seed and the time asked about (dcs-api.md §2.3).

Like the backups (history.py), a restore's fixed facts come from a generator
seeded by its instance and its time slot; only its status, progress and
``updated_at`` depend on "now". Every restore restores one of the instance's
backups that had succeeded (and was not yet expired or deleted) when the
restore was created. Two sources, both in UTC:

- now and then (a few per instance over the weeks listed) an operator
  restores an instance, mostly from its newest good backup; some of these
  fail with ``dcs.08.0007`` (data synchronisation failed during restore);
- a fleet-wide stream, one restore an hour on a rotating
  instance, so a restore is sometimes waiting or running when one looks.

Single-node instances have no backups, so no restores either. None of this
draws from the backups' generators: the backup history is the same with or
without restores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from backups.simulator.fleet import (
    MS_PER_DAY,
    MS_PER_HOUR,
    MS_PER_SECOND,
    SimInstance,
    api_time,
    random_uuid,
    seeded_random,
)
from backups.simulator.history import (
    AUTO_EXPIRES_AFTER_MS,
    BACKUP_NAME_OFFSET,
    BackupHistory,
    BackupPlan,
    backup_name,
)

RESTORES_PER_DAY = 0.08  # about three per instance over the weeks listed
RESTORE_VANISHES_AFTER_MS = 42 * MS_PER_DAY
RESTORE_FAILURE_RATE = 0.25
RESTORE_ERROR = "dcs.08.0007"  # data synchronisation failed during restore
STREAM_INTERVAL_MS = MS_PER_HOUR
STREAM_VANISHES_AFTER_MS = 2 * MS_PER_DAY
# How far back a restore looks for a good backup to restore from.
_LOOKBACK_MS = 7 * MS_PER_DAY
_REMARKS = (
    "", "", "rollback after bad deploy", "回滚到昨日数据", "restore for incident INC-2291",
    "误删 key 后恢复", "data fix: restore staging from prod copy",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """The fixed facts of one restore; :func:`render_restore` shows it at a moment."""

    restore_id: str
    created_ms: int
    wait_ms: int
    run_ms: int
    error_code: str | None
    failed_at_progress: float
    remark: str
    backup_id: str
    backup_name: str
    backup_remark: str
    vanishes_after_ms: int

    @property
    def started_ms(self) -> int:
        return self.created_ms + self.wait_ms

    @property
    def finished_ms(self) -> int:
        return self.started_ms + self.run_ms


def _restorable_at(plan: BackupPlan, at_ms: int) -> bool:
    """The backup showed ``succeed`` at ``at_ms``: finished well, not expired, not deleted."""
    if plan.error_code is not None or plan.finished_ms > at_ms:
        return False
    if plan.backup_type == "auto" and at_ms - plan.created_ms >= AUTO_EXPIRES_AFTER_MS:
        return False
    return plan.deleted_after_ms is None or at_ms < plan.finished_ms + plan.deleted_after_ms


class RestoreHistory:
    """The restore plans of a fleet, cached per (instance, day) and per stream slot."""

    def __init__(self, fleet: list[SimInstance], seed: int, backups: BackupHistory) -> None:
        self._seed = seed
        self._backups = backups
        self._stream_instances = [i for i in fleet if i.backupable and i.status == "RUNNING"]
        self._stream_position = {inst.index: pos for pos, inst in enumerate(self._stream_instances)}
        self._stream_offset = seeded_random(seed, "restore-stream").randrange(
            max(1, len(self._stream_instances))
        )
        self._day_cache: dict[tuple[int, int], tuple[RestorePlan, ...]] = {}
        self._slot_cache: dict[tuple[int, int], RestorePlan | None] = {}

    def listed_plans(self, instance: SimInstance, now_ms: int) -> list[RestorePlan]:
        """The restores listed at ``now_ms``, newest first."""
        if not instance.backupable:
            return []
        plans = [p for p in self._plans(instance, now_ms) if 0 <= now_ms - p.created_ms < p.vanishes_after_ms]
        plans.sort(key=lambda p: (p.created_ms, p.restore_id), reverse=True)
        return plans

    def _plans(self, instance: SimInstance, now_ms: int):
        first_day = (now_ms - RESTORE_VANISHES_AFTER_MS) // MS_PER_DAY
        for day in range(first_day, now_ms // MS_PER_DAY + 1):
            yield from self._day_plans(instance, day)
        position = self._stream_position.get(instance.index)
        if position is None:
            return
        count = len(self._stream_instances)
        first_slot = (now_ms - STREAM_VANISHES_AFTER_MS) // STREAM_INTERVAL_MS
        first_slot += (position - self._stream_offset - first_slot) % count
        for slot in range(first_slot, now_ms // STREAM_INTERVAL_MS + 1, count):
            key = (instance.index, slot)
            if key not in self._slot_cache:
                rng = seeded_random(self._seed, "restore-stream", slot)
                created = slot * STREAM_INTERVAL_MS + rng.randrange(STREAM_INTERVAL_MS // 2)
                self._slot_cache[key] = self._plan(rng, instance, created, STREAM_VANISHES_AFTER_MS)
            plan = self._slot_cache[key]
            if plan is not None:
                yield plan

    def _day_plans(self, instance: SimInstance, day: int) -> tuple[RestorePlan, ...]:
        key = (instance.index, day)
        plans = self._day_cache.get(key)
        if plans is None:
            rng = seeded_random(self._seed, "restore", instance.instance_id, day)
            found = []
            if rng.random() < RESTORES_PER_DAY:
                created = day * MS_PER_DAY + rng.randrange(MS_PER_DAY)
                plan = self._plan(rng, instance, created, RESTORE_VANISHES_AFTER_MS)
                if plan is not None:
                    found.append(plan)
            plans = self._day_cache[key] = tuple(found)
        return plans

    def _plan(self, rng, instance: SimInstance, created: int, vanishes_after_ms: int) -> RestorePlan | None:
        """A restore created at ``created`` from a good backup of the week before; None if there is none."""
        if created < instance.created_ms:
            return None
        candidates = [
            plan
            for plan in self._backups.listed_plans(instance, created)
            if created - plan.created_ms <= _LOOKBACK_MS and _restorable_at(plan, created)
        ]
        if not candidates:
            return None
        # Newest first: mostly the newest good backup, sometimes an older one.
        backup = candidates[0] if rng.random() < 0.7 else rng.choice(candidates)
        failed = rng.random() < RESTORE_FAILURE_RATE
        # About two minutes per GB of data, at least a minute.
        gib = instance.data_bytes_at(created) / 2**30
        run_ms = int(max(60.0, 120.0 * gib) * MS_PER_SECOND * rng.uniform(0.8, 1.3))
        return RestorePlan(
            restore_id=random_uuid(rng),
            created_ms=created,
            wait_ms=rng.randrange(5, 60) * MS_PER_SECOND + rng.randrange(MS_PER_SECOND),
            run_ms=run_ms,
            error_code=RESTORE_ERROR if failed else None,
            failed_at_progress=rng.uniform(10, 90),
            remark=rng.choice(_REMARKS),
            backup_id=backup.backup_id,
            backup_name=backup_name(backup.created_ms),
            backup_remark=backup.remark,
            vanishes_after_ms=vanishes_after_ms,
        )


def restore_name(created_ms: int) -> str:
    # The same local stamp as backup_name (dcs-api.md §7.5).
    local = datetime.fromtimestamp(created_ms // MS_PER_SECOND, UTC) + BACKUP_NAME_OFFSET
    return f"restore_{local:%Y%m%d%H%M%S}"


def _progress_text(percent: float) -> str:
    return f"{math.floor(percent * 100) / 100:.2f}"


def render_restore(plan: RestorePlan, now_ms: int, *, doc_example_mode: bool = False) -> dict:
    """The InstanceRestoreInfo for ``plan`` at ``now_ms`` (a listed plan)."""
    empty = {} if doc_example_mode else None  # the doc example renders null as {} (dcs-api.md §7.1)
    error_code = empty
    updated_at = None
    if now_ms < plan.started_ms:
        status, progress = "waiting", "0.00"
    elif now_ms < plan.finished_ms:
        status = "restoring"
        target = 100.0 if plan.error_code is None else plan.failed_at_progress
        progress = _progress_text(target * (now_ms - plan.started_ms) / plan.run_ms)
    else:
        updated_at = api_time(plan.finished_ms)
        if plan.error_code is None:
            status, progress = "succeed", "100.00"
        else:
            status, progress, error_code = "failed", _progress_text(plan.failed_at_progress), plan.error_code
    return {
        "backup_id": plan.backup_id,
        "restore_id": plan.restore_id,
        "backup_name": plan.backup_name,
        "updated_at": updated_at,
        "restore_remark": plan.remark,
        "created_at": api_time(plan.created_ms),
        "progress": progress,
        "error_code": error_code,
        "restore_name": restore_name(plan.created_ms),
        "backup_remark": plan.backup_remark or empty,
        "status": status,
    }
