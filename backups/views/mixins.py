"""What every table page shares: filters, sorting, tolerant paging, counts,
exports, the permalink and the HTMX partial.

A list page is configuration: it names its ``table_class``, its
``filterset_class``, its ``export_filename`` and its queryset; everything else
happens here, once.
"""

from __future__ import annotations

import hashlib
from math import ceil

from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.formats import number_format
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_tables2 import SingleTableMixin, Table
from django_tables2.rows import BoundRow, BoundRows
from django_tables2.templatetags.django_tables2 import table_page_range

from backups import audit
from backups.exports import EXPORT_FORMATS, export_response
from backups.keyset import BadCursor, Keyset
from backups.timewindow import PRESETS, TIME_BOUND_PARAMS, absolute_query

EXPORT_PARAM = "_export"
# Keyset paging: the rows after or before the row this token names.
AFTER_PARAM = "after"
BEFORE_PARAM = "before"
CURSOR_PARAMS = (AFTER_PARAM, BEFORE_PARAM)
# Numbered pages go this deep (OFFSET rows); past it, Next seeks from the
# last row shown, which costs the same on page 2 and page 20,000.
MAX_NUMBERED_ROWS = 10_000
# A page number past this offset is not a page anyone reached by paging.
MAX_OFFSET = 10**12
# How much of a user's value a message repeats.
ECHO_LENGTH = 40


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


def echo(value: str) -> str:
    """A user's value, short enough to repeat in a message."""
    value = str(value)
    return value if len(value) <= ECHO_LENGTH else value[: ECHO_LENGTH - 1] + "…"


class CountedPaginator(Paginator):
    """A paginator that is told the count instead of asking the database.

    The count is exact (``count_is_exact``), or only a lower bound when the
    result is too big to count cheaply. Then a page is fetched with one extra
    row to know whether another follows, so deep pages need no count either;
    only a page past the end of such a result counts it, once, to find the
    last page. ``fallback`` says when the asked page could not be shown:
    "first" (not a page number) or "last" (out of range).
    """

    def __init__(self, object_list, per_page, *, count: int, exact: bool, count_all=None, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        # Replaces Paginator's cached COUNT query. A count from a summary or
        # a cache is never trusted below zero: Paginator would slice with it.
        self.count = max(0, count)
        self.count_is_exact = exact
        self._count_all = count_all or (lambda: len(object_list))
        self.fallback = ""
        self._pages_seen = 0

    @property
    def num_pages(self) -> int:
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        known = ceil(max(1, self.count - self.orphans) / self.per_page)
        return known if self.count_is_exact else max(known, self._pages_seen)

    def validate_number(self, number):
        if self.count_is_exact:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(_("That page number is not an integer")) from None
        if number < 1 or (number - 1) * self.per_page > MAX_OFFSET:
            raise EmptyPage(_("That page contains no results"))
        return number

    def get_page(self, number):
        try:
            number = self.validate_number(number)
        except PageNotAnInteger:
            self.fallback, number = "first", 1
        except EmptyPage:
            self._count_exactly()
            self.fallback, number = "last", self.num_pages
        return self.page(number)

    def page(self, number):
        if self.count_is_exact:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        if not rows and number > 1:
            self._count_exactly()
            self.fallback = "last"
            return super().page(self.num_pages)
        if len(rows) > self.per_page:
            self._pages_seen = number + 1
        else:
            # The last page: its rows give the exact count for free.
            self.count = bottom + len(rows)
            self.count_is_exact = True
        return self._get_page(rows[: self.per_page], number, self)

    def _count_exactly(self) -> None:
        if not self.count_is_exact:
            self.count = self._count_all()
            self.count_is_exact = True


class IndexSlicedRows:
    """A table's rows whose numbered pages are read by ``Keyset.page_slice``.

    The paginator slices its ``object_list``; a deep numbered page then skips
    its OFFSET rows in the index of the sort instead of in the table.
    """

    def __init__(self, rows: BoundRows, keyset: Keyset, queryset: QuerySet):
        # Not named ``ordered``: Paginator reads that attribute as QuerySet.ordered.
        self.rows = rows
        self.keyset = keyset
        self.queryset = queryset

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step is not None or key.stop is None:
            return self.rows[key]
        data = self.keyset.page_slice(self.queryset, key.start or 0, key.stop)
        return BoundRows(data=data, table=self.rows.table, pinned_data=self.rows.pinned_data)


class KeysetPage:
    """A page reached by seeking from a row: it has no number, and its
    links (the table's ``previous_href``/``next_href``) carry cursors."""

    is_keyset = True
    number = None

    def __init__(self, object_list: list):
        self.object_list = object_list

    def __len__(self) -> int:
        return len(self.object_list)


def filters_active(filterset) -> bool:
    """Whether any filter got a usable value (an ignored one does not count)."""
    if filterset is None:
        return False
    return any(value not in (None, "", [], ()) for value in filterset.form.cleaned_data.values())


def filter_notices(form) -> list[str]:
    """One message per query parameter the filters could not use."""
    notices = []
    for name, field in form.fields.items():
        rejected = getattr(field, "rejected", ())
        if rejected:
            choices = ", ".join(str(value) for value, _label in field.choices if value)
            for value in rejected:
                notices.append(
                    _(
                        "%(label)s (%(param)s): “%(value)s” is not a value we know, so it was ignored. "
                        "Use one of: %(choices)s."
                    )
                    % {"label": field.label, "param": name, "value": echo(value), "choices": choices}
                )
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = field.label if field is not None else name
        for error in errors:
            notices.append(
                _("%(label)s (%(param)s) was ignored: %(reason)s")
                % {"label": label, "param": name, "reason": error}
            )
    return notices


class TablePageMixin(SingleTableMixin):
    """A page built around one django-tables2 table.

    Nothing in the URL makes it fail; a value it cannot use is left out and a
    message above the table says so:

    - ``filterset_class`` filters the rows; a bad value ignores that filter only.
    - ``sort`` is one of the table's orderable columns, ``-`` for descending;
      anything else keeps the table's default order.
    - ``page=abc`` shows the first page, a page past the end the last one, and
      ``per_page`` is one of ``per_page_choices`` (larger sizes are capped).
    - ``_export=csv`` or ``_export=json`` streams the whole filtered, sorted
      view instead of the page.

    The total is never a full count on every view: without filters it is
    cached for ``count_cache_seconds``; with filters it is counted up to
    ``count_cap`` and shown as "10,000+" beyond. An HTMX request gets only
    ``partial_template_name``.
    """

    per_page_choices: tuple[int, ...] = (25, 50, 100, 250)
    partial_template_name: str = ""
    filterset_class = None
    export_filename: str = "dcs-export"
    count_cap: int = 10_000
    # Unfiltered totals at least this large are cached for count_cache_seconds.
    count_cache_min_rows: int = 10_000
    count_cache_seconds: int = 60
    # Query parameters holding time bounds that may be relative ("24h"): the
    # permalink turns them into absolute times.
    time_bound_params: tuple[str, ...] = TIME_BOUND_PARAMS
    filtered_empty_text = gettext_lazy("Nothing matches these filters.")

    filterset = None

    @cached_property
    def now(self):
        return timezone.now()

    @cached_property
    def notices(self) -> list[str]:
        return []

    @cached_property
    def kept_params(self) -> dict[str, str]:
        """The sort and page size in effect, which a change of filters keeps."""
        return {}

    @cached_property
    def export_format(self) -> str:
        raw = self.request.GET.get(EXPORT_PARAM)
        if raw is None or raw == "":
            return ""
        if raw in EXPORT_FORMATS:
            return raw
        self.notices.append(
            _("“%(value)s” is not an export format: use %(formats)s.")
            % {"value": echo(raw), "formats": ", ".join(EXPORT_FORMATS)}
        )
        return ""

    # --- the table ---------------------------------------------------------

    def get_filterset(self, queryset):
        return self.filterset_class(self.request.GET, queryset=queryset, request=self.request)

    def get_table(self, **kwargs) -> Table:
        data = self.get_table_data()
        if self.filterset_class is not None:
            self.filterset = self.get_filterset(data)
            data = self.filterset.qs
            self.notices.extend(filter_notices(self.filterset.form))
        table = self.get_table_class()(data=data, **kwargs)
        table.request = self.request
        self.sort_table(table)
        if filters_active(self.filterset):
            table.empty_text = self.filtered_empty_text
        if not self.export_format:
            self.paginate_table(table, data)
        return table

    def sort_table(self, table: Table) -> None:
        """Apply ``sort`` if it names one orderable column, else say why not.

        One column only: each column's own tie-breakers (newest first, then
        by id) already make its order total, and a column with an
        ``order_FOO`` would override any key before it.
        """
        raw = [value for value in self.request.GET.getlist(table.prefixed_order_by_field) if value != ""]
        if not raw:
            return
        aliases = [column.name for column in table.columns if column.orderable]
        key = raw[0].strip()
        if len(raw) == 1 and key.removeprefix("-") in aliases:
            table.order_by = key
            self.kept_params[table.prefixed_order_by_field] = key
            return
        self.notices.append(
            _(
                "“%(value)s” is not a column this table sorts by, so it keeps its default order. "
                "Sort by: %(columns)s (with “-” first for descending)."
            )
            % {"value": echo(",".join(raw)), "columns": ", ".join(aliases)}
        )

    def paginate_table(self, table: Table, data) -> None:
        params = self.request.GET
        raw_per_page = params.get(table.prefixed_per_page_field, "")
        per_page = parse_per_page(raw_per_page, choices=self.per_page_choices, default=table._meta.per_page)
        if raw_per_page.strip() and raw_per_page.strip() != str(per_page):
            self.notices.append(
                _("“%(value)s” rows per page is not offered (%(choices)s): showing %(per_page)s.")
                % {
                    "value": echo(raw_per_page),
                    "choices": ", ".join(str(n) for n in self.per_page_choices),
                    "per_page": per_page,
                }
            )
        if raw_per_page.strip():
            self.kept_params[table.prefixed_per_page_field] = str(per_page)
        count, exact = self.count_rows(data)
        # The sorted queryset: django-tables2 applied the order to it.
        ordered = table.data.data if isinstance(data, QuerySet) else None
        keyset = Keyset.of(ordered) if ordered is not None else None
        paginator = CountedPaginator(
            table.rows if keyset is None else IndexSlicedRows(table.rows, keyset, ordered),
            per_page,
            count=count,
            exact=exact,
            count_all=data.count if isinstance(data, QuerySet) else None,
        )
        table.paginator = paginator
        table.per_page_choices = self.per_page_choices
        if keyset is None or not self.paginate_by_cursor(table, keyset, ordered, per_page):
            self.paginate_by_number(table, paginator, keyset, per_page)
        if paginator.count_is_exact:
            table.count_text = number_format(paginator.count, force_grouping=True)
        else:
            table.count_text = number_format(self.count_cap, force_grouping=True) + "+"

    def paginate_by_number(self, table: Table, paginator: CountedPaginator, keyset, per_page: int) -> None:
        """The numbered page asked for; with a keyset, no deeper than ``MAX_NUMBERED_ROWS``."""
        raw_page = self.request.GET.get(table.prefixed_page_field, "")
        deepest = max(1, MAX_NUMBERED_ROWS // per_page) if keyset is not None else None
        asked = int(raw_page) if raw_page.strip().isdigit() else 0
        # A page past the end of a counted view is the last page, as usual,
        # when the last page is one we number.
        past_the_end = paginator.count_is_exact and asked > paginator.num_pages <= (deepest or 0)
        if deepest is not None and asked > deepest and not past_the_end:
            self.notices.append(
                _(
                    "Page %(value)s is deeper than pages are numbered (%(deepest)s): showing page "
                    "%(deepest)s. Use Next to go on, or narrow the rows with a time window."
                )
                % {"value": echo(raw_page), "deepest": deepest}
            )
            raw_page = str(deepest)
        page = paginator.get_page(raw_page)
        if raw_page.strip() and paginator.fallback == "first":
            self.notices.append(
                _("“%(value)s” is not a page number: showing the first page.") % {"value": echo(raw_page)}
            )
        elif paginator.fallback == "last":
            self.notices.append(
                _("There is no page %(value)s: showing the last page, %(number)s.")
                % {"value": echo(raw_page), "number": page.number}
            )
        numbers = table_page_range(page, paginator)
        if deepest is not None:
            numbers = [n for n in numbers if n == "..." or n <= deepest]
            while numbers and numbers[-1] == "...":
                numbers.pop()
        field = table.prefixed_page_field
        table.page_links = [
            (n, self.page_href(table, **{field: str(n)}) if n != "..." else "") for n in numbers
        ]
        table.first_href = ""
        table.previous_href = (
            self.page_href(table, **{field: str(page.previous_page_number())}) if page.has_previous() else ""
        )
        table.next_href = ""
        if deepest is not None and page.number >= deepest and page.has_next() and page.object_list:
            # The next page is past the numbered ones: it is sought from this page's last row.
            last = list(page.object_list)[-1].record
            cursor = keyset.encode(keyset.values_of(last), order=self.cursor_order(table))
            table.next_href = self.page_href(table, **{AFTER_PARAM: cursor})
        elif page.has_next():
            table.next_href = self.page_href(table, **{field: str(page.next_page_number())})
        table.page = page

    def page_href(self, table: Table, **params: str) -> str:
        """This view's query with ``params`` set: a page number or one cursor, never two ways of paging."""
        query = self.request.GET.copy()
        for name in (table.prefixed_page_field, *CURSOR_PARAMS):
            query.pop(name, None)
        query.update({name: value for name, value in params.items() if value is not None})
        return f"?{query.urlencode()}"

    def cursor_order(self, table: Table) -> str:
        """What a cursor is only valid for: the sort it was made in."""
        return self.kept_params.get(table.prefixed_order_by_field, "")

    def paginate_by_cursor(self, table: Table, keyset: Keyset, ordered: QuerySet, per_page: int) -> bool:
        """Show the page after (or before) the row a cursor names; False when there is no usable cursor."""
        params = self.request.GET
        after, before = params.get(AFTER_PARAM, "").strip(), params.get(BEFORE_PARAM, "").strip()
        token = after or before
        if not token:
            return False
        order = self.cursor_order(table)
        try:
            values = keyset.decode(token, order=order)
        except BadCursor:
            self.notices.append(
                _(
                    "This page link does not fit this view (it may be from another sort order): "
                    "showing the first page."
                )
            )
            return False
        if after:
            rows = keyset.rows_after(ordered, values, limit=per_page + 1)
            more, rows = len(rows) > per_page, rows[:per_page]
            previous_row, next_row = (rows[0] if rows else None), (rows[-1] if more else None)
        else:
            rows = keyset.rows_before(ordered, values, limit=per_page + 1)
            more, rows = len(rows) > per_page, rows[-per_page:]
            previous_row, next_row = (rows[0] if more else None), (rows[-1] if rows else None)
        if not rows:
            self.notices.append(_("No rows follow that point any more: showing the first page."))
            return False
        if before and not more:
            # Back at the start: that is the first numbered page.
            return False

        def href(param: str, row) -> str:
            if row is None:
                return ""
            return self.page_href(table, **{param: keyset.encode(keyset.values_of(row), order=order)})

        table.page = KeysetPage([BoundRow(row, table=table) for row in rows])
        table.page_links = []
        table.first_href = self.page_href(table)
        table.previous_href = href(BEFORE_PARAM, previous_row)
        table.next_href = href(AFTER_PARAM, next_row)
        return True

    # --- counting ----------------------------------------------------------

    def count_rows(self, data) -> tuple[int, bool]:
        """The number of rows, and whether it is exact or only "more than count_cap"."""
        if not isinstance(data, QuerySet):
            return len(data), True
        if self.filterset_class is not None and not filters_active(self.filterset):
            key = self.count_cache_key(data)
            if key:
                count = cache.get(key)
                if count is None:
                    count = self.unfiltered_count(data)
                    # A small table counts fast, and a cached small count
                    # would hide the first sync's rows for a minute.
                    if count >= self.count_cache_min_rows:
                        cache.set(key, count, self.count_cache_seconds)
                return count, True
        # Counting stops at the cap: COUNT(*) over a LIMIT-ed subquery.
        # values("pk"): the count needs no annotation the filters do not use,
        # and a sliced count would otherwise compute every one for every row.
        capped = data.order_by().values("pk")[: self.count_cap + 1].count()
        return capped, capped <= self.count_cap

    def unfiltered_count(self, queryset: QuerySet) -> int:
        """The rows of the page without filters; a page over a summarised table says so faster."""
        return queryset.count()

    def count_cache_key(self, queryset: QuerySet) -> str:
        """The cache key of an unfiltered count: the model and the query itself.

        The query is part of the key because an unfiltered page may still
        narrow its model (the fleet page hides gone instances by default).
        """
        try:
            sql = str(queryset.order_by().values("pk").query)
        except EmptyResultSet:
            return ""
        digest = hashlib.sha256(sql.encode()).hexdigest()[:32]
        return f"dashboard:table-count:{queryset.model._meta.label_lower}:{digest}"

    # --- links -------------------------------------------------------------

    def clean_query(self, params: QueryDict, *, drop: tuple[str, ...] = ()) -> QueryDict:
        """The query without empty values (an empty filter form sends them all) and ``drop``."""
        query = QueryDict(mutable=True)
        for key, values in params.lists():
            kept = [value for value in values if value != ""]
            if key not in drop and key != EXPORT_PARAM and kept:
                query.setlist(key, kept)
        return query

    def get_permalink(self) -> str:
        """This view, absolute, with relative time presets as the UTC times they stand for now.

        Pasted into a ticket, it shows the same records tomorrow.
        """
        params = absolute_query(self.request.GET, now=self.now, names=self.time_bound_params)
        query = self.clean_query(params).urlencode()
        return self.request.build_absolute_uri(self.request.path + (f"?{query}" if query else ""))

    def get_export_links(self, table: Table) -> list[tuple[str, str]]:
        links = []
        for name in EXPORT_FORMATS:
            query = self.clean_query(self.request.GET, drop=(table.prefixed_page_field, *CURSOR_PARAMS))
            query[EXPORT_PARAM] = name
            links.append((name, f"{self.request.path}?{query.urlencode()}"))
        return links

    # --- the response ------------------------------------------------------

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        table = context[self.get_context_table_name(None)]
        context.update(
            filterset=self.filterset,
            filter=self.filterset,  # the name django-filter's FilterView uses
            filter_form=self.filterset.form if self.filterset is not None else None,
            filters_active=filters_active(self.filterset),
            table_notices=self.notices,
            time_presets=tuple(PRESETS),
        )
        if not self.export_format:
            context.update(permalink=self.get_permalink(), export_links=self.get_export_links(table))
            # The filter form keeps the sort and page size in effect (not a
            # bad value the page already said it ignored).
            context["filter_keep"] = list(self.kept_params.items())
        return context

    def is_partial_request(self) -> bool:
        htmx = getattr(self.request, "htmx", None)
        # A history restore wants the whole page back, not a fragment.
        return bool(htmx) and not htmx.history_restore_request

    def get_template_names(self) -> list[str]:
        if self.partial_template_name and self.is_partial_request():
            return [self.partial_template_name]
        return super().get_template_names()

    def render_to_response(self, context, **response_kwargs):
        if self.export_format:
            table = context[self.get_context_table_name(None)]
            audit.record(
                "export",
                request=self.request,
                detail={"format": self.export_format, "params": audit.safe_params(self.request.GET)},
            )
            return export_response(table, self.export_format, filename=self.export_filename, now=self.now)
        response = super().render_to_response(context, **response_kwargs)
        # The same URL answers with a fragment or a page: caches must not mix them.
        patch_vary_headers(response, ("HX-Request",))
        return response
