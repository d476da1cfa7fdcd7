"""Plain helpers that create rows for tests: realistic defaults, any field overridable."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from backups.models import BackupRecord, DcsInstance

_sequence = itertools.count(1)

# A fixed clock: tests compare rendered times, so they must not depend on now().
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def make_instance(**fields) -> DcsInstance:
    n = next(_sequence)
    values = {
        "region": "cn-north-4",
        "project_id": "0" * 24 + f"{n:08x}",
        "instance_id": f"6f4f2b1c-0000-4000-8000-{n:012d}",
        "name": f"dcs-redis-{n}",
        "engine": "Redis",
        "engine_version": "6.0",
        "status": "RUNNING",
        "capacity": 2,
        "spec_code": "redis.ha.xu1.large.r2.2",
        "ip": "192.168.0.10",
        "port": 6379,
        "first_seen": T0,
        "last_seen": T0,
    }
    values.update(fields)
    return DcsInstance.objects.create(**values)


def make_record(instance: DcsInstance | None = None, **fields) -> BackupRecord:
    n = next(_sequence)
    created = fields.pop("created_at", T0 + timedelta(minutes=n))
    values = {
        "instance": instance or make_instance(),
        "backup_id": f"b{n:07d}-8a1e-4c4e-9c1e-backup",
        "backup_name": f"backup_{n}",
        "backup_type": "auto",
        "status": "succeed",
        "backup_format": "rdb",
        "size": 1024 * 1024,
        "progress": Decimal("100.00"),
        "is_support_restore": True,
        "created_at": created,
        "updated_at": created + timedelta(minutes=2) if created else None,
        "first_seen": created or T0,
        "last_seen": created or T0,
    }
    values.update(fields)
    return BackupRecord.objects.create(**values)


def make_sync_run(**fields):
    """A finished, successful fleet sync run; any field overridable."""
    from backups.models import SyncRun

    started = fields.pop("started_at", T0)
    values = {
        "scope": "fleet",
        "started_at": started,
        "finished_at": started + timedelta(seconds=30),
        "outcome": "succeeded",
        "instances_seen": 1,
    }
    values.update(fields)
    return SyncRun.objects.create(**values)


def make_status_change(record, **fields):
    """A status change of ``record`` as a sync observed it; any field overridable."""
    from backups.models import BackupStatusChange

    values = {"observed_at": record.first_seen, "status": record.status, "progress": record.progress}
    values.update(fields)
    return BackupStatusChange.objects.create(record=record, **values)
