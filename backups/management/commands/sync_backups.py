"""``manage.py sync_backups``: one sync, run here and now, no broker needed."""

from __future__ import annotations

import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from backups import sync
from backups.choices import SyncOutcome
from backups.dcs.client import DcsClient
from backups.models import SKIPPED, DcsInstance, SyncKind

EXIT_FAILED = 1
EXIT_PARTIAL = 2
EXIT_SKIPPED = 3


class Command(BaseCommand):
    help = (
        "Sync DCS instances and their backup records from the API into the database. "
        f"Exits {EXIT_FAILED} when the sync failed, {EXIT_PARTIAL} when it completed with errors and "
        f"{EXIT_SKIPPED} when another sync of the same scope was running."
    )

    def add_arguments(self, parser):
        parser.add_argument("--instance", metavar="INSTANCE_ID", help="sync only this instance's backups")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="list only a recent window of each instance's backups (marks nothing gone)",
        )

    def handle(self, *args, instance=None, no_progress=False, incremental=False, **options):
        try:
            client = DcsClient.from_settings()
        except ImproperlyConfigured as exc:
            raise CommandError(f"configuration: {exc}") from None

        bar = None
        if not no_progress and self.stdout.isatty():
            bar = tqdm(total=0, unit="instance", desc="Syncing", file=sys.stderr, leave=False)

        def on_progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        callback = on_progress if bar is not None else None
        try:
            if instance:
                target = DcsInstance.objects.filter(instance_id=instance).first()
                if target is None:
                    raise CommandError(
                        f"no instance {instance!r} is known yet; run a full sync first to discover it"
                    )
                run = sync.sync_instance(instance=target, client=client, on_progress=callback)
            else:
                kind = SyncKind.INCREMENTAL if incremental else SyncKind.FULL
                run = sync.sync_fleet(client=client, on_progress=callback, kind=kind)
        finally:
            if bar is not None:
                bar.close()

        self._print_summary(run)
        if run.outcome == SKIPPED:
            sys.exit(EXIT_SKIPPED)
        if run.outcome == SyncOutcome.FAILED:
            sys.exit(EXIT_FAILED)
        if run.outcome == SyncOutcome.PARTIAL:
            sys.exit(EXIT_PARTIAL)

    def _print_summary(self, run) -> None:
        style = {
            SyncOutcome.SUCCEEDED: self.style.SUCCESS,
            SyncOutcome.PARTIAL: self.style.WARNING,
            SKIPPED: self.style.WARNING,
        }.get(run.outcome, self.style.ERROR)
        self.stdout.write(style(f"Sync {run.get_outcome_display().lower()} ({run.scope})"))
        self.stdout.write(f"  kind:       {run.get_kind_display().lower()}, run #{run.pk}")
        if run.outcome == SKIPPED:
            self.stdout.write(f"  {run.reason}")
            return
        self.stdout.write(f"  instances:  {run.instances_seen} listed, {run.instances_gone} gone")
        self.stdout.write(
            f"  records:    {run.records_new} new, {run.records_updated} updated, {run.records_gone} gone"
        )
        self.stdout.write(f"  API calls:  {run.api_calls} ({run.retries} retries, {run.throttles} throttled)")
        self.stdout.write(f"  duration:   {run.duration.total_seconds():.2f} s")
        for error in run.errors:
            detail = " ".join(
                f"{key}={error[key]}" for key in ("status", "error_code", "request_id") if error.get(key)
            )
            self.stderr.write(
                f"  error: {error.get('scope', '')}: {error.get('message', '')} {detail}".rstrip()
            )
