"""An instance's restore records (ListRestoreRecords), written to the database.

Restores are few (a handful per instance over the weeks the API lists), so
every sync lists them whole, without a time window: one call per instance,
and a complete listing may mark what it no longer contains as gone. As with
the backups (listings.py) rows are upserted, a change of status or progress
is kept as a :class:`RestoreStatusChange`, and writing the same listing
twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from backups.dcs.client import DcsClient, Listing
from backups.dcs.config import DcsProject
from backups.dcs.records import RecordParseError
from backups.dcs.restores import RestoreRecordData, parse_restore_record
from backups.models import DcsInstance, RestoreRecord, RestoreStatusChange
from backups.sync.listings import BATCH_SIZE, Problem, _chunks

logger = logging.getLogger("backups.sync")


@dataclass
class RestoresListed:
    records: dict[str, RestoreRecordData]
    complete: bool
    problems: list[Problem] = field(default_factory=list)


@dataclass
class RestoreCounts:
    new: int = 0
    updated: int = 0
    gone: int = 0
    changes: int = 0  # RestoreStatusChange rows written


def parse_restores(*, instance: DcsInstance, listing: Listing | list) -> RestoresListed:
    """The listing's items, parsed; an item without restore_id is a problem and makes it incomplete.

    A value that could not be read is a problem too, but the record is
    stored (its raw JSON with it), so the listing stays complete.
    """
    scope = f"instance {instance.instance_id} restores"
    problems = [Problem.incomplete(scope, text) for text in getattr(listing, "problems", [])]
    complete = getattr(listing, "complete", True)
    records: dict[str, RestoreRecordData] = {}
    for raw in listing:
        try:
            data = parse_restore_record(raw)
        except RecordParseError as exc:
            problems.append(Problem.from_exception(scope, exc))
            complete = False
            continue
        problems.extend(Problem(scope, "RestoreValue", text[:1024]) for text in data.problems)
        records.setdefault(data.restore_id, data)
    return RestoresListed(records=records, complete=complete, problems=problems)


def fetch_restores(*, instance: DcsInstance, client: DcsClient) -> RestoresListed:
    """One instance's restores, parsed; raises the client's DcsError when the listing fails."""
    project = DcsProject(instance.region, instance.project_id)
    return parse_restores(instance=instance, listing=client.list_restores(project, instance.instance_id))


def store_restores(
    *,
    instance: DcsInstance,
    listing: RestoresListed | Listing | list,
    now: datetime,
    touch: bool = True,
) -> RestoreCounts:
    """Upsert one whole listing of an instance's restores; call it inside a transaction.

    New and changed rows are written; ``touch`` also moves ``last_seen`` of
    the unchanged ones (an incremental sync leaves them be, so an unchanged
    instance costs no writes). A complete listing marks the stored restores
    it no longer contains as gone.
    """
    if not isinstance(listing, RestoresListed):
        listing = parse_restores(instance=instance, listing=listing)
    records = listing.records
    counts = RestoreCounts()
    existing = {
        restore_id: (pk, status, progress, raw, gone_at is not None)
        for restore_id, pk, status, progress, raw, gone_at in instance.restores.order_by().values_list(
            "restore_id", "pk", "status", "progress", "raw", "gone_at"
        )
    }
    upserts: list[RestoreRecord] = []
    unchanged: list[int] = []
    for data in records.values():
        before = existing.get(data.restore_id)
        if before is not None and before[3] == data.raw and not before[4]:
            unchanged.append(before[0])
            continue
        upserts.append(
            RestoreRecord(
                instance=instance,
                restore_id=data.restore_id,
                first_seen=now,
                last_seen=now,
                gone_at=None,
                **data.model_values(),
            )
        )
    RestoreRecord.objects.bulk_create(
        upserts,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["instance", "restore_id"],
        update_fields=[*RestoreRecordData.MODEL_FIELDS, "last_seen", "gone_at"],
    )
    changes = []
    for record in upserts:
        before = existing.get(record.restore_id)
        if before is None:
            counts.new += 1
        else:
            counts.updated += 1
        if before is None or (before[1], before[2]) != (record.status, record.progress):
            if record.pk is None:  # a database that returns no ids from an upsert
                record.pk = RestoreRecord.objects.get(instance=instance, restore_id=record.restore_id).pk
            changes.append(
                RestoreStatusChange(
                    restore_id=record.pk, observed_at=now, status=record.status, progress=record.progress
                )
            )
    RestoreStatusChange.objects.bulk_create(changes, batch_size=BATCH_SIZE)
    counts.changes = len(changes)
    if touch:
        for chunk in _chunks(unchanged):
            RestoreRecord.objects.filter(pk__in=chunk).update(last_seen=now)
    if listing.complete:
        vanished = [
            pk for restore_id, (pk, *_, gone) in existing.items() if not gone and restore_id not in records
        ]
        for chunk in _chunks(vanished):
            counts.gone += RestoreRecord.objects.filter(pk__in=chunk).update(gone_at=now)
    return counts


__all__ = ["RestoreCounts", "RestoresListed", "fetch_restores", "parse_restores", "store_restores"]
