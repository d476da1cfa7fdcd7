"""The DCS API as the simulator answers it: authentication, routing, parameter
checks, filtering, paging and error bodies (dcs-api.md §1, §2.1, §3).

No HTTP here: server.py adapts :meth:`DcsSimulator.handle` to http.server, and
tests can read the truth straight from :meth:`DcsSimulator.list_instances` and
:meth:`DcsSimulator.list_backups`.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote

from backups.dcs.signing import verify_signature
from backups.simulator.fleet import SimInstance, build_fleet, instance_payload, to_ms
from backups.simulator.history import BackupHistory, BackupPlan, render_record

logger = logging.getLogger("backups.simulator")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 10
LIST_INSTANCES = "ListInstances"
LIST_BACKUP_RECORDS = "ListBackupRecords"
OTHER = "other"

_INSTANCES_PATH = re.compile(r"^/v2/(?P<project_id>[^/]+)/instances$")
_BACKUPS_PATH = re.compile(r"^/v2/(?P<project_id>[^/]+)/instances/(?P<instance_id>[^/]+)/backups$")
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
    ) -> None:
        self.projects = dict(projects)
        self._credentials = dict(credentials)
        self.instance_count = instances
        self.seed = seed
        self.clock = clock or _utc_now
        self.doc_example_mode = doc_example_mode
        fleet = build_fleet(self.projects, instances, seed)
        self._history = BackupHistory(fleet, seed)
        # ListInstances shows the newest instances first.
        self._fleet_by_id = {(i.project_id, i.instance_id): i for i in fleet}
        self._fleet_by_project: dict[str, list[SimInstance]] = {pid: [] for pid in self.projects}
        for instance in sorted(fleet, key=lambda i: (i.created_ms, i.instance_id), reverse=True):
            self._fleet_by_project[instance.project_id].append(instance)
        self._deleted: set[tuple[str, str]] = set()
        self._dropped: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

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
        if not self._dropped:
            return plans
        return [p for p in plans if (instance.instance_id, p.backup_id) not in self._dropped]

    def _render(self, plan: BackupPlan, instance: SimInstance, now_ms: int) -> dict:
        record = render_record(plan, instance.instance_id, now_ms, doc_example_mode=self.doc_example_mode)
        assert record is not None  # only listed plans get here
        return record

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
        try:
            status, payload = self._answer(method, operation, match, query, to_ms(now))
        except ApiError as error:
            return SimResponse(error.status, error.body(), request_id)
        return SimResponse(status, payload, request_id)

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


def _route(path: str) -> tuple[str, re.Match | None]:
    match = _BACKUPS_PATH.match(path)
    if match:
        return LIST_BACKUP_RECORDS, match
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
