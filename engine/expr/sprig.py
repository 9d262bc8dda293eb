"""The ``sprig.<fn>(...)`` namespace of Argo expressions: Sprig v3 functions with Go semantics.

Argo exposes Sprig's generic function map (minus ``env`` and ``expandenv``) to ``{{= }}`` expressions.
Sprig is forgiving: most functions turn bad input into a zero value (``sprig.int("x")`` is 0,
``sprig.fromJson("{")`` is nil, ``sprig.b64dec`` of garbage returns the decoder's error text), and we
keep that behaviour because manifests rely on it. Argument order follows Sprig's template order
(``sprig.trimPrefix("v", s)``, ``sprig.replace(old, new, s)``, ``sprig.contains(sub, s)``). Randomness
(``uuidv4``, ``randAlpha``), the host environment and the clock are not available, except ``now``,
which reads the caller-supplied ``__now__``. Called by the evaluator for ``sprig.*`` calls.

Deviation from Sprig kept on purpose: ``date``/``dateInZone`` also accept RFC 3339 strings and float
epoch seconds (Sprig would silently use the current time for them), since Argo's own variables such
as ``workflow.creationTimestamp`` are strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import zlib
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.errors import ExprError

from .encoding import from_json, go_sprint, to_json
from .limits import check_int
from .regex import compile_regex
from .scope import Scope
from .times import (
    NANOS,
    Duration,
    Time,
    add_duration,
    format_time,
    in_location,
    parse_duration,
    parse_rfc3339,
    parse_time,
)
from .values import dedupe, describe, equal, is_array, parse_go_float, parse_go_int, type_name

SprigFunction = Callable[[Scope, list[Any]], Any]

_ZERO_TIME = Time(-62135596800 * NANOS)


# --- Go/cast conversions ----------------------------------------------------------------------------


def strval(v: Any) -> str:
    """Sprig's ``strval``: strings as they are, everything else through ``%v``."""
    return v if isinstance(v, str) else go_sprint(v)


def strslice(v: Any) -> list[str]:
    if v is None:
        return []
    if is_array(v):
        return [strval(x) for x in v if x is not None]
    return [strval(v)]


def _parse_int_any_base(text: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)`` after cast's trimming of a zero decimal part (``"10.0"``)."""
    s = text
    if "." in s:
        whole, _, frac = s.partition(".")
        if frac.strip("0") == "" and whole:
            s = whole
    if not s or len(s) > 70:
        return None
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base = 10
    low = s.lower()
    if low.startswith(("0x", "0o", "0b")):
        base = {"x": 16, "o": 8, "b": 2}[low[1]]
        s = s[2:]
    elif len(s) > 1 and s.startswith("0"):
        base = 8
        s = s[1:]
    if not s or "__" in s or s.startswith("_") or s.endswith("_"):
        return None
    try:
        value = sign * int(s, base)
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None


def to_int64(v: Any) -> int:
    """``cast.ToInt64``: numbers truncate, numeric strings parse, anything else is 0."""
    if v is True:
        return 1
    if v is False or v is None:
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return 0
        return max(-(2**63), min(2**63 - 1, int(v)))
    if isinstance(v, str):
        parsed = _parse_int_any_base(v)
        return parsed if parsed is not None else 0
    if isinstance(v, Duration):
        return v.nanos
    return 0


def to_float64(v: Any) -> float:
    """``cast.ToFloat64``."""
    if v is True:
        return 1.0
    if v is False or v is None:
        return 0.0
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        parsed = parse_go_float(v)
        return parsed if parsed is not None else 0.0
    return 0.0


def _dec(v: Any) -> Decimal:
    f = to_float64(v)
    if math.isnan(f) or math.isinf(f):
        return Decimal(0)
    return Decimal(repr(f))


def empty(v: Any) -> bool:
    """Sprig's ``empty``: nil, false, 0, and empty strings, lists and maps."""
    if v is None or v is False:
        return True
    if v is True:
        return False
    if isinstance(v, int | float):
        return v == 0
    if isinstance(v, str | list | tuple | Mapping):
        return len(v) == 0
    return False


def _list(name: str, v: Any) -> list[Any] | tuple[Any, ...]:
    if isinstance(v, list | tuple):
        return v
    raise ExprError(f"sprig.{name}: cannot use {type_name(v)} as a list")


def _dict(name: str, v: Any) -> Mapping[str, Any]:
    if isinstance(v, Mapping):
        return v
    raise ExprError(f"sprig.{name}: cannot use {type_name(v)} as a dict")


def _int_arg(name: str, v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise ExprError(f"sprig.{name}: expected an integer argument, got {type_name(v)} {describe(v)}")


def _str_arg(name: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    raise ExprError(f"sprig.{name}: expected a string argument, got {type_name(v)} {describe(v)}")


def go_quote(s: str) -> str:
    """``fmt.Sprintf("%q", s)``: a double-quoted Go string literal."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append(
                {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}[
                    ch
                ]
            )
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _go_type(v: Any) -> str:
    """``%T`` of the Go value Argo would hold."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if is_array(v):
        return "[]interface {}"
    if isinstance(v, Time):
        return "time.Time"
    if isinstance(v, Duration):
        return "time.Duration"
    return "unknown"


def _go_kind(v: Any) -> str:
    kinds = {
        "<nil>": "invalid",
        "map[string]interface {}": "map",
        "[]interface {}": "slice",
        "time.Time": "struct",
        "time.Duration": "int64",
    }
    t = _go_type(v)
    return kinds.get(t, t)


# --- math -------------------------------------------------------------------------------------------


def _add(*args: Any) -> int:
    return check_int(sum(to_int64(a) for a in args))


def _mul(a: Any, *rest: Any) -> int:
    product = to_int64(a)
    for b in rest:
        product = check_int(product * to_int64(b))
    return product


def _div(a: Any, b: Any) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise ExprError("sprig.div: integer divide by zero")
    q = abs(x) // abs(y)
    return check_int(q if (x >= 0) == (y >= 0) else -q)


def _mod(a: Any, b: Any) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise ExprError("sprig.mod: integer divide by zero")
    r = abs(x) % abs(y)
    return -r if x < 0 else r


def _max(a: Any, *rest: Any) -> int:
    return max([to_int64(a), *(to_int64(b) for b in rest)])


def _min(a: Any, *rest: Any) -> int:
    return min([to_int64(a), *(to_int64(b) for b in rest)])


def _float_result(d: Decimal) -> float:
    try:
        return float(d)
    except (InvalidOperation, OverflowError):
        return math.inf


def _addf(*args: Any) -> float:
    return _float_result(sum((_dec(a) for a in args), Decimal(0)))


def _subf(a: Any, *rest: Any) -> float:
    total = _dec(a)
    for b in rest:
        total -= _dec(b)
    return _float_result(total)


def _mulf(a: Any, *rest: Any) -> float:
    total = _dec(a)
    for b in rest:
        total *= _dec(b)
    return _float_result(total)


def _divf(a: Any, *rest: Any) -> float:
    total = _dec(a)
    for b in rest:
        divisor = _dec(b)
        if divisor == 0:
            raise ExprError("sprig.divf: division by zero")
        total /= divisor
    return _float_result(total)


def _round(a: Any, places: Any, half: Any = 0.5) -> float:
    value = to_float64(a)
    p = to_int64(places)
    if math.isnan(value) or math.isinf(value) or abs(p) > 300:
        return value
    scale = 10.0**p
    digit = value * scale
    frac, _ = math.modf(digit)
    rounded = math.ceil(digit) if frac >= to_float64(half) else math.floor(digit)
    return rounded / scale


# --- strings ----------------------------------------------------------------------------------------


def _substr(start: Any, end: Any, s: Any) -> str:
    text = _str_arg("substr", s)
    a, b = _int_arg("substr", start), _int_arg("substr", end)
    # Go slices these indexes and panics out of range; Argo reports that as an error.
    a = max(a, 0)
    if b < 0 or b > len(text):
        b = len(text)
    if a > b:
        raise ExprError(f"sprig.substr: slice bounds out of range [{a}:{b}]")
    return text[a:b]


def _trunc(c: Any, s: Any) -> str:
    text, n = _str_arg("trunc", s), _int_arg("trunc", c)
    if n < 0 and len(text) + n > 0:
        return text[len(text) + n :]
    if n >= 0 and len(text) > n:
        return text[:n]
    return text


def _abbrev(width: Any, s: Any) -> str:
    text, w = _str_arg("abbrev", s), _int_arg("abbrev", width)
    if w < 4 or len(text) <= w:
        return text
    return text[: w - 3] + "..."


def _title(s: Any) -> str:
    text = _str_arg("title", s)
    out: list[str] = []
    prev_sep = True
    for ch in text:
        out.append(ch.upper() if prev_sep else ch)
        prev_sep = not (ch.isalnum() or ch == "_") if ch.isascii() else ch.isspace()
    return "".join(out)


def _untitle(s: Any) -> str:
    text = _str_arg("untitle", s)
    out: list[str] = []
    prev_space = True
    for ch in text:
        out.append(ch.lower() if prev_space else ch)
        prev_space = ch.isspace()
    return "".join(out)


def _indent(scope: Scope, spaces: Any, s: Any) -> str:
    n = _int_arg("indent", spaces)
    pad = " " * max(n, 0)
    text = _str_arg("indent", s)
    scope.budget.spend_string(len(text) + len(pad) * (text.count("\n") + 1))
    return pad + text.replace("\n", "\n" + pad)


def _repeat(scope: Scope, count: Any, s: Any) -> str:
    n, text = _int_arg("repeat", count), _str_arg("repeat", s)
    if n < 0:
        raise ExprError("sprig.repeat: negative repeat count")
    scope.budget.spend_string(len(text) * n)
    return text * n


def _replace(scope: Scope, old: Any, new: Any, src: Any) -> str:
    a, b, text = _str_arg("replace", old), _str_arg("replace", new), _str_arg("replace", src)
    if a == "":
        scope.budget.spend_string(len(text) + (len(text) + 1) * len(b))
        return b + b.join(text) + b if text else b
    scope.budget.spend_string(len(text) + text.count(a) * max(0, len(b) - len(a)))
    return text.replace(a, b)


def _split_map(sep: Any, s: Any) -> dict[str, str]:
    parts = _str_arg("split", s).split(_str_arg("split", sep)) if sep != "" else list(_str_arg("split", s))
    return {f"_{i}": p for i, p in enumerate(parts)}


def _splitn(sep: Any, n: Any, s: Any) -> dict[str, str]:
    limit = _int_arg("splitn", n)
    text, delim = _str_arg("splitn", s), _str_arg("splitn", sep)
    if limit == 0:
        return {}
    parts = text.split(delim, limit - 1 if limit > 0 else -1) if delim else list(text)
    return {f"_{i}": p for i, p in enumerate(parts)}


def _split_list(sep: Any, s: Any) -> list[str]:
    text, delim = _str_arg("splitList", s), _str_arg("splitList", sep)
    return text.split(delim) if delim else list(text)


def _b64dec(s: Any) -> str:
    try:
        return base64.b64decode(strval(s), validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError) as exc:
        # Sprig returns the decoder's error message as the result.
        return f"illegal base64 data: {exc}"


def _b32dec(s: Any) -> str:
    try:
        return base64.b32decode(strval(s)).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError) as exc:
        return f"illegal base32 data: {exc}"


def _to_json(v: Any) -> str:
    try:
        return to_json(v)
    except ExprError:
        return ""


def _to_raw_json(v: Any) -> str:
    encoded = _to_json(v)
    return encoded.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")


def _from_json(v: Any) -> Any:
    try:
        return from_json(strval(v))
    except ExprError:
        return None


def _must_from_json(v: Any) -> Any:
    return from_json(_str_arg("mustFromJson", v))


# --- lists and dicts --------------------------------------------------------------------------------


def _first(v: Any) -> Any:
    if v is None:
        return None
    items = _list("first", v)
    return items[0] if items else None


def _last(v: Any) -> Any:
    if v is None:
        return None
    items = _list("last", v)
    return items[-1] if items else None


def _has(needle: Any, haystack: Any) -> bool:
    if not is_array(haystack):
        return False
    return any(equal(needle, x) for x in haystack)


def _slice(v: Any, *indexes: Any) -> list[Any]:
    items = list(_list("slice", v))
    bounds = [_int_arg("slice", i) for i in indexes[:2]]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(items)
    if not 0 <= start <= end <= len(items):
        raise ExprError(f"sprig.slice: slice bounds out of range [{start}:{end}]")
    return items[start:end]


def _uniq(scope: Scope, v: Any) -> list[Any]:
    items = _list("uniq", v)
    scope.budget.spend(len(items))
    return dedupe(items, scope.budget)


def _without(v: Any, *omit: Any) -> list[Any]:
    return [x for x in _list("without", v) if not any(equal(x, o) for o in omit)]


def _dict_of(*pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(pairs), 2):
        out[strval(pairs[i])] = pairs[i + 1] if i + 1 < len(pairs) else ""
    return out


def _get(d: Any, key: Any) -> Any:
    m = _dict("get", d)
    k = _str_arg("get", key)
    try:
        return m[k]
    except KeyError:
        return ""


def _set(d: Any, key: Any, value: Any) -> dict[str, Any]:
    out = dict(_dict("set", d))
    out[_str_arg("set", key)] = value
    return out


def _unset(d: Any, key: Any) -> dict[str, Any]:
    out = dict(_dict("unset", d))
    out.pop(_str_arg("unset", key), None)
    return out


def _keys(*dicts: Any) -> list[str]:
    out: list[str] = []
    for d in dicts:
        out.extend(sorted(_dict("keys", d).keys(), key=str))
    return out


def _values(d: Any) -> list[Any]:
    m = _dict("values", d)
    return [m[k] for k in sorted(m.keys(), key=str)]


def _pick(d: Any, *keys: Any) -> dict[str, Any]:
    m = _dict("pick", d)
    return {k: m[k] for k in map(strval, keys) if k in m}


def _omit(d: Any, *keys: Any) -> dict[str, Any]:
    m = _dict("omit", d)
    drop = set(map(strval, keys))
    return {k: m[k] for k in m if k not in drop}


def _pluck(key: Any, *dicts: Any) -> list[Any]:
    k = _str_arg("pluck", key)
    return [d[k] for d in dicts if isinstance(d, Mapping) and k in d]


def _merge(dst: Any, *srcs: Any) -> dict[str, Any]:
    out = dict(_dict("merge", dst))
    for src in srcs:
        for k, v in _dict("merge", src).items():
            out.setdefault(k, v)
    return out


def _until(scope: Scope, n: Any) -> list[int]:
    count = _int_arg("until", n)
    step = 1 if count >= 0 else -1
    scope.budget.spend(abs(count))
    return list(range(0, count, step))


def _until_step(scope: Scope, start: Any, stop: Any, step: Any) -> list[int]:
    a, b, s = _int_arg("untilStep", start), _int_arg("untilStep", stop), _int_arg("untilStep", step)
    if s == 0 or (s > 0 and a >= b) or (s < 0 and a <= b):
        return []
    scope.budget.spend(abs((b - a) // s))
    return list(range(a, b, s))


# --- dates ------------------------------------------------------------------------------------------


def _as_time(scope: Scope, v: Any) -> Time:
    if isinstance(v, Time):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return Time.from_epoch(v)
    if isinstance(v, str):
        parsed = parse_rfc3339(v)
        if parsed is not None:
            return parsed
    # Sprig falls back to the current time for values it cannot read as a time.
    return scope.now()


def _date_in_zone(scope: Scope, layout: Any, t: Any, zone: Any) -> str:
    when = in_location(_as_time(scope, t), _str_arg("dateInZone", zone))
    return format_time(when, _str_arg("dateInZone", layout))


def _to_date(layout: Any, value: Any) -> Time:
    try:
        return parse_time(_str_arg("toDate", layout), _str_arg("toDate", value))
    except ExprError:
        return _ZERO_TIME


def _date_modify(scope: Scope, modifier: Any, t: Any) -> Time:
    when = _as_time(scope, t)
    try:
        return add_duration(when, parse_duration(_str_arg("dateModify", modifier)))
    except ExprError:
        return when


def _duration_of(sec: Any) -> str:
    if isinstance(sec, str):
        seconds = _parse_int_any_base(sec) if sec.isdigit() or sec[:1] in "+-" else None
        n = seconds or 0
    elif isinstance(sec, int) and not isinstance(sec, bool):
        n = sec
    else:
        n = 0
    return str(Duration(check_int(n * NANOS)))


def _ago(scope: Scope, t: Any) -> str:
    elapsed = scope.now().unix_nanos - _as_time(scope, t).unix_nanos
    return str(Duration((elapsed // NANOS) * NANOS))


# --- regular expressions ----------------------------------------------------------------------------


def _regex_match(regex: Any, s: Any) -> bool:
    try:
        return compile_regex(_str_arg("regexMatch", regex)).matches(strval(s))
    except ExprError:
        return False


def _must_regex_match(regex: Any, s: Any) -> bool:
    return compile_regex(_str_arg("mustRegexMatch", regex)).matches(strval(s))


def _regex_find(regex: Any, s: Any) -> str:
    found = compile_regex(_str_arg("regexFind", regex)).find(strval(s))
    return found or ""


def _regex_find_all(regex: Any, s: Any, n: Any) -> list[str]:
    text = strval(s)
    spans = compile_regex(_str_arg("regexFindAll", regex)).find_all(text, _int_arg("regexFindAll", n))
    return [text[sp[0] : sp[1]] for sp in spans if sp[0] is not None and sp[1] is not None]


def _regex_replace_all(scope: Scope, regex: Any, s: Any, repl: Any) -> str:
    r = compile_regex(_str_arg("regexReplaceAll", regex))
    text, template = strval(s), _str_arg("regexReplaceAll", repl)
    result = r.replace_all(text, lambda spans: r.expand(template, text, spans))
    scope.budget.spend_string(len(result))
    return result


def _regex_replace_all_literal(scope: Scope, regex: Any, s: Any, repl: Any) -> str:
    r = compile_regex(_str_arg("regexReplaceAllLiteral", regex))
    literal = _str_arg("regexReplaceAllLiteral", repl)
    result = r.replace_all(strval(s), lambda spans: literal)
    scope.budget.spend_string(len(result))
    return result


def _regex_split(regex: Any, s: Any, n: Any) -> list[str]:
    """Go's ``Regexp.Split``."""
    text, limit = strval(s), _int_arg("regexSplit", n)
    if limit == 0:
        return []
    r = compile_regex(_str_arg("regexSplit", regex))
    if r.pattern == "" and len(text) > 0:
        parts = list(text)
        if 0 < limit < len(parts):
            parts = [*parts[: limit - 1], "".join(parts[limit - 1 :])]
        return parts
    matches = r.find_all(text, -1)
    out: list[str] = []
    begin = 0
    for spans in matches:
        start, end = spans[0], spans[1]
        assert start is not None and end is not None
        if limit > 0 and len(out) == limit - 1:
            break
        if end == 0:
            continue
        out.append(text[begin:start])
        begin = end
    out.append(text[begin:])
    return out


def _quote_meta(s: Any) -> str:
    text = _str_arg("regexQuoteMeta", s)
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in text)


# --- semver -----------------------------------------------------------------------------------------


def _parse_semver(text: str) -> tuple[int, int, int, tuple[Any, ...]] | None:
    v = text.strip().removeprefix("v")
    core, _, _build = v.partition("+")
    core, _, pre = core.partition("-")
    parts = core.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    pre_key: tuple[Any, ...] = ()
    if pre:
        pre_key = tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in pre.split("."))
    return nums[0], nums[1], nums[2], pre_key


def _semver_key(v: tuple[int, int, int, tuple[Any, ...]]) -> tuple[Any, ...]:
    # A release sorts after all its pre-releases.
    return (v[0], v[1], v[2], 1 if not v[3] else 0, v[3])


def _semver_satisfies(constraint: str, version: tuple[int, int, int, tuple[Any, ...]]) -> bool:
    key = _semver_key(version)
    for alternative in constraint.split("||"):
        ok = True
        clauses = alternative.replace(",", " ").split()
        if not clauses:
            ok = False
        for clause in clauses:
            op = ""
            for candidate in (">=", "<=", "!=", "==", ">", "<", "=", "~", "^"):
                if clause.startswith(candidate):
                    op, clause = candidate, clause[len(candidate) :]
                    break
            target = _parse_semver(clause.replace("x", "0").replace("*", "0"))
            if target is None:
                raise ExprError(f"sprig.semverCompare: improper constraint {constraint!r}")
            t = _semver_key(target)
            if op in ("", "=", "=="):
                good = key == t
            elif op == "!=":
                good = key != t
            elif op == ">":
                good = key > t
            elif op == ">=":
                good = key >= t
            elif op == "<":
                good = key < t
            elif op == "<=":
                good = key <= t
            elif op == "~":
                good = key >= t and (version[0], version[1]) == (target[0], target[1])
            else:
                good = key >= t and (version[0] == target[0] if target[0] else version[1] == target[1])
            ok = ok and good
        if ok:
            return True
    return False


def _semver_compare(constraint: Any, version: Any) -> bool:
    parsed = _parse_semver(_str_arg("semverCompare", version))
    if parsed is None:
        raise ExprError(f"sprig.semverCompare: invalid semantic version {version!r}")
    return _semver_satisfies(_str_arg("semverCompare", constraint), parsed)


# --- table ------------------------------------------------------------------------------------------


def _plain(impl: Callable[..., Any]) -> SprigFunction:
    def call(scope: Scope, args: list[Any]) -> Any:
        return impl(*args)

    return call


def _scoped(impl: Callable[..., Any]) -> SprigFunction:
    def call(scope: Scope, args: list[Any]) -> Any:
        return impl(scope, *args)

    return call


def _default(d: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return d
    return given[0]


def _coalesce(*args: Any) -> Any:
    for v in args:
        if not empty(v):
            return v
    return None


def _ternary(yes: Any, no: Any, cond: Any) -> Any:
    if not isinstance(cond, bool):
        raise ExprError(f"sprig.ternary: condition must be a bool, got {type_name(cond)}")
    return yes if cond else no


def _fail(message: Any) -> Any:
    raise ExprError(f"sprig.fail: {strval(message)}")


def _sha(algorithm: str) -> Callable[[Any], str]:
    return lambda s: hashlib.new(algorithm, strval(s).encode()).hexdigest()


def _parse_decimal(text: str) -> int:
    """``strconv.Atoi`` with Sprig's habit of returning 0 on error."""
    value = parse_go_int(text)
    return value if value is not None else 0


def _semver_map(v: Any) -> dict[str, Any]:
    parsed = _parse_semver(_str_arg("semver", v))
    if parsed is None:
        raise ExprError(f"sprig.semver: invalid semantic version {v!r}")
    text = _str_arg("semver", v).removeprefix("v")
    pre = text.partition("+")[0].partition("-")[2]
    return {"Major": parsed[0], "Minor": parsed[1], "Patch": parsed[2], "Prerelease": pre, "Original": v}


FUNCTIONS: dict[str, SprigFunction] = {
    # math
    "add": _plain(_add),
    "add1": _plain(lambda a: check_int(to_int64(a) + 1)),
    "sub": _plain(lambda a, b: check_int(to_int64(a) - to_int64(b))),
    "mul": _plain(_mul),
    "div": _plain(_div),
    "mod": _plain(_mod),
    "max": _plain(_max),
    "biggest": _plain(_max),
    "min": _plain(_min),
    "addf": _plain(_addf),
    "add1f": _plain(lambda a: _addf(a, 1)),
    "subf": _plain(_subf),
    "mulf": _plain(_mulf),
    "divf": _plain(_divf),
    "maxf": _plain(lambda a, *r: max([to_float64(a), *map(to_float64, r)])),
    "minf": _plain(lambda a, *r: min([to_float64(a), *map(to_float64, r)])),
    "floor": _plain(
        lambda a: float(math.floor(to_float64(a))) if math.isfinite(to_float64(a)) else to_float64(a)
    ),
    "ceil": _plain(
        lambda a: float(math.ceil(to_float64(a))) if math.isfinite(to_float64(a)) else to_float64(a)
    ),
    "round": _plain(_round),
    # conversions
    "int": _plain(to_int64),
    "int64": _plain(to_int64),
    "float64": _plain(to_float64),
    "atoi": _plain(lambda s: _parse_decimal(strval(s))),
    "toString": _plain(strval),
    "toStrings": _plain(strslice),
    "toDecimal": _plain(lambda s: _parse_int_any_base("0o" + strval(s)) or 0),
    # strings
    "upper": _plain(lambda s: _str_arg("upper", s).upper()),
    "lower": _plain(lambda s: _str_arg("lower", s).lower()),
    "title": _plain(_title),
    "untitle": _plain(_untitle),
    "trim": _plain(lambda s: _str_arg("trim", s).strip()),
    "trimAll": _plain(lambda cut, s: _str_arg("trimAll", s).strip(_str_arg("trimAll", cut))),
    "trimPrefix": _plain(lambda p, s: _str_arg("trimPrefix", s).removeprefix(_str_arg("trimPrefix", p))),
    "trimSuffix": _plain(lambda p, s: _str_arg("trimSuffix", s).removesuffix(_str_arg("trimSuffix", p))),
    "replace": _scoped(_replace),
    "contains": _plain(lambda sub, s: _str_arg("contains", sub) in _str_arg("contains", s)),
    "hasPrefix": _plain(lambda p, s: _str_arg("hasPrefix", s).startswith(_str_arg("hasPrefix", p))),
    "hasSuffix": _plain(lambda p, s: _str_arg("hasSuffix", s).endswith(_str_arg("hasSuffix", p))),
    "split": _plain(_split_map),
    "splitn": _plain(_splitn),
    "splitList": _plain(_split_list),
    "join": _plain(lambda sep, v: _str_arg("join", sep).join(strslice(v))),
    "repeat": _scoped(_repeat),
    "substr": _plain(_substr),
    "trunc": _plain(_trunc),
    "abbrev": _plain(_abbrev),
    "nospace": _plain(lambda s: "".join(ch for ch in _str_arg("nospace", s) if not ch.isspace())),
    "cat": _plain(lambda *args: " ".join(strval(a) for a in args if a is not None)),
    "indent": _scoped(_indent),
    "nindent": _scoped(lambda scope, n, s: "\n" + _indent(scope, n, s)),
    "quote": _plain(lambda *args: " ".join(go_quote(strval(a)) for a in args if a is not None)),
    "squote": _plain(lambda *args: " ".join("'" + strval(a) + "'" for a in args if a is not None)),
    "plural": _plain(lambda one, many, n: one if to_int64(n) == 1 else many),
    # encodings and hashes
    "b64enc": _plain(lambda s: base64.b64encode(strval(s).encode()).decode()),
    "b64dec": _plain(_b64dec),
    "b32enc": _plain(lambda s: base64.b32encode(strval(s).encode()).decode()),
    "b32dec": _plain(_b32dec),
    "sha1sum": _plain(_sha("sha1")),
    "sha256sum": _plain(_sha("sha256")),
    "sha512sum": _plain(_sha("sha512")),
    "adler32sum": _plain(lambda s: str(zlib.adler32(strval(s).encode()))),
    "toJson": _plain(_to_json),
    "mustToJson": _plain(to_json),
    "toPrettyJson": _plain(lambda v: to_json(v, indent="  ")),
    "mustToPrettyJson": _plain(lambda v: to_json(v, indent="  ")),
    "toRawJson": _plain(_to_raw_json),
    "fromJson": _plain(_from_json),
    "mustFromJson": _plain(_must_from_json),
    # defaults and flow
    "default": _plain(_default),
    "empty": _plain(empty),
    "coalesce": _plain(_coalesce),
    "ternary": _plain(_ternary),
    "fail": _plain(_fail),
    # lists
    "list": _plain(lambda *args: list(args)),
    "tuple": _plain(lambda *args: list(args)),
    "first": _plain(_first),
    "last": _plain(_last),
    "rest": _plain(lambda v: list(_list("rest", v)[1:])),
    "initial": _plain(lambda v: list(_list("initial", v)[:-1])),
    "append": _plain(lambda v, x: [*_list("append", v), x]),
    "push": _plain(lambda v, x: [*_list("push", v), x]),
    "prepend": _plain(lambda v, x: [x, *_list("prepend", v)]),
    "concat": _plain(lambda *vs: [x for v in vs for x in _list("concat", v)]),
    "reverse": _plain(lambda v: list(reversed(_list("reverse", v)))),
    "uniq": _scoped(_uniq),
    "without": _plain(_without),
    "has": _plain(_has),
    "compact": _plain(lambda v: [x for x in _list("compact", v) if not empty(x)]),
    "slice": _plain(_slice),
    "sortAlpha": _plain(lambda v: sorted(strslice(v))),
    "until": _scoped(_until),
    "untilStep": _scoped(_until_step),
    # dicts
    "dict": _plain(_dict_of),
    "get": _plain(_get),
    "set": _plain(_set),
    "unset": _plain(_unset),
    "hasKey": _plain(lambda d, k: _str_arg("hasKey", k) in _dict("hasKey", d)),
    "keys": _plain(_keys),
    "values": _plain(_values),
    "pick": _plain(_pick),
    "omit": _plain(_omit),
    "pluck": _plain(_pluck),
    "merge": _plain(_merge),
    # dates
    "now": _scoped(lambda scope: scope.now()),
    "date": _scoped(lambda scope, layout, t: _date_in_zone(scope, layout, t, "Local")),
    "dateInZone": _scoped(_date_in_zone),
    "date_in_zone": _scoped(_date_in_zone),
    "htmlDate": _scoped(lambda scope, t: _date_in_zone(scope, "2006-01-02", t, "Local")),
    "htmlDateInZone": _scoped(lambda scope, t, z: _date_in_zone(scope, "2006-01-02", t, z)),
    "unixEpoch": _scoped(lambda scope, t: str(_as_time(scope, t).unix())),
    "toDate": _plain(_to_date),
    "dateModify": _scoped(_date_modify),
    "date_modify": _scoped(_date_modify),
    "duration": _plain(_duration_of),
    "ago": _scoped(_ago),
    # regular expressions
    "regexMatch": _plain(_regex_match),
    "mustRegexMatch": _plain(_must_regex_match),
    "regexFind": _plain(_regex_find),
    "mustRegexFind": _plain(_regex_find),
    "regexFindAll": _plain(_regex_find_all),
    "mustRegexFindAll": _plain(_regex_find_all),
    "regexReplaceAll": _scoped(_regex_replace_all),
    "mustRegexReplaceAll": _scoped(_regex_replace_all),
    "regexReplaceAllLiteral": _scoped(_regex_replace_all_literal),
    "mustRegexReplaceAllLiteral": _scoped(_regex_replace_all_literal),
    "regexSplit": _plain(_regex_split),
    "mustRegexSplit": _plain(_regex_split),
    "regexQuoteMeta": _plain(_quote_meta),
    # reflection
    "typeOf": _plain(_go_type),
    "kindOf": _plain(_go_kind),
    "typeIs": _plain(lambda t, v: _str_arg("typeIs", t) == _go_type(v)),
    "kindIs": _plain(lambda k, v: _str_arg("kindIs", k) == _go_kind(v)),
    "deepEqual": _plain(equal),
    # versions
    "semver": _plain(_semver_map),
    "semverCompare": _plain(_semver_compare),
}


def call(name: str) -> SprigFunction:
    """The implementation of ``sprig.<name>``; ExprError when Sprig has no such function here."""
    impl = FUNCTIONS.get(name)
    if impl is None:
        raise ExprError(f"unknown sprig function sprig.{name}")

    def guarded(scope: Scope, args: list[Any]) -> Any:
        try:
            return impl(scope, args)
        except TypeError:
            # Argument-count mismatches surface as TypeError from the Python implementation.
            raise ExprError(f"wrong number of arguments to sprig.{name} ({len(args)} given)") from None

    return guarded
