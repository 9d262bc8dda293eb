"""Builtin functions of the expr-lang subset, plus Argo's additions (``asInt``, ``asFloat``,
``toJson``, ``jsonpath``).

The evaluator resolves a call by name at compile time to one of two tables: :data:`BUILTINS` take
evaluated arguments, :data:`PREDICATE_BUILTINS` (``filter``, ``map``, ``all``...) take a compiled
predicate they call once per element. Time and duration methods (``now().Year()``,
``(a - b).Seconds()``) are in :data:`METHODS`. Semantics follow expr-lang's documentation; where Go
would iterate a map in random order (``keys``, ``values``) we use sorted keys so results are stable.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.errors import ExprError

from . import jsonpath, values
from .encoding import from_json, go_sprint, to_json
from .limits import check_int
from .scope import Scope
from .times import (
    NANOS,
    Duration,
    Time,
    add_duration,
    format_time,
    in_location,
    parse_duration,
    parse_time,
    sub_times,
)
from .values import as_list, describe, is_array, is_number, type_name

Builtin = Callable[[Scope, list[Any]], Any]
Body = Callable[[Scope], Any]
PredicateBuiltin = Callable[[Scope, Any, Body, list[Any]], Any]


def _arity(name: str, args: list[Any], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ExprError(f"{name}() takes {want} argument{'s' if high != 1 else ''}, got {len(args)}")


def _str(name: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    raise ExprError(f"{name}() expects a string, got {type_name(v)} {describe(v)}")


def _int(name: str, v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise ExprError(f"{name}() expects an integer, got {type_name(v)} {describe(v)}")


def _number(name: str, v: Any) -> int | float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    raise ExprError(f"{name}() expects a number, got {type_name(v)} {describe(v)}")


def _fn(name: str, low: int, high: int | None, impl: Callable[..., Any]) -> Builtin:
    def call(scope: Scope, args: list[Any]) -> Any:
        _arity(name, args, low, high)
        return impl(*args)

    return call


def _fn_scoped(name: str, low: int, high: int | None, impl: Callable[..., Any]) -> Builtin:
    def call(scope: Scope, args: list[Any]) -> Any:
        _arity(name, args, low, high)
        return impl(scope, *args)

    return call


# --- strings ----------------------------------------------------------------------------------------


def _trim(s: Any, chars: Any = None) -> str:
    text = _str("trim", s)
    return text.strip() if chars is None else text.strip(_str("trim", chars))


def _split(scope: Scope, s: Any, sep: Any, n: Any = -1) -> list[str]:
    text, delim, limit = _str("split", s), _str("split", sep), _int("split", n)
    if limit == 0:
        return []
    if delim == "":
        parts = list(text)
        if 0 < limit < len(parts):
            parts = [*parts[: limit - 1], "".join(parts[limit - 1 :])]
    else:
        parts = text.split(delim, limit - 1 if limit > 0 else -1)
    scope.budget.spend(len(parts))
    return parts


def _split_after(scope: Scope, s: Any, sep: Any, n: Any = -1) -> list[str]:
    parts = _split(scope, s, sep, n)
    delim = _str("splitAfter", sep)
    return [p + delim for p in parts[:-1]] + parts[-1:] if delim else parts


def _replace(scope: Scope, s: Any, old: Any, new: Any) -> str:
    text, a, b = _str("replace", s), _str("replace", old), _str("replace", new)
    if a == "":
        # Go inserts the replacement around every character when old is empty.
        scope.budget.spend_string(len(text) + (len(text) + 1) * len(b))
        return b + b.join(text) + b if text else b
    count = text.count(a)
    scope.budget.spend_string(len(text) + count * (len(b) - len(a)))
    return text.replace(a, b)


def _repeat(scope: Scope, s: Any, n: Any) -> str:
    text, count = _str("repeat", s), _int("repeat", n)
    if count < 0:
        raise ExprError("repeat() count must not be negative")
    scope.budget.spend_string(len(text) * count)
    return text * count


def _index_of(s: Any, sub: Any) -> int:
    return _str("indexOf", s).find(_str("indexOf", sub))


def _last_index_of(s: Any, sub: Any) -> int:
    return _str("lastIndexOf", s).rfind(_str("lastIndexOf", sub))


def _base64_decode(s: Any) -> str:
    text = _str("fromBase64", s)
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError) as exc:
        raise ExprError(f"illegal base64 data: {exc}") from exc


# --- numbers ----------------------------------------------------------------------------------------


def _abs(v: Any) -> int | float:
    x = _number("abs", v)
    return check_int(abs(x)) if isinstance(x, int) else abs(x)


def _round_half_away(x: float) -> float:
    return math.copysign(math.floor(abs(x) + 0.5), x)


def _float_fn(name: str, op: Callable[[float], float]) -> Callable[[Any], float]:
    def run(v: Any) -> float:
        x = float(_number(name, v))
        if math.isinf(x) or math.isnan(x):
            return x
        return op(x)

    return run


def _extreme(name: str, pick_max: bool) -> Builtin:
    def run(scope: Scope, args: list[Any]) -> Any:
        items: list[Any] | tuple[Any, ...] = args
        if len(args) == 1 and is_array(args[0]):
            items = args[0]
        if not items:
            if len(args) == 1:
                return None
            raise ExprError(f"{name}() needs at least one argument")
        best = items[0]
        for item in items:
            if not (is_number(item) and is_number(best)):
                raise ExprError(f"{name}() expects numbers, got {type_name(item)}")
            if (item > best) if pick_max else (item < best):
                best = item
        return best

    return run


def _numbers(name: str, v: Any) -> list[int | float]:
    return [_number(name, x) for x in as_list(v, name)]


def _mean(v: Any) -> float:
    nums = _numbers("mean", v)
    return sum(nums) / len(nums) if nums else 0.0


def _median(v: Any) -> float:
    nums = sorted(_numbers("median", v))
    if not nums:
        return 0.0
    mid = len(nums) // 2
    return float(nums[mid]) if len(nums) % 2 else (nums[mid - 1] + nums[mid]) / 2


def _bit(name: str, op: Callable[[int, int], int]) -> Callable[[Any, Any], int]:
    def run(a: Any, b: Any) -> int:
        return check_int(op(_int(name, a), _int(name, b)))

    return run


def _shift_amount(name: str, b: Any) -> int:
    amount = _int(name, b)
    if amount < 0:
        raise ExprError(f"{name}(): negative shift amount")
    return min(amount, 64)


def _shl(a: Any, b: Any) -> int:
    # Go shifts wrap silently; fold the result back into int64 the way Go would.
    value = (_int("bitshl", a) << _shift_amount("bitshl", b)) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(a: Any, b: Any) -> int:
    return _int("bitshr", a) >> _shift_amount("bitshr", b)


def _ushr(a: Any, b: Any) -> int:
    value = (_int("bitushr", a) & 0xFFFFFFFFFFFFFFFF) >> _shift_amount("bitushr", b)
    return value - (1 << 64) if value >= 1 << 63 else value


# --- arrays and maps --------------------------------------------------------------------------------


def _join(v: Any, sep: Any = "") -> str:
    items = as_list(v, "join")
    parts = []
    for item in items:
        if not isinstance(item, str):
            raise ExprError(f"join() expects an array of strings, found {type_name(item)}")
        parts.append(item)
    return _str("join", sep).join(parts)


def _first(v: Any) -> Any:
    items = as_list(v, "first")
    return items[0] if items else None


def _last(v: Any) -> Any:
    items = as_list(v, "last")
    return items[-1] if items else None


def _take(v: Any, n: Any) -> list[Any]:
    count = _int("take", n)
    return list(as_list(v, "take")[: max(count, 0)])


def _reverse(v: Any) -> list[Any]:
    return list(reversed(as_list(v, "reverse")))


def _sort_key(name: str, items: list[Any] | tuple[Any, ...]) -> Callable[[Any], Any]:
    if all(is_number(x) for x in items) or all(isinstance(x, str) for x in items):
        return lambda x: x
    raise ExprError(f"{name}() can only sort numbers or strings")


def _sort(v: Any, order: Any = "asc") -> list[Any]:
    items = as_list(v, "sort")
    direction = _str("sort", order)
    if direction not in ("asc", "desc"):
        raise ExprError('sort() order must be "asc" or "desc"')
    return sorted(items, key=_sort_key("sort", items), reverse=direction == "desc")


def _uniq(scope: Scope, v: Any) -> list[Any]:
    items = as_list(v, "uniq")
    scope.budget.spend(len(items))
    return values.dedupe(items, scope.budget)


def _concat(scope: Scope, args: list[Any]) -> list[Any]:
    out: list[Any] = []
    for arg in args:
        out.extend(as_list(arg, "concat"))
    scope.budget.spend(len(out))
    return out


def _flatten(scope: Scope, v: Any) -> list[Any]:
    out: list[Any] = []
    stack: list[tuple[list[Any] | tuple[Any, ...], int, int]] = [(as_list(v, "flatten"), 0, 0)]
    while stack:
        items, i, depth = stack.pop()
        if i >= len(items):
            continue
        stack.append((items, i + 1, depth))
        item = items[i]
        if is_array(item):
            if depth > 64:
                raise ExprError("flatten(): array nested too deeply")
            stack.append((item, 0, depth + 1))
        else:
            out.append(item)
    scope.budget.spend(len(out))
    return out


def _map_arg(name: str, v: Any) -> Mapping[str, Any]:
    if isinstance(v, Mapping):
        return v
    raise ExprError(f"{name}() expects a map, got {type_name(v)}")


def _keys(v: Any) -> list[Any]:
    return sorted(_map_arg("keys", v).keys(), key=str)


def _values(v: Any) -> list[Any]:
    m = _map_arg("values", v)
    return [m[k] for k in sorted(m.keys(), key=str)]


def _to_pairs(v: Any) -> list[list[Any]]:
    m = _map_arg("toPairs", v)
    return [[k, m[k]] for k in sorted(m.keys(), key=str)]


def _from_pairs(v: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in as_list(v, "fromPairs"):
        if not is_array(pair) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ExprError("fromPairs() expects [key, value] pairs with string keys")
        out[pair[0]] = pair[1]
    return out


def _get(v: Any, key: Any) -> Any:
    if isinstance(v, Mapping):
        if not isinstance(key, str):
            return None
        try:
            return v[key]
        except KeyError:
            return None
    if is_array(v) and isinstance(key, int) and not isinstance(key, bool):
        i = key + len(v) if key < 0 else key
        return v[i] if 0 <= i < len(v) else None
    return None


# --- conversions and JSON ---------------------------------------------------------------------------


def _to_json(v: Any) -> str:
    return to_json(v)


def _from_json(v: Any) -> Any:
    return from_json(_str("fromJSON", v))


def _jsonpath(scope: Scope, document: Any, path: Any) -> Any:
    data = from_json(document) if isinstance(document, str) else document
    return jsonpath.query(data, _str("jsonpath", path), scope.budget)


# --- dates ------------------------------------------------------------------------------------------

_DATE_LAYOUTS = (
    "2006-01-02T15:04:05Z07:00",
    "2006-01-02",
    "15:04:05",
    "2006-01-02 15:04:05",
    "02 Jan 06 15:04 MST",
    "Monday, 02-Jan-06 15:04:05 MST",
    "Mon, 02 Jan 2006 15:04:05 MST",
)


def _date(text: Any, layout: Any = None, zone: Any = None) -> Time:
    s = _str("date", text)
    if layout is None:
        for candidate in _DATE_LAYOUTS:
            try:
                return parse_time(candidate, s)
            except ExprError:
                continue
        raise ExprError(f"date(): cannot parse {s!r}")
    parsed = parse_time(_str("date", layout), s)
    if zone is None:
        return parsed
    # The text is a wall-clock time in `zone`: shift by that zone's offset at (about) that instant.
    local = in_location(parsed, _str("date", zone))
    return Time(parsed.unix_nanos - local.offset * NANOS, local.offset, local.zone)


def _now(scope: Scope) -> Time:
    return scope.now()


def _duration(v: Any) -> Duration:
    return parse_duration(_str("duration", v))


def _time(name: str, v: Any) -> Time:
    if isinstance(v, Time):
        return v
    raise ExprError(f"{name} expects a time, got {type_name(v)}")


def _dur(name: str, v: Any) -> Duration:
    if isinstance(v, Duration):
        return v
    raise ExprError(f"{name} expects a duration, got {type_name(v)}")


def _add_date(t: Time, years: Any, months: Any, days: Any) -> Time:
    y, mo, d = _int("AddDate", years), _int("AddDate", months), _int("AddDate", days)
    wall = t.local_datetime()
    month_index = wall.month - 1 + mo
    year = wall.year + y + month_index // 12
    month = month_index % 12 + 1
    # Go normalizes overflowing days (Jan 31 + 1 month = Mar 3) by counting from the first.
    try:
        shifted = datetime(year, month, 1, wall.hour, wall.minute, wall.second) + timedelta(
            days=wall.day - 1 + d
        )
    except (ValueError, OverflowError) as exc:
        raise ExprError("AddDate(): result out of range") from exc
    delta = int((shifted - wall).total_seconds())
    return Time(t.unix_nanos + delta * NANOS, t.offset, t.zone)


_TIME_METHODS: dict[str, Callable[..., Any]] = {
    "Year": lambda t: t.local_datetime().year,
    "Month": lambda t: t.local_datetime().month,
    "Day": lambda t: t.local_datetime().day,
    "Hour": lambda t: t.local_datetime().hour,
    "Minute": lambda t: t.local_datetime().minute,
    "Second": lambda t: t.local_datetime().second,
    "Nanosecond": lambda t: t.nanosecond(),
    "Weekday": lambda t: (t.local_datetime().weekday() + 1) % 7,
    "YearDay": lambda t: t.local_datetime().timetuple().tm_yday,
    "Unix": lambda t: t.unix(),
    "UnixMilli": lambda t: t.unix_nanos // 1_000_000,
    "UnixMicro": lambda t: t.unix_nanos // 1_000,
    "UnixNano": lambda t: t.unix_nanos,
    "UTC": lambda t: t.utc(),
    "Local": lambda t: t.utc(),
    "In": lambda t, zone: in_location(t, _str("In", zone)),
    "Format": lambda t, layout: format_time(t, _str("Format", layout)),
    "String": str,
    "IsZero": lambda t: t.unix_nanos == -62135596800 * NANOS,
    "Add": lambda t, d: add_duration(t, _dur("Add", d)),
    "AddDate": _add_date,
    "Sub": lambda t, other: sub_times(t, _time("Sub", other)),
    "Before": lambda t, other: t.unix_nanos < _time("Before", other).unix_nanos,
    "After": lambda t, other: t.unix_nanos > _time("After", other).unix_nanos,
    "Equal": lambda t, other: t.unix_nanos == _time("Equal", other).unix_nanos,
}


def _truncate(d: Duration, m: Any) -> Duration:
    unit = _dur("Truncate", m).nanos
    if unit <= 0:
        return d
    return Duration(d.nanos - int(math.fmod(d.nanos, unit)))


def _round_duration(d: Duration, m: Any) -> Duration:
    unit = _dur("Round", m).nanos
    if unit <= 0:
        return d
    r = abs(d.nanos) % unit
    base = abs(d.nanos) - r
    rounded = base + unit if r + r >= unit else base
    return Duration(rounded if d.nanos >= 0 else -rounded)


_DURATION_METHODS: dict[str, Callable[..., Any]] = {
    "Hours": lambda d: d.nanos / (3600 * NANOS),
    "Minutes": lambda d: d.nanos / (60 * NANOS),
    "Seconds": lambda d: d.nanos / NANOS,
    "Milliseconds": lambda d: int(d.nanos / 1_000_000),
    "Microseconds": lambda d: int(d.nanos / 1_000),
    "Nanoseconds": lambda d: d.nanos,
    "String": str,
    "Abs": lambda d: Duration(abs(d.nanos)),
    "Truncate": _truncate,
    "Round": _round_duration,
}


def call_method(obj: Any, name: str, args: list[Any]) -> Any:
    """``obj.Name(args)`` for the Go methods of times and durations we support."""
    table: dict[str, Callable[..., Any]] | None = None
    if isinstance(obj, Time):
        table = _TIME_METHODS
    elif isinstance(obj, Duration):
        table = _DURATION_METHODS
    if table is None or name not in table:
        raise ExprError(f"type {type_name(obj)} has no method {name}")
    try:
        return table[name](obj, *args)
    except TypeError:
        raise ExprError(f"wrong number of arguments to {type_name(obj)}.{name}()") from None


# --- predicates -------------------------------------------------------------------------------------


def _iterate(name: str, scope: Scope, collection: Any) -> tuple[list[Any] | tuple[Any, ...], Scope]:
    if collection is None:
        items: list[Any] | tuple[Any, ...] = []
    elif isinstance(collection, Mapping):
        # expr-lang iterates maps by value.
        items = [collection[k] for k in sorted(collection.keys(), key=str)]
    else:
        items = as_list(collection, name)
    scope.budget.spend(len(items))
    return items, scope.child()


def _truth(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ExprError(f"predicate of {name}() must return a bool, got {type_name(v)}")


def _each(name: str, scope: Scope, collection: Any, body: Body) -> Iterator[tuple[Any, Any]]:
    items, child = _iterate(name, scope, collection)
    for i, item in enumerate(items):
        child.item, child.index = item, i
        yield item, body(child)


def _all(scope: Scope, c: Any, body: Body, extra: list[Any]) -> bool:
    return all(_truth("all", r) for _, r in _each("all", scope, c, body))


def _any(scope: Scope, c: Any, body: Body, extra: list[Any]) -> bool:
    return any(_truth("any", r) for _, r in _each("any", scope, c, body))


def _none(scope: Scope, c: Any, body: Body, extra: list[Any]) -> bool:
    return not any(_truth("none", r) for _, r in _each("none", scope, c, body))


def _one(scope: Scope, c: Any, body: Body, extra: list[Any]) -> bool:
    hits = 0
    for _, r in _each("one", scope, c, body):
        hits += _truth("one", r)
        if hits > 1:
            return False
    return hits == 1


def _filter(scope: Scope, c: Any, body: Body, extra: list[Any]) -> list[Any]:
    return [item for item, r in _each("filter", scope, c, body) if _truth("filter", r)]


def _map(scope: Scope, c: Any, body: Body, extra: list[Any]) -> list[Any]:
    return [r for _, r in _each("map", scope, c, body)]


def _count(scope: Scope, c: Any, body: Body | None, extra: list[Any]) -> int:
    if body is None:
        items, _ = _iterate("count", scope, c)
        return sum(1 for x in items if x is True)
    return sum(1 for _, r in _each("count", scope, c, body) if _truth("count", r))


def _sum(scope: Scope, c: Any, body: Body | None, extra: list[Any]) -> int | float:
    results = as_list(c, "sum") if body is None else [r for _, r in _each("sum", scope, c, body)]
    total: int | float = 0
    for r in results:
        total = values.add(total, _number("sum", r), scope.budget)
    return total


def _finder(name: str, from_end: bool, want_index: bool) -> PredicateBuiltin:
    def run(scope: Scope, c: Any, body: Body, extra: list[Any]) -> Any:
        items, child = _iterate(name, scope, c)
        order = range(len(items) - 1, -1, -1) if from_end else range(len(items))
        for i in order:
            child.item, child.index = items[i], i
            if _truth(name, body(child)):
                return i if want_index else items[i]
        return -1 if want_index else None

    return run


def _group_by(scope: Scope, c: Any, body: Body, extra: list[Any]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for item, key in _each("groupBy", scope, c, body):
        groups.setdefault(key if isinstance(key, str) else go_sprint(key), []).append(item)
    return groups


def _sort_by(scope: Scope, c: Any, body: Body, extra: list[Any]) -> list[Any]:
    order = _str("sortBy", extra[0]) if extra else "asc"
    if order not in ("asc", "desc"):
        raise ExprError('sortBy() order must be "asc" or "desc"')
    pairs = list(_each("sortBy", scope, c, body))
    keys = [k for _, k in pairs]
    key_of = _sort_key("sortBy", keys)
    pairs.sort(key=lambda p: key_of(p[1]), reverse=order == "desc")
    return [item for item, _ in pairs]


def _reduce(scope: Scope, c: Any, body: Body, extra: list[Any]) -> Any:
    items, child = _iterate("reduce", scope, c)
    if extra:
        acc, start = extra[0], 0
    else:
        if not items:
            raise ExprError("reduce() of an empty array with no initial value")
        acc, start = items[0], 1
    for i in range(start, len(items)):
        child.item, child.index, child.acc = items[i], i, acc
        acc = body(child)
    return acc


PREDICATE_BUILTINS: dict[str, Callable[..., Any]] = {
    "all": _all,
    "any": _any,
    "none": _none,
    "one": _one,
    "filter": _filter,
    "map": _map,
    "count": _count,
    "sum": _sum,
    "find": _finder("find", False, False),
    "findIndex": _finder("findIndex", False, True),
    "findLast": _finder("findLast", True, False),
    "findLastIndex": _finder("findLastIndex", True, True),
    "groupBy": _group_by,
    "sortBy": _sort_by,
    "reduce": _reduce,
}


def _len(v: Any) -> int:
    return values.length(v)


BUILTINS: dict[str, Builtin] = {
    "len": _fn("len", 1, 1, _len),
    "type": _fn("type", 1, 1, type_name),
    "abs": _fn("abs", 1, 1, _abs),
    "int": _fn("int", 1, 1, values.to_int),
    "float": _fn("float", 1, 1, values.to_float),
    "asInt": _fn("asInt", 1, 1, values.to_int),
    "asFloat": _fn("asFloat", 1, 1, values.to_float),
    "string": _fn("string", 1, 1, go_sprint),
    "toJSON": _fn("toJSON", 1, 1, _to_json),
    "toJson": _fn("toJson", 1, 1, _to_json),
    "fromJSON": _fn("fromJSON", 1, 1, _from_json),
    "fromJson": _fn("fromJson", 1, 1, _from_json),
    "toBase64": _fn("toBase64", 1, 1, lambda s: base64.b64encode(_str("toBase64", s).encode()).decode()),
    "fromBase64": _fn("fromBase64", 1, 1, _base64_decode),
    "jsonpath": _fn_scoped("jsonpath", 2, 2, _jsonpath),
    "trim": _fn("trim", 1, 2, _trim),
    "trimPrefix": _fn(
        "trimPrefix", 2, 2, lambda s, p: _str("trimPrefix", s).removeprefix(_str("trimPrefix", p))
    ),
    "trimSuffix": _fn(
        "trimSuffix", 2, 2, lambda s, p: _str("trimSuffix", s).removesuffix(_str("trimSuffix", p))
    ),
    "upper": _fn("upper", 1, 1, lambda s: _str("upper", s).upper()),
    "lower": _fn("lower", 1, 1, lambda s: _str("lower", s).lower()),
    "split": _fn_scoped("split", 2, 3, _split),
    "splitAfter": _fn_scoped("splitAfter", 2, 3, _split_after),
    "replace": _fn_scoped("replace", 3, 3, _replace),
    "repeat": _fn_scoped("repeat", 2, 2, _repeat),
    "indexOf": _fn("indexOf", 2, 2, _index_of),
    "lastIndexOf": _fn("lastIndexOf", 2, 2, _last_index_of),
    "hasPrefix": _fn("hasPrefix", 2, 2, lambda s, p: _str("hasPrefix", s).startswith(_str("hasPrefix", p))),
    "hasSuffix": _fn("hasSuffix", 2, 2, lambda s, p: _str("hasSuffix", s).endswith(_str("hasSuffix", p))),
    "now": _fn_scoped("now", 0, 0, _now),
    "duration": _fn("duration", 1, 1, _duration),
    "date": _fn("date", 1, 3, _date),
    "max": _extreme("max", True),
    "min": _extreme("min", False),
    "ceil": _fn("ceil", 1, 1, _float_fn("ceil", lambda x: float(math.ceil(x)))),
    "floor": _fn("floor", 1, 1, _float_fn("floor", lambda x: float(math.floor(x)))),
    "round": _fn("round", 1, 1, _float_fn("round", _round_half_away)),
    "mean": _fn("mean", 1, 1, _mean),
    "median": _fn("median", 1, 1, _median),
    "join": _fn("join", 1, 2, _join),
    "first": _fn("first", 1, 1, _first),
    "last": _fn("last", 1, 1, _last),
    "take": _fn("take", 2, 2, _take),
    "reverse": _fn("reverse", 1, 1, _reverse),
    "sort": _fn("sort", 1, 2, _sort),
    "uniq": _fn_scoped("uniq", 1, 1, _uniq),
    "concat": _concat,
    "flatten": _fn_scoped("flatten", 1, 1, _flatten),
    "keys": _fn("keys", 1, 1, _keys),
    "values": _fn("values", 1, 1, _values),
    "toPairs": _fn("toPairs", 1, 1, _to_pairs),
    "fromPairs": _fn("fromPairs", 1, 1, _from_pairs),
    "get": _fn("get", 2, 2, _get),
    "bitand": _fn("bitand", 2, 2, _bit("bitand", lambda a, b: a & b)),
    "bitor": _fn("bitor", 2, 2, _bit("bitor", lambda a, b: a | b)),
    "bitxor": _fn("bitxor", 2, 2, _bit("bitxor", lambda a, b: a ^ b)),
    "bitnand": _fn("bitnand", 2, 2, _bit("bitnand", lambda a, b: a & ~b)),
    "bitnot": _fn("bitnot", 1, 1, lambda a: ~_int("bitnot", a)),
    "bitshl": _fn("bitshl", 2, 2, _shl),
    "bitshr": _fn("bitshr", 2, 2, _shr),
    "bitushr": _fn("bitushr", 2, 2, _ushr),
}
