"""The fleet calendar (``/calendar/``): a heatmap of instances by day of backup outcomes.

Five queries whatever the fleet's size: session, user, the count of the
instances for the paginator, one page of instances (with the at-risk rule as
an expression), and one aggregate of that page's records over the window
(backups.calendar). Days are UTC days; the column headers say so.
"""

from __future__ import annotations

from datetime import UTC
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView

from backups.calendar import BEFORE, FAILURE, NONE, OTHER, SUCCESS, Cell, calendar_rows, window_days
from backups.models import DcsInstance
from backups.selectors import FleetScope, with_risk
from backups.tables.columns import gone_marker
from backups.tables.instances import instance_url

CALENDAR_DAYS = ("30", "90")
DEFAULT_DAYS = "30"
# Instances per page: 50 rows of 90 cells is what a screen can take in, and
# what one aggregate query answers in a few milliseconds.
PER_PAGE = 50
MAX_SCOPE_LENGTH = 64
TRUE_VALUES = ("1", "yes", "true", "on")
FALSE_VALUES = ("", "0", "no", "false", "off")

LEGEND = (
    (SUCCESS, gettext_lazy("At least one backup succeeded")),
    (FAILURE, gettext_lazy("Backups failed, none succeeded")),
    (OTHER, gettext_lazy("Only backups still running, expired or deleted")),
    (NONE, gettext_lazy("No backup")),
    (BEFORE, gettext_lazy("Before the dashboard knew the instance")),
)


def cell_text(cell: Cell) -> str:
    """The tooltip and the text alternative of a cell: the day, and what happened on it."""
    day = cell.day.isoformat()
    if cell.counts.total:
        return _("%(day)s UTC: %(succeeded)d succeeded, %(failed)d failed, %(other)d other") % {
            "day": day,
            "succeeded": cell.counts.succeeded,
            "failed": cell.counts.failed,
            "other": cell.counts.other,
        }
    if cell.state == BEFORE:
        return _("%(day)s UTC: before the dashboard knew this instance") % {"day": day}
    return _("%(day)s UTC: no backup") % {"day": day}


def cell_html(cell: Cell) -> str:
    """One cell, built here rather than in the template: a page has up to 4,500 of them."""
    text = cell_text(cell)
    if cell.url:
        return format_html(
            '<td><a class="cal-day cal-day--{}" href="{}" title="{}" aria-label="{}"></a></td>',
            cell.state,
            cell.url,
            text,
            text,
        )
    return format_html(
        '<td><span class="cal-day cal-day--{}" role="img" title="{}" aria-label="{}"></span></td>',
        cell.state,
        text,
        text,
    )


def parse_choice(raw: str | None, *, choices: tuple[str, ...], default: str, what: str) -> tuple[str, str]:
    """The value asked for and "", or the default and a message saying why."""
    value = (raw or "").strip().lower()
    if not value:
        return default, ""
    if value in choices:
        return value, ""
    return default, _(
        "“%(value)s” is not a %(what)s this page offers (%(choices)s): showing %(default)s."
    ) % {
        "value": (raw or "").strip()[:40],
        "what": what,
        "choices": ", ".join(choices),
        "default": default,
    }


class CalendarView(TemplateView):
    template_name = "backups/calendar.html"

    @cached_property
    def problems(self) -> list[str]:
        return []

    @cached_property
    def scope(self) -> FleetScope:
        values = {}
        for param in ("region", "project"):
            value = self.request.GET.get(param, "").strip()[:MAX_SCOPE_LENGTH]
            if "\x00" in value:
                self.problems.append(
                    _("“%(param)s” holds a character no name can have, so it was ignored.") % {"param": param}
                )
                value = ""
            values[param] = value
        return FleetScope(region=values["region"], project_id=values["project"])

    @cached_property
    def days(self) -> int:
        value, problem = parse_choice(
            self.request.GET.get("days"),
            choices=CALENDAR_DAYS,
            default=DEFAULT_DAYS,
            what=_("number of days"),
        )
        if problem:
            self.problems.append(problem)
        return int(value)

    @cached_property
    def at_risk_only(self) -> bool:
        raw = self.request.GET.get("at_risk", "")
        value = raw.strip().lower()
        if value in TRUE_VALUES:
            return True
        if value not in FALSE_VALUES:
            self.problems.append(
                _("“%(value)s” is not a value at_risk takes (1 or 0): showing every instance.")
                % {"value": raw.strip()[:40]}
            )
        return False

    def params(self, **changes) -> dict[str, str]:
        """The page's own query parameters, with ``changes`` applied (None drops one)."""
        params = {"days": str(self.days), **self.scope.params()}
        if self.at_risk_only:
            params["at_risk"] = "1"
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return params

    def href(self, **changes) -> str:
        return f"?{urlencode(self.params(**changes))}"

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        now = timezone.now()
        days = window_days(today=now.astimezone(UTC).date(), days=self.days)
        instances = with_risk(self.scope.instances(DcsInstance.objects.all()), now=now)
        if self.at_risk_only:
            instances = instances.filter(at_risk=True)
        instances = instances.defer("raw").order_by("name", "instance_id", "pk")
        page = Paginator(instances, PER_PAGE).get_page(self.request.GET.get("page"))
        rows = calendar_rows(list(page.object_list), days=days)
        context.update(
            now=now,
            page_obj=page,
            days=days,
            day_count=self.days,
            at_risk_only=self.at_risk_only,
            scope=self.scope,
            param_errors=self.problems,
            legend=LEGEND,
            rows=[
                {
                    "instance": row.instance,
                    "url": instance_url(row.instance),
                    "gone": gone_marker(
                        row.instance.gone_at, _("This instance is no longer listed by the API.")
                    ),
                    "cells": format_html_join("", "{}", ((cell_html(cell),) for cell in row.cells)),
                }
                for row in rows
            ],
            day_links=[
                (_("%(n)s days") % {"n": choice}, self.href(days=choice, page=None), choice == str(self.days))
                for choice in CALENDAR_DAYS
            ],
            at_risk_href=self.href(at_risk=None if self.at_risk_only else "1", page=None),
            previous_href=self.href(page=str(page.previous_page_number())) if page.has_previous() else "",
            next_href=self.href(page=str(page.next_page_number())) if page.has_next() else "",
        )
        return context
