"""Server-rendered SVG: a chart of one instance's backups, no JavaScript.

Everything from the API (backup names and ids) goes through ``format_html``,
which escapes it; nothing here calls ``mark_safe``. Colours are CSS classes
(``static/css/fleet.css``, which follows the light and dark themes) plus a
``fill`` from our own fixed palette as a fallback, picked by the colour *name*
the choices give a status, never by anything the data says. No ``style=``
attributes, so a strict CSP can come later.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from backups.choices import NEUTRAL, BackupStatus
from backups.selectors import ChartPoint, Gap
from backups.tables.columns import duration_text
from backups.templatetags.dashboard_tags import as_local, human_bytes_text, local_text

# A fallback fill per colour name the choices use, for a reader without our
# stylesheet (a saved page, a feed reader); fleet.css overrides it per theme.
PALETTE: dict[str, str] = {
    "green": "#1a7f37",
    "red": "#cf222e",
    "cyan": "#0a6e80",
    "blue": "#0b5cad",
    "orange": "#bc4c00",
    "gray": "#6e7781",
    "indigo": "#4f46e5",
    "purple": "#8250df",
    "teal": "#0d7d6c",
}
GAP_FILL = "#cf222e"
GRID_STROKE = "#afb8c1"

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 76, 16, 14, 38
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
BASELINE = TOP + PLOT_H

_UNITS = ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"), (1, "B"))
_X_STEPS = tuple(
    timedelta(hours=h) for h in (1, 2, 3, 6, 12, 24, 2 * 24, 7 * 24, 14 * 24, 30 * 24, 60 * 24, 90 * 24)
)
MAX_X_TICKS = 7


def size_ticks(largest: int | None, *, target: int = 4) -> tuple[int, list[tuple[int, str]]]:
    """The top of the size axis and its ticks, at round numbers of one binary unit.

    ``size_ticks(700 MiB)`` → top 800 MiB, ticks 0, 200, 400, 600, 800 MiB.
    """
    if not largest or largest <= 0:
        largest = 1024**2  # nothing to scale by: a quiet axis up to 1 MiB
    unit, name = next((u, n) for u, n in _UNITS if largest >= u)
    span = largest / unit
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = max(math.ceil(span / step - 1e-9), 1)
    ticks = []
    for k in range(count + 1):
        amount = round(k * step, 6)
        label = "0" if k == 0 else f"{amount:g} {name}"
        ticks.append((round(amount * unit), label))
    return ticks[-1][0], ticks


def time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Ticks at whole hours or UTC midnights, at most ``MAX_X_TICKS`` of them."""
    span = end - start
    step = next((s for s in _X_STEPS if span / s <= MAX_X_TICKS), _X_STEPS[-1])
    # Ticks fall on the viewer's midnights and hours, as the labels say.
    start = as_local(start)
    if step >= timedelta(days=1):
        first = start.replace(hour=0, minute=0, second=0, microsecond=0)
        label_format = "%Y-%m-%d"
    else:
        first = start.replace(minute=0, second=0, microsecond=0)
        label_format = "%m-%d %H:%M"
    if first < start:
        first += timedelta(days=1) if step >= timedelta(days=1) else timedelta(hours=1)
    if step >= timedelta(days=1):
        # Line day ticks up with the epoch, so a 7-day step lands on the same
        # weekdays whatever the window.
        days = (first.date() - date(1970, 1, 1)).days
        first += timedelta(days=-days % (step.days))
    else:
        hours = first.hour
        first += timedelta(hours=-hours % int(step.total_seconds() // 3600))
    ticks = []
    tick = first
    while tick <= end:
        ticks.append((tick, tick.strftime(label_format)))
        tick += step
    return ticks


def _join(parts: Iterable[SafeString]) -> SafeString:
    return format_html_join("\n", "{}", ((part,) for part in parts))


def _num(value: float) -> str:
    return f"{value:.1f}"


@dataclass(frozen=True)
class LegendItem:
    color: str
    label: str
    count: int


@dataclass(frozen=True)
class BackupChart:
    svg: SafeString
    legend: list[LegendItem]
    description: str


def backup_chart(
    points: Sequence[ChartPoint],
    *,
    start: datetime,
    end: datetime,
    gaps: Sequence[Gap] = (),
    title: str = "",
    chart_id: str = "backup-chart",
) -> BackupChart:
    """An SVG of backups over time: x = created, y = size, a mark per backup.

    Marks are coloured by status; failed backups (which have no size) are red
    triangles on the baseline, and so is anything else without a size, in its
    own colour. Gaps are shaded bands, drawn first so marks stay on top.
    """
    span_seconds = max((end - start).total_seconds(), 1.0)
    largest = max((p.size or 0 for p in points), default=0)
    top, y_ticks = size_ticks(largest)

    def x_of(when: datetime) -> float:
        offset = (when - start).total_seconds() / span_seconds
        return LEFT + min(max(offset, 0.0), 1.0) * PLOT_W

    def y_of(size: int) -> float:
        return BASELINE - min(size / top, 1.0) * PLOT_H

    parts: list[SafeString] = []

    # Grid and axes.
    for amount, label in y_ticks:
        y = _num(y_of(amount))
        parts.append(
            format_html(
                '<line class="chart__grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1"/>'
                '<text class="chart__tick" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">'
                "{}</text>",
                LEFT,
                LEFT + PLOT_W,
                y,
                y,
                GRID_STROKE,
                LEFT - 8,
                y,
                label,
            )
        )
    for tick, label in time_ticks(start, end):
        x = _num(x_of(tick))
        parts.append(
            format_html(
                '<line class="chart__grid chart__grid--x" x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" '
                'stroke-width="1"/><text class="chart__tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                x,
                x,
                TOP,
                BASELINE,
                GRID_STROKE,
                x,
                BASELINE + 20,
                label,
            )
        )

    # Gaps, under the marks.
    for gap in gaps:
        left, right = x_of(gap.start), x_of(gap.end)
        parts.append(
            format_html(
                '<rect class="chart__gap" x="{}" y="{}" width="{}" height="{}" fill="{}" fill-opacity="0.12">'
                "<title>{}</title></rect>",
                _num(left),
                TOP,
                _num(max(right - left, 1.0)),
                PLOT_H,
                GAP_FILL,
                _("No successful backup for %(length)s: %(start)s to %(end)s")
                % {
                    "length": duration_text(gap.length),
                    "start": local_text(gap.start),
                    "end": local_text(gap.end),
                },
            )
        )

    parts.append(
        format_html(
            '<line class="chart__axis" x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1.5"/>',
            LEFT,
            LEFT + PLOT_W,
            BASELINE,
            BASELINE,
            PALETTE[NEUTRAL],
        )
    )

    # One mark per backup.
    for point in points:
        color = BackupStatus.color_of(point.status)
        fill = PALETTE.get(color, PALETTE[NEUTRAL])
        label = format_html(
            "{} — {} — {} — {}",
            point.name or point.backup_id,
            local_text(point.created_at),
            human_bytes_text(point.size) if point.size is not None else _("no size"),
            BackupStatus.label_of(point.status) or _("no status"),
        )
        x = _num(x_of(point.created_at))
        if point.size and point.status != BackupStatus.FAILED:
            parts.append(
                format_html(
                    '<circle class="chart__mark chart__mark--{}" cx="{}" cy="{}" r="4" fill="{}">'
                    "<title>{}</title></circle>",
                    color,
                    x,
                    _num(y_of(point.size)),
                    fill,
                    label,
                )
            )
        else:
            # A triangle pointing up from the baseline: nothing was kept.
            parts.append(
                format_html(
                    '<path class="chart__mark chart__mark--{} chart__mark--baseline" '
                    'd="M{} {} l5 8 h-10 z" fill="{}"><title>{}</title></path>',
                    color,
                    x,
                    _num(BASELINE - 8),
                    fill,
                    label,
                )
            )

    if not points:
        parts.append(
            format_html(
                '<text class="chart__empty" x="{}" y="{}" text-anchor="middle">{}</text>',
                _num(LEFT + PLOT_W / 2),
                _num(TOP + PLOT_H / 2),
                _("No backups in this period."),
            )
        )

    counts = Counter(p.status for p in points)
    legend = [
        LegendItem(BackupStatus.color_of(status), BackupStatus.label_of(status) or _("no status"), n)
        for status, n in sorted(counts.items(), key=lambda item: _status_order(item[0]))
    ]
    description = _describe(points, legend, gaps, start=start, end=end)
    svg = format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {} {}" role="img" '
        'aria-labelledby="{}-title {}-desc" preserveAspectRatio="xMidYMid meet">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>\n{}\n</svg>',
        WIDTH,
        HEIGHT,
        chart_id,
        chart_id,
        chart_id,
        title or _("Backups over time"),
        chart_id,
        description,
        _join(parts),
    )
    return BackupChart(svg=svg, legend=legend, description=description)


def _status_order(status: str) -> tuple[int, str]:
    values = [s.value for s in BackupStatus]
    return (values.index(status), "") if status in values else (len(values), status or "")


def _describe(points, legend, gaps, *, start: datetime, end: datetime) -> str:
    """The chart in words, for screen readers: what a sighted reader takes from it."""
    if not points:
        text = _("No backups from %(start)s to %(end)s.") % {
            "start": local_text(start),
            "end": local_text(end),
        }
    else:
        text = ngettext(
            "%(count)d backup from %(start)s to %(end)s: %(by_status)s.",
            "%(count)d backups from %(start)s to %(end)s: %(by_status)s.",
            len(points),
        ) % {
            "count": len(points),
            "start": local_text(start),
            "end": local_text(end),
            "by_status": ", ".join(f"{item.count} {item.label}" for item in legend),
        }
        largest = max((p.size or 0 for p in points), default=0)
        if largest:
            text += " " + _("The largest is %(size)s.") % {"size": human_bytes_text(largest)}
    if gaps:
        text += " " + ngettext(
            "%(count)d period without a successful backup, %(length)s long.",
            "%(count)d periods without a successful backup, the longest %(length)s.",
            len(gaps),
        ) % {
            "count": len(gaps),
            "length": duration_text(max(g.length for g in gaps)),
        }
    return text
