"""A long run of syncs against a simulator that misbehaves, on a moving clock.

Faults on every endpoint (5xx, 429 bursts with Retry-After, malformed and cut
bodies, dropped connections, records shifting between pages), backups coming
and going upstream, and a mix of full, incremental and active syncs. After
each sync nothing the API still lists may be marked gone. Then the faults stop
and one full sync runs, and the database must match the simulator's own
truth: zero records lost, zero phantom records, and exactly the records no
longer listed marked gone.

``DCS_CHAOS_SYNCS`` (default 20) and ``DCS_CHAOS_SEED`` (default 2026) make a
longer or a different run.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from datetime import timedelta

import pytest

from backups import sync
from backups.choices import SyncOutcome
from backups.dcs.client import DcsClient
from backups.dcs.records import parse_instance
from backups.dcs.retry import RetryPolicy
from backups.models import BackupRecord, DcsInstance, SyncKind
from backups.simulator.server import SimulatorServer
from tests.conftest import PROJECTS, FakeClock, make_config, make_simulator

pytestmark = pytest.mark.django_db

SYNCS = int(os.environ.get("DCS_CHAOS_SYNCS", "20"))
SEED = int(os.environ.get("DCS_CHAOS_SEED", "2026"))
FAULTS = {
    "error_rate": 0.08,
    "throttle_rate": 0.05,
    "throttle_burst": 2,
    "retry_after": 0.01,
    "malformed_rate": 0.06,
    "drop_rate": 0.04,
    "shift_rate": 0.15,
}


def _truth(simulator) -> dict[tuple[str, str], dict]:
    return {
        (instance["instance_id"], record["backup_id"]): record
        for project in PROJECTS
        for instance in simulator.list_instances(project.project_id)
        for record in simulator.list_backups(project.project_id, instance["instance_id"])
    }


def _rows(**filters) -> dict[tuple[str, str], dict]:
    rows = BackupRecord.objects.filter(**filters).values_list("instance__instance_id", "backup_id", "raw")
    return {(instance_id, backup_id): raw for instance_id, backup_id, raw in rows}


@pytest.fixture
def chaos():
    simulator = make_simulator()
    created = sorted(
        parse_instance(raw).model_values()["created_at"]
        for project in PROJECTS
        for raw in simulator.list_instances(project.project_id)
    )
    # Early in the fleet's life: three instances have backups, a thousand records.
    clock = FakeClock(created[2] + timedelta(days=4))
    simulator.clock = clock
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        client = DcsClient(
            make_config(server.url),
            page_size=100,  # several pages per instance, so pages can disagree
            clock=clock,
            connect_timeout=2,
            read_timeout=5,
            retry=RetryPolicy(max_retries=3, backoff=0.005, backoff_cap=0.02, retry_after_cap=0.02),
        )
        yield simulator, client, clock


def test_a_long_run_under_faults_loses_nothing_and_invents_nothing(chaos):
    simulator, client, clock = chaos
    rng = random.Random(SEED)
    context = f"(DCS_CHAOS_SEED={SEED}, DCS_CHAOS_SYNCS={SYNCS})"
    sync.sync_fleet(client=client)
    simulator.faults.configure(seed=SEED, **FAULTS)
    outcomes: Counter[str] = Counter()
    retries = throttles = 0
    deleted = False

    for step in range(SYNCS):
        clock.advance(seconds=rng.randint(20, 1500))
        truth = _truth(simulator)
        if truth and rng.random() < 0.3:
            instance_id, backup_id = rng.choice(sorted(truth))
            project_id = DcsInstance.objects.get(instance_id=instance_id).project_id
            simulator.drop_backup(project_id, instance_id, backup_id)
        if not deleted and step == SYNCS // 2:
            victim = (
                DcsInstance.objects.filter(backups__isnull=False).distinct().order_by("instance_id").first()
            )
            simulator.delete_instance(victim.project_id, victim.instance_id)
            deleted = True
        kind = rng.choices([SyncKind.FULL, SyncKind.INCREMENTAL, SyncKind.ACTIVE], weights=[3, 5, 2])[0]
        if kind == SyncKind.ACTIVE:
            run = sync.sync_active_instances(client=client)
            if run is None:
                continue
        else:
            run = sync.sync_fleet(client=client, kind=kind)
        outcomes[run.outcome] += 1
        retries += run.retries
        throttles += run.throttles

        # Whatever went wrong, nothing the API lists now is marked gone.
        wrongly_gone = set(_rows(gone_at__isnull=False)) & set(_truth(simulator))
        assert not wrongly_gone, f"step {step} ({kind}, {run.outcome}) marked listed records gone {context}"

    injected = simulator.faults.counts
    assert sum(sum(kinds.values()) for kinds in injected.values()) > 0, injected
    assert retries > 0 and throttles > 0, context
    assert outcomes[SyncOutcome.SUCCEEDED] + outcomes[SyncOutcome.PARTIAL] + outcomes[SyncOutcome.FAILED] > 0

    simulator.faults.reset()
    final = sync.sync_fleet(client=client)

    assert final.outcome == SyncOutcome.SUCCEEDED, final.errors
    truth = _truth(simulator)
    present = _rows(gone_at__isnull=True)
    lost = truth.keys() - present.keys()
    phantom = present.keys() - truth.keys()
    assert not lost, f"{len(lost)} records lost {context}"
    assert not phantom, f"{len(phantom)} phantom records {context}"
    assert all(present[key] == record for key, record in truth.items()), f"stale records {context}"
    gone = _rows(gone_at__isnull=False)
    assert gone.keys() == _rows().keys() - truth.keys(), (
        f"gone rows are exactly those no longer listed {context}"
    )
    assert set(DcsInstance.objects.filter(gone_at__isnull=True).values_list("instance_id", flat=True)) == {
        instance["instance_id"]
        for project in PROJECTS
        for instance in simulator.list_instances(project.project_id)
    }
    assert BackupRecord.objects.count() == len(present) + len(gone), "one row per record"
