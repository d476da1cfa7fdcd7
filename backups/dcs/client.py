"""Our own DCS API client, on requests.

It signs every call with the AK/SK (``SdkHmacSha256Auth``), paces the calls
through a shared rate limiter, retries transient failures in one place
(:meth:`DcsClient.get`), pages through the list endpoints at the largest page
the API allows, and turns every failure into a typed
:mod:`backups.dcs.errors` exception carrying the HTTP status, ``error_code``,
``error_msg`` and ``X-Request-Id``.

A listing comes back as a :class:`Listing`: the records, plus whether the
pages added up to one consistent whole. Only a complete listing may be used
to decide that something upstream is gone.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from backups.dcs.config import DcsConfig, DcsProject
from backups.dcs.errors import (
    DcsApiError,
    DcsError,
    DcsMalformedResponse,
    DcsTransportError,
    error_class_for,
)
from backups.dcs.ratelimit import RateLimiter
from backups.dcs.records import as_api_time, as_text
from backups.dcs.retry import RetryPolicy, parse_retry_after
from backups.dcs.signing import SdkHmacSha256Auth

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
USER_AGENT = "dcs-backup-dashboard"
# A listing that has not ended after this many pages is not going to: a
# server whose total keeps growing must not keep us paging forever.
MAX_PAGES = 10_000


# A JSON escape of U+0000 that is not itself escaped (an even run of backslashes before it).
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _json_body(response: requests.Response) -> Any:
    """The body's JSON, with any NUL in its strings as U+FFFD.

    PostgreSQL's text and jsonb cannot hold U+0000, so one record whose remark
    carried it would fail its whole listing's write. The check is one scan of
    the text, and the rewrite happens only when the escape is there.
    """
    # As requests' own .json(): the declared charset, else the one JSON's first bytes show.
    guessed = requests.utils.guess_json_utf(response.content) or "utf-8"
    try:
        text = response.content.decode(response.encoding or guessed)
    except LookupError:  # a charset Python does not know
        text = response.content.decode(guessed)
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(lambda match: match[1] + "\\ufffd", text)
    return json.loads(text)


def _error_fields(body: Any) -> tuple[str, str]:
    """(error_code, error_msg) from any of the body shapes the APIs use.

    The SDK's parser tries error_code/error_msg, errorCode/errorMsg and
    code/message, then looks one level down (the v1.0 ``{"error": {...}}``).
    """
    if not isinstance(body, dict):
        return "", ""
    for code_key, msg_key in (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")):
        if code_key in body or msg_key in body:
            return as_text(body.get(code_key), max_length=64), as_text(body.get(msg_key), max_length=1024)
    for value in body.values():
        if isinstance(value, dict):
            code, msg = _error_fields(value)
            if code or msg:
                return code, msg
    return "", ""


def _describe(error: DcsError) -> str:
    """One log-safe line: status, code and request id; never headers."""
    if isinstance(error, DcsApiError):
        parts = [f"HTTP {error.status}"]
        if error.error_code:
            parts.append(error.error_code)
        if error.request_id:
            parts.append(f"request id {error.request_id}")
        return " ".join(parts)
    request_id = getattr(error, "request_id", "")
    text = f"{type(error).__name__}: {error}"
    return f"{text} (request id {request_id})" if request_id else text


@dataclass
class Listing:
    """Every item of one list endpoint, and whether the pages added up.

    Iterating gives the items, each id once (the first occurrence wins).
    ``complete`` is False when the pages disagree with each other: the total
    changed, records repeated or went missing, a page came back short. Such a
    listing may still be stored, but must not be used to mark anything gone.
    """

    items: list[dict] = field(default_factory=list)
    total: int = 0  # the total the last page announced
    pages: int = 0  # requests that answered
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems

    def __iter__(self) -> Iterator[dict]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"incomplete: {'; '.join(self.problems)}"
        return f"<Listing {len(self.items)} of {self.total}, {self.pages} pages, {state}>"


class DcsClient:
    """Lists DCS instances and backup records for the configured projects.

    Counters, for the sync run's record: ``api_calls`` (every HTTP attempt),
    ``retries``, ``throttles`` (429 answers) and ``error_counts`` (failed
    attempts by error code, or ``transport`` / ``malformed``).
    """

    def __init__(
        self,
        config: DcsConfig,
        *,
        session: requests.Session | None = None,
        page_size: int = MAX_PAGE_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        clock: Callable[[], datetime] | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.config = config
        self.page_size = page_size
        self.timeout = (connect_timeout, read_timeout)
        # requests' adapters retry nothing by default; the retries are ours alone.
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # Signing time; tests share a fake clock with the simulator.
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        # Injectable so tests neither wait nor depend on chance.
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.api_calls = 0
        self.retries = 0
        self.throttles = 0
        self.error_counts: Counter[str] = Counter()
        self.last_request_id = ""

    @classmethod
    def from_settings(cls, config: DcsConfig | None = None) -> DcsClient:
        from django.conf import settings

        from backups.dcs.config import get_dcs_config
        from backups.dcs.ratelimit import shared_rate_limiter

        return cls(
            config or get_dcs_config(),
            page_size=settings.DCS_PAGE_SIZE,
            connect_timeout=settings.DCS_CONNECT_TIMEOUT,
            read_timeout=settings.DCS_READ_TIMEOUT,
            retry=RetryPolicy(
                max_retries=settings.DCS_MAX_RETRIES,
                backoff=settings.DCS_RETRY_BACKOFF,
                retry_after_cap=settings.DCS_RETRY_AFTER_CAP,
            ),
            rate_limiter=shared_rate_limiter(settings.DCS_RATE_LIMIT, settings.REDIS_URL),
        )

    def spawn(self) -> DcsClient:
        """A client for another thread: its own session and counters, everything else shared.

        A requests session is not safe to share between threads, and the
        counters are read before and after one listing to count its calls; the
        rate limiter, the clock, the retry policy and the sleep are the same
        objects, so every thread draws from one budget of requests.
        """
        twin = DcsClient(
            self.config,
            page_size=self.page_size,
            connect_timeout=self.timeout[0],
            read_timeout=self.timeout[1],
            clock=self.clock,
            retry=self.retry,
            rate_limiter=self.rate_limiter,
            sleep=self.sleep,
            rng=self.rng,
        )
        twin.session.headers.update(self.session.headers)
        return twin

    def add_counts(self, other: DcsClient) -> None:
        """Add another client's counters to this one's (a spawned client's, when its thread is done)."""
        self.api_calls += other.api_calls
        self.retries += other.retries
        self.throttles += other.throttles
        self.error_counts.update(other.error_counts)

    def _auth(self, project: DcsProject) -> SdkHmacSha256Auth:
        return SdkHmacSha256Auth(
            self.config.access_key,
            self.config.secret_key,
            project_id=project.project_id,
            security_token=self.config.security_token,
            clock=self.clock,
        )

    # --- One request ------------------------------------------------------------

    def get(self, project: DcsProject, path: str, params: dict[str, Any] | None = None) -> Any:
        """One signed GET, retried when the failure is transient.

        Returns the decoded JSON body, or None for a 204. Retries connection
        errors, timeouts, 429 (after its Retry-After, capped), 5xx and bodies
        that could not be decoded, up to the policy's bound; a 4xx other than
        429 is final at once. The last failure is raised, typed, with
        ``attempts`` set.
        """
        retries = 0
        while True:
            try:
                return self._attempt(project, path, params)
            except DcsError as error:
                self.error_counts[self._error_key(error)] += 1
                if not self.retry.should_retry(error, retries):
                    error.attempts = retries + 1
                    raise
                retries += 1
                delay = self.retry.delay(error, retries, self.rng)
                self.retries += 1
                logger.warning(
                    "DCS GET %s failed (%s); retry %d of %d in %.2fs",
                    path,
                    _describe(error),
                    retries,
                    self.retry.max_retries,
                    delay,
                )
                if delay > 0:
                    self.sleep(delay)

    def _attempt(self, project: DcsProject, path: str, params: dict[str, Any] | None) -> Any:
        url = self.config.endpoint_for(project.region) + path
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        self.api_calls += 1
        self.last_request_id = ""
        try:
            response = self.session.get(
                url,
                params=params,
                auth=self._auth(project),
                timeout=self.timeout,
                headers={"Content-Type": "application/json"},
            )
        except requests.RequestException as exc:
            # Refused, reset, timed out, or cut off mid-body (requests reads the
            # body here and raises when it is shorter than Content-Length). The
            # text names the URL but never carries headers, so no signature or
            # token can leak through it.
            raise DcsTransportError(f"{type(exc).__name__} calling {url}: {exc}") from None
        request_id = response.headers.get("X-Request-Id", "")
        self.last_request_id = request_id
        if response.status_code == 204:
            return None
        try:
            body = _json_body(response) if response.content else None
        except ValueError:
            body = None
            if response.ok:
                # Cut short or not JSON at all (a proxy's HTML page): worth another try.
                raise DcsMalformedResponse(
                    f"HTTP {response.status_code} from {path} is not JSON",
                    request_id=request_id,
                    retryable=True,
                ) from None
        if response.ok and body is None:
            raise DcsMalformedResponse(
                f"HTTP {response.status_code} from {path} has an empty body",
                request_id=request_id,
                retryable=True,
            )
        if not response.ok:
            code, msg = _error_fields(body)
            if not msg and body is None:
                msg = response.text[:200].strip() or response.reason or ""
            request_id = request_id or (as_text(body.get("request_id")) if isinstance(body, dict) else "")
            self.last_request_id = request_id
            if response.status_code == 429:
                self.throttles += 1
            now = self.clock() if self.clock else datetime.now(UTC)
            raise error_class_for(response.status_code)(
                response.status_code,
                code,
                msg,
                request_id,
                retry_after=parse_retry_after(response.headers.get("Retry-After"), now=now),
            )
        return body

    @staticmethod
    def _error_key(error: DcsError) -> str:
        if isinstance(error, DcsApiError):
            return error.error_code or f"HTTP {error.status}"
        if isinstance(error, DcsTransportError):
            return "transport"
        return "malformed"

    # --- Listings ---------------------------------------------------------------

    def _listing(
        self,
        project: DcsProject,
        path: str,
        *,
        list_key: str,
        total_key: str,
        id_key: str,
        params: dict[str, Any],
    ) -> Listing:
        """Every item of a list endpoint, paging by offset/limit until the total.

        Raises DcsMalformedResponse when a page breaks the contract (not an
        object, no list, no whole-number total); returns an incomplete Listing
        when the pages are each well-formed but do not add up.
        """
        listing = Listing()
        seen: set[str] = set()
        received = 0  # records received, repeats included: the API offsets by position
        announced: int | None = None
        while True:
            if listing.pages >= MAX_PAGES:
                listing.problems.append(f"stopped after {MAX_PAGES} pages at {received} of {announced}")
                break
            body = self.get(project, path, {**params, "offset": received, "limit": self.page_size})
            request_id = self.last_request_id
            listing.pages += 1
            if body is None:  # 204: no records
                if announced:
                    listing.problems.append(
                        f"the listing became empty (204) at offset {received} of {announced} promised"
                    )
                announced = 0 if announced is None else announced
                break
            try:
                total, items = self._page(path, body, list_key, total_key, request_id)
            except DcsMalformedResponse:
                self.error_counts["malformed"] += 1
                raise
            if announced is not None and total != announced:
                listing.problems.append(
                    f"{total_key} changed from {announced} to {total} while paging (at offset {received})"
                )
            announced = total
            promised = min(self.page_size, total - received)
            if len(items) < promised:
                listing.problems.append(
                    f"the page at offset {received} held {len(items)} of the {promised} records promised"
                )
            elif len(items) > self.page_size:
                listing.problems.append(
                    f"the page at offset {received} held {len(items)} records, more than the limit "
                    f"{self.page_size}"
                )
            for item in items:
                item_id = as_text(item.get(id_key))
                if item_id:
                    if item_id in seen:
                        listing.problems.append(
                            f"{id_key} {item_id} repeated at offset {received}: the list shifted while paging"
                        )
                        continue
                    seen.add(item_id)
                # An item without an id is kept: the caller's parser reports it.
                listing.items.append(item)
            received += len(items)
            if received >= total or not items:
                break
        listing.total = announced or 0
        if len(seen) < listing.total:
            listing.problems.append(f"received {len(seen)} distinct records of {listing.total} promised")
        elif len(seen) > listing.total:
            listing.problems.append(
                f"received {len(seen)} distinct records, more than the {listing.total} promised"
            )
        if not listing.complete:
            logger.warning("DCS GET %s: incomplete listing: %s", path, "; ".join(listing.problems))
        return listing

    @staticmethod
    def _page(path: str, body: Any, list_key: str, total_key: str, request_id: str) -> tuple[int, list[dict]]:
        """(total, items) of one page, or DcsMalformedResponse."""

        def malformed(reason: str) -> DcsMalformedResponse:
            return DcsMalformedResponse(f"{path}: {reason}", request_id=request_id)

        if not isinstance(body, dict):
            raise malformed(f"expected a JSON object, got {type(body).__name__}")
        total = body.get(total_key)
        # A whole number, as every SDK types it; "5" or 5.0 is not what the
        # contract says, and this one number decides what counts as complete.
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise malformed(
                f"'{total_key}' is missing or not a whole number: {as_text(total, max_length=40)!r}"
            )
        items = body.get(list_key)
        if items is None and total == 0:
            return 0, []
        if not isinstance(items, list):
            raise malformed(f"'{list_key}' is missing or not a list")
        if not all(isinstance(item, dict) for item in items):
            raise malformed(f"'{list_key}' holds something other than objects")
        return total, items

    def list_instances(self, project: DcsProject) -> Listing:
        return self._listing(
            project,
            f"/v2/{project.project_id}/instances",
            list_key="instances",
            total_key="instance_num",
            id_key="instance_id",
            params={},
        )

    def list_backup_records(
        self,
        project: DcsProject,
        instance_id: str,
        *,
        begin: datetime | None = None,
        end: datetime | None = None,
    ) -> Listing:
        return self._listing(
            project,
            f"/v2/{project.project_id}/instances/{instance_id}/backups",
            list_key="backup_record_response",
            total_key="total_num",
            id_key="backup_id",
            params=_window(begin, end),
        )

    def list_restores(
        self,
        project: DcsProject,
        instance_id: str,
        *,
        begin: datetime | None = None,
        end: datetime | None = None,
    ) -> Listing:
        """Every restore record of the instance (ListRestoreRecords, dcs-api.md §2.3).

        The same paging, 204, retries and errors as the backup listing; parse
        the items with :func:`backups.dcs.restores.parse_restore_record`.
        """
        return self._listing(
            project,
            f"/v2/{project.project_id}/instances/{instance_id}/restores",
            list_key="restore_record_response",
            total_key="total_num",
            id_key="restore_id",
            params=_window(begin, end),
        )


def _window(begin: datetime | None, end: datetime | None) -> dict[str, str]:
    params = {}
    if begin is not None:
        params["begin_time"] = as_api_time(begin)
    if end is not None:
        params["end_time"] = as_api_time(end)
    return params


__all__ = ["DcsClient", "Listing"]
