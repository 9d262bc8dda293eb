"""A JSONPath subset for Argo's ``jsonpath(json, path)`` expression function.

Argo answers ``jsonpath`` with github.com/evilmonkeyinc/jsonpath. This module implements the parts
manifests use: ``$``, ``@``, ``.key``, ``['key']`` and ``["key"]``, ``[n]`` (negative counts from the
end), ``[*]`` and ``.*``, unions ``[0,2]`` / ``['a','b']``, slices ``[a:b:step]``, recursive descent
``..key`` / ``..*``, and filters ``[?(@.age > 42 && @.name == "x")]`` with comparisons, ``=~`` regular
expressions, ``!``, ``&&``, ``||``, parentheses and existence tests (``[?(@.isbn)]``).

A path made only of keys and single indexes ("definite") returns the value itself and fails when it
is absent; any wildcard, union, slice, filter or recursive descent returns a list of matches.
Called by the expr-lang builtins in :mod:`engine.expr.functions`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import ExprError

from .limits import MAX_DATA_DEPTH, Budget
from .regex import compile_regex
from .values import compare, equal, is_array, is_number

MAX_PATH = 4096


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str  # key | index | wildcard | union | slice | filter | descent
    keys: tuple[Any, ...] = ()
    slice_: tuple[int | None, int | None, int | None] = (None, None, None)
    filter_: Callable[[Any, Any], bool] | None = None
    definite: bool = True


@dataclass(frozen=True, slots=True)
class Path:
    source: str
    steps: tuple[_Step, ...]

    @property
    def definite(self) -> bool:
        return all(s.definite for s in self.steps)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def error(self, what: str) -> ExprError:
        return ExprError(f"invalid JSONPath {self.text!r}: {what} at position {self.i}")

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.text[j] if j < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek().isspace():
            self.i += 1

    def take(self, s: str) -> bool:
        if self.text.startswith(s, self.i):
            self.i += len(s)
            return True
        return False

    def name(self) -> str:
        start = self.i
        while self.peek() and (self.peek().isalnum() or self.peek() in "_-$"):
            self.i += 1
        if start == self.i:
            raise self.error("expected a name")
        return self.text[start : self.i]

    def string(self) -> str:
        quote = self.peek()
        self.i += 1
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                raise self.error("unterminated string")
            self.i += 1
            if c == quote:
                return "".join(out)
            if c == "\\" and self.peek():
                out.append(self.peek())
                self.i += 1
            else:
                out.append(c)

    def integer(self) -> int | None:
        self.skip_space()
        start = self.i
        if self.peek() == "-":
            self.i += 1
        while self.peek().isdigit():
            self.i += 1
        if self.i == start or self.text[start : self.i] == "-":
            self.i = start
            return None
        if self.i - start > 18:
            raise self.error("index too large")
        return int(self.text[start : self.i])


def _parse_steps(r: _Reader, *, stop: str = "") -> tuple[_Step, ...]:
    steps: list[_Step] = []
    while r.i < len(r.text):
        c = r.peek()
        if stop and c in stop:
            break
        if r.take(".."):
            if r.take("*"):
                steps.append(_Step("descent", definite=False))
                steps.append(_Step("wildcard", definite=False))
            elif r.peek() == "[":
                steps.append(_Step("descent", definite=False))
            else:
                steps.append(_Step("descent", definite=False))
                steps.append(_Step("key", (r.name(),), definite=False))
        elif r.take("."):
            if r.take("*"):
                steps.append(_Step("wildcard", definite=False))
            else:
                steps.append(_Step("key", (r.name(),)))
        elif r.take("["):
            steps.append(_bracket(r))
        else:
            raise r.error(f"unexpected {c!r}")
        if len(steps) > 256:
            raise r.error("path too long")
    return tuple(steps)


def _bracket(r: _Reader) -> _Step:
    r.skip_space()
    if r.take("*"):
        r.skip_space()
        if not r.take("]"):
            raise r.error("expected ]")
        return _Step("wildcard", definite=False)
    if r.take("?"):
        r.skip_space()
        if not r.take("("):
            raise r.error("expected ( after ?")
        predicate = _FilterParser(r).parse()
        r.skip_space()
        if not r.take(")"):
            raise r.error("expected ) to close the filter")
        r.skip_space()
        if not r.take("]"):
            raise r.error("expected ]")
        return _Step("filter", filter_=predicate, definite=False)
    keys: list[Any] = []
    while True:
        r.skip_space()
        if r.peek() in ("'", '"'):
            keys.append(r.string())
        else:
            start = r.integer()
            r.skip_space()
            if r.peek() == ":":
                return _slice(r, start)
            if start is None:
                raise r.error("expected an index, a quoted key, '*', a slice or a filter")
            keys.append(start)
        r.skip_space()
        if r.take("]"):
            break
        if not r.take(","):
            raise r.error("expected , or ]")
    if len(keys) == 1:
        kind = "index" if isinstance(keys[0], int) else "key"
        return _Step(kind, tuple(keys))
    return _Step("union", tuple(keys), definite=False)


def _slice(r: _Reader, start: int | None) -> _Step:
    parts: list[int | None] = [start]
    while r.take(":"):
        parts.append(r.integer())
        r.skip_space()
    if len(parts) > 3 or not r.take("]"):
        raise r.error("invalid slice")
    while len(parts) < 3:
        parts.append(None)
    if parts[2] == 0:
        raise r.error("slice step cannot be zero")
    return _Step("slice", slice_=(parts[0], parts[1], parts[2]), definite=False)


# --- filter expressions -----------------------------------------------------------------------------

_Expr = Callable[[Any, Any], Any]  # (current @ value, root $ value) -> value
_MISSING = object()


class _FilterParser:
    """``||`` < ``&&`` < ``!`` < comparison < operand, where operands are @/$ paths or literals."""

    def __init__(self, r: _Reader) -> None:
        self.r = r
        self.depth = 0

    def parse(self) -> Callable[[Any, Any], bool]:
        expr = self.disjunction()
        return lambda cur, root: _truthy(expr(cur, root))

    def disjunction(self) -> _Expr:
        left = self.conjunction()
        while True:
            self.r.skip_space()
            if not self.r.take("||"):
                return left
            right = self.conjunction()
            left = _or(left, right)

    def conjunction(self) -> _Expr:
        left = self.negation()
        while True:
            self.r.skip_space()
            if not self.r.take("&&"):
                return left
            right = self.negation()
            left = _and(left, right)

    def negation(self) -> _Expr:
        self.r.skip_space()
        if self.r.peek() == "!" and self.r.peek(1) != "=":
            self.r.i += 1
            inner = self.negation()
            return lambda cur, root: not _truthy(inner(cur, root))
        return self.comparison()

    def comparison(self) -> _Expr:
        left = self.operand()
        self.r.skip_space()
        for op in ("==", "!=", "<=", ">=", "=~", "<", ">"):
            if self.r.take(op):
                right = self.operand()
                return _comparison(op, left, right)
        return left

    def operand(self) -> _Expr:
        r = self.r
        r.skip_space()
        c = r.peek()
        if c == "(":
            self.depth += 1
            if self.depth > 32:
                raise r.error("filter nested too deeply")
            r.i += 1
            inner = self.disjunction()
            r.skip_space()
            if not r.take(")"):
                raise r.error("expected )")
            self.depth -= 1
            return inner
        if c in ("@", "$"):
            r.i += 1
            steps = _parse_steps(r, stop=" )=!<>&|,]~")
            path = Path(r.text, steps)
            use_root = c == "$"

            def read(cur: Any, root: Any) -> Any:
                found = _select(path, root if use_root else cur, Budget(100_000), strict=False)
                if path.definite:
                    return found[0] if found else _MISSING
                return found

            return read
        if c in ("'", '"'):
            text = r.string()
            return lambda cur, root: text
        if c == "/":
            # /regex/ literal as accepted by many JSONPath implementations.
            end = r.text.find("/", r.i + 1)
            if end < 0:
                raise r.error("unterminated regular expression")
            pattern = r.text[r.i + 1 : end]
            r.i = end + 1
            return lambda cur, root: pattern
        start = r.i
        while r.peek() and (r.peek().isalnum() or r.peek() in ".-+_"):
            r.i += 1
        word = r.text[start : r.i]
        if word == "true":
            return lambda cur, root: True
        if word == "false":
            return lambda cur, root: False
        if word == "null":
            return lambda cur, root: None
        try:
            number: float | int = int(word) if word.lstrip("-+").isdigit() else float(word)
        except ValueError:
            raise r.error(f"unexpected {word or c!r} in filter") from None
        return lambda cur, root: number


def _truthy(v: Any) -> bool:
    if v is _MISSING or v is None or v is False:
        return False
    if is_array(v) or isinstance(v, Mapping | str):
        return True
    return bool(v is True or is_number(v))


def _or(a: _Expr, b: _Expr) -> _Expr:
    return lambda cur, root: _truthy(a(cur, root)) or _truthy(b(cur, root))


def _and(a: _Expr, b: _Expr) -> _Expr:
    return lambda cur, root: _truthy(a(cur, root)) and _truthy(b(cur, root))


def _comparison(op: str, left: _Expr, right: _Expr) -> _Expr:
    def run(cur: Any, root: Any) -> bool:
        a, b = left(cur, root), right(cur, root)
        if a is _MISSING or b is _MISSING:
            return op == "!=" and not (a is _MISSING and b is _MISSING)
        if op == "==":
            return equal(a, b)
        if op == "!=":
            return not equal(a, b)
        if op == "=~":
            return isinstance(a, str) and isinstance(b, str) and compile_regex(b).matches(a)
        if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return compare(op, a, b)
        return False

    return run


# --- evaluation -------------------------------------------------------------------------------------


def _children(node: Any) -> list[Any]:
    if isinstance(node, Mapping):
        return [node[k] for k in sorted(node.keys(), key=str)]
    if is_array(node):
        return list(node)
    return []


def _descendants(node: Any, budget: Budget) -> list[Any]:
    """``node`` and everything below it, in document order (iterative: data may be deep)."""
    out: list[Any] = []
    stack: list[tuple[Any, int]] = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            raise ExprError("JSON document nested too deeply")
        budget.spend(1)
        out.append(current)
        stack.extend((child, depth + 1) for child in reversed(_children(current)))
    return out


def _apply(step: _Step, node: Any, root: Any, budget: Budget, strict: bool) -> list[Any]:
    kind = step.kind
    if kind == "key":
        key = step.keys[0]
        if isinstance(node, Mapping) and key in node:
            return [node[key]]
        if strict:
            raise ExprError(f"JSONPath key {key!r} not found")
        return []
    if kind == "index":
        index = step.keys[0]
        if is_array(node):
            i = index + len(node) if index < 0 else index
            if 0 <= i < len(node):
                return [node[i]]
            if strict:
                raise ExprError(f"JSONPath index {index} out of range")
            return []
        if strict:
            raise ExprError(f"JSONPath index {index} used on a non-array")
        return []
    if kind == "wildcard":
        return _children(node)
    if kind == "union":
        out: list[Any] = []
        for key in step.keys:
            sub = _Step("index" if isinstance(key, int) else "key", (key,))
            out.extend(_apply(sub, node, root, budget, False))
        return out
    if kind == "slice":
        if not is_array(node):
            return []
        start, stop, stride = step.slice_
        return list(node[slice(start, stop, stride)])
    if kind == "filter":
        assert step.filter_ is not None
        predicate = step.filter_
        return [child for child in _children(node) if predicate(child, root)]
    return _descendants(node, budget)


def _select(path: Path, root: Any, budget: Budget, *, strict: bool = True) -> list[Any]:
    """Every match of ``path``; a missing key or index fails only in a strict definite path."""
    current = [root]
    strict = strict and path.definite
    for step in path.steps:
        following: list[Any] = []
        for node in current:
            following.extend(_apply(step, node, root, budget, strict))
        budget.spend(len(following) + 1)
        current = following
    return current


@functools.lru_cache(maxsize=256)
def compile_path(text: str) -> Path:
    if not isinstance(text, str):
        raise ExprError("JSONPath must be a string")
    if len(text) > MAX_PATH:
        raise ExprError("JSONPath too long")
    r = _Reader(text.strip())
    if not r.take("$"):
        raise r.error("a path must start with $")
    steps = _parse_steps(r)
    return Path(text, steps)


def query(document: Any, path: str, budget: Budget) -> Any:
    """Evaluate ``path`` against already-decoded JSON."""
    compiled = compile_path(path)
    found = _select(compiled, document, budget)
    if compiled.definite:
        return found[0] if found else None
    return found
