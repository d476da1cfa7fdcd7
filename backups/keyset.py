"""Keyset ("seek") paging: the page after or before a row, found through an index.

OFFSET makes a database walk past every row before the page, so page 20,000
of a 2-million-row list costs as much as reading a million rows. A keyset
page instead starts from the last row shown, ``(created_at, id) < (t, 42)``,
which an index on ``(created_at, id)`` answers by seeking to that point.

The seek is a row-value comparison, which PostgreSQL and SQLite both turn
into one index range. The plain OR form (``created_at < t OR (created_at = t
AND id < 42)``) is not, and is slower than OFFSET on both.

An order qualifies when it is a list of the model's own fields, all in one
direction, ending in the primary key (which makes it total). Only its first
field may be nullable: rows with a NULL there sort as a block before or after
the others (PostgreSQL puts NULL above every value, SQLite below), and a page
that reaches the end of one block is topped up from the start of the next.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import connections, models
from django.db.models import F, Func, QuerySet, Value
from django.db.models.lookups import GreaterThan, LessThan

# Longer than any cursor we hand out: a pasted token this long is not ours.
MAX_TOKEN_LENGTH = 1024


class Row(Func):
    """``(a, b, c)``: a row value."""

    function = ""
    template = "(%(expressions)s)"
    output_field = models.Field()


class BadCursor(ValueError):
    """A cursor token we did not make, or made for another order."""


def _typed(field: models.Field) -> models.Field:
    """The field that types a value of ``field``: a generated column's output field."""
    return field.output_field if isinstance(field, models.GeneratedField) else field


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class Keyset:
    fields: tuple[models.Field, ...]
    descending: bool

    @classmethod
    def of(cls, queryset: QuerySet) -> Keyset | None:
        """The keyset of the queryset's order, or None when its order does not qualify."""
        ordering = queryset.query.order_by
        if not ordering or not all(isinstance(key, str) for key in ordering):
            return None
        directions = {key.startswith("-") for key in ordering}
        if len(directions) != 1:
            return None
        opts = queryset.model._meta
        fields = []
        for key in ordering:
            name = key.removeprefix("-")
            if "__" in name:
                return None
            try:
                fields.append(opts.pk if name == "pk" else opts.get_field(name))
            except FieldDoesNotExist:
                return None
        if fields[-1] != opts.pk or not all(field.concrete for field in fields):
            return None
        if any(field.null for field in fields[1:]):
            return None
        return cls(tuple(fields), descending=directions.pop())

    # --- cursors ----------------------------------------------------------

    def values_of(self, obj) -> tuple:
        return tuple(getattr(obj, field.attname) for field in self.fields)

    def encode(self, values: tuple, *, order: str) -> str:
        """An opaque, URL-safe token for the row with these key values in this order."""
        payload = json.dumps([order, *(_plain(value) for value in values)], separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    def decode(self, token: str, *, order: str) -> tuple:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise BadCursor(token)
        try:
            payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise BadCursor(token) from None
        if not isinstance(payload, list) or len(payload) != len(self.fields) + 1 or payload[0] != order:
            raise BadCursor(token)
        values = []
        for field, raw in zip(self.fields, payload[1:], strict=True):
            if raw is not None and not isinstance(raw, str | int | float):
                raise BadCursor(token)
            if raw is None and (field is not self.fields[0] or not field.null):
                raise BadCursor(token)
            try:
                values.append(None if raw is None else _typed(field).to_python(raw))
            except (ValidationError, TypeError, ValueError, OverflowError):
                raise BadCursor(token) from None
        # Our tokens carry times with their offset; a naive one was edited by hand.
        if any(isinstance(value, datetime) and value.tzinfo is None for value in values):
            raise BadCursor(token)
        return tuple(values)

    # --- pages ------------------------------------------------------------

    def page_slice(self, queryset: QuerySet, start: int, stop: int) -> QuerySet:
        """``queryset[start:stop]``, the skipped rows read from the index of the order only.

        An OFFSET walks past every skipped row, and when the query selects
        columns the index lacks (or joins another table), each skipped row
        costs a table read (and a join): the last numbered page of the
        backup list read 10,000 records and their instances to show 50. A
        "deferred join" walks the index in a subquery that selects only the
        primary key, then reads the page's rows by id. The order is total
        (it ends in the primary key), so both pick the same rows, and the
        outer query sorts its few rows the same way.
        """
        if not start:
            return queryset[start:stop]
        page_ids = queryset.values("pk")[start:stop]
        return queryset.filter(pk__in=page_ids)

    def rows_after(self, queryset: QuerySet, values: tuple, *, limit: int) -> list:
        """Up to ``limit`` rows that follow the row with ``values``, in the queryset's order."""
        return self._seek(queryset, values, limit=limit, descending=self.descending)

    def rows_before(self, queryset: QuerySet, values: tuple, *, limit: int) -> list:
        """Up to ``limit`` rows that precede it, in the queryset's order (nearest last)."""
        rows = self._seek(queryset.reverse(), values, limit=limit, descending=not self.descending)
        rows.reverse()
        return rows

    def beyond(self, values: tuple, *, descending: bool | None = None, keys: slice = slice(None)):
        """The row-value condition "after ``values``" (in ``descending`` order, by default the keyset's)."""
        descending = self.descending if descending is None else descending
        fields = self.fields[keys]
        return (LessThan if descending else GreaterThan)(
            Row(*(F(field.attname) for field in fields)),
            Row(
                *(
                    Value(value, output_field=_typed(field))
                    for field, value in zip(fields, values, strict=True)
                )
            ),
        )

    def _seek(self, queryset: QuerySet, values: tuple, *, limit: int, descending: bool) -> list:
        first = self.fields[0]
        if not first.null:
            return list(queryset.filter(self.beyond(values, descending=descending))[:limit])
        # Whether this scan meets the NULL block after the others.
        nulls_largest = connections[queryset.db].features.nulls_order_largest
        nulls_after = descending != nulls_largest
        is_null = {f"{first.attname}__isnull": True}
        if values[0] is None:
            rest = self.beyond(values[1:], descending=descending, keys=slice(1, None))
            rows = list(queryset.filter(rest, **is_null)[:limit])
            if len(rows) < limit and not nulls_after:
                rows += list(queryset.filter(**{f"{first.attname}__isnull": False})[: limit - len(rows)])
            return rows
        # A row value with a NULL in it compares as unknown: the seek skips
        # the NULL block by itself, and it is added when the scan gets there.
        rows = list(queryset.filter(self.beyond(values, descending=descending))[:limit])
        if len(rows) < limit and nulls_after:
            rows += list(queryset.filter(**is_null)[: limit - len(rows)])
        return rows


__all__ = ["BadCursor", "Keyset", "Row"]
