"""Dependency filters: whether one event is accepted by one sensor dependency.

The sensor core (:mod:`engine.events.sensor`) calls :func:`passes` for every event routed to a
dependency. The semantics are Argo Events' (``dependency.filters`` and ``filtersLogicalOperator``):

* groups are evaluated in the order ``exprs``, ``data``, ``context``, ``time``, ``script``;
* with the default operator (anything but ``or``) every group must pass, and the first group that fails
  or cannot be evaluated rejects the event;
* with ``or`` the event passes when at least one *configured* group passes, but a group that could not
  be evaluated (a missing path, a bad number, an unknown time zone) rejects the event even then, and a
  filter block with no group configured passes nothing;
* inside ``data`` and ``exprs``, ``dataLogicalOperator`` / ``exprLogicalOperator`` combine the entries
  the same way: ``and`` stops at the first entry that fails or errs; ``or`` returns at the first entry
  that passes, skipping entries that err, and errs only when none passed and one erred;
* an event without data passes the ``data`` and ``exprs`` groups (Argo checks nothing when there is no
  payload); data that is not JSON is an error.

Data filters read a gjson ``path``. The value is compared as gjson converts it: ``bool`` reads strings
such as ``"true"``/``"1"`` and numbers (non-zero is true); ``number`` reads numeric strings, with text
that is no number reading as 0; ``string`` takes gjson's text form (compact JSON for objects) and
matches each value as an RE2 regular expression, unanchored, with comparator ``=`` or ``!=``. An
optional Go ``template`` sees the text form as ``.Input`` and its output replaces the value; an empty
output is an error. The listed values are OR'd; ``number`` supports ``= != > >= < <=``; a comparator
the type does not know never matches. Expression filters bind each field's gjson value (numbers as
floats, as gjson hands them to govaluate) and evaluate the govaluate expression; anything but ``true``
fails the entry. Context filters compare ``type``, ``subject``, ``source`` and ``datacontenttype``
exactly when set. Time filters take the event's own ``time`` in ``timezone`` (default UTC) and accept
``[start, stop)``; when ``stop`` is not after ``start`` the window wraps past midnight. Lua ``script``
filters are not run: such a dependency never passes (validation reports it).

Everything a filter can compile (regular expressions, numbers, booleans, clock times, zones) is
compiled once per filter object and cached, so the per-event work is the lookups and comparisons.
Nothing here raises for bad input: every failure becomes a rejected event with its reason.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ExprError
from engine.events.model import Event
from engine.expr import gjson
from engine.expr.encoding import from_json
from engine.expr.gotemplate import render
from engine.expr.govaluate import evaluate_govaluate
from engine.expr.regex import Regex, compile_regex
from engine.expr.times import NANOS, parse_rfc3339
from engine.expr.values import parse_go_float
from engine.spec.events import (
    DataFilter,
    EventContextFilter,
    EventDependencyFilter,
    ExprFilter,
    TimeFilter,
)

__all__ = ["CompiledFilters", "FilterResult", "compile_filters", "passes"]

OR: Final = "or"
CACHE_SIZE: Final = 1024
_DAY: Final = 86_400
# Errors other than ExprError that hostile data could still provoke in an evaluator.
_UNEXPECTED: Final = (RecursionError, ValueError, TypeError, ArithmeticError, LookupError)


@dataclass(frozen=True, slots=True)
class FilterResult:
    """Whether the event passed and, when it did not, which filter rejected it and why (for logs)."""

    passed: bool
    reason: str = ""


PASSED: Final = FilterResult(True)


class _Verdict(NamedTuple):
    """One group's answer: ``error`` is set when it could not be evaluated, ``why`` when it said no."""

    ok: bool
    error: str | None = None
    why: str = ""


_OK: Final = _Verdict(True)


def _fail(why: str) -> _Verdict:
    return _Verdict(False, None, why)


def _error(message: str) -> _Verdict:
    return _Verdict(False, message)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- gjson conversions --------------------------------------------------------------------------------

_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INFINITE = re.compile(r"[+-]?inf(?:inity)?\Z", re.IGNORECASE)


def _parse_bool(text: str) -> bool:
    """``strconv.ParseBool``."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ExprError(f'strconv.ParseBool: parsing "{_clip(text, 60)}": invalid syntax')


def _parse_float(text: str, *, strict: bool = True) -> float:
    """``strconv.ParseFloat(s, 64)``; a number too large for float64 is an error when ``strict``
    (gjson ignores that error and keeps the infinity)."""
    value = parse_go_float(text)
    if value is None:
        raise ExprError(f'strconv.ParseFloat: parsing "{_clip(text, 60)}": invalid syntax')
    if strict and math.isinf(value) and not _INFINITE.match(text):
        raise ExprError(f'strconv.ParseFloat: parsing "{_clip(text, 60)}": value out of range')
    return value


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _gjson_bool(value: Any) -> bool:
    """gjson's ``Result.Bool()``."""
    if value is True:
        return True
    if isinstance(value, str):
        try:
            return _parse_bool(value.lower())
        except ExprError:
            return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    return False


def _gjson_float(value: Any) -> float:
    """gjson's ``Result.Float()``: true is 1, numeric text its number, anything else 0."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return _as_float(value)
    if isinstance(value, str):
        try:
            return _parse_float(value, strict=False)
        except ExprError:
            return 0.0
    return 0.0


def _gjson_value(value: Any) -> Any:
    """gjson's ``Result.Value()`` as govaluate receives it: every number a float64."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _as_float(value)
    return value


# --- data filters ---------------------------------------------------------------------------------------

_NUMBER_OPS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _compile_value(kind: str, text: str) -> bool | float | Regex | ExprError:
    """One listed value, parsed for its type; a value that does not parse is kept as its error, which
    is reported only if evaluation reaches it (an earlier value may already have matched)."""
    try:
        if kind == "bool":
            return _parse_bool(text)
        if kind == "number":
            return _parse_float(text)
        return compile_regex(text)
    except ExprError as exc:
        return exc


@dataclass(frozen=True, slots=True)
class _DataCheck:
    path: str
    kind: str
    comparator: str
    template: str
    values: tuple[bool | float | Regex | ExprError, ...]

    @classmethod
    def of(cls, spec: DataFilter) -> _DataCheck:
        kind = spec.type
        values = tuple(_compile_value(kind, v) for v in spec.value) if kind in _TYPES else ()
        return cls(spec.path, kind, spec.comparator or "", spec.template or "", values)

    def evaluate(self, data: Any) -> _Verdict:
        """``_OK``, a plain no, or an error, for this one entry."""
        try:
            found = gjson.get(data, self.path)
        except ExprError:
            return _error(f"path '{_clip(self.path)}' does not exist")
        if not self.values and self.kind in _TYPES:
            return _error(f"no values specified for path '{_clip(self.path)}'")
        if self.kind not in _TYPES:
            return _error(f"unsupported JSON type '{_clip(self.kind)}'")
        if self.template:
            try:
                out = render(self.template, {"Input": gjson.to_text(found)})
            except ExprError as exc:
                return _error(f"template of path '{_clip(self.path)}': {exc}")
            if out in ("", "<no value>"):
                return _error(f"template '{_clip(self.template)}' evaluated to empty string or no value")
            found = out
        try:
            if self.kind == "bool":
                return self._bools(_gjson_bool(found))
            if self.kind == "number":
                return self._numbers(_gjson_float(found))
            return self._strings(gjson.to_text(found))
        except ExprError as exc:
            return _error(f"path '{_clip(self.path)}': {exc}")

    def _bools(self, actual: bool) -> _Verdict:
        for value in self.values:
            if isinstance(value, ExprError):
                return _error(str(value))
            if value == actual:
                return _OK
        return _fail(f"'{_clip(self.path)}' is {'true' if actual else 'false'}, no listed value matches")

    def _numbers(self, actual: float) -> _Verdict:
        compare = _NUMBER_OPS.get(self.comparator)
        for value in self.values:
            if isinstance(value, ExprError):
                return _error(str(value))
            assert isinstance(value, float)
            if compare is not None and compare(actual, value):
                return _OK
        shown = f"{actual:g}"
        return _fail(
            f"'{_clip(self.path)}' is {shown}, no listed value matches comparator '{self.comparator}'"
        )

    def _strings(self, actual: str) -> _Verdict:
        for value in self.values:
            if isinstance(value, ExprError):
                return _error(str(value))
            assert isinstance(value, Regex)
            if self.comparator in ("", "="):
                if value.search(actual) is not None:
                    return _OK
            elif self.comparator == "!=" and value.search(actual) is None:
                return _OK
        return _fail(f"'{_clip(self.path)}' is {_clip(actual, 60)!r}, no listed value matches")


_TYPES: Final = frozenset({"bool", "number", "string"})


def _payload(event: Event) -> tuple[Any, str | None]:
    """The event's JSON data (None when it has none) or the reason it is not JSON."""
    data = event.data
    if isinstance(data, bytes | bytearray):
        try:
            return from_json(data.decode("utf-8")), None
        except (ExprError, UnicodeDecodeError):
            return None, "event data not valid JSON"
    return data, None


def _combine(
    entries: tuple[Any, ...], evaluate: Callable[[Any], _Verdict | None], use_or: bool, group: str
) -> _Verdict:
    """Argo's per-group loop: AND stops at the first no or error; OR returns at the first yes."""
    errors: list[str] = []
    reasons: list[str] = []
    for entry in entries:
        verdict = evaluate(entry)
        if verdict is None:  # an entry that does not take part (an expression without fields)
            continue
        if verdict.ok:
            if use_or:
                return _OK
            continue
        if not use_or:
            if verdict.error is not None:
                return _error(f"{group} filter error ({verdict.error})")
            return _fail(f"{group} filter: {verdict.why}")
        if verdict.error is not None:
            errors.append(verdict.error)
        else:
            reasons.append(verdict.why)
    if not use_or:
        return _OK
    if errors:
        return _error(f"{group} filter errors [{' / '.join(errors)}]")
    return _fail(f"{group} filter: no entry passed" + (f" ({'; '.join(reasons)})" if reasons else ""))


# --- expression filters ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ExprCheck:
    expr: str
    fields: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, spec: ExprFilter) -> _ExprCheck:
        return cls(spec.expr, tuple((f.name, f.path) for f in spec.fields_))

    def evaluate(self, data: Any) -> _Verdict | None:
        if not self.fields:
            return None  # nothing bound: Argo skips the entry
        parameters: dict[str, Any] = {}
        for name, path in self.fields:
            try:
                parameters[name] = _gjson_value(gjson.get(data, path))
            except ExprError:
                return _error(f"path '{_clip(path)}' does not exist")
        try:
            result = evaluate_govaluate(self.expr, parameters)
        except ExprError as exc:
            return _error(str(exc))
        except RecursionError:
            return _error(f"expression '{_clip(self.expr)}' is nested too deeply")
        if result is True:
            return _OK
        return _fail(f"expression '{_clip(self.expr)}' is not true")


# --- context and time filters ---------------------------------------------------------------------------


def _context_checks(spec: EventContextFilter) -> tuple[tuple[str, str], ...]:
    # id, specversion and time are accepted in the spec but never compared, as in Argo.
    wanted = {
        "type": spec.type,
        "subject": spec.subject,
        "source": spec.source,
        "datacontenttype": spec.datacontenttype,
    }
    return tuple((attr, value) for attr, value in wanted.items() if value)


_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?\Z")


def _parse_clock(text: str) -> int:
    """An ``HH:MM:SS`` time of day as nanoseconds after midnight (Go's ``15:04:05`` layout)."""
    m = _CLOCK.match(text)
    if m is None:
        raise ExprError(f'parsing time "{_clip(text, 40)}" as "15:04:05": cannot parse')
    hours, minutes, seconds = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ExprError(f'parsing time "{_clip(text, 40)}": out of range')
    fraction = int((m.group(4) or "").ljust(9, "0"))
    return ((hours * 60 + minutes) * 60 + seconds) * NANOS + fraction


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ExprError(f"invalid timezone '{_clip(name, 60)}'") from None


@dataclass(frozen=True, slots=True)
class _TimeCheck:
    start: int
    stop: int
    zone: ZoneInfo | None
    label: str
    error: str | None = None

    @classmethod
    def of(cls, spec: TimeFilter) -> _TimeCheck:
        label = f"[{spec.start}, {spec.stop}) {spec.timezone or 'UTC'}"
        try:
            zone = _zone(spec.timezone) if spec.timezone else None
            return cls(_parse_clock(spec.start), _parse_clock(spec.stop), zone, label)
        except ExprError as exc:
            return cls(0, 0, None, label, f"time filter error ({exc})")

    def evaluate(self, event: Event) -> _Verdict:
        if self.error is not None:
            return _error(self.error)
        instant = parse_rfc3339(event.time) if isinstance(event.time, str) else None
        if instant is None:
            return _error(f"time filter error (event time {_clip(str(event.time), 60)!r} is not RFC 3339)")
        seconds, nanos = divmod(instant.unix_nanos, NANOS)
        if self.zone is not None:
            try:
                offset = datetime.fromtimestamp(seconds, UTC).astimezone(self.zone).utcoffset()
            except (OverflowError, OSError, ValueError):
                return _error("time filter error (event time out of range)")
            seconds += int(offset.total_seconds()) if offset is not None else 0
        of_day = (seconds % _DAY) * NANOS + nanos
        if self.start < self.stop:
            inside = self.start <= of_day < self.stop
        else:  # the window wraps past midnight (a stop equal to start makes it the whole day)
            inside = of_day >= self.start or of_day < self.stop
        if inside:
            return _OK
        return _fail(f"time filter: event time {event.time} is outside {self.label}")


# --- the whole filter block -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledFilters:
    """One dependency's filters, compiled; :meth:`check` evaluates an event against them."""

    use_or: bool
    exprs: tuple[_ExprCheck, ...]
    expr_or: bool
    data: tuple[_DataCheck, ...]
    data_or: bool
    context: tuple[tuple[str, str], ...] | None
    time: _TimeCheck | None
    script: bool

    def check(self, event: Event) -> FilterResult:
        try:
            return self._check(event)
        except _UNEXPECTED as exc:
            # A payload shape an evaluator did not foresee rejects the event; it must not stop the sensor.
            return FilterResult(False, f"filter failed: {type(exc).__name__}: {_clip(str(exc))}")

    def _check(self, event: Event) -> FilterResult:
        if not self.use_or:
            for verdict in self._groups(event):
                if not verdict.ok:
                    return FilterResult(False, verdict.error or verdict.why)
            return PASSED
        verdicts = list(self._groups(event))
        errors = [v.error for v in verdicts if v.error is not None]
        if errors:
            return FilterResult(False, " / ".join(errors))
        if any(v.ok for v in verdicts):
            return PASSED
        if not verdicts:
            return FilterResult(False, "no filter is configured to pass with the 'or' operator")
        return FilterResult(False, "; ".join(v.why for v in verdicts))

    def _groups(self, event: Event) -> Iterator[_Verdict]:
        """The configured groups' verdicts, lazily, in Argo's order."""
        data: Any = None
        data_error: str | None = None
        if self.exprs or self.data:
            data, data_error = _payload(event)
        if self.exprs:
            yield self._exprs(data, data_error, event)
        if self.data:
            yield self._data(data, data_error, event)
        if self.context is not None:
            yield self._context(event)
        if self.time is not None:
            yield self.time.evaluate(event)
        if self.script:
            yield _error("script filters (Lua) are not supported")

    def _exprs(self, data: Any, data_error: str | None, event: Event) -> _Verdict:
        if data_error is not None:
            return _error(f"expr filter error ({data_error})")
        if event.data is None:
            return _OK
        return _combine(self.exprs, lambda c: c.evaluate(data), self.expr_or, "expr")

    def _data(self, data: Any, data_error: str | None, event: Event) -> _Verdict:
        if data_error is not None:
            return _error(f"data filter error ({data_error})")
        if event.data is None:
            return _OK
        return _combine(self.data, lambda c: c.evaluate(data), self.data_or, "data")

    def _context(self, event: Event) -> _Verdict:
        for attr, wanted in self.context or ():
            actual = getattr(event, attr)
            if actual != wanted:
                return _fail(
                    f"context filter: {attr} is {_clip(str(actual), 60)!r}, want {_clip(wanted, 60)!r}"
                )
        return _OK


def compile_filters(filters: EventDependencyFilter, logical_operator: str | None = None) -> CompiledFilters:
    """Compile one dependency's ``filters`` with its ``filtersLogicalOperator``."""
    return CompiledFilters(
        use_or=logical_operator == OR,
        exprs=tuple(_ExprCheck.of(e) for e in filters.exprs),
        expr_or=filters.expr_logical_operator == OR,
        data=tuple(_DataCheck.of(d) for d in filters.data),
        data_or=filters.data_logical_operator == OR,
        context=_context_checks(filters.context) if filters.context is not None else None,
        time=_TimeCheck.of(filters.time) if filters.time is not None else None,
        script=bool(filters.script),
    )


# Compiled filters by the identity of the spec object they came from; the spec is kept in the entry so
# its id cannot be reused while the entry lives.
_cache: dict[tuple[int, str], tuple[EventDependencyFilter, CompiledFilters]] = {}


def passes(filters: EventDependencyFilter | None, logical_operator: str | None, event: Event) -> FilterResult:
    """Whether ``event`` passes a dependency's ``filters`` combined with ``logical_operator``."""
    if filters is None:
        return PASSED
    key = (id(filters), logical_operator or "")
    hit = _cache.get(key)
    if hit is not None and hit[0] is filters:
        compiled = hit[1]
    else:
        compiled = compile_filters(filters, logical_operator)
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[key] = (filters, compiled)
    return compiled.check(event)
