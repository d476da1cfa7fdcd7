"""Checks of the alert settings, run by ``dashboard.settings`` at start-up.

Nothing here imports models: settings import this module before the apps
are ready. Each check raises ImproperlyConfigured with one line naming the
variable; the webhook URL itself is never repeated (it is a secret).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

WEBHOOK_FORMATS = ("generic", "slack", "feishu", "wecom", "dingtalk", "template")


def check_emails(name: str, addresses: list[str]) -> list[str]:
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated email addresses, got {address!r}"
            ) from None
    return addresses


def check_base_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{name} must be the dashboard's address like https://dcs.example.com, got {url!r}"
        )
    return url.rstrip("/")


def check_webhook_url(name: str, url: str) -> str:
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        host = None
    if not url.startswith(("http://", "https://")) or not host:
        # Not the value: a chat webhook's URL is its credential.
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL with a host")
    return url


def check_webhook_template(name: str, path: str) -> str:
    if not path:
        return ""
    file = Path(path)
    if not file.is_file():
        raise ImproperlyConfigured(f"{name} must be the path of a readable template file, got {path!r}")
    try:
        file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{name} cannot be read as UTF-8 text: {exc}") from None
    return str(file.resolve())


def webhook_target(url: str) -> str:
    """What may be shown of a webhook: its scheme and host (with a port), never its path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"
