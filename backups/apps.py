from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate

RECORDS = "backups_backuprecord"


def drop_sqlite_summary_triggers(sender, using, **kwargs) -> None:
    """Take the summaries' triggers off SQLite while migrations run.

    SQLite alters most columns by rebuilding the table under a new name, and
    checks every trigger when it renames a table: a trigger that names a
    table being rebuilt (the records, the instances, the hourly counts) would
    make the migration fail. ``ensure_summary_triggers`` puts them back.
    PostgreSQL alters tables in place, and keeps its triggers, so that a
    migration run next to live workers misses none of their writes.
    """
    from django.db import connections

    from backups import summaries

    connection = connections[using]
    if connection.vendor != "sqlite" or RECORDS not in connection.introspection.table_names():
        return
    if summaries.triggers_installed(connection):
        summaries.drop_triggers(connection)


def ensure_summary_triggers(sender, using, **kwargs) -> None:
    """Put the summaries' triggers back after migrating, and the summaries with them.

    Without triggers, a write made meanwhile was not summarised: the rebuild
    recounts what is there (seconds for millions of records).
    """
    from django.db import connections

    from backups import summaries

    connection = connections[using]
    # Migrated back past the summaries: nothing to keep.
    tables = connection.introspection.table_names()
    if {RECORDS, summaries.COUNTS} <= set(tables) and not summaries.triggers_installed(connection):
        summaries.install_triggers(connection)
        summaries.rebuild_summaries(connection)


class BackupsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "backups"

    def ready(self) -> None:
        pre_migrate.connect(drop_sqlite_summary_triggers, sender=self)
        post_migrate.connect(ensure_summary_triggers, sender=self)
        # The RPO policies' receivers: a change in the admin recomputes the fleet's RPOs too.
        from backups import rpo  # noqa: F401
