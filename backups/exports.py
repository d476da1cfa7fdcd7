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
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models
from django.db.models import QuerySet, signals
from django.db.models.base import ModelState
from django.db.models.query import ModelIterable
from django.db.models.sql.constants import MULTI
from django.http import StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.encoding import force_str
from django.utils.http import content_disposition_header
from django_tables2 import A, Column, Table
from django_tables2.columns import ManyToManyColumn
from django_tables2.columns.linkcolumn import BaseLinkColumn
from django_tables2.rows import BoundRow
from django_tables2.utils import signature

EXPORT_FORMATS = ("csv", "json")
CHUNK_SIZE = 2000
# Distinct values whose export text one column keeps, at most.
MEMO_LIMIT = 10_000
_MISSING = object()
# Characters of CSV or JSON handed to the server at once.
STREAM_CHUNK_CHARS = 64 * 1024
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


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
            )
        )
        for key, header, path in extras.get(bound.name, ()):
            resolve = resolver(A(path))
            fields.append(ExportField(key=key, header=force_str(header), raw=resolve, text=_same(resolve)))
    return fields


# --- Cells without BoundRows ----------------------------------------------------
#
# django-tables2 finds a cell's value anew for every cell: a BoundRow, the
# accessor parsed again, inspect.signature() of the value method, a display
# lookup. That was nine tenths of an export's time. What depends only on the
# column is worked out here once per export; what is left per cell is what
# BoundRow.get_cell_value() does for a model record, step for step, and
# anything these shortcuts do not cover goes through BoundRow itself.


def _same(resolve: Callable[[Any], Any]) -> Callable[..., Any]:
    def text(record, raw=_MISSING):
        return resolve(record) if raw is _MISSING else raw

    return text


def resolver(accessor: A) -> Callable[[Any], Any]:
    """``accessor.resolve(record, quiet=True)``, with plain attribute reads of model records done directly."""
    bits = tuple(accessor.bits)
    if not bits or accessor.callable_args or accessor.callable_kwargs:
        return lambda record: accessor.resolve(record, quiet=True)

    def resolve(record):
        current = record
        for bit in bits:
            if not isinstance(current, models.Model):
                return accessor.resolve(record, quiet=True)
            current = getattr(current, bit, _MISSING)
            if current is _MISSING or callable(current):
                # Methods are called unless they alter data: resolve() knows the rules.
                return accessor.resolve(record, quiet=True)
            if current is None:
                return None
        return current

    return resolve


def _arguments(function) -> tuple[tuple[str, ...], bool]:
    args, catch_all = signature(function)
    return args, bool(catch_all)


def cell_value(table: Table, bound) -> Callable[[Any], Any]:
    """``BoundRow(record, table).get_cell_value(bound.name)``, for model records."""
    column = bound.column
    accessor = A(bound.accessor)

    def slow(record, raw=_MISSING):
        return BoundRow(record, table=table).get_cell_value(bound.name)

    bits = accessor.bits
    if len(bits) != 1 or isinstance(column, BaseLinkColumn | ManyToManyColumn):
        return slow
    function = bound.value
    if getattr(function, "__func__", None) is Column.value:
        # Column.value() only hands its arguments on to the column's render().
        function = column.render
    args, catch_all = _arguments(function)
    constants = {"column": column, "bound_column": bound, "table": table}
    wanted = None if catch_all else set(args)
    if wanted is not None and not wanted <= {"value", "record", "bound_row", *constants}:
        # An argument the cell does not have: call_with_appropriate() gives None.
        return lambda record, raw=_MISSING: None
    fixed = {key: value for key, value in constants.items() if wanted is None or key in wanted}
    wants_value = wanted is None or "value" in wanted
    wants_record = wanted is None or "record" in wanted
    wants_row = wanted is None or "bound_row" in wanted
    empty_values = column.empty_values
    read = resolver(accessor)
    name = bits[0]
    displays: dict[type, str | None] = {}
    labels: dict = {}  # (get_FOO_display, stored value) -> label
    memo_by = _memo_key(column, function)
    memo: dict = {}

    def display_of(record) -> str | None:
        # get_FOO_display() stands in for a field with choices (django-tables2 #30).
        model = type(record)
        if model not in displays:
            found = None
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                field = None
            if getattr(field, "choices", ()) and hasattr(model, f"get_{name}_display"):
                found = f"get_{name}_display"
            displays[model] = found
        return displays[model]

    def value_of(record, raw=_MISSING):
        if not isinstance(record, models.Model):
            return slow(record)
        if raw is _MISSING:
            raw = read(record)
        display = display_of(record)
        if display:
            # A pure function of the stored value in the export's one
            # language, and a translation costs more than the rest of a cell.
            stored = record.__dict__.get(name, _MISSING)
            key = (display, stored) if isinstance(stored, str | int | None) else None
            value = labels.get(key, _MISSING) if key else _MISSING
            if value is _MISSING:
                value = getattr(record, display)()
                if key and len(labels) < MEMO_LIMIT:
                    labels[key] = value
        else:
            # resolve() fails quietly here too, as BoundRow swallows the error:
            # the stored value is the cell's value.
            value = raw
        if value in empty_values:
            return None
        if memo_by:
            key = raw if memo_by == "raw" else value
            key = id(key) if isinstance(key, models.Model) else key
            found = memo.get(key, _MISSING)
            if found is not _MISSING:
                return found[1]
        kwargs = dict(fixed)
        if wants_value:
            kwargs["value"] = value
        if wants_record:
            kwargs["record"] = record
        if wants_row:
            kwargs["bound_row"] = BoundRow(record, table=table)
        text = function(**kwargs)
        if memo_by and len(memo) < MEMO_LIMIT:
            # The value is kept with the text, so an id() used as key stays its own.
            memo[key] = (value, text)
        return text

    return value_of


def _memo_key(column, function) -> str:
    """How a column's export text repeats: "raw" (a function of the stored value), "value", or ""."""
    from backups.tables.columns import ChoiceBadgeColumn, ErrorCodeColumn, InstanceColumn

    if getattr(function, "__func__", None) is not type(column).value:
        return ""  # a table's own value_FOO() may read anything
    # Few distinct values (statuses, error codes, instances) in millions of
    # rows, each a translation or a format: their texts are worth keeping.
    return {ChoiceBadgeColumn: "raw", ErrorCodeColumn: "value", InstanceColumn: "value"}.get(type(column), "")


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


# --- Records without Model.__init__ ---------------------------------------------


def iter_records(table: Table) -> Iterator[Any]:
    """The table's records in its order, fetched in chunks rather than all at once.

    A table with ``prepare_export_chunk(records)`` is handed each chunk
    before its rows are written, to read what the rows need from other
    tables in one query per chunk (the notes of a chunk of backups).
    """
    data = table.data.data
    if isinstance(data, QuerySet):
        records = fast_records(data, named=_named_paths(table)) or data.iterator(chunk_size=CHUNK_SIZE)
    else:
        records = iter(data)
    prepare = getattr(table, "prepare_export_chunk", None)
    return _prepared(records, prepare) if prepare is not None else records


def _prepared(records: Iterator[Any], prepare: Callable[[list], None]) -> Iterator[Any]:
    chunk: list = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= CHUNK_SIZE:
            prepare(chunk)
            yield from chunk
            chunk = []
    if chunk:
        prepare(chunk)
        yield from chunk


def _named_paths(table: Table) -> set[str]:
    """Every accessor the export reads, as ``instance__gone_at``."""
    extras = getattr(table, "export_extra_fields", {}) or {}
    paths = {str(bound.accessor) for bound in table.columns}
    paths.update(path for fields in extras.values() for _key, _header, path in fields)
    return paths


def fast_records(queryset: QuerySet, *, named: set[str] = frozenset()) -> Iterator[models.Model] | None:
    """The queryset's model instances, built from ``values_list`` rows; None where that would differ.

    Model.__init__ and the JSON decoding of every ``raw`` column cost more
    than all the cells of a row. Here each row's own fields go straight into
    an instance's ``__dict__``, and a related instance (``select_related``)
    is made once per distinct row. Left deferred, and loaded as Django does
    (a query) should a column read one: JSON and generated fields, and of a
    related row its times too unless ``named`` (an accessor path) asks for
    them: parsing a time costs more than a whole cell, and each related row
    has many that no export shows.
    """
    model = queryset.model
    query = queryset.query
    if (
        queryset._iterable_class is not ModelIterable
        or queryset._prefetch_related_lookups
        or query.annotations
        or query.extra
        or query.deferred_loading != (frozenset(), True)
        or query.combinator
        or signals.pre_init.has_listeners(model)
        or signals.post_init.has_listeners(model)
    ):
        return None
    related = query.select_related
    if related is False:
        related = {}
    if related is True or any(nested for nested in related.values()):
        return None
    joins = []
    for name in related:
        field = model._meta.get_field(name)
        if not field.many_to_one:
            return None
        target = field.related_model
        if signals.pre_init.has_listeners(target) or signals.post_init.has_listeners(target):
            return None
        wanted = {path.split("__", 1)[1] for path in named if path.startswith(f"{name}__")}
        joins.append((field, target, _loaded_fields(target, times=False, named=wanted)))
    own = _loaded_fields(model)
    paths = [f.attname for f in own]
    for field, _target, fields in joins:
        paths.extend(f"{field.name}__{f.attname}" for f in fields)
    return _instances(queryset.values_list(*paths), model, own, joins)


def _loaded_fields(model, *, times: bool = True, named: set[str] = frozenset()) -> list:
    skipped = (models.JSONField, models.GeneratedField) + (() if times else (models.DateTimeField,))
    return [
        f
        for f in model._meta.concrete_fields
        if f.primary_key or not isinstance(f, skipped) or f.name in named or f.attname in named
    ]


def _new(model, names: list[str], values, db: str):
    instance = model.__new__(model)
    instance.__dict__.update(zip(names, values, strict=True))
    state = instance._state = ModelState()
    state.adding = False
    state.db = db
    return instance


def _converter(converters: dict, positions: range, connection) -> Callable[[list], list]:
    """What ``SQLCompiler.apply_converters`` does to a row, for the columns at ``positions`` only."""
    steps = [(pos - positions.start, *converters[pos]) for pos in positions if pos in converters]

    def convert(values: list) -> list:
        for pos, functions, expression in steps:
            value = values[pos]
            for function in functions:
                value = function(value, expression, connection)
            values[pos] = value
        return values

    return convert


def _instances(values: QuerySet, model, own: list, joins: list) -> Iterator[models.Model]:
    """Rows of ``values`` as instances, each related row converted and built once.

    The database's values are converted (times parsed, decimals made) as
    Django's ``values_list`` would, but a joined row repeated on a million
    records is converted only the first time it is seen.
    """
    db = values.db
    compiler = values.query.get_compiler(using=db)
    chunked = not connections[db].settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    results = compiler.execute_sql(MULTI, chunked_fetch=chunked, chunk_size=CHUNK_SIZE)
    columns = [select[0] for select in compiler.select[: compiler.col_count]]
    converters = compiler.get_converters(columns)
    own_names = [f.attname for f in own]
    width = len(own)
    convert_own = _converter(converters, range(width), compiler.connection)
    spans = []
    start = width
    for field, target, fields in joins:
        names = [f.attname for f in fields]
        span = range(start, start + len(names))
        convert = _converter(converters, span, compiler.connection)
        spans.append((field.name, target, names, span, names.index(target._meta.pk.attname), convert, {}))
        start += len(names)
    for row in chain.from_iterable(results):
        instance = _new(model, own_names, convert_own(list(row[:width])), db)
        cache = instance._state.fields_cache
        for name, target, names, span, pk_at, convert, seen in spans:
            stored = tuple(row[span.start : span.stop])
            key = stored[pk_at]
            if key is None:
                cache[name] = None
                continue
            # The same joined row gives the same instance: one object per key.
            related = seen.get(key)
            if related is None or related[0] != stored:
                related = seen[key] = (stored, _new(target, names, convert(list(stored)), db))
            cache[name] = related[1]
        yield instance


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
