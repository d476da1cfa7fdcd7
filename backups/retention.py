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
from backups.models import BackupRecord

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
AUDIT_ACTION = "retention"


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
    while True:
        pks = list(gone_records_before(cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            break
        with transaction.atomic():
            # gone_at is checked again: a sync may have found one of them again
            # since the batch was picked.
            _total, per_model = gone_records_before(cutoff).filter(pk__in=pks).delete()
        records += per_model.get(BackupRecord._meta.label, 0)
        changes += sum(count for label, count in per_model.items() if label != BackupRecord._meta.label)
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
