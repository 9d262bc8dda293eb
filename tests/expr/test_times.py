"""Go reference-time layouts, durations and the Go spellings of numbers."""

from __future__ import annotations

import math

import pytest

from engine.errors import ExprError
from engine.expr import Duration, Time
from engine.expr.encoding import go_float, go_sprint, json_float, to_json
from engine.expr.times import format_duration, format_time, in_location, parse_duration, parse_time

# 2006-01-02T15:04:05.123456789Z, Go's reference time with nanoseconds, shown in UTC.
REF = Time(1136214245 * 1_000_000_000 + 123456789)

LAYOUTS = [
    ("2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05Z"),
    ("2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.123456789Z"),
    ("2006-01-02T15:04:05.000Z", "2006-01-02T15:04:05.123Z"),
    ("2006", "2006"),
    ("06 1 2 3 4 5", "06 1 2 3 4 5"),
    ("Jan January Mon Monday", "Jan January Mon Monday"),
    ("_2 __2 002", " 2   2 002"),
    ("3:04PM pm", "3:04PM pm"),
    ("15h04m05s", "15h04m05s"),
    ("MST -0700 -07:00 -07 Z0700", "UTC +0000 +00:00 +00 Z"),
    ("2006_2006", "2006_2006"),
    ("_2006", "_2006"),
    ("Mon, 02 Jan 2006 15:04:05 MST", "Mon, 02 Jan 2006 15:04:05 UTC"),
    ("05.9", "05.1"),
    ("05,000", "05,123"),
    ("no layout chars here", "no layout chars here"),
]


@pytest.mark.parametrize(("layout", "expected"), LAYOUTS)
def test_go_layouts_format_the_reference_time(layout: str, expected: str) -> None:
    assert format_time(REF, layout) == expected


def test_fixed_offset_without_zone_name_prints_numeric_zone() -> None:
    t = parse_time("2006-01-02T15:04:05Z07:00", "2024-03-04T05:06:07+02:00")
    assert t.offset == 7200
    assert format_time(t, "15:04 MST Z07:00") == "05:06 +0200 +02:00"
    assert format_time(t.utc(), "15:04 MST") == "03:06 UTC"


def test_named_zones_come_from_the_tz_database() -> None:
    t = in_location(Time.from_epoch(0), "America/New_York")
    assert format_time(t, "2006-01-02 15:04 MST") == "1969-12-31 19:00 EST"
    assert in_location(Time.from_epoch(0), "Not/AZone").zone == "UTC"


@pytest.mark.parametrize(
    ("layout", "text", "unix"),
    [
        ("2006-01-02T15:04:05Z07:00", "2024-01-02T03:04:05Z", 1704164645),
        ("2006-01-02T15:04:05Z07:00", "2024-01-02T03:04:05.5-01:00", 1704168245),
        ("2006-01-02", "2024-02-29", 1709164800),
        ("2006-01-02 15:04:05", "2024-01-02 03:04:05", 1704164645),
        ("02 Jan 06 15:04 MST", "02 Jan 24 03:04 UTC", 1704164640),
        ("Mon Jan _2 15:04:05 2006", "Tue Jan  2 03:04:05 2024", 1704164645),
        ("3:04PM", "12:30AM", -62167217400),
        ("January 2, 2006", "march 3, 2024", 1709424000),
    ],
)
def test_go_layouts_parse(layout: str, text: str, unix: int) -> None:
    assert parse_time(layout, text).unix() == unix


@pytest.mark.parametrize(
    ("layout", "text"),
    [
        ("2006-01-02", "2024-02-30"),
        ("2006-01-02", "2024-1-2"),
        ("2006-01-02", "2024-01-02 extra"),
        ("15:04", "25:00"),
        ("2006-01-02T15:04:05Z07:00", "2024-01-02T03:04:05"),
    ],
)
def test_bad_times_do_not_parse(layout: str, text: str) -> None:
    with pytest.raises(ExprError, match="cannot parse"):
        parse_time(layout, text)


@pytest.mark.parametrize(
    ("text", "nanos", "shown"),
    [
        ("0", 0, "0s"),
        ("1h", 3_600_000_000_000, "1h0m0s"),
        ("1h30m", 5_400_000_000_000, "1h30m0s"),
        ("90s", 90_000_000_000, "1m30s"),
        ("1.5s", 1_500_000_000, "1.5s"),
        ("-2m", -120_000_000_000, "-2m0s"),
        ("300ms", 300_000_000, "300ms"),
        ("1.5us", 1_500, "1.5µs"),
        ("2µs", 2_000, "2µs"),
        ("42ns", 42, "42ns"),
        ("1h1ns", 3_600_000_000_001, "1h0m0.000000001s"),
    ],
)
def test_durations_parse_and_print_like_go(text: str, nanos: int, shown: str) -> None:
    d = parse_duration(text)
    assert d == Duration(nanos)
    assert format_duration(nanos) == shown
    assert str(d) == shown


@pytest.mark.parametrize("text", ["", "1", "h", "1x", ".h", "--1s", "9999999999999h"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ExprError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "sprint", "json"),
    [
        (1.0, "1", "1"),
        (1.5, "1.5", "1.5"),
        (-0.25, "-0.25", "-0.25"),
        (100000.0, "100000", "100000"),
        (1e6, "1e+06", "1000000"),
        (123456789.0, "1.23456789e+08", "123456789"),
        (1e20, "1e+20", "100000000000000000000"),
        (1e21, "1e+21", "1e+21"),
        (1e-4, "0.0001", "0.0001"),
        (1e-5, "1e-05", "0.00001"),
        (1e-7, "1e-07", "1e-7"),
        (0.1 + 0.2, "0.30000000000000004", "0.30000000000000004"),
    ],
)
def test_floats_are_spelled_like_go(value: float, sprint: str, json: str) -> None:
    assert go_float(value) == sprint
    assert json_float(value) == json


def test_special_floats() -> None:
    assert go_float(math.inf) == "+Inf"
    assert go_float(-math.inf) == "-Inf"
    assert go_float(math.nan) == "NaN"
    with pytest.raises(ExprError, match="unsupported value"):
        json_float(math.nan)


def test_go_sprint_of_containers() -> None:
    assert go_sprint({"b": [1, "x"], "a": None}) == "map[a:<nil> b:[1 x]]"
    assert go_sprint(True) == "true"
    assert go_sprint(Duration(1_500_000_000)) == "1.5s"
    assert go_sprint(Time.from_epoch(0)) == "1970-01-01 00:00:00 +0000 UTC"


def test_json_is_compact_sorted_and_html_safe() -> None:
    assert (
        to_json({"z": 1, "a": {"c": [True, None], "b": "<&>"}})
        == '{"a":{"b":"\\u003c\\u0026\\u003e","c":[true,null]},"z":1}'
    )
    assert to_json("é\n\u2028") == '"é\\n\\u2028"'
    assert to_json(Time.from_epoch(1.5)) == '"1970-01-01T00:00:01.5Z"'
    assert to_json(Duration(5)) == "5"


def test_json_refuses_values_that_are_not_data() -> None:
    with pytest.raises(ExprError, match="unsupported type"):
        to_json({"a": object()})


def test_epoch_seconds_must_be_numbers() -> None:
    with pytest.raises(ExprError):
        Time.from_epoch("1")  # type: ignore[arg-type]
    with pytest.raises(ExprError):
        Time.from_epoch(math.nan)
