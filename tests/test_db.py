"""backups.db.select_scalars (one round trip, real types), and the connections' settings."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import CharField, F, QuerySet, Value
from django.db.models.functions import Concat, Lower
from django.test.utils import CaptureQueriesContext

from backups.db import WRITER_CACHE_KIB, CompiledOnce, bulk_writer, select_scalars
from backups.models import BackupRecord, DcsInstance
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db


def test_it_answers_every_question_in_one_query_with_its_type():
    instance = make_instance(name="alpha")
    make_record(instance, created_at=T0 + timedelta(hours=2), size=42)

    with CaptureQueriesContext(connection) as captured:
        values = select_scalars(
            newest=BackupRecord.objects.order_by("-created_at").values("created_at")[:1],
            size=BackupRecord.objects.values("size")[:1],
            name=DcsInstance.objects.values("name")[:1],
            nothing=DcsInstance.objects.filter(name="missing").values("name")[:1],
        )

    assert len(captured) == 1
    assert values == {"newest": T0 + timedelta(hours=2), "size": 42, "name": "alpha", "nothing": None}
    assert values["newest"].tzinfo is not None


def test_it_refuses_a_query_of_more_than_one_column():
    with pytest.raises(ValueError, match="one column"):
        select_scalars(both=DcsInstance.objects.values("name", "region")[:1])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="JIT is PostgreSQL's")
def test_it_runs_postgresql_without_jit():
    # A page's queries are short; JIT compiling one cost the overview ~420 ms.
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)


def pragmas(*names: str) -> dict:
    with connection.cursor() as cursor:
        answers = {}
        for name in names:
            cursor.execute(f"PRAGMA {name}")
            answers[name] = cursor.fetchone()[0]
    return answers


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's WAL")
def test_it_checkpoints_sqlite_every_few_listings_not_after_each():
    # A listing's rows land all over the records' indexes: a checkpoint (with
    # its fsync) per 1,000 pages of WAL came after every listing.
    assert pragmas("journal_mode", "synchronous", "wal_autocheckpoint", "journal_size_limit") == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL: WAL fsyncs at checkpoints, not at each commit
        "wal_autocheckpoint": 16000,
        "journal_size_limit": 64 * 1024 * 1024,
    }


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's page cache")
def test_only_the_bulk_writer_gets_a_big_page_cache(django_assert_num_queries):
    # Every connection keeps SQLite's 2 MiB: a streamed export would keep
    # every page it read in a bigger one.
    default = pragmas("cache_size")["cache_size"]
    assert default == -2000

    with django_assert_num_queries(0), bulk_writer():
        pass
    with bulk_writer():
        assert pragmas("cache_size")["cache_size"] == -WRITER_CACHE_KIB == -65536

    assert pragmas("cache_size")["cache_size"] == default


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's WAL")
@pytest.mark.django_db(transaction=True)
def test_the_bulk_writer_checkpoints_on_a_thread_of_its_own(monkeypatch):
    import backups.db

    started = []

    class Recorded(backups.db._Checkpointer):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(backups.db, "_Checkpointer", Recorded)
    monkeypatch.setattr(backups.db, "CHECKPOINT_EVERY", 0.01)
    before = pragmas("wal_autocheckpoint", "cache_size")
    with bulk_writer():
        instance = make_instance(name="alpha")
        for hour in range(20):
            make_record(instance, created_at=T0 + timedelta(hours=hour))
        (checkpointer,) = started
        deadline = time.monotonic() + 10
        while not checkpointer.copied and time.monotonic() < deadline:
            time.sleep(0.01)
        # Another connection copied the committed pages back; the writer's
        # own checkpoints stay on, as only it can start the WAL afresh.
        assert checkpointer.copied > 0
        assert checkpointer.native_id != threading.get_native_id()
        assert pragmas("wal_autocheckpoint")["wal_autocheckpoint"] == 16000
    assert not checkpointer.is_alive()
    assert checkpointer.error is None
    assert pragmas("wal_autocheckpoint", "cache_size") == before


def test_only_a_database_file_in_wal_mode_gets_a_checkpointer(tmp_path):
    from backups.db import _database_file

    memory = sqlite3.connect(":memory:")
    assert _database_file(memory) is None
    path = tmp_path / "rollback.sqlite3"
    rollback = sqlite3.connect(path)
    assert _database_file(rollback) is None  # a rollback journal: no WAL to checkpoint
    rollback.execute("PRAGMA journal_mode=WAL")
    assert _database_file(rollback) == str(path)
    for conn in (memory, rollback):
        conn.close()


# --- CompiledOnce ---------------------------------------------------------------------------------


class CountedLower(Lower):
    """Lower() that counts how often a query compiles it."""

    compiled = 0

    def as_sql(self, compiler, connection, **extra_context):
        CountedLower.compiled += 1
        return super().as_sql(compiler, connection, **extra_context)


def without_parentheses(sql: str) -> str:
    return sql.replace("(", "").replace(")", "")


def named_three_times(expression) -> QuerySet:
    return (
        DcsInstance.objects.annotate(low=expression)
        .annotate(again=Concat(F("low"), Value("-"), F("low"), output_field=CharField()))
        .filter(low__startswith="redis")
        .order_by("low", "pk")
    )


@pytest.mark.django_db
def test_compiled_once_compiles_an_annotation_once_a_query_with_the_same_sql():
    make_instance(name="Redis-B")
    make_instance(name="redis-a")
    make_instance(name="memcached")

    CountedLower.compiled = 0
    plain = named_three_times(CountedLower("name"))
    plain_sql = str(plain.query)
    # The select, the other annotation twice, the filter (the order is a Ref).
    assert CountedLower.compiled == 4

    CountedLower.compiled = 0
    once = named_three_times(CompiledOnce(CountedLower("name")))
    once_sql = str(once.query)
    assert CountedLower.compiled == 1, "once for that compiler"
    assert without_parentheses(once_sql) == without_parentheses(plain_sql)
    assert once_sql.count('(LOWER("backups_dcsinstance"."name"))') == 4
    assert [(row.low, row.again) for row in once] == [
        ("redis-a", "redis-a-redis-a"),
        ("redis-b", "redis-b-redis-b"),
    ]


@pytest.mark.django_db
def test_compiled_once_is_compiled_afresh_inside_another_query():
    # A queryset used as a subquery is relabelled (its aliases change): a
    # copy of the expression, which must not bring the text it had before.
    kept = make_instance(name="redis-a")
    make_instance(name="memcached")

    def outer(wrap) -> QuerySet:
        inner = named_three_times(wrap(Lower("name")))
        list(inner)  # compiled on its own first
        return DcsInstance.objects.filter(pk__in=inner.values("pk")).annotate(low=wrap(Lower("name")))

    once, plain = outer(CompiledOnce), outer(lambda expression: expression)
    assert without_parentheses(str(once.query)) == without_parentheses(str(plain.query))
    assert [(row.pk, row.low) for row in once] == [(kept.pk, "redis-a")]
