"""DAG ``depends`` conditions: ``A && (B.Succeeded || B.Failed) && !C.Skipped``.

The workflow core calls :func:`parse_depends` once per task (results are cached) and evaluates the
condition whenever the dependencies' states change, passing a ``status_of(task, result)`` callback.
An operand is a task name, which may contain hyphens (``should-execute-2``), optionally followed by a
result: ``Succeeded``, ``Failed``, ``Errored``, ``Skipped``, ``Omitted``, ``Daemoned``, ``AnySucceeded``
or ``AllFailed``. A bare name asks ``status_of(task, None)``; the core decides what that means (Argo:
Succeeded, Skipped or Daemoned, plus Failed/Errored under ``continueOn``). Operators are ``&&``, ``||``,
``!`` (and expr-lang's spellings ``and``, ``or``, ``not``) with parentheses. Argo evaluates ``depends``
with expr-lang after replacing ``-`` with ``_``; a dedicated grammar gives the same results without that
renaming trick and without arithmetic on names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import ExprError

from .limits import MAX_NESTING, MAX_SOURCE

RESULTS = frozenset(
    {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed"}
)

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_WORDS = {"and": "&&", "or": "||", "not": "!"}

# ("task", name, result | None) | ("not", node) | ("and", nodes) | ("or", nodes)
_Node = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, str, str | None, int]]:
    """Tokens as (kind, text, result, position); kind is "task", "&&", "||", "!", "(" or ")"."""
    tokens: list[tuple[str, str, str | None, int]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if text.startswith("&&", i) or text.startswith("||", i):
            tokens.append((text[i : i + 2], text[i : i + 2], None, i))
            i += 2
            continue
        if c in "!()":
            tokens.append((c, c, None, i))
            i += 1
            continue
        m = _NAME.match(text, i)
        if m is None:
            raise ExprError(f"invalid character {c!r} at position {i + 1} in depends {text!r}")
        name = m.group(0)
        i = m.end()
        if name in _WORDS:
            tokens.append((_WORDS[name], name, None, m.start()))
            continue
        result: str | None = None
        if text.startswith(".", i):
            r = re.compile(r"[A-Za-z]+").match(text, i + 1)
            if r is None:
                raise ExprError(f"missing result after '{name}.' in depends {text!r}")
            result = r.group(0)
            if result not in RESULTS:
                raise ExprError(
                    f"unknown task result {result!r} for '{name}' in depends {text!r} "
                    f"(expected one of {', '.join(sorted(RESULTS))})"
                )
            i = r.end()
        tokens.append(("task", name, result, m.start()))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def error(self, what: str) -> ExprError:
        at_end = self.pos >= len(self.tokens)
        where = "at the end" if at_end else f"at position {self.tokens[self.pos][3] + 1}"
        return ExprError(f"{what} {where} in depends {self.text!r}")

    def kind(self) -> str:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else ""

    def parse(self) -> _Node:
        if not self.tokens:
            raise ExprError("empty depends expression")
        node = self.disjunction()
        if self.pos < len(self.tokens):
            raise self.error(f"unexpected {self.tokens[self.pos][1]!r}")
        return node

    def disjunction(self) -> _Node:
        items = [self.conjunction()]
        while self.kind() == "||":
            self.pos += 1
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else ("or", tuple(items))

    def conjunction(self) -> _Node:
        items = [self.negation()]
        while self.kind() == "&&":
            self.pos += 1
            items.append(self.negation())
        return items[0] if len(items) == 1 else ("and", tuple(items))

    def negation(self) -> _Node:
        if self.kind() == "!":
            self.pos += 1
            self.enter()
            inner = self.negation()
            self.depth -= 1
            return ("not", inner)
        return self.operand()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError(f"depends expression too deeply nested: {self.text[:80]!r}")

    def operand(self) -> _Node:
        kind = self.kind()
        if kind == "task":
            _, name, result, _ = self.tokens[self.pos]
            self.pos += 1
            return ("task", name, result)
        if kind == "(":
            self.pos += 1
            self.enter()
            inner = self.disjunction()
            if self.kind() != ")":
                raise self.error("missing ')'")
            self.pos += 1
            self.depth -= 1
            return inner
        if not kind:
            raise self.error("expected a task name")
        raise self.error(f"unexpected {self.tokens[self.pos][1]!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Depends:
    """A parsed ``depends`` condition."""

    source: str
    _tree: _Node

    def task_names(self) -> frozenset[str]:
        """Every task the condition mentions."""
        names: set[str] = set()
        stack = [self._tree]
        while stack:
            node = stack.pop()
            if node[0] == "task":
                names.add(node[1])
            elif node[0] == "not":
                stack.append(node[1])
            else:
                stack.extend(node[1])
        return frozenset(names)

    def operands(self) -> frozenset[tuple[str, str | None]]:
        """Every (task, result) pair the condition asks about."""
        found: set[tuple[str, str | None]] = set()
        stack = [self._tree]
        while stack:
            node = stack.pop()
            if node[0] == "task":
                found.add((node[1], node[2]))
            elif node[0] == "not":
                stack.append(node[1])
            else:
                stack.extend(node[1])
        return frozenset(found)

    def evaluate(self, status_of: Callable[[str, str | None], bool]) -> bool:
        """True when the condition holds; ``status_of(task, result)`` answers each operand."""
        return _evaluate(self._tree, status_of)


def _evaluate(node: _Node, status_of: Callable[[str, str | None], bool]) -> bool:
    kind = node[0]
    if kind == "task":
        return bool(status_of(node[1], node[2]))
    if kind == "not":
        return not _evaluate(node[1], status_of)
    if kind == "and":
        return all(_evaluate(child, status_of) for child in node[1])
    return any(_evaluate(child, status_of) for child in node[1])


@functools.lru_cache(maxsize=4096)
def parse_depends(text: str) -> Depends:
    """Parse a ``depends`` string (cached); raises ExprError when it is malformed."""
    if not isinstance(text, str):
        raise ExprError(f"depends must be a string, not {type(text).__name__}")
    if len(text) > MAX_SOURCE:
        raise ExprError(f"depends expression longer than {MAX_SOURCE} characters")
    return Depends(text, _Parser(text).parse())
