#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Run `make run` or `make test` once to create .venv, "
            "or activate it with `. .venv/bin/activate`."
        ) from exc
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad environment variable: say which, without a traceback.
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)
    except DatabaseError as exc:
        if "--traceback" in sys.argv:
            raise
        from dashboard.cli import describe_database_error

        command = sys.argv[1] if len(sys.argv) > 1 else None
        sys.stderr.write(describe_database_error(exc, command) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
