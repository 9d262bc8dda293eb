"""Durations as manifests write them: Go duration strings (``1h30m``, ``500ms``) or bare seconds.

Argo fields such as ``suspend.duration``, ``retryStrategy.backoff.*``, ``timeout`` and
``deleteDelayDuration`` take either form. Used by validation and by the workflow core.
"""

from __future__ import annotations

import math
import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    # Not Go, but common in manifests (Argo's own ParseStringToDuration accepts days).
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")


def parse_duration(value: str | int | float, *, default_unit_seconds: bool = True) -> float:
    """Seconds in ``value``; raises ValueError with a readable message when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    text = value.strip()
    if not text:
        raise ValueError("invalid duration '': empty")
    if default_unit_seconds:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if number < 0 or math.isnan(number):
                raise ValueError(f"invalid duration {value!r}")
            return number
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            raise ValueError(
                f"invalid duration {value!r}: expected a number and a unit (ns, us, ms, s, m, h)"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if sign < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return total


def format_duration(seconds: float) -> str:
    """Short human form used in messages and the CLI: ``1h2m3s``, ``45s``, ``0s``."""
    s = round(seconds)
    if s <= 0:
        return "0s"
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    out = ""
    if h:
        out += f"{h}h"
    if m:
        out += f"{m}m"
    if sec or not out:
        out += f"{sec}s"
    return out


def duration_or(value: str | None, default: float) -> float:
    """Seconds in ``value``, or ``default`` when it is empty or not a duration (settings such as
    podGC's deleteDelayDuration, which validation has already reported)."""
    if not value:
        return default
    try:
        return parse_duration(value)
    except ValueError:
        return default
