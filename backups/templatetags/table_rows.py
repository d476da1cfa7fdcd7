"""``{% table_rows table %}``: a table's body rows, for includes/table.html.

The rows come from :mod:`backups.tables.rendering`, one string join per row,
instead of the template's nested loops over rows and cells.
"""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from backups.tables.rendering import render_body_rows

register = template.Library()


@register.simple_tag(takes_context=True)
def table_rows(context, table) -> SafeString:
    """The ``<tr>``s of the rows the table shows, or "" when it shows none."""
    return render_body_rows(table, context)
