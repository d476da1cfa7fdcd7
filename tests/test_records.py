"""Parsing API JSON: every documented quirk is tolerated, nothing raises on a field."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backups.dcs.records import (
    RecordParseError,
    as_api_time,
    as_bool,
    as_datetime,
    as_progress,
    parse_backup_record,
    parse_instance,
)

# The v2 documentation's example record, verbatim (dcs-api.md §1, seed page).
DOC_EXAMPLE = {
    "period": {},
    "backup_type": "manual",
    "created_at": "2019-05-10T08:31:16.166Z",
    "remark": "001",
    "is_support_restore": "TRUE",
    "backup_id": "4631832a-14c6-45b0-a0b3-3abd8f591ad1",
    "backup_name": "backup_20190510163116",
    "instance_id": "5560df16-cebf-4473-95c4-d1b573c16e79",
    "size": 880232,
    "updated_at": "2019-05-10T08:32:30.546Z",
    "progress": "100.00",
    "error_code": {},
    "status": "succeed",
    "execution_at": "2019-05-11T08:31:16.166Z",
    "backup_format": "aof",
}


def test_it_parses_the_documented_example():
    record = parse_backup_record(DOC_EXAMPLE)
    assert record.backup_id == "4631832a-14c6-45b0-a0b3-3abd8f591ad1"
    assert record.period == ""
    assert record.error_code == ""
    assert record.size == 880232
    assert record.progress == Decimal("100.00")
    assert record.is_support_restore is True
    assert record.created_at == datetime(2019, 5, 10, 8, 31, 16, 166000, tzinfo=UTC)
    assert record.status == "succeed"
    assert record.backup_format == "aof"
    assert record.raw is DOC_EXAMPLE


def test_it_accepts_null_upper_case_and_missing_optional_fields():
    raw = {**DOC_EXAMPLE, "period": None, "error_code": None, "backup_format": "AOF"}
    del raw["execution_at"]
    record = parse_backup_record(raw)
    assert (record.period, record.error_code, record.backup_format) == ("", "", "aof")
    assert record.execution_at is None
    del raw["backup_format"]
    assert parse_backup_record(raw).backup_format == ""


def test_it_accepts_numbers_and_booleans_where_strings_are_documented():
    raw = {**DOC_EXAMPLE, "progress": 37.5, "is_support_restore": False, "size": "1024", "remark": 7}
    record = parse_backup_record(raw)
    assert record.progress == Decimal("37.50")
    assert record.is_support_restore is False
    assert record.size == 1024
    assert record.remark == "7"


def test_it_keeps_an_enum_value_the_api_adds_later():
    record = parse_backup_record({**DOC_EXAMPLE, "status": "Archiving", "backup_type": "scheduled"})
    assert record.status == "archiving"
    assert record.backup_type == "scheduled"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100.00", Decimal("100.00")),
        ("250", Decimal("100.00")),
        ("-3", Decimal("0.00")),
        ("NaN", None),
        ("abc", None),
        ("", None),
        ({}, None),
        (None, None),
        ("42%", Decimal("42.00")),
    ],
)
def test_it_bounds_progress_to_0_100(value, expected):
    assert as_progress(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TRUE", True), ("FALSE", False), ("true", True), (True, True), (0, False), ("maybe", None), ({}, None)],
)
def test_it_reads_restorable_flags(value, expected):
    assert as_bool(value) is expected


@pytest.mark.parametrize(
    "value",
    ["2019-05-10T08:31:16Z", "2019-05-10T08:31:16.166Z", "2019-05-10 08:31:16", "2019-05-10T16:31:16+08:00"],
)
def test_it_reads_timestamps_as_aware_utc(value):
    parsed = as_datetime(value)
    assert parsed.tzinfo is not None
    assert parsed.astimezone(UTC).replace(microsecond=0) == datetime(2019, 5, 10, 8, 31, 16, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "2019-13-40T00:00:00Z", {}, "", True, "20190510083116"])
def test_it_turns_garbage_timestamps_into_none(value):
    assert as_datetime(value) is None


def test_it_refuses_a_record_without_identity():
    with pytest.raises(RecordParseError):
        parse_backup_record({**DOC_EXAMPLE, "backup_id": None})
    with pytest.raises(RecordParseError):
        parse_backup_record(["not", "an", "object"])


def test_it_refuses_an_oversized_or_negative_size():
    assert parse_backup_record({**DOC_EXAMPLE, "size": 2**64}).size is None
    assert parse_backup_record({**DOC_EXAMPLE, "size": -1}).size is None


def test_it_formats_query_times_in_utc():
    from zoneinfo import ZoneInfo

    shanghai = datetime(2017, 7, 19, 7, 59, 59, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert as_api_time(shanghai) == "20170718235959"
    with pytest.raises(ValueError):
        as_api_time(datetime(2017, 7, 18))


def test_it_parses_the_documented_instance_type_drift():
    instance = parse_instance(
        {
            "instance_id": "3c49d2d5-0e4d-4e4e-9f4a-0d5d8e8d0a11",
            "name": "dcs-demo",
            "capacity": 0,
            "capacity_minor": ".125",
            "no_password_access": True,
            "enterprise_project_id": 0,
            "tags": [{"key": 1, "value": "v"}, {"key": "", "value": "x"}, "junk"],
            "port": "6379",
            "az_codes": ["cn-north-4a"],
            "status": "running",
            "publicip_id": {},
            "created_at": "2017-03-31T12:24:46.297Z",
        }
    )
    assert instance.capacity == 0
    assert instance.capacity_minor == ".125"
    assert instance.tags == {"1": "v"}
    assert instance.port == 6379
    assert instance.status == "RUNNING"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(DOC_EXAMPLE)), _json))
def test_it_never_raises_on_any_field_value(overrides):
    raw = {**DOC_EXAMPLE, **overrides}
    try:
        record = parse_backup_record(raw)
    except RecordParseError:
        return  # only a missing identity may refuse a record
    assert record.progress is None or Decimal(0) <= record.progress <= Decimal(100)
    assert record.size is None or 0 <= record.size < 2**63
