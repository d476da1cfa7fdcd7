"""Our own DCS API client, on requests.

It signs every call with the AK/SK (``SdkHmacSha256Auth``), pages through the
list endpoints at the largest page the API allows, and turns every failure
into a typed :mod:`backups.dcs.errors` exception carrying the HTTP status,
``error_code``, ``error_msg`` and ``X-Request-Id``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import requests

from backups.dcs.config import DcsConfig, DcsProject
from backups.dcs.errors import (
    DcsMalformedResponse,
    DcsThrottled,
    DcsTransportError,
    error_class_for,
)
from backups.dcs.records import as_api_time, as_int, as_text
from backups.dcs.signing import SdkHmacSha256Auth

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
USER_AGENT = "dcs-backup-dashboard"


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


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86400 else None


class DcsClient:
    """Lists DCS instances and backup records for the configured projects."""

    def __init__(
        self,
        config: DcsConfig,
        *,
        session: requests.Session | None = None,
        page_size: int = MAX_PAGE_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.config = config
        self.page_size = page_size
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.api_calls = 0
        # Signing time; tests share a fake clock with the simulator.
        self.clock = clock

    @classmethod
    def from_settings(cls, config: DcsConfig | None = None) -> DcsClient:
        from django.conf import settings

        from backups.dcs.config import get_dcs_config

        return cls(
            config or get_dcs_config(),
            page_size=settings.DCS_PAGE_SIZE,
            connect_timeout=settings.DCS_CONNECT_TIMEOUT,
            read_timeout=settings.DCS_READ_TIMEOUT,
        )

    def _auth(self, project: DcsProject) -> SdkHmacSha256Auth:
        return SdkHmacSha256Auth(
            self.config.access_key,
            self.config.secret_key,
            project_id=project.project_id,
            security_token=self.config.security_token,
            clock=self.clock,
        )

    def get(self, project: DcsProject, path: str, params: dict[str, Any] | None = None) -> Any:
        """One signed GET. Returns the decoded JSON body, or None for a 204."""
        url = self.config.endpoint_for(project.region) + path
        self.api_calls += 1
        try:
            response = self.session.get(
                url,
                params=params,
                auth=self._auth(project),
                timeout=self.timeout,
                headers={"Content-Type": "application/json"},
            )
        except requests.RequestException as exc:
            # The exception text names the URL but never carries headers, so no
            # signature or token can leak through it.
            raise DcsTransportError(f"{type(exc).__name__} calling {url}: {exc}") from None
        request_id = response.headers.get("X-Request-Id", "")
        if response.status_code == 204:
            return None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
            if response.ok:
                raise DcsMalformedResponse(
                    f"HTTP {response.status_code} from {path} is not JSON", request_id=request_id
                ) from None
        if not response.ok:
            code, msg = _error_fields(body)
            if not msg and body is None:
                msg = response.text[:200].strip() or response.reason or ""
            request_id = request_id or (as_text(body.get("request_id")) if isinstance(body, dict) else "")
            error_class = error_class_for(response.status_code)
            kwargs = {"retry_after": _retry_after(response)} if error_class is DcsThrottled else {}
            raise error_class(response.status_code, code, msg, request_id, **kwargs)
        return body

    def _pages(
        self, project: DcsProject, path: str, list_key: str, total_key: str, params: dict[str, Any]
    ) -> Iterator[dict]:
        """Every item of a list endpoint, paging by offset/limit until total."""
        offset = 0
        while True:
            body = self.get(project, path, {**params, "offset": offset, "limit": self.page_size})
            if body is None:  # 204: no records
                return
            if not isinstance(body, dict):
                raise DcsMalformedResponse(f"{path}: expected a JSON object, got {type(body).__name__}")
            items = body.get(list_key)
            total = as_int(body.get(total_key), minimum=0)
            if items is None and total == 0:
                return
            if not isinstance(items, list):
                raise DcsMalformedResponse(f"{path}: '{list_key}' is missing or not a list")
            if total is None:
                raise DcsMalformedResponse(f"{path}: '{total_key}' is missing or not a number")
            yield from items
            offset += len(items)
            if offset >= total:
                return
            if not items:
                # total promises more than the pages hold: the listing is not
                # complete, and a caller must not treat it as such.
                raise DcsMalformedResponse(f"{path}: listing ended at {offset} of {total} promised records")

    def list_instances(self, project: DcsProject) -> Iterator[dict]:
        return self._pages(project, f"/v2/{project.project_id}/instances", "instances", "instance_num", {})

    def list_backup_records(
        self,
        project: DcsProject,
        instance_id: str,
        *,
        begin: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[dict]:
        params = {}
        if begin is not None:
            params["begin_time"] = as_api_time(begin)
        if end is not None:
            params["end_time"] = as_api_time(end)
        path = f"/v2/{project.project_id}/instances/{instance_id}/backups"
        return self._pages(project, path, "backup_record_response", "total_num", params)


__all__ = ["DcsClient"]
