"""Turning expression values into text the way Go does.

Argo's functions run in Go, so users see Go's spellings: ``toJson`` is ``encoding/json`` (sorted keys,
no spaces, ``<`` escaped as ``\\u003c``, ``1e+21`` but ``100000``), while ``string()``, sprig's
``toString`` and govaluate's string concatenation use ``fmt``'s ``%v`` (``map[a:1]``, ``[1 2]``,
``1e+06``, ``<nil>``). The evaluator, the builtins, sprig, govaluate and template substitution share
these encoders.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.errors import ExprError

from .limits import MAX_DATA_DEPTH
from .times import RFC3339_NANO, Duration, Time, format_time


def _digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of |f| and the decimal point position (digits * 10**(dp-n))."""
    _, digit_tuple, exponent = Decimal(repr(abs(f))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0", 1
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return stripped, len(stripped) + exponent


def _fixed(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _exp(digits: str, dp: int, min_exp_digits: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    e = dp - 1
    return f"{mantissa}e{'-' if e < 0 else '+'}{abs(e):0{min_exp_digits}d}"


def go_float(f: float) -> str:
    """``fmt.Sprint(f)`` for a float64: shortest digits, exponent form from 1e+06 or below 1e-04."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    digits, dp = _digits(f)
    sign = "-" if f < 0 else ""
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return sign + _exp(digits, dp, 2)
    return sign + _fixed(digits, dp)


def json_float(f: float) -> str:
    """``encoding/json``'s spelling of a float64 (``1e-7``, ``1e+21``, otherwise plain decimals)."""
    if math.isnan(f) or math.isinf(f):
        raise ExprError(f"json: unsupported value: {go_float(f)}")
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    digits, dp = _digits(f)
    sign = "-" if f < 0 else ""
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        return sign + _exp(digits, dp, 1)
    return sign + _fixed(digits, dp)


_HTML_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def json_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).translate(_HTML_SAFE)


def to_json(value: Any, *, indent: str = "") -> str:
    """``json.Marshal`` (or ``MarshalIndent`` with ``indent``) of an expression value."""
    out: list[str] = []
    _encode(value, out, indent, 0)
    return "".join(out)


def _encode(v: Any, out: list[str], indent: str, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise ExprError("value nested too deeply to encode as JSON")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(json_float(v))
    elif isinstance(v, str):
        out.append(json_string(v))
    elif isinstance(v, Mapping):
        items = sorted((k if isinstance(k, str) else go_sprint(k), val) for k, val in v.items())
        if not items:
            out.append("{}")
            return
        out.append("{")
        for i, (key, val) in enumerate(items):
            if i:
                out.append(",")
            if indent:
                out.append("\n" + indent * (depth + 1))
            out.append(json_string(key))
            out.append(": " if indent else ":")
            _encode(val, out, indent, depth + 1)
        if indent:
            out.append("\n" + indent * depth)
        out.append("}")
    elif isinstance(v, list | tuple):
        if not v:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            if indent:
                out.append("\n" + indent * (depth + 1))
            _encode(item, out, indent, depth + 1)
        if indent:
            out.append("\n" + indent * depth)
        out.append("]")
    elif isinstance(v, Time):
        out.append(json_string(format_time(v, RFC3339_NANO)))
    elif isinstance(v, Duration):
        out.append(str(v.nanos))
    else:
        raise ExprError(f"json: unsupported type {type(v).__name__}")


def from_json(text: str) -> Any:
    """Parse JSON text.

    Go decodes every JSON number as float64. We keep integers that float64 represents exactly as
    ints (so ``asInt``-free arithmetic and ``%`` work and ``1`` prints as ``1``), and read larger
    ones as floats, as Go would.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:
        raise ExprError(f"invalid JSON: {exc}") from exc


def _json_int(literal: str) -> int | float:
    if len(literal) > 400:
        raise ValueError("number literal too long")
    value = int(literal)
    return value if -(2**53) <= value <= 2**53 else float(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def go_sprint(v: Any, depth: int = 0) -> str:
    """``fmt.Sprint(v)`` / ``%v``: ``<nil>``, ``[1 2]``, ``map[a:1 b:2]``, ``1e+06``."""
    if depth > MAX_DATA_DEPTH:
        raise ExprError("value nested too deeply to format")
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        keys = sorted(v.keys(), key=lambda k: (not isinstance(k, str), str(k)))
        return (
            "map[" + " ".join(f"{go_sprint(k, depth + 1)}:{go_sprint(v[k], depth + 1)}" for k in keys) + "]"
        )
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_sprint(x, depth + 1) for x in v) + "]"
    if isinstance(v, Time | Duration):
        return str(v)
    raise ExprError(f"cannot format a value of type {type(v).__name__}")


def substitution_text(v: Any) -> str:
    """The text a ``{{= }}`` tag is replaced with: strings as they are, other values as compact JSON.

    Times are written in RFC 3339 and durations in Go's ``1h2m3s`` form rather than as JSON, so they
    can be fed back into ``date()``/``duration()``.
    """
    if isinstance(v, str):
        return v
    if isinstance(v, Time):
        return format_time(v, RFC3339_NANO)
    if isinstance(v, Duration):
        return str(v)
    return to_json(v)
