"""Cron schedules in engine.expr: the next fire time the events core asks for (calendar sources,
``conditionsReset.byTime``), and the CronWorkflow planner still seeing the very same schedule type."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine.errors import ExprError, SpecError
from engine.expr import CronSchedule, next_fire_time
from engine.expr.cron import load_zone, rfc3339
from engine.workflows import cron as workflow_cron


def at(text: str, zone: str = "UTC") -> float:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.timestamp()


@pytest.mark.parametrize(
    ("schedule", "timezone", "after", "expected"),
    [
        ("*/15 * * * *", "", "2024-03-01T10:07:00", "2024-03-01T10:15:00Z"),
        ("*/15 * * * *", "", "2024-03-01T10:15:00", "2024-03-01T10:30:00Z"),
        ("0 9 * * MON-FRI", "", "2024-03-01T09:00:00", "2024-03-04T09:00:00Z"),
        ("0 9 * * *", "Europe/Paris", "2024-03-01T09:00:00", "2024-03-02T09:00:00+01:00"),
        (
            "CRON_TZ=America/New_York 0 9 * * *",
            "Europe/Paris",
            "2024-03-01T00:00:00",
            "2024-03-01T09:00:00-05:00",
        ),
        ("@hourly", "", "2024-03-01T10:59:59", "2024-03-01T11:00:00Z"),
        ("@every 90m", "", "1970-01-01T00:00:00", "1970-01-01T01:30:00Z"),
        ("0 0 29 2 *", "", "2024-03-01T00:00:00", "2028-02-29T00:00:00Z"),
        # 02:30 does not exist in Paris on 2024-03-31 (spring forward): the next one is a day later.
        ("30 2 * * *", "Europe/Paris", "2024-03-30T03:00:00+01:00", "2024-04-01T02:30:00+02:00"),
    ],
)
def test_next_fire_time_is_strictly_after_the_given_instant(
    schedule: str, timezone: str, after: str, expected: str
) -> None:
    fired = next_fire_time(schedule, at(after, _zone_of(schedule, timezone)), timezone=timezone)
    assert rfc3339(fired, ZoneInfo(_zone_of(schedule, timezone))) == expected


def _zone_of(schedule: str, timezone: str) -> str:
    """The zone the schedule is read in, to write the expected time in."""
    if schedule.startswith("CRON_TZ="):
        return schedule.split(maxsplit=1)[0].partition("=")[2]
    return timezone or "UTC"


def test_parsed_and_text_schedules_agree() -> None:
    parsed = CronSchedule.parse("0 */6 * * *")
    now = at("2024-05-05T05:05:05")
    assert next_fire_time(parsed, now) == next_fire_time("0 */6 * * *", now) == at("2024-05-05T06:00:00")
    assert next_fire_time(parsed, now) == parsed.next_after(now, ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("schedule", "timezone", "message"),
    [
        ("61 * * * *", "", "minute value 61"),
        ("* * *", "", "expected 5 fields"),
        ("0 0 30 2 *", "", "never fires"),
        ("* * * * *", "Mars/Olympus", "unknown time zone"),
        ("CRON_TZ=Nowhere/Land * * * * *", "", "unknown time zone"),
    ],
)
def test_invalid_schedule_or_zone_is_a_spec_error(schedule: str, timezone: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        next_fire_time(schedule, 0.0, timezone=timezone)


def test_workflow_cron_uses_the_same_schedule_machinery() -> None:
    assert workflow_cron.CronSchedule is CronSchedule
    assert workflow_cron.rfc3339 is rfc3339


def test_load_zone_reports_an_unknown_zone_as_an_expr_error() -> None:
    assert load_zone("") == load_zone("UTC") == ZoneInfo("UTC")
    assert load_zone("Asia/Tokyo") == ZoneInfo("Asia/Tokyo")
    with pytest.raises(ExprError, match="unknown time zone 'Mars/Olympus'"):
        load_zone("Mars/Olympus")
