"""backups.db.select_scalars (one round trip, real types), and the connections' settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backups.db import WRITER_CACHE_KIB, bulk_writer, select_scalars
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
