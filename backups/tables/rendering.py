"""The body rows of a table, rendered in Python with the table's own columns.

django-tables2 renders a cell through ``BoundRow.get_cell``: it asks
``inspect.signature`` which arguments the column's ``render()`` takes, and
works the ``<td>`` attributes out again, for every cell; then the template's
two nested ``{% for %}`` loops render each ``<td>`` node by node. On a page of
50 backups (700 cells) that was about 40 % of the page's time.

:class:`RowRenderer` binds each column once per page instead: which callable
renders its cells (``render_FOO`` on the table, else the column's
``render()``) and which of django-tables2's cell arguments it takes, how the
cell's value is read, the column's default and its ``<td>`` attributes. A row
is then one string join. The tables stay the configuration (columns, order,
verbose names, the ``value()`` exports read); only the loop is ours.

The HTML is the same as django-tables2's cell path with the template's
``<td {{ column.attrs.td.as_html }}>{{ cell }}</td>`` (tests/test_table_rendering.py
compares the two for every table). A column whose cells depend on more than
the record (a link, a many-to-many, a ``td`` attribute computed per cell) is
rendered through django-tables2's own path, cell by cell: none of ours is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.template.base import render_value_in_context
from django.utils.safestring import SafeString, mark_safe
from django_tables2 import Table
from django_tables2.columns import BoundColumn, ManyToManyColumn
from django_tables2.columns.linkcolumn import BaseLinkColumn
from django_tables2.rows import BoundRow
from django_tables2.utils import A, AttributeDict, signature

# What django-tables2 offers a cell's render() (BoundRow._optional_cell_arguments).
CELL_ARGUMENTS = ("value", "record", "column", "bound_column", "bound_row", "table")
ROW_ARGUMENTS = ("table", "record")


def bind_call(fn: Callable, offered: tuple[str, ...]) -> Callable[[dict], Any]:
    """``fn`` called with the arguments it takes among ``offered``, the way
    django-tables2's ``call_with_appropriate`` calls it, its signature read once.

    As there, a function wanting an argument that is not offered is not
    called at all: its result is None.
    """
    names, catch_all = signature(fn)
    if catch_all:
        return lambda arguments: fn(**arguments)
    if any(name not in offered for name in names):
        return lambda arguments: None
    if names == ("value",):  # most columns: no dict to build per cell
        return lambda arguments: fn(value=arguments["value"])
    if names == ("record",):
        return lambda arguments: fn(record=arguments["record"])
    return lambda arguments: fn(**{name: arguments[name] for name in names})


class CellRenderer:
    """One column of the table, bound for a page: how to read, render and wrap its cells."""

    def __init__(self, table: Table, bound_column: BoundColumn):
        self.table = table
        self.bound_column = bound_column
        self.name = bound_column.name
        column = bound_column.column
        self.column = column
        self.empty_values = column.empty_values
        self.default = bound_column.default
        # The cell arguments that do not change from row to row.
        self.arguments = {"column": column, "bound_column": bound_column, "table": table}
        self.render = bind_call(bound_column.render, CELL_ARGUMENTS)
        self.wants_bound_row = "bound_row" in signature(bound_column.render)[0]
        accessor = A(bound_column.accessor)
        self.accessor = accessor
        path, _separator, self.remainder = accessor.rpartition(accessor.SEPARATOR)
        self.path = A(path) if path else None
        self.display_method = f"get_{self.remainder}_display"
        # Per model class of the records: how the value is read (see _plan).
        self._plans: dict[type, DisplayPlan | None] = {}
        self.per_cell = bool(
            bound_column.link
            or isinstance(column, (BaseLinkColumn, ManyToManyColumn))
            or _computes_per_cell(table.attrs, column.attrs)
        )
        self.td_open = "" if self.per_cell else f"<td {bound_column.attrs['td'].as_html()}>"

    def value_of(self, record):
        """The value django-tables2 hands render() (``BoundRow._get_and_render_with``)."""
        owner = self.path.resolve(record, quiet=True) if self.path is not None else record
        if isinstance(owner, models.Model):
            kind = type(record)
            plan = self._plans[kind] if kind in self._plans else self._plan(record)
            if plan is not None:
                display = plan.display(owner)
                if display is not NO_DISPLAY:
                    return display
        if not self.remainder:
            return None
        try:
            return self.accessor.resolve(record)
        except Exception:
            # As django-tables2 does: a failed lookup is an empty cell.
            return None

    def _plan(self, record) -> DisplayPlan | None:
        """Whether the accessor ends at a field with choices, whose label
        (``get_FOO_display()``) is the value django-tables2 renders."""
        try:
            field = self.accessor.get_field(record)
        except FieldDoesNotExist:
            field = None
        plan = DisplayPlan.of(field, self.display_method)
        self._plans[type(record)] = plan
        return plan

    def cell(self, record, row: BoundRow | None) -> Any:
        """What the template's ``{{ cell }}`` receives: the rendered content or the default."""
        value = self.value_of(record)
        if value in self.empty_values:
            return self.default
        arguments = {"value": value, "record": record, "bound_row": row, **self.arguments}
        return self.render(arguments)

    def td(self, record, row: BoundRow | None, context) -> str:
        if self.per_cell:
            return self._td_per_cell(record, row, context)
        return f"{self.td_open}{render_value_in_context(self.cell(record, row), context)}</td>"

    def _td_per_cell(self, record, row: BoundRow | None, context) -> str:
        # django-tables2's own path: BoundRow.items() then column.attrs.td.
        row = row or BoundRow(record, table=self.table)
        content = row.get_cell(self.name)
        self.bound_column.current_value, self.bound_column.current_record = content, record
        attrs = self.bound_column.attrs["td"].as_html()
        return f"<td {attrs}>{render_value_in_context(content, context)}</td>"


# A record without the get_FOO_display() method: its value is read as it is.
NO_DISPLAY = object()


class DisplayPlan:
    """``get_FOO_display()`` of one field, called once per value a page (or an export) shows.

    The method Django generates for a field with choices looks the value up
    in the choices, making every label hashable first: per cell, that is most
    of a badge's cost, and a translation costs more than the rest of an
    export's cell. Its result depends on the value alone (in the active
    language, which a page or an export does not change), so it is kept per
    value, up to ``limit`` values. A model that writes its own
    ``get_FOO_display()`` gets it called per cell.
    """

    def __init__(self, method: str, field, *, limit: int | None = None):
        self.method = method
        self.attname = field.attname
        self.labels: dict = {}
        self.limit = limit

    @classmethod
    def of(cls, field, method: str, *, limit: int | None = None) -> DisplayPlan | None:
        """The plan of ``field`` when it has choices (its label is the value shown), else None."""
        return cls(method, field, limit=limit) if getattr(field, "choices", ()) else None

    def display(self, owner):
        """``owner.get_FOO_display()``, or NO_DISPLAY when it has no such method."""
        if not _is_generated_display(type(owner), self.method):
            method = getattr(owner, self.method, None)
            return method() if method else NO_DISPLAY
        value = getattr(owner, self.attname)
        try:
            return self.labels[value]
        except KeyError:
            # (The method is bound only here: a partial made per call.)
            label = getattr(owner, self.method)()
            if self.limit is None or len(self.labels) < self.limit:
                self.labels[value] = label
            return label
        except TypeError:  # an unhashable value
            return getattr(owner, self.method)()


@functools.cache
def _is_generated_display(model: type, method: str) -> bool:
    found = inspect.getattr_static(model, method, None)
    return isinstance(found, functools.partialmethod) and found.func is models.Model._get_FIELD_display


def _computes_per_cell(table_attrs: dict, column_attrs: dict) -> bool:
    """Whether a ``<td>``'s attributes are computed from each cell (a callable in them)."""
    for attrs in (table_attrs, column_attrs):
        for key in ("td", "cell"):
            if any(callable(value) or isinstance(value, dict) for value in attrs.get(key, {}).values()):
                return True
    return False


class RowRenderer:
    """Every body row of a table's page: ``<tr>``s of ``<td>``s, one join per row."""

    def __init__(self, table: Table):
        self.table = table
        self.cells = [CellRenderer(table, bound_column) for bound_column in table.columns]
        self.needs_bound_row = any(cell.wants_bound_row or cell.per_cell for cell in self.cells)
        self.row_attrs = [
            (key, bind_call(value, ROW_ARGUMENTS) if callable(value) else value)
            for key, value in table.row_attrs.items()
        ]

    def attrs_of(self, record, position: int) -> str:
        """``row.attrs.as_html``: the table's row_attrs for this record, then "even" or "odd"."""
        arguments = {"table": self.table, "record": record}
        attrs = {}
        for key, value in self.row_attrs:
            attrs[key] = value(arguments) if callable(value) else value
        parity = "odd" if position % 2 else "even"
        attrs["class"] = f"{attrs['class']} {parity}" if attrs.get("class") else parity
        return AttributeDict(attrs).as_html()

    def render(self, records: Iterable, context) -> SafeString:
        """The ``<tr>``s of ``records``, numbered from the first for even/odd."""
        rows = []
        for position, record in enumerate(records):
            row = BoundRow(record, table=self.table) if self.needs_bound_row else None
            cells = "".join([cell.td(record, row, context) for cell in self.cells])
            rows.append(f"<tr {self.attrs_of(record, position)}>{cells}</tr>")
        # Safe as the template's own output was (NodeList.render joins its
        # nodes the same way): each cell's content went through
        # render_value_in_context, which escapes what is not safe already,
        # and the attributes through AttributeDict.as_html (format_html_join).
        return mark_safe("\n".join(rows))  # noqa: S308


def page_records(table: Table) -> list:
    """The records of the rows the table shows: its page's, or all of them."""
    return [row.record for row in table.paginated_rows]


def render_body_rows(table: Table, context) -> SafeString:
    """The table's body rows for its template, or "" when there are none."""
    records = page_records(table)
    if not records:
        return SafeString()
    return RowRenderer(table).render(records, context)
