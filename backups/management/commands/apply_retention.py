"""``apply_retention [--gone-days N] [--dry-run]``: delete records gone for more than N days, now.

Beat runs the same once a day when ``DASHBOARD_RETENTION_GONE_DAYS`` is set;
this is for a DBA who wants to see what it would do, or to run it by hand.
Without ``--gone-days`` the setting is used, and with it unset nothing is
deleted (exit 0 with a note): everything is kept by default.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from backups import retention


def positive_days(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise CommandError(f"--gone-days must be a whole number of days, got {raw!r}") from None
    if value < 1:
        raise CommandError(f"--gone-days must be at least 1, got {value}")
    return value


class Command(BaseCommand):
    help = (
        "Delete backup records the API stopped listing more than N days ago (DASHBOARD_RETENTION_GONE_DAYS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--gone-days", metavar="N", help="Days since gone_at (default: the setting).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args, **options):
        raw = options["gone_days"]
        days = positive_days(raw) if raw is not None else settings.DASHBOARD_RETENTION_GONE_DAYS
        if not days:
            self.stdout.write("Retention is off (DASHBOARD_RETENTION_GONE_DAYS is 0): nothing deleted.")
            return
        result = retention.prune_gone_records(older_than_days=days, dry_run=options["dry_run"])
        cutoff = f"{result.cutoff:%Y-%m-%d %H:%M:%S}Z"
        if result.dry_run:
            self.stdout.write(f"Would delete {result.records_deleted} backup records gone before {cutoff}.")
            return
        self.stdout.write(
            f"Deleted {result.records_deleted} backup records gone before {cutoff} "
            f"and {result.status_changes_deleted} status changes, in {result.batches} batches "
            f"({result.seconds:.1f} s)."
        )
