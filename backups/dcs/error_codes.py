"""Every error code the DCS API and its gateway are known to return, explained.

Three families (dcs-api.md §1.3, §3.2 and §3.3):

- a backup's own failure codes, ``dcs.08.0001`` to ``dcs.08.0008``, in the
  ``error_code`` field of a failed backup record;
- the codes of DCS itself, ``DCS.xxxx``, most of them also known by an older
  numeric form (``111404022`` is ``DCS.3022``);
- the API gateway's codes, ``APIG.xxxx``, which Huawei's signing guide writes
  ``APIGW.xxxx``: both are accepted.

Each code carries what it means and what a DBA can do next. The meanings of
codes the dashboard explained before this catalogue keep their exact wording,
so their translations still apply.

:func:`explain` finds a code whatever its case and surrounding whitespace; a
code we do not know is ``None``, and a page shows it as received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

BACKUP = "backup"
DCS = "dcs"
GATEWAY = "gateway"

FAMILY_LABELS = {
    BACKUP: _("Backup failure codes"),
    DCS: _("DCS API codes"),
    GATEWAY: _("API gateway codes"),
}


@dataclass(frozen=True)
class Explanation:
    code: str  # the canonical spelling: dcs.08.0002, DCS.3022, APIG.0308
    family: str  # BACKUP, DCS or GATEWAY
    meaning: Promise | str
    next_step: Promise | str
    http_status: str = ""  # "404", "400 / 413": as documented, for the API codes
    aliases: tuple[str, ...] = ()  # other spellings: the old numeric codes
    # The cloud says "busy, try again later": a sync or a retry will do.
    transient: bool = False

    @property
    def family_label(self) -> str:
        return str(FAMILY_LABELS[self.family])


_RETRY_LATER = _("Wait for the instance's current task to finish, then try again; nothing is wrong with it.")
_CHECK_ROLE = _(
    "Check the IAM permissions of the account whose keys the dashboard uses (DCS read-only "
    "access is enough for listing): ask the cloud account's administrator."
)
_CHECK_KEYS = _(
    "Check HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, that the key is enabled in IAM, and that this "
    "server's clock is right (NTP)."
)
_CHECK_PROJECT = _("Check the project ids in DCS_PROJECTS against the console (My Credentials → Projects).")
_GONE = _(
    "If the instance was deleted, nothing needs doing: the dashboard keeps its history and marks it "
    "gone at the next full sync. Otherwise check its project and region."
)
_OURS = _(
    "A request the dashboard built was refused: report it to the dashboard's maintainers, "
    "with the request id."
)
_CLOUD_SIDE = _(
    "A fault on the cloud's side: the next sync retries. If it persists, check Huawei Cloud's service "
    "health page and open a ticket with the request id."
)


def _busy(code: str, meaning, numeric: str = "") -> Explanation:
    return Explanation(
        code, DCS, meaning, _RETRY_LATER, "400", aliases=(numeric,) if numeric else (), transient=True
    )


CATALOGUE: tuple[Explanation, ...] = (
    # --- A backup's failure codes (dcs-api.md §1.3) ---------------------------------
    Explanation(
        "dcs.08.0001",
        BACKUP,
        _("The backup/restore tool failed to start."),
        _(
            "Run a manual backup. If it fails the same way, the instance's backup agent is down: "
            "open a Huawei Cloud ticket with the instance id and the backup id."
        ),
    ),
    Explanation(
        "dcs.08.0002",
        BACKUP,
        _("The backup timed out."),
        _(
            "Check whether the data set grew or the instance was under heavy load at that time; "
            "move the backup window to a quieter hour and run a manual backup."
        ),
    ),
    Explanation(
        "dcs.08.0003",
        BACKUP,
        _("Deleting the storage bucket failed."),
        _("A fault of the cloud's backup storage: retry; if it persists, open a Huawei Cloud ticket."),
    ),
    Explanation(
        "dcs.08.0004",
        BACKUP,
        _("Obtaining the AK/SK failed."),
        _(
            "The DCS service could not get credentials for the backup storage: check that the "
            "DCS service agency (IAM agency) of the project still exists, then retry."
        ),
    ),
    Explanation(
        "dcs.08.0005",
        BACKUP,
        _("Creating the storage bucket failed."),
        _(
            "Check the project's OBS quota and that OBS is available in the region, then run a "
            "manual backup; if it persists, open a Huawei Cloud ticket."
        ),
    ),
    Explanation(
        "dcs.08.0006",
        BACKUP,
        _("Querying the backup data size failed."),
        _("Usually transient: run a manual backup; if the next scheduled one fails too, open a ticket."),
    ),
    Explanation(
        "dcs.08.0007",
        BACKUP,
        _("Data synchronisation failed during restore."),
        _(
            "The restore did not complete: check the instance's data before using it, and restore "
            "again from the same or an earlier backup."
        ),
    ),
    Explanation(
        "dcs.08.0008",
        BACKUP,
        _("The scheduled backup did not run: the instance was running another task."),
        _(
            "Check what ran at that time (a resize, a restart, a manual backup) and, if it recurs, "
            "move the backup window; run a manual backup now if the last success is old."
        ),
        transient=True,
    ),
    # --- DCS (dcs-api.md §3.2) ------------------------------------------------------
    Explanation(
        "DCS.1001",
        DCS,
        _("The token is invalid."),
        _CHECK_KEYS,
        "401",
        aliases=("111401001",),
    ),
    Explanation("DCS.1002", DCS, _("The token expired."), _CHECK_KEYS, "401", aliases=("111401002",)),
    Explanation(
        "DCS.1003", DCS, _("The request carried no token."), _CHECK_KEYS, "401", aliases=("111401003",)
    ),
    Explanation(
        "DCS.1004",
        DCS,
        _("The project id does not match the credentials."),
        _CHECK_PROJECT,
        "401",
        aliases=("111401004",),
    ),
    Explanation("DCS.2003", DCS, _("The credentials' role lacks the permission."), _CHECK_ROLE, "403"),
    Explanation("DCS.2007", DCS, _("A policy does not allow this operation."), _CHECK_ROLE, "403"),
    Explanation(
        "DCS.3002",
        DCS,
        _("The account has read-only permission."),
        _(
            "Listing needs only read access, so this came from a write (a manual backup or a restore): "
            "ask the cloud account's administrator for DCS write permission."
        ),
        "403",
        aliases=("111403002",),
    ),
    Explanation(
        "DCS.3003",
        DCS,
        _("The credentials' role lacks the permission."),
        _CHECK_ROLE,
        "403",
        aliases=("111403003",),
    ),
    Explanation(
        "DCS.3022",
        DCS,
        _("The instance does not exist: it was probably deleted since it was listed."),
        _GONE,
        "404",
        aliases=("111404022",),
    ),
    Explanation(
        "DCS.4001", DCS, _("The requested URL does not exist."), _OURS, "404", aliases=("111404001",)
    ),
    Explanation(
        "DCS.4002", DCS, _("The project id is not valid."), _CHECK_PROJECT, "400", aliases=("111400002",)
    ),
    Explanation("DCS.4004", DCS, _("The request body is empty."), _OURS, "400", aliases=("111400004",)),
    Explanation(
        "DCS.4005",
        DCS,
        _("The request body is not JSON, or holds characters that are not allowed."),
        _OURS,
        "400",
        aliases=("111400005",),
    ),
    _busy("DCS.4017", _("A background job of the instance is still running."), "111400017"),
    Explanation("DCS.4025", DCS, _("The end time must be after the start time."), _OURS, "400"),
    _busy("DCS.4026", _("The operation is not allowed in the instance's current state."), "111400026"),
    _busy("DCS.4049", _("The instance is not running."), ""),
    Explanation("DCS.4061", DCS, _("The instance id is not valid."), _OURS, "400", aliases=("111400061",)),
    Explanation(
        "DCS.4062", DCS, _("A request parameter is not valid."), _OURS, "400", aliases=("111400062",)
    ),
    Explanation(
        "DCS.4063", DCS, _("A request parameter is not valid."), _OURS, "400", aliases=("111400063",)
    ),
    Explanation(
        "DCS.4086",
        DCS,
        _("The operation is allowed for master/standby instances only."),
        _(
            "Single-node instances cannot be backed up or restored: move the data to a master/standby "
            "or cluster instance if it needs backups."
        ),
        "400",
        aliases=("111400086",),
    ),
    Explanation(
        "DCS.4087",
        DCS,
        _("A restore is allowed only from a backup that succeeded."),
        _("Pick a backup whose status is Succeeded (the backup list can filter by status)."),
        "400",
        aliases=("111400087",),
    ),
    Explanation(
        "DCS.4095",
        DCS,
        _("The system does not support backup and restore."),
        _("This instance type or region offers no backups: check the instance's specification."),
        "400",
        aliases=("111400095",),
    ),
    _busy("DCS.4096", _("The instance is already backing up."), "111400096"),
    _busy("DCS.4097", _("The instance is restoring."), "111400097"),
    Explanation(
        "DCS.4098",
        DCS,
        _("The remark must be 0 to 128 characters long."),
        _("Shorten the backup's remark to 128 characters at most."),
        "400",
        aliases=("111400098",),
    ),
    Explanation(
        "DCS.4101",
        DCS,
        _("Deleting the backup file failed."),
        _CLOUD_SIDE,
        "500",
        aliases=("111400101",),
    ),
    _busy("DCS.4111", _("The instance is busy restarting.")),
    _busy("DCS.4113", _("The instance is busy being extended.")),
    _busy("DCS.4114", _("The instance is busy being configured.")),
    _busy("DCS.4115", _("The instance is busy changing its password.")),
    _busy("DCS.4116", _("The instance is busy being upgraded.")),
    _busy("DCS.4117", _("The instance is busy rolling back.")),
    _busy("DCS.4118", _("The instance is busy being created.")),
    Explanation("DCS.4119", DCS, _("The instance does not exist."), _GONE, "400", aliases=("111400119",)),
    _busy("DCS.4120", _("The instance is busy being frozen.")),
    # Terraform's provider retries these as "busy" too; DCS documents no meaning.
    _busy("DCS.4121", _("The instance is busy (retried as such by Huawei Cloud's Terraform provider).")),
    _busy("DCS.4231", _("The instance is busy (retried as such by Huawei Cloud's Terraform provider).")),
    _busy("DCS.4975", _("The instance is busy (retried as such by Huawei Cloud's Terraform provider).")),
    Explanation(
        "DCS.4800",
        DCS,
        _("A request parameter is not valid (for example the paging offset)."),
        _OURS,
        "400",
        aliases=("111400800",),
    ),
    Explanation(
        "DCS.5000",
        DCS,
        _("An internal error of the DCS service."),
        _CLOUD_SIDE,
        "500",
        aliases=("111500000",),
    ),
    Explanation("DCS.5001", DCS, _("The method is not allowed."), _OURS, "405", aliases=("111405001",)),
    Explanation("DCS.5078", DCS, _("DCS failed to query the backup records."), _CLOUD_SIDE, "500"),
    Explanation(
        "DCS.8001",
        DCS,
        _("DCS failed to get the order id."),
        _(
            "A billing-side fault of a paid operation: retry later; if it persists, "
            "open a Huawei Cloud ticket."
        ),
    ),
    # --- The API gateway (dcs-api.md §3.3) -------------------------------------------
    Explanation(
        "APIG.0101",
        GATEWAY,
        _("The API does not exist or is not published here: check the region's endpoint."),
        _("Check the region names in DCS_PROJECTS and any DCS_ENDPOINT override."),
        "404",
    ),
    Explanation(
        "APIG.0201",
        GATEWAY,
        _("The gateway refused the request, or its backend was unavailable or timed out."),
        _("Usually transient (backend unavailable or timed out): the next sync retries."),
        "400 / 413 / 414 / 494 / 502 / 504",
    ),
    Explanation(
        "APIG.0301",
        GATEWAY,
        _(
            "Authentication failed: check the access key and secret key, and that this server's clock "
            "is within 15 minutes of the cloud's. After 5 failures in a row the key is locked for 5 minutes."
        ),
        _CHECK_KEYS,
        "401",
    ),
    Explanation("APIG.0302", GATEWAY, _("The IAM user is not allowed to call this API."), _CHECK_ROLE, "403"),
    Explanation(
        "APIG.0303",
        GATEWAY,
        _("App authentication failed, or the signature expired (clock skew over 15 minutes)."),
        _("Check this server's clock (NTP): it must be within 15 minutes of the cloud's."),
        "401",
    ),
    Explanation("APIG.0304", GATEWAY, _("The app is not allowed to call this API."), _CHECK_ROLE, "403"),
    Explanation("APIG.0305", GATEWAY, _("Authentication failed."), _CHECK_KEYS, "401"),
    Explanation("APIG.0306", GATEWAY, _("The gateway denied access to this API."), _CHECK_ROLE, "403"),
    Explanation("APIG.0307", GATEWAY, _("The token must be renewed."), _CHECK_KEYS, "401"),
    Explanation(
        "APIG.0308",
        GATEWAY,
        _(
            "Throttled: the gateway's rate limit was reached. The sync waits and retries; "
            "lower DCS_RATE_LIMIT if it persists."
        ),
        _(
            "Nothing, if it is rare. If every sync meets it, lower DCS_RATE_LIMIT or sync less often; "
            "other tools calling the API with the same key share the limit."
        ),
        "429",
        transient=True,
    ),
    Explanation("APIG.0310", GATEWAY, _("The project is unavailable."), _CHECK_PROJECT, "403"),
    Explanation(
        "APIG.0401",
        GATEWAY,
        _("The gateway does not know this server's IP address."),
        _("Check the network path to the endpoint (proxy, NAT) with the network team."),
        "403",
    ),
    Explanation(
        "APIG.0402",
        GATEWAY,
        _("This server's IP address is not allowed to call the API."),
        _("Ask the cloud account's administrator to allow this server's outgoing IP address."),
        "403",
    ),
    Explanation("APIG.0601", GATEWAY, _("An internal error of the gateway."), _CLOUD_SIDE, "500"),
    Explanation(
        "APIG.0613",
        GATEWAY,
        _("IAM is unavailable: the gateway could not check the credentials."),
        _CLOUD_SIDE,
        "503",
        transient=True,
    ),
    Explanation(
        "APIG.0802",
        GATEWAY,
        _("The IAM user is forbidden in this region."),
        _(
            "Ask the cloud account's administrator to enable the region for the IAM user, "
            "or remove the region from DCS_PROJECTS."
        ),
        "403",
    ),
)

_SPACE_RE = re.compile(r"\s+")
_INDEX: dict[str, Explanation] = {}
for _explanation in CATALOGUE:
    for _key in (_explanation.code, *_explanation.aliases):
        _INDEX[_key.upper()] = _explanation


def normalize(code: str) -> str:
    """The key a code is looked up by: no whitespace, upper case, ``APIGW.`` read as ``APIG.``."""
    key = _SPACE_RE.sub("", code).upper()
    if key.startswith("APIGW."):
        key = "APIG." + key.removeprefix("APIGW.")
    return key


def explain(code: str | None) -> Explanation | None:
    """What ``code`` means and what to do about it; None for an empty or unknown code.

    ``" dcs.08.0002 "``, ``DCS.08.0002``, ``apigw.0301`` and ``111404022`` are all found.
    """
    if not code:
        return None
    return _INDEX.get(normalize(str(code)))


def explanations_by_family() -> list[tuple[str, list[Explanation]]]:
    """The catalogue grouped for the /errors/ page: (family label, its codes), in catalogue order."""
    groups: dict[str, list[Explanation]] = {}
    for explanation in CATALOGUE:
        groups.setdefault(explanation.family, []).append(explanation)
    return [(str(FAMILY_LABELS[family]), rows) for family, rows in groups.items()]
