"""What an export writes: a table's fields, and of each a record's CSV text and JSON value.

A table may add export-only fields after one of its columns with
``export_extra_fields = {"column": (("key", "Header", "accessor"), ...)}``, and
a column may name its export key and header with ``export_key`` and
``export_header``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.encoding import force_str
from django_tables2 import A, Table

from backups.exports.cells import _same, cell_value, resolver

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def iso_utc(value: datetime) -> str:
    """``2026-11-26T12:00:00Z``; milliseconds only when the API gave some."""
    if value.tzinfo is not UTC:
        # The database hands back UTC already; only other times need converting.
        if timezone.is_naive(value):
            value = timezone.make_aware(value, UTC)
        value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def neutralise_formula(cell: str) -> str:
    """``=HYPERLINK(...)`` from the API must stay text in a spreadsheet."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def json_number(value: Decimal | int | float) -> int | float:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@dataclass(frozen=True)
class ExportField:
    key: str  # stable snake_case: the JSON key
    header: str  # the CSV header
    raw: Callable[[Any], Any]  # record -> the stored value
    # (record, its stored value if already read) -> the column's plain-text value()
    text: Callable[..., Any]
    # JSON carries the stored code ("succeed") rather than the translated
    # label, so scripts read the same value in every language.
    raw_in_json: bool = False
    # Where the cell comes from, for the tuple rows below: the accessor, and
    # the column (None for an export-only extra).
    path: str = ""
    bound: Any = None


def export_fields(table: Table) -> list[ExportField]:
    """The table's shown columns, in order, with their export-only extras."""
    extras = getattr(table, "export_extra_fields", {}) or {}
    fields = []
    for bound in table.columns:
        if bound.column.exclude_from_export:
            continue
        fields.append(
            ExportField(
                key=getattr(bound.column, "export_key", None) or bound.name,
                header=force_str(getattr(bound.column, "export_header", None) or bound.header),
                raw=resolver(A(bound.accessor)),
                text=cell_value(table, bound),
                raw_in_json=getattr(bound.column, "raw_in_json", False),
                path=str(bound.accessor),
                bound=bound,
            )
        )
        for key, header, path in extras.get(bound.name, ()):
            resolve = resolver(A(path))
            fields.append(
                ExportField(key=key, header=force_str(header), raw=resolve, text=_same(resolve), path=path)
            )
    return fields


def csv_cell(field: ExportField, record: Any) -> str:
    raw = field.raw(record)
    if raw is None:
        return ""
    if isinstance(raw, datetime):
        return iso_utc(raw)
    text = field.text(record, raw)
    return "" if text is None else neutralise_formula(force_str(text))


def json_value(field: ExportField, record: Any) -> Any:
    raw = field.raw(record)
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float | Decimal):
        return json_number(raw)
    if isinstance(raw, datetime):
        return iso_utc(raw)
    if isinstance(raw, timedelta):
        return json_number(Decimal(str(raw.total_seconds())))
    if field.raw_in_json and isinstance(raw, str):
        return raw
    text = field.text(record, raw)
    return None if text is None else force_str(text)
