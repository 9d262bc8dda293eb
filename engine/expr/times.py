"""Go-style instants and durations for expressions: ``now()``, ``duration()``, ``date()``, sprig dates.

Argo evaluates its expressions in Go, where time values carry nanoseconds and a zone, subtracting two of
them gives a ``time.Duration``, and formatting uses Go's reference-time layouts ("2006-01-02T15:04:05Z07:00")
rather than strftime. The evaluator, the expr-lang builtins, the sprig namespace and govaluate's date
literals all use this module. It reads no clock: the current time always comes from the caller (the
``__now__`` environment key). Zone names are resolved with :mod:`zoneinfo`; an unknown zone falls back
to UTC, as sprig does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ExprError

from .limits import INT_MAX, INT_MIN

NANOS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1)
_MIN_SECONDS = int((datetime(1, 1, 1) - _EPOCH).total_seconds())
_CYCLE_SECONDS = 146_097 * 86_400  # one 400-year Gregorian cycle


class _Shifted(datetime):
    """A datetime whose ``year`` is reported ``400 * cycles`` years earlier than it is stored."""

    _cycles = 0

    @classmethod
    def of(cls, wall: datetime, cycles: int) -> _Shifted:
        shifted = cls(wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second)
        shifted._cycles = cycles
        return shifted

    @property
    def year(self) -> int:
        return super().year - 400 * self._cycles


LONG_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
SHORT_MONTHS = tuple(m[:3] for m in LONG_MONTHS)
LONG_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
SHORT_DAYS = tuple(d[:3] for d in LONG_DAYS)


@dataclass(frozen=True, slots=True)
class Duration:
    """A signed span of nanoseconds, like Go's ``time.Duration``."""

    nanos: int

    def __str__(self) -> str:
        return format_duration(self.nanos)

    def seconds(self) -> float:
        return self.nanos / NANOS


@dataclass(frozen=True, slots=True)
class Time:
    """An instant with the zone it is displayed in, like Go's ``time.Time``.

    ``zone`` is the abbreviation Go prints for ``MST`` in layouts; an empty name means a fixed offset
    without a name (Go then prints the offset, e.g. ``+0200``).
    """

    unix_nanos: int
    offset: int = 0
    zone: str = "UTC"

    @classmethod
    def from_epoch(cls, seconds: float | int) -> Time:
        """The instant ``seconds`` after the Unix epoch, in UTC."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ExprError(f"epoch seconds must be a number, not {type(seconds).__name__}")
        if math.isnan(seconds) or abs(seconds) > 1e13:
            raise ExprError("epoch seconds out of range")
        if isinstance(seconds, int):
            return cls(seconds * NANOS)
        # Via the shortest decimal spelling, so 1700000000.25 is exactly .25 s and not 0.249999...
        return cls(int((Decimal(repr(seconds)) * NANOS).to_integral_value()))

    def unix(self) -> int:
        return self.unix_nanos // NANOS

    def nanosecond(self) -> int:
        return self.unix_nanos % NANOS

    def in_zone(self, offset: int, zone: str) -> Time:
        return Time(self.unix_nanos, offset, zone)

    def utc(self) -> Time:
        return Time(self.unix_nanos, 0, "UTC")

    def local_datetime(self) -> datetime:
        """Wall-clock fields in this time's zone (naive datetime, whole seconds).

        Years before 1 (Go's zero time is year 1, its parsed clock times are year 0) are shifted by
        whole 400-year Gregorian cycles, which repeat the calendar exactly.
        """
        seconds = self.unix() + self.offset
        cycles = 0
        while seconds < _MIN_SECONDS:
            seconds += _CYCLE_SECONDS
            cycles += 1
            if cycles > 100:
                raise ExprError("time out of range")
        try:
            wall = _EPOCH + timedelta(seconds=seconds)
        except OverflowError as exc:
            raise ExprError("time out of range (years up to 9999)") from exc
        return wall if not cycles else _Shifted.of(wall, cycles)

    def __str__(self) -> str:
        # Go's Time.String() layout.
        return format_time(self, "2006-01-02 15:04:05.999999999 -0700 MST")


def add_duration(t: Time, d: Duration) -> Time:
    return Time(_check_nanos(t.unix_nanos + d.nanos), t.offset, t.zone)


def sub_times(a: Time, b: Time) -> Duration:
    diff = a.unix_nanos - b.unix_nanos
    # Go saturates Time.Sub at the Duration limits instead of overflowing.
    return Duration(max(INT_MIN, min(INT_MAX, diff)))


def _check_nanos(n: int) -> int:
    # Go keeps seconds and nanoseconds apart, so times far outside int64 nanoseconds are valid;
    # only refuse values no calendar function could render (beyond ~300,000 years).
    if abs(n) > 10**22:
        raise ExprError("time out of range")
    return n


# --- zones ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _zoneinfo(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def in_location(t: Time, name: str) -> Time:
    """``t`` shown in the named IANA zone; an unknown name gives UTC (sprig's ``dateInZone`` rule)."""
    if name in ("", "UTC", "Local"):
        # "Local" is the controller's zone; ours is UTC so results do not depend on the host.
        return t.utc()
    tz = _zoneinfo(name)
    if tz is None:
        return t.utc()
    try:
        aware = datetime.fromtimestamp(t.unix(), tz)
    except (OverflowError, OSError, ValueError):
        return t.utc()
    offset = aware.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    return Time(t.unix_nanos, seconds, aware.tzname() or "")


# --- durations --------------------------------------------------------------------------------------

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # greek small letter mu
    "ms": 1_000_000,
    "s": NANOS,
    "m": 60 * NANOS,
    "h": 3600 * NANOS,
}


def parse_duration(text: str) -> Duration:
    """Go's ``time.ParseDuration``: ``"1h30m"``, ``"-1.5s"``, ``"300ms"``."""
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return Duration(0)
    if not s:
        raise ExprError(f"invalid duration {text!r}")
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i].isdigit():
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s.startswith("."):
            j = 1
            while j < len(s) and s[j].isdigit():
                j += 1
            frac, s = s[1:j], s[j:]
        if not whole and not frac:
            raise ExprError(f"invalid duration {text!r}")
        k = 0
        while k < len(s) and s[k] != "." and not s[k].isdigit():
            k += 1
        unit, s = s[:k], s[k:]
        if not unit:
            raise ExprError(f"missing unit in duration {text!r}")
        scale = _UNITS.get(unit)
        if scale is None:
            raise ExprError(f"unknown unit {unit!r} in duration {text!r}")
        if len(whole) > 20 or len(frac) > 30:
            raise ExprError(f"invalid duration {text!r}")
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        if total > INT_MAX + (1 if neg else 0):
            raise ExprError(f"invalid duration {text!r}")
    return Duration(-total if neg else total)


def _frac(v: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the fractional digits of v/10**prec without trailing zeros, and the whole part."""
    digits = ""
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        v //= 10
    return ("." + digits if digits else ""), v


def format_duration(nanos: int) -> str:
    """Go's ``Duration.String()``: ``1h0m0s``, ``1.5s``, ``300ms``, ``0s``."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    u = abs(nanos)
    if u < NANOS:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            frac, whole = _frac(u, 3)
            return f"{sign}{whole}{frac}µs"
        frac, whole = _frac(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, secs = _frac(u, 9)
    out = f"{secs % 60}{frac}s"
    mins = secs // 60
    if mins > 0:
        out = f"{mins % 60}m" + out
        hours = mins // 60
        if hours > 0:
            out = f"{hours}h" + out
    return sign + out


# --- layouts ----------------------------------------------------------------------------------------
# A layout is split into literal text and "std" chunks the way Go's time package does; the chunk names
# below are ours.

_Chunk = tuple[str, str, int]  # (literal prefix, std chunk or "", fraction digits)


def _next_chunk(layout: str) -> tuple[str, str, int, str]:
    """Split off the literal text before the first std chunk: (prefix, std, digits, rest)."""
    n = len(layout)
    for i, c in enumerate(layout):
        rest = layout[i:]
        if c == "J" and rest.startswith("Jan"):
            if rest.startswith("January"):
                return layout[:i], "January", 0, layout[i + 7 :]
            return layout[:i], "Jan", 0, layout[i + 3 :]
        if c == "M":
            if rest.startswith("Monday"):
                return layout[:i], "Monday", 0, layout[i + 6 :]
            if rest.startswith("Mon"):
                return layout[:i], "Mon", 0, layout[i + 3 :]
            if rest.startswith("MST"):
                return layout[:i], "MST", 0, layout[i + 3 :]
        if c == "0" and i + 1 < n:
            if rest.startswith("002"):
                return layout[:i], "002", 0, layout[i + 3 :]
            if "1" <= layout[i + 1] <= "6":
                return layout[:i], rest[:2], 0, layout[i + 2 :]
        if c == "1":
            if rest.startswith("15"):
                return layout[:i], "15", 0, layout[i + 2 :]
            return layout[:i], "1", 0, layout[i + 1 :]
        if c == "2":
            if rest.startswith("2006"):
                return layout[:i], "2006", 0, layout[i + 4 :]
            return layout[:i], "2", 0, layout[i + 1 :]
        if c == "_":
            if rest.startswith("_2"):
                if rest.startswith("_2006"):
                    # "_2006" is a literal underscore followed by the year.
                    return layout[: i + 1], "2006", 0, layout[i + 5 :]
                return layout[:i], "_2", 0, layout[i + 2 :]
            if rest.startswith("__2"):
                return layout[:i], "__2", 0, layout[i + 3 :]
        if c in "345":
            return layout[:i], c, 0, layout[i + 1 :]
        if c == "P" and rest.startswith("PM"):
            return layout[:i], "PM", 0, layout[i + 2 :]
        if c == "p" and rest.startswith("pm"):
            return layout[:i], "pm", 0, layout[i + 2 :]
        if c in "-Z":
            for std in ("070000", "07:00:00", "0700", "07:00", "07"):
                if rest.startswith(c + std):
                    return layout[:i], c + std, 0, layout[i + 1 + len(std) :]
        if c in ".," and i + 1 < n and layout[i + 1] in "09":
            ch = layout[i + 1]
            j = i + 1
            while j < n and layout[j] == ch:
                j += 1
            if not (j < n and layout[j].isdigit()):
                kind = c + ("000" if ch == "0" else "999")
                return layout[:i], kind, j - (i + 1), layout[j:]
    return layout, "", 0, ""


@functools.lru_cache(maxsize=256)
def _chunks(layout: str) -> tuple[_Chunk, ...]:
    out: list[_Chunk] = []
    rest = layout
    while rest:
        prefix, std, digits, rest = _next_chunk(rest)
        out.append((prefix, std, digits))
    return tuple(out)


def _zone_offset_text(offset: int, std: str) -> str:
    if std.startswith("Z") and offset == 0:
        return "Z"
    sign = "-" if offset < 0 else "+"
    off = abs(offset)
    hh, mm, ss = off // 3600, off // 60 % 60, off % 60
    body = std[1:]
    if body == "07":
        return f"{sign}{hh:02d}"
    if body == "0700":
        return f"{sign}{hh:02d}{mm:02d}"
    if body == "07:00":
        return f"{sign}{hh:02d}:{mm:02d}"
    if body == "070000":
        return f"{sign}{hh:02d}{mm:02d}{ss:02d}"
    return f"{sign}{hh:02d}:{mm:02d}:{ss:02d}"


def format_time(t: Time, layout: str) -> str:
    """Go's ``Time.Format(layout)``."""
    if len(layout) > 1024:
        raise ExprError("time layout too long")
    dt = t.local_datetime()
    nanos = t.nanosecond()
    parts: list[str] = []
    for prefix, std, digits in _chunks(layout):
        parts.append(prefix)
        if not std:
            continue
        if std == "2006":
            parts.append(f"{dt.year:04d}")
        elif std == "06":
            parts.append(f"{dt.year % 100:02d}")
        elif std == "January":
            parts.append(LONG_MONTHS[dt.month - 1])
        elif std == "Jan":
            parts.append(SHORT_MONTHS[dt.month - 1])
        elif std == "1":
            parts.append(str(dt.month))
        elif std == "01":
            parts.append(f"{dt.month:02d}")
        elif std == "Monday":
            parts.append(LONG_DAYS[(dt.weekday() + 1) % 7])
        elif std == "Mon":
            parts.append(SHORT_DAYS[(dt.weekday() + 1) % 7])
        elif std == "2":
            parts.append(str(dt.day))
        elif std == "_2":
            parts.append(f"{dt.day:2d}")
        elif std == "02":
            parts.append(f"{dt.day:02d}")
        elif std == "__2":
            parts.append(f"{dt.timetuple().tm_yday:3d}")
        elif std == "002":
            parts.append(f"{dt.timetuple().tm_yday:03d}")
        elif std == "15":
            parts.append(f"{dt.hour:02d}")
        elif std in ("3", "03"):
            h = dt.hour % 12 or 12
            parts.append(str(h) if std == "3" else f"{h:02d}")
        elif std in ("4", "04"):
            parts.append(str(dt.minute) if std == "4" else f"{dt.minute:02d}")
        elif std in ("5", "05"):
            parts.append(str(dt.second) if std == "5" else f"{dt.second:02d}")
        elif std in ("PM", "pm"):
            mark = "PM" if dt.hour >= 12 else "AM"
            parts.append(mark if std == "PM" else mark.lower())
        elif std == "MST":
            parts.append(t.zone if t.zone else _zone_offset_text(t.offset, "-0700"))
        elif std[0] in "-Z":
            parts.append(_zone_offset_text(t.offset, std))
        elif std[1:] == "000":
            parts.append(std[0] + f"{nanos:09d}"[:digits])
        elif std[1:] == "999":
            frac = f"{nanos:09d}"[:digits].rstrip("0")
            if frac:
                parts.append(std[0] + frac)
    return "".join(parts)


class _Reader:
    __slots__ = ("layout", "pos", "text")

    def __init__(self, text: str, layout: str) -> None:
        self.text = text
        self.pos = 0
        self.layout = layout

    def fail(self, what: str) -> ExprError:
        return ExprError(f"cannot parse {self.text!r} as {self.layout!r}: {what}")

    def rest(self) -> str:
        return self.text[self.pos :]

    def number(self, fixed: int | None, maxlen: int = 2) -> int:
        """Read digits: exactly ``fixed`` of them, or 1..maxlen when ``fixed`` is None."""
        s = self.text
        j = self.pos
        limit = fixed if fixed is not None else maxlen
        while j < len(s) and j - self.pos < limit and s[j].isdigit():
            j += 1
        count = j - self.pos
        if count == 0 or (fixed is not None and count != fixed):
            raise self.fail("bad number")
        value = int(s[self.pos : j])
        self.pos = j
        return value

    def word(self, table: tuple[str, ...]) -> int:
        rest = self.rest().lower()
        for i, name in enumerate(table):
            if rest.startswith(name.lower()):
                self.pos += len(name)
                return i
        raise self.fail("bad name")


def _read_fraction(r: _Reader) -> int:
    s = r.text
    if r.pos + 1 < len(s) and s[r.pos] in ".," and s[r.pos + 1].isdigit():
        j = r.pos + 1
        while j < len(s) and s[j].isdigit():
            j += 1
        digits = s[r.pos + 1 : j][:9]
        r.pos = j
        return int(digits.ljust(9, "0"))
    return 0


def parse_time(layout: str, text: str) -> Time:
    """Go's ``time.Parse(layout, text)``; text without a zone is read as UTC."""
    if len(text) > 1024 or len(layout) > 1024:
        raise ExprError("time text too long")
    r = _Reader(text, layout)
    # Go's parsed times default to year 0, January 1 (a clock-only layout gives 0000-01-01).
    year, month, day, hour, minute, second, nanos = 0, 1, 1, 0, 0, 0, 0
    yday = -1
    pm: bool | None = None
    offset: int | None = None
    zone = ""
    chunks = _chunks(layout)
    for index, (prefix, std, digits) in enumerate(chunks):
        if not r.rest().startswith(prefix):
            raise r.fail(f"expected {prefix!r}")
        r.pos += len(prefix)
        if not std:
            continue
        if std == "2006":
            sign = 1
            if r.rest()[:1] in ("-", "+") and len(r.rest()) > 4:
                sign = -1 if r.rest()[0] == "-" else 1
                r.pos += 1
            year = sign * r.number(4)
        elif std == "06":
            yy = r.number(2)
            year = yy + (1900 if yy >= 69 else 2000)
        elif std == "January":
            month = r.word(LONG_MONTHS) + 1
        elif std == "Jan":
            month = r.word(SHORT_MONTHS) + 1
        elif std in ("1", "01"):
            month = r.number(2 if std == "01" else None)
        elif std == "Monday":
            r.word(LONG_DAYS)
        elif std == "Mon":
            r.word(SHORT_DAYS)
        elif std in ("2", "_2", "02"):
            if std == "_2" and r.rest().startswith(" "):
                r.pos += 1
            day = r.number(2 if std == "02" else None)
        elif std in ("__2", "002"):
            while std == "__2" and r.rest().startswith(" "):
                r.pos += 1
            yday = r.number(3 if std == "002" else None, 3)
        elif std in ("15", "3", "03"):
            hour = r.number(2 if std == "03" else None)
            if std != "15" and not 1 <= hour <= 12:
                raise r.fail("hour out of range")
        elif std in ("4", "04"):
            minute = r.number(2 if std == "04" else None)
        elif std in ("5", "05"):
            second = r.number(2 if std == "05" else None)
            # Go accepts a fraction after the seconds even when the layout has none.
            following = chunks[index + 1] if index + 1 < len(chunks) else ("", "", 0)
            if not following[0] and following[1][1:] in ("000", "999"):
                pass
            elif not following[0].startswith((".", ",")):
                nanos = _read_fraction(r)
        elif std in ("PM", "pm"):
            mark = r.rest()[:2].upper()
            if mark not in ("AM", "PM"):
                raise r.fail("bad AM/PM")
            pm = mark == "PM"
            r.pos += 2
        elif std[0] in "-Z":
            if std[0] == "Z" and r.rest().startswith("Z"):
                r.pos += 1
                offset, zone = 0, "UTC"
                continue
            sign_ch = r.rest()[:1]
            if sign_ch not in ("+", "-"):
                raise r.fail("bad zone offset")
            r.pos += 1
            hh = r.number(2)
            mm = ss = 0
            body = std[1:]
            if body in ("07:00", "07:00:00"):
                if not r.rest().startswith(":"):
                    raise r.fail("bad zone offset")
                r.pos += 1
                mm = r.number(2)
                if body == "07:00:00":
                    if not r.rest().startswith(":"):
                        raise r.fail("bad zone offset")
                    r.pos += 1
                    ss = r.number(2)
            elif body in ("0700", "070000"):
                mm = r.number(2)
                if body == "070000":
                    ss = r.number(2)
            offset = (hh * 3600 + mm * 60 + ss) * (-1 if sign_ch == "-" else 1)
            zone = "UTC" if offset == 0 else ""
        elif std == "MST":
            j = r.pos
            while j < len(text) and text[j].isalpha() and text[j].isupper() and j - r.pos < 5:
                j += 1
            if j - r.pos < 3:
                raise r.fail("bad zone name")
            zone = text[r.pos : j]
            r.pos = j
            if offset is None:
                offset = 0
        elif std[1:] == "000":
            if r.rest()[:1] != std[0]:
                raise r.fail("bad fraction")
            r.pos += 1
            frac = r.number(digits, digits)
            nanos = int(str(frac).rjust(digits, "0").ljust(9, "0")[:9])
        elif std[1:] == "999":
            nanos = _read_fraction(r)
    if r.pos != len(text):
        raise r.fail(f"extra text {r.rest()!r}")
    if pm is not None:
        if pm and hour < 12:
            hour += 12
        elif not pm and hour == 12:
            hour = 0
    # Years before 1 are moved into range by whole 400-year cycles (the calendar repeats exactly).
    cycles = 0
    while year < 1 and cycles <= 100:
        year += 400
        cycles += 1
    try:
        if yday >= 0 and month == 1 and day == 1:
            wall = datetime(year, 1, 1, hour, minute, second) + timedelta(days=yday - 1)
        else:
            wall = datetime(year, month, day, hour, minute, second)
    except (ValueError, OverflowError) as exc:
        raise r.fail("value out of range") from exc
    off = offset or 0
    seconds = int((wall - _EPOCH).total_seconds()) - off - cycles * _CYCLE_SECONDS
    return Time(seconds * NANOS + nanos, off, zone if offset is not None else "UTC")


RFC3339 = "2006-01-02T15:04:05Z07:00"
RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"


def parse_rfc3339(text: str) -> Time | None:
    """An RFC 3339 timestamp, or None when ``text`` is not one."""
    try:
        return parse_time(RFC3339, text)
    except ExprError:
        return None
