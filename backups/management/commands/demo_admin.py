"""``manage.py demo_admin``: make sure the demo has a login, and print it.

Used by ``make run``. The password is random, made once, and kept in the data
folder (never in the repository) so that every ``make run`` can print it.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo admin account if needed and print its login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args, username: str, url: str, **options):
        User = get_user_model()
        password_file = settings.DATA_DIR / "demo-admin-password"
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            password_file.write_text(password)
            password_file.chmod(0o600)
        elif password_file.exists() and user.check_password(password_file.read_text().strip()):
            password = password_file.read_text().strip()
        else:
            self.stdout.write(
                f"The account {username!r} exists and its password was changed; use that password."
            )
            return
        line = "=" * 64
        self.stdout.write(
            self.style.SUCCESS(f"{line}\n  Dashboard: {url}\n  Log in as: {username} / {password}\n{line}")
        )
