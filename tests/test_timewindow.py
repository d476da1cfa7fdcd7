from datetime import UTC, datetime

import pytest
from django.http import QueryDict

from backups.timewindow import absolute_query, format_bound, parse_relative, parse_time_bound

NOW = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "upper", "expected"),
    [
        ("2026-11-01", False, datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01", True, datetime(2026, 11, 2, tzinfo=UTC)),
        ("2026-11-01T08:00:00Z", False, datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01T08:00:00+08:00", False, datetime(2026, 11, 1, 0, tzinfo=UTC)),
        ("2026-11-01 08:00", False, datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("24h", False, datetime(2026, 11, 25, 12, 30, tzinfo=UTC)),
        ("7d", True, datetime(2026, 11, 19, 12, 30, tzinfo=UTC)),
    ],
)
def test_it_parses_dates_datetimes_and_presets(raw, upper, expected):
    assert parse_time_bound(raw, now=NOW, upper=upper) == expected


@pytest.mark.parametrize(
    "raw", ["", "yesterday", "2026-13-01", "01/11/2026", "0h", "99999d", "2026-11-01T25:00"]
)
def test_it_refuses_anything_else_with_a_message(raw):
    with pytest.raises(ValueError) as caught:
        parse_time_bound(raw, now=NOW)
    assert str(caught.value)


def test_presets_are_bounded():
    assert parse_relative("24h") is not None
    assert parse_relative("100000h") is None
    assert parse_relative("-1d") is None


def test_a_permalink_replaces_presets_with_absolute_utc_times():
    params = QueryDict("status=failed&status=expired&created_after=24h&created_before=2026-11-20&page=2")
    absolute = absolute_query(params, now=NOW)
    assert absolute["created_after"] == "2026-11-25T12:30:00Z"
    assert absolute["created_before"] == "2026-11-20"
    assert absolute.getlist("status") == ["failed", "expired"]
    assert absolute["page"] == "2"
    assert params["created_after"] == "24h"


def test_format_bound_is_utc_without_microseconds():
    assert format_bound(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
