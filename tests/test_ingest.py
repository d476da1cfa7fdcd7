"""The sync's bulk writes: the same rows as the ORM path they replaced, in a handful of statements."""

from __future__ import annotations

import random
from datetime import timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection

from backups.anomalies import detect_anomalies
from backups.db import ValueList, bulk_insert, bulk_update
from backups.dcs.records import BackupRecordData, parse_backup_record
from backups.models import BackupRecord, BackupStatusChange, DcsInstance
from backups.sync.listings import StoredCounts, existing_rows, store_backups
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# Every column a sync writes or a trigger keeps, but the ids.
RECORD_COLUMNS = (
    "backup_id",
    *BackupRecordData.MODEL_FIELDS,
    "first_seen",
    "last_seen",
    "gone_at",
    "size_ratio",
    "duration_ratio",
    "anomaly",
)


# --- The ORM path, as it was (with today's change log): the reference the fast path must equal ---


def orm_store_backups(*, instance, records, now, windowed, complete) -> StoredCounts:
    """store_backups before the bulk writes: model instances through bulk_create, then detect_anomalies."""
    existing = existing_rows(instance.backups, "backup_id", list(records) if windowed else None)
    counts = StoredCounts()
    upserts, unchanged = [], []
    for ident, data in records.items():
        before = existing.get(ident)
        if before is not None and before.raw == data.raw and not before.gone:
            unchanged.append(before.pk)
            continue
        upserts.append(
            BackupRecord(
                instance=instance,
                backup_id=ident,
                first_seen=now,
                last_seen=now,
                gone_at=None,
                **data.model_values(),
            )
        )
    BackupRecord.objects.bulk_create(
        upserts,
        update_conflicts=True,
        unique_fields=["instance", "backup_id"],
        update_fields=[*BackupRecordData.MODEL_FIELDS, "last_seen", "gone_at"],
    )
    changes = []
    for row in upserts:
        before = existing.get(row.backup_id)
        if before is None:
            counts.new += 1
            continue
        counts.updated += 1
        if (before.status, before.progress) == (row.status, row.progress):
            continue
        # Its first change logs the state it was first seen in, too.
        if not BackupStatusChange.objects.filter(record_id=row.pk).exists():
            changes.append(
                BackupStatusChange(
                    record_id=row.pk,
                    observed_at=before.first_seen,
                    status=before.status,
                    progress=before.progress,
                )
            )
        changes.append(
            BackupStatusChange(record_id=row.pk, observed_at=now, status=row.status, progress=row.progress)
        )
    BackupStatusChange.objects.bulk_create(changes)
    if not windowed:
        BackupRecord.objects.filter(pk__in=unchanged).update(last_seen=now)
        if complete:
            vanished = [e.pk for ident, e in existing.items() if not e.gone and ident not in records]
            counts.gone = BackupRecord.objects.filter(pk__in=vanished).update(gone_at=now)
    detect_anomalies(instance=instance, records=[row.pk for row in upserts if row.status == "succeed"])
    return counts


def snapshot(instance: DcsInstance) -> tuple:
    """What is stored of an instance's backups, without ids: rows, status changes, summary."""
    instance.refresh_from_db()
    rows = list(instance.backups.order_by("backup_id").values_list(*RECORD_COLUMNS))
    changes = sorted(
        BackupStatusChange.objects.filter(record__instance=instance).values_list(
            "record__backup_id", "observed_at", "status", "progress"
        )
    )
    summary = (instance.last_backup_at, instance.last_backup_status, instance.last_success_at)
    return rows, changes, summary


# --- Listings ---------------------------------------------------------------------------


def api_record(rng: random.Random, n: int, created, **fields) -> dict:
    """One API record; about one in eight succeeded backups is far smaller or slower than usual."""
    status = rng.choices(("succeed", "failed", "backuping", "waiting"), (8, 1, 1, 1))[0]
    minutes = rng.choice((2, 2, 3, 3, 3, 4, 30))
    size = rng.choice((1000, 1010, 990, 1005, 995, 1002, 10, None))
    finished = created + minutes * MINUTE if status in ("succeed", "failed") else None
    record = {
        "backup_id": f"b-{n:05d}",
        "backup_name": f"backup_{n}",
        "backup_type": rng.choice(("auto", "manual")),
        "status": status,
        "backup_format": "rdb",
        "size": size if status == "succeed" else 0,
        "progress": "100.00" if status == "succeed" else f"{rng.randint(0, 99)}.50",
        "error_code": "dcs.08.0001" if status == "failed" else None,
        "remark": rng.choice(("", "升级前备份", 'a "quoted" \\ remark')),
        "is_support_restore": "TRUE" if status == "succeed" else "FALSE",
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "updated_at": finished.strftime("%Y-%m-%dT%H:%M:%SZ") if finished else None,
        "execution_at": None,
    }
    record.update(fields)
    return record


def parsed(raws: list[dict]) -> dict[str, BackupRecordData]:
    records = {}
    for raw in raws:
        data = parse_backup_record(raw, instance_id="inst")
        records.setdefault(data.backup_id, data)
    return records


def history(seed: int, count: int) -> list[dict]:
    """``count`` records an hour apart, newest first as the API lists them; some share a time."""
    rng = random.Random(seed)
    raws = []
    for n in range(count):
        # Every seventh shares the time of the one before: ties go by id.
        created = T0 + (n - n % 7 // 6) * HOUR
        raws.append(api_record(rng, n, created))
    return raws[::-1]


def scenario(seed: int) -> list[tuple[list[dict], bool, bool]]:
    """Listings of one instance in sync order: (raw records, windowed, complete)."""
    rng = random.Random(seed)
    first = history(seed, 60)
    # An incremental listing: new backups, two that finished since, late
    # ones older than most (they move the medians after them), some unchanged.
    newer = [api_record(rng, 100 + n, T0 + (70 + n) * HOUR) for n in range(5)]
    running = [raw for raw in first if raw["status"] in ("backuping", "waiting")][:2]
    finished = [{**raw, "status": "succeed", "progress": "100.00", "size": 1000} for raw in running]
    late = [
        api_record(rng, 200 + n, T0 + (20 + n) * HOUR + 30 * MINUTE, status="succeed", size=5)
        for n in range(6)
    ]
    incremental = [*newer, *finished, *late, *first[:10]]
    latest = {raw["backup_id"]: raw for raw in [*newer, *first, *late, *finished]}
    # A full listing: some vanished upstream, some succeeded backups expired.
    kept = [raw for raw in latest.values() if rng.random() > 0.1]
    relisted = [
        {**raw, "status": "expired"} if raw["status"] == "succeed" and rng.random() < 0.1 else raw
        for raw in kept
    ]
    # Then one that lists again what was gone, the same one again, and an
    # incremental one of what is unchanged.
    whole = list(latest.values())
    return [
        (first, False, True),
        (incremental, True, False),
        (relisted, False, True),
        (whole, False, True),
        (whole, False, True),
        (whole[:20], True, False),
    ]


# --- The fast path equals the ORM path ------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_stores_every_listing_as_the_orm_path_did(seed):
    fast, slow = make_instance(), make_instance()
    reached = set()
    for step, (raws, windowed, complete) in enumerate(scenario(seed)):
        now = T0 + timedelta(days=10 + step, microseconds=123456 * step)
        records = parsed(raws)
        counts = store_backups(instance=fast, records=records, now=now, windowed=windowed, complete=complete)
        expected = orm_store_backups(
            instance=slow, records=parsed(raws), now=now, windowed=windowed, complete=complete
        )
        assert counts == expected, f"step {step}"
        assert snapshot(fast) == snapshot(slow), f"step {step}"
        rows = snapshot(fast)[0]
        reached.update(
            name for name in ("gone_at", "anomaly") if any(row[RECORD_COLUMNS.index(name)] for row in rows)
        )
        reached.update(name for name in ("new", "updated", "gone") if getattr(counts, name))
        reached.update({"changes"} if snapshot(fast)[1] else set())
    # The scenario does reach what it is about.
    assert reached == {"gone_at", "anomaly", "new", "updated", "gone", "changes"}


def test_its_anomalies_equal_a_recompute_of_the_whole_instance():
    instance = make_instance()
    records = parsed(history(4, 80))
    store_backups(instance=instance, records=records, now=T0 + 10 * HOUR, windowed=False, complete=True)
    stored = snapshot(instance)[0]

    assert detect_anomalies(instance=instance) == 0
    assert snapshot(instance)[0] == stored


def test_a_late_backup_reevaluates_the_stored_ones_after_it():
    instance = make_instance()
    usual = [api_record(random.Random(n), n, T0 + n * HOUR, status="succeed", size=100) for n in range(6)]
    later = api_record(random.Random(9), 9, T0 + 20 * HOUR, status="succeed", size=100)
    store_backups(instance=instance, records=parsed([later, *usual]), now=T0, windowed=False, complete=True)
    assert instance.backups.get(backup_id=later["backup_id"]).size_ratio == 1.0
    # Older than `later`, listed only now: eight tiny ones make its median small.
    late = [
        api_record(random.Random(n), 20 + n, T0 + (10 + n) * HOUR, status="succeed", size=1) for n in range(8)
    ]

    store_backups(instance=instance, records=parsed(late), now=T0 + HOUR, windowed=True, complete=False)

    stored = instance.backups.get(backup_id=later["backup_id"])
    assert (stored.anomaly, stored.size_ratio) == ("size", 100.0)
    assert stored.last_seen == T0, "its ratios changed, nothing else"


# --- Statements ---------------------------------------------------------------------------------


def test_a_new_listing_is_a_few_statements_whatever_its_size(django_assert_num_queries):
    instance = make_instance()
    records = parsed(history(5, 300))
    store_backups(
        instance=make_instance(), records=parsed(history(6, 3)), now=T0, windowed=False, complete=True
    )

    # The stored rows, and the upsert: with no row stored, the anomaly
    # medians have no history to read. New records log no status change.
    # PostgreSQL also makes its staging table, once a connection (here each
    # time: a test's transaction never commits); its COPY is no query.
    # SQLite summarises the listing as one batch: its row, its two grouped
    # statements and the row gone again (backups.summaries.batched).
    with django_assert_num_queries(3 if connection.vendor == "postgresql" else 6):
        counts = store_backups(instance=instance, records=records, now=T0, windowed=False, complete=True)

    assert counts == StoredCounts(new=300)
    assert not BackupStatusChange.objects.filter(record__instance=instance).exists()


def test_a_status_change_logs_the_state_before_it_the_first_time():
    instance = make_instance()
    states = [("backuping", "10.00"), ("backuping", "60.00"), ("succeed", "100.00")]
    raw = api_record(random.Random(1), 1, T0, status="backuping", progress="10.00")
    store_backups(instance=instance, records=parsed([raw]), now=T0, windowed=False, complete=True)
    record = instance.backups.get()
    assert not record.status_changes.exists(), "first seen: its state is on the row itself"

    for step, (status, progress) in enumerate(states[1:], start=1):
        raw = {**raw, "status": status, "progress": progress}
        now = T0 + step * HOUR
        store_backups(instance=instance, records=parsed([raw]), now=now, windowed=False, complete=True)

    history = list(record.status_changes.values_list("observed_at", "status", "progress"))
    expected = [
        (T0 + step * HOUR, status, Decimal(progress)) for step, (status, progress) in enumerate(states)
    ]
    assert history == expected, "the first change brings the state first seen, at first_seen"


def test_an_unchanged_incremental_listing_writes_nothing(django_assert_num_queries):
    instance = make_instance()
    records = parsed(history(6, 50))
    store_backups(instance=instance, records=records, now=T0, windowed=False, complete=True)

    with django_assert_num_queries(1) as captured:
        counts = store_backups(
            instance=instance, records=parsed(history(6, 50)), now=T0 + HOUR, windowed=True, complete=True
        )

    assert counts == StoredCounts()
    assert captured.captured_queries[0]["sql"].lstrip().upper().startswith("SELECT")


def test_an_unchanged_full_listing_only_moves_last_seen(django_assert_num_queries):
    instance = make_instance()
    store_backups(instance=instance, records=parsed(history(7, 50)), now=T0, windowed=False, complete=True)

    with django_assert_num_queries(2):
        counts = store_backups(
            instance=instance, records=parsed(history(7, 50)), now=T0 + HOUR, windowed=False, complete=True
        )

    assert counts == StoredCounts()
    assert set(instance.backups.values_list("last_seen", flat=True)) == {T0 + HOUR}
    assert not BackupStatusChange.objects.filter(record__instance=instance, observed_at=T0 + HOUR).exists()


# --- backups.db ---------------------------------------------------------------------------------

VALUES = {
    "backup_name": "备份 'quoted' \\ \t tab",
    "backup_type": "auto",
    "status": "succeed",
    "backup_format": "rdb",
    "period": "",
    "size": 2**62,
    "progress": Decimal("37.50"),
    "error_code": "",
    "remark": "line\nbreak",
    "is_support_restore": None,
    "created_at": T0 + timedelta(microseconds=5),
    "updated_at": T0 + HOUR,
    # Another zone: stored as its UTC wall time, as the ORM stores it.
    "execution_at": (T0 + HOUR).astimezone(timezone(timedelta(hours=8))),
    "raw": {"backup_id": "x", "remark": "升级前备份", "nested": [1, None, {"a": True}]},
    "first_seen": T0,
    "last_seen": T0,
}


def stored_text(pk: int) -> tuple:
    """The row as the database has it, not as the ORM reads it back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT created_at, updated_at, raw, progress, is_support_restore FROM backups_backuprecord "
            "WHERE id = %s",
            [pk],
        )
        return cursor.fetchone()


def test_bulk_insert_stores_what_the_orm_stores():
    instance = make_instance()
    orm = BackupRecord.objects.create(instance=instance, backup_id="orm", **VALUES)

    bulk_insert(
        BackupRecord,
        fields=("instance", "backup_id", *VALUES),
        rows=[(instance.pk, "bulk", *VALUES.values())],
    )

    bulk = BackupRecord.objects.get(backup_id="bulk")
    columns = [*VALUES, "gone_at", "size_ratio", "duration_ratio", "anomaly", "size_key", "finished_key"]
    assert [getattr(bulk, name) for name in columns] == [getattr(orm, name) for name in columns]
    assert stored_text(bulk.pk) == stored_text(orm.pk)


def test_bulk_insert_updates_on_a_conflict_only_what_it_is_told():
    instance = make_instance()
    record = BackupRecord.objects.create(instance=instance, backup_id="same", **{**VALUES, "size": 1})
    values = {**VALUES, "size": 2, "backup_name": "after", "first_seen": T0 + HOUR, "last_seen": T0 + HOUR}

    bulk_insert(
        BackupRecord,
        fields=("instance", "backup_id", *values),
        rows=[(instance.pk, "same", *values.values())],
        unique_fields=("instance", "backup_id"),
        update_fields=("size", "last_seen"),
    )

    record.refresh_from_db()
    assert (record.size, record.backup_name, record.first_seen, record.last_seen) == (
        2,
        VALUES["backup_name"],
        T0,
        T0 + HOUR,
    )
    assert BackupRecord.objects.count() == 1


def test_bulk_insert_gives_new_rows_ids_in_the_order_of_its_rows():
    instance = make_instance()
    names = [f"r{n}" for n in (5, 1, 9, 3, 7, 2)]

    bulk_insert(
        BackupRecord,
        fields=("instance", "backup_id", *VALUES),
        rows=[(instance.pk, name, *VALUES.values()) for name in names],
    )

    assert list(instance.backups.order_by("pk").values_list("backup_id", flat=True)) == names


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's staging table")
@pytest.mark.django_db(transaction=True)
def test_postgresql_makes_its_staging_table_once_a_connection_and_again_after_a_rollback():
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    instance = make_instance()

    def insert(name: str) -> list[str]:
        with CaptureQueriesContext(connection) as captured, transaction.atomic():
            bulk_insert(
                BackupRecord,
                fields=("instance", "backup_id", *VALUES),
                rows=[(instance.pk, name, *VALUES.values())],
            )
        statements = [query["sql"].split()[0] for query in captured]
        return [word for word in statements if word not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]

    assert insert("first")[0] == "CREATE"
    assert insert("second") == ["WITH"], "one statement, once the table is made"
    connection.close()  # a new session has no temporary table
    with pytest.raises(RuntimeError), transaction.atomic():
        assert insert("third")[0] == "CREATE"
        raise RuntimeError  # and the rollback takes it away again
    assert insert("fourth")[0] == "CREATE"
    assert sorted(instance.backups.values_list("backup_id", flat=True)) == ["first", "fourth", "second"]


def test_bulk_update_writes_each_row_its_own_values():
    records = [make_record() for _ in range(3)]

    bulk_update(
        BackupRecord,
        fields=("size_ratio", "anomaly"),
        rows=[(records[0].pk, 0.5, "size"), (records[2].pk, None, "")],
    )

    stored = dict(BackupRecord.objects.values_list("pk", "size_ratio"))
    assert stored == {records[0].pk: 0.5, records[1].pk: None, records[2].pk: None}
    assert BackupRecord.objects.get(pk=records[0].pk).anomaly == "size"


def test_value_list_is_one_parameter_for_any_number_of_values(django_assert_num_queries):
    records = [make_record() for _ in range(3)]
    pk = BackupRecord._meta.pk
    ids = [records[0].pk, records[2].pk, *range(10**6, 10**6 + 5000)]

    with django_assert_num_queries(1):
        found = set(BackupRecord.objects.filter(pk__in=ValueList(ids, pk)).values_list("pk", flat=True))

    assert found == {records[0].pk, records[2].pk}
    assert not BackupRecord.objects.filter(pk__in=ValueList([], pk)).exists()
    key = BackupRecord._meta.get_field("backup_id")
    names = [records[1].backup_id, 'it\'s "odd" \\ 升级']
    assert list(BackupRecord.objects.filter(backup_id__in=ValueList(names, key))) == [records[1]]
