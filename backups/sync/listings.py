"""What the API listed, written to the database: a project's instances, an instance's backups.

Rows are written with bulk upserts (``INSERT ... ON CONFLICT DO UPDATE`` on
PostgreSQL and SQLite alike), so writing the same listing twice, or two
listings in any order, leaves the same rows. Only a *complete* listing without
a time window may mark anything gone, and gone is decided by set difference
(stored and present, but not listed), never by timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from operator import attrgetter
from typing import Any

from django.db import models, transaction
from django.db.models import QuerySet

from backups.anomalies import FIELDS as ANOMALY_FIELDS
from backups.anomalies import Pending, assess_pending
from backups.db import ValueList, bulk_insert
from backups.dcs.client import DcsClient, Listing
from backups.dcs.config import DcsProject
from backups.dcs.errors import DcsApiError
from backups.dcs.records import (
    BackupRecordData,
    InstanceData,
    RecordParseError,
    parse_backup_record,
    parse_instance,
)
from backups.models import BackupRecord, BackupStatusChange, DcsInstance
from backups.rpo import recompute_rpo
from backups.summaries import batched

# Rows per INSERT/UPDATE: under SQLite's bound-variable limit for our widest row.
BATCH_SIZE = 500


@dataclass(frozen=True)
class Problem:
    """Why a listing failed or is not complete; becomes a SyncError row."""

    scope: str
    error: str
    message: str
    status: int | None = None
    error_code: str = ""
    request_id: str = ""

    @classmethod
    def from_exception(cls, scope: str, exc: Exception) -> Problem:
        if isinstance(exc, DcsApiError):
            return cls(scope, type(exc).__name__, str(exc)[:1024], exc.status, exc.error_code, exc.request_id)
        return cls(
            scope, type(exc).__name__, str(exc)[:1024], request_id=getattr(exc, "request_id", "") or ""
        )

    @classmethod
    def incomplete(cls, scope: str, message: str) -> Problem:
        return cls(scope, "IncompleteListing", message[:1024])


def _chunks(items: list, size: int = BATCH_SIZE) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _listing_problems(scope: str, listing: Listing) -> list[Problem]:
    return [Problem.incomplete(scope, text) for text in listing.problems]


# --- Instances ----------------------------------------------------------------


@dataclass
class InstancesListed:
    instances: list[DcsInstance]  # every instance listed now, fresh from the database
    gone: int = 0
    records_gone: int = 0  # backups of the instances gone
    complete: bool = True
    problems: list[Problem] = field(default_factory=list)


def sync_project_instances(
    *, project: DcsProject, client: DcsClient, now: datetime, mark_gone: bool
) -> InstancesListed:
    """List the instances of one project and write what changed.

    Only new, changed and returning instances are written; with
    ``mark_gone`` (full syncs) the unchanged ones' ``last_seen`` is moved on
    too, as a listing of everything does for backup records, so an
    incremental sync of an unchanged fleet writes nothing here. A complete
    listing with ``mark_gone`` also marks the project's instances it no
    longer contains as gone, and their backups with them. Raises the
    client's DcsError when the listing fails outright.
    """
    scope = f"project {project.region}/{project.project_id}"
    listing = client.list_instances(project)
    problems = _listing_problems(scope, listing)
    listed: dict[str, InstanceData] = {}
    for raw in listing:
        try:
            data = parse_instance(raw)
        except RecordParseError as exc:
            problems.append(Problem.from_exception(scope, exc))
            continue
        listed.setdefault(data.instance_id, data)
    complete = listing.complete and not problems

    gone = records_gone = 0
    with transaction.atomic():
        stored = {row.instance_id: row for row in DcsInstance.objects.filter(project_id=project.project_id)}
        rows, unchanged = [], []
        for data in listed.values():
            values = data.model_values()
            before = stored.get(data.instance_id)
            if (
                before is not None
                and before.gone_at is None
                and before.region == project.region
                and all(getattr(before, name) == value for name, value in values.items())
            ):
                unchanged.append(before.pk)
                continue
            rows.append(
                DcsInstance(
                    region=project.region,
                    project_id=project.project_id,
                    instance_id=data.instance_id,
                    first_seen=now,
                    last_seen=now,
                    gone_at=None,
                    **values,
                )
            )
        DcsInstance.objects.bulk_create(
            rows,
            batch_size=BATCH_SIZE,
            update_conflicts=True,
            unique_fields=["project_id", "instance_id"],
            update_fields=["region", *InstanceData.MODEL_FIELDS, "last_seen", "gone_at"],
        )
        if mark_gone and unchanged:
            DcsInstance.objects.filter(pk__in=ValueList(unchanged, DcsInstance._meta.pk)).update(
                last_seen=now
            )
        if rows:
            present = list(DcsInstance.objects.filter(project_id=project.project_id, gone_at__isnull=True))
        else:
            present = [row for row in stored.values() if row.gone_at is None]
        # A region or tags may have changed, and new instances have no RPO yet:
        # one query for the policies, writes only for the RPOs that changed.
        recompute_rpo(instances=present)
        if mark_gone and complete:
            vanished = [instance.pk for instance in present if instance.instance_id not in listed]
            for chunk in _chunks(vanished):
                # Its backups went with it. Should it come back, its next listing
                # is a complete one (no window), which brings back what is listed.
                gone += DcsInstance.objects.filter(pk__in=chunk).update(
                    gone_at=now, backups_synced_at=None, backups_checked_at=None
                )
                records_gone += BackupRecord.objects.filter(
                    instance_id__in=chunk, gone_at__isnull=True
                ).update(gone_at=now)
    instances = [instance for instance in present if instance.instance_id in listed]
    return InstancesListed(
        instances=instances, gone=gone, records_gone=records_gone, complete=complete, problems=problems
    )


# --- Backup records -----------------------------------------------------------


@dataclass
class BackupsListed:
    records: dict[str, BackupRecordData]
    complete: bool
    problems: list[Problem]


def fetch_backups(*, instance: DcsInstance, client: DcsClient, begin: datetime | None) -> BackupsListed:
    """One instance's backup records, parsed; raises the client's DcsError when the listing fails."""
    scope = f"instance {instance.instance_id}"
    project = DcsProject(instance.region, instance.project_id)
    listing = client.list_backup_records(project, instance.instance_id, begin=begin)
    problems = _listing_problems(scope, listing)
    records: dict[str, BackupRecordData] = {}
    for raw in listing:
        try:
            data = parse_backup_record(raw, instance_id=instance.instance_id)
        except RecordParseError as exc:
            problems.append(Problem.from_exception(scope, exc))
            continue
        # The list is newest first; a record repeated on a later page is the
        # same record seen again after the list shifted, so the first wins.
        records.setdefault(data.backup_id, data)
    return BackupsListed(records=records, complete=listing.complete and not problems, problems=problems)


@dataclass
class StoredCounts:
    new: int = 0
    updated: int = 0
    gone: int = 0


@dataclass
class _Existing:
    pk: int
    status: str
    progress: object
    raw: dict
    gone: bool
    first_seen: datetime


def existing_rows(rows: QuerySet, key: str, keys: list[str] | None = None) -> dict[str, _Existing]:
    """Stored rows of an instance by their API id (``key``): those with these ids, or all (None)."""
    if keys is not None and not keys:
        return {}
    columns = (key, "pk", "status", "progress", "raw", "gone_at", "first_seen")
    if keys is not None:
        rows = rows.filter(**{f"{key}__in": ValueList(keys, rows.model._meta.get_field(key))})
    existing = {}
    for ident, pk, status, progress, raw, gone_at, first_seen in rows.order_by().values_list(*columns):
        existing[ident] = _Existing(pk, status, progress, raw, gone_at is not None, first_seen)
    return existing


# Assesses the rows about to be written: given (stored id or None, parsed
# item) of each, the values of extra columns for each, in the same order.
Assess = Callable[[list[tuple[int | None, Any]]], list[tuple]]


def upsert_observed(
    *,
    rows,
    change_model: type[models.Model],
    change_key: str,
    key: str,
    fields: tuple[str, ...],
    records: dict,
    existing: dict[str, _Existing],
    now: datetime,
    touch: bool,
    mark_gone: bool,
    assess: Assess | None = None,
    assessed_fields: tuple[str, ...] = (),
    batch: Callable[[int], AbstractContextManager] | None = None,
) -> StoredCounts:
    """Upsert what a listing says of an instance's backups or restores; call it inside a transaction.

    ``rows`` is the instance's related manager (``instance.backups``,
    ``instance.restores``), ``records`` the parsed API items by their id
    (``key``), ``existing`` the stored rows (:func:`existing_rows`), and
    ``fields`` the model fields the items carry. Only new and changed rows
    are written, and a change of status or progress is kept as a
    ``change_model`` row (``change_key``: its foreign key to the row): see
    :func:`_status_changes`.
    ``touch`` also moves ``last_seen`` of the unchanged rows; ``mark_gone``
    marks the stored rows the listing no longer has as gone. ``assess``
    gives the rows written the values of ``assessed_fields`` too, in the
    same statement (the anomaly ratios of backups). ``batch(rows)``, a
    context manager, is around the upsert of that many rows
    (``summaries.batched`` for backups). Returns the counts.

    Rows go to the database as plain tuples (backups.db.bulk_insert): no
    model instance is made.
    """
    model = rows.model
    instance_pk = rows.instance.pk
    counts = StoredCounts()
    written: list[tuple[str, Any, _Existing | None]] = []
    unchanged: list[int] = []
    for ident, data in records.items():
        before = existing.get(ident)
        if before is not None and before.raw == data.raw and not before.gone:
            unchanged.append(before.pk)
        else:
            written.append((ident, data, before))

    values_of = attrgetter(*fields)
    updated = (*fields, "last_seen", "gone_at", *assessed_fields)
    columns = ("instance", key, *fields, "first_seen", "last_seen", "gone_at", *assessed_fields)
    if assess and written:
        extras = assess([(before and before.pk, data) for _ident, data, before in written])
    else:
        extras = [()] * len(written)
    upserts = [
        (instance_pk, ident, *values_of(data), now, now, None, *extra)
        for (ident, data, _before), extra in zip(written, extras, strict=True)
    ]
    counts.new = sum(before is None for _ident, _data, before in written)
    counts.updated = len(written) - counts.new
    # One statement (per 5,000 rows on PostgreSQL), so the summary triggers
    # run once for the listing.
    with batch(len(upserts)) if batch else nullcontext():
        bulk_insert(
            model, fields=columns, rows=upserts, unique_fields=("instance", key), update_fields=updated
        )
    moved = [
        (before, data)
        for _ident, data, before in written
        if before is not None and (before.status, before.progress) != (data.status, data.progress)
    ]
    if moved:
        bulk_insert(
            change_model,
            fields=(change_key, "observed_at", "status", "progress"),
            rows=_status_changes(change_model, change_key, moved, now),
        )

    pk_field = model._meta.pk
    if touch and unchanged:
        model.objects.filter(pk__in=ValueList(unchanged, pk_field)).update(last_seen=now)
    if mark_gone:
        vanished = [e.pk for ident, e in existing.items() if not e.gone and ident not in records]
        if vanished:
            counts.gone = model.objects.filter(pk__in=ValueList(vanished, pk_field)).update(gone_at=now)
    return counts


def _status_changes(change_model, change_key: str, moved: list[tuple[_Existing, Any]], now: datetime) -> list:
    """The change rows of stored rows whose status or progress moved: (id, observed_at, status, progress).

    A row's first change also writes the state it had until then, as first
    seen: a new row gets no change row, as its state is on the row itself
    (``first_seen``, ``status``, ``progress``) for as long as nothing
    changes. Most backups are listed once finished and never change, so
    the log holds real changes only, not a copy of every record; and a row
    with no change is known to have had its status since it was first seen
    (what the incident view, as of any time, relies on). One query finds
    which moved rows have a change logged already.
    """
    pks = [before.pk for before, _data in moved]
    logged = set(
        change_model.objects.filter(
            **{f"{change_key}__in": ValueList(pks, change_model._meta.get_field(change_key).target_field)}
        )
        .order_by()
        .values_list(change_key, flat=True)
        .distinct()
    )
    rows = []
    for before, data in moved:
        if before.pk not in logged:
            rows.append((before.pk, before.first_seen, before.status, before.progress))
        rows.append((before.pk, now, data.status, data.progress))
    return rows


def _assess_backups(
    instance: DcsInstance, written: list[tuple[int | None, BackupRecordData]], *, nothing_stored: bool
) -> list[tuple]:
    pending = [Pending(pk, data.status, data.created_at, data.updated_at, data.size) for pk, data in written]
    return assess_pending(instance=instance, pending=pending, nothing_stored=nothing_stored)


def store_backups(
    *,
    instance: DcsInstance,
    records: dict[str, BackupRecordData],
    now: datetime,
    windowed: bool,
    complete: bool,
) -> StoredCounts:
    """Upsert one listing of an instance's backups; call it inside a transaction.

    A windowed (incremental) listing writes only new and changed rows, so an
    unchanged instance costs no writes. A listing without a window also
    refreshes ``last_seen`` of the unchanged rows and, when ``complete``,
    marks the stored records it no longer contains as gone. The succeeded
    backups written get their anomaly ratios in the same write
    (backups.anomalies.assess_pending); an unchanged listing evaluates nothing.
    """
    existing = existing_rows(instance.backups, "backup_id", list(records) if windowed else None)
    return upsert_observed(
        rows=instance.backups,
        change_model=BackupStatusChange,
        change_key="record_id",
        key="backup_id",
        fields=BackupRecordData.MODEL_FIELDS,
        records=records,
        existing=existing,
        now=now,
        touch=not windowed,
        mark_gone=not windowed and complete,
        # A listing of everything that found no row: the instance's first
        # sync, with no stored history to read for the medians.
        assess=partial(_assess_backups, instance, nothing_stored=not windowed and not existing),
        assessed_fields=ANOMALY_FIELDS,
        batch=batched,
    )


__all__ = [
    "BackupsListed",
    "InstancesListed",
    "Problem",
    "StoredCounts",
    "existing_rows",
    "fetch_backups",
    "store_backups",
    "sync_project_instances",
    "upsert_observed",
]
