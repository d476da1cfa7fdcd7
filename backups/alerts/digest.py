"""The daily digest: one message per channel with what is open now and what
opened or recovered in the last 24 hours.

Beat asks every quarter hour; the digest goes at the first check at or after
DASHBOARD_ALERT_DIGEST_HOUR (UTC), once per UTC day and channel: a delivered
``AlertDelivery(event=digest)`` of that day says it went. It is sent even when
there is nothing to report, so that a quiet day is told from a broken one. A
failed digest is tried again at the next checks of the day, up to
DASHBOARD_ALERT_MAX_ATTEMPTS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from backups import locks
from backups.alerts.channels import Channel, Message, configured_channels
from backups.alerts.evaluate import LEASE_TTL, deliver
from backups.alerts.messages import digest_message
from backups.models import Alert, AlertDelivery

DIGEST_LEASE = "alerts:digest"
DIGEST_PERIOD = timedelta(hours=24)


@dataclass
class DigestReport:
    due: bool = False
    sent: int = 0
    failed: int = 0
    busy: bool = False
    # Channels that already had today's digest (or used up their attempts).
    done: list[str] = field(default_factory=list)
    message: Message | None = None


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def build_digest(*, now: datetime) -> Message:
    since = now - DIGEST_PERIOD
    alerts = Alert.objects.select_related("instance", "record").defer("instance__raw", "record__raw")
    return digest_message(
        now=now,
        open_now=list(alerts.filter(resolved_at=None).order_by("opened_at", "id")),
        opened=list(alerts.filter(opened_at__gte=since).order_by("opened_at", "id")),
        resolved=list(alerts.filter(resolved_at__gte=since).order_by("resolved_at", "id")),
    )


def _channels_due(channels: list[Channel], *, now: datetime) -> tuple[list[Channel], list[str]]:
    start = day_start(now)
    today = AlertDelivery.objects.filter(event=AlertDelivery.Event.DIGEST, alert=None, sent_at__gte=start)
    tries: dict[str, list[bool]] = {}
    for channel_name, ok in today.values_list("channel", "ok"):
        tries.setdefault(channel_name, []).append(ok)
    due, done = [], []
    for channel in channels:
        seen = tries.get(channel.name, [])
        if any(seen) or len(seen) >= settings.DASHBOARD_ALERT_MAX_ATTEMPTS:
            done.append(channel.name)
        else:
            due.append(channel)
    return due, done


def send_digest(
    *,
    now: datetime | None = None,
    channels: list[Channel] | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> DigestReport:
    """Send today's digest on each channel that has not had it; ``force``: now, whatever was sent."""
    now = now or timezone.now()
    channels = configured_channels() if channels is None else channels
    report = DigestReport()
    hour_passed = now.astimezone(UTC).hour >= settings.DASHBOARD_ALERT_DIGEST_HOUR
    report.due = force or (settings.DASHBOARD_ALERT_DIGEST and hour_passed)
    if not report.due:
        return report
    if dry_run:
        report.message = build_digest(now=now)
        return report
    if not channels:
        return report
    lease = locks.acquire(DIGEST_LEASE, holder=f"digest-{uuid.uuid4().hex[:12]}", ttl=LEASE_TTL)
    if lease is None:
        report.busy = True
        return report
    with lease:
        if force:
            due, report.done = channels, []
        else:
            due, report.done = _channels_due(channels, now=now)
        if not due:
            return report
        report.message = build_digest(now=now)
        for channel in due:
            lease.keep_alive()
            delivery = deliver(channel, report.message, alert=None, now=now)
            if delivery.ok:
                report.sent += 1
            else:
                report.failed += 1
    return report
