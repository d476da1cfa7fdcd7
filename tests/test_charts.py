import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from backups.charts import BASELINE, GAP_FILL, GRID_STROKE, PALETTE, backup_chart, size_ticks, time_ticks
from backups.selectors import ChartPoint, Gap
from backups.tables.instances import age_text
from tests.factories import T0

SVG = "{http://www.w3.org/2000/svg}"
MiB = 1024**2
GiB = 1024**3
START = T0
END = T0 + timedelta(days=30)


def point(hours: float, *, size=MiB, status="succeed", name="backup", backup_id="b-1"):
    return ChartPoint(START + timedelta(hours=hours), size, status, name, backup_id)


def parse(chart) -> ET.Element:
    return ET.fromstring(str(chart.svg))  # noqa: S314 (our own markup)


def marks(root: ET.Element) -> list[ET.Element]:
    return [el for el in root.iter() if "chart__mark" in el.get("class", "").split()]


# --- The SVG -------------------------------------------------------------------


def test_it_draws_valid_accessible_svg():
    chart = backup_chart(
        [point(1), point(30, status="failed", size=None)], start=START, end=END, title="My chart"
    )

    root = parse(chart)

    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "backup-chart-title backup-chart-desc"
    assert root.find(f"{SVG}title").text == "My chart"
    assert root.find(f"{SVG}title").get("id") == "backup-chart-title"
    desc = root.find(f"{SVG}desc").text
    assert desc.startswith(
        "2 backups from 2025-03-01 12:00:00 UTC to 2025-03-31 12:00:00 UTC: 1 Succeeded, 1 Failed."
    )
    assert "The largest is 1.0 MiB." in desc


def test_it_draws_one_mark_per_backup_with_a_title():
    chart = backup_chart(
        [point(1, name="nightly-1", size=3 * MiB), point(2, name="", backup_id="b-2")], start=START, end=END
    )

    found = marks(parse(chart))

    assert len(found) == 2
    titles = [mark.find(f"{SVG}title").text for mark in found]
    assert titles[0] == "nightly-1 — 2025-03-01 13:00:00 UTC — 3.0 MiB — Succeeded"
    assert titles[1].startswith("b-2 — 2025-03-01 14:00:00 UTC")


def test_it_colours_marks_by_status_from_the_choices():
    chart = backup_chart(
        [point(1), point(2, status="expired"), point(3, status="brand-new")], start=START, end=END
    )

    classes = [mark.get("class") for mark in marks(parse(chart))]

    assert classes == [
        "chart__mark chart__mark--green",
        "chart__mark chart__mark--orange",
        "chart__mark chart__mark--gray",
    ]


def test_it_puts_failed_backups_on_the_baseline_in_red():
    chart = backup_chart([point(5, status="failed", size=None)], start=START, end=END)

    (mark,) = marks(parse(chart))

    assert mark.tag == f"{SVG}path"
    assert "chart__mark--red" in mark.get("class")
    assert "chart__mark--baseline" in mark.get("class")
    assert mark.get("fill") == PALETTE["red"]
    assert f" {BASELINE - 8:.1f} " in mark.get("d")


def test_it_scales_sizes_on_the_y_axis():
    chart = backup_chart([point(1, size=200 * MiB), point(2, size=800 * MiB)], start=START, end=END)

    small, big = (float(m.get("cy")) for m in marks(parse(chart)))

    assert big < small < BASELINE
    tick_labels = [t.text for t in parse(chart).iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert tick_labels == ["0", "200 MiB", "400 MiB", "600 MiB", "800 MiB"]


def test_it_places_marks_in_time_order_across_the_window():
    chart = backup_chart([point(0), point(24 * 15), point(24 * 30)], start=START, end=END)

    xs = [float(m.get("cx")) for m in marks(parse(chart))]

    assert xs[0] < xs[1] < xs[2]
    assert xs[1] == pytest.approx((xs[0] + xs[2]) / 2)


def test_it_shades_the_gaps():
    gaps = [
        Gap(START - timedelta(days=2), START + timedelta(days=3)),
        Gap(END - timedelta(days=2), END, True),
    ]

    root = parse(backup_chart([point(72)], start=START, end=END, gaps=gaps))

    bands = [el for el in root.iter(f"{SVG}rect") if el.get("class") == "chart__gap"]
    assert len(bands) == 2
    # The first gap began before the window: its band starts at the window's edge.
    assert float(bands[0].get("x")) == pytest.approx(76.0)
    assert bands[0].find(f"{SVG}title").text.startswith("No successful backup for 5 d:")
    assert "2 periods without a successful backup, the longest 5 d." in root.find(f"{SVG}desc").text


def test_it_says_so_when_there_is_nothing_to_draw():
    root = parse(backup_chart([], start=START, end=END))

    assert marks(root) == []
    assert any(t.text == "No backups in this period." for t in root.iter(f"{SVG}text"))
    assert root.find(f"{SVG}desc").text.startswith("No backups from")


def test_it_escapes_api_text():
    evil = '<script>alert("x")</script>&'
    chart = backup_chart([point(1, name=evil, backup_id="<b>")], start=START, end=END)

    svg = str(chart.svg)
    root = ET.fromstring(svg)  # noqa: S314 (our own markup)

    assert "<script" not in svg
    assert "&lt;script&gt;" in svg
    (mark,) = marks(root)
    assert mark.find(f"{SVG}title").text.startswith(evil + " — ")


def test_it_escapes_an_unknown_status_in_the_description_and_legend():
    chart = backup_chart([point(1, status="<img src=x>")], start=START, end=END)

    assert "<img" not in str(chart.svg)
    assert chart.legend[0].label == "<img src=x>"  # autoescaped by the template
    assert chart.legend[0].color == "gray"
    ET.fromstring(str(chart.svg))  # noqa: S314 (our own markup)


def test_it_uses_no_inline_style_and_only_our_palette():
    gaps = [Gap(START, START + timedelta(days=3))]
    points = [point(h, status=s) for h, s in ((1, "succeed"), (2, "failed"), (3, "waiting"), (4, "x"))]

    root = parse(backup_chart(points, start=START, end=END, gaps=gaps))

    allowed = set(PALETTE.values()) | {GAP_FILL, GRID_STROKE}
    for element in root.iter():
        assert "style" not in element.attrib
        for attribute in ("fill", "stroke"):
            if attribute in element.attrib:
                assert element.get(attribute) in allowed


def test_it_gives_a_legend_in_status_order():
    chart = backup_chart(
        [point(1, status="failed"), point(2), point(3), point(4, status="zzz")], start=START, end=END
    )

    assert [(i.color, i.label, i.count) for i in chart.legend] == [
        ("green", "Succeeded", 2),
        ("red", "Failed", 1),
        ("gray", "zzz", 1),
    ]


# --- Scales --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("largest", "top", "labels"),
    [
        (700 * MiB, 800 * MiB, ["0", "200 MiB", "400 MiB", "600 MiB", "800 MiB"]),
        (int(1.5 * GiB), int(1.5 * GiB), ["0", "0.5 GiB", "1 GiB", "1.5 GiB"]),
        (0, MiB, ["0", "0.25 MiB", "0.5 MiB", "0.75 MiB", "1 MiB"]),
        (None, MiB, ["0", "0.25 MiB", "0.5 MiB", "0.75 MiB", "1 MiB"]),
        (500, 600, ["0", "200 B", "400 B", "600 B"]),
    ],
)
def test_it_picks_round_size_ticks(largest, top, labels):
    axis_top, ticks = size_ticks(largest)

    assert axis_top == top
    assert [label for _, label in ticks] == labels
    assert ticks[0] == (0, "0")


def test_it_labels_size_ticks_in_one_binary_unit():
    _top, ticks = size_ticks(int(1.5 * GiB))

    assert all(label == "0" or label.endswith(" GiB") for _, label in ticks)
    assert ticks[-1][0] >= int(1.5 * GiB)


@pytest.mark.parametrize("days", [1, 7, 30, 90])
def test_it_puts_few_time_ticks_on_round_times(days):
    ticks = time_ticks(START + timedelta(minutes=7), START + timedelta(days=days, minutes=7))

    assert 2 <= len(ticks) <= 7
    for tick, label in ticks:
        assert tick.minute == 0 and tick.second == 0
        if days > 1:
            assert tick.hour == 0
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", label)


# --- Ages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-5), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=5), "5 min ago"),
        (timedelta(hours=3, minutes=59), "3 h ago"),
        (timedelta(hours=47), "47 h ago"),
        (timedelta(days=3, hours=5), "3 d ago"),
    ],
)
def test_it_says_ages_in_one_unit(delta, text):
    assert age_text(delta) == text
