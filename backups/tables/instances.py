"""The fleet table: one row per DCS instance, with its backup health.

Its rows come from ``selectors.instances_with_stats``, whose annotations
(``last_backup_at``, ``last_success_at``, ``backups_30d``, ...) the columns
read; nothing here queries. Ages are relative to the ``now`` the view passes,
so one page is consistent with itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

import django_tables2 as tables
from django.db.models import F
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from backups.choices import NEUTRAL, BackupStatus, RestoreStatus
from backups.models import DcsInstance
from backups.rpo import source_label
from backups.selectors import at_risk_threshold, by_overdue
from backups.tables.backups import PLAIN_ID
from backups.tables.columns import BytesColumn, InstanceColumn, duration_text
from backups.templatetags.dashboard_tags import timestamp_title, utc_iso, utc_z


def age_text(delta: timedelta) -> str:
    """``3 h ago``: how long ago, to one unit (minutes, then hours up to two days, then days)."""
    seconds = delta.total_seconds()
    if seconds < 60:
        # A clock a little ahead of ours gives a negative age: still "now".
        return gettext("just now")
    minutes = int(seconds // 60)
    if minutes < 60:
        return gettext("%(minutes)d min ago") % {"minutes": minutes}
    hours = minutes // 60
    if hours < 48:
        return gettext("%(hours)d h ago") % {"hours": hours}
    return gettext("%(days)d d ago") % {"days": hours // 24}


def age_html(when: datetime | None, *, now: datetime, css_class: str = "age") -> SafeString | str:
    """An age in a ``<time>`` element, the exact time (viewer's zone and UTC) as tooltip."""
    if when is None:
        return ""
    return format_html(
        '<time class="{}" datetime="{}" title="{}">{}</time>',
        css_class,
        utc_iso(when),
        timestamp_title(when),
        age_text(now - when),
    )


_SLOT = "instance_id"


@lru_cache(maxsize=16)
def _instance_url_parts(script_prefix: str) -> tuple[str, str]:
    """The instance page's URL before and after the id, under this script prefix (reverse()'s)."""
    head, tail = reverse("backups:instance-detail", args=[_SLOT]).rsplit(_SLOT, 1)
    return head, tail


def instance_url(instance: DcsInstance) -> str:
    """The instance's page, or "" for an id our URL pattern cannot carry (empty, or with a slash).

    A plain id (PLAIN_ID: the same quoted) is put into the pattern's URL
    reversed once per script prefix: pages list dozens of instances, and
    each ``reverse()`` costs more than the rest of its row.
    """
    instance_id = instance.instance_id
    if PLAIN_ID.fullmatch(instance_id):
        head, tail = _instance_url_parts(get_script_prefix())
        return f"{head}{instance_id}{tail}"
    try:
        return reverse("backups:instance-detail", args=[instance_id])
    except NoReverseMatch:
        return ""


def _row_class(record) -> str:
    classes = []
    if record.gone_at is not None:
        classes.append("row--gone")
    if getattr(record, "at_risk", False):
        classes.append("row--at-risk")
    return " ".join(classes)


class SelfInstanceColumn(InstanceColumn):
    """``InstanceColumn`` for a table whose rows are the instances themselves."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("empty_values", ())
        super().__init__(*args, **kwargs)

    def render(self, record):
        return super().render(record)

    def value(self, record):
        return super().value(record)


def _nulls_last_when_descending(field: str):
    """An ``order_FOO`` that sorts "never" as the oldest: first going up, last going down.

    Databases disagree on where NULL sorts (SQLite: first, PostgreSQL: last),
    so it is said explicitly.
    """

    def order(self, queryset, is_descending):
        key = F(field).desc(nulls_last=True) if is_descending else F(field).asc(nulls_first=True)
        tie = ("-name", "-instance_id", "-pk") if is_descending else ("name", "instance_id", "pk")
        return queryset.order_by(key, *tie), True

    return order


def last_success_html(record, *, now: datetime, threshold: timedelta):
    """The age of the last success, green within the threshold, red beyond, grey when it does not apply."""
    when = getattr(record, "last_success_at", None)
    if getattr(record, "single_node", False) or record.is_single_node:
        return format_html(
            '<span class="badge badge--{}" title="{}">{}</span>',
            NEUTRAL,
            _("Single-node instances cannot be backed up."),
            _("not backed up by design"),
        )
    if when is None:
        return format_html('<span class="badge badge--{}">{}</span>', NEUTRAL, _("never"))
    # The instance's own RPO (selectors.with_risk) where the row has it.
    late = now - when > (getattr(record, "effective_rpo", None) or threshold)
    # No longer listed: neither in time nor late.
    color = NEUTRAL if record.gone_at is not None else "red" if late else "green"
    return format_html(
        '<span class="badge badge--{}">{}</span>{}',
        color,
        age_html(when, now=now),
        format_html(' <span class="visually-hidden">{}</span>', _("(at risk)")) if color == "red" else "",
    )


class SecondsColumn(tables.Column):
    """A duration: words on the page, whole seconds in exports (``export_key``, ``export_header``)."""

    def __init__(self, *args, export_key: str, export_header, **kwargs):
        self.export_key, self.export_header = export_key, export_header
        super().__init__(*args, **kwargs)


class DcsInstanceTable(tables.Table):
    name = SelfInstanceColumn(
        verbose_name=_("Instance"), accessor="name", order_by=("name", "instance_id", "pk")
    )
    engine = tables.Column(verbose_name=_("Engine"), order_by=("engine", "engine_version", "name"))
    region = tables.Column(
        verbose_name=_("Region"),
        order_by=("region", "name", "instance_id"),
        attrs={"td": {"class": "cell--nowrap"}},  # "ap-southeast-1" is one word to a DBA
    )
    status = tables.Column(verbose_name=_("Status"), order_by=("status", "name", "instance_id"))
    last_backup_at = tables.Column(verbose_name=_("Last backup"), empty_values=())
    last_success_at = tables.Column(verbose_name=_("Last success"), empty_values=())
    rpo = SecondsColumn(
        verbose_name=_("RPO"),
        accessor="effective_rpo",
        export_key="rpo_seconds",
        export_header=_("RPO (s)"),
        empty_values=(),
        attrs={"th": {"class": "cell--num"}, "td": {"class": "cell--num"}},
    )
    overdue = SecondsColumn(
        verbose_name=_("Over RPO by"),
        export_key="overdue_seconds",
        export_header=_("Over RPO by (s)"),
        empty_values=(),
    )
    backups_30d = tables.Column(
        verbose_name=_("Backups (30 d)"),
        orderable=False,
        attrs={"th": {"class": "cell--num"}, "td": {"class": "cell--num"}},
    )
    success_rate_30d = tables.Column(
        verbose_name=_("Success rate (30 d)"),
        orderable=False,
        attrs={"th": {"class": "cell--num"}, "td": {"class": "cell--num"}},
    )
    backed_up_size = BytesColumn(verbose_name=_("Backed-up size"), orderable=False)
    # Restore facts (backups.restores.with_restore_facts): subqueries, so not sortable.
    last_restorable_at = tables.Column(
        verbose_name=_("Last restorable backup"), empty_values=(), orderable=False
    )
    last_restore_at = tables.Column(verbose_name=_("Last restore"), empty_values=(), orderable=False)

    # Exports carry these plain facts in columns of their own, after the
    # column whose cell shows them together.
    export_extra_fields = {
        "name": (("instance_id", _("Instance id"), "instance_id"),),
        "engine": (("engine_version", _("Engine version"), "engine_version"),),
        "last_backup_at": (("last_backup_status", _("Last backup status"), "last_backup_status"),),
        "last_success_at": (("at_risk", _("At risk"), "at_risk"),),
        "last_restore_at": (("last_restore_status", _("Last restore status"), "last_restore_status"),),
        "rpo": (("rpo_source", _("RPO from"), "rpo_from"),),
        "backups_30d": (
            ("succeeded_30d", _("Succeeded (30 d)"), "succeeded_30d"),
            ("failed_30d", _("Failed (30 d)"), "failed_30d"),
        ),
    }

    class Meta:
        model = DcsInstance
        fields = ()
        sequence = (
            "name",
            "engine",
            "region",
            "status",
            "last_backup_at",
            "last_success_at",
            "backups_30d",
            "success_rate_30d",
            "backed_up_size",
            "last_restorable_at",
            "last_restore_at",
            "rpo",
            "overdue",
        )
        order_by_field = "sort"
        per_page = 50
        attrs = {"class": "table table--instances"}
        row_attrs = {"class": _row_class}
        empty_text = _("No DCS instances match.")

    order_last_backup_at = _nulls_last_when_descending("last_backup_at")
    order_last_success_at = _nulls_last_when_descending("last_success_at")

    def order_overdue(self, queryset, is_descending):
        # Descending is "most over its RPO first", never backed up at the top.
        return by_overdue(queryset, descending=is_descending), True

    def order_rpo(self, queryset, is_descending):
        key = F("effective_rpo").desc() if is_descending else F("effective_rpo").asc()
        tie = ("-name", "-instance_id", "-pk") if is_descending else ("name", "instance_id", "pk")
        return queryset.order_by(key, *tie), True

    def __init__(self, *args, now: datetime | None = None, caption: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now or timezone.now()
        self.threshold = at_risk_threshold()
        self.caption = caption or _("DCS instances")

    # --- engine ---

    def render_engine(self, value, record):
        if record.engine_version:
            return format_html('{} <span class="engine__version">{}</span>', value, record.engine_version)
        return value

    def value_engine(self, value):
        return value

    # --- status (the API's instance status: no enum of ours, so neutral) ---

    def render_status(self, value):
        return format_html('<span class="badge badge--{}">{}</span>', NEUTRAL, value)

    # --- last backup ---

    def render_last_backup_at(self, value, record):
        if value is None:
            return format_html('<span class="age age--none">{}</span>', _("never"))
        status = record.last_backup_status
        return format_html(
            '<span class="badge badge--{}">{}</span> {}',
            BackupStatus.color_of(status),
            BackupStatus.label_of(status),
            age_html(value, now=self.now),
        )

    def value_last_backup_at(self, value):
        return utc_z(value) if value else ""

    # --- last success ---

    def render_last_success_at(self, value, record):
        return last_success_html(record, now=self.now, threshold=self.threshold)

    def value_last_success_at(self, value):
        return utc_z(value) if value else ""

    # --- RPO (backups.rpo) ---

    def render_rpo(self, value, record):
        if getattr(record, "single_node", False):
            return format_html('<span class="rpo rpo--exempt">{}</span>', _("exempt"))
        return format_html(
            '<span class="rpo">{}</span> <span class="rpo__source">{}</span>',
            duration_text(value, units=2),
            source_label(record.rpo_source),
        )

    def value_rpo(self, value, record):
        # Seconds, as JSON has them; exempt (single node) is empty.
        if getattr(record, "single_node", False) or value is None:
            return ""
        return str(int(value.total_seconds()))

    def render_overdue(self, value, record):
        if not getattr(record, "at_risk", False):
            return "—"
        if value is None:
            return format_html('<span class="badge badge--red">{}</span>', _("never backed up"))
        return format_html('<span class="badge badge--red">{}</span>', duration_text(value, units=2))

    def value_overdue(self, value, record):
        # Seconds past the RPO; empty when not at risk or never backed up.
        return "" if value is None else str(int(value.total_seconds()))

    # --- restores ---

    def render_last_restorable_at(self, value, record):
        if value is None:
            return format_html('<span class="age age--none">{}</span>', _("none"))
        return age_html(value, now=self.now)

    def value_last_restorable_at(self, value):
        return utc_z(value) if value else ""

    def render_last_restore_at(self, value, record):
        if value is None:
            return format_html('<span class="age age--none">{}</span>', _("never"))
        status = getattr(record, "last_restore_status", "")
        return format_html(
            '<span class="badge badge--{}">{}</span> {}',
            RestoreStatus.color_of(status),
            RestoreStatus.label_of(status),
            age_html(value, now=self.now),
        )

    def value_last_restore_at(self, value):
        return utc_z(value) if value else ""

    # --- 30 days ---

    def render_success_rate_30d(self, value, record):
        return format_html(
            '<span title="{}">{} %</span>',
            _("%(succeeded)d succeeded, %(failed)d failed")
            % {"succeeded": record.succeeded_30d, "failed": record.failed_30d},
            f"{value:.1f}",
        )

    def value_success_rate_30d(self, value):
        return f"{value:.1f}"
