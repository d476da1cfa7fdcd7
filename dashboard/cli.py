"""``manage.py``'s answer to a database it cannot use: what is wrong and what to do, in a few lines.

Every command, ours and Django's, reaches the database through the same
connection, so the answer is given once, where the command line is run, and
not by each command. ``--traceback`` still shows the traceback.
"""

from __future__ import annotations

from django.db import DatabaseError

MIGRATE = "`python manage.py migrate` (make run and make serve run it first)"


def describe_database_error(exc: DatabaseError, command: str | None) -> str:
    """The error as the database gave it (without the password), and the likely cause."""
    from django.conf import settings

    text = redacted(str(exc).strip() or type(exc).__name__, settings.DATABASES["default"].get("PASSWORD"))
    lines = [f"Database error: {text[:500]}"]
    pending = _unapplied_migrations()
    if pending is None:
        lines.append("The database cannot be reached: check DATABASE_URL, and that its server is running.")
    elif pending and command != "migrate":
        lines.append(
            f"The database is not set up: {pending} migration(s) have not been applied. Run {MIGRATE}."
        )
    return "\n".join(lines)


def redacted(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def _unapplied_migrations() -> int | None:
    """How many migrations the database lacks; None when it cannot be asked."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        connection.close()  # a connection the error left unusable (PostgreSQL's aborted transaction)
        executor = MigrationExecutor(connection)
        return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    except DatabaseError:
        return None
