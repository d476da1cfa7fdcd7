"""An instance's restores: what was restored from which backup, how it went."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from backups.choices import RestoreStatus
from backups.models import RestoreRecord
from backups.tables.columns import (
    ChoiceBadgeColumn,
    ErrorCodeColumn,
    ProgressColumn,
    TimestampColumn,
    gone_marker,
)


def _is_active(record: RestoreRecord) -> bool:
    return record.status in RestoreStatus.active()


def _row_class(record) -> str:
    classes = []
    if record.gone_at is not None:
        classes.append("row--gone")
    if _is_active(record):
        classes.append("row--active")
    return " ".join(classes)


def restore_status_badge(status: str):
    """A restore's status as a badge, its colour from RestoreStatus; "—" for none."""
    if not status:
        return "—"
    return format_html(
        '<span class="badge badge--{}">{}</span>',
        RestoreStatus.color_of(status),
        RestoreStatus.label_of(status),
    )


def restored_backup_html(record: RestoreRecord):
    """The backup a restore came from: linked to its page when we hold it (``known_backup``)."""
    name = record.backup_name or record.backup_id
    if not name:
        return "—"
    if getattr(record, "known_backup", False):
        try:
            url = reverse("backups:backup-detail", args=[record.backup_id])
        except NoReverseMatch:
            url = ""
        if url:
            return format_html('<a href="{}" class="backup__name">{}</a>', url, name)
    return format_html(
        '<span class="backup__name" title="{}">{}</span>', _("We hold no record of this backup."), name
    )


class RestoreRecordTable(tables.Table):
    """One instance's restores, newest first; its rows come from ``backups.restores.restores_of``."""

    restore_name = tables.Column(verbose_name=_("Restore"), empty_values=())
    status = ChoiceBadgeColumn(RestoreStatus, verbose_name=_("Status"))
    progress = ProgressColumn(verbose_name=_("Progress"), is_active=_is_active)
    backup = tables.Column(verbose_name=_("Restored from"), accessor="backup_name", empty_values=())
    created_at = TimestampColumn(verbose_name=_("Created"))
    updated_at = TimestampColumn(verbose_name=_("Finished"))
    error_code = ErrorCodeColumn(verbose_name=_("Error"))
    restore_remark = tables.Column(verbose_name=_("Remark"), attrs={"td": {"class": "cell--wrap"}})

    class Meta:
        model = RestoreRecord
        fields = ()
        sequence = (
            "restore_name",
            "status",
            "progress",
            "backup",
            "created_at",
            "updated_at",
            "error_code",
            "restore_remark",
        )
        orderable = False
        attrs = {"class": "table table--restores"}
        row_attrs = {"class": _row_class}
        empty_text = _("No restores of this instance.")

    def __init__(self, *args, caption: str = "", **kwargs):
        kwargs.setdefault("prefix", "restores-")
        super().__init__(*args, **kwargs)
        self.caption = caption or _("Restores")

    def render_restore_name(self, value, record):
        gone = gone_marker(record.gone_at, _("This restore is no longer listed by the API."))
        return format_html(
            '<span class="restore__name">{}</span>{} <code class="restore__id">{}</code>',
            value or record.restore_id,
            gone,
            record.restore_id,
        )

    def value_restore_name(self, value, record):
        return value or record.restore_id

    def render_backup(self, record):
        return restored_backup_html(record)

    def value_backup(self, record):
        return record.backup_id
