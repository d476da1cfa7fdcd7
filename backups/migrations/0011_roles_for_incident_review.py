"""The roles again, with the models of 0010: Viewers read restores, policies,
notes and alerts; Operators also write notes and set RPO policies."""

from importlib import import_module

from django.db import migrations

create_roles = import_module("backups.migrations.0005_roles").create_roles


class Migration(migrations.Migration):
    dependencies = [("backups", "0010_incident_review")]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
