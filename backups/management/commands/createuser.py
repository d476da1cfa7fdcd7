"""``createuser USERNAME --role {viewer,operator,admin}``: add a user from the shell.

The password comes from the environment variable named by ``--password-env``,
or from stdin: one line, or asked twice when stdin is a terminal. It is
checked by the password validators and never printed. An existing username is
refused unless ``--update`` (which sets the role and, if given, the password
and e-mail). The Admin role also sets ``is_staff`` (the Django admin), never
``is_superuser``.
"""

from __future__ import annotations

import getpass
import os
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backups import audit, roles


class Command(BaseCommand):
    help = "Create (or with --update, change) a dashboard user with a role."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=sorted(roles.ROLES))
        parser.add_argument(
            "--password-env", metavar="VAR", help="Read the password from this environment variable."
        )
        parser.add_argument("--email", default=None)
        parser.add_argument(
            "--update", action="store_true", help="Change an existing user instead of refusing."
        )

    def read_password(self, options) -> str:
        name = options["password_env"]
        if name:
            if name not in os.environ:
                raise CommandError(f"The environment variable {name} is not set.")
            return os.environ[name]
        stdin = sys.stdin
        if stdin.isatty():
            first = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != first:
                raise CommandError("The two passwords differ.")
            return first
        return stdin.readline().rstrip("\r\n")

    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"].strip()
        if not username:
            raise CommandError("The username is empty.")
        role = options["role"]
        group = Group.objects.filter(name=roles.ROLES[role]).first()
        if group is None:
            raise CommandError(
                f"The {roles.ROLES[role]} group does not exist: run “manage.py migrate” first."
            )
        existing = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if existing is not None and not options["update"]:
            raise CommandError(f"A user named {username} exists already; add --update to change it.")
        updating = existing is not None
        password = self.read_password(options)
        user = existing or User(**{User.USERNAME_FIELD: username})
        if options["email"] is not None:
            user.email = options["email"]
        if password or not updating:
            if not password:
                raise CommandError("The password is empty.")
            try:
                validate_password(password, user)
            except ValidationError as exc:
                raise CommandError("The password was refused: " + " ".join(exc.messages)) from None
            user.set_password(password)
        user.is_staff = role == "admin"
        with transaction.atomic(), roles.no_default_role():
            user.save()
            user.groups.set([group])
            if not updating:
                audit.record("user_created", user=user, detail={"role": role, "via": "createuser"})
        verb = "Updated" if updating else "Created"
        self.stdout.write(f"{verb} {username} with the {roles.ROLES[role]} role.")
