"""The roles, in one place: Viewer, Operator and Admin are Django groups.

The data migration ``0005_roles`` creates the groups with these permissions;
``createuser`` puts a user in one of them. A permission is written
``app_label.codename``; ``*`` matches any codename of the app.

- **Viewer** (support staff) reads every page and export.
- **Operator** (DBAs) may also start a sync ("Sync now"), write notes with
  incident references, and set RPO policies.
- **Admin** runs the Django admin: users, groups, the audit log, lockouts.
  ``createuser --role admin`` also sets ``is_staff``, never ``is_superuser``.
"""

from __future__ import annotations

import contextlib
import contextvars
from fnmatch import fnmatchcase

VIEWER = "Viewer"
OPERATOR = "Operator"
ADMIN = "Admin"
# The names ``createuser --role`` takes, and the groups they stand for.
ROLES = {"viewer": VIEWER, "operator": OPERATOR, "admin": ADMIN}

# What every page and export asks of a signed-in user (superusers have it).
VIEW_PERMISSION = "backups.view_backuprecord"
SYNC_PERMISSION = "backups.trigger_sync"
AUDIT_PERMISSION = "backups.view_auditevent"
NOTE_PERMISSION = "backups.add_note"
RPO_PERMISSION = "backups.change_rpopolicy"

# The models whose pages a Viewer reads. Not the audit log: it says who
# signed in from where, which is for admins.
_READ_MODELS = (
    "dcsinstance",
    "backuprecord",
    "backupstatuschange",
    "syncrun",
    "syncrunitem",
    "syncerror",
    "synclease",
    "workerheartbeat",
    "restorerecord",
    "restorestatuschange",
    "rpopolicy",
    "note",
    "alert",
    "alertdelivery",
)
_VIEWER = tuple(f"backups.view_{model}" for model in _READ_MODELS)
_OPERATOR = (
    *_VIEWER,
    SYNC_PERMISSION,
    NOTE_PERMISSION,
    "backups.add_rpopolicy",
    RPO_PERMISSION,
    "backups.delete_rpopolicy",
)
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    VIEWER: _VIEWER,
    OPERATOR: _OPERATOR,
    # Everything of ours, users and groups, and axes' lockouts (to lift one).
    ADMIN: (*_OPERATOR, "backups.*", "auth.*", "axes.*"),
}


def permission_names(role: str, available: list[str]) -> list[str]:
    """The ``app_label.codename`` names of ``available`` that ``role`` gets."""
    patterns = ROLE_PERMISSIONS[role]
    return [name for name in available if any(fnmatchcase(name, pattern) for pattern in patterns)]


def apply_roles(group_model, permission_model) -> None:
    """Create the groups and set exactly their permissions (models may be historical ones)."""
    permissions = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in permission_model.objects.select_related("content_type")
    }
    for role in ROLE_PERMISSIONS:
        group, _created = group_model.objects.get_or_create(name=role)
        group.permissions.set([permissions[name] for name in permission_names(role, list(permissions))])


# --- the role of a new account ------------------------------------------------

_default_role_off = contextvars.ContextVar("default_role_off", default=False)


@contextlib.contextmanager
def no_default_role():
    """Create users without the default role (``createuser`` sets the role itself)."""
    token = _default_role_off.set(True)
    try:
        yield
    finally:
        _default_role_off.reset(token)


def default_role_applies() -> bool:
    return not _default_role_off.get()


def add_default_role(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """A new account joins ``DASHBOARD_DEFAULT_ROLE`` (Viewer unless set otherwise).

    Connected to the user model's ``post_save`` by ``backups.audit``. Without
    a role an account can sign in and sees a page that says to ask an admin.
    """
    from django.conf import settings
    from django.contrib.auth.models import Group

    role = ROLES.get(getattr(settings, "DASHBOARD_DEFAULT_ROLE", ""))
    if not created or raw or role is None or not default_role_applies():
        return
    group = Group.objects.filter(name=role).first()
    if group is not None:
        instance.groups.add(group)


def ensure_roles(sender, **kwargs) -> None:
    """After ``migrate`` or a flush (which empties the groups the data migration
    made, as tests that use a live server do), bring back any missing role."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    if getattr(sender, "name", "") != "backups":
        return
    if Group.objects.filter(name__in=list(ROLE_PERMISSIONS)).count() == len(ROLE_PERMISSIONS):
        return
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0)
    missing = set(ROLE_PERMISSIONS) - set(Group.objects.values_list("name", flat=True))
    permissions = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.select_related("content_type")
    }
    for role in ROLE_PERMISSIONS:
        if role in missing:
            group = Group.objects.create(name=role)
            group.permissions.set([permissions[name] for name in permission_names(role, list(permissions))])
