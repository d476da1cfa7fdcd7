"""Writing a note on a backup's or an instance's page (Operators), and listing them there.

A POST with its CSRF token, for users with ``roles.NOTE_PERMISSION``; a
Viewer gets 403. Valid or not, the user goes back to the page they wrote on,
with a message: "Note added", or what was wrong with it.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import Http404, HttpResponseRedirect
from django.utils.translation import gettext as _
from django.views import View

from backups import roles, selectors
from backups.exports import iso_utc
from backups.models import BackupRecord, DcsInstance, Note
from backups.notes import INCIDENT_MAX_LENGTH, TEXT_MAX_LENGTH, NoteForm, can_write_notes, note_create
from backups.tables.backups import backup_url
from backups.tables.instances import instance_url

# A page lists this many notes, newest first.
MAX_NOTES_SHOWN = 100


def notes_context(request, notes) -> dict:
    """What ``_notes.html`` shows: the notes (a queryset, read once) and, for an Operator, the form."""
    rows = list(notes[: MAX_NOTES_SHOWN + 1])
    return {
        "notes": [{"note": note, "iso": iso_utc(note.created_at)} for note in rows[:MAX_NOTES_SHOWN]],
        "notes_more": len(rows) > MAX_NOTES_SHOWN,
        "can_write_notes": can_write_notes(request),
        "note_form": NoteForm(),
        "note_incident_max": INCIDENT_MAX_LENGTH,
        "note_text_max": TEXT_MAX_LENGTH,
    }


class NoteCreateView(PermissionRequiredMixin, View):
    permission_required = roles.NOTE_PERMISSION
    raise_exception = True  # a Viewer gets 403, not the login page again
    http_method_names = ["post"]

    def target(self) -> tuple[DcsInstance, BackupRecord | None, str]:
        raise NotImplementedError

    def post(self, request, *args, **kwargs):
        instance, record, back = self.target()
        form = NoteForm(request.POST)
        if form.is_valid():
            note_create(
                author=request.user,
                instance=instance,
                record=record,
                text=form.cleaned_data["text"],
                incident=form.cleaned_data["incident"],
            )
            messages.success(request, _("Note added."))
        else:
            for field, errors in form.errors.items():
                label = form.fields[field].label if field in form.fields else ""
                for error in errors:
                    text = f"{label}: {error}" if label else error
                    messages.error(request, _("The note was not saved. %(reason)s") % {"reason": text})
        return HttpResponseRedirect(f"{back}#notes")


class BackupNoteCreateView(NoteCreateView):
    def target(self):
        record = selectors.backup_by_id(self.kwargs["backup_id"])
        if record is None:
            raise Http404(_("No backup with this id."))
        return record.instance, record, backup_url(record)


class InstanceNoteCreateView(NoteCreateView):
    def target(self):
        instance = selectors.instance_by_id(self.kwargs["instance_id"])
        if instance is None:
            raise Http404(_("No DCS instance with this id."))
        return instance, None, instance_url(instance)


def instance_notes(instance: DcsInstance):
    """Every note of an instance, its backups' too, newest first."""
    return Note.objects.filter(instance=instance).select_related("record").order_by("-created_at", "-id")


def record_notes(record: BackupRecord):
    return Note.objects.filter(record=record).order_by("-created_at", "-id")
