from django.db import migrations


def reinstall_postgresql_triggers(apps, schema_editor):
    # The trigger functions of 0006 ran their statements as cached plans,
    # planned once for the row counts of their first call; these EXECUTE each
    # statement, planned for the rows at hand (backups.summaries). The
    # summaries themselves are unchanged, so nothing is rebuilt. SQLite's
    # triggers are row triggers, put back after every migrate (BackupsConfig).
    if schema_editor.connection.vendor != "postgresql":
        return
    from backups import summaries

    summaries.install_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("backups", "0008_instance_sort_indexes")]

    operations = [migrations.RunPython(reinstall_postgresql_triggers, migrations.RunPython.noop)]
