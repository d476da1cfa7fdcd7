"""Retention: what may be deleted, and when. Everything is kept unless the DBA says otherwise.

Only one thing is ever deleted: backup records the API stopped listing more
than ``DASHBOARD_RETENTION_GONE_DAYS`` days ago (by ``gone_at``), with the
status changes our syncs observed for them. A record still listed, or gone
more recently, is never touched, and a record that reappears in a listing
loses its ``gone_at`` and is safe again.

Deletes go a batch at a time, each in its own short transaction, so the
sync and the pages never wait long behind a retention run on either
database. The run is logged in one line and written to the audit log.
Sync runs have their own retention (``DCS_SYNC_RUN_RETENTION_DAYS``,
``backups.sync.runs.prune_history``, every minute).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backups import audit
from backups.models import AuditAction, BackupRecord, BackupStatusChange

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
AUDIT_ACTION = AuditAction.RETENTION


@dataclass(frozen=True)
class RetentionResult:
    older_than_days: int
    cutoff: datetime
    records_deleted: int = 0
    status_changes_deleted: int = 0
    batches: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def as_dict(self) -> dict:
        facts = asdict(self)
        facts["cutoff"] = self.cutoff.isoformat()
        return facts


def gone_records_before(cutoff: datetime):
    return BackupRecord.objects.filter(gone_at__lt=cutoff)


def _delete_batch(pks: list[int], cutoff: datetime) -> tuple[int, int]:
    """Delete the records of ``pks`` still gone before ``cutoff``, with their status changes.

    Two plain DELETEs. Django's cascading delete would first load every
    record, raw JSON and all, just to learn its primary key, which made a
    batch of 1,000 take the best part of a second on PostgreSQL.
    """
    with transaction.atomic():
        # Locked first (PostgreSQL; SQLite's write transaction already is):
        # gone_at is checked again, since a sync may have found one of them
        # again after the batch was picked, and it cannot change until commit.
        doomed = list(
            gone_records_before(cutoff).filter(pk__in=pks).select_for_update().values_list("pk", flat=True)
        )
        if not doomed:
            return 0, 0
        changes, _ = BackupStatusChange.objects.filter(record_id__in=doomed).delete()
        if _only_status_changes_refer_to_records():
            records = BackupRecord.objects.filter(pk__in=doomed)._raw_delete(BackupRecord.objects.db)
        else:  # a model added since refers to records: let Django cascade to it
            records = BackupRecord.objects.filter(pk__in=doomed).delete()[1].get(BackupRecord._meta.label, 0)
    return records, changes


def _only_status_changes_refer_to_records() -> bool:
    return [(rel.related_model, rel.field.name) for rel in BackupRecord._meta.related_objects] == [
        (BackupStatusChange, "record")
    ]


def prune_gone_records(
    *,
    older_than_days: int | None = None,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
) -> RetentionResult:
    """Delete records gone for more than ``older_than_days`` days (default: the setting).

    With ``dry_run`` nothing is deleted; ``records_deleted`` says how many would be.
    """
    days = settings.DASHBOARD_RETENTION_GONE_DAYS if older_than_days is None else older_than_days
    if days < 1:
        raise ValueError("retention needs a number of days of at least 1")
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    started = time.monotonic()
    if dry_run:
        return RetentionResult(
            days, cutoff, records_deleted=gone_records_before(cutoff).count(), dry_run=True
        )

    records = changes = batches = 0
    last_pk = 0
    while True:
        # From where the last batch ended (there is no index on gone_at): one
        # pass over the table in all, not one from the start per batch.
        pks = list(
            gone_records_before(cutoff)
            .filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not pks:
            break
        last_pk = pks[-1]
        deleted_records, deleted_changes = _delete_batch(pks, cutoff)
        records += deleted_records
        changes += deleted_changes
        batches += 1
    result = RetentionResult(
        days,
        cutoff,
        records_deleted=records,
        status_changes_deleted=changes,
        batches=batches,
        seconds=round(time.monotonic() - started, 3),
    )
    facts = result.as_dict()
    logger.info(
        "retention: deleted %d backup records gone before %s (%d days) and %d status changes, in %d batches",
        records,
        facts["cutoff"],
        days,
        changes,
        batches,
        extra={"retention": facts},
    )
    if records:
        audit.record(AUDIT_ACTION, username="retention", detail=facts)
    return result
