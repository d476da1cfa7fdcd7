"""The export as text: CSV lines or JSON chunks, streamed as a download."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from django.http import StreamingHttpResponse
from django.utils import translation
from django.utils.http import content_disposition_header
from django_tables2 import Table

from backups.exports.fields import csv_cell, export_fields, json_value
from backups.exports.records import iter_records
from backups.exports.rows import tuple_rows

EXPORT_FORMATS = ("csv", "json")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
# Characters of CSV or JSON handed to the server at once.
STREAM_CHUNK_CHARS = 64 * 1024


def csv_rows_text(rows: Iterator[list[str]], write_row: Callable[[list[str]], str]) -> str:
    """The CSV text of ``rows``, as ``write_row`` (the csv module) would write each.

    csv.writer spends some 3 µs on a row of twenty cells, copying it a
    character at a time. A row without a comma, a double quote or a line
    break in any cell is written by it as its cells joined by commas, so
    such rows are joined here and only the others go to ``write_row``.
    """
    lines = []
    for cells in rows:
        line = ",".join(cells)
        # (A line of one empty cell is written as "", a line of none as nothing.)
        if line and line.count(",") == len(cells) - 1 and not ('"' in line or "\n" in line or "\r" in line):
            lines.append(line)
            lines.append("\r\n")
        else:
            lines.append(write_row(cells))
    return "".join(lines)


def csv_lines(table: Table) -> Iterator[str]:
    """The header, then one CSV line per record."""
    fields = export_fields(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    yield line([field.header for field in fields])
    chunks = tuple_rows(table, fields)
    if chunks is not None:
        for rows in chunks:
            yield csv_rows_text(rows, line)
        return
    for record in iter_records(table):
        yield line([csv_cell(field, record) for field in fields])


def json_chunks(table: Table) -> Iterator[str]:
    """``[``, then one item per record, then ``]``."""
    fields = export_fields(table)
    yield "["
    separator = "\n"
    encode = json.JSONEncoder(ensure_ascii=False).encode
    for record in iter_records(table):
        item = {field.key: json_value(field, record) for field in fields}
        yield separator + encode(item)
        separator = ",\n"
    yield "\n]\n"


def _joined(chunks: Iterator[str], size: int = STREAM_CHUNK_CHARS) -> Iterator[str]:
    # One line per chunk would make the server write every line on its own.
    pending: list[str] = []
    length = 0
    for chunk in chunks:
        pending.append(chunk)
        length += len(chunk)
        if length >= size:
            yield "".join(pending)
            pending, length = [], 0
    if pending:
        yield "".join(pending)


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
        _in_language(translation.get_language(), _joined(chunks)), content_type=CONTENT_TYPES[export_format]
    )
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"{filename}-{stamp}.{export_format}"
    )
    return response
