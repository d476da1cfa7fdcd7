"""Reads about restores: an instance's restore records and the restore facts of instance rows.

Writes live in backups.sync.restores. Every fact here is a correlated
subquery on an (instance, created_at) index, so a page of instances gets
them in its one query, for the rows of the page only.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet, Subquery

from backups.choices import BackupStatus
from backups.models import BackupRecord, DcsInstance, RestoreRecord

# An instance's page shows its newest restores; there are a handful per instance.
RESTORES_ON_PAGE = 100


def _last_restorable_of_row():
    """The row's newest backup it could be restored from: succeeded, restorable, still listed."""
    return BackupRecord.objects.filter(
        instance=OuterRef("pk"),
        status=BackupStatus.SUCCEED,
        is_support_restore=True,
        gone_at__isnull=True,
    ).order_by("-created_at", "-id")


def _last_restore_of_row():
    return RestoreRecord.objects.filter(instance=OuterRef("pk")).order_by("-created_at", "-id")


def with_restore_facts(queryset: QuerySet[DcsInstance], *, detail: bool = False) -> QuerySet[DcsInstance]:
    """Annotate ``last_restorable_at``, ``last_restore_at`` and ``last_restore_status``.

    ``detail`` adds ``last_restorable_backup_id``, for the link on an
    instance's own page (the list does not show it).
    """
    restorable = _last_restorable_of_row()
    restore = _last_restore_of_row()
    facts = {
        "last_restorable_at": Subquery(restorable.values("created_at")[:1]),
        "last_restore_at": Subquery(restore.values("created_at")[:1]),
        "last_restore_status": Subquery(restore.values("status")[:1]),
    }
    if detail:
        facts["last_restorable_backup_id"] = Subquery(restorable.values("backup_id")[:1])
    return queryset.annotate(**facts)


def restores_of(instance: DcsInstance, *, limit: int = RESTORES_ON_PAGE) -> list[RestoreRecord]:
    """The instance's newest restores, each with ``known_backup``: whether we hold the backup it restored."""
    known = BackupRecord.objects.filter(instance=OuterRef("instance"), backup_id=OuterRef("backup_id"))
    rows = list(
        instance.restores.annotate(known_backup=Exists(known)).order_by("-created_at", "-id")[: limit + 1]
    )
    for row in rows:
        row.instance = instance  # the page has it: no query per row
    return rows


__all__ = ["RESTORES_ON_PAGE", "restores_of", "with_restore_facts"]
