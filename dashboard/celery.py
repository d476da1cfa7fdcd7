"""The Celery app. Configuration comes from Django settings (CELERY_*)."""

import os
import sys
from pathlib import Path

from celery import Celery
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _settings_or_exit() -> None:
    """Load the settings now: a bad variable stops a worker or beat with one line, as manage.py does.

    Celery would otherwise load them later, inside its start-up, and print a
    traceback that buries the variable's name.
    """
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018  (loads the settings module)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)


# Only as the celery program (`celery -A dashboard ...`, `python -m celery ...`):
# manage.py, gunicorn and pytest import this module too, and handle errors themselves.
_program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
if _program.name == "celery" or _program.parent.name == "celery":
    _settings_or_exit()
