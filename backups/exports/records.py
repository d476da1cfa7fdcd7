"""The table's records in its order, a chunk at a time, built without ``Model.__init__``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

from django.db import models
from django.db.models import QuerySet, signals
from django.db.models.base import ModelState
from django.db.models.query import ModelIterable
from django.db.models.sql.constants import MULTI
from django_tables2 import Table

# Rows read from the database at a time (here and by the tuple rows), and the
# records a table's prepare_export_chunk() is handed at once.
CHUNK_SIZE = 2000


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


def plain_queryset(queryset: QuerySet) -> bool:
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
    if not plain_queryset(queryset):
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


def loaded_instance(model, names: list[str], values, db: str):
    """A ``model`` instance as if loaded from ``db``, its attributes set straight, ``__init__`` skipped."""
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


def fetch_chunks(compiler) -> Iterator[list[tuple]]:
    """The compiler's rows, a chunk at a time, from a server-side cursor where the database has one."""
    chunked = not compiler.connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    return compiler.execute_sql(MULTI, chunked_fetch=chunked, chunk_size=CHUNK_SIZE)


def _instances(values: QuerySet, model, own: list, joins: list) -> Iterator[models.Model]:
    """Rows of ``values`` as instances, each related row converted and built once.

    The database's values are converted (times parsed, decimals made) as
    Django's ``values_list`` would, but a joined row repeated on a million
    records is converted only the first time it is seen.
    """
    db = values.db
    compiler = values.query.get_compiler(using=db)
    results = fetch_chunks(compiler)
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
        instance = loaded_instance(model, own_names, convert_own(list(row[:width])), db)
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
                related = seen[key] = (stored, loaded_instance(target, names, convert(list(stored)), db))
            cache[name] = related[1]
        yield instance
