"""Notes on instances and backups, with incident references (``INC-1234``).

An Operator writes a note on an instance's page or on a backup's page: free
text, an incident reference, or both. A backup's note also names its
instance (``Note.instance``), so an instance's page and the ``?incident=``
filters find every note of it in one query.

Incident references are stored in upper case (``inc-1234`` is ``INC-1234``),
so a filter compares them exactly and an index serves it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from operator import attrgetter

from django import forms
from django.core.cache import cache
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from backups import roles
from backups.models import BackupRecord, DcsInstance, Note

# A ticket system's key: letters first, then letters, digits or "_", a dash,
# a number (INC-1234, OPS_DB-7, CHG2-15). Several systems use it (Jira, ServiceNow-like keys).
INCIDENT_RE = re.compile(r"^[A-Z][A-Z0-9_]*-\d+$")
INCIDENT_MAX_LENGTH = 64
TEXT_MAX_LENGTH = 4000
# Whether to show the note form is remembered this long per user, like "Sync now".
PERMISSION_CACHE_SECONDS = 60
# Texts of one record's notes in an export, joined.
EXPORT_TEXT_SEPARATOR = " | "
EXPORT_INCIDENT_SEPARATOR = ", "


def normalise_incident(raw: str) -> str:
    """``inc-1234`` → ``INC-1234``; "" for an empty value; ValueError saying why for a bad one."""
    text = (raw or "").strip().upper()
    if not text:
        return ""
    if len(text) > INCIDENT_MAX_LENGTH:
        raise ValueError(
            _("an incident reference is at most %(max)s characters") % {"max": INCIDENT_MAX_LENGTH}
        )
    if not INCIDENT_RE.match(text):
        raise ValueError(
            _("“%(value)s” is not an incident reference: use letters, a dash and a number, like INC-1234")
            % {"value": text[:40]}
        )
    return text


class IncidentField(forms.CharField):
    """An incident reference, cleaned to its upper-case form."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 200)  # longer is refused with the clear message below
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)
        self.widget.attrs.setdefault("placeholder", "INC-1234")
        self.widget.attrs["maxlength"] = str(INCIDENT_MAX_LENGTH)

    def clean(self, value):
        text = super().clean(value)
        try:
            return normalise_incident(text)
        except ValueError as error:
            raise forms.ValidationError(str(error), code="invalid") from None


class NoteForm(forms.Form):
    incident = IncidentField(label=gettext_lazy("Incident"))
    text = forms.CharField(
        label=gettext_lazy("Note"),
        required=False,
        max_length=TEXT_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not cleaned.get("text") and not cleaned.get("incident"):
            raise forms.ValidationError(_("Write a note, an incident reference, or both."), code="empty")
        return cleaned


def note_create(
    *,
    author,
    instance: DcsInstance,
    record: BackupRecord | None = None,
    text: str,
    incident: str,
) -> Note:
    """Write one note on ``instance`` (and on ``record``, one of its backups).

    ``incident`` is normalised (ValueError for a bad one); an empty note is refused.
    """
    incident = normalise_incident(incident)
    text = (text or "").strip()
    if not text and not incident:
        raise ValueError(_("Write a note, an incident reference, or both."))
    if len(text) > TEXT_MAX_LENGTH:
        raise ValueError(_("A note is at most %(max)s characters.") % {"max": TEXT_MAX_LENGTH})
    if record is not None and record.instance_id != instance.pk:
        raise ValueError("the backup is not one of the instance's")
    return Note.objects.create(
        instance=instance,
        record=record,
        text=text,
        incident=incident,
        author=author if getattr(author, "pk", None) else None,
        author_name=(author.get_username() if getattr(author, "pk", None) else "")[:150],
    )


def can_write_notes(request) -> bool:
    """Whether to show the note form; no query for a superuser or a remembered answer."""
    user = request.user
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    key = f"dashboard:can-write-notes:{user.pk}"
    allowed = cache.get(key)
    if allowed is None:
        allowed = user.has_perm(roles.NOTE_PERMISSION)
        cache.set(key, allowed, PERMISSION_CACHE_SECONDS)
    return allowed


def notes_by_record(record_ids: Iterable[int]) -> dict[int, list[tuple[str, str]]]:
    """``{record id: [(incident, text), ...]}`` oldest first, in one query."""
    found: dict[int, list[tuple[str, str]]] = defaultdict(list)
    ids = list(record_ids)
    if not ids:
        return found
    rows = (
        Note.objects.filter(record_id__in=ids)
        .order_by("created_at", "id")
        .values_list("record_id", "incident", "text")
    )
    for record_id, incident, text in rows:
        found[record_id].append((incident, text))
    return found


def export_texts(notes: list[tuple[str, str]]) -> tuple[str, str]:
    """The export cells of one record's notes: its incidents (each once) and its texts."""
    incidents = list(dict.fromkeys(incident for incident, _text in notes if incident))
    texts = [" ".join(text.split()) for _incident, text in notes if text]
    return EXPORT_INCIDENT_SEPARATOR.join(incidents), EXPORT_TEXT_SEPARATOR.join(texts)


# The export cells of a record without notes: export_texts([]).
NO_NOTE_TEXTS = ("", "")
# Past this many backups with notes, an export asks each chunk's notes by all
# of its records' ids rather than keep so many ids for its whole length.
EXPORT_NOTED_RECORDS_MAX = 50_000


class ExportNotes:
    """Sets ``note_incidents`` and ``note_texts`` on each record of an export, a chunk at a time.

    People write notes, so few backups have any. The ids of those that do
    are read once, at the first chunk (one query on the notes' record_id
    index), and kept for the rest of the export; a chunk then asks for the
    notes of its records among them only: a chunk without one, nearly every
    chunk, costs no query, and a record without notes is given the empty
    cells as they are.

    Like any read streamed without a snapshot, an export may or may not show
    a note written while it runs: it does if the record had notes at the
    first chunk and the note is there when the record's chunk is read; on a
    backup without notes until then, it does not. A note deleted meanwhile
    is left out if its chunk is read after.
    """

    def __init__(self) -> None:
        self.noted: set[int] | None = None
        self.learned = False

    def attach(self, records: list) -> None:
        for record in records:
            record.note_incidents, record.note_texts = NO_NOTE_TEXTS
        if not records:
            return
        noted = self._noted()
        if noted is not None and not noted:
            return
        # The id itself rather than the pk property: a tenth of a µs a record.
        pk_of = attrgetter(records[0]._meta.pk.attname)
        wanted = list(map(pk_of, records)) if noted is None else noted.intersection(map(pk_of, records))
        notes = notes_by_record(wanted) if wanted else {}
        if not notes:
            return
        cells = {pk: export_texts(found) for pk, found in notes.items()}
        for record in records:  # (a record may come twice: each gets its cells)
            found = cells.get(pk_of(record))
            if found is not None:
                record.note_incidents, record.note_texts = found

    def _noted(self) -> set[int] | None:
        """The ids of the backups with notes; None when there are too many to keep."""
        if not self.learned:
            ids = set(
                Note.objects.filter(record__isnull=False)
                .order_by()
                .values_list("record_id", flat=True)
                .distinct()[: EXPORT_NOTED_RECORDS_MAX + 1]
            )
            self.noted = ids if len(ids) <= EXPORT_NOTED_RECORDS_MAX else None
            self.learned = True
        return self.noted
