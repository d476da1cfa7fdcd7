"""The DCS API as the simulator answers it: authentication, routing, parameter
checks, filtering, paging and error bodies (dcs-api.md §1, §2.1, §2.3, §3).

No HTTP here: server.py adapts :meth:`DcsSimulator.handle` to http.server, and
tests can read the truth straight from :meth:`DcsSimulator.list_instances` and
:meth:`DcsSimulator.list_backups` (and ``list_restores``). ``sim.faults`` (faults.py) decides, after
authentication, which requests meet an injected fault; the truth never
changes because of one, except that a "shift" starts a real backup.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qsl, unquote

from backups.dcs.signing import VerificationFailure, verify_signature
from backups.simulator import faults as fault_kinds
from backups.simulator.faults import FaultDecision, Faults
from backups.simulator.fleet import (
    MS_PER_SECOND,
    SimInstance,
    build_fleet,
    instance_payload,
    random_uuid,
    to_ms,
)
from backups.simulator.history import (
    MANUAL_VANISHES_AFTER_MS,
    BackupHistory,
    BackupPlan,
    is_listed,
    render_record,
)
from backups.simulator.restores import RestoreHistory, RestorePlan, render_restore

logger = logging.getLogger("backups.simulator")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 10
LIST_INSTANCES = fault_kinds.LIST_INSTANCES
LIST_BACKUP_RECORDS = fault_kinds.LIST_BACKUP_RECORDS
LIST_RESTORE_RECORDS = fault_kinds.LIST_RESTORE_RECORDS
OTHER = "other"

_INSTANCES_PATH = re.compile(r"^/v2/(?P<project_id>[^/]+)/instances$")
_BACKUPS_PATH = re.compile(r"^/v2/(?P<project_id>[^/]+)/instances/(?P<instance_id>[^/]+)/backups$")
_RESTORES_PATH = re.compile(r"^/v2/(?P<project_id>[^/]+)/instances/(?P<instance_id>[^/]+)/restores$")
_WHOLE_NUMBER = re.compile(r"^-?[0-9]{1,12}$")
_API_TIME = re.compile(r"^[0-9]{14}$")


class UnknownProject(LookupError):
    pass


class UnknownInstance(LookupError):
    pass


@dataclass(frozen=True)
class SimResponse:
    status: int
    body: dict | None  # None: no body at all, as for 204
    request_id: str
    # What faults add (faults.py); the defaults are a plain JSON answer.
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None  # sent as is instead of the JSON of ``body``
    content_type: str | None = None  # with ``raw``
    delay: float = 0.0  # seconds to hold the answer back
    drop: str | None = None  # close the connection: "before-response" or "mid-body"


class ApiError(Exception):
    """A DCS error answer: ``{"error_code", "error_msg", "error_ext_msg": null}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict:
        return {"error_code": self.code, "error_msg": self.message, "error_ext_msg": None}


def _not_found() -> ApiError:
    return ApiError(404, "DCS.4001", "The requested URL does not exist.")


def _instance_not_found() -> ApiError:
    return ApiError(404, "DCS.3022", "This DCS instance does not exist.")


def _invalid(param: str) -> ApiError:
    return ApiError(400, "DCS.4800", f"Invalid {param} in the request.")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _auth_field(authorization: str, name: str) -> str:
    """``Access`` or ``SignedHeaders`` of an SDK-HMAC-SHA256 Authorization header ("" if absent)."""
    match = re.search(rf"\b{name}=([^,\s]+)", authorization)
    return match[1] if match else ""


class DcsSimulator:
    """A deterministic DCS fleet and the API that lists it.

    The fleet and its backup history are a pure function of ``seed`` and the
    time asked about; ``delete_instance`` and ``drop_backup`` are the only
    state, and exist so tests can make things vanish upstream.
    """

    def __init__(
        self,
        projects: dict[str, str],
        credentials: dict[str, str],
        instances: int = 40,
        seed: int = 1,
        clock: Callable[[], datetime] | None = None,
        doc_example_mode: bool = False,
        security_tokens: dict[str, str] | None = None,
    ) -> None:
        self.projects = dict(projects)
        self._credentials = dict(credentials)
        # Temporary credentials: an access key listed here is accepted only
        # with its security token, sent as X-Security-Token and signed.
        self._security_tokens = dict(security_tokens or {})
        self.instance_count = instances
        self.seed = seed
        self.clock = clock or _utc_now
        self.doc_example_mode = doc_example_mode
        fleet = build_fleet(self.projects, instances, seed)
        self._history = BackupHistory(fleet, seed)
        self._restores = RestoreHistory(fleet, seed, self._history)
        # ListInstances shows the newest instances first.
        self._fleet_by_id = {(i.project_id, i.instance_id): i for i in fleet}
        self._fleet_by_project: dict[str, list[SimInstance]] = {pid: [] for pid in self.projects}
        for instance in sorted(fleet, key=lambda i: (i.created_ms, i.instance_id), reverse=True):
            self._fleet_by_project[instance.project_id].append(instance)
        self._deleted: set[tuple[str, str]] = set()
        self._dropped: set[tuple[str, str]] = set()
        self._dropped_restores: set[tuple[str, str]] = set()
        # Backups started by a "shift" fault: real records, part of the truth from then on.
        self._started: dict[str, list[BackupPlan]] = {}
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.faults = Faults()

    def __repr__(self) -> str:  # the credentials stay out of logs and debuggers
        return (
            f"<DcsSimulator seed={self.seed} instances={self.instance_count} projects={list(self.projects)}>"
        )

    # --- Request counting ---------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Every request answered, whatever its outcome."""
        with self._lock:
            return sum(self._counts.values())

    @property
    def endpoint_counts(self) -> dict[str, int]:
        """Requests per operation: ListInstances, ListBackupRecords, other."""
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    # --- The truth, and the hooks that change it ----------------------------------

    def list_instances(self, project_id: str, now: datetime | None = None) -> list[dict]:
        """Every instance of the project, as ListInstances serves them, in its order."""
        now_ms = to_ms(now or self.clock())
        return [
            instance_payload(i, now_ms, doc_example_mode=self.doc_example_mode)
            for i in self._present_instances(project_id)
        ]

    def list_backups(self, project_id: str, instance_id: str, now: datetime | None = None) -> list[dict]:
        """Every backup record of the instance, as served, newest first."""
        instance = self._instance(project_id, instance_id)
        now_ms = to_ms(now or self.clock())
        return [self._render(plan, instance, now_ms) for plan in self._listed_plans(instance, now_ms)]

    def list_restores(self, project_id: str, instance_id: str, now: datetime | None = None) -> list[dict]:
        """Every restore record of the instance, as served, newest first."""
        instance = self._instance(project_id, instance_id)
        now_ms = to_ms(now or self.clock())
        return [
            render_restore(plan, now_ms, doc_example_mode=self.doc_example_mode)
            for plan in self._listed_restores(instance, now_ms)
        ]

    def drop_restore(self, project_id: str, instance_id: str, restore_id: str) -> None:
        """From now on this restore record is not listed."""
        self._instance(project_id, instance_id)
        self._dropped_restores.add((instance_id, restore_id))

    def _listed_restores(self, instance: SimInstance, now_ms: int) -> list[RestorePlan]:
        plans = self._restores.listed_plans(instance, now_ms)
        if not self._dropped_restores:
            return plans
        return [p for p in plans if (instance.instance_id, p.restore_id) not in self._dropped_restores]

    def delete_instance(self, project_id: str, instance_id: str) -> None:
        """From now on the instance is not listed and its backups answer 404 DCS.3022."""
        self._instance(project_id, instance_id)
        self._deleted.add((project_id, instance_id))

    def drop_backup(self, project_id: str, instance_id: str, backup_id: str) -> None:
        """From now on this record is not listed, as when the cloud drops it."""
        self._instance(project_id, instance_id)
        self._dropped.add((instance_id, backup_id))

    def _present_instances(self, project_id: str) -> list[SimInstance]:
        if project_id not in self._fleet_by_project:
            raise UnknownProject(project_id)
        return [
            i for i in self._fleet_by_project[project_id] if (project_id, i.instance_id) not in self._deleted
        ]

    def _instance(self, project_id: str, instance_id: str) -> SimInstance:
        if project_id not in self._fleet_by_project:
            raise UnknownProject(project_id)
        instance = self._fleet_by_id.get((project_id, instance_id))
        if instance is None or (project_id, instance_id) in self._deleted:
            raise UnknownInstance(f"{project_id}/{instance_id}")
        return instance

    def _listed_plans(self, instance: SimInstance, now_ms: int) -> list[BackupPlan]:
        plans = self._history.listed_plans(instance, now_ms)
        with self._lock:
            started = list(self._started.get(instance.instance_id, ()))
        if started:
            plans = plans + [plan for plan in started if is_listed(plan, now_ms)]
            plans.sort(key=lambda plan: (plan.created_ms, plan.backup_id), reverse=True)
        if not self._dropped:
            return plans
        return [p for p in plans if (instance.instance_id, p.backup_id) not in self._dropped]

    def start_backup(
        self, project_id: str, instance_id: str, *, now: datetime | None = None, rng=None
    ) -> str:
        """A new manual backup, created ``now``: it heads the list from then on. Returns its id."""
        instance = self._instance(project_id, instance_id)
        rng = rng or random.Random()
        created_ms = to_ms(now or self.clock())
        wait_ms = rng.randrange(5, 30) * MS_PER_SECOND
        plan = BackupPlan(
            backup_id=random_uuid(rng),
            backup_type="manual",
            created_ms=created_ms,
            wait_ms=wait_ms,
            run_ms=rng.randrange(60, 240) * MS_PER_SECOND,
            error_code=None,
            failed_at_progress=0.0,
            size=max(1024, int(instance.data_bytes_at(created_ms) * instance.compression)),
            backup_format="rdb",
            has_execution_at=True,
            period=None,
            remark="started while the list was being read",
            deleted_after_ms=None,
            vanishes_after_ms=MANUAL_VANISHES_AFTER_MS,
        )
        with self._lock:
            self._started.setdefault(instance_id, []).append(plan)
        return plan.backup_id

    def _render(self, plan: BackupPlan, instance: SimInstance, now_ms: int) -> dict:
        record = render_record(plan, instance.instance_id, now_ms, doc_example_mode=self.doc_example_mode)
        assert record is not None  # only listed plans get here
        return record

    def _check_security_token(self, headers: dict[str, str]) -> VerificationFailure | None:
        """A temporary access key needs its token, and the token must be among the signed headers."""
        lowered = {k.lower(): v for k, v in headers.items()}
        authorization = lowered.get("authorization", "")
        expected = self._security_tokens.get(_auth_field(authorization, "Access"))
        if expected is None:
            return None  # a permanent key
        signed = _auth_field(authorization, "SignedHeaders").split(";")
        token = lowered.get("x-security-token", "")
        if not token or "x-security-token" not in signed:
            return VerificationFailure(
                "the security token of a temporary access key is missing or not signed"
            )
        if not hmac.compare_digest(token, expected):
            return VerificationFailure("the security token is not valid for this access key")
        return None

    # --- The API --------------------------------------------------------------------

    def handle(
        self, *, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> SimResponse:
        """Answer one request; ``path`` is as received (percent-encoded), ``query`` raw."""
        request_id = uuid.uuid4().hex
        decoded_path = unquote(path)
        operation, match = _route(decoded_path)
        with self._lock:
            self._counts[operation if method == "GET" else OTHER] += 1
        now = self.clock()
        # The gateway authenticates before anything reaches the service.
        failure = verify_signature(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
            credentials=self._credentials,
            now=now,
        )
        if failure is None and self._security_tokens:
            failure = self._check_security_token(headers)
        if failure is not None:
            if failure.canonical_request:
                # What the gateway logs on a mismatch; the secret parts are not in it.
                logger.debug("canonical request we computed:\n%s", _redact(failure.canonical_request))
            error = {
                "error_code": "APIG.0301",
                "error_msg": f"Incorrect IAM authentication information: {failure.reason}",
                "request_id": request_id,
            }
            return SimResponse(401, error, request_id)
        fault = fault_kinds.NO_FAULT
        if method == "GET" and match is not None and operation in fault_kinds.FAULT_OPERATIONS:
            fault = self.faults.decide(operation, continuation=_is_continuation(query))
        if fault.shift:
            self._shift(match, fault, now)
        if fault.kind in (fault_kinds.THROTTLE, fault_kinds.ERROR):
            return self._fault_error(fault, request_id, now)
        try:
            status, payload = self._answer(method, operation, match, query, to_ms(now))
        except ApiError as error:
            return SimResponse(error.status, error.body(), request_id, delay=fault.delay)
        response = SimResponse(status, payload, request_id, delay=fault.delay)
        if fault.kind == fault_kinds.MALFORMED and status == 200 and payload is not None:
            return _malformed(response, operation, fault.variant)
        if fault.kind == fault_kinds.DROP:
            return SimResponse(
                status, payload, request_id, delay=fault.delay, drop=fault_kinds.DROP_VARIANTS[fault.variant]
            )
        return response

    # --- Faults ---------------------------------------------------------------------

    def _shift(self, match: re.Match, fault: FaultDecision, now: datetime) -> None:
        """A backup starts between two page requests, moving every record down one place."""
        # An unknown instance starts nothing: the page answers 404 as it would have.
        with contextlib.suppress(UnknownProject, UnknownInstance):
            self.start_backup(
                match["project_id"], match["instance_id"], now=now, rng=random.Random(fault.nonce)
            )

    def _fault_error(self, fault: FaultDecision, request_id: str, now: datetime) -> SimResponse:
        settings = self.faults.settings
        if fault.kind == fault_kinds.THROTTLE:
            body = {
                "error_code": "APIG.0308",
                "error_msg": "The throttling threshold has been reached: policy user over ratelimit,"
                "limit:12000,time:1 minute",
                "request_id": request_id,
            }
            headers: tuple[tuple[str, str], ...] = ()
            if settings.retry_after is not None:
                if settings.retry_after_format == "http-date":
                    # An HTTP-date has whole seconds: round up, so it is never earlier than asked.
                    at = now + timedelta(seconds=settings.retry_after)
                    if at.microsecond:
                        at = at.replace(microsecond=0) + timedelta(seconds=1)
                    value = format_datetime(at.astimezone(UTC), usegmt=True)
                else:
                    value = f"{settings.retry_after:g}"
                headers = (("Retry-After", value),)
            return SimResponse(429, body, request_id, headers=headers, delay=fault.delay)
        status, code, message = fault_kinds.ERROR_VARIANTS[fault.variant]
        if code is None:
            raw = f"<html><body><h1>{message}</h1></body></html>".encode()
            return SimResponse(status, None, request_id, raw=raw, content_type="text/html", delay=fault.delay)
        if code.startswith("APIG."):
            body = {"error_code": code, "error_msg": message, "request_id": request_id}
        else:
            body = ApiError(status, code, message).body()
        return SimResponse(status, body, request_id, delay=fault.delay)

    def _answer(
        self, method: str, operation: str, match: re.Match | None, query: str, now_ms: int
    ) -> tuple[int, dict | None]:
        if match is None or match["project_id"] not in self.projects:
            raise _not_found()
        if method != "GET":
            raise ApiError(405, "DCS.5001", "The method is not allowed.")
        params = _query_params(query)
        if operation == LIST_INSTANCES:
            return 200, self._list_instances_page(match["project_id"], params, now_ms)
        if operation == LIST_RESTORE_RECORDS:
            return self._list_restores_page(match["project_id"], match["instance_id"], params, now_ms)
        return self._list_backups_page(match["project_id"], match["instance_id"], params, now_ms)

    def _list_instances_page(self, project_id: str, params: dict[str, str], now_ms: int) -> dict:
        offset, limit = _paging(params)
        matching = [i for i in self._present_instances(project_id) if _instance_matches(i, params)]
        page = matching[offset : offset + limit]
        return {
            "instance_num": len(matching),
            "instances": [instance_payload(i, now_ms, doc_example_mode=self.doc_example_mode) for i in page],
        }

    def _list_backups_page(
        self, project_id: str, instance_id: str, params: dict[str, str], now_ms: int
    ) -> tuple[int, dict | None]:
        offset, limit = _paging(params)
        begin = _time_param(params, "begin_time")
        end = _time_param(params, "end_time")
        if begin is not None and end is not None and end < begin:
            raise ApiError(400, "DCS.4025", "The end time must be later than the start time.")
        try:
            instance = self._instance(project_id, instance_id)
        except UnknownInstance:
            raise _instance_not_found() from None
        plans = self._listed_plans(instance, now_ms)
        if begin is not None or end is not None:
            # Bounds are whole seconds and inclusive: a record at 12:00:00.500
            # is inside a window that ends at 120000.
            low, high = begin if begin is not None else -1, end if end is not None else now_ms
            plans = [p for p in plans if low <= p.created_ms // 1000 * 1000 <= high]
        if not plans:
            return 204, None  # "no backup record is found": an empty body (dcs-api.md §1.2)
        page = plans[offset : offset + limit]
        return 200, {
            "total_num": len(plans),
            "backup_record_response": [self._render(plan, instance, now_ms) for plan in page],
        }

    def _list_restores_page(
        self, project_id: str, instance_id: str, params: dict[str, str], now_ms: int
    ) -> tuple[int, dict | None]:
        """ListRestoreRecords: the backups' paging, window, 204 and errors (dcs-api.md §2.3)."""
        offset, limit = _paging(params)
        low, high = _window(params, now_ms)
        try:
            instance = self._instance(project_id, instance_id)
        except UnknownInstance:
            raise _instance_not_found() from None
        plans = [
            p for p in self._listed_restores(instance, now_ms) if low <= p.created_ms // 1000 * 1000 <= high
        ]
        if not plans:
            return 204, None  # "no restore record is found" (dcs-api.md §7.3)
        page = plans[offset : offset + limit]
        return 200, {
            "restore_record_response": [
                render_restore(plan, now_ms, doc_example_mode=self.doc_example_mode) for plan in page
            ],
            "total_num": len(plans),
        }


def _window(params: dict[str, str], now_ms: int) -> tuple[int, int]:
    """The inclusive (low, high) of begin_time/end_time, in whole-second milliseconds."""
    begin = _time_param(params, "begin_time")
    end = _time_param(params, "end_time")
    if begin is not None and end is not None and end < begin:
        raise ApiError(400, "DCS.4025", "The end time must be later than the start time.")
    return (begin if begin is not None else -1, end if end is not None else now_ms)


def _is_continuation(query: str) -> bool:
    offset = _query_params(query).get("offset", "0")
    return offset.isdigit() and int(offset) > 0


_LIST_KEYS = {
    LIST_INSTANCES: ("instances", "instance_num"),
    LIST_BACKUP_RECORDS: ("backup_record_response", "total_num"),
    LIST_RESTORE_RECORDS: ("restore_record_response", "total_num"),
}


def _malformed(response: SimResponse, operation: str, variant: int) -> SimResponse:
    """The page, broken in one of the ways faults.MALFORMED_VARIANTS names."""
    kind = fault_kinds.MALFORMED_VARIANTS[variant]
    list_key, total_key = _LIST_KEYS[operation]
    body = dict(response.body or {})
    raw: bytes | None = None
    content_type = None
    if kind == "not-json":
        raw, content_type = b"<html><body>Service busy, try again later</body></html>", "text/html"
    elif kind == "truncated":
        # A complete HTTP answer whose JSON stops half-way: Content-Length matches.
        whole = json.dumps(body, ensure_ascii=False).encode("utf-8")
        raw = whole[: max(1, len(whole) // 2)]
    elif kind == "total-as-string":
        body[total_key] = str(body.get(total_key))
    elif kind == "total-missing":
        body.pop(total_key, None)
    elif kind == "list-as-object":
        body[list_key] = {str(i): item for i, item in enumerate(body.get(list_key) or [])}
    return SimResponse(
        response.status,
        body,
        response.request_id,
        headers=response.headers,
        raw=raw,
        content_type=content_type,
        delay=response.delay,
    )


def _route(path: str) -> tuple[str, re.Match | None]:
    match = _BACKUPS_PATH.match(path)
    if match:
        return LIST_BACKUP_RECORDS, match
    match = _RESTORES_PATH.match(path)
    if match:
        return LIST_RESTORE_RECORDS, match
    match = _INSTANCES_PATH.match(path)
    if match:
        return LIST_INSTANCES, match
    return OTHER, None


def _query_params(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(key, value)  # a repeated parameter: the first one counts
    return params


def _int_param(params: dict[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.match(raw) or not minimum <= int(raw) <= maximum:
        raise _invalid(name)
    return int(raw)


def _paging(params: dict[str, str]) -> tuple[int, int]:
    offset = _int_param(params, "offset", 0, 0, 10**12)
    limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return offset, limit


def _time_param(params: dict[str, str], name: str) -> int | None:
    """yyyyMMddHHmmss in UTC, as epoch milliseconds."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        if not _API_TIME.match(raw):
            raise ValueError(raw)
        return to_ms(datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=UTC))
    except ValueError:
        raise _invalid(name) from None


def _instance_matches(instance: SimInstance, params: dict[str, str]) -> bool:
    # An empty filter is no filter (Terraform sends "&capacity=").
    if params.get("instance_id") and instance.instance_id != params["instance_id"]:
        return False
    name = params.get("name")
    if name:
        if params.get("name_equal", "").lower() == "true":
            if instance.name != name:
                return False
        elif name.casefold() not in instance.name.casefold():
            return False
    if params.get("status") and instance.status != params["status"].upper():
        return False
    if params.get("ip") and params["ip"] not in instance.listing["ip"].split(","):
        return False
    if params.get("capacity") and str(instance.listing["capacity"]) != params["capacity"]:
        return False
    if params.get("tags"):
        wanted = [pair.partition("=") for pair in params["tags"].split(",") if pair]
        have = {(tag["key"], tag["value"]) for tag in instance.listing["tags"]}
        if any((key, value) not in have for key, _, value in wanted):
            return False
    return True


def _redact(canonical_request: str) -> str:
    return "\n".join(
        "x-security-token:<redacted>" if line.startswith("x-security-token:") else line
        for line in canonical_request.split("\n")
    )
