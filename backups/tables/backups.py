"""The backup records table."""

from __future__ import annotations

import re

import django_tables2 as tables
from django.urls import NoReverseMatch, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from backups.choices import BackupFormat, BackupStatus, BackupType
from backups.models import BackupRecord
from backups.tables.anomalies import AnomalyColumn
from backups.tables.columns import (
    BytesColumn,
    ChoiceBadgeColumn,
    DurationColumn,
    ErrorCodeColumn,
    InstanceColumn,
    ProgressColumn,
    TimestampColumn,
    YesNoColumn,
    gone_marker,
)


def _row_class(record) -> str:
    classes = []
    if record.gone_at is not None:
        classes.append("row--gone")
    if record.is_active:
        classes.append("row--active")
    return " ".join(classes)


def backup_url(record: BackupRecord) -> str:
    """The backup's own page, or "" for an id our URL pattern cannot carry (empty, or with a slash)."""
    try:
        return reverse("backups:backup-detail", args=[record.backup_id])
    except NoReverseMatch:
        return ""


# An id made of these alone is the same quoted, and matches the URL pattern
# (one path segment, neither "." nor ".."), so its URL is the pattern's
# reversed once with the id put in its place.
PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")
_SLOT = "backup_id"


class PageBackupUrls:
    """``backup_url`` for the rows of one page: ``reverse()`` once, not per row.

    Built per request (reverse() depends on the request's script prefix);
    an id that is not plain goes through ``backup_url``, which gives "" for
    an id our URL pattern cannot carry.
    """

    def __init__(self):
        self.head, self.tail = reverse("backups:backup-detail", args=[_SLOT]).rsplit(_SLOT, 1)

    def __call__(self, record: BackupRecord) -> str:
        backup_id = record.backup_id
        if PLAIN_ID.fullmatch(backup_id):
            return f"{self.head}{backup_id}{self.tail}"
        return backup_url(record)


class BackupRecordTable(tables.Table):
    """Sortable by created (the default, newest first), status, size and finished.

    Each sort is a column and then id, both in the sort's direction, and each
    has its index (BackupRecord.Meta.indexes), read forwards or backwards:
    a page is an index range whatever the sort, and keyset paging
    (backups.keyset) can seek to any depth. Size and finished sort by
    ``size_key`` and ``finished_key``, in which an unknown size or end (a
    backup still running) is below every known one: first going up, last
    going down, on PostgreSQL and SQLite alike.
    """

    instance = InstanceColumn(verbose_name=_("Instance"))
    # empty_values=(): a gone record with no name still gets its marker.
    backup_name = tables.Column(verbose_name=_("Backup"), empty_values=())
    backup_type = ChoiceBadgeColumn(BackupType, verbose_name=_("Type"))
    status = ChoiceBadgeColumn(
        BackupStatus, verbose_name=_("Status"), orderable=True, order_by=("status", "id")
    )
    progress = ProgressColumn(verbose_name=_("Progress"))
    size = BytesColumn(verbose_name=_("Size"), orderable=True, order_by=("size_key", "id"))
    backup_format = ChoiceBadgeColumn(BackupFormat, verbose_name=_("Format"))
    created_at = TimestampColumn(verbose_name=_("Created"), orderable=True, order_by=("created_at", "id"))
    updated_at = TimestampColumn(verbose_name=_("Finished"), orderable=True, order_by=("finished_key", "id"))
    duration = DurationColumn(verbose_name=_("Duration"))
    anomaly = AnomalyColumn(verbose_name=_("Anomaly"))
    error_code = ErrorCodeColumn(verbose_name=_("Error"))
    remark = tables.Column(verbose_name=_("Remark"), attrs={"td": {"class": "cell--wrap"}})
    is_support_restore = YesNoColumn(verbose_name=_("Restorable"), null=True, yesno=(_("Yes"), _("No")))

    # Exports carry the ids on their own, next to the names shown.
    export_extra_fields = {
        "instance": (("instance_id", _("Instance id"), "instance__instance_id"),),
        "backup_name": (("backup_id", _("Backup id"), "backup_id"),),
        # The ratios behind the flags (value ÷ the instance's recent median).
        "anomaly": (
            ("size_ratio", _("Size vs median"), "size_ratio"),
            ("duration_ratio", _("Duration vs median"), "duration_ratio"),
        ),
        # The notes of each backup (backups.notes), read per export chunk.
        "is_support_restore": (
            ("incidents", _("Incidents"), "note_incidents"),
            ("notes", _("Notes"), "note_texts"),
        ),
    }

    class Meta:
        model = BackupRecord
        fields = ()
        sequence = (
            "instance",
            "backup_name",
            "backup_type",
            "status",
            "progress",
            "size",
            "backup_format",
            "created_at",
            "updated_at",
            "duration",
            "anomaly",
            "error_code",
            "remark",
            "is_support_restore",
        )
        # Only the columns marked orderable sort: the ones an index serves
        # or a page of filtered rows can afford.
        orderable = False
        order_by = ("-created_at",)
        order_by_field = "sort"
        per_page = 25
        attrs = {"class": "table table--backups"}
        row_attrs = {"class": _row_class}
        empty_text = _("No backup records yet.")

    def __init__(self, *args, caption: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.caption = caption or _("Backup records")

    def prepare_export_chunk(self, records: list) -> None:
        from backups.notes import ExportNotes

        # Made at an export's first chunk and kept for the rest of it: it
        # learns once which backups have notes (a table is made per export).
        notes = getattr(self, "_export_notes", None)
        if notes is None:
            notes = self._export_notes = ExportNotes()
        notes.attach(records)

    def render_backup_name(self, value, record):
        name = value or record.backup_id
        gone = gone_marker(record.gone_at, _("This backup is no longer listed by the API."))
        url = self._backup_url(record)
        if not url:
            return format_html('<span class="backup__name">{}</span>{}', name, gone)
        return format_html('<a href="{}" class="backup__name">{}</a>{}', url, name, gone)

    @cached_property
    def _backup_url(self) -> PageBackupUrls:
        return PageBackupUrls()

    def value_backup_name(self, value, record):
        return value or record.backup_id

    @property
    def has_live_rows(self) -> bool:
        """Whether the current page shows a backup that is still going.

        A gone record's status is frozen at what we last saw, so it does not
        count: the page would otherwise poll forever.
        """
        rows = self.page.object_list if hasattr(self, "page") else self.rows
        return any(row.record.is_active and row.record.gone_at is None for row in rows)
