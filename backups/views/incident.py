"""The incident view (``/incident/``): a frozen, printable, exportable look at a window of backups.

Opened without ``as_of`` it redirects to the same URL with ``as_of`` set to
now (UTC, to the second), so the link that is shared shows the same thing
whenever it is opened. ``?format=csv`` and ``?format=json`` export the same
rebuilt rows; exports are audited like every other export. Bad parameters
give a page (or, for an export, a plain-text 400) that says what is wrong.

Nine queries at most: session, user, the instances, the backups at as_of,
the backups learned later (and their count when more than are listed), the
restores at as_of, the restores learned later, the notes; and the audit
event of an export.
"""

from __future__ import annotations

import csv
import io
import json

from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header, urlencode
from django.utils.translation import gettext as _
from django.views import View

from backups import audit
from backups.choices import BackupStatus, RestoreStatus
from backups.exports import neutralise_formula
from backups.incident import (
    CSV_HEADER,
    MAX_ROWS,
    build_incident_view,
    freeze_now,
    header_item,
    note_item,
    parse_incident_query,
    row_item,
)
from backups.tables.backups import backup_url
from backups.tables.instances import instance_url
from backups.views.records import badge

FORMATS = ("csv", "json")


class IncidentView(View):
    template_name = "backups/incident.html"

    def get(self, request, *args, **kwargs):
        now = timezone.now()
        export_format = request.GET.get("format", "").strip()
        query, errors = parse_incident_query(request.GET, now=now)
        if export_format and export_format not in FORMATS:
            errors.append(
                _("“%(value)s” is not an export format: use %(formats)s.")
                % {"value": export_format[:40], "formats": ", ".join(FORMATS)}
            )
            query = None
        if query is None:
            if export_format in FORMATS:
                return HttpResponse(
                    "\n".join(errors) + "\n", status=400, content_type="text/plain; charset=utf-8"
                )
            return TemplateResponse(request, self.template_name, {"errors": errors, "params": request.GET})
        if query.as_of is None:
            # Frozen at now: the link in the address bar is the one to share.
            params = query.params(as_of=freeze_now(now))
            if export_format:
                params.append(("format", export_format))
            return HttpResponseRedirect(f"{request.path}?{urlencode(params)}")
        view = build_incident_view(query)
        link = request.build_absolute_uri(f"{request.path}?{urlencode(query.params())}")
        if export_format:
            audit.record(
                "export",
                request=request,
                detail={
                    "format": export_format,
                    "view": "incident",
                    "params": audit.safe_params(request.GET),
                },
            )
            return self.export(view, export_format, link=link)
        return TemplateResponse(request, self.template_name, self.context(view, link=link))

    def context(self, view, *, link: str) -> dict:
        base = reverse("backups:incident")
        params = view.query.params()
        return {
            "view": view,
            "link": link,
            "max_rows": MAX_ROWS,
            "instance_links": [(instance, instance_url(instance)) for instance in view.instances],
            "backups": [
                {"row": row, "badge": badge(BackupStatus, row.status), "url": backup_url(row.record)}
                for row in view.backups
            ],
            "restores": [{"row": row, "badge": badge(RestoreStatus, row.status)} for row in view.restores],
            "later_backups": [
                {"record": record, "badge": badge(BackupStatus, record.status), "url": backup_url(record)}
                for record in view.later_backups
            ],
            "export_links": [(name, f"{base}?{urlencode([*params, ('format', name)])}") for name in FORMATS],
            "refreeze_url": f"{base}?{urlencode([p for p in params if p[0] != 'as_of'])}",
        }

    def export(self, view, export_format: str, *, link: str) -> HttpResponse:
        rows = [row_item(row, view) for row in (*view.backups, *view.restores)]
        header = header_item(view, link=link)
        stamp = view.query.as_of.strftime("%Y%m%dT%H%M%SZ")
        if export_format == "json":
            body = {
                **header,
                "backups": [row for row in rows if row["kind"] == "backup"],
                "restores": [row for row in rows if row["kind"] == "restore"],
                "notes": [note_item(note, later=False) for note in view.notes]
                + [note_item(note, later=True) for note in view.later_notes],
            }
            response = HttpResponse(
                json.dumps(body, ensure_ascii=False, indent=1) + "\n", content_type="application/json"
            )
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_HEADER)
            context = {"as_of": header["as_of"], "window_start": header["window"]["start"]}
            context["window_end"] = header["window"]["end"]
            for item in rows:
                item = {**context, **item}
                writer.writerow([_csv_cell(item[name]) for name in CSV_HEADER])
            response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=f"dcs-incident-{stamp}.{export_format}"
        )
        return response


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return neutralise_formula(str(value))
