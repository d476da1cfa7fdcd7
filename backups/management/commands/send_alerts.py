"""``send_alerts [--digest [--force]] [--dry-run]``: evaluate the alerts and notify, now.

Beat runs the same every DASHBOARD_ALERT_EVERY_MINUTES (and after each fleet
sync); this is for trying the channels, or for a deployment without beat.
``--digest`` sends the daily digest instead, when it is due and not sent
today (``--force``: now, again). ``--dry-run`` says what would open, resolve
and be sent, and writes and sends nothing.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from backups.alerts.channels import configured_channels
from backups.alerts.digest import send_digest
from backups.alerts.evaluate import evaluate_alerts


class Command(BaseCommand):
    help = "Evaluate the alerts and send pending notifications, or the daily digest with --digest."

    def add_arguments(self, parser):
        parser.add_argument("--digest", action="store_true", help="Send the daily digest instead.")
        parser.add_argument(
            "--force", action="store_true", help="With --digest: send it now, even if sent today."
        )
        parser.add_argument("--dry-run", action="store_true", help="Say what would happen; change nothing.")

    def handle(self, *args, **options):
        if options["force"] and not options["digest"]:
            raise CommandError("--force goes with --digest")
        channels = configured_channels()
        if not channels:
            self.stdout.write(
                "No channel is configured (DASHBOARD_ALERT_EMAILS, DASHBOARD_ALERT_WEBHOOK_URL): "
                "alerts are recorded, nothing is sent."
            )
        if options["digest"]:
            self._digest(channels, dry_run=options["dry_run"], force=options["force"])
        else:
            self._evaluate(channels, dry_run=options["dry_run"])

    def _evaluate(self, channels, *, dry_run: bool) -> None:
        evaluation = evaluate_alerts(channels=channels, dry_run=dry_run)
        if dry_run:
            for change in evaluation.changes:
                self.stdout.write(f"Would {change.describe()}")
            for alert, event, channel in evaluation.deliveries.pending:
                self.stdout.write(
                    f"Would send {event} of alert {alert.pk} via {channel.name} to {channel.target}"
                )
            if not evaluation.changes and not evaluation.deliveries.pending:
                self.stdout.write("Nothing would change and nothing is pending.")
            return
        counts = evaluation.as_dict()
        self.stdout.write(
            "Alerts: {opened} opened, {updated} updated, {resolved} resolved; "
            "notifications: {sent} sent, {failed} failed.".format(**counts)
        )
        if evaluation.deliveries.busy:
            self.stdout.write("Another evaluation is sending notifications: none were sent here.")

    def _digest(self, channels, *, dry_run: bool, force: bool) -> None:
        report = send_digest(channels=channels, dry_run=dry_run, force=force)
        if not report.due:
            self.stdout.write("The digest is not due yet (DASHBOARD_ALERT_DIGEST_HOUR, UTC), or it is off.")
            return
        if dry_run:
            self.stdout.write(report.message.text if report.message else "")
            return
        if report.busy:
            self.stdout.write("Another process is sending the digest.")
            return
        for name in report.done:
            self.stdout.write(f"Today's digest was already sent via {name}.")
        self.stdout.write(f"Digest: {report.sent} sent, {report.failed} failed.")
