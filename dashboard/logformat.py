"""Log formatting: one JSON object per line (``DASHBOARD_LOG_FORMAT=json``), and redaction.

The JSON formatter writes the fields a log shipper indexes (time in UTC,
level, logger, message, process) plus the structured facts some of our log
lines carry in ``extra`` (a sync run's counts ride as ``sync_run``). It never
writes the whole ``extra``: anything else a library attaches stays out, so a
request object or a settings dump cannot end up in the log by accident.

:class:`RedactSecretsFilter` is the second fence: whatever a message holds,
the configured SK and security token are replaced before it is written.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

# ``extra={...}`` keys copied into the JSON object; each holds plain values.
STRUCTURED_EXTRAS = ("sync_run", "retention", "export")
REDACTED = "[redacted]"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key in STRUCTURED_EXTRAS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _secrets() -> list[str]:
    try:
        from django.conf import settings

        values = [settings.DCS_SK, settings.DCS_SECURITY_TOKEN, settings.METRICS_TOKEN]
        # The alert webhook's URL carries a chat bot's token (urllib3 logs the
        # path and query alone, so those too); the SMTP password.
        webhook = getattr(settings, "DASHBOARD_ALERT_WEBHOOK_URL", "")
        values += [webhook, getattr(settings, "EMAIL_HOST_PASSWORD", "")]
        if webhook:
            parts = urlsplit(webhook)
            values += [f"{parts.path}?{parts.query}" if parts.query else parts.path]
    except Exception:  # settings not configured (yet): nothing to redact
        return []
    # Very short values would blank ordinary words; real ones are long.
    return [value for value in values if value and len(value) >= 8]


class RedactSecretsFilter(logging.Filter):
    """Replaces the SK, the security token and the metrics token in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _secrets()
        if not secrets:
            return True
        message = record.getMessage()
        cleaned = message
        for secret in secrets:
            cleaned = cleaned.replace(secret, REDACTED)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if any(secret in text for secret in secrets):
                for secret in secrets:
                    text = text.replace(secret, REDACTED)
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg}\n{text}"
        return True
