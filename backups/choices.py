"""Enumerations of the DCS API, each value with its label and its colour.

Colour and meaning live here, not in templates: a badge column asks the enum.
The API may add a value later; such a value is stored and shown as received,
with the neutral colour, and never makes parsing fail.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

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

    @classmethod
    def _colors(cls) -> dict[str, str]:
        return {cls.RUNNING: "cyan", cls.SUCCEEDED: "green", cls.PARTIAL: "orange", cls.FAILED: "red"}


# Failure codes of a backup (dcs-api.md §1.3), with what a DBA can do next.
BACKUP_ERROR_CODES: dict[str, str] = {
    "dcs.08.0001": _("The backup/restore tool failed to start."),
    "dcs.08.0002": _("The backup timed out."),
    "dcs.08.0003": _("Deleting the storage bucket failed."),
    "dcs.08.0004": _("Obtaining the AK/SK failed."),
    "dcs.08.0005": _("Creating the storage bucket failed."),
    "dcs.08.0006": _("Querying the backup data size failed."),
    "dcs.08.0007": _("Data synchronisation failed during restore."),
    "dcs.08.0008": _("The scheduled backup did not run: the instance was running another task."),
}


def describe_error_code(code: str | None) -> str:
    if not code:
        return ""
    return str(BACKUP_ERROR_CODES.get(code.lower(), ""))
