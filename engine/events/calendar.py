"""The calendar event source's planner: which fire times are due, and the event each one becomes.

Pure: every function takes the instants it reasons about (epoch seconds); nothing here reads the clock,
sleeps or stores anything. The runner :mod:`engine.events.sources.calendar` calls :func:`compile_calendar`
once per calendar event, then :func:`due` and :func:`next_due` in a loop, :func:`event_for` and
:func:`accepts` for every fire time, and persists the last fire time as the event's cursor.

Schedules, as Argo reads them:

* ``schedule`` is a five-field cron (minute hour day-of-month month day-of-week) read in ``timezone``
  (UTC when unset, which is what Argo's "local time" is in a container); a ``CRON_TZ=`` prefix wins
  over ``timezone``. Descriptors (``@hourly``, ``@every 1h``) are refused, because Argo's calendar
  parser accepts five fields only; ``interval`` covers ``@every``. ``schedule`` wins over ``interval``.
* ``interval`` is a constant delay from the last fire, or from the start when nothing fired yet. As in
  Argo, the delay is counted from the last fire time truncated to the second, and a delay under one
  second is refused (Argo would fire continuously). Fire times are always whole seconds.
* ``exclusionDates`` skip every fire time whose calendar date (year, month, day) in the schedule's zone
  (its ``CRON_TZ=`` prefix, else ``timezone``, else UTC; Argo ignores the prefix here) equals an
  exclusion's date; the exclusion's time of day does not matter. Argo reads the iCalendar
  form ``EXDATE:20190102T150405Z`` (several comma-separated values allowed) and takes the date as
  written; we read that form too (also ``EXDATE;TZID=...:20190102T150405`` and ``EXDATE:20190102``),
  and, as an extension, RFC 3339 date-times (``2019-01-02T15:04:05Z``) and dates (``2019-01-02``). An
  entry in none of these forms is an error, where Argo silently ignores it.

Catch-up (``persistence.catchup``): the runner persists the last fire time whether or not
``persistence`` is set. On a restart with catch-up enabled, every fire time missed since that cursor is
due at once, in order, limited to those within ``maxDuration`` before the restart and to the latest
:data:`MAX_CATCHUP_FIRES` of them. Without catch-up a restarted calendar starts its schedule afresh
from the start time, as Argo does; fire times missed while running (the process was suspended, the bus
was down) then collapse into the latest one. With catch-up they are all emitted.

An event is a CloudEvent with ``type`` ``calendar``, ``source`` the EventSource's name, ``subject`` the
event's name, ``time`` the fire time (RFC 3339, UTC) and data ``{"eventTime": <fire time as Go's
time.Time.String() writes it in the schedule's zone>, "metadata": {...}}`` (``metadata`` left out when
empty, as Argo does). Argo stamps the publish time and a random id; we stamp the scheduled time and an
id derived from namespace, EventSource, event and fire time, so that the bus, which drops an id it
already holds for the same source, stores every fire time once even when the process dies between
publishing and saving the cursor.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import expr
from engine.errors import ExprError, Problem, SpecError
from engine.events.cloudevent import JSON_CONTENT_TYPE, format_time
from engine.events.model import Event
from engine.expr.cron import UTC_ZONE, CronSchedule
from engine.spec.duration import parse_duration
from engine.spec.events import CalendarEventSource

EVENT_TYPE = "calendar"

#: At most this many missed fire times are caught up after a restart (the latest ones), so that a
#: per-minute schedule resumed after a year of downtime does bounded work.
MAX_CATCHUP_FIRES = 1000

_ICAL_VALUE = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T\d{6}Z?)?", re.ASCII)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?)?", re.ASCII
)


@dataclass(frozen=True, slots=True)
class CompiledCalendar:
    """One calendar event, parsed and checked: exactly one of ``schedule`` and ``interval`` is set."""

    schedule: CronSchedule | None
    interval: float | None
    zone: ZoneInfo
    excluded: frozenset[date]
    metadata: Mapping[str, str]
    catchup: bool
    max_catchup: float | None
    program: expr.Program | None = field(default=None, compare=False)


# ------------------------------------------------------------------------------------------- compile


def compile_calendar(cal: CalendarEventSource, *, path: str = "") -> CompiledCalendar:
    """Parse and check ``cal``; raises :class:`SpecError` listing every problem under ``path``."""
    problems: list[Problem] = []

    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    zone = UTC_ZONE
    if cal.timezone:
        try:
            zone = ZoneInfo(cal.timezone) if cal.timezone != "UTC" else UTC_ZONE
        except (ZoneInfoNotFoundError, ValueError, OSError):
            problems.append(Problem(at("timezone"), f"unknown time zone {cal.timezone!r}"))

    schedule: CronSchedule | None = None
    interval: float | None = None
    if cal.schedule:
        schedule = _schedule(cal.schedule, at("schedule"), problems)
        if schedule is not None and schedule.location:
            zone = schedule.zone(zone)
    elif cal.interval:
        interval = _interval(cal.interval, at("interval"), problems)
    else:
        problems.append(Problem(path, "needs a schedule or an interval"))

    excluded: set[date] = set()
    for i, text in enumerate(cal.exclusion_dates):
        try:
            excluded.update(parse_exclusion_date(text))
        except ValueError as exc:
            problems.append(Problem(at(f"exclusionDates[{i}]"), str(exc)))

    catchup_spec = cal.persistence.catchup if cal.persistence else None
    catchup = bool(catchup_spec and catchup_spec.enabled)
    max_catchup: float | None = None
    if catchup_spec and catchup_spec.max_duration:
        try:
            max_catchup = parse_duration(catchup_spec.max_duration)
        except ValueError as exc:
            problems.append(Problem(at("persistence.catchup.maxDuration"), str(exc)))

    program: expr.Program | None = None
    if cal.filter and cal.filter.expression:
        try:
            program = expr.compile_expr(cal.filter.expression)
        except ExprError as exc:
            problems.append(Problem(at("filter.expression"), str(exc)))

    if problems:
        raise SpecError(problems)
    return CompiledCalendar(
        schedule=schedule,
        interval=interval,
        zone=zone,
        excluded=frozenset(excluded),
        metadata=dict(cal.metadata),
        catchup=catchup,
        max_catchup=max_catchup,
        program=program,
    )


def _schedule(text: str, path: str, problems: list[Problem]) -> CronSchedule | None:
    body = text.strip()
    if body.startswith(("CRON_TZ=", "TZ=")):
        body = body.partition(" ")[2].strip()
    if body.startswith("@"):
        problems.append(
            Problem(
                path,
                f"descriptor {body.split()[0]!r} is not accepted in a calendar schedule (five fields "
                "only, as in Argo); write the five fields, or use `interval` for a fixed delay",
            )
        )
        return None
    try:
        return CronSchedule.parse(text, path=path)
    except SpecError as exc:
        problems.extend(exc.problems)
        return None


def _interval(text: str, path: str, problems: list[Problem]) -> float | None:
    try:
        seconds = parse_duration(text, default_unit_seconds=False)
    except ValueError as exc:
        problems.append(Problem(path, str(exc)))
        return None
    if not math.isfinite(seconds) or seconds < 1:
        problems.append(Problem(path, f"interval {text!r} is shorter than one second"))
        return None
    # Whole seconds, as robfig/cron's constant-delay schedules keep them.
    return float(math.floor(seconds))


def parse_exclusion_date(text: str) -> list[date]:
    """The calendar dates one ``exclusionDates`` entry names; raises ValueError saying why it names none."""
    body = text.strip()
    if body[:6].upper() == "EXDATE":
        head, colon, values = body.partition(":")
        if not colon or head[6:7] not in ("", ";"):
            raise ValueError(f"not an exclusion date: {text!r} (expected EXDATE:20190102T150405Z)")
        out = []
        for value in values.split(","):
            m = _ICAL_VALUE.fullmatch(value.strip())
            if m is None:
                raise ValueError(f"exclusion date {value.strip()!r} in {text!r} is not like 20190102T150405Z")
            out.append(_date(int(m[1]), int(m[2]), int(m[3]), text))
        return out
    m = _RFC3339.fullmatch(body)
    if m is None:
        raise ValueError(
            f"not an exclusion date: {text!r} (expected EXDATE:20190102T150405Z or an RFC 3339 date-time)"
        )
    # The date as written, whatever the offset: Argo compares the written year, month and day.
    return [_date(int(m[1]), int(m[2]), int(m[3]), text)]


def _date(year: int, month: int, day: int, text: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(f"exclusion date {text!r} is not a calendar date") from None


# ---------------------------------------------------------------------------------------------- plan


def _origin(last_fired: float | None, started_at: float, catchup: bool) -> float:
    """The instant the schedule continues from: the cursor, unless it is from before this start and
    catch-up is off (the schedule then starts afresh at ``started_at``)."""
    if last_fired is None or not math.isfinite(last_fired):
        return started_at
    if catchup or last_fired >= started_at:
        return last_fired
    return started_at


def _excluded(c: CompiledCalendar, t: float) -> bool:
    return bool(c.excluded) and datetime.fromtimestamp(t, c.zone).date() in c.excluded


def _day_bounds(c: CompiledCalendar, t: float) -> tuple[float, float]:
    """Start of the local day holding ``t`` and start of the next one, in the calendar's zone."""
    day = datetime.fromtimestamp(t, c.zone).date()
    start = datetime(day.year, day.month, day.day, tzinfo=c.zone).timestamp()
    after = day + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=c.zone).timestamp()
    return start, end


def _raw_next(c: CompiledCalendar, grid: float, t: float) -> float:
    """First fire time strictly after ``t``, exclusions ignored; ``grid`` anchors interval schedules."""
    if c.schedule is not None:
        return c.schedule.next_after(t, c.zone)
    assert c.interval is not None
    return grid + (math.floor((t - grid) / c.interval) + 1) * c.interval


def _raw_latest(c: CompiledCalendar, grid: float, t: float) -> float | None:
    """Last fire time at or before ``t``, exclusions ignored (None when the schedule has none)."""
    if c.schedule is not None:
        return c.schedule.latest_at_or_before(t, c.zone)
    assert c.interval is not None
    return grid + math.floor((t - grid) / c.interval) * c.interval


def _next_on_grid(c: CompiledCalendar, grid: float, after: float) -> float:
    t = _raw_next(c, grid, after)
    # Each pass leaves one excluded day behind, so the loop ends after at most len(excluded) passes.
    while _excluded(c, t):
        _, end = _day_bounds(c, t)
        t = _raw_next(c, grid, max(t, end - 1))
    return t


def _grid(c: CompiledCalendar, origin: float) -> float:
    # robfig/cron's constant delay counts from the last time truncated to the second.
    return float(math.floor(origin))


def next_fire(compiled: CompiledCalendar, after: float) -> float:
    """The first fire time strictly after ``after``, exclusion dates skipped.

    For an ``interval`` schedule ``after`` is the last fire (or the start): the result is that instant,
    truncated to the second, plus a whole number of intervals.
    """
    return _next_on_grid(compiled, _grid(compiled, after), after)


def due(
    compiled: CompiledCalendar,
    *,
    last_fired: float | None,
    started_at: float,
    now: float,
    catchup: bool,
    max_catchup: float | None,
) -> list[float]:
    """The fire times to emit at ``now``, oldest first.

    ``last_fired`` is the persisted cursor (None before the first fire ever), ``started_at`` when this
    run of the source began. The fire times considered lie after the schedule's origin (see the module
    docstring) and at or before ``now``. With ``catchup`` they are all due, limited to those less than
    ``max_catchup`` seconds before ``started_at`` and to the latest :data:`MAX_CATCHUP_FIRES`; without
    it only the latest one is.
    """
    origin = _origin(last_fired, started_at, catchup)
    grid = _grid(compiled, origin)
    low = origin
    if catchup and max_catchup is not None:
        # Measured from the start, as Argo does: the bound limits what a restart catches up and never
        # drops a fire that fell due while running.
        low = max(low, started_at - max_catchup)
    limit = MAX_CATCHUP_FIRES if catchup else 1
    found: list[float] = []
    t = _raw_latest(compiled, grid, now)
    while t is not None and t > low and len(found) < limit:
        if _excluded(compiled, t):
            start, _ = _day_bounds(compiled, t)
            t = _raw_latest(compiled, grid, min(t, start) - 1)
            continue
        found.append(t)
        # Fire times are whole seconds, so the one before ``t`` is at or before ``t - 1``.
        t = _raw_latest(compiled, grid, t - 1)
    found.reverse()
    return found


def next_due(
    compiled: CompiledCalendar,
    *,
    last_fired: float | None,
    started_at: float,
    now: float,
    catchup: bool,
) -> float:
    """When :func:`due` next has something to emit, given it has just been answered at ``now``.

    Everything due at or before ``now`` was either returned or deliberately dropped (catch-up limits,
    collapsing without catch-up), so this is the first fire time after ``now`` on the same schedule.
    """
    origin = _origin(last_fired, started_at, catchup)
    return _next_on_grid(compiled, _grid(compiled, origin), max(now, origin))


# --------------------------------------------------------------------------------------------- events


def event_id(namespace: str, source_name: str, event_name: str, fire_time: float) -> str:
    """A stable id for one fire time of one calendar event: the same inputs give the same id."""
    key = json.dumps([namespace, source_name, event_name, format_time(_utc(fire_time))])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def go_time_string(t: float, zone: ZoneInfo) -> str:
    """``t`` as Go's ``time.Time.String()`` writes it: ``2026-12-07 10:00:00 +0000 UTC``.

    Fractions of a second appear only when there are any, without trailing zeros, as Go writes them.
    """
    moment = datetime.fromtimestamp(t, zone)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text} {sign}{hours:02d}{mins:02d} {moment.tzname() or 'UTC'}"


def event_data(fire_time: float, metadata: Mapping[str, str], zone: ZoneInfo) -> dict[str, Any]:
    """The event's data: ``eventTime`` and, when there is any, ``metadata``."""
    data: dict[str, Any] = {"eventTime": go_time_string(fire_time, zone)}
    if metadata:
        data["metadata"] = dict(metadata)
    return data


def event_for(
    *,
    namespace: str,
    source_name: str,
    event_name: str,
    fire_time: float,
    metadata: Mapping[str, str],
    zone: ZoneInfo,
) -> Event:
    """The event one fire time becomes (see the module docstring for its attributes and data)."""
    return Event(
        id=event_id(namespace, source_name, event_name, fire_time),
        source=source_name,
        type=EVENT_TYPE,
        subject=event_name,
        time=format_time(_utc(fire_time)),
        data=event_data(fire_time, metadata, zone),
        datacontenttype=JSON_CONTENT_TYPE,
    )


def accepts(compiled: CompiledCalendar, data: Mapping[str, Any]) -> bool:
    """Whether ``filter.expression`` lets the event through (True without a filter).

    The expression reads the event data's top-level keys, ``-`` in them read as ``_``; anything but
    ``true`` rejects. An evaluation failure raises :class:`ExprError`; the caller drops the event.
    """
    if compiled.program is None:
        return True
    env = {key.replace("-", "_"): value for key, value in data.items()}
    return compiled.program.run(env) is True


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


__all__ = [
    "EVENT_TYPE",
    "MAX_CATCHUP_FIRES",
    "CompiledCalendar",
    "accepts",
    "compile_calendar",
    "due",
    "event_data",
    "event_for",
    "event_id",
    "go_time_string",
    "next_due",
    "next_fire",
    "parse_exclusion_date",
]
