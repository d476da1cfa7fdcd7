"""Content-Security-Policy on every response.

django-csp is not available from our package index, and Django only gains a
CSP middleware in 6.0, so this is the small part we need: one fixed policy
from ``settings.CONTENT_SECURITY_POLICY`` (directive -> sources), no nonces,
because nothing inline is ever allowed. A response that already carries a
policy (a view that needs a stricter one) keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


def build_policy(directives: dict[str, list[str]]) -> str:
    """``{"default-src": ["'self'"], ...}`` -> ``"default-src 'self'; ..."``."""
    parts = []
    for name, sources in directives.items():
        for token in (name, *sources):
            # A ";" or "," or a line break would start another directive or
            # policy (or another header): refuse it at start-up.
            if not token or any(ch in token for ch in ";,\r\n"):
                raise ImproperlyConfigured(f"CONTENT_SECURITY_POLICY: bad token {token!r} in {name!r}")
        parts.append(" ".join((name, *sources)))
    return "; ".join(parts)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Built once: the policy is the same for every response.
        self.policy = build_policy(settings.CONTENT_SECURITY_POLICY)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and HEADER not in response:
            response[HEADER] = self.policy
        return response
