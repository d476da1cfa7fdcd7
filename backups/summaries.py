"""Summaries of the backup records, kept exact by the database itself.

Two summaries let the fleet pages answer without reading millions of records:

- on each ``DcsInstance``: ``last_backup_at``, ``last_backup_status`` and
  ``last_success_at`` (what the at-risk rule and the fleet table need);
- ``BackupHourlyCount``: how many records were created per hour, status and
  project (what the overview's counts and success rates need).

Triggers on the records table keep both current on every insert, update and
delete, whoever writes: the sync, the admin, a retention job, a test. That is
why they are triggers and not Python in the sync: a summary that one writer
forgets is wrong forever, and one that every writer must remember is a bug
waiting for the next writer.

PostgreSQL runs one trigger per *statement* (with transition tables), so a
bulk upsert of 500 rows costs one grouped update of the summaries, not 500.
SQLite has row triggers only, at about 25 µs a record (two thirds of what
an insert costs there); a bulk insert can open a batch (``batched()``),
which the row trigger stands aside for and which summarises the batch's
records in two grouped statements when it ends, in the same transaction.
Any write outside a batch is summarised row by row, as before.

Lock order on PostgreSQL: a trigger updates the instance's row before the
hourly counts, the same order as the sync, which writes the instance row
and its records in one transaction. Counts are added with ``ON CONFLICT DO
UPDATE SET records = records + excluded.records``, so concurrent syncs of
different instances never overwrite each other's counts.

``rebuild_summaries()`` recomputes both from the records (the migration that
adds them, and after a bulk load that ran with the triggers ``suspended()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

RECORDS = "backups_backuprecord"
INSTANCES = "backups_dcsinstance"
COUNTS = "backups_backuphourlycount"
BATCHES = "backups_summarybatch"
SUCCEEDED = "succeed"
TRIGGER_PREFIX = "backups_summary_"

# --- PostgreSQL -------------------------------------------------------------------

# The hour of a created_at, in UTC whatever the session's zone; no created_at: NO_HOUR.
_PG_HOUR = (
    "coalesce(date_trunc('hour', {t}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
    "timestamptz '0001-01-01 00:00:00+00')"
)

# Recompute the summary columns of the instances in {affected} (a query of ids).
# Each value is the first row of a walk down the (instance, created_at) index,
# never max() with a status filter, which would read every record of the
# instance (SQLite's max() shortcut does not apply with a filter).
# IS DISTINCT FROM: an instance whose summary did not change is not written.
_PG_INSTANCES = f"""
    UPDATE {INSTANCES} AS i
       SET last_backup_at = s.last_backup_at,
           last_backup_status = s.last_backup_status,
           last_success_at = s.last_success_at
      FROM (
        SELECT a.instance_id,
               newest.created_at AS last_backup_at,
               coalesce(newest.status, '') AS last_backup_status,
               (SELECT r.created_at FROM {RECORDS} r
                 WHERE r.instance_id = a.instance_id AND r.status = '{SUCCEEDED}' AND r.created_at IS NOT NULL
                 ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS last_success_at
          FROM ({{affected}}) AS a
          LEFT JOIN LATERAL (
            SELECT r.created_at, r.status FROM {RECORDS} r
             WHERE r.instance_id = a.instance_id AND r.created_at IS NOT NULL
             ORDER BY r.created_at DESC, r.id DESC LIMIT 1
          ) AS newest ON true
      ) AS s
     WHERE i.id = s.instance_id
       AND (i.last_backup_at IS DISTINCT FROM s.last_backup_at
            OR i.last_backup_status IS DISTINCT FROM s.last_backup_status
            OR i.last_success_at IS DISTINCT FROM s.last_success_at);
"""

# Add {deltas} (rows of hour, status, instance_id, n) to the hourly counts, in
# key order so that two transactions lock the rows they share in one order.
# Only additions create rows: a subtraction from a row that is not there
# (the counts were emptied while records stayed, as a test's flush does)
# leaves nothing behind rather than a negative count.
_PG_ADD = f"""
    INSERT INTO {COUNTS} (hour, status, region, project_id, records)
    SELECT d.hour, d.status, i.region, i.project_id, sum(d.n)
      FROM ({{deltas}}) AS d JOIN {INSTANCES} i ON i.id = d.instance_id
     GROUP BY 1, 2, 3, 4
    HAVING sum(d.n) > 0
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (hour, status, region, project_id)
    DO UPDATE SET records = {COUNTS}.records + excluded.records;
"""
_PG_SUBTRACT = f"""
    UPDATE {COUNTS} AS c SET records = c.records + s.n
      FROM (SELECT d.hour AS hour, d.status AS status, i.region AS region,
                   i.project_id AS project_id, sum(d.n) AS n
              FROM ({{deltas}}) AS d JOIN {INSTANCES} i ON i.id = d.instance_id
             GROUP BY 1, 2, 3, 4
            HAVING sum(d.n) < 0) AS s
     WHERE c.hour = s.hour AND c.status = s.status AND c.region = s.region AND c.project_id = s.project_id;
"""

_PG_ROWS = "SELECT {hour} AS hour, {t}.status, {t}.instance_id, {sign} AS n FROM {source}"
# An update matters to the summaries only when it moved a record's status,
# time or instance; the sync's last_seen refreshes do not. PostgreSQL allows
# no column list on a trigger with transition tables, so the function finds
# the moved rows itself, by one join of the old and new rows on the key.
_PG_MOVED = (
    "old_rows o JOIN new_rows n ON n.id = o.id "
    "WHERE o.status IS DISTINCT FROM n.status OR o.created_at IS DISTINCT FROM n.created_at "
    "OR o.instance_id IS DISTINCT FROM n.instance_id"
)


def _pg_rows(source: str, t: str, sign: int) -> str:
    return _PG_ROWS.format(hour=_PG_HOUR.format(t=t), t=t, sign=sign, source=source)


def _pg_function(name: str, statements: list[str], only_if: str = "") -> str:
    """A trigger function that runs each statement through EXECUTE.

    EXECUTE plans a statement afresh on each call, with the transition
    tables' real row counts. A statement of the function itself would be
    planned once and cached, with the counts of the first call: a plan made
    for one row (nested loops over the transition tables) then ran a sync's
    update of a few thousand rows in cubic time.

    ``only_if``: a query; when it returns no row, the function does nothing.
    It is counted, not asked with EXISTS: planned for its first row, an
    EXISTS over the two transition tables took a nested loop, which, when
    no row moved (a sync's last_seen refresh), finds so only after comparing
    every old row with every new one: a million comparisons, a quarter of a
    second, for an unchanged listing of 1,000 records. A count is planned
    for all its rows: one hash join.
    """
    body = "".join(f"EXECUTE $sql${statement.strip().rstrip(';')}$sql$;\n" for statement in statements)
    guard = ""
    if only_if:
        guard = f"EXECUTE $sql$SELECT count(*) = 0 FROM ({only_if}) AS moved$sql$ INTO idle;\n"
        guard += "IF idle THEN RETURN NULL; END IF;\n"
    return (
        f"CREATE OR REPLACE FUNCTION {TRIGGER_PREFIX}{name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"DECLARE idle boolean;\nBEGIN\n{guard}{body}RETURN NULL;\nEND;\n$$;"
    )


def _pg_statements() -> list[str]:
    inserted = _pg_function(
        "inserted",
        [
            _PG_INSTANCES.format(affected="SELECT DISTINCT instance_id FROM new_rows"),
            _PG_ADD.format(deltas=_pg_rows("new_rows r", "r", 1)),
        ],
    )
    deltas = f"{_pg_rows(_PG_MOVED, 'o', -1)} UNION ALL {_pg_rows(_PG_MOVED, 'n', 1)}"
    updated = _pg_function(
        "updated",
        [
            _PG_INSTANCES.format(
                affected=f"SELECT o.instance_id FROM {_PG_MOVED} UNION SELECT n.instance_id FROM {_PG_MOVED}"
            ),
            _PG_SUBTRACT.format(deltas=deltas),
            _PG_ADD.format(deltas=deltas),
        ],
        only_if=f"SELECT 1 FROM {_PG_MOVED}",
    )
    deleted = _pg_function(
        "deleted",
        [
            _PG_INSTANCES.format(affected="SELECT DISTINCT instance_id FROM old_rows"),
            _PG_SUBTRACT.format(deltas=_pg_rows("old_rows r", "r", -1)),
        ],
    )
    triggers = [
        ("inserted", "INSERT", "NEW TABLE AS new_rows"),
        ("updated", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("deleted", "DELETE", "OLD TABLE AS old_rows"),
    ]
    return [inserted, updated, deleted] + [
        f"CREATE TRIGGER {TRIGGER_PREFIX}{name} AFTER {event} ON {RECORDS} "
        f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER_PREFIX}{name}();"
        for name, event, tables in triggers
    ]


def _pg_drop() -> list[str]:
    names = ("inserted", "updated", "deleted")
    return [f"DROP TRIGGER IF EXISTS {TRIGGER_PREFIX}{name} ON {RECORDS};" for name in names] + [
        f"DROP FUNCTION IF EXISTS {TRIGGER_PREFIX}{name}();" for name in names
    ]


# --- SQLite -----------------------------------------------------------------------

# Django stores SQLite times as text, "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC.
_SQLITE_HOUR = "coalesce(strftime('%Y-%m-%d %H:00:00', {row}.created_at), '0001-01-01 00:00:00')"

# The summary columns of the instance {instance} (an SQL expression for its
# id): one template for the row triggers and for the rebuild of every instance.
_SQLITE_INSTANCE = f"""
    UPDATE {INSTANCES} SET
        last_backup_at = (SELECT created_at FROM {RECORDS} r
                           WHERE r.instance_id = {{instance}} AND r.created_at IS NOT NULL
                           ORDER BY r.created_at DESC, r.id DESC LIMIT 1),
        last_backup_status = coalesce((SELECT status FROM {RECORDS} r
                           WHERE r.instance_id = {{instance}} AND r.created_at IS NOT NULL
                           ORDER BY r.created_at DESC, r.id DESC LIMIT 1), ''),
        last_success_at = (SELECT created_at FROM {RECORDS} r
                            WHERE r.instance_id = {{instance}} AND r.status = '{SUCCEEDED}'
                              AND r.created_at IS NOT NULL
                            ORDER BY r.created_at DESC, r.id DESC LIMIT 1)
    {{where}};
"""

# "WHERE true" is not decoration: without a WHERE, SQLite reads ON CONFLICT as
# part of the SELECT's join.
_SQLITE_COUNT = f"""
    INSERT INTO {COUNTS} (hour, status, region, project_id, records)
    SELECT {{hour}}, {{row}}.status, region, project_id, 1 FROM {INSTANCES}
     WHERE id = {{row}}.instance_id AND {{counted}}
    ON CONFLICT (hour, status, region, project_id) DO UPDATE SET records = records + excluded.records;
"""


# A subtraction only updates a row that is there (see _PG_ADD).
_SQLITE_UNCOUNT = f"""
    UPDATE {COUNTS} SET records = records - 1
     WHERE hour = {{hour}} AND status = {{row}}.status
       AND (region, project_id) = (SELECT region, project_id FROM {INSTANCES} WHERE id = {{row}}.instance_id)
       AND {{counted}};
"""


# An inserted record changes its instance's summary only when it sorts at or
# after the newest record, or, succeeded, at or after the newest success
# (an equal time may still win on its id). A backfill inserts most records
# behind the newest (a listing is newest first), so this spares a recompute
# and a write of the instance's row per record. Only the insert can use it:
# an update or a delete may take away the newest row.
_SQLITE_MAY_BE_NEWEST = f"""
    AND NEW.created_at IS NOT NULL
    AND (last_backup_at IS NULL OR NEW.created_at >= last_backup_at
         OR (NEW.status = '{SUCCEEDED}' AND (last_success_at IS NULL OR NEW.created_at >= last_success_at)))
"""


def _sqlite_apply(row: str, sign: int, only_if: str = "", counted: str = "true") -> str:
    """The instance's summary recomputed (``only_if``), and the record counted in or out (``counted``)."""
    counting = _SQLITE_COUNT if sign > 0 else _SQLITE_UNCOUNT
    instance = f"{row}.instance_id"
    return _SQLITE_INSTANCE.format(
        instance=instance, where=f"WHERE id = {instance} {only_if}"
    ) + counting.format(hour=_SQLITE_HOUR.format(row=row), row=row, counted=counted)


def _sqlite_statements(batches: bool = True) -> list[str]:
    """The three row triggers; ``batches``: with the open batch's records left to it.

    A record the batch inserted is counted by the batch when it ends, as it
    is then: an update or a delete of it meanwhile counts nothing. Its
    instance is recomputed at the end only if the batch still has records
    of it, so an update or a delete still recomputes the instances it
    touches (a recompute reads the table as it is, batch or not: one made
    for another record may already have picked up a batch record that is
    then deleted). Only the insert trigger stands aside entirely. Without
    the batches' table (a database migrated back past it) there is no guard.
    """
    moved = (
        "OLD.status IS NOT NEW.status OR OLD.created_at IS NOT NEW.created_at "
        "OR OLD.instance_id IS NOT NEW.instance_id"
    )

    def unbatched(row: str) -> str:
        return f"NOT EXISTS (SELECT 1 FROM {BATCHES} WHERE {row}.id > after_id)" if batches else "true"

    old = unbatched("OLD")
    return [
        f"CREATE TRIGGER {TRIGGER_PREFIX}inserted AFTER INSERT ON {RECORDS} WHEN {unbatched('NEW')} "
        f"BEGIN {_sqlite_apply('NEW', 1, _SQLITE_MAY_BE_NEWEST)} END;",
        f"CREATE TRIGGER {TRIGGER_PREFIX}updated AFTER UPDATE OF status, created_at, instance_id "
        f"ON {RECORDS} WHEN {moved} "
        f"BEGIN {_sqlite_apply('OLD', -1, counted=old)} {_sqlite_apply('NEW', 1, counted=old)} END;",
        f"CREATE TRIGGER {TRIGGER_PREFIX}deleted AFTER DELETE ON {RECORDS} "
        f"BEGIN {_sqlite_apply('OLD', -1, counted=old)} END;",
    ]


def _sqlite_drop() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {TRIGGER_PREFIX}{name};" for name in ("inserted", "updated", "deleted")]


# --- Installing, suspending, rebuilding ---------------------------------------------


def _run(statements: list[str], using=None) -> None:
    conn = connection if using is None else using
    with conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def _vendor(conn) -> str:
    if conn.vendor not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"backup summaries need PostgreSQL or SQLite, not {conn.vendor}")
    return conn.vendor


def install_triggers(conn=None) -> None:
    """Create (or re-create) the triggers; idempotent."""
    conn = conn or connection
    if _vendor(conn) == "postgresql":
        _run(_pg_drop() + _pg_statements(), conn)
    else:
        batches = BATCHES in conn.introspection.table_names()
        _run(_sqlite_drop() + _sqlite_statements(batches), conn)


def drop_triggers(conn=None) -> None:
    conn = conn or connection
    _run(_pg_drop() if _vendor(conn) == "postgresql" else _sqlite_drop(), conn)


def triggers_installed(conn=None) -> bool:
    conn = conn or connection
    with conn.cursor() as cursor:
        if _vendor(conn) == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE %s AND NOT tgisinternal",
                [TRIGGER_PREFIX + "%"],
            )
        else:
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                [TRIGGER_PREFIX + "%"],
            )
        return cursor.fetchone()[0] == 3


_PG_REBUILD_COUNTS = f"""
    INSERT INTO {COUNTS} (hour, status, region, project_id, records)
    SELECT {_PG_HOUR.format(t="r")}, r.status, i.region, i.project_id, count(*)
      FROM {RECORDS} r JOIN {INSTANCES} i ON i.id = r.instance_id
     GROUP BY 1, 2, 3, 4
"""
# Add the records that match {where} (of r, the records) to the hourly
# counts, grouped: the rebuild (every record, into emptied counts) and a
# batch's end (its records) alike.
_SQLITE_COUNT_RECORDS = f"""
    INSERT INTO {COUNTS} (hour, status, region, project_id, records)
    SELECT {_SQLITE_HOUR.format(row="r")}, r.status, i.region, i.project_id, count(*)
      FROM {RECORDS} r JOIN {INSTANCES} i ON i.id = r.instance_id
     WHERE {{where}}
     GROUP BY 1, 2, 3, 4
    ON CONFLICT (hour, status, region, project_id) DO UPDATE SET records = records + excluded.records;
"""
_SQLITE_REBUILD_COUNTS = _SQLITE_COUNT_RECORDS.format(where="true")
_SQLITE_REBUILD_INSTANCES = _SQLITE_INSTANCE.format(instance=f"{INSTANCES}.id", where="")

# The records of the open batch: those with ids above its bound. New ids on
# SQLite are above every id there was (AUTOINCREMENT), and no other writer
# can insert meanwhile: the batch holds the write lock from its first statement.
_BATCH_RECORDS = f"r.id > (SELECT after_id FROM {BATCHES})"
_SQLITE_OPEN_BATCH = f"INSERT INTO {BATCHES} (after_id) SELECT coalesce(max(id), 0) FROM {RECORDS}"
_SQLITE_BATCH_COUNTS = _SQLITE_COUNT_RECORDS.format(where=_BATCH_RECORDS)
_SQLITE_BATCH_INSTANCES = _SQLITE_INSTANCE.format(
    instance=f"{INSTANCES}.id",
    where=f"WHERE id IN (SELECT r.instance_id FROM {RECORDS} r WHERE {_BATCH_RECORDS})",
)
# Fewer rows than this are cheaper row by row than with a batch's four statements.
BATCH_MIN_ROWS = 16
_BATCH_OPEN = "backups_summary_batch_open"


@contextmanager
def batched(rows: int, conn=None) -> Iterator[None]:
    """SQLite: the records inserted in this block summarised at its end, in two grouped statements.

    For a bulk insert of ``rows`` records: below ``BATCH_MIN_ROWS``, and on
    PostgreSQL (whose triggers summarise per statement), it does nothing.
    The block is atomic without a savepoint of its own: an error in it
    leaves the whole transaction to roll back, records and batch row
    together, never a batch row to commit or to write on with. Inserts wait
    for the batch: a record it inserted is counted as it is at the end,
    whatever was done to it meanwhile; updates and deletes still recompute
    the instances they touch, and count what they change of the other
    records (``_sqlite_statements``). A batch inside a batch is the outer one.
    """
    conn = conn or connection
    if conn.vendor != "sqlite" or rows < BATCH_MIN_ROWS or getattr(conn, _BATCH_OPEN, False):
        yield
        return
    with transaction.atomic(using=conn.alias, savepoint=False):
        _run([_SQLITE_OPEN_BATCH], conn)
        setattr(conn, _BATCH_OPEN, True)
        try:
            yield
        finally:
            setattr(conn, _BATCH_OPEN, False)
        _run([_SQLITE_BATCH_COUNTS, _SQLITE_BATCH_INSTANCES, f"DELETE FROM {BATCHES}"], conn)


def rebuild_summaries(conn=None) -> None:
    """Recompute every summary from the records, in one transaction.

    On PostgreSQL the counts table is locked first, so a sync that writes
    meanwhile waits and then adds its delta to the rebuilt counts rather
    than to counts the rebuild is about to replace.
    """
    conn = conn or connection
    with transaction.atomic(using=conn.alias):
        if _vendor(conn) == "postgresql":
            _run(
                [
                    f"LOCK TABLE {COUNTS} IN EXCLUSIVE MODE;",
                    f"DELETE FROM {COUNTS};",
                    _PG_REBUILD_COUNTS,
                    _PG_INSTANCES.format(affected=f"SELECT id AS instance_id FROM {INSTANCES}"),
                ],
                conn,
            )
        else:
            _run([f"DELETE FROM {COUNTS};", _SQLITE_REBUILD_COUNTS, _SQLITE_REBUILD_INSTANCES], conn)


@contextmanager
def suspended(conn=None) -> Iterator[None]:
    """Bulk loads without the triggers, then one rebuild (``seed_bench``).

    Nothing else should write records meanwhile: its changes would be
    counted by the rebuild, but a delete of a row loaded here would not be
    missed either, as the rebuild reads what is there at the end.
    """
    conn = conn or connection
    drop_triggers(conn)
    try:
        yield
    finally:
        install_triggers(conn)
        rebuild_summaries(conn)


__all__ = [
    "batched",
    "drop_triggers",
    "install_triggers",
    "rebuild_summaries",
    "suspended",
    "triggers_installed",
]
