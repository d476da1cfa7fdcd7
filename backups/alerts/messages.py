"""What an alert, its recovery and the daily digest say: subject, text and our JSON.

Times are exact UTC (``2026-11-26T12:00:00Z``), the same in every channel,
whoever reads it in whatever zone. Every link is absolute, from
DASHBOARD_BASE_URL, to the page the alert is about.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from backups.alerts.channels import Message
from backups.models import Alert, AlertDelivery, AlertKind
from backups.tables.columns import duration_text
from backups.templatetags.dashboard_tags import utc_z

PRODUCT = "DCS Backups"
# A chat tool caps a message (WeCom at 2,048 bytes): the text lists this many
# alerts per section; the JSON has them all.
DIGEST_LINES = 20


def absolute(path: str) -> str:
    return settings.DASHBOARD_BASE_URL + path


def alert_path(alert: Alert) -> str:
    """The page the alert concerns: the failed backup, else the instance."""
    try:
        if alert.kind == AlertKind.BACKUP_FAILED and alert.record is not None:
            return reverse("backups:backup-detail", args=[alert.record.backup_id])
        return reverse("backups:instance-detail", args=[alert.instance.instance_id])
    except NoReverseMatch:  # an id our URLs cannot carry: the alert list
        return reverse("backups:alert-list") + f"?instance={alert.instance.instance_id}"


def alert_url(alert: Alert) -> str:
    return absolute(alert_path(alert))


def alert_json(alert: Alert) -> dict[str, Any]:
    instance = alert.instance
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "kind_label": str(AlertKind(alert.kind).label) if alert.kind in AlertKind.values else alert.kind,
        "instance": {
            "id": instance.instance_id,
            "name": instance.name,
            "region": instance.region,
            "project_id": instance.project_id,
        },
        "summary": alert.summary,
        "url": alert_url(alert),
        "opened_at": utc_z(alert.opened_at),
        "resolved_at": utc_z(alert.resolved_at) if alert.resolved_at else None,
        "detail": alert.detail,
    }


def alert_message(alert: Alert, event: str) -> Message:
    url = alert_url(alert)
    if event == AlertDelivery.Event.RESOLVED:
        subject = _("[%(product)s] Recovered: %(summary)s") % {"product": PRODUCT, "summary": alert.summary}
        lines = [
            subject,
            _("Opened %(opened)s, recovered %(resolved)s (after %(duration)s).")
            % {
                "opened": utc_z(alert.opened_at),
                "resolved": utc_z(alert.resolved_at),
                "duration": duration_text(alert.resolved_at - alert.opened_at),
            },
        ]
    else:
        subject = _("[%(product)s] Alert: %(summary)s") % {"product": PRODUCT, "summary": alert.summary}
        lines = [subject, _("Opened %(opened)s.") % {"opened": utc_z(alert.opened_at)}]
    reason = alert.detail.get("resolved_because") if event == AlertDelivery.Event.RESOLVED else None
    if reason:
        lines.append(str(reason))
    lines.append(url)
    payload = {"event": event, **alert_json(alert)}
    # The documented generic shape: event, kind, instance, summary, url, opened_at, resolved_at.
    return Message(event=event, subject=subject, text="\n".join(lines), payload=payload)


def _digest_line(alert: Alert, *, now: datetime) -> str:
    if alert.resolved_at is None:
        state = _("open for %(duration)s") % {"duration": duration_text(now - alert.opened_at)}
    else:
        state = _("recovered %(resolved)s") % {"resolved": utc_z(alert.resolved_at)}
    return f"- {alert.summary} ({state}) {alert_url(alert)}"


def digest_message(
    *, now: datetime, open_now: list[Alert], opened: list[Alert], resolved: list[Alert]
) -> Message:
    subject = _(
        "[%(product)s] Daily digest %(date)s: %(open)d open, %(new)d new, %(recovered)d recovered"
    ) % {
        "product": PRODUCT,
        "date": now.date().isoformat(),
        "open": len(open_now),
        "new": len(opened),
        "recovered": len(resolved),
    }
    lines = [subject, ""]
    sections = (
        (_("Open now:"), open_now),
        (_("Opened in the last 24 hours:"), opened),
        (_("Recovered in the last 24 hours:"), resolved),
    )
    for title, alerts in sections:
        lines.append(str(title))
        lines.extend(_digest_line(alert, now=now) for alert in alerts[:DIGEST_LINES])
        if len(alerts) > DIGEST_LINES:
            lines.append("- " + _("… and %(n)d more") % {"n": len(alerts) - DIGEST_LINES})
        if not alerts:
            lines.append("- " + _("none"))
        lines.append("")
    lines.append(absolute(reverse("backups:alert-list")))
    payload = {
        "event": AlertDelivery.Event.DIGEST.value,
        "date": now.date().isoformat(),
        "generated_at": utc_z(now),
        "url": absolute(reverse("backups:alert-list")),
        "open_now": [alert_json(alert) for alert in open_now],
        "opened_last_24h": [alert_json(alert) for alert in opened],
        "resolved_last_24h": [alert_json(alert) for alert in resolved],
    }
    return Message(
        event=AlertDelivery.Event.DIGEST.value, subject=subject, text="\n".join(lines), payload=payload
    )
