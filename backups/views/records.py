"""Pages about backup records."""

from __future__ import annotations

from django_tables2 import SingleTableView

from backups.models import BackupRecord
from backups.tables import BackupRecordTable
from backups.views.mixins import TablePageMixin


class BackupRecordListView(TablePageMixin, SingleTableView):
    model = BackupRecord
    table_class = BackupRecordTable
    template_name = "backups/backuprecord_list.html"
    partial_template_name = "backups/_backup_table.html"

    def get_queryset(self):
        return BackupRecord.objects.select_related("instance").newest_first()
