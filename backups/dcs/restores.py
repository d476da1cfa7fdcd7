"""Turn one ListRestoreRecords item (InstanceRestoreInfo, dcs-api.md §2.3) into typed values.

The same tolerance as :mod:`backups.dcs.records`: ``{}`` or null for an
empty string, numbers where strings are documented, upper-case enum values,
missing optional fields. A value that is there but cannot be read (a
``created_at`` of "yesterday", a progress of "abc", a status the contract
does not name) never raises: it is stored as empty, named in ``problems``,
and kept in ``raw`` with the rest of the item, so nothing the API sent is
lost. Only an item without its identity (``restore_id``) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from backups.choices import RestoreStatus
from backups.dcs.records import RecordParseError, as_datetime, as_enum, as_progress, as_text

_KNOWN_STATUSES = frozenset(RestoreStatus.values)


@dataclass
class RestoreRecordData:
    restore_id: str
    restore_name: str = ""
    backup_id: str = ""
    backup_name: str = ""
    status: str = ""
    progress: Decimal | None = None
    error_code: str = ""
    restore_remark: str = ""
    backup_remark: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict = field(default_factory=dict)
    # Values that were sent but could not be read, one sentence each.
    problems: list[str] = field(default_factory=list)

    # The fields a sync copies onto RestoreRecord.
    MODEL_FIELDS = (
        "restore_name",
        "backup_id",
        "backup_name",
        "status",
        "progress",
        "error_code",
        "restore_remark",
        "backup_remark",
        "created_at",
        "updated_at",
        "raw",
    )

    def model_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.MODEL_FIELDS}


def _sent(value: Any) -> bool:
    """Whether the API sent a value at all (null, "" and ``{}`` mean "none")."""
    return as_text(value) != ""


def parse_restore_record(raw: Any) -> RestoreRecordData:
    if not isinstance(raw, dict):
        raise RecordParseError(f"a restore record must be a JSON object, got {type(raw).__name__}")
    restore_id = as_text(raw.get("restore_id"), max_length=64)
    if not restore_id:
        raise RecordParseError("a restore record without restore_id")
    problems: list[str] = []

    def unreadable(name: str) -> None:
        problems.append(
            f"restore {restore_id}: {name} {as_text(raw.get(name), max_length=60)!r} could not be read"
        )

    status = as_enum(raw.get("status"))
    if status and status not in _KNOWN_STATUSES:
        # Kept as sent: a status the API added is still worth showing.
        problems.append(
            f"restore {restore_id}: status {status!r} is not one of {', '.join(RestoreStatus.values)}"
        )
    progress = as_progress(raw.get("progress"))
    if progress is None and _sent(raw.get("progress")):
        unreadable("progress")
    times = {}
    for name in ("created_at", "updated_at"):
        times[name] = as_datetime(raw.get(name))
        if times[name] is None and _sent(raw.get(name)):
            unreadable(name)
    return RestoreRecordData(
        restore_id=restore_id,
        restore_name=as_text(raw.get("restore_name"), max_length=255),
        backup_id=as_text(raw.get("backup_id"), max_length=64),
        backup_name=as_text(raw.get("backup_name"), max_length=255),
        status=status,
        progress=progress,
        error_code=as_text(raw.get("error_code"), max_length=64),
        restore_remark=as_text(raw.get("restore_remark")),
        backup_remark=as_text(raw.get("backup_remark")),
        created_at=times["created_at"],
        updated_at=times["updated_at"],
        raw=raw,
        problems=problems,
    )


__all__ = ["RestoreRecordData", "parse_restore_record"]
