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
from functools import cache
from itertools import chain
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models
from django.db.models import F, QuerySet, signals
from django.db.models.base import ModelState
from django.db.models.functions import Cast
from django.db.models.query import ModelIterable
from django.db.models.sql.constants import MULTI
from django.http import StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.encoding import force_str
from django.utils.http import content_disposition_header
from django_tables2 import A, Column, Table
from django_tables2.columns import BooleanColumn, ManyToManyColumn
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


def _plain_queryset(queryset: QuerySet) -> bool:
    """Whether the queryset gives model instances of its own fields, which its rows can stand in for."""
    model = queryset.model
    query = queryset.query
    return not (
        queryset._iterable_class is not ModelIterable
        or queryset._prefetch_related_lookups
        or query.annotations
        or query.extra
        or query.deferred_loading != (frozenset(), True)
        or query.combinator
        or signals.pre_init.has_listeners(model)
        or signals.post_init.has_listeners(model)
    )


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
    if not _plain_queryset(queryset):
        return None
    model = queryset.model
    related = queryset.query.select_related
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


# --- Rows as tuples -------------------------------------------------------------
#
# Even built without Model.__init__, a backup record costs its export some
# 90 µs: the drivers parse every time (and Django makes each aware), and each
# of twenty cells goes the general way above. Where every export field of a
# table has a cell builder here (the backup list's do), its rows are read as
# the database's own tuples, from the same queryset (its filters, order and
# joins), and each cell is one function of the tuple, made once per export:
#
# - a time is selected as text and rewritten to ISO 8601, no datetime made;
# - text and numbers are written as they come;
# - a cell of few distinct values (a status, an error code, an instance) is
#   worked out the general way, by csv_cell() on a record holding what the
#   cell reads, the first time its stored values are seen, and remembered;
# - what a table's prepare_export_chunk() sets (the notes) is set on a
#   stand-in record per row, its primary key only.
#
# Anything else (a column or table value_FOO() without a builder, a property
# as accessor, a queryset the rows could not follow) keeps the general way
# for the whole export. tests/test_export_speed_path.py holds both ways to
# the same bytes.

Cell = Callable[[tuple], str]
# Fields whose value, as the driver gives it, is the one Django gives (it
# converts none of them): str() of it is the export text.
PLAIN_FIELDS = (models.CharField, models.TextField, models.IntegerField, models.FloatField)


def iso_utc_text(text: str) -> str:
    """``iso_utc()`` of a UTC time as the database spells it, without making a datetime.

    SQLite holds ``2026-11-26 12:00:00`` or ``2026-11-26 12:00:00.123000``
    (as Django stored it); PostgreSQL, in the UTC session Django sets, says
    ``2026-11-26 12:00:00.123+00`` (no trailing zeros). Anything else is parsed.
    """
    if text.endswith("+00"):
        text = text[:-3]
    size = len(text)
    # isoformat(timespec="milliseconds") cuts the microseconds, it does not round.
    if size == 26 and text[19] == ".":
        return f"{text[:10]}T{text[11:23]}Z" if text[20:] != "000000" else f"{text[:10]}T{text[11:19]}Z"
    if size == 19:
        return f"{text[:10]}T{text[11:]}Z"
    if 21 <= size < 26 and text[19] == ".":
        return f"{text[:10]}T{text[11:19]}.{text[20:23]:0<3}Z"
    return iso_utc(datetime.fromisoformat(text))


class RowPlan:
    """What an export's tuple rows select, where each value sits, and the records made back from them."""

    def __init__(self, queryset: QuerySet):
        self.queryset = queryset
        self.model = queryset.model
        self.db = queryset.db
        self.connection = connections[self.db]
        self.selected: list[models.Expression] = []
        self.positions: dict[tuple[str, bool], int] = {}
        self.converters: dict = {}

    def field(self, path: str) -> models.Field | None:
        """The concrete field at ``path`` (``status``, ``instance__name``), or None."""
        head, _sep, rest = path.partition("__")
        try:
            field = self.model._meta.get_field(head)
            if rest:
                # One join at most, as the tables' select_related() gives.
                if not field.many_to_one or "__" in rest:
                    return None
                field = field.related_model._meta.get_field(rest)
        except FieldDoesNotExist:
            return None
        return field if field.concrete else None

    def at(self, path: str, *, text: bool = False) -> int:
        """Where ``path``'s stored value sits in a row; with ``text``, a time as the database spells it."""
        key = (path, text)
        if key not in self.positions:
            self.positions[key] = len(self.selected)
            # A time cast to text is not parsed by the driver or by Django.
            self.selected.append(Cast(path, models.TextField()) if text else F(path))
        return self.positions[key]

    def chunks(self) -> Iterator[list[tuple]]:
        """The rows, a chunk at a time, from a server-side cursor where the database has one."""
        aliases = [f"export_{position}" for position in range(len(self.selected))]
        values = self.queryset.values(**dict(zip(aliases, self.selected, strict=True)))
        compiler = values.query.get_compiler(using=self.db)
        chunked = not self.connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
        results = compiler.execute_sql(MULTI, chunked_fetch=chunked, chunk_size=CHUNK_SIZE)
        if list(values.query.annotation_select) != aliases:
            # Every position handed out by at() would be wrong.
            raise RuntimeError("the export's rows do not hold their values in the order asked for")
        self.converters = compiler.get_converters([select[0] for select in compiler.select])
        return results

    def record_of(self, paths: list[str]) -> Callable[[tuple], models.Model]:
        """A record of ``paths`` of a row, converted as Django does; the rest is deferred, loaded if read."""
        related: dict[str, type[models.Model]] = {}
        wanted = [self.model._meta.pk.attname]
        for path in paths:
            head, _sep, rest = path.partition("__")
            if rest:
                related[head] = target = self.model._meta.get_field(head).related_model
                wanted.append(f"{head}__{target._meta.pk.attname}")
            wanted.append(path)
        wanted = list(dict.fromkeys(wanted))
        steps = [
            (path.partition("__")[0] if "__" in path else "", self.field(path).attname, self.at(path))
            for path in wanted
        ]

        def make(row: tuple) -> models.Model:
            values: dict[str, dict[str, Any]] = {"": {}, **{head: {} for head in related}}
            for head, attname, at in steps:
                value = row[at]
                functions, expression = self.converters.get(at, ((), None))
                for function in functions:
                    value = function(value, expression, self.connection)
                values[head][attname] = value
            own = values[""]
            record = _new(self.model, list(own), list(own.values()), self.db)
            for head, target in related.items():
                joined = values[head]
                found = joined[target._meta.pk.attname] is not None
                record._state.fields_cache[head] = (
                    _new(target, list(joined), list(joined.values()), self.db) if found else None
                )
            return record

        return make


def _time_cell(plan: RowPlan, path: str) -> Cell:
    at = plan.at(path, text=True)

    def cell(row: tuple) -> str:
        text = row[at]
        return "" if text is None else iso_utc_text(text)

    return cell


def _plain_cell(plan: RowPlan, path: str, empty_values=(None,)) -> Cell:
    """Text or a number as stored: ``neutralise_formula(force_str(value))``."""
    at = plan.at(path)

    def cell(row: tuple) -> str:
        value = row[at]
        if value is None or value in empty_values:
            return ""
        text = str(value)
        # neutralise_formula(), written out: it runs for millions of cells.
        return "'" + text if text.startswith(FORMULA_STARTS) else text

    return cell


def _memoised_cell(plan: RowPlan, field: ExportField, paths: list[str]) -> Cell | None:
    """The general way's cell, on a record holding ``paths``, once per distinct stored values."""
    if any(plan.field(path) is None for path in paths):
        return None
    key_of = itemgetter(*(plan.at(path) for path in paths))
    record_of = plan.record_of(paths)
    memo: dict = {}

    def cell(row: tuple) -> str:
        key = key_of(row)
        text = memo.get(key)
        if text is None:
            text = csv_cell(field, record_of(row))
            if len(memo) < MEMO_LIMIT:
                memo[key] = text
        return text

    return cell


def _stored_value_cell(plan: RowPlan, field: ExportField) -> Cell | None:
    """A column's value() of the stored value alone (``value`` is the value at the accessor, or its label)."""
    return _memoised_cell(plan, field, [field.path])


def _instance_cell(plan: RowPlan, field: ExportField) -> Cell | None:
    # InstanceColumn.value() reads the instance's name and id.
    model_field = plan.field(field.path)
    if model_field is None or not model_field.many_to_one:
        return None
    pk = model_field.related_model._meta.pk.name
    return _memoised_cell(
        plan, field, [f"{field.path}__{pk}", f"{field.path}__name", f"{field.path}__instance_id"]
    )


def _rendered_cell(plan: RowPlan, field: ExportField) -> Cell | None:
    # Column.render() gives the value back: text and numbers as stored, a
    # field with choices its label.
    model_field = plan.field(field.path)
    if model_field is None:
        return None
    if not model_field.choices and isinstance(model_field, PLAIN_FIELDS):
        return _plain_cell(plan, field.path, tuple(field.bound.column.empty_values) or (None,))
    return _memoised_cell(plan, field, [field.path])


def _bytes_cell(plan: RowPlan, field: ExportField) -> Cell | None:
    # BytesColumn.value(): the exact count.
    model_field = plan.field(field.path)
    if not isinstance(model_field, models.IntegerField) or model_field.choices:
        return None
    at = plan.at(field.path)

    def cell(row: tuple) -> str:
        value = row[at]
        if value is None:
            return ""
        text = str(int(value))
        return "'" + text if text.startswith(FORMULA_STARTS) else text

    return cell


def _duration_cell(plan: RowPlan, field: ExportField) -> Cell | None:
    # DurationColumn.value() of BackupRecord.duration: whole seconds from
    # created to finished, when both are known and in that order.
    from backups.models import BackupRecord

    if plan.model is not BackupRecord or field.path != "duration":
        return None
    created, finished = plan.at("created_at", text=True), plan.at("updated_at", text=True)
    parse = datetime.fromisoformat

    def cell(row: tuple) -> str:
        if row[created] is None or row[finished] is None:
            return ""
        start, end = parse(row[created]), parse(row[finished])
        return str(int((end - start).total_seconds())) if end >= start else ""

    return cell


def _backup_name_cell(plan: RowPlan, field: ExportField) -> Cell | None:
    # BackupRecordTable.value_backup_name(): the name, or the id of a backup without one.
    if plan.field(field.path) is None or plan.field("backup_id") is None:
        return None
    name, backup_id = plan.at(field.path), plan.at("backup_id")
    empty_values = field.bound.column.empty_values

    def cell(row: tuple) -> str:
        value = row[name]
        if value is None or value in empty_values:
            return ""
        text = value or row[backup_id]
        return "" if text is None else neutralise_formula(text)

    return cell


@cache
def _cell_builders() -> dict[Callable, Callable[[RowPlan, ExportField], Cell | None]]:
    """A cell builder per value function it stands for; an override of one goes the general way."""
    from backups.tables.anomalies import AnomalyColumn
    from backups.tables.backups import BackupRecordTable
    from backups.tables.columns import (
        BytesColumn,
        ChoiceBadgeColumn,
        DurationColumn,
        ErrorCodeColumn,
        InstanceColumn,
        ProgressColumn,
    )

    return {
        Column.render: _rendered_cell,
        BooleanColumn.value: _stored_value_cell,
        ChoiceBadgeColumn.value: _stored_value_cell,
        ProgressColumn.value: _stored_value_cell,
        AnomalyColumn.value: _stored_value_cell,
        ErrorCodeColumn.value: _stored_value_cell,
        InstanceColumn.value: _instance_cell,
        BytesColumn.value: _bytes_cell,
        DurationColumn.value: _duration_cell,
        BackupRecordTable.value_backup_name: _backup_name_cell,
    }


def _cell(plan: RowPlan, field: ExportField, standin_at: int | None) -> Cell | None:
    """The cell of ``field`` from a row, or None where only the general way knows it."""
    model_field = plan.field(field.path)
    if isinstance(model_field, models.DateTimeField):
        return _time_cell(plan, field.path)  # csv_cell() writes any time so, whatever the column
    if field.bound is None:
        # An export-only extra: the value at its accessor, as it is.
        if model_field is None:
            return _chunk_attribute_cell(plan, field, standin_at)
        if isinstance(model_field, PLAIN_FIELDS):
            return _plain_cell(plan, field.path)
        return _memoised_cell(plan, field, [field.path])
    bound = field.bound
    if len(A(field.path).bits) != 1:
        return None
    function = bound.value
    if getattr(function, "__func__", None) is Column.value:
        function = bound.column.render
    builder = _cell_builders().get(getattr(function, "__func__", function))
    return builder(plan, field) if builder is not None else None


def _chunk_attribute_cell(plan: RowPlan, field: ExportField, standin_at: int | None) -> Cell | None:
    # Only prepare_export_chunk() can have set an attribute the model does
    # not have; a property (a class attribute) may read anything.
    if standin_at is None or "__" in field.path or hasattr(plan.model, field.path):
        return None
    name = field.path

    def cell(row: tuple) -> str:
        standin = row[standin_at]
        value = standin.__dict__.get(name)
        if isinstance(value, str):
            return neutralise_formula(value)
        return csv_cell(field, standin)

    return cell


def tuple_rows(table: Table, fields: list[ExportField]) -> Iterator[Iterator[list[str]]] | None:
    """The table's CSV rows, a chunk at a time, from tuples; None where a field needs the general way."""
    data = table.data.data
    if not isinstance(data, QuerySet) or not _plain_queryset(data) or not settings.USE_TZ:
        return None
    if data.query.distinct:
        return None  # DISTINCT would apply to the columns selected here instead
    plan = RowPlan(data)
    if plan.connection.timezone_name != "UTC":
        return None  # iso_utc_text() reads UTC text
    prepare = getattr(table, "prepare_export_chunk", None)
    pk_at = plan.at(plan.model._meta.pk.attname)
    # A chunk's stand-in records ride at the end of its rows.
    standin_at = -1 if prepare is not None else None
    cells = [_cell(plan, field, standin_at) for field in fields]
    if None in cells:
        return None
    standins = StandIns(plan.model, plan.db)

    def rows() -> Iterator[Iterator[list[str]]]:
        for chunk in plan.chunks():
            if prepare is not None:
                records = standins.of([row[pk_at] for row in chunk])
                prepare(records)
                chunk = ((*row, record) for row, record in zip(chunk, records, strict=True))
            # A row's cells are made as they are written, and let go.
            yield ([cell(row) for cell in cells] for row in chunk)

    return rows()


class StandIns:
    """Records of a chunk's rows for ``prepare_export_chunk()``: the primary key, the rest deferred.

    The same objects serve chunk after chunk, emptied each time. New ones,
    kept for a whole chunk, would reach the garbage collector's oldest
    generation by the thousand and set off a full collection every few
    chunks: a fifth of the export's time.
    """

    def __init__(self, model: type[models.Model], db: str):
        self.model, self.db = model, db
        self.pk_name = model._meta.pk.attname
        self.records: list[models.Model] = []

    def of(self, pks: list) -> list[models.Model]:
        while len(self.records) < len(pks):
            self.records.append(_new(self.model, [], [], self.db))
        records = self.records[: len(pks)]
        for record, pk in zip(records, pks, strict=True):
            state = record._state
            attributes = record.__dict__
            attributes.clear()
            attributes[self.pk_name] = pk
            attributes["_state"] = state
            # What a hook read or cached (a related record) goes too.
            state.__dict__.clear()
            state.adding, state.db = False, self.db
        return records


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
