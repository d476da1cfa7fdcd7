"""Database helpers that the ORM has no cheap form of.

- ``select_scalars``: one round trip for several one-value questions.
  ``SELECT (SELECT ...) AS a, (SELECT ...) AS b`` needs no table to select
  from, and PostgreSQL and SQLite both run it. The pages use it to ask about
  several small tables (heartbeats, runs) in one query, so a page's query
  count does not grow with the number of questions it asks.
- ``bulk_insert``, ``bulk_update``, ``ValueList``: the sync's writes of
  thousands of rows, from plain tuples, in one statement per batch;
  ``bulk_writer``: the page cache of the connection that makes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import Expression, QuerySet

logger = logging.getLogger("backups.db")


def select_scalars(**queries: QuerySet) -> dict[str, Any]:
    """Each queryset's first value (its first row's single column), or None, in one query.

    Each must select one column (``.values("x")[:1]``, or an aggregate
    subquery); values come back as their field types (a time from SQLite's
    text is an aware datetime, as from the ORM).
    """
    if not queries:
        return {}
    using = next(iter(queries.values())).db
    connection = connections[using]
    parts, params, columns = [], [], []
    for name, queryset in queries.items():
        compiler = queryset.query.get_compiler(using=using)
        sql, query_params = compiler.as_sql()
        if len(compiler.select) != 1:
            raise ValueError(f"{name}: a scalar query selects one column, not {len(compiler.select)}")
        parts.append(f"({sql}) AS {connection.ops.quote_name(name)}")
        params.extend(query_params)
        columns.append(compiler.select[0][0])
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    values = {}
    for name, expression, value in zip(queries, columns, row, strict=True):
        converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        for convert in converters:
            value = convert(value, expression, connection)
        values[name] = value
    return values


# --- Bulk writes of plain rows ---------------------------------------------------------
#
# The ORM's bulk_create and bulk_update make a model instance of every row and
# prepare every field of it through the field's own methods (bulk_update
# also builds a CASE WHEN per field): hundreds of µs of Python a row in the
# sync, several times the database's own work. The sync writes thousands of
# rows a second whose values already have the right Python types, so these
# take plain tuples and pick how to prepare each column once.
#
# PostgreSQL gets an insert's rows by COPY into a staging table and then one
# INSERT ... SELECT, so a whole listing is one statement: the summary
# triggers run once per statement (see backups.summaries), not once per row.
# An update's rows go as one array parameter a column (``unnest``), in
# binary through a server-binding cursor: Django's client-side cursor quotes
# them as text in Python, 40 ms for 1,000 records against 5 ms. SQLite gets
# one prepared statement and ``executemany``: its triggers are row triggers
# anyway, and it runs in process. Table and column names in the SQL are the
# models' own, quoted; every value is a parameter or COPY data.

# Rows per PostgreSQL UPDATE: large enough that a statement's fixed costs
# vanish, small enough for memory.
PG_BATCH = 5000


# Fields whose Python values (str, int, bool, Decimal, float, None; a foreign
# key's id) both drivers take as they are: Django registers Decimal and bool
# with sqlite3, and psycopg dumps them all.
_AS_IS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.DecimalField,
    models.FloatField,
    models.ForeignKey,
)


_NO_OFFSET = timedelta(0)


def _prepare(field: models.Field, connection):
    """A function from the field's Python value to what the driver takes, or None: as it is.

    Each gives what ``field.get_db_prep_save`` would for the values the sync
    has (aware datetimes, str, int, bool, Decimal, dicts), without its
    per-value overhead; any other field goes through the field itself.
    """
    if isinstance(field, models.JSONField):
        return partial(connection.ops.adapt_json_value, encoder=field.encoder)
    if isinstance(field, models.DateTimeField):
        if connection.vendor != "sqlite":
            return None
        zone = connection.timezone
        in_utc = zone.utcoffset(None) == _NO_OFFSET  # None for a zone with daylight saving
        # The last value and its text: a column often holds one time in
        # every row (the sync's now in first_seen and last_seen).
        last: list = [None, None]

        def adapt(value):
            if value is None:
                return None
            if value is last[0]:
                return last[1]
            if isinstance(value, datetime) and value.tzinfo is not None:
                # Django's SQLite text of an aware time: its wall time in the
                # connection's zone (UTC), "YYYY-MM-DD HH:MM:SS[.ffffff]".
                if in_utc and value.utcoffset() == _NO_OFFSET:
                    text = value.isoformat(" ")[:-6]  # less its "+00:00", a third faster than str()
                else:
                    text = str(value.astimezone(zone).replace(tzinfo=None))
            else:
                text = field.get_db_prep_save(value, connection)
            last[:] = value, text
            return text

        return adapt
    if isinstance(field, _AS_IS):
        return None
    return partial(field.get_db_prep_save, connection=connection)


def _array_type(field: models.Field, connection) -> str:
    """The PostgreSQL array a column's values are sent as.

    Strings go as text[], not varchar(n)[]: a cast to varchar(n) would cut
    a value that is too long, where assigning it to the column refuses it.
    """
    if isinstance(field, models.CharField | models.TextField):
        return "text[]"
    return f"{field.db_type(connection)}[]"


@contextmanager
def _binding_cursor(connection) -> Iterator:
    """A PostgreSQL cursor that binds parameters on the server, logged and wrapped as Django's own."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = ServerBindingCursor(connection.connection)
    wrapped = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    with wrapped as cursor:
        yield cursor


def _columns(model, fields: Sequence[str], connection) -> tuple[list[models.Field], list[str]]:
    meta = model._meta
    found = [meta.get_field(name) for name in fields]
    return found, [connection.ops.quote_name(field.column) for field in found]


def _prepared_columns(found: list[models.Field], rows: Sequence[tuple], connection) -> list[list]:
    """The rows as columns, each value prepared for the driver."""
    columns = []
    for field, values in zip(found, zip(*rows, strict=True), strict=True):
        prepare = _prepare(field, connection)
        columns.append(list(values) if prepare is None else list(map(prepare, values)))
    return columns


def _execute_arrays(connection, sql: str, found: list[models.Field], rows: Sequence[tuple]) -> None:
    """Run ``sql`` on PostgreSQL with each column of the rows as one array parameter, a batch at a time."""
    with _binding_cursor(connection) as cursor:
        for start in range(0, len(rows), PG_BATCH):
            cursor.execute(sql, _prepared_columns(found, rows[start : start + PG_BATCH], connection))


def _arrays(found: list[models.Field], connection) -> str:
    return ", ".join(f"%b::{_array_type(field, connection)}" for field in found)


# The PostgreSQL types of the columns each staging table holds, by its name:
# built-in types, whose ids are the same on every server.
_STAGING_TYPES: dict[str, list[int]] = {}
# The staging tables each open PostgreSQL connection has, once the
# transaction that made one has committed (a rollback takes it away).
_STAGED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _copy_insert(
    connection, model, found: list[models.Field], columns: list[str], rows, conflict: str
) -> None:
    """PostgreSQL: COPY the rows into a staging table, then one INSERT ... SELECT from it.

    psycopg's C code formats COPY rows, where array parameters are dumped
    item by item in Python (26 columns of 1,000 records: ~20 ms, a third of
    the write). The staging table is a temporary table of this connection,
    with the columns named and an ordinal, made on first use. The INSERT
    takes the rows out of it (``DELETE ... RETURNING``) in the order given,
    so new ids follow that order, and is one statement, so the summary
    triggers run once; whatever a transaction left there goes at its
    commit (``ON COMMIT DELETE ROWS``).
    """
    table = model._meta.db_table
    names = ", ".join(columns)
    digest = hashlib.sha1(names.encode(), usedforsecurity=False).hexdigest()[:8]
    staging = connection.ops.quote_name(f"bulk_{table}_{digest}")
    quoted = connection.ops.quote_name(table)
    # One transaction, so that each statement finds the staging table (a
    # pooler may hand each of autocommit's transactions another session).
    with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
        raw = connection.connection
        staged = _STAGED.setdefault(raw, set())
        if staging not in staged:
            # No constraint and no WAL: temporary. Made in this transaction, it
            # goes again if the transaction rolls back, hence known only once
            # committed.
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "  # noqa: S608
                f"SELECT 0::int AS bulk_ordinal, {names} FROM {quoted} WITH NO DATA"
            )
            transaction.on_commit(partial(staged.add, staging), using=connection.alias)
        types = _STAGING_TYPES.get(staging)
        if types is None:
            cursor.execute(f"SELECT * FROM {staging} LIMIT 0")  # noqa: S608
            types = _STAGING_TYPES[staging] = [column.type_code for column in cursor.description]
        prepared = _prepared_columns(found, rows, connection)
        with cursor.cursor.copy(f"COPY {staging} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in zip(range(len(rows)), *prepared, strict=True):
                copy.write_row(row)
        cursor.execute(
            f"WITH staged AS (DELETE FROM {staging} RETURNING *) "  # noqa: S608
            f"INSERT INTO {quoted} ({names}) SELECT {names} FROM staged ORDER BY bulk_ordinal{conflict}"
        )


def bulk_insert(
    model: type[models.Model],
    *,
    fields: Sequence[str],
    rows: Sequence[tuple],
    unique_fields: Sequence[str] = (),
    update_fields: Sequence[str] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    """INSERT ``rows`` (tuples of Python values in ``fields`` order) into ``model``'s table.

    With ``unique_fields``, a row that conflicts on them UPDATEs its
    ``update_fields`` instead (``ON CONFLICT DO UPDATE``, which PostgreSQL and
    SQLite share). A column not named gets its database default
    (``db_default``), so every other NOT NULL one must be named. No model
    instance is made and no signal is sent. Rows are inserted in order, so
    new ids follow the order of ``rows``.
    """
    if not rows:
        return
    connection = connections[using]
    found, columns = _columns(model, fields, connection)
    table = connection.ops.quote_name(model._meta.db_table)
    conflict = ""
    if unique_fields:
        _, unique = _columns(model, unique_fields, connection)
        _, updated = _columns(model, update_fields, connection)
        assignments = ", ".join(f"{column} = excluded.{column}" for column in updated)
        conflict = f" ON CONFLICT ({', '.join(unique)}) DO UPDATE SET {assignments}"
    if connection.vendor == "postgresql":
        _copy_insert(connection, model, found, columns, rows, conflict)
        return
    placeholders = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}){conflict}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, list(zip(*_prepared_columns(found, rows, connection), strict=True)))


def bulk_update(
    model: type[models.Model],
    *,
    fields: Sequence[str],
    rows: Sequence[tuple],
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    """UPDATE ``fields`` of the rows with these ids; each row is ``(pk, *values)`` in ``fields`` order.

    One statement per batch on PostgreSQL (``UPDATE ... FROM unnest(...)``),
    one prepared statement on SQLite; the ORM's ``bulk_update`` builds a
    CASE WHEN of every row for every field instead.
    """
    if not rows:
        return
    connection = connections[using]
    pk = model._meta.pk
    found, columns = _columns(model, [pk.name, *fields], connection)
    table = connection.ops.quote_name(model._meta.db_table)
    if connection.vendor == "postgresql":
        names = ", ".join(columns)
        assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
        sql = (
            f"UPDATE {table} AS t SET {assignments} FROM unnest({_arrays(found, connection)}) AS v({names}) "  # noqa: S608
            f"WHERE t.{columns[0]} = v.{columns[0]}"
        )
        _execute_arrays(connection, sql, found, rows)
        return
    assignments = ", ".join(f"{column} = %s" for column in columns[1:])
    sql = f"UPDATE {table} SET {assignments} WHERE {columns[0]} = %s"  # noqa: S608
    prepared = _prepared_columns(found, rows, connection)
    with connection.cursor() as cursor:
        cursor.executemany(sql, list(zip(*prepared[1:], prepared[0], strict=True)))


# The page cache of a SQLite connection while it writes a sync's listings, in KiB.
WRITER_CACHE_KIB = 64 * 1024
# How often the writer's checkpointer copies the WAL back into the database, in seconds.
CHECKPOINT_EVERY = 0.25


class _Checkpointer(threading.Thread):
    """Checkpoints a SQLite database's WAL from its own connection, beside the writer.

    A checkpoint copies the pages the WAL holds back into the database file
    and fsyncs it. Left to the writer alone (``wal_autocheckpoint``, every
    16,000 pages) it runs at the end of a commit, on the writer's thread,
    holding up its next write: beside 2M records, ~200 ms every ten
    listings of 1,000. Here most of it runs on another thread, whose
    checkpoints release the GIL, so it overlaps the writer's next listings.

    Every ``CHECKPOINT_EVERY`` it copies what the WAL holds (PASSIVE: it
    never waits for, nor holds up, the writer). It never restarts the WAL:
    only a writer that finds every page copied back does, so the writer's
    own checkpoints stay on. Each now finds all but the last few pages
    copied already; it copies those, and its next transaction starts the
    WAL afresh, which stays as small as before.
    """

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(name="sqlite-checkpointer", daemon=True)
        self.path = path
        self.timeout = timeout
        self.stopping = threading.Event()
        self.checkpoints = 0
        self.copied = 0  # WAL frames copied back by the last checkpoint
        self.error: BaseException | None = None

    def run(self) -> None:
        import sqlite3

        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                while not self.stopping.wait(CHECKPOINT_EVERY):
                    _busy, _frames, self.copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
            finally:
                conn.close()
        except sqlite3.Error as exc:  # the writer's own checkpoints go on: nothing is lost
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def _database_file(raw) -> str | None:
    """The file of a SQLite connection's main database in WAL mode, or None (in memory, other journal)."""
    if raw.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return None
    for _seq, name, path in raw.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return path or None
    return None


@contextmanager
def bulk_writer(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """The SQLite connection that writes a sync's listings, set up for bulk writes, and put back after.

    - A 64 MiB page cache. A listing's rows land all over the records'
      indexes; with SQLite's default 2 MiB cache the next listing reads
      those pages again (ingest of long histories beside 2M records: 9,100
      records/s, 10,200 with it). Only the writer gets it: a connection that
      streams an export would keep every page it read, 64 MiB more of memory.
    - Most of its checkpoints on another thread (:class:`_Checkpointer`).

    Set on the driver's connection itself, so none of it is a query of the
    sync's. PostgreSQL has shared_buffers and its own checkpointer: nothing
    to do.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    cache = raw.execute("PRAGMA cache_size").fetchone()[0]
    path = _database_file(raw)
    checkpointer = None
    raw.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    if path is not None:
        checkpointer = _Checkpointer(
            path, timeout=float(connection.settings_dict["OPTIONS"].get("timeout", 5))
        )
        checkpointer.start()
    try:
        yield
    finally:
        if checkpointer is not None:
            checkpointer.stop()
            if checkpointer.error is not None:
                logger.warning("sqlite checkpointer stopped: %s", checkpointer.error)
        # Closed and opened again meanwhile: the new connection has the default.
        if connection.connection is raw:
            raw.execute(f"PRAGMA cache_size = {int(cache)}")


class CompiledOnce(Expression):
    """An expression a query compiles once, however often the query names it.

    Django writes an annotation out in full wherever it is named again: in
    another annotation, a filter, a window's PARTITION BY or ORDER BY. The
    text is the same each time, but compiling it is Python work in
    proportion to the whole tree: the overview's fleet query, which names
    the staleness (two subqueries) and the risk a few times each, took
    ~15 ms to compile, as long as running it (5 ms with this). The SQL and
    parameters are kept for the compiler that made them, which gives the same ones again,
    and shared with the copies a query makes as it resolves a lookup on the
    expression (a filter resolves its own copy). A relabelled clone (the
    query used inside another, its aliases changed) starts afresh; and no
    other compiler, hence no other query, ever gets them.
    """

    def __init__(self, expression):
        super().__init__()
        self.expression = expression
        self._kept: dict = {}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.expression!r})"

    def get_source_expressions(self) -> list:
        return [self.expression]

    def set_source_expressions(self, expressions) -> None:
        (self.expression,) = expressions

    def relabeled_clone(self, change_map):
        clone = super().relabeled_clone(change_map)
        clone._kept = {}
        return clone

    def as_sql(self, compiler, connection):
        kept = self._kept.get("compiled")
        if kept is not None and kept[0] is compiler:
            return kept[1]
        sql, params = compiler.compile(self.expression)
        # In parentheses: the same text goes wherever the query names the
        # expression, whatever comes around it there. (Django itself writes
        # a condition in parentheses or not by where it is.)
        compiled = f"({sql})", params
        self._kept["compiled"] = (compiler, compiled)
        return compiled


class ValueList(Expression):
    """A list of ids or keys of any length as ONE query parameter, for ``__in``.

    ``filter(pk__in=ValueList(ids, models.BigIntegerField()))``: the ORM
    would send one parameter per value, in chunks under SQLite's limit, and
    resolve each value as an expression (a few µs apiece). PostgreSQL reads
    the list as an array (``unnest``), SQLite as a JSON array (``json_each``).
    The values must be ints or str.
    """

    def __init__(self, values: Iterable[int | str], output_field: models.Field):
        super().__init__(output_field=output_field)
        self.values = list(values)

    def as_sql(self, compiler, connection):
        if connection.vendor == "postgresql":
            return f"(SELECT unnest(%s::{_array_type(self.output_field, connection)}))", [self.values]
        return "(SELECT value FROM json_each(%s))", [json.dumps(self.values)]


__all__ = ["ValueList", "bulk_insert", "bulk_update", "bulk_writer", "select_scalars"]
