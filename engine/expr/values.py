"""The value model of expressions and the operators on it, with expr-lang's typing rules.

Expression values are plain data: ``None`` (nil), ``bool``, ``int`` (int64 range), ``float``, ``str``,
any ``collections.abc.Mapping`` (the workflow core passes lazy mappings), ``list``/``tuple`` (arrays),
and this package's :class:`~engine.expr.times.Time` and :class:`~engine.expr.times.Duration`. Nothing
else is ever inspected: there is no attribute access on Python objects, so a value of any other type
can only be passed through or rejected. The evaluator and the builtin functions call these helpers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import ExprError

from .encoding import go_sprint
from .limits import MAX_DATA_DEPTH, Budget, check_int
from .times import Duration, Time, add_duration, parse_rfc3339, sub_times


def type_name(v: Any) -> str:
    """The name expr-lang's ``type()`` gives a value (also used in error messages)."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map"
    if isinstance(v, list | tuple):
        return "array"
    if isinstance(v, Time):
        return "time.Time"
    if isinstance(v, Duration):
        return "time.Duration"
    return "unknown"


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def is_array(v: Any) -> bool:
    return isinstance(v, list | tuple)


def describe(v: Any) -> str:
    """A short rendering of a value for error messages."""
    try:
        text = go_sprint(v) if type_name(v) != "unknown" else f"<{type(v).__name__}>"
    except ExprError:
        text = f"<{type_name(v)}>"
    return text if len(text) <= 60 else text[:57] + "..."


def mismatch(op: str, a: Any, b: Any) -> ExprError:
    types = f"mismatched types {type_name(a)} and {type_name(b)}"
    return ExprError(f"invalid operation: {describe(a)} {op} {describe(b)} ({types})")


def as_bool(v: Any, what: str) -> bool:
    if isinstance(v, bool):
        return v
    raise ExprError(f"{what} needs a bool, got {type_name(v)} {describe(v)}")


def _time_operand(v: Any) -> Time | None:
    """Times, and RFC 3339 strings standing in for them (the core may pass timestamps as text)."""
    if isinstance(v, Time):
        return v
    if isinstance(v, str):
        return parse_rfc3339(v)
    return None


# --- equality and ordering --------------------------------------------------------------------------


def equal(a: Any, b: Any, depth: int = 0) -> bool:
    """expr-lang ``==``: numbers compare across int/float, containers deeply, mixed types are unequal."""
    if depth > MAX_DATA_DEPTH:
        raise ExprError("values nested too deeply to compare")
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, Time) and isinstance(b, Time):
        return a.unix_nanos == b.unix_nanos
    if isinstance(a, Duration) and isinstance(b, Duration):
        return a.nanos == b.nanos
    if is_array(a) and is_array(b):
        return len(a) == len(b) and all(equal(x, y, depth + 1) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if len(a) != len(b):
            return False
        return all(key in b and equal(a[key], b[key], depth + 1) for key in a)
    return False


def compare(op: str, a: Any, b: Any) -> bool:
    """``< > <= >=`` on numbers, strings, times and durations."""
    x: Any
    y: Any
    if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
        x, y = a, b
    elif isinstance(a, Duration) and isinstance(b, Duration):
        x, y = a.nanos, b.nanos
    elif isinstance(a, Time) or isinstance(b, Time):
        ta, tb = _time_operand(a), _time_operand(b)
        if ta is None or tb is None:
            raise mismatch(op, a, b)
        x, y = ta.unix_nanos, tb.unix_nanos
    else:
        raise mismatch(op, a, b)
    if op == "<":
        return bool(x < y)
    if op == ">":
        return bool(x > y)
    if op == "<=":
        return bool(x <= y)
    return bool(x >= y)


# --- arithmetic -------------------------------------------------------------------------------------


def add(a: Any, b: Any, budget: Budget) -> Any:
    if is_number(a) and is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return check_int(a + b)
        return float(a) + float(b)
    if isinstance(a, str) and isinstance(b, str):
        budget.spend_string(len(a) + len(b))
        return a + b
    if isinstance(a, Time) and isinstance(b, Duration):
        return add_duration(a, b)
    if isinstance(a, Duration) and isinstance(b, Time):
        return add_duration(b, a)
    if isinstance(a, Duration) and isinstance(b, Duration):
        return Duration(check_int(a.nanos + b.nanos))
    raise mismatch("+", a, b)


def sub(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return check_int(a - b)
        return float(a) - float(b)
    if isinstance(a, Duration) and isinstance(b, Duration):
        return Duration(check_int(a.nanos - b.nanos))
    if isinstance(a, Time) and isinstance(b, Duration):
        return add_duration(a, Duration(-b.nanos))
    if isinstance(a, Time) or isinstance(b, Time):
        ta, tb = _time_operand(a), _time_operand(b)
        if ta is not None and tb is not None:
            return sub_times(ta, tb)
    raise mismatch("-", a, b)


def mul(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return check_int(a * b)
        return float(a) * float(b)
    if isinstance(a, Duration) and isinstance(b, int) and not isinstance(b, bool):
        return Duration(check_int(a.nanos * b))
    if isinstance(b, Duration) and isinstance(a, int) and not isinstance(a, bool):
        return Duration(check_int(b.nanos * a))
    raise mismatch("*", a, b)


def div(a: Any, b: Any) -> float:
    """``/`` always divides as float64, so ``1/0`` is +Inf as in Go."""
    if not (is_number(a) and is_number(b)):
        raise mismatch("/", a, b)
    x, y = float(a), float(b)
    if y == 0:
        if x == 0 or math.isnan(x):
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1, y)
    return x / y


def mod(a: Any, b: Any) -> int:
    if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
        raise mismatch("%", a, b)
    if b == 0:
        raise ExprError("integer divide by zero")
    # Go's remainder takes the sign of the dividend.
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def power(a: Any, b: Any) -> float:
    if not (is_number(a) and is_number(b)):
        raise mismatch("**", a, b)
    x, y = float(a), float(b)
    try:
        return math.pow(x, y)
    except OverflowError:
        # Go's math.Pow saturates to ±Inf.
        negative = x < 0 and y == int(y) and int(y) % 2 == 1
        return -math.inf if negative else math.inf
    except (ValueError, ZeroDivisionError):
        if x == 0 and y < 0:
            return math.inf
        return math.nan


def negate(v: Any) -> Any:
    if isinstance(v, bool):
        raise ExprError(f"invalid operation: -{describe(v)} (bool)")
    if isinstance(v, int):
        return check_int(-v)
    if isinstance(v, float):
        return -v
    if isinstance(v, Duration):
        return Duration(-v.nanos)
    raise ExprError(f"invalid operation: -{describe(v)} ({type_name(v)})")


def plus(v: Any) -> Any:
    if is_number(v):
        return v
    raise ExprError(f"invalid operation: +{describe(v)} ({type_name(v)})")


# --- membership and string operators ----------------------------------------------------------------


def contained_in(item: Any, container: Any) -> bool:
    """expr-lang ``in``: an element of an array, or a key of a map."""
    if container is None:
        return False
    if is_array(container):
        return any(equal(item, x) for x in container)
    if isinstance(container, Mapping):
        if not isinstance(item, str):
            raise ExprError(f"cannot use {type_name(item)} as a map key with 'in'")
        return item in container
    raise ExprError(f"operator 'in' not defined on {type_name(container)}")


def _strings(op: str, a: Any, b: Any) -> tuple[str, str]:
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    raise mismatch(op, a, b)


def str_contains(a: Any, b: Any) -> bool:
    x, y = _strings("contains", a, b)
    return y in x


def starts_with(a: Any, b: Any) -> bool:
    x, y = _strings("startsWith", a, b)
    return x.startswith(y)


def ends_with(a: Any, b: Any) -> bool:
    x, y = _strings("endsWith", a, b)
    return x.endswith(y)


# --- member access ----------------------------------------------------------------------------------


def fetch(obj: Any, key: Any) -> Any:
    """``obj[key]`` / ``obj.key``: map lookups give nil when absent, array indexes may be negative."""
    if isinstance(obj, Mapping):
        if not isinstance(key, str):
            raise ExprError(f"cannot use {type_name(key)} {describe(key)} as a map key")
        try:
            return obj[key]
        except KeyError:
            return None
    if is_array(obj) or isinstance(obj, str):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExprError(f"cannot index {type_name(obj)} with {type_name(key)} {describe(key)}")
        n = len(obj)
        i = key + n if key < 0 else key
        if not 0 <= i < n:
            raise ExprError(f"index out of range: {key} (array length is {n})")
        return obj[i]
    if obj is None:
        raise ExprError(f"cannot fetch {describe(key)} from nil")
    raise ExprError(f"cannot fetch {describe(key)} from {type_name(obj)}")


def slice_of(obj: Any, lo: Any, hi: Any, budget: Budget) -> Any:
    """``obj[lo:hi]`` on arrays and strings, clamped to the bounds like expr-lang."""
    if not (is_array(obj) or isinstance(obj, str)):
        raise ExprError(f"cannot slice {type_name(obj)}")
    n = len(obj)
    start = 0 if lo is None else lo
    end = n if hi is None else hi
    for bound in (start, end):
        if not isinstance(bound, int) or isinstance(bound, bool):
            raise ExprError(f"slice bounds must be integers, got {type_name(bound)}")
    if start < 0:
        start += n
    if end < 0:
        end += n
    start = max(0, min(start, n))
    end = max(start, min(end, n))
    budget.spend(end - start)
    part = obj[start:end]
    return list(part) if isinstance(part, tuple) else part


# --- conversions ------------------------------------------------------------------------------------

_GO_INT = re.compile(r"[+-]?[0-9]+\Z")
_GO_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)\Z", re.IGNORECASE
)


def parse_go_int(text: str) -> int | None:
    """``strconv.Atoi``: optional sign and decimal digits, nothing else."""
    if len(text) <= 40 and _GO_INT.match(text):
        value = int(text)
        return value if -(2**63) <= value < 2**63 else None
    return None


def parse_go_float(text: str) -> float | None:
    """``strconv.ParseFloat(s, 64)`` for decimal text (Python's extra spellings like ``1_0`` are refused)."""
    if len(text) <= 400 and _GO_FLOAT.match(text):
        return float(text)
    return None


def to_int(v: Any) -> int:
    """expr-lang ``int()`` (Argo's ``asInt``)."""
    if isinstance(v, bool):
        raise ExprError(f"cannot convert bool {describe(v)} to int")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ExprError(f"cannot convert {describe(v)} to int")
        return check_int(int(v))
    if isinstance(v, str):
        parsed = parse_go_int(v)
        if parsed is None:
            raise ExprError(f'strconv.Atoi: parsing "{v[:60]}": invalid syntax')
        return parsed
    if isinstance(v, Duration):
        return v.nanos
    raise ExprError(f"cannot convert {type_name(v)} to int")


def to_float(v: Any) -> float:
    """expr-lang ``float()`` (Argo's ``asFloat``)."""
    if isinstance(v, bool):
        raise ExprError(f"cannot convert bool {describe(v)} to float")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        parsed = parse_go_float(v)
        if parsed is None:
            raise ExprError(f'strconv.ParseFloat: parsing "{v[:60]}": invalid syntax')
        return parsed
    raise ExprError(f"cannot convert {type_name(v)} to float")


def dedupe(items: list[Any] | tuple[Any, ...], budget: Budget) -> list[Any]:
    """Items without repeats (by ``==``), first occurrence kept; scalars in linear time."""
    out: list[Any] = []
    seen: set[tuple[str, Any]] = set()
    containers: list[Any] = []
    for item in items:
        key = _scalar_key(item)
        if key is not None:
            if key not in seen:
                seen.add(key)
                out.append(item)
            continue
        # Containers are compared pairwise; charge for it so huge lists of maps cannot stall.
        budget.spend(len(containers) + 1)
        if not any(equal(item, other) for other in containers):
            containers.append(item)
            out.append(item)
    return out


def _scalar_key(v: Any) -> tuple[str, Any] | None:
    if v is None:
        return ("nil", None)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int | float):
        # 1 and 1.0 are equal in expr-lang and hash alike in Python.
        return ("number", v)
    if isinstance(v, str):
        return ("string", v)
    if isinstance(v, Time):
        return ("time", v.unix_nanos)
    if isinstance(v, Duration):
        return ("duration", v.nanos)
    return None


def length(v: Any) -> int:
    if isinstance(v, str | list | tuple | Mapping):
        return len(v)
    raise ExprError(f"invalid argument for len (type {type_name(v)})")


def as_list(v: Any, what: str) -> list[Any] | tuple[Any, ...]:
    if isinstance(v, list | tuple):
        return v
    raise ExprError(f"{what} expects an array, got {type_name(v)}")
