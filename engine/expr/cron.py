"""Cron schedules: robfig/cron's standard syntax, parsed and evaluated in an IANA time zone.

Pure and clock-free: every function takes the instant it reasons about. Called by the CronWorkflow
planner (``engine.workflows.cron``) and by the events core (calendar event sources, a trigger's
``conditionsReset.byTime``), which may not import the workflow core.

Syntax: five fields (minute, hour, day-of-month, month, day-of-week); ``*``, ``?``, lists, ranges,
steps, month and weekday names, ``@yearly``..``@hourly``, ``@every <duration>``, and a
``CRON_TZ=Zone`` or ``TZ=Zone`` prefix. Where we differ from robfig, on purpose: day-of-week ``7`` is
Sunday too; a schedule that can never fire (``0 0 30 2 *``) is rejected; ``@every d`` fires at the
multiples of ``d`` since the Unix epoch, so the instants do not depend on when a process started.

Daylight saving time: a wall-clock time skipped by a spring-forward gap does not fire that day; one
repeated by a fall-back fires once per occurrence.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import MAXYEAR, MINYEAR, UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ExprError, Problem, SpecError
from engine.spec.duration import parse_duration

UTC_ZONE = ZoneInfo("UTC")

# Long enough for the sparsest valid schedule: Feb 29 on any weekday recurs at most 8 years apart.
_SEARCH_YEARS = 10
_DAY = 86400.0

# ----------------------------------------------------------------------------------------- schedules

_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
# Days a month can have; February counts its leap day, so ``29 2`` is possible.
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True, slots=True)
class _FieldRule:
    name: str
    low: int
    high: int
    # Largest value ``*`` and ``N/step`` expand to; only day-of-week differs (6, while 7 may be written).
    star_high: int
    names: Mapping[str, int]


_FIELD_RULES = (
    _FieldRule("minute", 0, 59, 59, {}),
    _FieldRule("hour", 0, 23, 23, {}),
    _FieldRule("day-of-month", 1, 31, 31, {}),
    _FieldRule("month", 1, 12, 12, _MONTH_NAMES),
    _FieldRule("day-of-week", 0, 7, 6, _DAY_NAMES),
)


class _BadSchedule(ExprError):
    """Why a schedule string or zone is invalid. The parser turns it into one SpecError problem; from
    :func:`load_zone`, called directly, it reaches the caller as an ExprError."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """One parsed schedule. Field values are sorted tuples; ``every`` is set for ``@every`` only.

    ``dom_star``/``dow_star`` record whether the day fields were written with ``*`` or ``?`` (and no
    step greater than 1): when neither was, a day matches if *either* field matches, as in every cron.
    """

    text: str
    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    days: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()
    dom_star: bool = True
    dow_star: bool = True
    every: int | None = None
    location: str | None = None

    @classmethod
    def parse(cls, text: str, *, path: str = "") -> CronSchedule:
        """Parse ``text`` or raise :class:`SpecError` with one problem at ``path`` saying what is wrong."""
        try:
            return cls._parse(text)
        except _BadSchedule as exc:
            raise SpecError([Problem(path, f"invalid schedule {text!r}: {exc}")]) from None

    @classmethod
    def _parse(cls, text: str) -> CronSchedule:
        if not isinstance(text, str):
            raise _BadSchedule("a schedule must be a string")
        body = text.strip()
        if not body:
            raise _BadSchedule("empty schedule")
        location = None
        if body.startswith(("CRON_TZ=", "TZ=")):
            prefix, _, body = body.partition(" ")
            body = body.strip()
            location = prefix.partition("=")[2]
            load_zone(location)
            if not body:
                raise _BadSchedule(f"nothing follows the time zone prefix {prefix!r}")
        if body.startswith("@"):
            return cls._parse_descriptor(text, body, location)
        fields = body.split()
        if len(fields) != 5:
            raise _BadSchedule(
                f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}"
            )
        parsed = [_parse_field(f, rule) for f, rule in zip(fields, _FIELD_RULES, strict=True)]
        (minutes, _), (hours, _), (days, dom_star), (months, _), (weekdays, dow_star) = parsed
        weekdays = {0 if d == 7 else d for d in weekdays}
        schedule = cls(
            text=text,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=tuple(sorted(days)),
            months=tuple(sorted(months)),
            weekdays=tuple(sorted(weekdays)),
            dom_star=dom_star,
            dow_star=dow_star,
            location=location,
        )
        schedule._check_possible()
        return schedule

    @classmethod
    def _parse_descriptor(cls, text: str, body: str, location: str | None) -> CronSchedule:
        word, _, rest = body.partition(" ")
        word = word.lower()
        if word == "@every":
            try:
                seconds = parse_duration(rest.strip(), default_unit_seconds=False)
            except ValueError as exc:
                raise _BadSchedule(f"@every needs a duration such as 90s or 1h30m ({exc})") from None
            if not seconds > 0 or not math.isfinite(seconds):
                raise _BadSchedule("@every needs a positive duration")
            if seconds > 100 * 366 * _DAY:
                raise _BadSchedule("@every duration is longer than a century")
            # robfig rounds a sub-second interval up to one second and drops fractions of a second.
            return cls(text=text, every=max(1, int(seconds)), location=location)
        if word not in _DESCRIPTORS or rest.strip():
            known = ", ".join([*_DESCRIPTORS, "@every <duration>"])
            raise _BadSchedule(f"unknown descriptor {body!r}; expected one of {known}")
        inner = cls._parse(_DESCRIPTORS[word])
        return replace(inner, text=text, location=location)

    def _check_possible(self) -> None:
        # Only the AND rule (day-of-week written as *) can exclude every day: 31 in April, 30 in February.
        if not self.dow_star or self.dom_star:
            return
        if any(day <= _MAX_DAYS[month - 1] for month in self.months for day in self.days):
            return
        months = ",".join(calendar.month_abbr[m] for m in self.months)
        days = ",".join(map(str, self.days))
        raise _BadSchedule(f"never fires: day-of-month {days} does not occur in {months}")

    # ------------------------------------------------------------------------------------ evaluation

    def zone(self, default: ZoneInfo) -> ZoneInfo:
        """The zone this schedule is read in: its own ``CRON_TZ=`` prefix, else ``default``."""
        return load_zone(self.location) if self.location else default

    def next_after(self, t: float, tz: ZoneInfo) -> float:
        """The first fire time strictly after ``t`` (epoch seconds), reading the fields in zone ``tz``."""
        if self.every is not None:
            return (math.floor(t / self.every) + 1) * float(self.every)
        zone = self.zone(tz)
        # In the first pass through a fall-back hour, the *second* pass of an earlier wall-clock minute
        # is still ahead: start the wall-clock scan that much earlier (the size of the coming fold).
        fold = max(0.0, _offset(t, zone) - _offset(t + _DAY, zone))
        start = _floor_minute(_wall(t, zone) - timedelta(seconds=fold))
        best: float | None = None
        for wall in self._walls(start, forward=True):
            instants = _instants(wall, zone)
            if instants is None:
                continue  # in a spring-forward gap: this wall-clock time does not exist
            first, second = instants
            for instant in (first, second):
                if instant > t and (best is None or instant < best):
                    best = instant
            # Both occurrences grow with the wall-clock time, so nothing later can beat ``best``.
            if first > t:
                return float(best if best is not None else first)
        raise SpecError([Problem("", f"schedule {self.text!r} does not fire within {_SEARCH_YEARS} years")])

    def latest_at_or_before(self, t: float, tz: ZoneInfo) -> float | None:
        """The last fire time at or before ``t``, or None when there is none in the searched years."""
        if self.every is not None:
            return math.floor(t / self.every) * float(self.every)
        zone = self.zone(tz)
        # Mirror of next_after: just after a fall-back, the first pass of a later wall-clock minute is
        # already behind us.
        fold = max(0.0, _offset(t - _DAY, zone) - _offset(t, zone))
        start = _floor_minute(_wall(t, zone) + timedelta(seconds=fold))
        best: float | None = None
        for wall in self._walls(start, forward=False):
            instants = _instants(wall, zone)
            if instants is None:
                continue
            first, second = instants
            for instant in (second, first):
                if instant <= t and (best is None or instant > best):
                    best = instant
            if second <= t:
                return best
        return best

    def matches(self, t: float, tz: ZoneInfo) -> bool:
        """Whether ``t`` is a fire time (used by tests and ``sluice cron`` previews)."""
        if self.every is not None:
            return t % self.every == 0
        if t != math.floor(t) or int(t) % 60:
            return False
        wall = _wall(t, self.zone(tz))
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self._day_matches(wall.year, wall.month, wall.day)
        )

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        in_month = day in self.days
        # calendar.weekday counts Monday as 0; cron counts Sunday as 0.
        in_week = (calendar.weekday(year, month, day) + 1) % 7 in self.weekdays
        if self.dom_star or self.dow_star:
            return in_month and in_week
        return in_month or in_week

    def _days_of(self, year: int, month: int) -> list[int]:
        last = calendar.monthrange(year, month)[1]
        return [d for d in range(1, last + 1) if self._day_matches(year, month, d)]

    def _walls(self, start: datetime, *, forward: bool) -> Iterator[datetime]:
        """Matching wall-clock minutes from ``start`` (inclusive), field by field, forwards or backwards.

        Walking the fields rather than the minutes makes a sparse schedule (``0 0 29 2 *``) cost a
        few steps per year instead of half a million.
        """
        step = 1 if forward else -1
        last_year = start.year + step * _SEARCH_YEARS
        last_year = min(last_year, MAXYEAR) if forward else max(last_year, MINYEAR)

        def ordered(values: Sequence[int]) -> Sequence[int]:
            return values if forward else values[::-1]

        def behind(value: int, bound: int) -> bool:
            return value < bound if forward else value > bound

        for year in range(start.year, last_year + step, step):
            at_year = year == start.year
            for month in ordered(self.months):
                if at_year and behind(month, start.month):
                    continue
                at_month = at_year and month == start.month
                for day in ordered(self._days_of(year, month)):
                    if at_month and behind(day, start.day):
                        continue
                    at_day = at_month and day == start.day
                    for hour in ordered(self.hours):
                        if at_day and behind(hour, start.hour):
                            continue
                        at_hour = at_day and hour == start.hour
                        for minute in ordered(self.minutes):
                            if at_hour and behind(minute, start.minute):
                                continue
                            yield datetime(year, month, day, hour, minute)


def _parse_field(text: str, rule: _FieldRule) -> tuple[set[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise _BadSchedule(f"{rule.name} field {text!r} has an empty list item")
        range_text, slash, step_text = part.partition("/")
        if slash and not _NUMBER.fullmatch(step_text):
            raise _BadSchedule(f"{rule.name} step {step_text!r} in {part!r} is not a number")
        step = int(step_text) if slash else 1
        if step == 0:
            raise _BadSchedule(f"{rule.name} step in {part!r} must be positive")
        part_star = range_text in ("*", "?")
        if part_star:
            start, end = rule.low, rule.star_high
        else:
            if range_text.count("-") > 1:
                raise _BadSchedule(f"{rule.name} range {part!r} has more than one '-'")
            low_text, dash, high_text = range_text.partition("-")
            start = _field_value(low_text, part, rule)
            # ``N/step`` means N through the end of the field.
            end = _field_value(high_text, part, rule) if dash else (rule.star_high if slash else start)
            if start > end:
                raise _BadSchedule(f"{rule.name} range {part!r} starts after it ends")
        # robfig: a stepped star (``*/2``) no longer counts as ``*`` for the day-of-month/day-of-week rule.
        star = star or (part_star and step == 1)
        values.update(range(start, end + 1, step))
    return values, star


def _field_value(text: str, part: str, rule: _FieldRule) -> int:
    named = rule.names.get(text.lower())
    if named is not None:
        return named
    if not _NUMBER.fullmatch(text):
        hint = " (or a name like JAN, MON)" if rule.names else ""
        raise _BadSchedule(f"{rule.name} value {text!r} in {part!r} is not a number{hint}")
    value = int(text)
    if not rule.low <= value <= rule.high:
        raise _BadSchedule(f"{rule.name} value {value} in {part!r} is outside {rule.low}-{rule.high}")
    return value


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (UTC when empty); ExprError when there is no such zone."""
    if name in ("UTC", ""):
        return UTC_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _BadSchedule(f"unknown time zone {name!r} (expected an IANA name like Europe/Paris)") from None


def _wall(t: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t, zone).replace(tzinfo=None, fold=0)


def _floor_minute(wall: datetime) -> datetime:
    return wall.replace(second=0, microsecond=0)


def _offset(t: float, zone: ZoneInfo) -> float:
    offset = datetime.fromtimestamp(t, zone).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _instants(wall: datetime, zone: ZoneInfo) -> tuple[float, float] | None:
    """The instants a wall-clock time names: two in a fall-back fold, None in a spring-forward gap."""
    first = wall.replace(tzinfo=zone, fold=0).timestamp()
    if _wall(first, zone) != wall:
        return None
    return first, wall.replace(tzinfo=zone, fold=1).timestamp()


def rfc3339(t: float, zone: ZoneInfo = UTC_ZONE) -> str:
    """``t`` as Go's ``time.RFC3339`` writes it in ``zone``: whole seconds, ``Z`` for a zero offset."""
    text = datetime.fromtimestamp(math.floor(t), zone).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp; raises ValueError when it is not one."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def next_fire_time(schedule: CronSchedule | str, after: float, *, timezone: str = "") -> float:
    """The first fire time of ``schedule`` strictly after ``after`` (epoch seconds).

    ``schedule`` is parsed when given as text. Its fields are read in ``timezone`` (an IANA name; UTC
    when empty) unless the schedule carries its own ``CRON_TZ=`` prefix. Raises :class:`SpecError` when
    the schedule or the zone is invalid.
    """
    parsed = CronSchedule.parse(schedule) if isinstance(schedule, str) else schedule
    try:
        zone = load_zone(timezone)
    except _BadSchedule as exc:
        raise SpecError([Problem("", str(exc))]) from None
    return parsed.next_after(after, zone)
