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


# Error codes a sync meets when it lists instances and backups (dcs-api.md §3),
# said in a line, with what to check when it is ours to fix. The gateway's
# codes (APIG.*) come first, then those of DCS itself.
API_ERROR_CODES: dict[str, str] = {
    "APIG.0101": _("The API does not exist or is not published here: check the region's endpoint."),
    "APIG.0201": _("The gateway refused the request, or its backend was unavailable or timed out."),
    "APIG.0301": _(
        "Authentication failed: check the access key and secret key, and that this server's clock "
        "is within 15 minutes of the cloud's. After 5 failures in a row the key is locked for 5 minutes."
    ),
    "APIG.0302": _("The IAM user is not allowed to call this API."),
    "APIG.0303": _("App authentication failed, or the signature expired (clock skew over 15 minutes)."),
    "APIG.0304": _("The app is not allowed to call this API."),
    "APIG.0305": _("Authentication failed."),
    "APIG.0306": _("The gateway denied access to this API."),
    "APIG.0307": _("The token must be renewed."),
    "APIG.0308": _(
        "Throttled: the gateway's rate limit was reached. The sync waits and retries; "
        "lower DCS_RATE_LIMIT if it persists."
    ),
    "APIG.0310": _("The project is unavailable."),
    "APIG.0401": _("The gateway does not know this server's IP address."),
    "APIG.0402": _("This server's IP address is not allowed to call the API."),
    "APIG.0601": _("An internal error of the gateway."),
    "APIG.0613": _("IAM is unavailable: the gateway could not check the credentials."),
    "APIG.0802": _("The IAM user is forbidden in this region."),
    "DCS.1001": _("The token is invalid."),
    "DCS.1002": _("The token expired."),
    "DCS.1003": _("The request carried no token."),
    "DCS.1004": _("The project id does not match the credentials."),
    "DCS.2003": _("The credentials' role lacks the permission."),
    "DCS.2007": _("A policy does not allow this operation."),
    "DCS.3002": _("The account has read-only permission."),
    "DCS.3003": _("The credentials' role lacks the permission."),
    "DCS.3022": _("The instance does not exist: it was probably deleted since it was listed."),
    "DCS.4001": _("The requested URL does not exist."),
    "DCS.4002": _("The project id is not valid."),
    "DCS.4061": _("The instance id is not valid."),
    "DCS.4062": _("A request parameter is not valid."),
    "DCS.4063": _("A request parameter is not valid."),
    "DCS.4119": _("The instance does not exist."),
    "DCS.4800": _("A request parameter is not valid (for example the paging offset)."),
    "DCS.5000": _("An internal error of the DCS service."),
    "DCS.5001": _("The method is not allowed."),
    "DCS.5078": _("DCS failed to query the backup records."),
}
# The old numeric forms of the same codes.
_NUMERIC_API_CODES = {
    "111400002": "DCS.4002",
    "111400061": "DCS.4061",
    "111400062": "DCS.4062",
    "111400063": "DCS.4063",
    "111400119": "DCS.4119",
    "111400800": "DCS.4800",
    "111401001": "DCS.1001",
    "111401002": "DCS.1002",
    "111401003": "DCS.1003",
    "111401004": "DCS.1004",
    "111403002": "DCS.3002",
    "111403003": "DCS.3003",
    "111404001": "DCS.4001",
    "111404022": "DCS.3022",
    "111405001": "DCS.5001",
    "111500000": "DCS.5000",
}


def describe_api_error_code(code: str | None) -> str:
    """What an error code of the gateway or of DCS means, or "" when we do not know it.

    ``APIGW.0301`` is ``APIG.0301`` (both prefixes are in use), ``111404022`` is
    ``DCS.3022``; a backup's own ``dcs.08.*`` codes are described too.
    """
    if not code:
        return ""
    key = code.strip().upper()
    if key.startswith("APIGW."):
        key = "APIG." + key.removeprefix("APIGW.")
    key = _NUMERIC_API_CODES.get(key, key)
    meaning = API_ERROR_CODES.get(key)
    return str(meaning) if meaning else describe_error_code(code)


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
