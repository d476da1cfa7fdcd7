"""CSV rows as functions of the database's own tuples.

Even built without Model.__init__, a backup record costs its export some
90 µs: the drivers parse every time (and Django makes each aware), and each
of twenty cells goes the general way (:mod:`backups.exports.cells`). Where
every export field of a table has a cell builder here (the backup list's
do), its rows are read as the database's own tuples, from the same queryset
(its filters, order and joins), and each cell is one function of the tuple,
made once per export:

- a time is selected as text and rewritten to ISO 8601, no datetime made;
- text and numbers are written as they come;
- a cell of few distinct values (a status, an error code, an instance) is
  worked out the general way, by csv_cell() on a record holding what the
  cell reads, the first time its stored values are seen, and remembered;
- what a table's prepare_export_chunk() sets (the notes) is set on a
  stand-in record per row, its primary key only.

Anything else (a column or table value_FOO() without a builder, a property
as accessor, a queryset the rows could not follow) keeps the general way
for the whole export. tests/test_export_speed_path.py holds both ways to
the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models
from django.db.models import F, QuerySet
from django.db.models.functions import Cast
from django_tables2 import A, Column, Table
from django_tables2.columns import BooleanColumn

from backups.exports.cells import MEMO_LIMIT
from backups.exports.fields import FORMULA_STARTS, ExportField, csv_cell, iso_utc, neutralise_formula
from backups.exports.records import fetch_chunks, loaded_instance, plain_queryset

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
        results = fetch_chunks(compiler)
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
            record = loaded_instance(self.model, list(own), list(own.values()), self.db)
            for head, target in related.items():
                joined = values[head]
                found = joined[target._meta.pk.attname] is not None
                record._state.fields_cache[head] = (
                    loaded_instance(target, list(joined), list(joined.values()), self.db) if found else None
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
    if not isinstance(data, QuerySet) or not plain_queryset(data) or not settings.USE_TZ:
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
            self.records.append(loaded_instance(self.model, [], [], self.db))
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
