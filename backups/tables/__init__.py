"""The dashboard's tables: shared columns in ``columns``, one module per table."""

from backups.tables.backups import BackupRecordTable

__all__ = ["BackupRecordTable"]
