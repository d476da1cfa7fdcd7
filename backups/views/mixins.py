"""What every table page shares: tolerant paging and the HTMX partial."""

from __future__ import annotations

from django.utils.cache import patch_vary_headers
from django_tables2 import SingleTableMixin, Table


def parse_per_page(raw: str | None, *, choices: tuple[int, ...], default: int) -> int:
    """The page size asked for, if it is one we offer; larger sizes are capped."""
    try:
        asked = int(raw)
    except (TypeError, ValueError):
        return default
    if asked in choices:
        return asked
    if asked > max(choices):
        return max(choices)
    return default


class TablePageMixin(SingleTableMixin):
    """A page built around one django-tables2 table.

    Paging never fails on what is in the URL: ``page=abc`` shows the first page,
    a page past the end shows the last one, and ``per_page`` is one of
    ``per_page_choices`` (django-tables2's ``RequestConfig`` would take any
    integer, and 404 on a bad page). An unknown ``sort`` is ignored by the
    table. An HTMX request gets only ``partial_template_name``.
    """

    per_page_choices: tuple[int, ...] = (25, 50, 100, 250)
    partial_template_name: str = ""

    def get_table(self, **kwargs) -> Table:
        table = self.get_table_class()(data=self.get_table_data(), **kwargs)
        table.request = self.request
        params = self.request.GET

        sort = params.getlist(table.prefixed_order_by_field)
        if sort:
            table.order_by = sort  # keeps only orderable columns

        per_page = parse_per_page(
            params.get(table.prefixed_per_page_field),
            choices=self.per_page_choices,
            default=table._meta.per_page,
        )
        table.paginate(per_page=per_page, page=1)
        # The count is cached on the paginator, so this costs no extra query.
        table.page = table.paginator.get_page(params.get(table.prefixed_page_field))
        table.per_page_choices = self.per_page_choices
        return table

    def is_partial_request(self) -> bool:
        htmx = getattr(self.request, "htmx", None)
        # A history restore wants the whole page back, not a fragment.
        return bool(htmx) and not htmx.history_restore_request

    def get_template_names(self) -> list[str]:
        if self.partial_template_name and self.is_partial_request():
            return [self.partial_template_name]
        return super().get_template_names()

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        # The same URL answers with a fragment or a page: caches must not mix them.
        patch_vary_headers(response, ("HX-Request",))
        return response
