"""SDK-HMAC-SHA256 request signing, as the official Huawei SDK does it.

The algorithm is in dcs-api.md §4.1. Both sides use this module: our client
signs with :class:`SdkHmacSha256Auth`, and the simulator verifies with
:func:`verify_signature`. A test cross-checks us against the SDK's Signer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_CLOCK_SKEW = timedelta(minutes=15)

# Transport headers that a proxy may rewrite; signing them would only make a
# valid request fail verification on its way to the gateway.
_UNSIGNED_HEADERS = frozenset(
    {"connection", "accept-encoding", "accept", "content-length", "transfer-encoding"}
)

_AUTH_RE = re.compile(
    rf"^{ALGORITHM}\s+Access=(?P<access>[^,\s]+),\s*SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<signature>[0-9a-fA-F]+)$"
)


def _encode(value: str) -> str:
    """RFC 3986: only A-Za-z0-9-_.~ stay unescaped."""
    return quote(value, safe="~")


def canonical_uri(path: str) -> str:
    # Decode the whole path before splitting, as the SDK does: an encoded "/" (%2F) in a path
    # parameter then separates segments in the signature, e.g. /a%2Fb signs as /a/b/.
    segments = [_encode(segment) for segment in unquote(path).split("/")]
    uri = "/".join(segments)
    # The signature always sees a trailing slash; the request is sent without.
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in sorted(pairs))


def signed_header_names(headers: dict[str, str]) -> list[str]:
    # The SDK leaves out any header whose name contains an underscore.
    return sorted({name.lower() for name in headers if "_" not in name})


def is_signed_payload_type(content_type: str) -> bool:
    """The SDK signs the body only for JSON/BSON (or no) Content-Type; others are UNSIGNED-PAYLOAD."""
    return not content_type or content_type.startswith(("application/json", "application/bson"))


def payload_hash(headers: dict[str, str], body: bytes) -> str:
    # As the SDK's Signer._process_hash_payload: an empty body always hashes as empty; otherwise a
    # sent X-Sdk-Content-Sha256 header stands in for the body hash. The header itself, not the
    # Content-Type, decides: the signer adds it for non-JSON bodies (see SdkHmacSha256Auth).
    if not body:
        return EMPTY_BODY_SHA256
    declared = next((v for k, v in headers.items() if k.lower() == "x-sdk-content-sha256"), "")
    return declared or hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query_pairs: list[tuple[str, str]],
    headers: dict[str, str],
    names: list[str],
    body: bytes,
) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    header_lines = "".join(f"{name}:{lowered.get(name, '').strip()}\n" for name in names)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query_pairs),
            header_lines,
            ";".join(names),
            payload_hash(headers, body),
        ]
    )


def string_to_sign(request_text: str, sdk_date: str) -> str:
    digest = hashlib.sha256(request_text.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


class SdkHmacSha256Auth(requests.auth.AuthBase):
    """Signs a prepared request with an AK/SK pair, as huaweicloudsdkcore does.

    Adds ``X-Sdk-Date`` (unless set), ``Host``, ``X-Project-Id`` and, for
    temporary credentials, ``X-Security-Token`` before signing.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        project_id: str = "",
        security_token: str = "",
        clock=None,
    ) -> None:
        self.access_key = access_key
        self._secret_key = secret_key
        self.project_id = project_id
        self._security_token = security_token
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:  # never show the SK, even in a debugger
        return f"<SdkHmacSha256Auth access_key={self.access_key!r}>"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(request.url)
        headers = request.headers
        if DATE_HEADER not in headers:
            headers[DATE_HEADER] = self._clock().strftime(DATE_FORMAT)
        headers["Host"] = parts.netloc
        if self.project_id:
            headers["X-Project-Id"] = self.project_id
        if self._security_token:
            headers["X-Security-Token"] = self._security_token
        if not is_signed_payload_type(headers.get("Content-Type", "")):
            headers[CONTENT_SHA256_HEADER] = UNSIGNED_PAYLOAD  # sent and signed, as the SDK does
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        names = signed_header_names({k: v for k, v in headers.items() if k.lower() not in _UNSIGNED_HEADERS})
        text = canonical_request(
            request.method or "GET", parts.path or "/", _query_pairs(parts.query), dict(headers), names, body
        )
        sig = signature(self._secret_key, string_to_sign(text, headers[DATE_HEADER]))
        headers["Authorization"] = (
            f"{ALGORITHM} Access={self.access_key}, SignedHeaders={';'.join(names)}, Signature={sig}"
        )
        return request


@dataclass(frozen=True)
class VerificationFailure:
    reason: str
    canonical_request: str = ""


def verify_signature(
    *,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    credentials: dict[str, str],
    now: datetime,
) -> VerificationFailure | None:
    """Check a request as the API gateway does. Returns None when it is valid.

    ``credentials`` maps access keys to secret keys. The signed header list is
    taken from the Authorization header, as a gateway does.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    match = _AUTH_RE.match(lowered.get("authorization", "").strip())
    if not match:
        return VerificationFailure("missing or malformed Authorization header")
    secret = credentials.get(match["access"])
    if secret is None:
        return VerificationFailure("Get secretKey failed, ak not exist")
    sdk_date = lowered.get("x-sdk-date", "")
    try:
        signed_at = datetime.strptime(sdk_date, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return VerificationFailure("missing or malformed X-Sdk-Date header")
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        return VerificationFailure(
            f"signature expired, signature time:{sdk_date},server time:{now.strftime(DATE_FORMAT)}"
        )
    names = match["headers"].split(";")
    if "x-sdk-date" not in names or "host" not in names:
        return VerificationFailure("host and x-sdk-date must be signed")
    text = canonical_request(method, path, _query_pairs(query), headers, names, body)
    expected = signature(secret, string_to_sign(text, sdk_date))
    if not hmac.compare_digest(expected, match["signature"].lower()):
        return VerificationFailure("verify aksk signature fail", text)
    return None
