"""Properties of the sync: the same pages, synced twice or in any order, give the same database.

The simulator's clock stands still, so every listing of a record says the same
thing; what may vary is only how the records reach us: which instances first,
how many times, in what pages, and in what order the pages are written. Every
example runs over real HTTP and is rolled back afterwards.

The clock is set early in the simulated fleet's life, when only two instances
have backups, so each example moves hundreds of records rather than thousands.
``HYPOTHESIS_SYNC_EXAMPLES`` sets how many examples each property tries.
"""

from __future__ import annotations

import json
import os
import random
from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backups import sync
from backups.dcs.client import DcsClient
from backups.dcs.records import BackupRecordData, parse_instance
from backups.models import BackupRecord, BackupStatusChange, DcsInstance
from backups.simulator.server import SimulatorServer
from backups.sync.listings import fetch_backups, store_backups, sync_project_instances
from tests.conftest import PROJECTS, FakeClock, make_config, make_simulator

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("HYPOTHESIS_SYNC_EXAMPLES", "12"))
PAGE_SIZES = (37, 200, 1000)
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def early_in_the_fleets_life(simulator) -> FakeClock:
    """Four days after the second instance was created: two instances have backups."""
    created = sorted(
        parse_instance(raw).model_values()["created_at"]
        for project in PROJECTS
        for raw in simulator.list_instances(project.project_id)
    )
    return FakeClock(created[1] + timedelta(days=4))


@pytest.fixture(scope="module")
def world():
    simulator = make_simulator()
    clock = early_in_the_fleets_life(simulator)
    simulator.clock = clock
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield simulator, server, clock


def _client(world, page_size: int = 1000) -> DcsClient:
    _, server, clock = world
    return DcsClient(make_config(server.url), page_size=page_size, clock=clock, read_timeout=10)


def canonical_dump() -> dict:
    """Everything the sync stores, without ids and without the times of our own syncs."""
    instances = sorted(
        (project_id, instance_id, json.dumps(raw, sort_keys=True), gone_at is None)
        for project_id, instance_id, raw, gone_at in DcsInstance.objects.values_list(
            "project_id", "instance_id", "raw", "gone_at"
        )
    )
    fields = ["instance__instance_id", "backup_id", *BackupRecordData.MODEL_FIELDS, "gone_at"]
    records = sorted(
        (
            *(json.dumps(value, sort_keys=True) if isinstance(value, dict) else value for value in row[:-1]),
            row[-1] is None,
        )
        for row in BackupRecord.objects.values_list(*fields)
    )
    changes = sorted(
        (backup_id, status, str(progress))
        for backup_id, status, progress in BackupStatusChange.objects.values_list(
            "record__backup_id", "status", "progress"
        )
    )
    return {"instances": instances, "records": records, "changes": changes}


class _Rollback:
    """Runs the block in a transaction that is always rolled back."""

    def __enter__(self):
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def __exit__(self, *exc_info):
        transaction.set_rollback(True)
        self._atomic.__exit__(*exc_info)


@pytest.fixture
def reference(world) -> dict:
    """The database after one plain full sync."""
    with _Rollback():
        run = sync.sync_fleet(client=_client(world))
        assert run.outcome == "succeeded", run.errors
        dump = canonical_dump()
    assert len(dump["records"]) > 100
    return dump


def _list_instances(world) -> list[DcsInstance]:
    client = _client(world)
    instances = []
    for project in PROJECTS:
        listed = sync_project_instances(project=project, client=client, now=world[2](), mark_gone=True)
        instances.extend(listed.instances)
    return instances


@PROPERTY_SETTINGS
@given(data=st.data(), page_size=st.sampled_from(PAGE_SIZES))
def test_syncing_instances_in_any_order_and_any_number_of_times_gives_the_same_database(
    world, reference, data, page_size
):
    with _Rollback():
        instances = _list_instances(world)
        order = data.draw(st.permutations(instances), label="order")
        again = data.draw(st.lists(st.sampled_from(instances), max_size=4), label="synced again")
        client = _client(world, page_size)
        for instance in [*order, *again]:
            run = sync.sync_instance(instance=instance, client=client)
            assert run.outcome == "succeeded", run.errors
        assert canonical_dump() == reference


@PROPERTY_SETTINGS
@given(
    page_size=st.sampled_from(PAGE_SIZES),
    seed=st.integers(0, 2**32 - 1),
    pieces=st.integers(1, 12),
    repeats=st.integers(0, 3),
    finish_complete=st.booleans(),
)
def test_any_partition_of_the_pages_written_in_any_order_gives_the_same_rows(
    world, reference, page_size, seed, pieces, repeats, finish_complete
):
    rng = random.Random(seed)
    with _Rollback():
        instances = _list_instances(world)
        client = _client(world, page_size)
        now = world[2]()
        listings = {
            instance.pk: fetch_backups(instance=instance, client=client, begin=None) for instance in instances
        }
        # Cut every instance's listing into pieces, then write all pieces of
        # all instances in one shuffled order, some of them twice, each as an
        # incomplete listing.
        batches = []
        for instance in instances:
            records = list(listings[instance.pk].records.items())
            cuts = sorted(rng.sample(range(1, len(records)), min(pieces - 1, max(0, len(records) - 1))))
            for start, end in zip([0, *cuts], [*cuts, len(records)], strict=True):
                batches.append((instance, dict(records[start:end])))
        batches += [rng.choice(batches) for _ in range(repeats)] if batches else []
        rng.shuffle(batches)
        for instance, records in batches:
            with transaction.atomic():
                store_backups(instance=instance, records=records, now=now, windowed=True, complete=False)
        if finish_complete:
            for instance in instances:
                listed = listings[instance.pk]
                with transaction.atomic():
                    store_backups(
                        instance=instance, records=listed.records, now=now, windowed=False, complete=True
                    )
        assert canonical_dump() == reference
