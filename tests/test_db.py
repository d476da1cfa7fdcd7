"""backups.db.select_scalars (one round trip, real types), and the connections' settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backups.db import select_scalars
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


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's page cache and WAL")
def test_it_gives_sqlite_a_page_cache_and_wal_checkpoints_for_bulk_writes():
    # A listing's rows land all over the records' indexes: the default 2 MiB
    # cache and a checkpoint (with its fsync) per 1,000 pages cost a third of
    # the ingest rate on 2M records.
    with connection.cursor() as cursor:
        answers = {}
        for pragma in (
            "journal_mode",
            "synchronous",
            "cache_size",
            "wal_autocheckpoint",
            "journal_size_limit",
        ):
            cursor.execute(f"PRAGMA {pragma}")
            answers[pragma] = cursor.fetchone()[0]
    assert answers == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL: WAL fsyncs at checkpoints, not at each commit
        "cache_size": -65536,
        "wal_autocheckpoint": 16000,
        "journal_size_limit": 64 * 1024 * 1024,
    }
