"""Reads behind the overview and the instance pages.

Every function here is a QuerySet or one aggregate query: a page asks a
constant number of questions however many instances and backups there are.
Python only reshapes rows the database already picked (split a list in two,
walk the sorted success times of one instance for its gaps).

"Last success" means the newest backup with status ``succeed`` by its
``created_at``, whether or not the API still lists it: the cloud drops
automatic backups after 7 days, and a backup that succeeded then still did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, Greatest, NullIf, Round, RowNumber
from django.utils import timezone

from backups.choices import BackupStatus, SyncOutcome
from backups.db import CompiledOnce, select_scalars
from backups.models import (
    Alert,
    BackupHourlyCount,
    BackupRecord,
    DcsInstance,
    Note,
    SyncError,
    SyncRun,
    SyncRunItem,
)
from backups.restores import with_restore_facts
from backups.rpo import DEFAULT_SOURCE, default_rpo
from backups.sync.health import SyncHealth, health_from, health_queries

SUCCEEDED = BackupStatus.SUCCEED.value
FAILED = BackupStatus.FAILED.value
# The instance list's per-instance statistics look this far back.
STATS_PERIOD = timedelta(days=30)


def at_risk_threshold() -> timedelta:
    """The default RPO (DASHBOARD_RPO_HOURS): what applies without an RPO policy."""
    return default_rpo()


def rpo_expression() -> Coalesce:
    """An instance's RPO in SQL: its own (from a policy, backups.rpo), else the default setting."""
    return Coalesce(
        F("rpo"), Value(default_rpo(), output_field=DurationField()), output_field=DurationField()
    )


def sync_stale_after() -> timedelta:
    return timedelta(minutes=settings.DASHBOARD_SYNC_STALE_MINUTES)


def single_node_q(prefix: str = "") -> Q:
    """``DcsInstance.is_single_node`` as a filter.

    The property says: some dot-separated part of the spec code starts with
    "single" (``redis.single.xu1.tiny.128``, ``dcs.memcached.single_node``).
    That is the same as: the code starts with "single", or contains ".single".
    """
    return Q(**{f"{prefix}spec_code__istartswith": "single"}) | Q(
        **{f"{prefix}spec_code__icontains": ".single"}
    )


def success_rate(succeeded: int | None, failed: int | None) -> float | None:
    """Succeeded ÷ (succeeded + failed) in percent; None when nothing finished."""
    succeeded, failed = succeeded or 0, failed or 0
    if succeeded + failed == 0:
        return None
    return 100.0 * succeeded / (succeeded + failed)


@dataclass(frozen=True)
class FleetScope:
    """Part of the fleet: one region, one project, or both; empty is all of it.

    One deployment watches several region/project pairs (DCS_PROJECTS), and
    each page can be narrowed to one of them.
    """

    region: str = ""
    project_id: str = ""

    def __bool__(self) -> bool:
        return bool(self.region or self.project_id)

    def instances(self, queryset: QuerySet[DcsInstance], prefix: str = "") -> QuerySet:
        """``queryset`` narrowed to the scope; ``prefix`` reaches the instance from another model."""
        if self.region:
            queryset = queryset.filter(**{f"{prefix}region": self.region})
        if self.project_id:
            queryset = queryset.filter(**{f"{prefix}project_id": self.project_id})
        return queryset

    def params(self) -> dict[str, str]:
        """The scope as the query parameters the pages filter by."""
        return {key: value for key, value in (("region", self.region), ("project", self.project_id)) if value}


FLEET = FleetScope()


# --- Per-instance annotations -------------------------------------------------


def _backups_of_row() -> QuerySet[BackupRecord]:
    # The default ordering is dropped: a count or a sum over it must not
    # group by the ordering's columns.
    return BackupRecord.objects.filter(instance=OuterRef("pk")).order_by()


def _count_of(records: QuerySet[BackupRecord]) -> Coalesce:
    counted = records.values("instance").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Age(Func):
    """``now - field``: a duration, computed in SQL on SQLite too.

    Django subtracts two times on SQLite by calling a Python function for
    each row (django_timestamp_diff, which parses both texts): the overview
    asks it a few times for each of 2,000 instances, most of its CPU. There
    a time is UTC text, ``YYYY-MM-DD HH:MM:SS`` with ``.ffffff`` unless the
    microseconds are zero, and a duration is an integer of microseconds, so
    the age is ``now`` in microseconds less the whole seconds of the text's
    first 19 characters (strftime '%s') and its digits after the dot, padded
    to six as Django reads them: exact to the microsecond like the function,
    and NULL for a NULL time. Other databases subtract natively.
    """

    output_field = DurationField()

    def __init__(self, now: datetime, field: str):
        super().__init__(ExpressionWrapper(Value(now) - F(field), output_field=DurationField()), F(field))
        self.now = now

    def as_sql(self, compiler, connection, **extra_context):
        return compiler.compile(self.source_expressions[0])

    def as_sqlite(self, compiler, connection, **extra_context):
        text, params = compiler.compile(self.source_expressions[1])
        now = (self.now - _EPOCH) // timedelta(microseconds=1)
        seconds = f"CAST(strftime('%%s', substr({text}, 1, 19)) AS INTEGER)"
        micros = f"CAST(substr(substr({text}, 21) || '000000', 1, 6) AS INTEGER)"
        return f"(%s - ({seconds} * 1000000 + {micros}))", (now, *params, *params)


def with_risk(queryset: QuerySet[DcsInstance], *, now: datetime) -> QuerySet[DcsInstance]:
    """Adds ``single_node``, ``effective_rpo``, ``rpo_from``, ``success_age``, ``at_risk`` and ``overdue``.

    At risk: listed by the API, backed up in principle (not single-node), and
    no success within its RPO (backups.rpo), or none ever. A success exactly
    at the RPO's edge is still within it. ``overdue`` is how far past its RPO
    an instance at risk is (a duration); NULL when it is not at risk, and
    when it never had a success (no age to measure: those rank first).

    The age is ``now - last_success_at`` compared with the RPO, both
    durations: Django computes the difference of two times on SQLite
    (microseconds) and PostgreSQL (an interval) alike, where "time minus a
    duration column" would compare text with a time on SQLite.
    """
    age = Age(now, "last_success_at")
    # Each is named again by the ones after it (and by the overview's
    # windows and filters): compiled once a query (backups.db.CompiledOnce).
    return (
        queryset.annotate(
            single_node=CompiledOnce(
                Case(
                    When(single_node_q(), then=Value(True)), default=Value(False), output_field=BooleanField()
                )
            ),
            effective_rpo=CompiledOnce(rpo_expression()),
            # Where it comes from; "" is an instance no recompute has reached yet.
            rpo_from=Case(When(rpo_source="", then=Value(DEFAULT_SOURCE)), default=F("rpo_source")),
            success_age=CompiledOnce(age),
        )
        .annotate(
            at_risk=CompiledOnce(
                Case(
                    When(single_node=True, then=Value(False)),
                    When(gone_at__isnull=False, then=Value(False)),
                    When(
                        Q(last_success_at__isnull=True) | Q(success_age__gt=F("effective_rpo")),
                        then=Value(True),
                    ),
                    default=Value(False),
                    output_field=BooleanField(),
                )
            ),
        )
        .annotate(
            overdue=Case(
                When(
                    at_risk=True,
                    last_success_at__isnull=False,
                    then=ExpressionWrapper(
                        F("success_age") - F("effective_rpo"), output_field=DurationField()
                    ),
                ),
                default=Value(None, output_field=DurationField()),
                output_field=DurationField(),
            ),
        )
    )


def by_overdue(queryset: QuerySet[DcsInstance], *, descending: bool = True) -> QuerySet[DcsInstance]:
    """Most over its RPO first: never backed up, then the most overdue, then the rest by name.

    ``descending=False`` is the exact reverse. Needs :func:`with_risk`.
    """
    if descending:
        keys = (F("at_risk").desc(), F("overdue").desc(nulls_first=True), "name", "instance_id", "pk")
    else:
        keys = (F("at_risk").asc(), F("overdue").asc(nulls_last=True), "-name", "-instance_id", "-pk")
    return queryset.order_by(*keys)


def instances_with_stats(*, now: datetime) -> QuerySet[DcsInstance]:
    """Every instance with the facts the fleet table shows, as one query.

    The last backup and last success are the instance's own summary columns
    (backups.summaries), so sorting and the at-risk filter read no records.
    The 30-day facts are correlated subqueries on the (instance, created_at)
    index: a database evaluates them for the rows of the page only, and
    counting the rows for the paginator needs none of them.
    """
    since = now - STATS_PERIOD
    recent = _backups_of_row().filter(created_at__gte=since)
    size_kept = (
        _backups_of_row()
        .filter(status=SUCCEEDED, gone_at__isnull=True)
        .values("instance")
        .annotate(total=Sum("size"))
        .values("total")
    )
    queryset = DcsInstance.objects.annotate(
        backups_30d=_count_of(recent),
        succeeded_30d=_count_of(recent.filter(status=SUCCEEDED)),
        failed_30d=_count_of(recent.filter(status=FAILED)),
        backed_up_size=Coalesce(Subquery(size_kept, output_field=BigIntegerField()), 0),
    )
    # NULL when nothing finished: no rate is not a 0 % rate.
    finished = NullIf(F("succeeded_30d") + F("failed_30d"), Value(0))
    queryset = queryset.annotate(
        success_rate_30d=Round(
            ExpressionWrapper(Value(100.0) * F("succeeded_30d") / finished, output_field=FloatField()), 1
        )
    )
    return with_risk(queryset, now=now)


# An instance id is unique per project only, a backup id per instance only.
# Two sharing one is unlikely (they are UUIDs); if it happens, every page
# picks the same: the one still listed, then the oldest.
LISTED_FIRST = (F("gone_at").asc(nulls_first=True), "pk")


def instance_by_id(instance_id: str) -> DcsInstance | None:
    """The instance a page, a form or a link means by ``instance_id``."""
    return DcsInstance.objects.filter(instance_id=instance_id).order_by(*LISTED_FIRST).first()


def backup_by_id(backup_id: str) -> BackupRecord | None:
    """The backup a page, a form or a link means by ``backup_id``, with its instance."""
    return (
        BackupRecord.objects.select_related("instance")
        .filter(backup_id=backup_id)
        .order_by(*LISTED_FIRST)
        .first()
    )


def instance_for_page(instance_id: str, *, now: datetime, window_start: datetime) -> DcsInstance | None:
    """The instance of a detail page, with its last success, risk, sync
    staleness, and the last success before ``window_start``
    (``success_before_window_at``), which tells whether the chart's window
    opens inside a gap. Also what would otherwise cost the page a query of
    its own: ``backups_total`` (its records, counted off the (instance,
    created_at, id) index: one instance's range, however large the table)
    and ``has_notes``, so that an instance without notes asks for none.

    instance_id is unique per project only. Two projects sharing one is
    unlikely; if it happens, the one still listed wins, then the oldest.
    """
    before = (
        _backups_of_row()
        .filter(status=SUCCEEDED, created_at__lt=window_start)
        .order_by("-created_at", "-id")
        .values("created_at")[:1]
    )
    queryset = with_sync_staleness(
        with_risk(DcsInstance.objects.filter(instance_id=instance_id), now=now), now=now
    )
    # Its last restorable backup and last restore too (backups.restores), in the same query.
    return (
        with_restore_facts(queryset, detail=True)
        .annotate(
            success_before_window_at=Subquery(before),
            backups_total=_count_of(_backups_of_row()),
            has_notes=Exists(Note.objects.filter(instance=OuterRef("pk"))),
        )
        .order_by(F("gone_at").asc(nulls_first=True), "pk")
        .first()
    )


# --- Overview -------------------------------------------------------------------


@dataclass(frozen=True)
class StatusCounts:
    """How many backups were created since ``since``, by status."""

    since: datetime
    by_status: dict[str, int]  # every BackupStatus value, in the enum's order
    total: int

    @property
    def succeeded(self) -> int:
        return self.by_status.get(SUCCEEDED, 0)

    @property
    def failed(self) -> int:
        return self.by_status.get(FAILED, 0)

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def other(self) -> int:
        """Backups whose status our enum does not know (the API added one)."""
        return self.total - sum(self.by_status.values())

    @property
    def success_rate(self) -> float | None:
        return success_rate(self.succeeded, self.failed)


def _hour_floor(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def backup_status_counts(
    *, since: datetime, now: datetime | None = None, scope: FleetScope = FLEET
) -> StatusCounts:
    """The backups created since ``since``, by status, in one query of two parts.

    The whole hours of the window come from the hourly summary
    (``BackupHourlyCount``, kept exact by triggers): a few rows per hour
    whatever the fleet's size. The two partial hours at its edges, from
    ``since`` to the next whole hour and from the current hour on, are
    counted from the records themselves, on the created_at index: so the
    counts are exact to the second, like the list their tiles link to.

    Records the API no longer lists count too: they did run in the window.
    """
    now = now or timezone.now()
    first_hour = _hour_floor(since) + (timedelta(hours=1) if since != _hour_floor(since) else timedelta())
    this_hour = _hour_floor(now)
    hours = BackupHourlyCount.objects.filter(hour__gte=first_hour, hour__lt=this_hour)
    if first_hour < this_hour:
        # Two ranges, each an index range of its own (never the whole window).
        edges = Q(created_at__gte=since, created_at__lt=first_hour) | Q(created_at__gte=this_hour)
    else:
        # Less than two hours: no whole hour inside, the records alone.
        edges = Q(created_at__gte=since)
    # The hourly rows carry their instance's region and project themselves.
    hours = scope.instances(hours)
    records = scope.instances(BackupRecord.objects.filter(edges), "instance__")
    # The edge records one by one, not grouped: grouping by status makes
    # SQLite walk the whole status index to skip a sort of a few hundred rows.
    counted = records.order_by().values("status").annotate(n=Value(1, output_field=IntegerField()))
    if first_hour < this_hour:
        rows = hours.order_by().values("status").annotate(n=Sum("records")).union(counted, all=True)
    else:
        rows = counted
    by_status = dict.fromkeys(BackupStatus.values, 0)
    total = 0
    for row in rows:
        n = int(row["n"] or 0)
        total += n
        if row["status"] in by_status:
            by_status[row["status"]] += n
    return StatusCounts(since=since, by_status=by_status, total=total)


def record_total() -> int:
    """How many backup records we keep, from the hourly summary (each record is in one hour)."""
    return int(BackupHourlyCount.objects.aggregate(n=Sum("records"))["n"] or 0)


def running_backups(*, limit: int = 100, scope: FleetScope = FLEET) -> list[BackupRecord]:
    """Backups waiting or running now, longest-running first (a stuck one shows at the top).

    A gone record's status is frozen at what we last saw, and a gone
    instance's backups are not going anywhere, so neither counts.
    """
    # The few active records are picked by their status index first. Asked
    # in one query with the order, SQLite would rather walk the created_at
    # index over millions of rows, as its statistics cannot tell that
    # "waiting" and "backuping" are rare.
    active = BackupRecord.objects.active().present().order_by().values("pk")
    running = BackupRecord.objects.filter(pk__in=Subquery(active), instance__gone_at__isnull=True)
    return list(
        scope.instances(running, "instance__")
        .select_related("instance")
        # What the overview shows of each, not the raw JSON of every record
        # and instance: a hundred of each to decode cost more than the query.
        .only(*RUNNING_FIELDS)
        .order_by(F("created_at").asc(nulls_last=True), "id")[:limit]
    )


RUNNING_FIELDS = (
    "instance",
    "backup_id",
    "backup_name",
    "status",
    "progress",
    "created_at",
    "instance__instance_id",
    "instance__name",
)


@dataclass(frozen=True)
class FleetRisk:
    at_risk: list[DcsInstance]  # worst first: never backed up, then the most over its RPO
    # Not backed up by design, never at risk; by name. The first
    # ``single_limit`` of fleet_risk() only; how many in all is ``single_node_total``.
    single_node: list[DcsInstance]
    threshold: timedelta  # the default RPO; an instance's own is its effective_rpo
    # Listed instances whose backups no sync has listed lately, longest first
    # (see with_sync_staleness); an instance may be here and at risk too.
    # The first ``stale_limit`` of fleet_risk() only; how many in all is
    # ``sync_stale_total``.
    sync_stale: list[DcsInstance] = field(default_factory=list)
    sync_stale_total: int = 0
    single_node_total: int = 0


def with_sync_staleness(queryset: QuerySet[DcsInstance], *, now: datetime) -> QuerySet[DcsInstance]:
    """Adds ``last_synced_at`` and ``sync_stale``.

    ``last_synced_at`` is when a listing of the instance's backups last
    succeeded, complete or of a recent window: incremental syncs run every few
    minutes and full ones only every few hours, so a complete listing alone
    would make every instance look stale between full syncs.

    Stale: still listed, and neither listed nor (when it never was) first seen
    within ``DASHBOARD_SYNC_STALE_MINUTES``. An instance found by the sync that
    is running now is not stale before its turn comes.
    """
    cutoff = now - sync_stale_after()
    # An incremental sync records its check on its run item (checked_at), not
    # on the instance, whose backups_checked_at only a listing of everything
    # writes: the newer of the two. Greatest is NULL on SQLite when either
    # is, hence the Coalesce around it.
    checks = SyncRunItem.objects.filter(instance=OuterRef("pk"), checked_at__isnull=False)
    item_checked = Subquery(
        checks.order_by("-checked_at").values("checked_at")[:1], output_field=DateTimeField()
    )
    own_checked = Coalesce("backups_checked_at", "backups_synced_at")
    return queryset.annotate(
        last_synced_at=CompiledOnce(Coalesce(Greatest(item_checked, own_checked), item_checked, own_checked)),
        # Asked without last_synced_at, so that the filter on it reads one
        # index entry of a fresh instance (sync_item_instance_checked).
        sync_stale=CompiledOnce(
            Case(
                When(gone_at__isnull=False, then=Value(False)),
                When(Exists(checks.filter(checked_at__gte=cutoff)), then=Value(False)),
                When(
                    Q(backups_checked_at__gte=cutoff)
                    | Q(backups_checked_at=None, backups_synced_at__gte=cutoff),
                    then=Value(False),
                ),
                # Not listed since the cutoff: stale, unless it never was and was found since.
                When(
                    Q(backups_checked_at__isnull=False)
                    | Q(backups_synced_at__isnull=False)
                    | Q(first_seen__lt=cutoff)
                    | Exists(checks),
                    then=Value(True),
                ),
                default=Value(False),
                output_field=BooleanField(),
            )
        ),
    )


_NEVER = datetime.min.replace(tzinfo=UTC)


def _by_last_sync(rows: list[DcsInstance]) -> list[DcsInstance]:
    """Never synced first, then the longest without a sync."""
    return sorted(rows, key=lambda row: (row.last_synced_at or _NEVER, row.pk))


# What the overview reads of an instance of fleet_risk() (views.overview,
# templates/backups/overview.html); the annotations come in any case.
FLEET_RISK_FIELDS = (
    "name",
    "instance_id",
    "region",
    "engine",
    "engine_version",
    "spec_code",
    "gone_at",
    "last_success_at",
    "rpo_source",
)


def fleet_risk(
    *, now: datetime, scope: FleetScope = FLEET, stale_limit: int = 10, single_limit: int | None = None
) -> FleetRisk:
    """Listed instances at risk, the first ``single_limit`` single-node ones (all
    with None) and the first ``stale_limit`` stale in sync, with how many of
    each there are, in one query."""
    stale_first = (F("last_synced_at").asc(nulls_first=True), F("pk").asc())
    single = Q(single_node=True)
    if single_limit is not None:
        single &= Q(single_rank__lte=single_limit)
    rows = (
        with_sync_staleness(with_risk(scope.instances(DcsInstance.objects.present()), now=now), now=now)
        # When the workers are down the whole fleet goes stale, and a
        # Memcached fleet is mostly single-node: the overview names the first
        # few of each, so the database ranks them and counts the rest rather
        # than sending every instance's row. The totals count over the whole
        # fleet with a filter: a window partitioned by an expression sorts the
        # rows by it, evaluated once more (the staleness is two subqueries),
        # which took SQLite 25-30 ms for this query, 21 without.
        .annotate(
            stale_rank=Window(RowNumber(), partition_by=[F("sync_stale")], order_by=stale_first),
            stale_total=Window(Count("pk", filter=Q(sync_stale=True))),
            single_rank=Window(
                RowNumber(),
                partition_by=[F("single_node")],
                order_by=(F("name").asc(), F("instance_id").asc()),
            ),
            single_total=Window(Count("pk", filter=Q(single_node=True))),
        )
        .filter(single | Q(at_risk=True) | Q(sync_stale=True, stale_rank__lte=stale_limit))
        # Hundreds may still be listed (single-node, at risk): only the
        # columns the overview shows and sorts by, not the JSON nor a dozen
        # times, which halves the cost of each row.
        .only(*FLEET_RISK_FIELDS)
    )
    rows = by_overdue(rows)
    at_risk, single, stale = [], [], []
    stale_total = single_total = 0
    for row in rows:
        if row.single_node:
            single_total = row.single_total
            if single_limit is None or row.single_rank <= single_limit:
                single.append(row)
        elif row.at_risk:
            at_risk.append(row)
        if row.sync_stale:
            stale_total = row.stale_total
            if row.stale_rank <= stale_limit:
                stale.append(row)
    single.sort(key=lambda row: (row.name, row.instance_id))
    return FleetRisk(
        at_risk=at_risk,
        single_node=single,
        threshold=at_risk_threshold(),
        sync_stale=_by_last_sync(stale),
        sync_stale_total=stale_total,
        single_node_total=single_total,
    )


@dataclass(frozen=True)
class StaleInstances:
    shown: list[DcsInstance]  # never synced first, then the longest without a sync
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.shown)


def stale_instances(*, now: datetime, limit: int, scope: FleetScope = FLEET) -> StaleInstances:
    """The stale part of :func:`fleet_risk` for the overview's live refresh, in one query.

    Every 5 s, so at most ``limit`` rows: when the workers are down the whole
    fleet goes stale, and the total comes from a window count in the same query.
    """
    rows = list(
        with_sync_staleness(scope.instances(DcsInstance.objects.present()), now=now)
        .filter(sync_stale=True)
        .annotate(stale_total=Window(Count("pk")))
        .order_by(F("last_synced_at").asc(nulls_first=True), "pk")[:limit]
    )
    return StaleInstances(shown=rows, total=rows[0].stale_total if rows else 0)


# How many of a failed run's errors the overview quotes; the rest are counted.
FRESHNESS_ERRORS = 3


@dataclass(frozen=True)
class Freshness:
    """How current our copy of the fleet is, from the fleet sync runs."""

    state: str  # "never", "failed", "partial", "stale" or "fresh"
    last_run: SyncRun | None  # the newest fleet run that finished
    last_success_at: datetime | None  # when the newest successful fleet run finished
    running_since: datetime | None  # a fleet run that has started and not finished
    stale_after: timedelta
    errors: list[str] = field(default_factory=list)  # the first few errors of a failed or partial run
    more_errors: int = 0
    # The workers and the broker, asked in the same query (sync.health).
    health: SyncHealth | None = None
    # Alerts not recovered yet (backups.alerts), asked in the same query too.
    open_alerts: int = 0

    @property
    def is_warning(self) -> bool:
        return self.state != "fresh"


def _error_text(scope: str | None, message: str | None) -> str:
    scope, message = scope or "", message or ""
    return f"{scope}: {message}" if scope and message else scope or message


def sync_freshness(*, now: datetime) -> Freshness:
    """The newest finished fleet run, with the newest success, any run in
    progress, its first few errors and the machinery's health (workers'
    heartbeats, running runs), all in one query.

    A run refused because another held the fleet's lease ("skipped") says
    nothing about the data, so it does not count. The errors are correlated
    subqueries, one per quoted error, rather than a second query: the
    overview's budget is six.
    """
    fleet = SyncRun.objects.fleet()
    last_ok = fleet.filter(outcome=SyncOutcome.SUCCEEDED, finished_at__isnull=False).order_by(
        "-finished_at", "-id"
    )
    in_progress = fleet.running().filter(finished_at__isnull=True).order_by("-started_at", "-id")
    errors = SyncError.objects.filter(run=OuterRef("pk")).order_by("occurred_at", "id")
    quoted = {}
    for n in range(FRESHNESS_ERRORS):
        quoted[f"error_scope_{n}"] = Subquery(errors.values("scope")[n : n + 1])
        quoted[f"error_message_{n}"] = Subquery(errors.values("error_msg")[n : n + 1])
    machinery = {name: Subquery(query) for name, query in health_queries().items()}
    open_alerts = (
        Alert.objects.filter(resolved_at=None)
        .order_by()
        .values("resolved_at")
        .annotate(n=Count("pk"))
        .values("n")
    )
    machinery["open_alerts"] = Subquery(open_alerts)
    run = (
        fleet.finished()
        .annotate(
            last_success_at=Subquery(last_ok.values("finished_at")[:1]),
            running_since=Subquery(in_progress.values("started_at")[:1]),
            **quoted,
            **machinery,
        )
        .order_by("-finished_at", "-id")
        .first()
    )
    stale_after = sync_stale_after()
    if run is None:
        # Never synced: the machinery's facts have no run row to ride on, so
        # they are asked together in one more query (the overview makes 7).
        values = select_scalars(**health_queries(), open_alerts=open_alerts)
        return Freshness(
            "never",
            None,
            None,
            None,
            stale_after,
            health=health_from(values, now=now),
            open_alerts=values["open_alerts"] or 0,
        )
    if run.outcome in (SyncOutcome.FAILED, SyncOutcome.PARTIAL):
        state = str(run.outcome)
    elif run.last_success_at is None or now - run.last_success_at > stale_after:
        state = "stale"
    else:
        state = "fresh"
    messages = []
    if state in ("failed", "partial"):
        for n in range(FRESHNESS_ERRORS):
            text = _error_text(getattr(run, f"error_scope_{n}"), getattr(run, f"error_message_{n}"))
            if text:
                messages.append(text)
    return Freshness(
        state,
        run,
        run.last_success_at,
        run.running_since,
        stale_after,
        errors=messages,
        more_errors=max(run.error_count - len(messages), 0) if messages else 0,
        health=health_from(run, now=now),
        open_alerts=run.open_alerts or 0,
    )


# --- One instance's history ---------------------------------------------------


@dataclass(frozen=True)
class ChartPoint:
    created_at: datetime
    size: int | None
    status: str
    name: str
    backup_id: str


def backups_in_window(instance: DcsInstance, *, start: datetime, end: datetime) -> list[ChartPoint]:
    """The instance's backups created in [start, end], oldest first: one query."""
    rows = (
        BackupRecord.objects.filter(instance=instance, created_at__gte=start, created_at__lte=end)
        .order_by("created_at", "id")
        .values_list("created_at", "size", "status", "backup_name", "backup_id")
    )
    return [ChartPoint(*row) for row in rows]


@dataclass(frozen=True)
class Gap:
    """A stretch with no successful backup for longer than the threshold."""

    start: datetime
    end: datetime
    # True when it runs to the end of the window (now): no success since.
    open_ended: bool = False

    @property
    def length(self) -> timedelta:
        return self.end - self.start


def find_gaps(
    success_times: Iterable[datetime],
    *,
    start: datetime,
    end: datetime,
    threshold: timedelta,
    previous: datetime | None = None,
) -> list[Gap]:
    """The gaps between consecutive successes in [start, end], oldest first.

    The first stretch runs from ``previous`` (the last success before the
    window) when there is one, else from ``start``; the last one runs to
    ``end``. A stretch is a gap when it is longer than ``threshold``: exactly
    the threshold is still in time, as it is for the at-risk rule.
    """
    if end <= start:
        return []
    times = sorted(t for t in success_times if start <= t <= end)
    first = previous if previous is not None and previous < start else start
    anchors = [first, *times, end]
    last = len(anchors) - 2
    return [
        Gap(left, right, open_ended=index == last)
        for index, (left, right) in enumerate(pairwise(anchors))
        if right - left > threshold
    ]


__all__ = [
    "FLEET",
    "ChartPoint",
    "FleetRisk",
    "FleetScope",
    "Freshness",
    "Gap",
    "StaleInstances",
    "StatusCounts",
    "at_risk_threshold",
    "backup_status_counts",
    "backups_in_window",
    "by_overdue",
    "find_gaps",
    "fleet_risk",
    "instance_for_page",
    "instances_with_stats",
    "record_total",
    "rpo_expression",
    "running_backups",
    "single_node_q",
    "stale_instances",
    "success_rate",
    "sync_freshness",
    "sync_stale_after",
    "with_risk",
    "with_sync_staleness",
]
