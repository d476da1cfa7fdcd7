"""The dashboard's tables: shared columns in ``columns``, one module per table."""

from backups.tables.backups import BackupRecordTable
from backups.tables.instances import DcsInstanceTable

__all__ = ["BackupRecordTable", "DcsInstanceTable"]
