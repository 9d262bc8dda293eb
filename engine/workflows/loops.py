"""Loop expansion: ``withItems``, ``withParam`` and ``withSequence`` turn one step or task into many.

Each item yields a child named ``<name>(<index>:<summary>)`` and a set of variables (``item``,
``item.<key>``) substituted into the step. Items keep Argo's string forms: numbers as written, maps as
JSON with ``item.key`` for each field. Used by the steps and DAG frames.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.errors import SluiceError
from engine.spec.fields import scalar_str
from engine.spec.workflow import Sequence

MAX_ITEMS = 100_000


class LoopError(SluiceError):
    """A loop could not be expanded (bad JSON in withParam, bad sequence)."""


def _go_value(v: Any) -> str:
    """How Go's %v prints a decoded JSON value (close enough for names and item.key values)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "<nil>"
    if isinstance(v, int | float):
        return scalar_str(v)
    if isinstance(v, list):
        return "[" + " ".join(_go_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def item_variables(item: Any) -> tuple[dict[str, Any], str]:
    """Variables an item contributes and its summary for the child's name."""
    if isinstance(item, dict):
        variables: dict[str, Any] = {"item": json.dumps(item, separators=(",", ":"))}
        parts = []
        for k, v in item.items():
            variables[f"item.{k}"] = (
                v
                if isinstance(v, str)
                else _go_value(v)
                if not isinstance(v, dict | list)
                else json.dumps(v, separators=(",", ":"))
            )
            parts.append(f"{k}:{_go_value(v)}")
        summary = ",".join(sorted(parts))
        return variables, summary
    if isinstance(item, list):
        return {"item": json.dumps(item, separators=(",", ":"))}, _go_value(item)
    if isinstance(item, str):
        return {"item": item}, item
    if item is None:
        raise LoopError("withItems entries must be strings, numbers, booleans, lists or maps, not null")
    text = scalar_str(item)
    return {"item": text}, text


def child_name(name: str, index: int, summary: str) -> str:
    # Argo strips parentheses from the summary so names stay parseable.
    return f"{name}({index}:{summary.replace('(', '').replace(')', '')})"


def parse_with_param(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise LoopError(
            f"withParam value could not be parsed as a JSON list: {text.strip()}: {exc}"
        ) from None
    if not isinstance(value, list):
        raise LoopError(f"withParam value could not be parsed as a JSON list: {text.strip()}")
    if len(value) > MAX_ITEMS:
        raise LoopError(f"withParam expands to {len(value)} items, more than the limit of {MAX_ITEMS}")
    return value


_GO_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([vdsxXobcqeEfFgG%])")


def go_sprintf(fmt: str, n: int) -> str:
    """Format one integer with a Go printf format (``%02d``, ``%X``, ``%v``...)."""

    def repl(m: re.Match[str]) -> str:
        flags, width, prec, verb = m.groups()
        if verb == "%":
            return "%"
        spec = "%" + flags + width + (f".{prec}" if prec else "")
        if verb in ("v", "d", "s", "q"):
            return (spec + "d") % n
        if verb == "b":
            digits = format(n, "b")
            return digits.rjust(int(width or 0), "0" if "0" in flags else " ")
        if verb == "c":
            return chr(n)
        return (spec + verb) % n

    return _GO_VERB.sub(repl, fmt)


def expand_sequence(seq: Sequence, substitute: Any) -> list[str]:
    def num(v: Any, what: str) -> int | None:
        if v is None:
            return None
        text = substitute(str(v)) if isinstance(v, str) else v
        try:
            return int(text)
        except (TypeError, ValueError):
            raise LoopError(f"withSequence.{what}: {text!r} is not an integer") from None

    count = num(seq.count, "count")
    start = num(seq.start, "start")
    end = num(seq.end, "end")
    if count is not None and end is not None:
        raise LoopError("withSequence: only one of count or end can be defined")
    fmt = seq.format or "%d"
    first = start or 0
    if count is not None:
        if count < 0:
            raise LoopError("withSequence.count must not be negative")
        values = range(first, first + count)
    elif end is not None:
        values = range(first, end + 1) if end >= first else range(first, end - 1, -1)
    else:
        raise LoopError("withSequence: one of count or end must be defined")
    if len(values) > MAX_ITEMS:
        raise LoopError(f"withSequence expands to {len(values)} items, more than the limit of {MAX_ITEMS}")
    return [go_sprintf(fmt, v) for v in values]
