"""``detect_anomalies [--instance ID] [--all]``: recompute the anomaly flags of backups, now.

Syncs flag the backups they store (backups.anomalies); this recomputes every
succeeded backup of one instance or of the whole fleet, for instance after a
change of DASHBOARD_ANOMALY_RATIO or DASHBOARD_ANOMALY_WINDOW. Only rows whose
ratios or flags change are written, in batches.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backups.anomalies import detect_anomalies
from backups.models import DcsInstance


class Command(BaseCommand):
    help = "Recompute which succeeded backups are unusual in size or duration for their instance."

    def add_arguments(self, parser):
        parser.add_argument("--instance", metavar="ID", help="The DCS instance id of one instance.")
        parser.add_argument("--all", action="store_true", help="Every instance we keep.")

    def handle(self, *args, **options):
        instance_id, every = options["instance"], options["all"]
        if bool(instance_id) == bool(every):
            raise CommandError("Give either --instance ID or --all.")
        instances = DcsInstance.objects.order_by("pk").only("pk", "instance_id", "name")
        if instance_id:
            instances = instances.filter(instance_id=instance_id)
            if not instances.exists():
                raise CommandError(f"No DCS instance with the id {instance_id!r}.")
        checked = written = 0
        for instance in instances.iterator(chunk_size=500):
            # One transaction per instance: a long run holds no lock for long.
            with transaction.atomic():
                written += detect_anomalies(instance=instance)
            checked += 1
        self.stdout.write(
            f"Checked {checked} instances; {written} backup records changed their anomaly flags."
        )
