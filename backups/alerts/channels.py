"""Where notifications go: email (Django's mail backend) and a webhook (JSON).

A channel sends one ``Message`` and raises ``DeliveryFailed`` with a reason
that is safe to store and show: a webhook's URL (a chat bot's token is its
path or query) is scrubbed from every error, and a delivery's ``target`` is
only its scheme and host.

One attempt per call, no retries inside it: a failed delivery is tried again
at the next evaluation (``backups.alerts.evaluate``), up to a cap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.template import Context, Engine

from backups.alerts.config import webhook_target
from backups.models import AlertDelivery

EMAIL = AlertDelivery.Channel.EMAIL.value
WEBHOOK = AlertDelivery.Channel.WEBHOOK.value
# An error is kept this long at most (a mail server's or a chat tool's answer).
MAX_ERROR_LENGTH = 500
SCRUBBED = "[webhook URL]"
# Parts of a URL shorter than this are words like "hook" or "v2", not tokens.
MIN_SECRET_PART = 6


@dataclass(frozen=True)
class Message:
    """One notification, as text (email, chat tools) and as our JSON (``payload``)."""

    event: str
    subject: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)


class DeliveryFailed(Exception):
    """The channel did not take the message; ``str()`` is safe to store and show."""


class Channel:
    name: str = ""
    target: str = ""

    def send(self, message: Message) -> None:
        raise NotImplementedError


class EmailChannel(Channel):
    name = EMAIL

    def __init__(self, recipients: list[str], *, sender: str) -> None:
        self.recipients = recipients
        self.sender = sender
        self.target = ", ".join(recipients)[:255]

    def send(self, message: Message) -> None:
        email = EmailMessage(message.subject, message.text, self.sender, self.recipients)
        try:
            sent = email.send(fail_silently=False)
        except Exception as exc:  # smtplib, socket, a backend's own: all are "not delivered"
            raise DeliveryFailed(_short(f"{type(exc).__name__}: {exc}")) from None
        if not sent:
            raise DeliveryFailed("the mail backend sent nothing")


def _secret_parts(url: str) -> list[str]:
    """The URL, and each piece of it that could be (part of) its token, longest first."""
    parts = urlsplit(url)
    pieces = {url, url.split("://", 1)[-1], parts.path, parts.query}
    if parts.query:
        pieces.add(f"{parts.path}?{parts.query}")
    pieces.update(segment for segment in parts.path.split("/"))
    for pair in parts.query.split("&"):
        pieces.update(pair.split("=", 1))
    if parts.password:
        pieces.add(parts.password)
    found = {piece for piece in pieces if len(piece) >= MIN_SECRET_PART}
    found |= {quote(piece, safe="") for piece in found}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    for piece in _secret_parts(url):
        text = text.replace(piece, SCRUBBED)
    return text


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def chat_body(fmt: str, text: str) -> dict[str, Any]:
    """The text message of a chat tool's incoming webhook."""
    if fmt == "slack":
        return {"text": text}
    if fmt == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    # WeCom (企业微信) group bots and DingTalk robots take the same shape.
    return {"msgtype": "text", "text": {"content": text}}


def template_body(path: str, message: Message) -> Any:
    """The operator's template rendered with the message; it must render JSON."""
    # No HTML escaping: the template writes JSON, and the values it gets
    # ready-quoted (the *_json ones) are already escaped for JSON.
    engine = Engine(autoescape=False)
    template = engine.from_string(Path(path).read_text(encoding="utf-8"))
    context = {
        **message.payload,
        "subject": message.subject,
        "text": message.text,
        "text_json": json.dumps(message.text, ensure_ascii=False),
        "subject_json": json.dumps(message.subject, ensure_ascii=False),
        "payload_json": json.dumps(message.payload, ensure_ascii=False),
    }
    rendered = template.render(Context(context, autoescape=False))
    try:
        return json.loads(rendered)
    except ValueError as exc:
        raise DeliveryFailed(f"the webhook template did not render JSON: {exc}") from None


# Chat tools answer 200 with an error code in the body: where it is.
_CODE_FIELDS = {"feishu": ("code", "msg"), "wecom": ("errcode", "errmsg"), "dingtalk": ("errcode", "errmsg")}


class WebhookChannel(Channel):
    name = WEBHOOK

    def __init__(self, url: str, *, fmt: str, template: str = "", timeout: float = 10.0) -> None:
        self._url = url
        self.fmt = fmt
        self.template = template
        self.timeout = timeout
        self.target = webhook_target(url)

    def __repr__(self) -> str:  # never the URL
        return f"<WebhookChannel {self.target} {self.fmt}>"

    def body(self, message: Message) -> Any:
        if self.fmt == "generic":
            return message.payload
        if self.fmt == "template":
            return template_body(self.template, message)
        return chat_body(self.fmt, message.text)

    def send(self, message: Message) -> None:
        try:
            body = self.body(message)
        except DeliveryFailed:
            raise
        except Exception as exc:  # a template that does not parse or render, a file gone
            raise DeliveryFailed(
                _short(f"the webhook template failed: {type(exc).__name__}: {exc}")
            ) from None
        try:
            response = requests.post(
                self._url,
                data=json.dumps(body, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise DeliveryFailed(self._safe(f"{type(exc).__name__}: {exc}")) from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(self._safe(f"HTTP {response.status_code}: {response.text[:200]}"))
        code_field = _CODE_FIELDS.get(self.fmt)
        if code_field is not None:
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            code = answer.get(code_field[0], 0) if isinstance(answer, dict) else 0
            if code not in (0, None):
                raise DeliveryFailed(self._safe(f"{code_field[0]} {code}: {answer.get(code_field[1], '')}"))

    def _safe(self, text: str) -> str:
        return _short(scrub(text, self._url))


def configured_channels() -> list[Channel]:
    """The channels the settings turn on; none: alerts are recorded and nothing is sent."""
    channels: list[Channel] = []
    if settings.DASHBOARD_ALERT_EMAILS:
        channels.append(
            EmailChannel(list(settings.DASHBOARD_ALERT_EMAILS), sender=settings.DEFAULT_FROM_EMAIL)
        )
    if settings.DASHBOARD_ALERT_WEBHOOK_URL:
        channels.append(
            WebhookChannel(
                settings.DASHBOARD_ALERT_WEBHOOK_URL,
                fmt=settings.DASHBOARD_ALERT_WEBHOOK_FORMAT,
                template=settings.DASHBOARD_ALERT_WEBHOOK_TEMPLATE,
                timeout=settings.DASHBOARD_ALERT_WEBHOOK_TIMEOUT,
            )
        )
    return channels
