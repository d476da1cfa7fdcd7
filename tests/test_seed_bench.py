"""``manage.py seed_bench``: the benchmark's data set, and the benchmark runner end to end."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from backups.choices import SyncOutcome
from backups.dcs.records import parse_backup_record
from backups.management.commands import seed_bench
from backups.models import BackupRecord, DcsInstance, SyncKind, SyncRun
from tests.factories import make_record

pytestmark = pytest.mark.django_db

NOW = "2026-11-20T12:00:00Z"
ROOT = Path(__file__).resolve().parent.parent


def seed(*args, **options) -> str:
    out = io.StringIO()
    options = {"records": 3000, "instances": 30, "now": NOW, "no_progress": True, **options}
    call_command("seed_bench", *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def snapshot() -> list[tuple]:
    fields = [f.name for f in BackupRecord._meta.concrete_fields if f.name not in ("id", "instance")]
    return sorted(BackupRecord.objects.values_list("instance__instance_id", *fields))


def test_it_seeds_the_numbers_asked_for():
    out = seed()

    assert BackupRecord.objects.count() == 3000
    assert DcsInstance.objects.count() == 30
    assert set(DcsInstance.objects.values_list("region", flat=True)) == set(seed_bench.DEFAULT_REGIONS)
    assert "Seeded 30 instances and 3,000 backup records" in out
    assert "rows/s" in out


def test_it_records_the_full_fleet_sync_that_brought_the_data(admin_client, django_assert_num_queries):
    from tests.test_overview import OVERVIEW_QUERIES

    seed()

    run = SyncRun.objects.fleet().finished().get()
    assert (run.kind, run.outcome, run.instances_seen, run.records_new) == (
        SyncKind.FULL,
        SyncOutcome.SUCCEEDED,
        30,
        3000,
    )
    assert run.finished_at == datetime(2026, 11, 20, 12, tzinfo=UTC)
    # The overview of a synced fleet: the machinery's health rides on the run's row.
    admin_client.get("/")
    with django_assert_num_queries(OVERVIEW_QUERIES):
        assert admin_client.get("/").status_code == 200


def test_it_makes_the_same_rows_from_the_same_seed():
    seed()
    first = snapshot()
    seed("--replace")

    assert snapshot() == first
    seed("--replace", seed=2)
    assert snapshot() != first


def test_it_stores_what_a_sync_would_parse_from_the_raw_record():
    seed(records=800, instances=10)

    for record in BackupRecord.objects.select_related("instance"):
        parsed = parse_backup_record(record.raw)
        assert parsed.instance_id == record.instance.instance_id
        assert parsed.backup_id == record.backup_id
        for name, value in parsed.model_values().items():
            assert getattr(record, name) == value, (name, record.raw)


@pytest.mark.parametrize("days", [7, seed_bench.HISTORY_DAYS])
def test_its_records_span_the_history_asked_for(days):
    """The bench's two ingest shapes: a listing of new backups, and one of a long history."""
    from backups.simulator.fleet import build_fleet

    sim = next(sim for sim in build_fleet({"p": "r"}, 10, 1) if sim.backupable)
    now_ms = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000)
    created_at = seed_bench.RECORD_FIELDS.index("created_at")
    clock = seed_bench._Clock(sqlite=False)
    rows = list(
        seed_bench.generate_records(
            sim, 1, 1000, seed=1, now_ms=now_ms, gone_ms=None, clock=clock, history_days=days
        )
    )

    oldest = min(datetime.fromisoformat(row[created_at]) for row in rows)
    age_days = (now_ms / 1000 - oldest.timestamp()) / 86400
    # Two a day fit 1,000 into two years: they go back 15 months.
    assert len(rows) == 1000
    assert days * 0.6 < age_days <= days + 1


def test_it_has_a_realistic_mix():
    seed(records=20_000, instances=40)
    records = list(BackupRecord.objects.values_list("status", "error_code", "backup_type", "gone_at", "size"))
    statuses = Counter(status for status, *_ in records)

    assert statuses["succeed"] > len(records) / 2
    assert 0.02 < statuses["failed"] / len(records) < 0.15
    assert {code for _, code, *_ in records if code} <= {f"dcs.08.000{n}" for n in range(1, 9)}
    assert all(code for status, code, *_ in records if status == "failed")
    assert Counter(kind for _, _, kind, *_ in records)["manual"] > 0
    assert any(gone for *_, gone, _ in records)
    assert any(gone is None for *_, gone, _ in records)
    single = [i for i in DcsInstance.objects.all() if i.is_single_node]
    assert single, "some instances are single-node"
    assert not BackupRecord.objects.filter(instance__in=single).exists()
    created = BackupRecord.objects.order_by("created_at").values_list("created_at", flat=True)
    assert created.last() <= datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert (created.last() - created.first()).days > 300


def test_it_leaves_the_summaries_as_a_rebuild_makes_them():
    summaries = seed_bench.summaries_module()
    if summaries is None:
        pytest.skip("no summary tables yet")
    seed()
    columns = ("pk", "last_backup_at", "last_backup_status", "last_success_at")
    seeded = sorted(DcsInstance.objects.values_list(*columns))
    summaries.rebuild_summaries()

    assert sorted(DcsInstance.objects.values_list(*columns)) == seeded
    assert any(last for _, last, *_ in seeded)


def test_it_refuses_a_database_that_has_backup_records():
    mine = make_record()

    with pytest.raises(CommandError, match=r"already has 1 backup records.*--replace") as raised:
        seed()

    assert raised.value.returncode == 2
    assert list(BackupRecord.objects.all()) == [mine]
    assert DcsInstance.objects.count() == 1


def test_it_replaces_what_is_there_when_asked():
    make_record(backup_name="old")
    seed("--replace")

    assert BackupRecord.objects.count() == 3000
    assert not BackupRecord.objects.filter(backup_name="old").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"records": 0}, "--records must be between 1"),
        ({"records": -5}, "--records must be between 1"),
        ({"instances": 0}, "--instances must be between 1"),
        ({"records": 10, "instances": 20}, r"--instances \(20\) cannot be more than --records \(10\)"),
        ({"regions": " , "}, "--regions needs at least one region"),
        ({"regions": "cn-north-4,cn-north-4"}, "names a region twice"),
        ({"regions": "cn north"}, "is not a region name"),
        ({"now": "yesterday"}, "--now must be an ISO 8601 time"),
    ],
)
def test_it_explains_a_bad_flag(options, message):
    with pytest.raises(CommandError, match=message) as raised:
        seed(**options)

    assert raised.value.returncode == 2
    assert not BackupRecord.objects.exists()


def test_the_bench_runs_end_to_end_at_a_tiny_size(tmp_path):
    """The runner seeds, measures every page and the sync, and writes its report; nothing is timed here."""
    env = {
        **os.environ,
        "DASHBOARD_DATA_DIR": str(tmp_path),
        "BENCH_RECORDS": "1500",
        "BENCH_INSTANCES": "24",
        "BENCH_REQUESTS": "1",
        "BENCH_WARMUP": "1",
        "BENCH_DEEP_HOPS": "1",
        "BENCH_DEEP_PAGE": "3",
        "BENCH_INGEST_RECORDS": "300",
        "BENCH_NAIVE_RECORDS": "40",
        "BENCH_SYNC_INSTANCES": "6",
        "DCS_RATE_LIMIT": "0",
    }
    env.pop("DATABASE_URL", None)
    env.pop("BENCH_DATABASE_URL", None)
    report = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--output", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    for needle in ("/backups/", "/admin/backups/backuprecord/", "Ingest", "Full sync", "Export", "p50"):
        assert needle in text, needle
    assert "| /backups/?sort=-size&per_page=50 |" in text
    assert "over 15 months each" in text and "of the last 7 days each" in text, "both ingest shapes"
    assert "processes at once (the Celery worker pool)" in text
    assert re.search(r"a loop of 10M Python additions takes \d+\.\d\d s here", text)
    assert re.search(r"just before each part .*: pages \d+\.\d\d s, export \d+\.\d\d s, ingest", text)
    assert re.search(r"Database settings: journal_mode wal, synchronous 1, cache_size -?\d+", text)


def test_it_puts_back_every_index_it_dropped_for_the_load():
    from django.db import connection

    def indexes() -> dict:
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, BackupRecord._meta.db_table)
        return {name: (c["columns"], c["unique"], c.get("orders")) for name, c in found.items() if c["index"]}

    before = indexes()
    seed()

    assert indexes() == before
    assert len(before) >= 4
