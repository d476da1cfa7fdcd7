"""CSV and JSON exports of a table: the whole filtered, sorted view, streamed.

Every cell is plain text from the column's ``value()`` (never its HTML), and
every time is ISO 8601 in UTC (``2026-11-26T12:00:00Z``), whatever zone the
viewer reads the page in. JSON keeps numbers, booleans and nulls as such.

A table may add export-only fields after one of its columns with
``export_extra_fields = {"column": (("key", "Header", "accessor"), ...)}``, and
a column may name its export key and header with ``export_key`` and
``export_header``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.encoding import force_str
from django.utils.http import content_disposition_header
from django_tables2 import A, Table
from django_tables2.rows import BoundRow

EXPORT_FORMATS = ("csv", "json")
CHUNK_SIZE = 2000
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def iso_utc(value: datetime) -> str:
    """``2026-11-26T12:00:00Z``; milliseconds only when the API gave some."""
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
    text: Callable[[BoundRow], Any]  # row -> the column's plain-text value()
    # JSON carries the stored code ("succeed") rather than the translated
    # label, so scripts read the same value in every language.
    raw_in_json: bool = False


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
                raw=lambda record, accessor=bound.accessor: accessor.resolve(record, quiet=True),
                text=lambda row, name=bound.name: row.get_cell_value(name),
                raw_in_json=getattr(bound.column, "raw_in_json", False),
            )
        )
        for key, header, path in extras.get(bound.name, ()):
            accessor = A(path)
            fields.append(
                ExportField(
                    key=key,
                    header=force_str(header),
                    raw=lambda record, accessor=accessor: accessor.resolve(record, quiet=True),
                    text=lambda row, accessor=accessor: accessor.resolve(row.record, quiet=True),
                )
            )
    return fields


def csv_cell(field: ExportField, row: BoundRow) -> str:
    raw = field.raw(row.record)
    if raw is None:
        return ""
    if isinstance(raw, datetime):
        return iso_utc(raw)
    text = field.text(row)
    return "" if text is None else neutralise_formula(force_str(text))


def json_value(field: ExportField, row: BoundRow) -> Any:
    raw = field.raw(row.record)
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
    text = field.text(row)
    return None if text is None else force_str(text)


def iter_records(table: Table) -> Iterator[Any]:
    """The table's records in its order, fetched in chunks rather than all at once."""
    data = table.data.data
    if isinstance(data, QuerySet):
        return data.iterator(chunk_size=CHUNK_SIZE)
    return iter(data)


class _Echo:
    """A file-like object whose ``write`` hands the line back, for csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_lines(table: Table) -> Iterator[str]:
    fields = export_fields(table)
    writer = csv.writer(_Echo())
    yield writer.writerow([field.header for field in fields])
    for record in iter_records(table):
        row = BoundRow(record, table=table)
        yield writer.writerow([csv_cell(field, row) for field in fields])


def json_chunks(table: Table) -> Iterator[str]:
    fields = export_fields(table)
    yield "["
    separator = "\n"
    for record in iter_records(table):
        row = BoundRow(record, table=table)
        item = {field.key: json_value(field, row) for field in fields}
        yield separator + json.dumps(item, ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


def _in_language(language: str | None, chunks: Iterator[str]) -> Iterator[str]:
    # The response is streamed after the view has returned: labels are
    # translated in the language of the request, not whatever is active then.
    with translation.override(language):
        yield from chunks


def export_response(
    table: Table, export_format: str, *, filename: str, now: datetime
) -> StreamingHttpResponse:
    """A streamed download of the whole of ``table`` (not one page of it)."""
    chunks = csv_lines(table) if export_format == "csv" else json_chunks(table)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(
        _in_language(translation.get_language(), chunks), content_type=CONTENT_TYPES[export_format]
    )
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"{filename}-{stamp}.{export_format}"
    )
    return response
