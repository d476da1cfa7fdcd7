"""The incident view: a time window and a set of instances, as the dashboard knew them at a moment.

``/incident/?start=...&end=...&instance=<id>&instance=<id>&as_of=...`` shows
the backups (and restores) of those instances created in the window, each
with the status and progress our syncs had observed by ``as_of``, rebuilt
from the status history: a record is shown only if a sync had stored it by
then (``first_seen <= as_of``), with its newest status change observed by
then, and as still listed unless it was gone by then. A link with ``as_of``
therefore shows the same thing next week, whatever happened since; the
records learned after ``as_of`` are counted apart ("learned later").

Everything is read in a constant number of queries: the instances, then for
backups and for restores one query of the rows with their status at
``as_of`` (a subquery for the newest change per row) and one count of the
rows learned later, then the notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.db.models import OuterRef, Q, Subquery
from django.http import QueryDict
from django.urls import reverse
from django.utils.translation import gettext as _

from backups.exports import iso_utc
from backups.models import (
    BackupRecord,
    BackupStatusChange,
    DcsInstance,
    Note,
    RestoreRecord,
    RestoreStatusChange,
)
from backups.notes import normalise_incident
from backups.timewindow import format_bound, parse_time_bound

# At most this many backups (and as many restores) are rebuilt: beyond, the
# page says to narrow the window or the instances.
MAX_ROWS = 5000
MAX_INSTANCES = 200
MAX_NOTES = 1000
# How many of the records learned after as_of are listed (all are counted).
MAX_LATER_SHOWN = 100


@dataclass
class IncidentQuery:
    start: datetime
    end: datetime
    as_of: datetime | None
    instance_ids: list[str]
    incident: str = ""

    def params(self, *, as_of: datetime | None = None) -> list[tuple[str, str]]:
        """The canonical query string: UTC times to the second, ids in the order given."""
        pairs = [("start", format_bound(self.start)), ("end", format_bound(self.end))]
        pairs += [("instance", instance_id) for instance_id in self.instance_ids]
        stamp = as_of or self.as_of
        if stamp is not None:
            pairs.append(("as_of", format_bound(stamp)))
        if self.incident:
            pairs.append(("incident", self.incident))
        return pairs


def incident_link(
    *, instance_ids: list[str], start: datetime, end: datetime, as_of: datetime | None = None, incident=""
) -> str:
    """The incident view's URL for this window and these instances (without as_of: frozen when opened)."""
    query = IncidentQuery(start=start, end=end, as_of=as_of, instance_ids=instance_ids, incident=incident)
    return f"{reverse('backups:incident')}?{urlencode(query.params())}"


def _time(params: QueryDict, name: str, label: str, errors: list[str], *, now: datetime, upper=False):
    raw = params.get(name, "").strip()
    if not raw:
        errors.append(_("%(label)s (%(param)s) is missing.") % {"label": label, "param": name})
        return None
    try:
        return parse_time_bound(raw, now=now, upper=upper)
    except (ValueError, OverflowError) as error:
        reason = str(error) if isinstance(error, ValueError) else _("that time is out of range")
        errors.append(
            _("%(label)s (%(param)s): %(reason)s.") % {"label": label, "param": name, "reason": reason}
        )
        return None


def parse_incident_query(params: QueryDict, *, now: datetime) -> tuple[IncidentQuery | None, list[str]]:
    """The query the URL asks for, or None and one message per problem.

    ``as_of`` may be absent (the view then freezes the link at now); it may
    not be in the future, since what the dashboard will know is not known yet.
    """
    errors: list[str] = []
    start = _time(params, "start", _("Window start"), errors, now=now)
    end = _time(params, "end", _("Window end"), errors, now=now, upper=True)
    as_of = None
    if params.get("as_of", "").strip():
        as_of = _time(params, "as_of", _("As of"), errors, now=now)
        # One second of slack: the redirect wrote now to the second.
        if as_of is not None and as_of > now + timedelta(seconds=1):
            errors.append(_("As of (as_of) is in the future: what we will know then is not known yet."))
            as_of = None
    if start is not None and end is not None and end <= start:
        errors.append(_("The window ends before it starts: end must be later than start."))
    ids = []
    for raw in params.getlist("instance"):
        for value in raw.split(","):
            value = value.strip()
            if value and value not in ids:
                ids.append(value)
    if not ids:
        errors.append(_("Name at least one instance (instance=<instance id>, repeatable)."))
    if len(ids) > MAX_INSTANCES:
        errors.append(
            _("At most %(max)s instances fit one incident view; %(count)s were given.")
            % {"max": MAX_INSTANCES, "count": len(ids)}
        )
    if any(len(value) > 64 or "\x00" in value for value in ids):
        errors.append(_("An instance id (instance) is at most 64 characters."))
    incident = ""
    try:
        incident = normalise_incident(params.get("incident", ""))
    except ValueError as error:
        errors.append(_("Incident (incident): %(reason)s.") % {"reason": error})
    if errors:
        return None, errors
    return IncidentQuery(start=start, end=end, as_of=as_of, instance_ids=ids, incident=incident), []


@dataclass
class Row:
    """One backup or restore as known at as_of."""

    kind: str  # "backup" or "restore"
    record: BackupRecord | RestoreRecord
    status: str
    progress: object
    observed_at: datetime  # when a sync saw the record in this state
    gone: bool  # gone by as_of
    notes: list = field(default_factory=list)

    @property
    def ident(self) -> str:
        return self.record.backup_id if self.kind == "backup" else self.record.restore_id

    @property
    def name(self) -> str:
        if self.kind == "backup":
            return self.record.backup_name or self.record.backup_id
        return self.record.restore_name or self.record.restore_id

    @property
    def status_changed_since(self) -> bool:
        return self.record.status != self.status or self.record.progress != self.progress


@dataclass
class IncidentView:
    query: IncidentQuery
    instances: list[DcsInstance]
    missing_ids: list[str]
    backups: list[Row]
    restores: list[Row]
    backups_truncated: bool
    restores_truncated: bool
    later_backups: list[BackupRecord]
    later_backups_count: int
    later_restores_count: int
    notes: list[Note]
    later_notes: list[Note]


def _as_of_rows(model, change_model, owner: str, *, instances, query: IncidentQuery):
    """The rows of ``model`` in the window known by as_of, each with its status then."""
    as_of = query.as_of
    newest = change_model.objects.filter(**{owner: OuterRef("pk"), "observed_at__lte": as_of}).order_by(
        "-observed_at", "-id"
    )
    rows = (
        model.objects.filter(
            instance__in=instances,
            created_at__gte=query.start,
            created_at__lt=query.end,
            first_seen__lte=as_of,
        )
        .annotate(
            as_of_status=Subquery(newest.values("status")[:1]),
            as_of_progress=Subquery(newest.values("progress")[:1]),
            as_of_observed=Subquery(newest.values("observed_at")[:1]),
        )
        .defer("raw")
        .order_by("-created_at", "-id")
    )
    return list(rows[: MAX_ROWS + 1])


def _rows(kind: str, records: list, as_of: datetime) -> list[Row]:
    result = []
    for record in records:
        if record.as_of_observed is not None:
            status, progress, observed = record.as_of_status, record.as_of_progress, record.as_of_observed
        else:
            # Stored by as_of but no change row by then: it had not changed
            # by then, as its first change logs the state before it too, at
            # first_seen. So it had what we hold now, seen at first_seen,
            # which is what the link shows after a later change as well.
            status, progress, observed = record.status, record.progress, record.first_seen
        gone = record.gone_at is not None and record.gone_at <= as_of
        result.append(Row(kind, record, status, progress, observed, gone))
    return result


def _learned_later(model, *, instances, query: IncidentQuery):
    return model.objects.filter(
        instance__in=instances,
        created_at__gte=query.start,
        created_at__lt=query.end,
        first_seen__gt=query.as_of,
    )


def build_incident_view(query: IncidentQuery) -> IncidentView:
    """The incident as the dashboard knew it at ``query.as_of``, in seven queries."""
    assert query.as_of is not None
    instances = list(DcsInstance.objects.filter(instance_id__in=query.instance_ids).order_by("name", "pk"))
    found = {instance.instance_id for instance in instances}
    missing = [value for value in query.instance_ids if value not in found]
    pks = [instance.pk for instance in instances]
    by_pk = {instance.pk: instance for instance in instances}

    backups = _as_of_rows(BackupRecord, BackupStatusChange, "record", instances=pks, query=query)
    restores = _as_of_rows(RestoreRecord, RestoreStatusChange, "restore", instances=pks, query=query)
    later = list(
        _learned_later(BackupRecord, instances=pks, query=query)
        .defer("raw")
        .order_by("-created_at", "-id")[:MAX_LATER_SHOWN]
    )
    # One query for both counts would need a UNION; two plain counts are clearer.
    later_count = len(later)
    if later_count == MAX_LATER_SHOWN:
        later_count = _learned_later(BackupRecord, instances=pks, query=query).count()
    later_restores = _learned_later(RestoreRecord, instances=pks, query=query).count()

    notes = list(
        Note.objects.filter(instance__in=pks)
        .select_related("record")
        .defer("record__raw")
        .filter(Q(created_at__gte=query.start) | Q(record__created_at__gte=query.start, record__isnull=False))
        .filter(**({"incident": query.incident} if query.incident else {}))
        .order_by("created_at", "id")[:MAX_NOTES]
    )
    for record in (*backups, *restores, *later):
        record.instance = by_pk[record.instance_id]
    written = [note for note in notes if note.created_at <= query.as_of]
    later_notes = [note for note in notes if note.created_at > query.as_of]
    for note in notes:
        note.instance = by_pk[note.instance_id]

    backup_rows = _rows("backup", backups[:MAX_ROWS], query.as_of)
    by_record: dict[int, Row] = {row.record.pk: row for row in backup_rows}
    for note in written:
        if note.record_id in by_record:
            by_record[note.record_id].notes.append(note)
    return IncidentView(
        query=query,
        instances=instances,
        missing_ids=missing,
        backups=backup_rows,
        restores=_rows("restore", restores[:MAX_ROWS], query.as_of),
        backups_truncated=len(backups) > MAX_ROWS,
        restores_truncated=len(restores) > MAX_ROWS,
        later_backups=later,
        later_backups_count=later_count,
        later_restores_count=later_restores,
        notes=written,
        later_notes=later_notes,
    )


def freeze_now(now: datetime) -> datetime:
    """as_of for a link frozen now: UTC, to the second."""
    return now.astimezone(UTC).replace(microsecond=0)


# --- exports --------------------------------------------------------------------

CSV_HEADER = (
    "as_of",
    "window_start",
    "window_end",
    "kind",
    "instance_id",
    "instance",
    "id",
    "name",
    "status_as_of",
    "progress_as_of",
    "observed_at",
    "gone_as_of",
    "status_now",
    "created_at",
    "finished_at",
    "first_seen",
    "gone_at",
    "incidents",
    "notes",
)


def _iso(value: datetime | None) -> str | None:
    return iso_utc(value) if value is not None else None


def _progress(value) -> float | int | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def row_item(row: Row, view: IncidentView) -> dict:
    record = row.record
    incidents = list(dict.fromkeys(note.incident for note in row.notes if note.incident))
    return {
        "kind": row.kind,
        "instance_id": record.instance.instance_id,
        "instance": str(record.instance),
        "id": row.ident,
        "name": row.name,
        "status_as_of": row.status,
        "progress_as_of": _progress(row.progress),
        "observed_at": _iso(row.observed_at),
        "gone_as_of": row.gone,
        "status_now": record.status,
        "created_at": _iso(record.created_at),
        "finished_at": _iso(record.updated_at),
        "first_seen": _iso(record.first_seen),
        "gone_at": _iso(record.gone_at),
        "incidents": ", ".join(incidents),
        "notes": " | ".join(" ".join(note.text.split()) for note in row.notes if note.text),
    }


def note_item(note: Note, *, later: bool) -> dict:
    return {
        "instance_id": note.instance.instance_id,
        "backup_id": note.record.backup_id if note.record_id and note.record else None,
        "incident": note.incident,
        "text": note.text,
        "author": note.author_name,
        "written_at": iso_utc(note.created_at),
        "written_later": later,
    }


def header_item(view: IncidentView, *, link: str) -> dict:
    query = view.query
    return {
        "as_of": iso_utc(query.as_of),
        "window": {"start": iso_utc(query.start), "end": iso_utc(query.end)},
        "instances": [instance.instance_id for instance in view.instances],
        "unknown_instances": view.missing_ids,
        "incident": query.incident or None,
        "link": link,
        "truncated": view.backups_truncated or view.restores_truncated,
        "learned_later": {"backups": view.later_backups_count, "restores": view.later_restores_count},
    }
