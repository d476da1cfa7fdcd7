"""The audit log: who did what security-relevant thing, when, from where.

``record()`` writes one ``AuditEvent``. It is called by the views that start
syncs and export tables, by ``createuser``, and by the receivers below:
sign-ins, failed sign-ins, sign-outs, lockouts (django-axes) and changes of
groups and permissions. The request being served, if any, gives the user, the
address and the path (``AuditRequestMiddleware`` makes it known to receivers
that are not handed it).

Nothing secret goes in ``detail``: a failed sign-in keeps the username it
tried, never the password; an export keeps its query parameters.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.db.models.signals import m2m_changed, post_migrate, post_save
from django.dispatch import receiver

from backups import roles

logger = logging.getLogger(__name__)

_current_request: contextvars.ContextVar = contextvars.ContextVar("audit_request", default=None)
# Longer values are cut: the log is for reading, not a copy of the request.
MAX_VALUE_LENGTH = 200
# Query parameters never written down, whatever a page calls them.
SECRET_PARAMS = frozenset(
    {"password", "password1", "password2", "token", "secret", "sk", "csrfmiddlewaretoken"}
)


def client_ip(request) -> str | None:
    # REMOTE_ADDR only: behind a proxy, set it from X-Forwarded-For in the
    # proxy or WSGI server, where the header can be trusted.
    return (request.META.get("REMOTE_ADDR") or None) if request is not None else None


def _without_nul(text: str) -> str:
    """``text`` with any NUL, which PostgreSQL's text and jsonb refuse, as U+FFFD."""
    return text.replace("\x00", "\ufffd")


def _storable(text: str) -> str:
    """``text`` cut to a readable length, without NUL."""
    return _without_nul(text[:MAX_VALUE_LENGTH])


def safe_params(query) -> dict[str, Any]:
    """A request's query parameters, without secrets, each cut to a readable length."""
    params: dict[str, Any] = {}
    for key in list(query.keys())[:50]:
        if key.lower() in SECRET_PARAMS:
            continue
        values = [_storable(str(value)) for value in query.getlist(key)[:10]]
        params[_storable(key)] = values[0] if len(values) == 1 else values
    return params


def record(action: str, *, request=None, user=None, username: str = "", detail: dict | None = None):
    """Write one event; a failure to write is logged, never raised at the user.

    ``user`` defaults to the request's signed-in user; ``username`` to theirs.
    """
    from backups.models import AuditEvent

    request = request if request is not None else _current_request.get()
    if user is None and request is not None:
        candidate = getattr(request, "user", None)
        if candidate is not None and candidate.is_authenticated:
            user = candidate
    if user is not None and not getattr(user, "pk", None):
        user = None
    if not username and user is not None:
        username = user.get_username()
    try:
        # A savepoint: a write that fails leaves the caller's transaction usable.
        with transaction.atomic():
            return AuditEvent.objects.create(
                action=action,
                user=user,
                username=_without_nul(str(username)[:150]),
                detail=detail or {},
                ip=client_ip(request),
                path=request.get_full_path()[:500] if request is not None else "",
            )
    except DatabaseError:
        # The action itself went through; losing its trace is bad, failing it is worse.
        logger.exception("audit: could not record %s by %s", action, username or "-")
        return None


class AuditRequestMiddleware:
    """Makes the request known to the audit receivers (permission changes in the admin)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


# --- receivers ------------------------------------------------------------------


@receiver(user_logged_in, dispatch_uid="audit-login")
def _logged_in(sender, request, user, **kwargs):
    record("login", request=request, user=user)


@receiver(user_login_failed, dispatch_uid="audit-login-failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    # Django has already masked the password in ``credentials``; only the name is kept.
    username = credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username") or ""
    record("login_failed", request=request, username=str(username)[:150])


@receiver(user_logged_out, dispatch_uid="audit-logout")
def _logged_out(sender, request, user, **kwargs):
    record("logout", request=request, user=user)


def _locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    record("lockout", request=request, username=str(username or "")[:150], detail={"ip": ip_address})


try:
    from axes.signals import user_locked_out
except ImportError:  # pragma: no cover - axes is in requirements.txt
    pass
else:
    user_locked_out.connect(_locked_out, dispatch_uid="audit-lockout")


def _names(model, pks) -> list[str]:
    if not pks:
        return []
    if model is Group:
        return sorted(Group.objects.filter(pk__in=pks).values_list("name", flat=True))
    if model is get_user_model():
        return sorted(model.objects.filter(pk__in=pks).values_list(model.USERNAME_FIELD, flat=True))
    # Permissions: app_label.codename, the way code names them.
    return sorted(
        f"{app}.{codename}"
        for app, codename in model.objects.filter(pk__in=pks).values_list(
            "content_type__app_label", "codename"
        )
    )


def _label(obj) -> str:
    return obj.get_username() if hasattr(obj, "get_username") else str(obj)


def _changed(relation: str):
    def receiver_(sender, instance, action, reverse, model, pk_set, **kwargs):
        if action not in ("post_add", "post_remove", "post_clear"):
            return
        detail = {
            "relation": relation,
            "change": action.removeprefix("post_"),
            "of": f"{type(instance).__name__.lower()}:{_label(instance)}",
            "objects": _names(model, pk_set),
        }
        record("permission_changed", detail=detail)
        if isinstance(instance, get_user_model()):
            # What the pages remember of this user's access is stale now (backups.access, views.sync).
            cache.delete_many(
                [f"dashboard:access:{instance.pk}", f"dashboard:can-trigger-sync:{instance.pk}"]
            )

    return receiver_


User = get_user_model()
_receivers = {
    "user.groups": (User.groups.through, _changed("groups")),
    "user.user_permissions": (User.user_permissions.through, _changed("user_permissions")),
    "group.permissions": (Group.permissions.through, _changed("group_permissions")),
}
for _uid, (_through, _function) in _receivers.items():
    m2m_changed.connect(_function, sender=_through, weak=False, dispatch_uid=f"audit-{_uid}")

post_save.connect(roles.add_default_role, sender=User, dispatch_uid="roles-default-role")
post_migrate.connect(roles.ensure_roles, dispatch_uid="roles-ensure-roles")
