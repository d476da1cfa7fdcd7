"""Opening and resolving alerts, and notifying each change once per channel.

Two kinds (``AlertKind``), one open alert per key at most (the partial unique
constraint ``uniq_open_alert``):

- ``rpo:<instance pk>``: the instance is at risk (``selectors.with_risk``:
  no success within its RPO, or none ever). Resolved once it is not: a
  backup succeeded, or it is gone or single-node.
- ``backup_failed:<instance pk>``: the instance's newest finished backup
  failed. Repeated failures update the same alert (its record and detail)
  and notify nothing new; a newer backup that succeeds resolves it. Only
  backups created within DASHBOARD_ALERT_LOOKBACK_HOURS open one, so the
  first sync of years of history pages nobody for an old failure.

Evaluations may run at once (beat, the hook after a fleet sync, the
command): opening is an INSERT that one of them wins (the other's
IntegrityError is caught in a savepoint), resolving a conditional UPDATE.
Notifying is a separate step under a lease: every opening and recovery of
the last lookback window that has no delivered ``AlertDelivery`` on a
channel is sent there, and a failed one is tried again at the next
evaluation, DASHBOARD_ALERT_MAX_ATTEMPTS times in all.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from backups import locks
from backups.alerts.channels import Channel, DeliveryFailed, configured_channels
from backups.alerts.messages import alert_message
from backups.choices import BackupStatus
from backups.models import Alert, AlertDelivery, AlertKind, BackupRecord, DcsInstance
from backups.selectors import at_risk_threshold, with_risk
from backups.tables.columns import duration_text
from backups.templatetags.dashboard_tags import utc_z

logger = logging.getLogger(__name__)

OPEN, UPDATE, RESOLVE = "open", "update", "resolve"
DELIVER_LEASE = "alerts:deliver"
LEASE_TTL = 300.0
FINISHED = (BackupStatus.SUCCEED.value, BackupStatus.FAILED.value)


def rpo_key(instance_pk: int) -> str:
    return f"rpo:{instance_pk}"


def failed_key(instance_pk: int) -> str:
    return f"backup_failed:{instance_pk}"


def lookback() -> timedelta:
    return timedelta(hours=settings.DASHBOARD_ALERT_LOOKBACK_HOURS)


@dataclass
class Change:
    """One thing an evaluation does (or, in a dry run, would do)."""

    action: str
    kind: str
    key: str
    instance: DcsInstance
    summary: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    record: BackupRecord | None = None
    alert: Alert | None = None

    def describe(self) -> str:
        return f"{self.action} {self.key}: {self.summary or (self.alert.summary if self.alert else '')}"


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    # Another evaluation holds the lease and delivers; nothing was sent here.
    busy: bool = False
    pending: list[tuple[Alert, str, Channel]] = field(default_factory=list)


@dataclass
class Evaluation:
    changes: list[Change] = field(default_factory=list)
    opened: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    deliveries: DeliveryReport = field(default_factory=DeliveryReport)

    def as_dict(self) -> dict[str, Any]:
        return {
            "opened": len(self.opened),
            "updated": len(self.updated),
            "resolved": len(self.resolved),
            "sent": self.deliveries.sent,
            "failed": self.deliveries.failed,
            "busy": self.deliveries.busy,
        }


def _name(instance: DcsInstance) -> str:
    return f"{instance.name} ({instance.instance_id})" if instance.name else instance.instance_id


def _seconds(value) -> Any:
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return value


# --- RPO ----------------------------------------------------------------------------


def _rpo_change(instance: DcsInstance, *, with_overdue: bool) -> Change:
    # The RPO the selector compared with (per-instance policies), else the stored one or the default.
    rpo = getattr(instance, "effective_rpo", None) or instance.rpo or at_risk_threshold()
    if instance.last_success_at is None:
        summary = _("%(instance)s has never had a successful backup (RPO %(rpo)s)")
    else:
        summary = _("%(instance)s has no successful backup within its RPO of %(rpo)s")
    detail: dict[str, Any] = {
        "rpo_seconds": int(rpo.total_seconds()),
        "last_success_at": utc_z(instance.last_success_at) if instance.last_success_at else None,
    }
    if with_overdue:
        detail["overdue"] = _seconds(getattr(instance, "overdue", None))
    return Change(
        OPEN,
        AlertKind.RPO,
        rpo_key(instance.pk),
        instance,
        summary=str(summary % {"instance": _name(instance), "rpo": duration_text(rpo)}),
        detail=detail,
    )


def _rpo_recovery(alert: Alert) -> str:
    instance = alert.instance
    if instance.gone_at is not None:
        return _("The instance is no longer listed by the API.")
    if instance.is_single_node:
        return _("The instance is single-node: it has no backups to watch.")
    if instance.last_success_at is not None:
        return _("A backup succeeded at %(time)s.") % {"time": utc_z(instance.last_success_at)}
    return _("The instance is within its RPO again.")


def plan_rpo(*, now: datetime) -> list[Change]:
    # Not the raw JSON: after an outage most of a big fleet is at risk at once.
    risky = with_risk(DcsInstance.objects.defer("raw").order_by(), now=now).filter(at_risk=True)
    with_overdue = "overdue" in risky.query.annotations
    at_risk = {instance.pk: instance for instance in risky}
    open_alerts = {
        alert.instance_id: alert
        for alert in Alert.objects.filter(kind=AlertKind.RPO, resolved_at=None)
        .select_related("instance")
        .defer("instance__raw")
    }
    changes = [
        _rpo_change(instance, with_overdue=with_overdue)
        for pk, instance in at_risk.items()
        if pk not in open_alerts
    ]
    for instance_pk, alert in open_alerts.items():
        if instance_pk not in at_risk:
            changes.append(
                Change(
                    RESOLVE, alert.kind, alert.key, alert.instance, alert=alert, summary=_rpo_recovery(alert)
                )
            )
    return changes


# --- Failed backups ---------------------------------------------------------------


def _failure_detail(record: BackupRecord, *, failures: int) -> dict[str, Any]:
    return {
        "backup_id": record.backup_id,
        "backup_name": record.backup_name,
        "error_code": record.error_code,
        "created_at": utc_z(record.created_at) if record.created_at else None,
        "failures": failures,
    }


def plan_failures(*, now: datetime) -> list[Change]:
    cutoff = now - lookback()
    # The failed backups of the lookback window (the status index), and the
    # instances with an open alert: the only ones that can change.
    recent = BackupRecord.objects.filter(status=BackupStatus.FAILED, created_at__gte=cutoff).order_by()
    open_alerts = {
        alert.instance_id: alert
        for alert in Alert.objects.filter(kind=AlertKind.BACKUP_FAILED, resolved_at=None)
    }
    candidates = set(recent.values_list("instance_id", flat=True).distinct()) | set(open_alerts)
    if not candidates:
        return []
    newest_finished = (
        BackupRecord.objects.filter(instance=OuterRef("pk"), status__in=FINISHED, created_at__isnull=False)
        .order_by("-created_at", "-id")
        .values("pk")[:1]
    )
    instances = list(
        DcsInstance.objects.filter(pk__in=candidates)
        .defer("raw")
        .annotate(newest_finished_pk=Subquery(newest_finished))
    )
    records = BackupRecord.objects.defer("raw").in_bulk(
        [i.newest_finished_pk for i in instances if i.newest_finished_pk]
    )
    changes = []
    for instance in instances:
        record = records.get(instance.newest_finished_pk)
        alert = open_alerts.get(instance.pk)
        if alert is not None:
            alert.instance = instance
            if instance.gone_at is not None:
                reason = _("The instance is no longer listed by the API.")
                changes.append(Change(RESOLVE, alert.kind, alert.key, instance, alert=alert, summary=reason))
            elif record is not None and record.status == BackupStatus.SUCCEED:
                reason = _("Backup %(backup)s succeeded at %(time)s.") % {
                    "backup": record.backup_name or record.backup_id,
                    "time": utc_z(record.updated_at or record.created_at),
                }
                changes.append(
                    Change(
                        RESOLVE, alert.kind, alert.key, instance, alert=alert, summary=reason, record=record
                    )
                )
            elif record is not None and record.pk != alert.record_id:
                failures = int(alert.detail.get("failures", 1)) + 1
                changes.append(
                    Change(
                        UPDATE,
                        alert.kind,
                        alert.key,
                        instance,
                        alert=alert,
                        record=record,
                        summary=alert.summary,
                        detail={**alert.detail, **_failure_detail(record, failures=failures)},
                    )
                )
        elif (
            record is not None
            and record.status == BackupStatus.FAILED
            and record.created_at >= cutoff
            and instance.gone_at is None
        ):
            summary = _("Backup %(backup)s of %(instance)s failed") % {
                "backup": record.backup_name or record.backup_id,
                "instance": _name(instance),
            }
            if record.error_code:
                summary = f"{summary} ({record.error_code})"
            changes.append(
                Change(
                    OPEN,
                    AlertKind.BACKUP_FAILED,
                    failed_key(instance.pk),
                    instance,
                    record=record,
                    summary=str(summary),
                    detail=_failure_detail(record, failures=1),
                )
            )
    return changes


# --- Applying -----------------------------------------------------------------------


def apply_changes(changes: list[Change], *, now: datetime, evaluation: Evaluation) -> None:
    for change in changes:
        if change.action == OPEN:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        kind=change.kind,
                        key=change.key,
                        instance=change.instance,
                        record=change.record,
                        summary=change.summary[:500],
                        detail=change.detail,
                        opened_at=now,
                    )
            except IntegrityError:
                # Another evaluation opened it a moment ago: that one is the alert.
                continue
            evaluation.opened.append(alert)
        elif change.action == UPDATE:
            alert = change.alert
            if Alert.objects.filter(pk=alert.pk, resolved_at=None).update(
                record=change.record, detail=change.detail
            ):
                alert.record, alert.detail = change.record, change.detail
                evaluation.updated.append(alert)
        elif change.action == RESOLVE:
            alert = change.alert
            detail = {**alert.detail, "resolved_because": change.summary}
            # Only the evaluation whose UPDATE finds it still open resolves it.
            if Alert.objects.filter(pk=alert.pk, resolved_at=None).update(resolved_at=now, detail=detail):
                alert.resolved_at, alert.detail = now, detail
                evaluation.resolved.append(alert)


# --- Notifying ----------------------------------------------------------------------


def pending_deliveries(*, now: datetime, channels: list[Channel]) -> list[tuple[Alert, str, Channel]]:
    """Each (alert, event, channel) of the lookback window not delivered yet, nor tried too often."""
    if not channels:
        return []
    since = now - lookback()
    cap = settings.DASHBOARD_ALERT_MAX_ATTEMPTS
    alerts = (
        Alert.objects.filter(Q(opened_at__gte=since) | Q(resolved_at__gte=since))
        .select_related("instance", "record")
        .defer("instance__raw", "record__raw")
        .prefetch_related("deliveries")
        .order_by("opened_at", "id")
    )
    pending = []
    for alert in alerts:
        events = []
        if alert.opened_at >= since:
            events.append(AlertDelivery.Event.OPENED.value)
        if alert.resolved_at is not None and alert.resolved_at >= since:
            events.append(AlertDelivery.Event.RESOLVED.value)
        for event in events:
            for channel in channels:
                tries = [d for d in alert.deliveries.all() if d.event == event and d.channel == channel.name]
                if any(d.ok for d in tries) or len(tries) >= cap:
                    continue
                pending.append((alert, event, channel))
    return pending


def deliver(channel: Channel, message, *, alert: Alert | None, now: datetime) -> AlertDelivery:
    """Send one message on one channel and record the attempt, delivered or not."""
    error = ""
    try:
        channel.send(message)
    except DeliveryFailed as exc:
        error = str(exc) or "failed"
    delivery = AlertDelivery.objects.create(
        alert=alert,
        event=message.event,
        channel=channel.name,
        target=channel.target[:255],
        sent_at=now,
        ok=not error,
        error=error,
    )
    if error:
        logger.warning(
            "alert %s %s via %s to %s failed: %s",
            alert.pk if alert else "digest",
            message.event,
            channel.name,
            channel.target,
            error,
        )
    return delivery


def deliver_pending(
    *, now: datetime, channels: list[Channel] | None = None, dry_run: bool = False
) -> DeliveryReport:
    channels = configured_channels() if channels is None else channels
    report = DeliveryReport()
    if not channels:
        return report
    if dry_run:
        report.pending = pending_deliveries(now=now, channels=channels)
        return report
    # Two evaluations at once would each find the same deliveries pending.
    lease = locks.acquire(DELIVER_LEASE, holder=f"alerts-{uuid.uuid4().hex[:12]}", ttl=LEASE_TTL)
    if lease is None:
        report.busy = True
        return report
    with lease:
        report.pending = pending_deliveries(now=now, channels=channels)
        for alert, event, channel in report.pending:
            lease.keep_alive()
            delivery = deliver(channel, alert_message(alert, event), alert=alert, now=now)
            if delivery.ok:
                report.sent += 1
            else:
                report.failed += 1
    return report


def evaluate_alerts(
    *, now: datetime | None = None, dry_run: bool = False, channels: list[Channel] | None = None
) -> Evaluation:
    """Open, update and resolve alerts as the data says, then notify what is pending."""
    now = now or timezone.now()
    evaluation = Evaluation(changes=plan_rpo(now=now) + plan_failures(now=now))
    if not dry_run:
        apply_changes(evaluation.changes, now=now, evaluation=evaluation)
    evaluation.deliveries = deliver_pending(now=now, channels=channels, dry_run=dry_run)
    if evaluation.opened or evaluation.resolved or evaluation.deliveries.failed:
        logger.info(
            "alerts opened=%d updated=%d resolved=%d sent=%d failed=%d",
            len(evaluation.opened),
            len(evaluation.updated),
            len(evaluation.resolved),
            evaluation.deliveries.sent,
            evaluation.deliveries.failed,
        )
    return evaluation
