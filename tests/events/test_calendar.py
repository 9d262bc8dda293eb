"""The calendar event source: the pure planner (engine.events.calendar) and its runner
(engine.events.sources.calendar), driven by a fake clock and sleep so that hours pass in milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.errors import SpecError, StoreError
from engine.events import cloudevent
from engine.events.calendar import (
    MAX_CATCHUP_FIRES,
    CompiledCalendar,
    accepts,
    compile_calendar,
    due,
    event_for,
    event_id,
    go_time_string,
    next_due,
    next_fire,
    parse_exclusion_date,
)
from engine.events.model import Event
from engine.events.sources.calendar import CalendarSource, cursor_key
from engine.expr.cron import load_zone, parse_rfc3339, rfc3339
from engine.runtime.local.eventbus import LocalEventBus, events_path
from engine.spec.events import CalendarEventSource, EventSource
from engine.spec.loader import load_text

NS = "team-a"


def at(text: str) -> float:
    return parse_rfc3339(text)


def iso(times: list[float]) -> list[str]:
    return [rfc3339(t) for t in times]


def calendar(**fields: Any) -> CompiledCalendar:
    return compile_calendar(CalendarEventSource.parse(fields))


# ------------------------------------------------------------------------------------------- planner


@pytest.mark.parametrize(
    ("last", "now", "catchup", "expected"),
    [
        ("2026-01-05T10:00:00Z", "2026-01-05T10:00:59Z", False, []),
        ("2026-01-05T10:00:00Z", "2026-01-05T10:01:00Z", False, ["2026-01-05T10:01:00Z"]),
        ("2026-01-05T10:00:00Z", "2026-01-05T10:03:30Z", False, ["2026-01-05T10:03:00Z"]),
        (
            "2026-01-05T10:00:00Z",
            "2026-01-05T10:03:30Z",
            True,
            ["2026-01-05T10:01:00Z", "2026-01-05T10:02:00Z", "2026-01-05T10:03:00Z"],
        ),
    ],
)
def test_every_minute_is_due_after_the_last_fire_and_a_stall_collapses_without_catchup(
    last: str, now: str, catchup: bool, expected: list[str]
) -> None:
    c = calendar(schedule="* * * * *")
    started = at("2026-01-05T09:59:10Z")
    got = due(c, last_fired=at(last), started_at=started, now=at(now), catchup=catchup, max_catchup=None)
    assert iso(got) == expected


def test_first_fire_of_a_fresh_calendar_follows_its_start() -> None:
    c = calendar(schedule="*/15 * * * *")
    start = at("2026-01-05T10:07:12Z")
    assert due(c, last_fired=None, started_at=start, now=start, catchup=True, max_catchup=None) == []
    wake = next_due(c, last_fired=None, started_at=start, now=start, catchup=True)
    assert rfc3339(wake) == "2026-01-05T10:15:00Z"
    assert iso(due(c, last_fired=None, started_at=start, now=wake, catchup=True, max_catchup=None)) == [
        "2026-01-05T10:15:00Z"
    ]


def test_schedule_takes_precedence_over_interval_and_is_read_in_utc_by_default() -> None:
    c = calendar(schedule="0 9 * * *", interval="10s")
    assert c.interval is None and c.schedule is not None
    assert rfc3339(next_fire(c, at("2026-01-05T00:00:00Z"))) == "2026-01-05T09:00:00Z"


def test_daily_schedule_follows_new_york_wall_clock_across_daylight_saving_changes() -> None:
    c = calendar(schedule="0 9 * * *", timezone="America/New_York")
    fires = [next_fire(c, at("2026-10-30T00:00:00Z"))]
    for _ in range(2):
        fires.append(next_fire(c, fires[-1]))
    assert iso(fires) == ["2026-10-30T13:00:00Z", "2026-10-31T13:00:00Z", "2026-11-01T14:00:00Z"]
    assert [go_time_string(t, c.zone) for t in fires[1:]] == [
        "2026-10-31 09:00:00 -0400 EDT",
        "2026-11-01 09:00:00 -0500 EST",
    ]


def test_wall_clock_time_skipped_by_spring_forward_does_not_fire_and_a_repeated_one_fires_twice() -> None:
    spring = calendar(schedule="30 2 * * *", timezone="America/New_York")
    first = next_fire(spring, at("2026-03-07T00:00:00Z"))
    assert iso([first, next_fire(spring, first)]) == ["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"]

    fall = calendar(schedule="30 1 * * *", timezone="America/New_York")
    got = due(
        fall,
        last_fired=at("2026-10-31T12:00:00Z"),
        started_at=at("2026-11-01T12:00:00Z"),
        now=at("2026-11-01T12:00:00Z"),
        catchup=True,
        max_catchup=None,
    )
    assert iso(got) == ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"]


def test_interval_is_a_constant_delay_from_the_start_and_then_from_the_last_fire() -> None:
    c = calendar(interval="10s")
    start = 1_000_000.5
    assert due(c, last_fired=None, started_at=start, now=1_000_009.9, catchup=False, max_catchup=None) == []
    assert due(c, last_fired=None, started_at=start, now=1_000_010.0, catchup=False, max_catchup=None) == [
        1_000_010.0
    ]
    assert next_fire(c, start) == 1_000_010.0
    assert next_fire(c, 1_000_010.0) == 1_000_020.0
    last = 1_000_010.0
    assert due(c, last_fired=last, started_at=start, now=1_000_045.0, catchup=True, max_catchup=None) == [
        1_000_020.0,
        1_000_030.0,
        1_000_040.0,
    ]
    assert due(c, last_fired=last, started_at=start, now=1_000_045.0, catchup=False, max_catchup=None) == [
        1_000_040.0
    ]


def test_interval_restarted_without_catchup_starts_afresh_from_the_new_start() -> None:
    c = calendar(interval="10s")
    restart = 2_000_000.7
    kwargs: dict[str, Any] = {"last_fired": 1_000_010.0, "started_at": restart, "catchup": False}
    assert due(c, now=restart + 5, max_catchup=None, **kwargs) == []
    assert next_due(c, now=restart + 5, **kwargs) == 2_000_010.0
    assert due(c, now=2_000_010.2, max_catchup=None, **kwargs) == [2_000_010.0]


@pytest.mark.parametrize(
    ("interval", "seconds"), [("1s", 1.0), ("90s", 90.0), ("1m30s", 90.0), ("2.5s", 2.0)]
)
def test_interval_is_kept_in_whole_seconds(interval: str, seconds: float) -> None:
    assert calendar(interval=interval).interval == seconds


@pytest.mark.parametrize(
    ("text", "dates"),
    [
        ("EXDATE:20190102T150405Z", [date(2019, 1, 2)]),
        ("EXDATE:20190102T150405Z,20190602T160210Z", [date(2019, 1, 2), date(2019, 6, 2)]),
        ("EXDATE;TZID=Europe/Paris:20190102T000000", [date(2019, 1, 2)]),
        ("EXDATE;VALUE=DATE:20190102", [date(2019, 1, 2)]),
        ("2019-01-02T23:30:00-05:00", [date(2019, 1, 2)]),
        ("2019-01-02T15:04:05Z", [date(2019, 1, 2)]),
        ("2019-01-02", [date(2019, 1, 2)]),
    ],
)
def test_exclusion_dates_are_read_as_the_date_written(text: str, dates: list[date]) -> None:
    assert parse_exclusion_date(text) == dates


@pytest.mark.parametrize(
    "text",
    ["20190102", "EXDATE:2019-01-02", "EXDATE:20190230T000000Z", "EXDATES:20190102T000000Z", "soon", ""],
)
def test_exclusion_dates_in_other_forms_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="exclusion date"):
        parse_exclusion_date(text)


def test_exclusion_skips_every_fire_on_that_date_in_the_schedule_zone() -> None:
    # Jan 2 in New York runs from 05:00Z on Jan 2 to 05:00Z on Jan 3.
    c = calendar(
        schedule="0 * * * *", timezone="America/New_York", exclusionDates=["EXDATE:20260102T000000Z"]
    )
    got = due(
        c,
        last_fired=at("2026-01-02T03:30:00Z"),
        started_at=at("2026-01-03T06:30:00Z"),
        now=at("2026-01-03T06:30:00Z"),
        catchup=True,
        max_catchup=None,
    )
    assert iso(got) == ["2026-01-02T04:00:00Z", "2026-01-03T05:00:00Z", "2026-01-03T06:00:00Z"]
    assert rfc3339(next_fire(c, at("2026-01-02T04:00:00Z"))) == "2026-01-03T05:00:00Z"


def test_interval_fires_on_an_excluded_date_are_skipped_and_the_delay_grid_is_kept() -> None:
    c = calendar(interval="7h", exclusionDates=["2026-01-02"])
    start = at("2026-01-01T20:00:00Z")
    # 03:00Z and 10:00Z and 17:00Z on Jan 2 are skipped; the next multiple of 7h falls on Jan 3.
    assert rfc3339(next_fire(c, start)) == "2026-01-03T00:00:00Z"
    got = due(
        c, last_fired=start, started_at=start, now=at("2026-01-03T08:00:00Z"), catchup=True, max_catchup=None
    )
    assert iso(got) == ["2026-01-03T00:00:00Z", "2026-01-03T07:00:00Z"]


def test_catchup_is_bounded_by_max_duration() -> None:
    c = calendar(schedule="* * * * *")
    now = at("2026-01-01T10:00:30Z")
    got = due(
        c, last_fired=at("2026-01-01T00:00:00Z"), started_at=now, now=now, catchup=True, max_catchup=300
    )
    assert iso(got) == [f"2026-01-01T{hm}:00Z" for hm in ("09:56", "09:57", "09:58", "09:59", "10:00")]


def test_catchup_bound_never_drops_a_fire_that_fell_due_while_running() -> None:
    c = calendar(schedule="* * * * *")
    started = at("2026-01-01T09:00:00Z")
    got = due(
        c,
        last_fired=at("2026-01-01T10:00:00Z"),
        started_at=started,
        now=at("2026-01-01T10:01:30Z"),
        catchup=True,
        max_catchup=5,
    )
    assert iso(got) == ["2026-01-01T10:01:00Z"]


def test_catchup_keeps_only_the_latest_fires_beyond_the_cap() -> None:
    c = calendar(schedule="* * * * *")
    now = at("2026-01-01T00:00:30Z")
    got = due(
        c, last_fired=at("2025-01-01T00:00:00Z"), started_at=now, now=now, catchup=True, max_catchup=None
    )
    assert len(got) == MAX_CATCHUP_FIRES
    assert rfc3339(got[-1]) == "2026-01-01T00:00:00Z"
    assert all(b - a == 60 for a, b in itertools.pairwise(got))


def test_restart_without_catchup_enabled_emits_nothing_missed() -> None:
    c = calendar(
        schedule="* * * * *", persistence={"configMap": {"name": "cm"}, "catchup": {"enabled": False}}
    )
    assert c.catchup is False
    start = at("2026-01-01T10:00:30Z")
    last = at("2026-01-01T09:00:00Z")
    assert due(c, last_fired=last, started_at=start, now=start, catchup=c.catchup, max_catchup=None) == []
    assert iso(
        due(c, last_fired=last, started_at=start, now=start + 30, catchup=False, max_catchup=None)
    ) == ["2026-01-01T10:01:00Z"]


def test_persistence_settings_are_compiled() -> None:
    c = calendar(schedule="* * * * *", persistence={"catchup": {"enabled": True, "maxDuration": "5m"}})
    assert (c.catchup, c.max_catchup) == (True, 300.0)


def test_next_due_moves_past_fires_dropped_by_the_catchup_bound() -> None:
    # Nothing hourly lies within the last 5 minutes: the next wake-up is the next hour, not a busy loop.
    c = calendar(schedule="0 * * * *")
    now = at("2026-01-01T12:30:00Z")
    kwargs: dict[str, Any] = {"last_fired": at("2026-01-01T09:00:00Z"), "started_at": now, "catchup": True}
    assert due(c, now=now, max_catchup=300, **kwargs) == []
    assert rfc3339(next_due(c, now=now, **kwargs)) == "2026-01-01T13:00:00Z"


def test_cursor_in_the_future_holds_fires_back_until_it_is_passed() -> None:
    c = calendar(schedule="* * * * *")
    now = at("2026-01-01T10:00:30Z")
    kwargs: dict[str, Any] = {"last_fired": at("2026-01-01T10:05:00Z"), "started_at": now, "catchup": True}
    assert due(c, now=now, max_catchup=None, **kwargs) == []
    assert rfc3339(next_due(c, now=now, **kwargs)) == "2026-01-01T10:06:00Z"


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"schedule": "@hourly"}, "spec.calendar.e.schedule", "descriptor '@hourly'"),
        ({"schedule": "CRON_TZ=UTC @every 1h"}, "spec.calendar.e.schedule", "descriptor '@every'"),
        ({"schedule": "0 * * * * *"}, "spec.calendar.e.schedule", "expected 5 fields"),
        ({"interval": "500ms"}, "spec.calendar.e.interval", "shorter than one second"),
        ({"interval": "10"}, "spec.calendar.e.interval", "expected a number and a unit"),
        ({"interval": "0s"}, "spec.calendar.e.interval", "shorter than one second"),
        (
            {"schedule": "* * * * *", "timezone": "Mars/Olympus"},
            "spec.calendar.e.timezone",
            "unknown time zone",
        ),
        ({"schedule": "* * * * *", "exclusionDates": ["soon"]}, "spec.calendar.e.exclusionDates[0]", "soon"),
        (
            {"schedule": "* * * * *", "persistence": {"catchup": {"enabled": True, "maxDuration": "ever"}}},
            "spec.calendar.e.persistence.catchup.maxDuration",
            "invalid duration",
        ),
        ({"schedule": "* * * * *", "filter": {"expression": "1 +"}}, "spec.calendar.e.filter.expression", ""),
        ({}, "spec.calendar.e", "needs a schedule or an interval"),
    ],
)
def test_invalid_calendar_fields_are_reported_at_their_path(
    fields: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        compile_calendar(CalendarEventSource.parse(fields), path="spec.calendar.e")
    assert [p.path for p in info.value.problems] == [path]
    assert message in info.value.problems[0].message


def test_cron_tz_prefix_sets_the_zone_of_the_schedule_and_its_event_times() -> None:
    c = calendar(schedule="CRON_TZ=Asia/Tokyo 0 9 * * *")
    fire = next_fire(c, at("2026-01-05T00:00:00Z"))
    assert rfc3339(fire) == "2026-01-06T00:00:00Z"
    assert go_time_string(fire, c.zone).endswith("09:00:00 +0900 JST")


@pytest.mark.parametrize(
    ("t", "zone", "text"),
    [
        (0.0, "UTC", "1970-01-01 00:00:00 +0000 UTC"),
        (1.25, "UTC", "1970-01-01 00:00:01.25 +0000 UTC"),
        (at("2026-12-07T10:00:00Z"), "Asia/Kolkata", "2026-12-07 15:30:00 +0530 IST"),
        (at("2026-12-07T10:00:00Z"), "America/Sao_Paulo", "2026-12-07 07:00:00 -0300 -03"),
    ],
)
def test_event_time_is_written_as_go_writes_a_time(t: float, zone: str, text: str) -> None:
    assert go_time_string(t, load_zone(zone)) == text


def test_event_ids_are_derived_from_namespace_source_event_and_fire_time() -> None:
    base = ("ns", "calendar", "every-minute", at("2026-01-01T10:00:00Z"))
    first = event_id(*base)
    assert first == event_id(*base)
    assert len(first) == 32 and int(first, 16) >= 0
    variants = {
        event_id("other", *base[1:]),
        event_id(base[0], "other", *base[2:]),
        event_id(*base[:2], "other", base[3]),
        event_id(*base[:3], base[3] + 60),
    }
    assert first not in variants and len(variants) == 4


def test_event_carries_the_fire_time_metadata_and_calendar_attributes() -> None:
    fire = at("2026-12-07T10:00:00Z")
    event = event_for(
        namespace=NS,
        source_name="calendar",
        event_name="daily",
        fire_time=fire,
        metadata={"hello": "world"},
        zone=load_zone("UTC"),
    )
    assert (event.type, event.source, event.subject) == ("calendar", "calendar", "daily")
    assert event.time == "2026-12-07T10:00:00.000000Z"
    assert event.id == event_id(NS, "calendar", "daily", fire)
    assert event.data == {"eventTime": "2026-12-07 10:00:00 +0000 UTC", "metadata": {"hello": "world"}}
    bare = event_for(
        namespace=NS, source_name="c", event_name="d", fire_time=fire, metadata={}, zone=load_zone("UTC")
    )
    assert bare.data == {"eventTime": "2026-12-07 10:00:00 +0000 UTC"}


def test_event_is_the_same_when_built_through_the_cloudevents_sdk() -> None:
    fire = at("2026-12-07T10:00:00Z")
    zone = load_zone("Europe/Paris")
    event = event_for(
        namespace=NS, source_name="cal", event_name="e", fire_time=fire, metadata={"a": "b"}, zone=zone
    )
    ce = cloudevent.build(
        id=event.id,
        source=event.source,
        type=event.type,
        subject=event.subject,
        time=datetime.fromtimestamp(fire, UTC),
        data=event.data,
    )
    assert cloudevent.to_bus(ce) == event.to_json()
    assert Event.from_json(cloudevent.to_bus(ce)) == event


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('metadata.team == "a"', True),
        ('metadata.team == "b"', False),
        ('eventTime contains "10:00:00"', True),
        ("1", False),
    ],
)
def test_filter_expression_reads_the_event_data(expression: str, expected: bool) -> None:
    c = calendar(schedule="* * * * *", metadata={"team": "a"}, filter={"expression": expression})
    event = event_for(
        namespace=NS,
        source_name="s",
        event_name="e",
        fire_time=at("2026-01-01T10:00:00Z"),
        metadata=c.metadata,
        zone=c.zone,
    )
    assert accepts(c, event.data) is expected


def test_corpus_calendar_examples_compile(events_corpus: Path) -> None:
    # The corpus file keeps most of its variants commented out; read them too.
    lines = (events_corpus / "event-sources" / "calendar.yaml").read_text(encoding="utf-8").splitlines()
    text = "\n".join(line[1:] if line.startswith("#") else line for line in lines)
    (doc,) = load_text(text, source="calendar.yaml")
    source = doc.obj
    assert isinstance(source, EventSource)
    compiled = {name: compile_calendar(cal, path=name) for name, cal in source.spec.calendar.items()}
    assert len(compiled) == 6
    assert compiled["example-with-interval"].interval == 10.0
    assert compiled["example-with-catchup"].catchup and compiled["example-with-catchup"].max_catchup == 300.0
    assert compiled["schedule-with-exclusion-dates"].excluded == {date(2019, 1, 2), date(2019, 6, 2)}
    assert str(compiled["schedule-in-specific-timezone"].zone) == "America/New_York"
    assert compiled["schedule-with-static-user-payload"].metadata == {"hello": "world"}


# -------------------------------------------------------------------------------------------- runner


class FakeTime:
    """A wall clock and a sleep that moves it.

    Time jumps to the earliest wake-up only once all ``sleepers`` tasks are asleep, so concurrent
    calendar events see one consistent clock. When the earliest wake-up is past ``until`` the clock
    stops there, ``reached`` is set and the sleepers stay asleep until the source is stopped.
    """

    def __init__(self, start: float, until: float, sleepers: int = 1) -> None:
        self.t = start
        self.until = until
        self.sleepers = sleepers
        self.reached = asyncio.Event()
        self.naps: list[float] = []
        self._pending: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((self.t + seconds, fut))
        self._advance()
        try:
            await fut
        finally:
            self._pending = [(w, f) for w, f in self._pending if f is not fut]

    def _advance(self) -> None:
        live = [(w, f) for w, f in self._pending if not f.done()]
        if len(live) < self.sleepers:
            return
        wake = min(w for w, _ in live)
        if wake >= self.until:
            self.t = max(self.t, self.until)
            self.reached.set()
            return
        self.t = max(self.t, wake)
        for w, f in live:
            if w <= self.t:
                f.set_result(None)


class MemoryBus:
    """Records publishes and keeps one copy per (namespace, source, id), as the bus does."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []
        self.stored: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.on_call: Callable[[dict[str, Any]], None] = lambda event: None

    async def publish(self, namespace: str, event: dict[str, Any]) -> int:
        self.calls.append(event)
        self.on_call(event)
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise StoreError("bus unavailable")
        self.stored.setdefault((namespace, event["source"], event["id"]), event)
        return list(self.stored).index((namespace, event["source"], event["id"])) + 1

    def times(self) -> list[str]:
        return [e["time"] for e in self.stored.values()]


class MemoryCursors:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        value = self.values.get(key)
        return dict(value) if value is not None else None

    async def put(self, key: str, value: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        self.values[key] = dict(value)


class BusCursors:
    """Cursors kept in the local bus's key-value store, the way the local runtime keeps them."""

    def __init__(self, bus: LocalEventBus) -> None:
        self.bus = bus

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self.bus.kv_get("calendar", key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        await self.bus.kv_put("calendar", key, value)


def event_source(**events: dict[str, Any]) -> EventSource:
    return EventSource.parse(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "EventSource",
            "metadata": {"name": "cal"},
            "spec": {"calendar": events},
        }
    )


async def run_until(source: CalendarSource, clock: FakeTime) -> None:
    task = asyncio.create_task(source.run())
    reached = asyncio.create_task(clock.reached.wait())
    await asyncio.wait({task, reached}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    reached.cancel()
    if task.done():
        task.result()
    assert clock.reached.is_set(), "the source never went to sleep until the end of the test window"
    await asyncio.wait_for(source.stop(), 1)
    await task


def bus_time(t: float) -> str:
    return cloudevent.format_time(datetime.fromtimestamp(t, UTC))


def minutes(start: str, count: int) -> list[str]:
    """The bus ``time`` of ``count`` consecutive minutes from ``start``."""
    return [bus_time(at(start) + 60 * i) for i in range(count)]


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 10))


def test_restart_with_catchup_puts_every_missed_fire_on_the_bus_once(tmp_path: Path) -> None:
    spec = event_source(
        tick={"schedule": "* * * * *", "persistence": {"catchup": {"enabled": True, "maxDuration": "1h"}}}
    )

    async def main() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        cursors = BusCursors(bus)
        try:
            first = FakeTime(at("2026-01-05T10:00:30Z"), until=at("2026-01-05T10:05:30Z"))
            await run_until(
                CalendarSource(
                    NS, spec, publish=bus.publish, cursors=cursors, now=first.now, sleep=first.sleep
                ),
                first,
            )
            assert await cursors.get(cursor_key(NS, "cal", "tick")) == {
                "lastFired": at("2026-01-05T10:05:00Z")
            }
            # Down from 10:05:30 to 10:20:30.
            second = FakeTime(at("2026-01-05T10:20:30Z"), until=at("2026-01-05T10:22:30Z"))
            await run_until(
                CalendarSource(
                    NS, spec, publish=bus.publish, cursors=cursors, now=second.now, sleep=second.sleep
                ),
                second,
            )
            records = await bus.read(limit=1000)
        finally:
            await bus.close()
        assert [r.event["time"] for r in records] == minutes("2026-01-05T10:01:00Z", 22)
        assert len({r.event["id"] for r in records}) == 22
        assert records[0].event["data"] == {"eventTime": "2026-01-05 10:01:00 +0000 UTC"}
        assert {(r.event["type"], r.event["source"], r.event["subject"]) for r in records} == {
            ("calendar", "cal", "tick")
        }

    run(main)


def test_restart_without_catchup_resumes_the_schedule_from_the_restart() -> None:
    spec = event_source(tick={"schedule": "* * * * *"})

    async def main() -> None:
        bus, cursors = MemoryBus(), MemoryCursors()
        for start, until in (("10:00:30", "10:02:30"), ("10:20:30", "10:22:30")):
            clock = FakeTime(at(f"2026-01-05T{start}Z"), until=at(f"2026-01-05T{until}Z"))
            await run_until(
                CalendarSource(
                    NS, spec, publish=bus.publish, cursors=cursors, now=clock.now, sleep=clock.sleep
                ),
                clock,
            )
        assert bus.times() == minutes("2026-01-05T10:01:00Z", 2) + minutes("2026-01-05T10:21:00Z", 2)

    run(main)


class Crash(BaseException):
    """The process dies."""


def test_death_between_publishing_and_saving_the_cursor_still_puts_the_fire_on_the_bus_once(
    tmp_path: Path,
) -> None:
    spec = event_source(tick={"schedule": "* * * * *", "persistence": {"catchup": {"enabled": True}}})
    doomed = at("2026-01-05T10:03:00Z")

    async def main() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        cursors = BusCursors(bus)
        published: list[str] = []
        try:

            async def dying_publish(namespace: str, event: dict[str, Any]) -> int:
                seq = await bus.publish(namespace, event)
                published.append(event["time"])
                if event["time"] == bus_time(doomed) and published.count(event["time"]) == 1:
                    raise Crash
                return seq

            first = FakeTime(at("2026-01-05T10:00:30Z"), until=at("2026-01-05T10:30:00Z"))
            source = CalendarSource(
                NS, spec, publish=dying_publish, cursors=cursors, now=first.now, sleep=first.sleep
            )
            with pytest.raises(BaseExceptionGroup) as info:
                await source.run()
            assert info.group_contains(Crash)
            assert await cursors.get(cursor_key(NS, "cal", "tick")) == {
                "lastFired": at("2026-01-05T10:02:00Z")
            }

            second = FakeTime(at("2026-01-05T10:04:30Z"), until=at("2026-01-05T10:05:30Z"))
            await run_until(
                CalendarSource(
                    NS, spec, publish=dying_publish, cursors=cursors, now=second.now, sleep=second.sleep
                ),
                second,
            )
            records = await bus.read(limit=100)
        finally:
            await bus.close()
        assert published.count(minutes("2026-01-05T10:03:00Z", 1)[0]) == 2
        assert [r.event["time"] for r in records] == minutes("2026-01-05T10:01:00Z", 5)

    run(main)


def test_failed_publish_is_retried_with_backoff_and_does_not_move_the_cursor() -> None:
    spec = event_source(tick={"schedule": "* * * * *"})

    async def main() -> None:
        bus, cursors = MemoryBus(failures=3), MemoryCursors()
        key = cursor_key(NS, "cal", "tick")
        cursor_at_call: list[Any] = []
        bus.on_call = lambda event: cursor_at_call.append(cursors.values.get(key))
        clock = FakeTime(at("2026-01-05T10:00:59Z"), until=at("2026-01-05T10:02:30Z"))
        await run_until(
            CalendarSource(NS, spec, publish=bus.publish, cursors=cursors, now=clock.now, sleep=clock.sleep),
            clock,
        )
        assert len(bus.calls) == 5
        # Four attempts at 10:01 (three failures, one success), all before the cursor moved; then 10:02.
        assert [c["time"] for c in bus.calls[:4]] == minutes("2026-01-05T10:01:00Z", 1) * 4
        assert cursor_at_call[:4] == [None] * 4
        assert cursor_at_call[4] == {"lastFired": at("2026-01-05T10:01:00Z")}
        assert [round(n, 3) for n in clock.naps[1:4]] == [0.1, 0.2, 0.4]
        assert bus.times() == minutes("2026-01-05T10:01:00Z", 2)
        assert cursors.values[key] == {"lastFired": at("2026-01-05T10:02:00Z")}

    run(main)


def test_event_rejected_by_the_filter_is_not_published_but_moves_the_cursor() -> None:
    spec = event_source(
        tick={"schedule": "* * * * *", "filter": {"expression": 'eventTime contains ":02:00"'}}
    )

    async def main() -> None:
        bus, cursors = MemoryBus(), MemoryCursors()
        clock = FakeTime(at("2026-01-05T10:00:30Z"), until=at("2026-01-05T10:03:30Z"))
        await run_until(
            CalendarSource(NS, spec, publish=bus.publish, cursors=cursors, now=clock.now, sleep=clock.sleep),
            clock,
        )
        assert bus.times() == minutes("2026-01-05T10:02:00Z", 1)
        assert cursors.values[cursor_key(NS, "cal", "tick")] == {"lastFired": at("2026-01-05T10:03:00Z")}

    run(main)


def test_each_calendar_event_runs_on_its_own_schedule_and_cursor() -> None:
    spec = event_source(fast={"interval": "20s"}, hourly={"schedule": "0 * * * *", "metadata": {"k": "v"}})

    async def main() -> None:
        bus, cursors = MemoryBus(), MemoryCursors()
        clock = FakeTime(at("2026-01-05T09:59:30Z"), until=at("2026-01-05T10:00:45Z"), sleepers=2)
        await run_until(
            CalendarSource(NS, spec, publish=bus.publish, cursors=cursors, now=clock.now, sleep=clock.sleep),
            clock,
        )
        fast = [e["time"] for e in bus.stored.values() if e["subject"] == "fast"]
        hourly = [e for e in bus.stored.values() if e["subject"] == "hourly"]
        assert fast == [f"2026-01-05T{t}.000000Z" for t in ("09:59:50", "10:00:10", "10:00:30")]
        assert [e["data"] for e in hourly] == [
            {"eventTime": "2026-01-05 10:00:00 +0000 UTC", "metadata": {"k": "v"}}
        ]
        assert set(cursors.values) == {cursor_key(NS, "cal", "fast"), cursor_key(NS, "cal", "hourly")}

    run(main)


def test_stop_wakes_a_source_sleeping_until_a_distant_fire() -> None:
    spec = event_source(yearly={"schedule": "0 0 1 1 *"})

    async def main() -> None:
        source = CalendarSource(NS, spec, publish=MemoryBus().publish, cursors=MemoryCursors())
        task = asyncio.create_task(source.run())
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await asyncio.wait_for(source.stop(), 1)
        assert task.done() and time.monotonic() - began < 0.5
        task.result()

    run(main)


def test_invalid_calendar_event_is_refused_with_its_field_path() -> None:
    spec = event_source(good={"interval": "1m"}, bad={"schedule": "@daily"})
    with pytest.raises(SpecError) as info:
        CalendarSource(NS, spec, publish=MemoryBus().publish, cursors=MemoryCursors())
    assert [p.path for p in info.value.problems] == ["spec.calendar.bad.schedule"]
