"""Turn API JSON into typed values, tolerating every documented quirk.

The contract says strings; the service and its docs also send ``{}`` or null
for an empty string, numbers or booleans where strings are documented,
upper-case enum values and missing optional fields (dcs-api.md §7). Each
coercion here accepts all of these and never raises on a field; only a record
without its identity (``backup_id`` / ``instance_id``) is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

# A backup size is a Java Long upstream; anything outside is garbage.
_INT64_MAX = 2**63 - 1
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


class RecordParseError(ValueError):
    """A record that cannot be stored because it has no usable identity."""


def as_text(value: Any, *, max_length: int | None = None) -> str:
    """A documented string: null, ``{}`` and ``[]`` are empty; scalars become text."""
    if value is None or value == {} or value == []:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int | float | Decimal):
        text = str(value)
    else:
        # A non-empty object or list where a string belongs: keep it readable
        # rather than dropping it; the raw JSON keeps the original anyway.
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text[:max_length] if max_length else text


def as_enum(value: Any) -> str:
    """An enum value, compared case-insensitively (``"AOF"`` is ``"aof"``)."""
    return as_text(value, max_length=32).lower()


def as_int(value: Any, *, minimum: int = -_INT64_MAX, maximum: int = _INT64_MAX) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value) if not isinstance(value, str) else int(Decimal(value.strip()))
    except (TypeError, ValueError, InvalidOperation, OverflowError):
        return None
    return number if minimum <= number <= maximum else None


def as_progress(value: Any) -> Decimal | None:
    """Progress in percent, 0 to 100 with two decimals (the API sends "37.50")."""
    if value is None or isinstance(value, bool):
        return None
    text = as_text(value).rstrip("%").strip()
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return min(max(number, Decimal(0)), Decimal(100)).quantize(Decimal("0.01"))


def as_bool(value: Any) -> bool | None:
    """``"TRUE"``/``"FALSE"`` as documented, and real booleans or 1/0 as well."""
    if isinstance(value, bool):
        return value
    text = as_text(value).lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    return None


def as_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from ``2019-05-10T08:31:16.166Z`` and its variants.

    Epoch milliseconds are accepted too. A time without a zone is UTC, as the
    API documents all its times in UTC.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = as_text(value)
    if not _TIMESTAMP_RE.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def as_api_time(value: datetime) -> str:
    """The query-string form of a time: ``yyyyMMddHHmmss`` in UTC."""
    if value.tzinfo is None:
        raise ValueError("an aware datetime is required")
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S")


@dataclass
class BackupRecordData:
    backup_id: str
    instance_id: str
    backup_name: str = ""
    backup_type: str = ""
    status: str = ""
    backup_format: str = ""
    period: str = ""
    size: int | None = None
    progress: Decimal | None = None
    error_code: str = ""
    remark: str = ""
    is_support_restore: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    execution_at: datetime | None = None
    raw: dict = field(default_factory=dict)

    # The fields a sync copies onto BackupRecord.
    MODEL_FIELDS = (
        "backup_name",
        "backup_type",
        "status",
        "backup_format",
        "period",
        "size",
        "progress",
        "error_code",
        "remark",
        "is_support_restore",
        "created_at",
        "updated_at",
        "execution_at",
        "raw",
    )

    def model_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.MODEL_FIELDS}


def parse_backup_record(raw: Any, *, instance_id: str = "") -> BackupRecordData:
    if not isinstance(raw, dict):
        raise RecordParseError(f"a backup record must be a JSON object, got {type(raw).__name__}")
    backup_id = as_text(raw.get("backup_id"), max_length=64)
    if not backup_id:
        raise RecordParseError("a backup record without backup_id")
    return BackupRecordData(
        backup_id=backup_id,
        instance_id=as_text(raw.get("instance_id"), max_length=64) or instance_id,
        backup_name=as_text(raw.get("backup_name"), max_length=255),
        backup_type=as_enum(raw.get("backup_type")),
        status=as_enum(raw.get("status")),
        backup_format=as_enum(raw.get("backup_format")),
        period=as_text(raw.get("period"), max_length=255),
        size=as_int(raw.get("size"), minimum=0),
        progress=as_progress(raw.get("progress")),
        error_code=as_text(raw.get("error_code"), max_length=64),
        remark=as_text(raw.get("remark")),
        is_support_restore=as_bool(raw.get("is_support_restore")),
        created_at=as_datetime(raw.get("created_at")),
        updated_at=as_datetime(raw.get("updated_at")),
        execution_at=as_datetime(raw.get("execution_at")),
        raw=raw,
    )


@dataclass
class InstanceData:
    instance_id: str
    name: str = ""
    engine: str = ""
    engine_version: str = ""
    status: str = ""
    capacity: int | None = None
    capacity_minor: str = ""
    spec_code: str = ""
    ip: str = ""
    port: int | None = None
    domain_name: str = ""
    az_codes: list = field(default_factory=list)
    tags: dict = field(default_factory=dict)
    created_at: datetime | None = None
    raw: dict = field(default_factory=dict)

    MODEL_FIELDS = (
        "name",
        "engine",
        "engine_version",
        "status",
        "capacity",
        "capacity_minor",
        "spec_code",
        "ip",
        "port",
        "domain_name",
        "az_codes",
        "tags",
        "created_at",
        "raw",
    )

    def model_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.MODEL_FIELDS}


def _tags(value: Any) -> dict[str, str]:
    """``[{"key": .., "value": ..}]``; keys may come as numbers (dcs-api.md §7.2)."""
    if not isinstance(value, list):
        return {}
    tags = {}
    for item in value:
        if isinstance(item, dict):
            key = as_text(item.get("key"), max_length=128)
            if key:
                tags[key] = as_text(item.get("value"), max_length=255)
    return tags


def parse_instance(raw: Any) -> InstanceData:
    if not isinstance(raw, dict):
        raise RecordParseError(f"an instance must be a JSON object, got {type(raw).__name__}")
    instance_id = as_text(raw.get("instance_id"), max_length=64)
    if not instance_id:
        raise RecordParseError("an instance without instance_id")
    az_codes = raw.get("az_codes")
    return InstanceData(
        instance_id=instance_id,
        name=as_text(raw.get("name"), max_length=255),
        engine=as_text(raw.get("engine"), max_length=32),
        engine_version=as_text(raw.get("engine_version"), max_length=32),
        status=as_text(raw.get("status"), max_length=32).upper(),
        capacity=as_int(raw.get("capacity"), minimum=0, maximum=2**31 - 1),
        capacity_minor=as_text(raw.get("capacity_minor"), max_length=16),
        spec_code=as_text(raw.get("spec_code"), max_length=128),
        ip=as_text(raw.get("ip"), max_length=1024),
        port=as_int(raw.get("port"), minimum=0, maximum=65535),
        domain_name=as_text(raw.get("domain_name"), max_length=255),
        az_codes=[as_text(code, max_length=64) for code in az_codes] if isinstance(az_codes, list) else [],
        tags=_tags(raw.get("tags")),
        created_at=as_datetime(raw.get("created_at")),
        raw=raw,
    )
