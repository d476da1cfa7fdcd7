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
from backups.models import DcsInstance, RestoreStatusChange
from backups.sync.listings import Problem, StoredCounts, existing_rows, upsert_observed

logger = logging.getLogger("backups.sync")


@dataclass
class RestoresListed:
    records: dict[str, RestoreRecordData]
    complete: bool
    problems: list[Problem] = field(default_factory=list)


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
) -> StoredCounts:
    """Upsert one whole listing of an instance's restores; call it inside a transaction.

    New and changed rows are written; ``touch`` also moves ``last_seen`` of
    the unchanged ones (an incremental sync leaves them be, so an unchanged
    instance costs no writes). A complete listing marks the stored restores
    it no longer contains as gone.
    """
    if not isinstance(listing, RestoresListed):
        listing = parse_restores(instance=instance, listing=listing)
    return upsert_observed(
        rows=instance.restores,
        change_model=RestoreStatusChange,
        change_key="restore_id",
        key="restore_id",
        fields=RestoreRecordData.MODEL_FIELDS,
        records=listing.records,
        existing=existing_rows(instance.restores, "restore_id"),
        now=now,
        touch=touch,
        mark_gone=listing.complete,
    )


__all__ = ["RestoresListed", "fetch_restores", "parse_restores", "store_restores"]
