"""The sync service: DCS API → our database.

A **fleet sync** lists each project's instances, then syncs each instance's
backup records; a **full** one lists every record and marks what a complete
listing no longer contains as gone, an **incremental** one lists only a recent
window per instance and marks nothing gone. An **active** sync re-lists the
instances with a waiting or running backup, so their progress moves. Every run
is recorded as a SyncRun, with one SyncRunItem per instance and its errors as
SyncError rows.

The functions here run a whole sync in this process (``manage.py
sync_backups``, tests); the Celery tasks in :mod:`backups.tasks` run the same
per-instance code fanned out over workers (:mod:`backups.sync.runs`).

- :mod:`backups.sync.listings`: what the API listed, written to the database;
- :mod:`backups.sync.restores`: the same for an instance's restores;
- :mod:`backups.sync.planning`: starting runs and planning one item per instance;
- :mod:`backups.sync.items`: one item: its instance's listings fetched and stored, counted once;
- :mod:`backups.sync.runs`: runs as a whole: leases, fan-out, finishing, the reaper and pruning;
- :mod:`backups.sync.pipeline`: the in-process driver of a whole run;
- :mod:`backups.sync.health`: what the pages can say about workers and broker.
"""

from __future__ import annotations

from backups.dcs.client import DcsClient
from backups.models import DcsInstance, SyncKind, SyncRun, SyncTrigger
from backups.sync.health import SyncHealth, health
from backups.sync.pipeline import ProgressCallback, run_in_process
from backups.sync.planning import AUTO, plan_fleet, start_active_run, start_fleet_run, start_instance_run
from backups.sync.runs import reap_stuck_runs


def sync_fleet(
    *,
    client: DcsClient | None = None,
    on_progress: ProgressCallback | None = None,
    kind: str = SyncKind.FULL,
    trigger: str = SyncTrigger.COMMAND,
    requested_by_id: int | None = None,
) -> SyncRun:
    """Sync every project's instances and their backups here and now.

    ``kind`` is full (the default), incremental, or ``"auto"``: full when the
    last full sync is older than ``DCS_FULL_SYNC_INTERVAL``. Returns the run,
    which is ``skipped`` when another fleet sync holds the lease.
    """
    client = client or DcsClient.from_settings()
    run = start_fleet_run(kind=kind, trigger=trigger, requested_by_id=requested_by_id)
    return run_in_process(
        run, client=client, plan=lambda: plan_fleet(run, client=client), on_progress=on_progress
    )


def sync_instance(
    *,
    instance: DcsInstance,
    client: DcsClient | None = None,
    on_progress: ProgressCallback | None = None,
    trigger: str = SyncTrigger.COMMAND,
    requested_by_id: int | None = None,
    task_id: str = "",
) -> SyncRun:
    """A full sync of one instance's backups."""
    client = client or DcsClient.from_settings()
    run = start_instance_run(
        instance=instance, trigger=trigger, requested_by_id=requested_by_id, task_id=task_id
    )
    return run_in_process(run, client=client, on_progress=on_progress)


def sync_active_instances(
    *, client: DcsClient | None = None, trigger: str = SyncTrigger.BEAT
) -> SyncRun | None:
    """Re-list recent backups of the instances with a waiting or running backup.

    Returns None, and records no run, when nothing is running.
    """
    run = start_active_run(trigger=trigger)
    if run is None:
        return None
    return run_in_process(run, client=client or DcsClient.from_settings())


__all__ = [
    "AUTO",
    "SyncHealth",
    "health",
    "reap_stuck_runs",
    "sync_active_instances",
    "sync_fleet",
    "sync_instance",
]
