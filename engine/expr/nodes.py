"""Syntax tree of the expr-lang subset: built by :mod:`engine.expr.parser`, compiled by the evaluator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Ident:
    name: str


@dataclass(frozen=True, slots=True)
class Pointer:
    """``#`` (the current element), ``#index`` or ``#acc`` inside a predicate."""

    name: str


@dataclass(frozen=True, slots=True)
class Member:
    """``obj.name``, ``obj[key]``, and their ``?.`` forms."""

    obj: Node
    key: Node
    optional: bool


@dataclass(frozen=True, slots=True)
class Slice:
    obj: Node
    lo: Node | None
    hi: Node | None


@dataclass(frozen=True, slots=True)
class Chain:
    """The extent of an optional chain: a nil met by ``?.`` inside makes the whole chain nil."""

    node: Node


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional:
    cond: Node
    yes: Node
    no: Node


@dataclass(frozen=True, slots=True)
class ArrayLit:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit:
    pairs: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Call:
    """A call of a builtin function by name (``len(x)``, ``filter(xs, {# > 1})``)."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MethodCall:
    """``obj.name(args)``: sprig functions (``sprig.add``) and methods of times and durations."""

    obj: Node
    name: str
    args: tuple[Node, ...]
    optional: bool


@dataclass(frozen=True, slots=True)
class Predicate:
    """A closure argument such as ``{# > 1}``; evaluated once per element by the builtin receiving it."""

    body: Node


Node = (
    Literal | Ident | Pointer | Member | Slice | Chain | Unary | Binary | Conditional | ArrayLit | MapLit
    | Call | MethodCall | Predicate
)  # fmt: skip


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Literal | Ident | Pointer):
        return ()
    if isinstance(node, Member):
        return (node.obj, node.key)
    if isinstance(node, Slice):
        return tuple(n for n in (node.obj, node.lo, node.hi) if n is not None)
    if isinstance(node, Chain):
        return (node.node,)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Conditional):
        return (node.cond, node.yes, node.no)
    if isinstance(node, ArrayLit):
        return node.items
    if isinstance(node, MapLit):
        return tuple(n for pair in node.pairs for n in pair)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, MethodCall):
        return (node.obj, *node.args)
    return (node.body,)


def height(root: Node) -> int:
    """Height of the tree, computed without recursion (the tree may be deeper than Python's stack)."""
    best = 0
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        best = max(best, depth)
        stack.extend((child, depth + 1) for child in children(node))
    return best


def member_paths(root: Node) -> frozenset[str]:
    """Constant dotted paths the expression reads: ``workflow.status`` from ``workflow['status'] == x``."""
    paths: set[str] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        stack.extend(children(node))
        parts: list[str] = []
        current: Node = node
        while (
            isinstance(current, Member)
            and isinstance(current.key, Literal)
            and isinstance(current.key.value, str)
        ):
            parts.append(current.key.value)
            current = current.obj
        if parts and isinstance(current, Ident):
            parts.append(current.name)
            paths.add(".".join(reversed(parts)))
    return frozenset(paths)


def free_names(root: Node) -> frozenset[str]:
    """Top-level environment names an expression reads (``inputs`` in ``inputs.parameters.x``)."""
    names: set[str] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Ident):
            names.add(node.name)
        stack.extend(children(node))
    return frozenset(names)
