# The fleet page sums each instance's kept backups, and finds its last restorable one, off an index.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0013_sync_item_lists_restores"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="backuprecord",
            index=models.Index(
                condition=models.Q(("gone_at__isnull", True), ("status", "succeed")),
                fields=["instance", "-created_at", "-id", "size"],
                name="backup_kept_size",
            ),
        ),
    ]
