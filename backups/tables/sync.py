"""Tables of the sync pages: the runs (``/sync/``), and one run's errors and instances.

The runs' rows come with ``requested_by`` and ``instance`` joined (see
``views.sync``); nothing here queries.
"""

from __future__ import annotations

import django_tables2 as tables
from django.db.models import DurationField, ExpressionWrapper, F
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from backups.choices import SyncOutcome, describe_api_error_code
from backups.models import SyncError, SyncRun, SyncRunItem
from backups.tables.columns import (
    ChoiceBadgeColumn,
    DurationColumn,
    ErrorCodeColumn,
    InstanceColumn,
    TimestampColumn,
)

NUM = {"th": {"class": "cell--num"}, "td": {"class": "cell--num"}}
# What the scopes without an instance mean; an instance run shows its instance.
SCOPE_LABELS = {
    SyncRun.FLEET_SCOPE: _("Fleet"),
    SyncRun.ACTIVE_SCOPE: _("Instances with running backups"),
}


def run_url(run: SyncRun) -> str:
    return reverse("backups:sync-detail", args=[run.pk])


def scope_html(run: SyncRun):
    """The fleet, the running backups, or the run's instance linked to its page."""
    if run.instance_id is not None and run.instance is not None:
        return InstanceColumn().render(run.instance)
    label = SCOPE_LABELS.get(run.scope)
    if label is not None:
        return label
    # An instance run whose instance row was deleted: the scope names its id.
    return format_html("<code>{}</code>", run.scope)


def trigger_text(run: SyncRun) -> str:
    label = run.get_trigger_display()
    if run.requested_by is not None:
        return f"{label} ({run.requested_by.get_username()})"
    return str(label)


class CountsColumn(tables.Column):
    """Several counts of a row in one cell: ``12 listed · 11 synced · 1 failed``.

    ``parts`` are ``(field, label, alarming)``: a part marked alarming stands
    out when it is not zero. The cell's export is the first part; a table
    exports the others with ``export_extra_fields``.
    """

    def __init__(self, parts, *args, export_header=None, **kwargs):
        self.parts = parts
        self.export_header = export_header
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("empty_values", ())
        kwargs.setdefault("attrs", {"td": {"class": "cell--counts"}})
        super().__init__(*args, **kwargs)

    def render(self, record):
        cells = []
        for field, label, alarming in self.parts:
            n = getattr(record, field)
            css = "count count--alarm" if alarming and n else "count"
            cells.append((css, n, label))
        return format_html_join(" · ", '<span class="{}">{} {}</span>', cells)

    def value(self, value):
        return value


class SyncRunTable(tables.Table):
    """Sortable by started (the default, newest first; the started index) and by duration.

    Duration has no index: the database sorts the filtered runs, which the
    retention (DCS_SYNC_RUN_RETENTION_DAYS) keeps to some thousands.
    """

    started_at = TimestampColumn(verbose_name=_("Started"), orderable=True, order_by=("started_at", "id"))
    kind = tables.Column(verbose_name=_("Kind"))
    trigger = tables.Column(verbose_name=_("Trigger"))
    scope = tables.Column(verbose_name=_("Scope"))
    outcome = ChoiceBadgeColumn(SyncOutcome, verbose_name=_("Outcome"))
    duration = DurationColumn(verbose_name=_("Duration"), orderable=True)
    instances_seen = CountsColumn(
        (
            ("instances_seen", _("listed"), False),
            ("instances_synced", _("synced"), False),
            ("instances_failed", _("failed"), True),
        ),
        verbose_name=_("Instances"),
        export_header=_("Instances listed"),
    )
    records_new = CountsColumn(
        (
            ("records_new", _("new"), False),
            ("records_updated", _("updated"), False),
            ("records_gone", _("gone"), False),
        ),
        verbose_name=_("Records"),
        export_header=_("New records"),
    )
    api_calls = tables.Column(verbose_name=_("API calls"), attrs=NUM)
    retries = tables.Column(verbose_name=_("Retries"), attrs=NUM)
    throttles = tables.Column(verbose_name=_("Throttled"), attrs=NUM)
    error_count = tables.Column(verbose_name=_("Errors"), attrs=NUM)

    export_extra_fields = {
        "started_at": (
            ("id", _("Run"), "pk"),
            ("finished_at", _("Finished"), "finished_at"),
        ),
        "trigger": (("requested_by", _("Requested by"), "requested_by__username"),),
        "outcome": (("reason", _("Reason"), "reason"),),
        "instances_seen": (
            ("instances_synced", _("Instances synced"), "instances_synced"),
            ("instances_failed", _("Instances failed"), "instances_failed"),
            ("instances_gone", _("Instances gone"), "instances_gone"),
        ),
        "records_new": (
            ("records_updated", _("Updated records"), "records_updated"),
            ("records_gone", _("Gone records"), "records_gone"),
        ),
    }

    class Meta:
        model = SyncRun
        fields = ()
        sequence = (
            "started_at",
            "kind",
            "trigger",
            "scope",
            "outcome",
            "duration",
            "instances_seen",
            "records_new",
            "api_calls",
            "retries",
            "throttles",
            "error_count",
        )
        orderable = False
        order_by = ("-started_at",)
        order_by_field = "sort"
        per_page = 50
        attrs = {"class": "table table--syncs"}
        row_attrs = {"class": lambda record: f"row--{record.outcome}"}
        empty_text = _("No sync has run yet.")

    def __init__(self, *args, caption: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.caption = caption or _("Sync runs")

    def order_duration(self, queryset, is_descending):
        # A run still going has no duration yet: last both ways.
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        key = duration.desc(nulls_last=True) if is_descending else duration.asc(nulls_last=True)
        return queryset.order_by(key, "-started_at", "-id"), True

    def render_started_at(self, value, record):
        return format_html('<a href="{}">{}</a>', run_url(record), TimestampColumn().render(value))

    def render_trigger(self, value, record):
        if record.requested_by is not None:
            return format_html(
                '{} <span class="sync__user">({})</span>', value, record.requested_by.get_username()
            )
        return value

    def value_trigger(self, value):
        return value

    def render_scope(self, record):
        return scope_html(record)

    def value_scope(self, value):
        return value

    def render_error_count(self, value, record):
        if not value:
            return "0"
        return format_html(
            '<a class="count count--alarm" href="{}#errors" title="{}">{}</a>',
            run_url(record),
            _("Show the errors of this run"),
            value,
        )

    def value_error_count(self, value):
        return value

    @property
    def has_running_rows(self) -> bool:
        """Whether the current page shows a run that is still going (the page then refreshes itself)."""
        rows = self.page.object_list if hasattr(self, "page") else self.rows
        return any(row.record.outcome == SyncOutcome.RUNNING for row in rows)


class SyncErrorTable(tables.Table):
    """One run's errors, as recorded: oldest first."""

    occurred_at = TimestampColumn(verbose_name=_("When"))
    scope = tables.Column(verbose_name=_("Scope"), empty_values=())
    error = tables.Column(verbose_name=_("Kind"))
    status = tables.Column(verbose_name=_("HTTP status"), attrs=NUM)
    error_code = ErrorCodeColumn(verbose_name=_("Error code"), describe=describe_api_error_code)
    error_msg = tables.Column(verbose_name=_("Message"), attrs={"td": {"class": "cell--wrap"}})
    request_id = tables.Column(verbose_name=_("Request id"))

    class Meta:
        model = SyncError
        fields = ()
        sequence = ("occurred_at", "scope", "error", "status", "error_code", "error_msg", "request_id")
        orderable = False
        attrs = {"class": "table table--sync-errors"}
        empty_text = _("No errors.")

    def __init__(self, *args, caption: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.caption = caption or _("Errors")

    def render_scope(self, value, record):
        if record.instance is not None:
            return InstanceColumn().render(record.instance)
        return format_html("<code>{}</code>", value) if value else "—"

    def render_request_id(self, value):
        return format_html('<code class="request-id">{}</code>', value)


class SyncRunItemTable(tables.Table):
    """One run's instances, in the order they were queued."""

    position = tables.Column(verbose_name=_("#"), attrs=NUM)
    instance = InstanceColumn(verbose_name=_("Instance"))
    begin = tables.Column(verbose_name=_("Listed"), empty_values=())
    state = tables.Column(verbose_name=_("State"))
    outcome = ChoiceBadgeColumn(SyncOutcome, verbose_name=_("Outcome"))
    records_new = CountsColumn(
        (
            ("records_new", _("new"), False),
            ("records_updated", _("updated"), False),
            ("records_gone", _("gone"), False),
        ),
        verbose_name=_("Records"),
    )
    api_calls = tables.Column(verbose_name=_("API calls"), attrs=NUM)
    started_at = TimestampColumn(verbose_name=_("Started"))
    finished_at = TimestampColumn(verbose_name=_("Finished"))

    class Meta:
        model = SyncRunItem
        fields = ()
        sequence = (
            "position",
            "instance",
            "begin",
            "state",
            "outcome",
            "records_new",
            "api_calls",
            "started_at",
            "finished_at",
        )
        orderable = False
        attrs = {"class": "table table--sync-items"}
        empty_text = _("No instances.")

    def __init__(self, *args, caption: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.caption = caption or _("Instances of this run")

    def render_position(self, value):
        return value + 1

    def render_begin(self, value):
        if value is None:
            return _("every backup")
        return format_html("{} {}", _("since"), TimestampColumn().render(value))
