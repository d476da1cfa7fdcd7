"""Typed errors of the DCS API client.

A caller sees one of these and nothing else: never a KeyError, a JSON decode
error or a raw requests exception.
"""

from __future__ import annotations


class DcsError(Exception):
    """Anything that went wrong talking to the DCS API.

    ``retryable`` says whether the same request may succeed if sent again;
    ``attempts`` is how many HTTP attempts the client made before giving up
    (set by the client's retry loop).
    """

    retryable = False
    attempts = 1


class DcsTransportError(DcsError):
    """The request never got an HTTP answer: connection refused, timeout, TLS."""

    retryable = True


class DcsMalformedResponse(DcsError):
    """The API answered, but not with what the contract promises.

    Retryable only when the body could not be decoded at all (cut short, an
    HTML page from a proxy): that is a hiccup on the way. A well-formed body
    of the wrong shape would come back the same way, so it is not.
    """

    def __init__(self, message: str, *, request_id: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.retryable = retryable


class DcsApiError(DcsError):
    """An HTTP error answer from the gateway (APIG.*) or from DCS (DCS.*, numeric)."""

    def __init__(
        self,
        status: int,
        error_code: str,
        error_msg: str,
        request_id: str = "",
        *,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        # Seconds the server asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"HTTP {self.status}"
        if self.error_code:
            text += f" {self.error_code}"
        if self.error_msg:
            text += f": {self.error_msg}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


class DcsBadRequest(DcsApiError):
    """400: a parameter we sent was refused (DCS.4800, 111400800, ...)."""


class DcsAuthError(DcsApiError):
    """401: bad signature, unknown AK, clock skew, expired token (APIG.0301, DCS.100x)."""


class DcsForbidden(DcsApiError):
    """403: the credentials lack permission."""


class DcsNotFound(DcsApiError):
    """404: e.g. DCS.3022, the instance does not exist."""


class DcsThrottled(DcsApiError):
    """429: the gateway's throttling threshold (APIG.0308)."""

    retryable = True


class DcsServerError(DcsApiError):
    """5xx from the gateway or the service."""

    retryable = True


def error_class_for(status: int) -> type[DcsApiError]:
    if status == 400:
        return DcsBadRequest
    if status == 401:
        return DcsAuthError
    if status == 403:
        return DcsForbidden
    if status == 404:
        return DcsNotFound
    if status == 429:
        return DcsThrottled
    if status >= 500:
        return DcsServerError
    return DcsApiError
