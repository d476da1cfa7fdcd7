"""``manage.py seed_bench``: a large, deterministic data set for the benchmark.

    manage.py seed_bench --records 2000000 --instances 2000 [--seed 1] [--replace]

The instances are the simulator's fleet (``backups.simulator.fleet``), stored
as a sync would store them. Their backup history is generated here rather
than by the simulator's history: rendering and parsing two million API records
one by one would take minutes, and the point is a big table, fast. Each backup
is about two years of automatic backups at the instance's own hour (more than
one a day when an instance is given more records than days), some manual ones,
5 % failures with their ``dcs.08.*`` codes, and a few waiting or running
right now. Records older than the cloud keeps them (10 days automatic, 42
manual) are marked gone, as our syncs would have marked them. A finished full
fleet sync at ``--now`` is recorded too, as the one that brought the data: a
dashboard holding two years of a fleet has synced it, and its overview reads
the last fleet run (one that never synced costs the overview a query more).

Rows go in through the driver, not the ORM: ``executemany`` in large
transactions on SQLite, ``COPY`` on PostgreSQL. The same seed and ``--now``
give the same rows.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from queue import Empty, Queue

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from tqdm import tqdm

from backups.choices import SyncOutcome
from backups.dcs.records import BackupRecordData, parse_instance
from backups.models import BackupRecord, BackupStatusChange, DcsInstance, SyncKind, SyncRun, SyncTrigger
from backups.simulator.fleet import (
    MS_PER_DAY,
    MS_PER_HOUR,
    MS_PER_SECOND,
    SimInstance,
    build_fleet,
    instance_payload,
    seeded_random,
)
from backups.simulator.history import (
    AUTO_VANISHES_AFTER_MS,
    BACKUP_NAME_OFFSET,
    BUSY_ERROR,
    MANUAL_VANISHES_AFTER_MS,
)

# What the command's errors exit with, as argparse does for a bad flag.
EXIT_USAGE = 2
DEFAULT_REGIONS = ("cn-north-4", "ap-southeast-1", "eu-west-101")
HISTORY_DAYS = 730
MANUAL_SHARE = 0.07
AUTO_FAILURE_RATE = 0.05
NOT_RUNNING_FAILURE_RATE = 0.3
MANUAL_FAILURE_RATE = 0.07
MANUAL_DELETED_RATE = 0.12
# Share of gone automatic backups that a sync saw "expired" before they vanished.
EXPIRED_SHARE = 0.25
GONE_INSTANCE_SHARE = 0.01
# Rows per transaction (SQLite) or per COPY chunk written (PostgreSQL).
BATCH_ROWS = 20_000
_OTHER_AUTO_ERRORS = ("dcs.08.0002", "dcs.08.0001", "dcs.08.0006")
_MANUAL_ERRORS = ("dcs.08.0001", "dcs.08.0002", "dcs.08.0003", "dcs.08.0004", "dcs.08.0005", "dcs.08.0006")
_REMARKS = ("before release 2.14", "升级前备份", "pre-migration snapshot", "", "", "ticket OPS-4471")

# The model fields written, in the order of every generated row: what a sync
# copies from the API record, then what only our syncs know.
RECORD_FIELDS = (
    "instance",
    "backup_id",
    *BackupRecordData.MODEL_FIELDS,
    "first_seen",
    "last_seen",
    "gone_at",
)


def _positive(flag: str, value: int, maximum: int) -> int:
    if value < 1 or value > maximum:
        raise CommandError(f"{flag} must be between 1 and {maximum:,}, got {value}", returncode=EXIT_USAGE)
    return value


def _regions(text: str) -> tuple[str, ...]:
    regions = tuple(part.strip() for part in text.split(",") if part.strip())
    if not regions:
        raise CommandError("--regions needs at least one region, e.g. cn-north-4", returncode=EXIT_USAGE)
    if len(set(regions)) != len(regions):
        raise CommandError(f"--regions names a region twice: {text}", returncode=EXIT_USAGE)
    for region in regions:
        if len(region) > 64 or not all(c.isalnum() or c == "-" for c in region):
            raise CommandError(f"--regions: {region!r} is not a region name", returncode=EXIT_USAGE)
    return regions


def _parse_now(text: str | None) -> datetime:
    if not text:
        # Whole seconds, so two runs in the same second make the same rows.
        return datetime.now(UTC).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--now must be an ISO 8601 time, got {text!r}", returncode=EXIT_USAGE) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def bench_projects(seed: int, regions: tuple[str, ...]) -> dict[str, str]:
    """{project id: region}: one project per region, named by the seed."""
    return {uuid.UUID(int=seeded_random(seed, "bench-project", r).getrandbits(128)).hex: r for r in regions}


def record_counts(backupable: list[int], total: int, seed: int) -> dict[int, int]:
    """How many records each backupable instance gets: uneven, adding up to ``total``."""
    rng = seeded_random(seed, "bench-counts")
    weights = [rng.uniform(0.3, 1.7) for _ in backupable]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    # The remainder goes one each to the first instances, so the sum is exact.
    for i in range(total - sum(counts)):
        counts[i % len(counts)] += 1
    return dict(zip(backupable, counts, strict=True))


class _Clock:
    """Epoch milliseconds as the database stores them and as the API writes them.

    Formatting through datetime would cost more than generating the rest of
    a row, so an hour's prefix is made once and the minutes and seconds are
    appended. SQLite compares times as text, so its form is Django's exactly:
    ``2025-03-01 12:00:00.166000``, the fraction only when there is one.
    PostgreSQL reads the API's ISO 8601 form as it is.
    """

    def __init__(self, *, sqlite: bool) -> None:
        self._hours: dict[int, tuple[str, str, str]] = {}
        self._sqlite = sqlite

    def _prefixes(self, hour: int) -> tuple[str, str, str]:
        moment = datetime.fromtimestamp(hour * 3600, UTC)
        local = moment + BACKUP_NAME_OFFSET
        found = self._hours[hour] = (
            moment.strftime("%Y-%m-%d %H:"),
            moment.strftime("%Y-%m-%dT%H:"),
            local.strftime("backup_%Y%m%d%H"),
        )
        return found

    def stamp(self, ms: int) -> tuple[str, str]:
        """(database text, API text)."""
        hour, rest = divmod(ms, MS_PER_HOUR)
        prefixes = self._hours.get(hour) or self._prefixes(hour)
        minute, rest = divmod(rest, 60_000)
        second, milli = divmod(rest, 1000)
        # Table look-ups: a format spec such as {:02d} costs more than all the rest.
        clock = f"{_TWO[minute]}:{_TWO[second]}"
        api = f"{prefixes[1]}{clock}.{_THREE[milli]}Z"
        if not self._sqlite:
            return api, api
        if milli:
            return f"{prefixes[0]}{clock}.{_THREE[milli]}000", api
        return prefixes[0] + clock, api

    def db(self, ms: int | None) -> str | None:
        return None if ms is None else self.stamp(ms)[0]

    def backup_name(self, ms: int) -> str:
        """The API's name of a backup: its creation in UTC+8 (dcs-api.md §7.5)."""
        hour, rest = divmod(ms, MS_PER_HOUR)
        prefixes = self._hours.get(hour) or self._prefixes(hour)
        minute, rest = divmod(rest, 60_000)
        return f"{prefixes[2]}{_TWO[minute]}{_TWO[rest // 1000]}"


_TWO = [f"{n:02d}" for n in range(100)]
_THREE = [f"{n:03d}" for n in range(1000)]


def _uuid4(rng: random.Random) -> str:
    text = f"{rng.getrandbits(128):032x}"
    # Version 4, variant 10xx, as uuid4() would have it.
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{'89ab'[int(text[16], 16) & 3]}{text[17:20]}-{text[20:]}"


def generate_records(
    sim: SimInstance,
    pk: int,
    count: int,
    *,
    seed: int,
    now_ms: int,
    gone_ms: int | None,
    clock: _Clock,
    history_days: int = HISTORY_DAYS,
) -> Iterator[tuple]:
    """``count`` rows of one instance in RECORD_FIELDS order, each value as the database takes it.

    The automatic backups come a whole number of times a day, as few as fit
    them into the ``history_days`` before now: they go back at most that far.
    """
    rng = seeded_random(seed, "bench-records", sim.instance_id)
    manual = round(count * MANUAL_SHARE * rng.uniform(0.5, 1.5)) if count > 1 else 0
    auto = count - manual
    per_day = max(1, math.ceil(auto / history_days))
    interval = MS_PER_DAY // per_day
    # The newest automatic slot at or before now, on the instance's backup hour.
    first = (now_ms // MS_PER_DAY) * MS_PER_DAY + sim.backup_hour * MS_PER_HOUR
    first -= ((first - now_ms) // interval + 1) * interval if first > now_ms else 0
    span = max(auto, 1) * interval
    failure_rate = AUTO_FAILURE_RATE if sim.status == "RUNNING" else NOT_RUNNING_FAILURE_RATE
    stamp, db = clock.stamp, clock.db
    sqlite = clock._sqlite
    random_ = rng.random
    randrange = rng.randrange
    sync_lag = 5 * 60 * MS_PER_SECOND
    hour = sim.backup_hour
    auto_period = f"{hour:02d}:00-{(hour + 1) % 24:02d}:00"
    other_format = "aof" if sim.engine == "Redis" else "rdb"
    instance_id = sim.instance_id
    # data_bytes_at() without its exp() per row: the fill curve, then noise.
    capacity = sim.capacity_mb * 1024 * 1024 * sim.compression
    now_db = db(now_ms)
    for n in range(count):
        is_auto = n < auto
        if is_auto:
            created = first - n * interval + randrange(360_000)
            failed = random_() < failure_rate
            error = (BUSY_ERROR if random_() < 0.8 else rng.choice(_OTHER_AUTO_ERRORS)) if failed else ""
            period = auto_period
            remark = ""
            keep_ms = AUTO_VANISHES_AFTER_MS
        else:
            created = now_ms - randrange(span) - 60_000
            failed = random_() < MANUAL_FAILURE_RATE
            error = rng.choice(_MANUAL_ERRORS) if failed else ""
            period = ""
            remark = rng.choice(_REMARKS)
            keep_ms = MANUAL_VANISHES_AFTER_MS
        created = min(created, now_ms)
        backup_format = sim.preferred_format if random_() < 0.9 else other_format
        age_days = max(0.0, (created - sim.created_ms) / MS_PER_DAY)
        fill = sim.fill_max - (sim.fill_max - sim.fill_start) * math.exp(-age_days / sim.fill_tau_days)
        size = max(1024, int(fill * capacity * (0.97 + 0.06 * random_())))
        execution = created + 3_000 + randrange(37_000)
        if error == BUSY_ERROR:
            run_ms = 1000 + randrange(4000)
        else:
            run_ms = int(max(30.0, 60.0 * size / 2**30) * (800 + 500 * random_()))
        finished = execution + run_ms
        age = now_ms - created
        gone = gone_ms if gone_ms is not None else (created + keep_ms if age >= keep_ms else None)
        updated: int | None = finished
        execution_at: int | None = execution
        size_shown: int | None = size
        if now_ms < execution:
            status, progress, updated, execution_at, size_shown = "waiting", "0.00", None, None, 0
        elif now_ms < finished:
            status, updated, size_shown = "backuping", None, 0
            progress = f"{math.floor(10000 * (now_ms - execution) / run_ms) / 100:.2f}"
        elif failed:
            status = "failed"
            progress = f"{5 + 90 * random_() if error != BUSY_ERROR else 0:.2f}"
            size_shown = 0 if random_() < 0.5 else None
        else:
            status, progress = "succeed", "100.00"
            if gone is not None and is_auto and random_() < EXPIRED_SHARE:
                status = "expired"
            elif not is_auto and random_() < MANUAL_DELETED_RATE:
                status = "deleted"
        restorable = status == "succeed"
        backup_id = _uuid4(rng)
        created_db, created_api = stamp(created)
        updated_db, updated_api = stamp(updated) if updated is not None else (None, None)
        execution_db, execution_api = stamp(execution_at) if execution_at is not None else (None, None)
        first_seen = min(created + sync_lag, now_ms)
        name = clock.backup_name(created)
        backup_type = "auto" if is_auto else "manual"
        # The API record as JSON, written out here: json.dumps of a dict per
        # row was the largest single cost. Every value is a JSON literal made
        # here (numbers, null, quoted ids and times) or a pre-encoded remark.
        period_json = '"' + period + '"' if period else "null"
        updated_json = '"' + updated_api + '"' if updated_api else "null"
        execution_json = '"' + execution_api + '"' if execution_api else "null"
        error_json = '"' + error + '"' if error else "null"
        raw = (
            f'{{"backup_id": "{backup_id}", "period": {period_json}, '
            f'"backup_name": "{name}", "instance_id": "{instance_id}", '
            f'"size": {"null" if size_shown is None else size_shown}, "backup_type": "{backup_type}", '
            f'"created_at": "{created_api}", "updated_at": {updated_json}, '
            f'"progress": "{progress}", "error_code": {error_json}, '
            f'"remark": {_REMARK_JSON[remark]}, "status": "{status}", '
            f'"is_support_restore": "{"TRUE" if restorable else "FALSE"}", '
            f'"backup_format": "{backup_format}", "execution_at": {execution_json}}}'
        )
        yield (
            pk,
            backup_id,
            name,
            backup_type,
            status,
            backup_format,
            period,
            size_shown,
            progress,
            error,
            remark,
            int(restorable) if sqlite else restorable,
            created_db,
            updated_db,
            execution_db,
            raw,
            stamp(first_seen)[0],
            now_db if gone is None else stamp(max(first_seen, gone - sync_lag))[0],
            None if gone is None else stamp(gone)[0],
        )


# Django writes JSON with ensure_ascii; the template takes the remarks so.
_REMARK_JSON = {remark: json.dumps(remark) for remark in _REMARKS}


def _copy_text(value) -> str:
    r"""A value in COPY's text format: \N for NULL, booleans as t/f, and the four escapes."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


@contextlib.contextmanager
def secondary_indexes_dropped(stdout) -> Iterator[None]:
    """The records table without the indexes no constraint needs, made again at the end.

    Updating eight indexes at random places row by row is what makes a load
    slow; building each from the finished table is one sort. They are
    recreated from their own definitions, whatever happens in between (a
    process killed outright would leave them missing: ``seed_bench`` is for
    benchmark databases).
    """
    table = BackupRecord._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i "
                "WHERE i.tablename = %s AND i.schemaname = current_schema() AND NOT EXISTS ("
                "  SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.indexname))::regclass)",
                [table],
            )
        else:
            # Without sql: the indexes of the primary key and UNIQUE constraints.
            cursor.execute(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL",
                [table],
            )
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    try:
        yield
    finally:
        started = time.monotonic()
        with connection.cursor() as cursor:
            postgres = connection.vendor == "postgresql"
            if postgres:
                # Within a transaction (a test's), the deferred foreign-key
                # checks of the loaded rows must run before an index is built.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for _name, definition in indexes:
                cursor.execute(definition)
            if postgres:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        stdout.write(f"Built {len(indexes)} indexes in {time.monotonic() - started:.1f} s")


def summaries_module():
    """``backups.summaries`` (the triggers and their rebuild), or None where it does not exist."""
    try:
        return importlib.import_module("backups.summaries")
    except ImportError:
        return None


class Command(BaseCommand):
    help = (
        "Fill the database with a deterministic benchmark data set: DCS instances and their backup "
        "records. Refuses a database that already has backup records unless --replace is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--records", type=int, default=2_000_000, help="backup records (default 2,000,000)"
        )
        parser.add_argument("--instances", type=int, default=2000, help="DCS instances (default 2,000)")
        parser.add_argument("--seed", type=int, default=1, help="the data follows from it (default 1)")
        parser.add_argument(
            "--regions",
            default=",".join(DEFAULT_REGIONS),
            help=f"comma-separated regions, one project each (default {','.join(DEFAULT_REGIONS)})",
        )
        parser.add_argument(
            "--now", help="the moment the data set ends, ISO 8601 UTC (default: now); same --now, same rows"
        )
        parser.add_argument(
            "--replace", action="store_true", help="delete every instance and backup record first"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options):
        records = _positive("--records", options["records"], 100_000_000)
        instances = _positive("--instances", options["instances"], 100_000)
        if instances > records:
            raise CommandError(
                f"--instances ({instances:,}) cannot be more than --records ({records:,})",
                returncode=EXIT_USAGE,
            )
        seed = options["seed"]
        regions = _regions(options["regions"])
        now = _parse_now(options.get("now"))
        fleet = build_fleet(bench_projects(seed, regions), instances, seed)
        backupable = [sim.index for sim in fleet if sim.backupable]
        if not backupable:
            raise CommandError("none of these instances takes backups: ask for more", returncode=EXIT_USAGE)
        if BackupRecord.objects.exists() and not options["replace"]:
            raise CommandError(
                f"the database already has {BackupRecord.objects.count():,} backup records; "
                "seed_bench only fills an empty one. Add --replace to delete them and seed anew.",
                returncode=EXIT_USAGE,
            )

        started = time.monotonic()
        summaries = summaries_module()
        suspended = getattr(summaries, "suspended", None)
        # The summary triggers are off while rows are deleted and loaded, and
        # the summaries rebuilt once at the end (suspended() does both).
        with suspended() if suspended else contextlib.nullcontext():
            with secondary_indexes_dropped(self.stdout):
                if options["replace"]:
                    self._step("Deleted the old data", self._clear)
                pks = self._store_instances(fleet, now, seed)
                load_started = time.monotonic()
                with tqdm(
                    total=records,
                    unit="rows",
                    unit_scale=True,
                    desc="Backup records",
                    file=sys.stderr,
                    disable=options["no_progress"],
                ) as bar:
                    rows = self._rows(
                        fleet, pks, record_counts(backupable, records, seed), seed=seed, now=now
                    )
                    if connection.vendor == "postgresql":
                        self._copy(rows, bar)
                    else:
                        self._executemany(rows, bar)
            loaded = time.monotonic() - load_started
            self.stdout.write(
                f"Loaded {records:,} backup records in {loaded:.1f} s ({records / loaded:,.0f} rows/s)"
            )
            # Statistics before the rebuild, so its queries are planned on
            # what the tables hold now.
            self._step("Analyzed", self._analyze)
            rebuilding = time.monotonic()
        self._record_sync(instances=len(fleet), records=records, now=now)
        if suspended:
            self.stdout.write(f"Rebuilt the summaries in {time.monotonic() - rebuilding:.1f} s")
        elif getattr(summaries, "rebuild_summaries", None):
            self._step("Rebuilt the summaries", summaries.rebuild_summaries)
        total = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {instances:,} instances and {records:,} backup records in {total:.1f} s "
                f"(seed {seed}, --now {now:%Y-%m-%dT%H:%M:%SZ})"
            )
        )

    def _record_sync(self, *, instances: int, records: int, now: datetime) -> None:
        SyncRun.objects.create(
            scope=SyncRun.FLEET_SCOPE,
            kind=SyncKind.FULL,
            trigger=SyncTrigger.COMMAND,
            reason="seed_bench: the data set's own sync",
            started_at=now,
            planned_at=now,
            finished_at=now,
            outcome=SyncOutcome.SUCCEEDED,
            instances_seen=instances,
            records_new=records,
        )

    def _step(self, done: str, action) -> None:
        started = time.monotonic()
        action()
        self.stdout.write(f"{done} in {time.monotonic() - started:.1f} s")

    def _rows(self, fleet: list[SimInstance], pks: dict, counts: dict, *, seed: int, now: datetime):
        clock = _Clock(sqlite=connection.vendor != "postgresql")
        now_ms = int(now.timestamp() * MS_PER_SECOND)
        for sim in fleet:
            if sim.index not in counts:
                continue
            pk, gone_at = pks[sim.index]
            yield from generate_records(
                sim,
                pk,
                counts[sim.index],
                seed=seed,
                now_ms=now_ms,
                gone_ms=int(gone_at.timestamp() * MS_PER_SECOND) if gone_at else None,
                clock=clock,
            )

    def _analyze(self) -> None:
        with connection.cursor() as cursor:
            # VACUUM on PostgreSQL also sets the visibility map, so index-only
            # scans work from the start rather than after autovacuum's visit.
            # It cannot run inside a transaction (a test's), where ANALYZE does.
            vacuum = connection.vendor == "postgresql" and not connection.in_atomic_block
            cursor.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")

    def _clear(self) -> None:
        """Every record and instance goes; the sync history that names instances loses the link."""
        tables = [BackupStatusChange._meta.db_table, BackupRecord._meta.db_table]
        with transaction.atomic(), connection.cursor() as cursor:
            for table in tables:
                # Raw DELETE: the ORM would fetch two million rows to cascade.
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")  # noqa: S608 - our own names
            DcsInstance.objects.all().delete()

    def _store_instances(self, fleet: list[SimInstance], now: datetime, seed: int) -> dict:
        """The fleet as a full sync stores it; returns {index: (pk, gone_at)}."""
        rng = seeded_random(seed, "bench-gone")
        gone = set(rng.sample(range(len(fleet)), round(len(fleet) * GONE_INSTANCE_SHARE)))
        now_ms = int(now.timestamp() * MS_PER_SECOND)
        rows = []
        for sim in fleet:
            data = parse_instance(instance_payload(sim, now_ms))
            gone_at = now - timedelta(days=rng.randrange(11, 300)) if sim.index in gone else None
            rows.append(
                DcsInstance(
                    region=sim.region,
                    project_id=sim.project_id,
                    instance_id=data.instance_id,
                    first_seen=now - timedelta(days=HISTORY_DAYS + 30),
                    last_seen=gone_at or now,
                    gone_at=gone_at,
                    backups_synced_at=None if gone_at else now,
                    backups_checked_at=None if gone_at else now,
                    **data.model_values(),
                )
            )
        DcsInstance.objects.bulk_create(rows, batch_size=500)
        by_id = dict(DcsInstance.objects.values_list("instance_id", "pk"))
        return {
            sim.index: (by_id[sim.instance_id], row.gone_at) for sim, row in zip(fleet, rows, strict=True)
        }

    def _columns(self) -> list[str]:
        return [connection.ops.quote_name(BackupRecord._meta.get_field(f).column) for f in RECORD_FIELDS]

    def _executemany(self, rows: Iterator[tuple], bar: tqdm) -> None:
        table = connection.ops.quote_name(BackupRecord._meta.db_table)
        columns = self._columns()
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
        connection.ensure_connection()
        raw = connection.connection
        # A bigger page cache than SQLite's 2 MB default: the eight indexes of
        # the records table are updated at random places, and each page miss
        # is a read. For this connection only.
        raw.execute("PRAGMA cache_size = -524288")
        for batch in prefetched(batched(rows, BATCH_ROWS)):
            # The driver's cursor: Django's would turn every '?' into '%s' and back.
            with transaction.atomic():
                raw.cursor().executemany(sql, batch)
            bar.update(len(batch))

    def _copy(self, rows: Iterator[tuple], bar: tqdm) -> None:
        table = connection.ops.quote_name(BackupRecord._meta.db_table)
        statement = f"COPY {table} ({', '.join(self._columns())}) FROM STDIN"

        def blocks() -> Iterator[tuple[int, str]]:
            for batch in batched(rows, BATCH_ROWS):
                yield len(batch), "".join("\t".join(map(_copy_text, row)) + "\n" for row in batch)

        with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for count, block in prefetched(blocks()):
                copy.write(block)
                bar.update(count)


def batched(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def prefetched(items: Iterator, depth: int = 3) -> Iterator:
    """``items``, made by a thread of their own a few steps ahead.

    The database drivers let go of the GIL while SQLite writes pages or the
    COPY data goes out, so the next batch is generated meanwhile: on two
    cores, close to twice as fast as one after the other.
    """
    done = object()
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put(item)
            queue.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put(exc)

    thread = threading.Thread(target=produce, name="seed-bench-rows", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Unblock a producer waiting on a full queue, so it sees stop.
        while thread.is_alive():
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)
