"""Who may open what: a role for every page, and sign-in through a proxy.

``RoleRequiredMiddleware`` runs after Django's ``LoginRequiredMiddleware``
(anonymous visitors already went to the login page): a signed-in user
without the Viewer permission (``roles.VIEW_PERMISSION``) gets a 403 page that
says to ask an admin for a role. Left alone: the sign-in pages, the language
switch, the admin (it checks staff and model permissions itself), and views
marked with ``login_not_required``.

``DashboardRemoteUserMiddleware`` is single sign-on for deployments behind an
authenticating proxy: it trusts the header named by
``DASHBOARD_REMOTE_USER_HEADER``, so the proxy must strip that header from
every client request.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware
from django.core.cache import cache
from django.shortcuts import render

from backups import roles

# The answer is remembered this long per user, like "Sync now" in views.sync:
# it costs two queries (the user's and the groups' permissions).
ROLE_CACHE_SECONDS = 60
# Views of these modules are about signing in, not about the fleet.
_OPEN_MODULES = ("django.contrib.auth.", "django.views.i18n")
_OPEN_NAMESPACES = ("admin",)


def access_of(user) -> dict[str, bool]:
    """What the user may see: ``view`` (any page) and ``audit`` (the audit log).

    No query for a superuser or a remembered answer: the header's "Audit" link
    reads ``request.can_view_audit`` instead of asking the permissions again.
    """
    if not user.is_active:
        return {"view": False, "audit": False}
    if user.is_superuser:
        return {"view": True, "audit": True}
    key = f"dashboard:access:{user.pk}"
    access = cache.get(key)
    if access is None:
        access = {
            "view": user.has_perm(roles.VIEW_PERMISSION),
            "audit": user.has_perm(roles.AUDIT_PERMISSION),
        }
        cache.set(key, access, ROLE_CACHE_SECONDS)
    return access


def has_role(user) -> bool:
    return access_of(user)["view"]


class RoleRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None  # LoginRequiredMiddleware, or an open view
        if not getattr(view_func, "login_required", True):
            return None
        view_class = getattr(view_func, "view_class", view_func)
        if getattr(view_class, "__module__", "").startswith(_OPEN_MODULES):
            return None
        match = request.resolver_match
        if match is not None and set(match.namespaces) & set(_OPEN_NAMESPACES):
            return None
        access = access_of(user)
        request.can_view_audit = access["audit"]
        if access["view"]:
            return None
        return render(request, "backups/no_role.html", status=403)


class DashboardRemoteUserMiddleware(RemoteUserMiddleware):
    """Reads the user name from ``DASHBOARD_REMOTE_USER_HEADER`` (a ``request.META`` key)."""

    @property
    def header(self) -> str:
        return settings.DASHBOARD_REMOTE_USER_HEADER

    def process_request(self, request):
        if not self.header:
            return None  # single sign-on is off
        return super().process_request(request)

    async def aprocess_request(self, request):
        if not self.header:
            return None
        return await super().aprocess_request(request)


class DashboardRemoteUserBackend(RemoteUserBackend):
    """Creates a proxy-authenticated user on first sight when ``DASHBOARD_REMOTE_USER_CREATE`` says so."""

    @property
    def create_unknown_user(self) -> bool:
        return settings.DASHBOARD_REMOTE_USER_CREATE
