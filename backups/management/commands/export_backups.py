"""``export_backups --format csv|json [--output FILE] [filters]``: the backup list's export, from the shell.

The bytes are those of ``/backups/?_export=csv`` (or ``json``) with the same
filters and sort: the same filterset, the same table and the same writers
(``backups.exports``), streamed a chunk at a time, so a export of millions of
records needs no more memory than one of ten. Times are UTC, as on the web.

A filter value the list page would ignore with a message is an error here
(exit 2): a script that asked for ``--status faild`` must not get every
record back. Exit 1 when the output cannot be written. ``--output FILE`` is
written to a temporary file beside it and renamed when complete, so a reader
never sees half an export.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.management.base import BaseCommand, CommandError
from django.http import HttpRequest, QueryDict
from django.utils import translation

from backups import audit
from backups.exports import EXPORT_FORMATS, csv_lines, json_chunks
from backups.filters.records import BackupRecordFilterSet
from backups.models import BackupRecord
from backups.tables import BackupRecordTable
from backups.views.mixins import filter_notices

EXIT_BAD_INPUT = 2
EXIT_CANNOT_WRITE = 1

# Flags named like a DBA says them, and the list page's query parameter each one sets.
FLAG_PARAMS = {
    "status": "status",
    "type": "backup_type",
    "backup_format": "backup_format",
    "instance": "instance",
    "region": "region",
    "project": "project",
    "engine": "engine",
    "since": "created_after",
    "until": "created_before",
    "search": "q",
}


class Command(BaseCommand):
    help = "Export backup records as CSV or JSON, exactly as the backup list's export does."

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="export_format")
        parser.add_argument("--output", "-o", metavar="FILE", help="Write here instead of standard output.")
        parser.add_argument(
            "--status",
            action="append",
            metavar="STATUS",
            help="Repeatable: --status failed --status expired.",
        )
        parser.add_argument("--type", metavar="TYPE", help="auto or manual.")
        parser.add_argument("--backup-format", metavar="FORMAT", help="aof or rdb.")
        parser.add_argument("--instance", help="An instance id, or part of a name.")
        parser.add_argument("--region", help="A region, e.g. cn-north-4.")
        parser.add_argument("--project", help="A project id.")
        parser.add_argument("--engine", help="Redis or Memcached.")
        parser.add_argument(
            "--since", metavar="TIME", help="Created at or after: 2026-11-01, 2026-11-01T08:00Z or 7d."
        )
        parser.add_argument("--until", metavar="TIME", help="Created before (a bare date includes that day).")
        parser.add_argument("--search", metavar="TEXT", help="Free text, as the list's search box.")
        parser.add_argument(
            "--sort", metavar="COLUMN", help="As the list's sort, e.g. -size; newest first if unset."
        )
        parser.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="Any other query parameter of /backups/, repeatable.",
        )
        parser.add_argument(
            "--language",
            default=settings.LANGUAGE_CODE,
            choices=[code for code, _name in settings.LANGUAGES],
            help="Language of CSV headers and labels (JSON keys and codes are the same in every language).",
        )

    # --- the query ----------------------------------------------------------------

    def query_of(self, options) -> QueryDict:
        params = QueryDict(mutable=True)
        known = set(BackupRecordFilterSet.base_filters)
        for flag, param in FLAG_PARAMS.items():
            value = options.get(flag)
            if value in (None, [], ""):
                continue
            if param not in known:
                raise CommandError(
                    f"--{flag.replace('_', '-')}: the backup list has no such filter yet",
                    returncode=EXIT_BAD_INPUT,
                )
            params.setlist(param, value if isinstance(value, list) else [value])
        for item in options["filter"]:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not name:
                raise CommandError(f"--filter takes NAME=VALUE, got {item!r}", returncode=EXIT_BAD_INPUT)
            if name not in known:
                raise CommandError(
                    f"--filter: {name!r} is not a filter of the backup list; "
                    f"use one of {', '.join(sorted(known))}",
                    returncode=EXIT_BAD_INPUT,
                )
            params.appendlist(name, value)
        return params

    def build_table(self, params: QueryDict, options) -> tuple[BackupRecordTable, object]:
        # The request the list page would see: its filters and sort, nobody signed in.
        request = HttpRequest()
        request.method, request.path, request.GET = "GET", "/backups/", params
        request.user = AnonymousUser()
        queryset = BackupRecord.objects.select_related("instance").newest_first()
        filterset = BackupRecordFilterSet(params, queryset=queryset, request=request)
        filterset.form.is_valid()  # cleans every field, so that rejected values are known
        notices = filter_notices(filterset.form)
        if notices:
            raise CommandError(
                "Nothing exported: " + " ".join(str(notice) for notice in notices), returncode=EXIT_BAD_INPUT
            )
        table = BackupRecordTable(data=filterset.qs)
        table.request = request
        sort = options["sort"]
        if sort:
            sortable = [column.name for column in table.columns if column.orderable]
            if sort.strip().removeprefix("-") not in sortable:
                raise CommandError(
                    f"--sort {sort!r}: sort by one of {', '.join(sortable)} ('-' first for descending)",
                    returncode=EXIT_BAD_INPUT,
                )
            table.order_by = sort.strip()
        return table, request

    # --- writing ------------------------------------------------------------------

    def handle(self, *args, **options):
        export_format = options["export_format"]
        params = self.query_of(options)
        if options["sort"]:
            params["sort"] = options["sort"]
        output = options["output"] if options["output"] not in (None, "-") else None
        with translation.override(options["language"]):
            table, _request = self.build_table(params, options)
            chunks = csv_lines(table) if export_format == "csv" else json_chunks(table)
            # Counted before, not while, streaming: the writers group records
            # into chunks as they see fit, and a count on the index is cheap
            # next to the export itself.
            records = table.data.data.count()
            written = self.write_file(chunks, output) if output else self.write_stdout(chunks)
        audit.record(
            "export",
            username="manage.py",
            detail={
                "format": export_format,
                "params": audit.safe_params(params),
                "via": "export_backups",
                "records": records,
                "bytes": written,
            },
        )
        if output:
            self.stderr.write(f"Wrote {records} records ({written:,} bytes) to {output}.")

    def write_stdout(self, chunks) -> int:
        stream = sys.stdout.buffer
        written = 0
        try:
            for chunk in chunks:
                data = chunk.encode("utf-8")
                stream.write(data)
                written += len(data)
            stream.flush()
        except BrokenPipeError:
            # `export_backups ... | head`: the reader has what it wanted; no
            # second BrokenPipeError when Python flushes stdout at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return written

    def write_file(self, chunks, output: str) -> int:
        target = Path(output)
        if target.is_dir():
            raise CommandError(f"--output {output}: is a directory", returncode=EXIT_CANNOT_WRITE)
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        except OSError as exc:
            raise CommandError(f"--output {output}: {exc.strerror}", returncode=EXIT_CANNOT_WRITE) from None
        written = 0
        try:
            with os.fdopen(handle, "wb") as stream:
                for chunk in chunks:
                    data = chunk.encode("utf-8")
                    stream.write(data)
                    written += len(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise CommandError(f"--output {output}: {exc.strerror}", returncode=EXIT_CANNOT_WRITE) from None
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return written
