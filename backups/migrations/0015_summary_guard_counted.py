from django.db import migrations


def reinstall_postgresql_triggers(apps, schema_editor):
    # The update trigger's guard ("did any row move?") asked EXISTS over the
    # old and new rows, which PostgreSQL planned as a nested loop: a sync's
    # last_seen refresh of 1,000 records compared a million pairs. It now
    # counts them, by one hash join (backups.summaries._pg_function). The
    # summaries themselves are unchanged, so nothing is rebuilt. SQLite's
    # triggers are put back after every migrate (BackupsConfig).
    if schema_editor.connection.vendor != "postgresql":
        return
    from backups import summaries

    summaries.install_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("backups", "0014_backup_kept_size")]

    operations = [migrations.RunPython(reinstall_postgresql_triggers, migrations.RunPython.noop)]
