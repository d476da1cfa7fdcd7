"""The summaries kept by triggers: exact after any insert, update or delete, by any writer."""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Max
from django.db.transaction import TransactionManagementError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backups import summaries
from backups.models import BackupHourlyCount, BackupRecord, DcsInstance, SummaryBatch
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db

STATUSES = ("succeed", "failed", "waiting", "backuping", "expired")


def hour_of(value: datetime | None) -> datetime:
    if value is None:
        return BackupHourlyCount.NO_HOUR
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def expected_counts() -> Counter:
    counts = Counter()
    for record in BackupRecord.objects.select_related("instance"):
        key = (hour_of(record.created_at), record.status, record.instance.region, record.instance.project_id)
        counts[key] += 1
    return counts


def stored_counts() -> Counter:
    counts = Counter()
    for row in BackupHourlyCount.objects.all():
        if row.records:
            counts[(row.hour, row.status, row.region, row.project_id)] = row.records
    return counts


def expected_instance(instance: DcsInstance) -> tuple:
    dated = instance.backups.exclude(created_at=None).order_by("-created_at", "-id").first()
    success = instance.backups.filter(status="succeed").aggregate(at=Max("created_at"))["at"]
    return (dated.created_at if dated else None, dated.status if dated else "", success)


def stored_instance(instance: DcsInstance) -> tuple:
    instance.refresh_from_db()
    return (instance.last_backup_at, instance.last_backup_status, instance.last_success_at)


def assert_summaries_exact(*instances: DcsInstance) -> None:
    assert stored_counts() == expected_counts()
    for instance in instances:
        assert stored_instance(instance) == expected_instance(instance)


def test_it_has_its_triggers_after_migrating():
    assert summaries.triggers_installed()


def test_it_counts_a_new_record_in_its_hour():
    instance = make_instance(region="ap-southeast-1")
    make_record(instance, created_at=T0 + timedelta(minutes=5), status="failed")
    row = BackupHourlyCount.objects.get()
    assert (row.hour, row.status, row.region, row.project_id, row.records) == (
        T0,
        "failed",
        "ap-southeast-1",
        instance.project_id,
        1,
    )


def test_it_keeps_the_instances_last_backup_and_last_success():
    instance = make_instance()
    ok = make_record(instance, created_at=T0, status="succeed")
    make_record(instance, created_at=T0 + timedelta(hours=1), status="failed")
    instance.refresh_from_db()
    assert instance.last_backup_at == T0 + timedelta(hours=1)
    assert instance.last_backup_status == "failed"
    assert instance.last_success_at == T0
    ok.delete()
    instance.refresh_from_db()
    assert instance.last_success_at is None


def test_it_moves_a_count_when_a_sync_changes_a_status():
    instance = make_instance()
    record = make_record(instance, status="backuping")
    BackupRecord.objects.filter(pk=record.pk).update(status="succeed")
    assert_summaries_exact(instance)
    assert (
        stored_counts()[(hour_of(record.created_at), "backuping", instance.region, instance.project_id)] == 0
    )


def test_it_counts_records_without_a_time_apart():
    instance = make_instance()
    make_record(instance, created_at=None)
    assert BackupHourlyCount.objects.get().hour == BackupHourlyCount.NO_HOUR
    instance.refresh_from_db()
    assert instance.last_backup_at is None


def test_it_does_not_write_the_summaries_for_a_last_seen_refresh():
    instance = make_instance()
    make_record(instance)
    before = list(BackupHourlyCount.objects.values_list("pk", "records"))
    BackupRecord.objects.update(last_seen=T0 + timedelta(days=3))
    assert list(BackupHourlyCount.objects.values_list("pk", "records")) == before


def test_it_forgets_the_records_of_a_deleted_instance():
    keep, drop = make_instance(), make_instance()
    make_record(keep)
    make_record(drop)
    make_record(drop, status="failed")
    drop.delete()
    assert_summaries_exact(keep)
    assert sum(stored_counts().values()) == 1


def test_it_rebuilds_what_a_suspended_bulk_load_wrote():
    instance = make_instance()
    with summaries.suspended():
        assert not summaries.triggers_installed()
        for n in range(3):
            make_record(instance, created_at=T0 + timedelta(hours=n), status="succeed")
        assert not BackupHourlyCount.objects.exists()
    assert summaries.triggers_installed()
    assert_summaries_exact(instance)


def test_it_rebuilds_to_the_same_summaries_the_triggers_kept():
    instances = [make_instance(region=region) for region in ("cn-north-4", "cn-east-3")]
    for n in range(12):
        make_record(instances[n % 2], created_at=T0 + timedelta(minutes=37 * n), status=STATUSES[n % 5])
    kept = stored_counts()
    summaries.rebuild_summaries()
    assert stored_counts() == kept == expected_counts()


operations = st.lists(
    st.tuples(
        st.sampled_from(("insert", "update_status", "update_time", "delete", "bulk_update")),
        st.integers(min_value=0, max_value=2),  # which instance
        st.sampled_from(STATUSES),
        st.integers(min_value=-300, max_value=300),  # minutes from T0
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, batch=st.booleans(), before=st.integers(min_value=0, max_value=4))
def test_it_stays_exact_through_any_sequence_of_writes(ops, batch, before):
    """``batch``: all but the first ``before`` writes inside one batch (SQLite's statement-level summary)."""
    BackupRecord.objects.all().delete()
    BackupHourlyCount.objects.all().delete()
    DcsInstance.objects.all().delete()
    instances = [make_instance(region=f"region-{n % 2}") for n in range(3)]
    apply_writes(instances, ops[:before])
    with summaries.batched(summaries.BATCH_MIN_ROWS) if batch else contextlib.nullcontext():
        apply_writes(instances, ops[before:])
    assert not SummaryBatch.objects.exists()
    assert_summaries_exact(*instances)


def apply_writes(instances: list[DcsInstance], ops) -> None:
    for op, which, status, minutes in ops:
        instance = instances[which]
        at = T0 + timedelta(minutes=minutes)
        record = instance.backups.order_by("?").first()
        if op == "insert" or record is None:
            make_record(instance, created_at=at, status=status)
        elif op == "update_status":
            record.status = status
            record.save()
        elif op == "update_time":
            BackupRecord.objects.filter(pk=record.pk).update(created_at=at)
        elif op == "delete":
            record.delete()
        else:
            instance.backups.update(status=status)


def bulk_records(instance: DcsInstance, count: int, *, status: str = "succeed", prefix: str = "batch"):
    BackupRecord.objects.bulk_create(
        BackupRecord(
            instance=instance,
            backup_id=f"{prefix}-{n}",
            status=status,
            created_at=T0 + timedelta(minutes=7 * n),
            first_seen=T0,
            last_seen=T0,
        )
        for n in range(count)
    )


def test_a_batch_summarises_its_records_once_at_its_end():
    instance = make_instance()
    make_record(instance, created_at=T0 - timedelta(days=1), status="failed")
    rows = summaries.BATCH_MIN_ROWS
    with summaries.batched(rows):
        bulk_records(instance, rows)
        if connection.vendor == "sqlite":
            # The row trigger stood aside: nothing of the batch is counted yet.
            assert sum(stored_counts().values()) == 1
            assert SummaryBatch.objects.count() == 1
    assert not SummaryBatch.objects.exists()
    assert_summaries_exact(instance)
    instance.refresh_from_db()
    assert instance.last_backup_at == T0 + timedelta(minutes=7 * (rows - 1))


def test_a_batch_record_deleted_after_another_records_update_leaves_its_instance_exact():
    # Found by the property test: the update of a record outside the batch
    # recomputes its instance from the table, batch records included; one
    # of those deleted next, and none of the instance's left in the batch,
    # the batch's end does not recompute that instance: the delete must.
    instance = make_instance()
    kept = make_record(instance, created_at=T0, status="succeed", backup_id="kept")
    with summaries.batched(summaries.BATCH_MIN_ROWS):
        newer = make_record(instance, created_at=T0, status="succeed", backup_id="newer")
        BackupRecord.objects.filter(pk=kept.pk).update(status="failed")
        newer.delete()
    assert_summaries_exact(instance)
    assert stored_instance(instance) == (T0, "failed", None)


def test_a_batch_of_few_rows_is_summarised_row_by_row():
    instance = make_instance()
    with summaries.batched(summaries.BATCH_MIN_ROWS - 1):
        bulk_records(instance, 3)
        assert sum(stored_counts().values()) == 3
    assert not SummaryBatch.objects.exists()
    assert_summaries_exact(instance)


def test_a_batch_inside_a_batch_is_the_outer_one():
    instances = [make_instance(), make_instance()]
    with summaries.batched(100):
        bulk_records(instances[0], 20)
        with summaries.batched(100):
            bulk_records(instances[1], 20, status="failed")
        assert SummaryBatch.objects.count() == (1 if connection.vendor == "sqlite" else 0)
    assert_summaries_exact(*instances)


def test_a_batch_that_fails_leaves_no_batch_and_no_records_behind():
    instance = make_instance()
    make_record(instance, created_at=T0, status="succeed")
    with pytest.raises(RuntimeError), transaction.atomic(), summaries.batched(100):
        bulk_records(instance, 20)
        raise RuntimeError("the listing failed half-way")
    assert not SummaryBatch.objects.exists()
    assert instance.backups.count() == 1
    assert_summaries_exact(instance)
    # The next write is summarised by its row trigger again.
    make_record(instance, created_at=T0 + timedelta(hours=1), status="failed")
    assert_summaries_exact(instance)


def test_a_failed_batch_inside_a_transaction_cannot_be_written_on():
    # Without a savepoint of its own, the error dooms the whole transaction:
    # nothing can commit the batch's row or write on under it.
    instance = make_instance()
    with transaction.atomic():
        with pytest.raises(RuntimeError), summaries.batched(100):
            bulk_records(instance, 20)
            raise RuntimeError("the listing failed half-way")
        if connection.vendor == "sqlite":
            with pytest.raises(TransactionManagementError):
                make_record(instance)
        transaction.set_rollback(True)
    assert not SummaryBatch.objects.exists()
    assert_summaries_exact(instance)


def installed_trigger_sql() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
            [summaries.TRIGGER_PREFIX + "%"],
        )
        return [sql for (sql,) in cursor.fetchall()]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the batches are SQLite's")
def test_without_the_batches_table_the_triggers_have_no_guard(monkeypatch):
    # A database migrated back past the batches' table: a guard naming it
    # would fail every write of a record.
    assert all(summaries.BATCHES in sql for sql in installed_trigger_sql())
    tables = connection.introspection.table_names()
    monkeypatch.setattr(
        connection.introspection, "table_names", lambda *a, **k: [t for t in tables if t != summaries.BATCHES]
    )

    summaries.install_triggers()

    sqls = installed_trigger_sql()
    assert len(sqls) == 3 and not any(summaries.BATCHES in sql for sql in sqls)
    instance = make_instance()
    make_record(instance, created_at=T0, status="failed")
    assert_summaries_exact(instance)
    monkeypatch.undo()
    summaries.install_triggers()
    assert all(summaries.BATCHES in sql for sql in installed_trigger_sql())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement triggers are PostgreSQL's")
def test_it_summarises_a_bulk_upsert_in_one_pass_on_postgresql():
    instance = make_instance()
    rows = [
        BackupRecord(
            instance=instance,
            backup_id=f"bulk-{n}",
            status=STATUSES[n % 3],
            created_at=T0 + timedelta(minutes=n),
            first_seen=T0,
            last_seen=T0,
        )
        for n in range(600)
    ]
    BackupRecord.objects.bulk_create(rows, batch_size=500)
    for row in rows:
        row.status = "succeed"
    BackupRecord.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["instance", "backup_id"],
        update_fields=["status"],
    )
    assert_summaries_exact(instance)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement triggers are PostgreSQL's")
def test_its_triggers_plan_each_call_for_the_rows_it_has_on_postgresql():
    """A plan cached from a one-row call ran a 3,000-row last_seen refresh in cubic time.

    auto_explain shows the plans of the statements the trigger runs: after
    many one-row updates, an update of 2,000 rows is planned for 2,000 rows,
    and the old and new rows are joined by hash, not by a nested loop.
    """
    instance = make_instance()
    records = BackupRecord.objects.bulk_create(
        BackupRecord(
            instance=instance,
            backup_id=f"plan-{n}",
            status="succeed",
            created_at=T0 + timedelta(minutes=n),
            first_seen=T0,
            last_seen=T0,
        )
        for n in range(2000)
    )
    for record in records[:8]:  # enough calls for PL/pgSQL to switch to a cached plan
        BackupRecord.objects.filter(pk=record.pk).update(status="failed")
    plans: list[str] = []
    raw = connection.connection
    raw.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        for setting, value in (
            ("log_min_duration", "0"),
            ("log_nested_statements", "on"),
            ("log_level", "notice"),
        ):
            cursor.execute(f"SET LOCAL auto_explain.{setting} = {value}")
        cursor.execute("SET LOCAL client_min_messages = notice")
        BackupRecord.objects.filter(instance=instance).update(last_seen=T0 + timedelta(days=1))
        BackupRecord.objects.filter(instance=instance).update(status="succeed")
    scans = [line for plan in plans for line in plan.splitlines() if "Named Tuplestore Scan" in line]
    assert scans, plans
    assert all("rows=2000 " in line for line in scans), scans
    assert any("Hash Join" in plan for plan in plans)
    # Every join of the old rows with the new ones, the guard's too, is by
    # hash or by merge, never a nested loop's filter (which compared every
    # pair: 4,000,000 for this refresh).
    joins = [
        line.strip()
        for plan in plans
        for line in plan.splitlines()
        if re.search(r"\((o|n)(_\d+)?\.id = (o|n)(_\d+)?\.id", line)
    ]
    assert joins and all(line.startswith(("Hash Cond", "Merge Cond")) for line in joins), joins
    assert_summaries_exact(instance)


def test_it_takes_the_triggers_off_sqlite_while_migrating_and_puts_them_back():
    # SQLite rebuilds a table to alter it, and a trigger naming that table fails the rename.
    from backups.apps import drop_sqlite_summary_triggers, ensure_summary_triggers

    instance = make_instance()
    drop_sqlite_summary_triggers(sender=None, using="default")
    assert summaries.triggers_installed() == (connection.vendor == "postgresql")
    make_record(instance, status="failed")  # written while a migration runs

    ensure_summary_triggers(sender=None, using="default")

    assert summaries.triggers_installed()
    assert_summaries_exact(instance)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    minutes=st.lists(st.integers(min_value=-600, max_value=600), max_size=20),
    since=st.integers(min_value=-700, max_value=700),
    window=st.integers(min_value=0, max_value=900),
)
def test_it_counts_a_window_exactly_from_the_hours_and_the_edges(minutes, since, window):
    from backups.selectors import backup_status_counts

    BackupRecord.objects.all().delete()
    instance = make_instance()
    for n, offset in enumerate(minutes):
        make_record(instance, created_at=T0 + timedelta(minutes=offset, seconds=n), status=STATUSES[n % 5])
    start = T0 + timedelta(minutes=since, seconds=17)
    now = start + timedelta(minutes=window)

    counts = backup_status_counts(since=start, now=now)

    expected = Counter(BackupRecord.objects.filter(created_at__gte=start).values_list("status", flat=True))
    assert counts.total == sum(expected.values())
    assert {status: n for status, n in counts.by_status.items() if n} == dict(expected)


def test_it_never_counts_below_zero_when_the_counts_were_emptied_under_it():
    # A test database's flush empties the counts before the records.
    instance = make_instance()
    make_record(instance, status="failed")
    BackupHourlyCount.objects.all().delete()

    BackupRecord.objects.all().delete()

    assert not BackupHourlyCount.objects.filter(records__lt=0).exists()
