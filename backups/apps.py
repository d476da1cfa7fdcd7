from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_summary_triggers(sender, using, **kwargs) -> None:
    """Put back the summaries' triggers if a migration dropped them.

    SQLite cannot alter most columns in place: Django rebuilds the table
    under a new name, and the triggers of the old table go with it. The
    records are copied unchanged, so the summaries are still right; only
    the triggers need to be there again.
    """
    from django.db import connections

    from backups import summaries

    connection = connections[using]
    tables = connection.introspection.table_names()
    if "backups_backuprecord" in tables and not summaries.triggers_installed(connection):
        summaries.install_triggers(connection)


class BackupsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "backups"

    def ready(self) -> None:
        post_migrate.connect(ensure_summary_triggers, sender=self)
