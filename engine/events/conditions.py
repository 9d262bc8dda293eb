"""A trigger's ``conditions``: a boolean expression over dependency names (``a && (b || c)``).

The language is tiny: names, ``&&``, ``||``, ``!`` and parentheses; a name is true when an event for
that dependency is held. Names may contain ``-`` and ``.`` (there is no arithmetic to confuse them
with). Without ``conditions`` a trigger needs every dependency of its sensor. Parsed once per trigger
spec by the sensor core (:mod:`engine.events.sensor`) and by validation; pure, bounded, no eval.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from engine.errors import ExprError

MAX_CONDITIONS = 4096
MAX_DEPTH = 64
_TOKEN = re.compile(r"\s*(?:(&&|\|\|)|([()!])|([A-Za-z0-9_][-A-Za-z0-9_.]*))", re.ASCII)


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "&&" or "||"
    operands: tuple[Condition, ...]


Condition = Name | Not | BoolOp


@dataclass(frozen=True, slots=True)
class Conditions:
    """A parsed expression, the names it reads and whether it is a plain OR of names."""

    source: str
    tree: Condition
    names: frozenset[str]
    pure_or: bool

    def holds(self, satisfied: Collection[str]) -> bool:
        return _holds(self.tree, satisfied)


def _holds(node: Condition, satisfied: Collection[str]) -> bool:
    if isinstance(node, Name):
        return node.name in satisfied
    if isinstance(node, Not):
        return not _holds(node.operand, satisfied)
    if node.op == "&&":
        return all(_holds(o, satisfied) for o in node.operands)
    return any(_holds(o, satisfied) for o in node.operands)


def _names(node: Condition) -> frozenset[str]:
    if isinstance(node, Name):
        return frozenset({node.name})
    if isinstance(node, Not):
        return _names(node.operand)
    return frozenset().union(*(_names(o) for o in node.operands))


def _is_pure_or(node: Condition) -> bool:
    if isinstance(node, Name):
        return True
    if isinstance(node, BoolOp) and node.op == "||":
        return all(_is_pure_or(o) for o in node.operands)
    return False


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None or m.end() == i:
            if text[i:].strip() == "":
                break
            raise ExprError(f"unexpected {text[i:].lstrip()[:20]!r} at offset {i}", expression=text)
        tokens.append(m.group(1) or m.group(2) or m.group(3))
        i = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str, tokens: Sequence[str]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def fail(self, what: str) -> ExprError:
        return ExprError(what, expression=self.text)

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise self.fail("unexpected end of expression")
        self.i += 1
        return tok

    def expr(self, op: str = "||") -> Condition:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep")
        inner = "&&" if op == "||" else None
        parts = [self.expr(inner) if inner else self.unary()]
        while self.peek() == op:
            self.take()
            parts.append(self.expr(inner) if inner else self.unary())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else BoolOp(op, tuple(parts))

    def unary(self) -> Condition:
        tok = self.take()
        if tok == "!":
            return Not(self.unary())
        if tok == "(":
            inner = self.expr()
            if self.take() != ")":
                raise self.fail("expected ')'")
            return inner
        if tok in ("&&", "||", ")"):
            raise self.fail(f"unexpected {tok!r}")
        return Name(tok)


@functools.lru_cache(maxsize=1024)
def parse_conditions(text: str) -> Conditions:
    """Parse ``text``; raises ExprError naming what is wrong."""
    if len(text) > MAX_CONDITIONS:
        raise ExprError(f"longer than {MAX_CONDITIONS} characters", expression=text[:80])
    tokens = _tokenize(text)
    if not tokens:
        raise ExprError("empty expression", expression=text)
    parser = _Parser(text, tokens)
    tree = parser.expr()
    if parser.peek() is not None:
        raise parser.fail(f"unexpected {parser.peek()!r}")
    return Conditions(text, tree, _names(tree), _is_pure_or(tree))


def all_of(names: Sequence[str]) -> Conditions:
    """The implicit condition of a trigger without ``conditions``: every dependency."""
    tree: Condition = Name(names[0]) if len(names) == 1 else BoolOp("&&", tuple(Name(n) for n in names))
    return Conditions(" && ".join(names), tree, frozenset(names), len(names) == 1)


__all__ = ["BoolOp", "Condition", "Conditions", "Name", "Not", "all_of", "parse_conditions"]
