"""A column's ``value()`` of a record, without a BoundRow per cell.

django-tables2 finds a cell's value anew for every cell: a BoundRow, the
accessor parsed again, inspect.signature() of the value method, a display
lookup. That was nine tenths of an export's time. What depends only on the
column is worked out here once per export; what is left per cell is what
BoundRow.get_cell_value() does for a model record, step for step, and
anything these shortcuts do not cover goes through BoundRow itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django_tables2 import A, Column, Table
from django_tables2.columns import ManyToManyColumn
from django_tables2.columns.linkcolumn import BaseLinkColumn
from django_tables2.rows import BoundRow
from django_tables2.utils import signature

from backups.tables.rendering import NO_DISPLAY, DisplayPlan

# Distinct values whose export text one column keeps, at most.
MEMO_LIMIT = 10_000
_MISSING = object()


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
    plans: dict[type, DisplayPlan | None] = {}
    memo_by = _memo_key(column, function)
    memo: dict = {}

    def plan_of(record) -> DisplayPlan | None:
        # get_FOO_display() stands in for a field with choices (django-tables2 #30).
        model = type(record)
        if model not in plans:
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                field = None
            plans[model] = DisplayPlan.of(field, f"get_{name}_display", limit=MEMO_LIMIT)
        return plans[model]

    def value_of(record, raw=_MISSING):
        if not isinstance(record, models.Model):
            return slow(record)
        if raw is _MISSING:
            raw = read(record)
        plan = plan_of(record)
        value = plan.display(record) if plan is not None else NO_DISPLAY
        if value is NO_DISPLAY:
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
