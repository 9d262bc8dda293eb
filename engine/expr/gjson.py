"""GJSON paths: how Argo Events reads a value out of an event's JSON ``data``.

A dependency's data filter ``path``, an expression filter's ``fields[].path`` and a trigger parameter's
``dataKey`` are tidwall/gjson paths. The events core calls :func:`get` / :func:`exists` on the decoded
payload and :func:`to_text` for the string form a parameter or a string filter sees.

The subset read here, with gjson's meaning:

* ``body.action``: keys separated by dots; on an array a key of digits is an index (``items.1.name``,
  ``header.X-Id.0``); a key may hold wildcards ``*`` (any run) and ``?`` (one character) and then names
  the first matching key in document order; ``\\`` makes the next character literal
  (``labels.app\\.kubernetes\\.io/name``).
* ``items.#`` is an array's length; ``items.#.name`` maps the rest of the path over the elements and
  keeps the results that exist.
* queries ``items.#(name=="x")`` (first match) and ``items.#(name=="x")#`` (all matches), with
  ``== != < <= > >=``, ``%`` / ``!%`` (wildcard like / not like) and a bare ``#(key)`` for existence;
  the key may itself be a path with queries.
* ``|`` separates like ``.`` except after ``#``: ``items.#|0`` does not map.
* multipaths ``[a,b.c]`` (an array of the results that exist) and ``{a,"n":b.c}`` (an object).
* modifiers ``@this``, ``@reverse``, ``@keys`` and ``@values``; any other ``@word`` is a plain key.

Deviation, on purpose: Argo's data-filter documentation writes multipaths without brackets
(``body.action,body.labels.#(name=="Webhook").name``). For gjson that is one odd key, which never
exists; here a top-level path with a comma that names no key is read as the bracketed multipath, so the
documented example works (its values, regexes matched unanchored, find ``"opened","Webhook"`` in the
result ``["opened","Webhook"]``).

Values are the JSON-decoded Python objects (dict, list, str, int, float, bool, None). A JSON ``null``
exists; a missing key does not. Paths are bounded in length and nesting and every step spends from a
work budget, since both path and payload may be hostile.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

from engine.errors import ExprError

from .limits import MAX_NESTING, MAX_SOURCE, Budget

__all__ = ["MISSING", "WORK", "exists", "get", "to_raw", "to_text"]


class _Missing:
    """The result of a path that names nothing (distinct from JSON null, which is None)."""

    __slots__ = ()


MISSING: Final = _Missing()

# Work units one lookup may spend: one per path step and per array element a query or ``#`` visits.
# Far above what mapping over a large real payload needs, and well under a second of work.
WORK = 1_000_000

# One character of a key pattern: (character, is_wildcard).
_Pattern = tuple[tuple[str, bool], ...]

_QUERY_OPS = ("==", "!=", "<=", ">=", "!%", "=", "<", ">", "%")


def get(data: Any, path: str) -> Any:
    """The value at ``path`` in ``data``; ExprError naming the path when it does not exist."""
    found = _Walk(path).lookup(data, path, 0)
    if found is MISSING:
        raise ExprError(f"path {_clip(path)!r} does not exist in the event data")
    return found


def exists(data: Any, path: str) -> bool:
    """Whether ``path`` names a value (JSON null included) in ``data``; ExprError for a malformed path."""
    return _Walk(path).lookup(data, path, 0) is not MISSING


def to_text(value: Any) -> str:
    """gjson's ``Result.String()``: strings as they are, ``true``/``false``, null as the empty string,
    numbers in plain decimal (``3``, ``2.5``, never an exponent), arrays and objects as compact JSON."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _plain_float(value)
    return to_raw(value)


def to_raw(value: Any) -> str:
    """gjson's ``Result.Raw``: the value as compact JSON in document order (strings quoted), as a
    trigger parameter with ``useRawData`` passes it on."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ExprError(f"cannot write the value as JSON: {exc}") from None


def _plain_float(f: float) -> str:
    # strconv.FormatFloat(f, 'f', -1, 64): shortest round-trip digits, never an exponent.
    if math.isnan(f) or math.isinf(f):
        raise ExprError("a JSON number cannot be NaN or infinite")
    return format(Decimal(repr(f)).normalize(), "f")


def _clip(path: str) -> str:
    return path if len(path) <= 200 else path[:197] + "..."


# --- path syntax ------------------------------------------------------------------------------------


def _skip_quoted(path: str, i: int) -> int:
    """Index just after the string literal opening at ``path[i]`` (a ``"``)."""
    i += 1
    while i < len(path):
        if path[i] == "\\":
            i += 2
            continue
        if path[i] == '"':
            return i + 1
        i += 1
    raise ExprError("unterminated string in path")


def _top_level(path: str) -> Iterator[tuple[int, str]]:
    """The characters of ``path`` outside queries, multipaths, string literals and escapes.

    A ``(`` or ``[`` opens a bracket only right after ``#`` (a query) and ``[``/``{`` only at the start
    (a multipath); elsewhere they are ordinary key characters, as in gjson.
    """
    depth = 0
    i = 0
    while i < len(path):
        c = path[i]
        if c == "\\":
            i += 2
            continue
        if depth:
            if c == '"':
                i = _skip_quoted(path, i)
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
        elif (c in "([" and i > 0 and path[i - 1] == "#") or (c in "[{" and i == 0):
            depth = 1
        else:
            yield i, c
        i += 1
    if depth:
        raise ExprError("unbalanced bracket in path")


@functools.lru_cache(maxsize=4096)
def _split(path: str) -> tuple[str, str, str]:
    """The first component of ``path``, the separator after it ("." / "|" / "") and the rest.

    Dots inside a query such as ``#(a.b=="x.y")`` do not split.
    """
    for i, c in _top_level(path):
        if c in ".|":
            return path[:i], c, path[i + 1 :]
    return path, "", ""


@functools.lru_cache(maxsize=4096)
def _pattern(key: str) -> tuple[_Pattern, bool]:
    """A key with its escapes resolved: each character flagged when it is an unescaped wildcard."""
    out: list[tuple[str, bool]] = []
    wild = False
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            out.append((key[i + 1], False))
            i += 2
            continue
        is_wild = c in "*?"
        wild = wild or is_wild
        out.append((c, is_wild))
        i += 1
    return tuple(out), wild


def _literal(pattern: _Pattern) -> str:
    return "".join(c for c, _ in pattern)


def _glob(text: str, pattern: _Pattern) -> bool:
    """Wildcard match of the whole ``text``: ``*`` any run, ``?`` one character.

    The classic two-pointer scan with one backtrack point: O(len(text) * len(pattern)) at worst, never
    exponential.
    """
    t = p = 0
    star_p, star_t = -1, 0
    while t < len(text):
        if p < len(pattern):
            c, is_wild = pattern[p]
            if is_wild and c == "*":
                star_p, star_t = p, t
                p += 1
                continue
            if (is_wild and c == "?") or c == text[t]:
                t += 1
                p += 1
                continue
        if star_p < 0:
            return False
        star_t += 1
        t, p = star_t, star_p + 1
    while p < len(pattern) and pattern[p] == ("*", True):
        p += 1
    return p == len(pattern)


def _split_selectors(path: str) -> tuple[list[tuple[str | None, str]], str]:
    """The ``[a,b]`` / ``{a,"n":b}`` opening ``path``: its (name, sub-path) items and the text after it."""
    items: list[tuple[str | None, str]] = []
    depth = 1
    start = 1
    colon = -1
    i = 1
    while i < len(path):
        c = path[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            i = _skip_quoted(path, i)
            continue
        if c in "([{":
            depth += 1
        elif c == ":" and depth == 1 and colon < 0:
            colon = i
        elif c in ",)]}":
            if c != ",":
                depth -= 1
            if depth == 0 or (c == "," and depth == 1):
                if colon >= 0:
                    name_text = path[start:colon].strip()
                    name = _unquote(name_text) if name_text.startswith('"') else name_text
                    items.append((name, path[colon + 1 : i]))
                else:
                    items.append((None, path[start:i]))
                start, colon = i + 1, -1
                if depth == 0:
                    return items, path[i + 1 :]
        i += 1
    raise ExprError("unbalanced bracket in multipath")


def _unquote(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        raise ExprError(f"invalid string {text!r} in path") from None
    if not isinstance(value, str):
        raise ExprError(f"invalid string {text!r} in path")
    return value


def _last_name(path: str) -> str:
    """The key a multipath object gives an unnamed item: the last component of its path."""
    name = path
    while True:
        head, sep, rest = _split(name)
        if not sep:
            return _literal(_pattern(head)[0]) or "_"
        name = rest


def _has_top_level_comma(path: str) -> bool:
    return any(c == "," for _, c in _top_level(path))


# --- evaluation -------------------------------------------------------------------------------------


class _Walk:
    """One evaluation of a path against a document, with its work budget."""

    __slots__ = ("budget",)

    def __init__(self, path: str) -> None:
        if not isinstance(path, str):
            raise ExprError(f"a path must be a string, not {type(path).__name__}")
        if len(path) > MAX_SOURCE:
            raise ExprError(f"path longer than {MAX_SOURCE} characters")
        self.budget = Budget(WORK)

    def lookup(self, value: Any, path: str, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise ExprError(f"path {_clip(path)!r} is nested too deeply")
        self.budget.spend(1 + (len(path) >> 6))
        if not path:
            return MISSING
        if path[0] in "[{":
            return self._multipath(value, path, depth)
        head, sep, rest = _split(path)
        if depth == 0 and _has_top_level_comma(path):
            found = self._step(value, head, sep, rest, depth)
            if found is not MISSING:
                return found
            return self._multipath(value, "[" + path + "]", depth)
        return self._step(value, head, sep, rest, depth)

    def _continue(self, value: Any, rest: str, depth: int) -> Any:
        if value is MISSING:
            return MISSING
        return self.lookup(value, rest, depth + 1) if rest else value

    def _step(self, value: Any, head: str, sep: str, rest: str, depth: int) -> Any:
        if sep and not rest:
            return MISSING  # a path ending in "." or "|" names nothing
        if head == "#" and isinstance(value, list | tuple):
            if sep == "." and rest:
                return self._map(value, rest, depth)
            return self._continue(len(value), rest, depth)
        if head.startswith(("#(", "#[")):
            return self._query(value, head, sep, rest, depth)
        if head.startswith("@"):
            modified = self._modifier(value, head[1:])
            if modified is not None:
                return self._continue(modified[0], rest, depth)
        return self._continue(self._key(value, head), rest, depth)

    def _map(self, items: list[Any] | tuple[Any, ...], rest: str, depth: int) -> list[Any]:
        self.budget.spend(len(items))
        out: list[Any] = []
        for item in items:
            found = self.lookup(item, rest, depth + 1)
            if found is not MISSING:
                out.append(found)
        return out

    def _key(self, value: Any, head: str) -> Any:
        pattern, wild = _pattern(head)
        if isinstance(value, Mapping):
            if not wild:
                return value.get(_literal(pattern), MISSING)
            self.budget.spend(len(value))
            for key in value:
                if isinstance(key, str) and _glob(key, pattern):
                    return value[key]
            return MISSING
        if isinstance(value, list | tuple) and not wild:
            text = _literal(pattern)
            if text.isascii() and text.isdigit():
                index = int(text)
                return value[index] if index < len(value) else MISSING
        return MISSING

    def _modifier(self, value: Any, name: str) -> tuple[Any] | None:
        """The result of ``@name`` in a one-element tuple, or None when it is no modifier we know."""
        if name == "this":
            return (value,)
        if name == "reverse":
            if isinstance(value, list | tuple):
                return (list(reversed(value)),)
            if isinstance(value, Mapping):
                return ({k: value[k] for k in reversed(list(value))},)
            return (value,)
        if name == "keys" and isinstance(value, Mapping):
            return (list(value),)
        if name == "values" and isinstance(value, Mapping):
            return (list(value.values()),)
        return None

    def _multipath(self, value: Any, path: str, depth: int) -> Any:
        items, after = _split_selectors(path)
        built: Any
        if path[0] == "[":
            built = [
                found
                for _, sub in items
                if sub and (found := self.lookup(value, sub, depth + 1)) is not MISSING
            ]
        else:
            built = {}
            for name, sub in items:
                if sub and (found := self.lookup(value, sub, depth + 1)) is not MISSING:
                    built.setdefault(name if name is not None else _last_name(sub), found)
        if not after:
            return built
        if after[0] in ".|":
            return self._continue(built, after[1:], depth) if after[1:] else MISSING
        raise ExprError(f"unexpected {after!r} after a multipath")

    # --- queries ------------------------------------------------------------------------------------

    def _query(self, value: Any, head: str, sep: str, rest: str, depth: int) -> Any:
        close = ")" if head[1] == "(" else "]"
        body, everything = _query_body(head, close)
        if not isinstance(value, list | tuple):
            return MISSING
        sub_path, op, expected = _parse_condition(body)
        self.budget.spend(len(value))
        if not everything:
            for item in value:
                if self._matches(item, sub_path, op, expected, depth):
                    return self._continue(item, rest, depth)
            return MISSING
        matched = [item for item in value if self._matches(item, sub_path, op, expected, depth)]
        if sep == "." and rest:
            return self._map(matched, rest, depth)
        return self._continue(matched, rest, depth)

    def _matches(self, item: Any, sub_path: str, op: str, expected: str, depth: int) -> bool:
        found = self.lookup(item, sub_path, depth + 1) if sub_path else item
        if found is MISSING:
            return False
        if not op:
            return True
        return _compare(found, op, expected)


def _query_body(head: str, close: str) -> tuple[str, bool]:
    """The condition inside ``#(...)`` and whether a ``#`` after it asks for every match."""
    end = len(head) - 1
    everything = head.endswith(close + "#")
    if everything:
        end -= 1
    if end < 2 or head[end] != close:
        raise ExprError(f"malformed query {head!r} in path")
    return head[2:end], everything


def _parse_condition(body: str) -> tuple[str, str, str]:
    """(key path, operator, right-hand literal) of a query condition; the operator may be empty."""
    i = 0
    n = len(body)
    depth = 0
    while i < n:
        c = body[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            i = _skip_quoted(body, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (c in "!=<>%" or c.isspace()):
            break
        i += 1
    sub_path = body[:i].strip()
    tail = body[i:].strip()
    if not tail:
        return sub_path, "", ""
    for op in _QUERY_OPS:
        if tail.startswith(op):
            return sub_path, "=" if op == "==" else op, tail[len(op) :].strip()
    raise ExprError(f"malformed query condition {body!r} in path")


def _compare(found: Any, op: str, literal: str) -> bool:
    """gjson's query comparison of a found value with the condition's right-hand side."""
    if isinstance(found, bool):
        truth = "true" if found else "false"
        table = {
            ("true", "="): literal == "true",
            ("true", "!="): literal != "true",
            ("true", ">"): literal == "false",
            ("true", ">="): True,
            ("false", "="): literal == "false",
            ("false", "!="): literal != "false",
            ("false", "<"): literal == "true",
            ("false", "<="): True,
        }
        return table.get((truth, op), False)
    if isinstance(found, int | float):
        try:
            number = float(literal)
        except ValueError:
            number = 0.0  # strconv.ParseFloat's zero on error
        return _ordered(float(found), op, number)
    if isinstance(found, str):
        text = _unquote(literal) if literal.startswith('"') else literal
        if op in ("%", "!%"):
            hit = _glob(found, _pattern(text)[0])
            return hit if op == "%" else not hit
        return _ordered(found, op, text)
    return False


def _ordered(a: Any, op: str, b: Any) -> bool:
    if op == "=":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    return False
