"""Enumerations of the DCS API, each value with its label and its colour.

Colour and meaning live here, not in templates: a badge column asks the enum.
The API may add a value later; such a value is stored and shown as received,
with the neutral colour, and never makes parsing fail.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from backups.dcs.error_codes import explain

NEUTRAL = "gray"


class ColoredChoices(models.TextChoices):
    """TextChoices whose members carry a colour (a CSS badge modifier)."""

    @classmethod
    def color_of(cls, value: str | None) -> str:
        return cls._colors().get(value or "", NEUTRAL)

    @classmethod
    def label_of(cls, value: str | None) -> str:
        if not value:
            return ""
        try:
            return str(cls(value).label)
        except ValueError:
            return value  # an enum value the API added later: shown as received

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {}


class BackupStatus(ColoredChoices):
    WAITING = "waiting", _("Waiting")
    BACKUPING = "backuping", _("Backing up")
    SUCCEED = "succeed", _("Succeeded")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired")
    DELETED = "deleted", _("Deleted")

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {
            cls.WAITING: "blue",
            cls.BACKUPING: "cyan",
            cls.SUCCEED: "green",
            cls.FAILED: "red",
            cls.EXPIRED: "orange",
            cls.DELETED: "gray",
        }

    @classmethod
    def active(cls) -> tuple[str, ...]:
        """Statuses of a backup that is still going, so its progress moves."""
        return (cls.WAITING.value, cls.BACKUPING.value)


class BackupType(ColoredChoices):
    AUTO = "auto", _("Automatic")
    MANUAL = "manual", _("Manual")

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {cls.AUTO: "indigo", cls.MANUAL: "purple"}


class BackupFormat(ColoredChoices):
    AOF = "aof", _("AOF")
    RDB = "rdb", _("RDB")

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {cls.AOF: "teal", cls.RDB: "blue"}


class SyncOutcome(ColoredChoices):
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    PARTIAL = "partial", _("Partial")
    FAILED = "failed", _("Failed")
    # Refused because another sync of the same scope held its lease: it did
    # nothing, so it says nothing about the data. Last, so that the choices of
    # SyncRun.outcome (models.RUN_OUTCOMES) keep their order and need no migration.
    SKIPPED = "skipped", _("Skipped")

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {
            cls.RUNNING: "cyan",
            cls.SUCCEEDED: "green",
            cls.PARTIAL: "orange",
            cls.FAILED: "red",
            cls.SKIPPED: NEUTRAL,
        }


# What error codes mean, and what a DBA can do next, is the catalogue of
# backups.dcs.error_codes; these two give just the meaning, for table cells.


def describe_error_code(code: str | None) -> str:
    """What a backup's error code (``dcs.08.*``) means, or "" when we do not know it."""
    explanation = explain(code)
    return str(explanation.meaning) if explanation else ""


def describe_api_error_code(code: str | None) -> str:
    """What an error code of the gateway or of DCS means, or "" when we do not know it.

    ``APIGW.0301`` is ``APIG.0301`` (both prefixes are in use), ``111404022`` is
    ``DCS.3022``; a backup's own ``dcs.08.*`` codes are described too.
    """
    return describe_error_code(code)


class RestoreStatus(ColoredChoices):
    """Status of a restore (ListRestoreRecords)."""

    WAITING = "waiting", _("Waiting")
    RESTORING = "restoring", _("Restoring")
    SUCCEED = "succeed", _("Succeeded")
    FAILED = "failed", _("Failed")

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {cls.WAITING: "blue", cls.RESTORING: "cyan", cls.SUCCEED: "green", cls.FAILED: "red"}

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.WAITING.value, cls.RESTORING.value)
