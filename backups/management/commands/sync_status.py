"""``manage.py sync_status``: the last sync runs as a table, and whether the fleet is fresh.

Meant for a DBA's terminal and for monitoring: it exits 1 when the last fleet
sync failed and 2 when no fleet sync succeeded within
``DASHBOARD_SYNC_STALE_MINUTES`` (or none ever did).
"""

from __future__ import annotations

import sys
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from backups.choices import SyncOutcome
from backups.models import SyncRun
from backups.sync.health import health

EXIT_FAILED = 1
EXIT_STALE = 2

COLUMNS = (
    ("id", ">"),
    ("started (UTC)", "<"),
    ("kind", "<"),
    ("trigger", "<"),
    ("scope", "<"),
    ("outcome", "<"),
    ("secs", ">"),
    ("inst", ">"),
    ("new", ">"),
    ("upd", ">"),
    ("gone", ">"),
    ("calls", ">"),
    ("retry", ">"),
    ("429", ">"),
    ("err", ">"),
)


def _row(run: SyncRun) -> list[str]:
    duration = run.duration
    return [
        str(run.pk),
        f"{run.started_at:%Y-%m-%d %H:%M:%S}",
        run.kind,
        run.trigger,
        run.scope[:40],
        run.outcome,
        f"{duration.total_seconds():.1f}" if duration is not None else "-",
        str(run.instances_seen),
        str(run.records_new),
        str(run.records_updated),
        str(run.records_gone),
        str(run.api_calls),
        str(run.retries),
        str(run.throttles),
        str(run.error_count),
    ]


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


class Command(BaseCommand):
    help = (
        "Show the last sync runs. "
        f"Exits {EXIT_FAILED} when the last fleet sync failed and {EXIT_STALE} when no fleet sync "
        "succeeded within DASHBOARD_SYNC_STALE_MINUTES."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit", type=int, default=20, metavar="N", help="how many runs to show (default 20)"
        )

    def handle(self, *args, limit=20, **options):
        now = timezone.now()
        runs = list(SyncRun.objects.order_by("-started_at", "-id")[: max(1, limit)])
        self._print_table(runs)

        state = health(now=now)
        broker = state.broker
        queued = f", {broker.queued} queued" if broker.queued is not None else ""
        self.stdout.write(
            f"broker:  {broker.kind} "
            + (f"reachable{queued}" if broker.reachable else f"NOT reachable ({broker.error})")
        )
        if state.last_worker_activity is None:
            self.stdout.write("workers: no heartbeat ever")
        else:
            alive = "alive" if state.workers_alive else "silent"
            self.stdout.write(f"workers: {alive}, last heartbeat {_ago(now - state.last_worker_activity)}")

        fleet = SyncRun.objects.fleet().finished()
        last = fleet.order_by("-finished_at", "-id").first()
        last_ok = fleet.filter(outcome=SyncOutcome.SUCCEEDED).order_by("-finished_at", "-id").first()
        stale_after = timedelta(minutes=settings.DASHBOARD_SYNC_STALE_MINUTES)
        if last is None:
            self.stdout.write(self.style.ERROR("fleet:   never synced"))
            sys.exit(EXIT_STALE)
        self.stdout.write(
            f"fleet:   last sync #{last.pk} {last.outcome} {_ago(now - last.finished_at)}; "
            + (f"last success {_ago(now - last_ok.finished_at)}" if last_ok else "never succeeded")
        )
        if last.outcome == SyncOutcome.FAILED:
            self.stdout.write(self.style.ERROR("fleet:   the last fleet sync FAILED"))
            sys.exit(EXIT_FAILED)
        if last_ok is None or now - last_ok.finished_at > stale_after:
            minutes = settings.DASHBOARD_SYNC_STALE_MINUTES
            self.stdout.write(self.style.ERROR(f"fleet:   STALE: no successful fleet sync in {minutes} min"))
            sys.exit(EXIT_STALE)

    def _print_table(self, runs: list[SyncRun]) -> None:
        rows = [_row(run) for run in runs]
        widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, (name, _) in enumerate(COLUMNS)]

        def line(cells: list[str]) -> str:
            return "  ".join(
                f"{cell:{align}{width}}"
                for cell, (_, align), width in zip(cells, COLUMNS, widths, strict=True)
            ).rstrip()

        self.stdout.write(line([name for name, _ in COLUMNS]))
        for row in rows:
            self.stdout.write(line(row))
        if not rows:
            self.stdout.write("(no sync runs yet)")
