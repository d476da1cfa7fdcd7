"""CSV and JSON exports of a table: the whole filtered, sorted view, streamed.

Every cell is plain text from the column's ``value()`` (never its HTML), and
every time is ISO 8601 in UTC (``2026-11-26T12:00:00Z``), whatever zone the
viewer reads the page in. JSON keeps numbers, booleans and nulls as such.

An export goes the general way, a record and a column's ``value()`` at a
time, through shortcuts that write the very bytes django-tables2 would; where
every field allows it, the CSV is written from the database's tuples instead:

- :mod:`backups.exports.fields`: what an export writes: a table's fields, a
  field's CSV text and JSON value, times in UTC, formulas kept text;
- :mod:`backups.exports.cells`: a column's ``value()`` of a record without a
  BoundRow per cell;
- :mod:`backups.exports.records`: the table's records, a chunk at a time,
  without ``Model.__init__``;
- :mod:`backups.exports.rows`: CSV rows as functions of the database's tuples;
- :mod:`backups.exports.stream`: the CSV lines, the JSON chunks and the
  streamed download.
"""

from backups.exports.fields import ExportField, export_fields, iso_utc, json_number, neutralise_formula
from backups.exports.stream import CONTENT_TYPES, EXPORT_FORMATS, csv_lines, export_response, json_chunks

__all__ = [
    "CONTENT_TYPES",
    "EXPORT_FORMATS",
    "ExportField",
    "csv_lines",
    "export_fields",
    "export_response",
    "iso_utc",
    "json_chunks",
    "json_number",
    "neutralise_formula",
]
