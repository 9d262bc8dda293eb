"""Compiles expr-lang syntax trees into Python closures and runs them: the ``{{= }}`` engine.

The workflow core calls :func:`compile_expr` / :func:`evaluate` (through :mod:`engine.expr`) for
``{{= }}`` tags, ``retryStrategy.expression``, lifecycle hook expressions, HTTP ``successCondition``,
output ``valueFrom.expression`` and CronWorkflow ``stopStrategy``. Each tree node becomes one closure
taking a :class:`~engine.expr.scope.Scope`, so a run is a chain of direct calls with no per-node
dispatch; compiled programs are cached by source text. Function names are resolved when compiling,
so an unknown function is a compile error, as in expr-lang.

Runtime rules (expr-lang's, with Argo's environment): a missing identifier or map key is nil; member
access on nil is an error unless written ``?.`` or on the left of ``??``; operators check their
operand types and raise :class:`~engine.errors.ExprError` on mismatch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import ExprError

from . import functions, nodes, sprig, values
from .encoding import go_sprint
from .limits import MAX_RANGE, Budget
from .parser import parse
from .regex import compile_regex
from .scope import Scope

Fn = Callable[[Scope], Any]

NAMESPACES = frozenset({"sprig"})


class _NilChain(Exception):
    """Internal: an optional access met nil; the enclosing chain evaluates to nil."""


class _NilFetch(ExprError):
    """Member access on nil. A subclass so ``??`` can turn it into its fallback."""


class Program:
    """A compiled expression. Immutable and safe to share between threads and workflows."""

    __slots__ = ("_fn", "names", "paths", "source")

    def __init__(
        self, source: str, fn: Fn, names: frozenset[str], paths: frozenset[str] = frozenset()
    ) -> None:
        self.source = source
        self._fn = fn
        #: Top-level environment names the expression reads (``inputs``, ``tasks``, ``item``...).
        self.names = names
        #: Constant member paths it reads (``workflow.status``, ``inputs.parameters``...), with prefixes.
        self.paths = paths

    def __repr__(self) -> str:
        return f"Program({self.source!r})"

    def run(self, env: Mapping[str, Any]) -> Any:
        """Evaluate against ``env``; every failure is an ExprError naming the expression."""
        if not isinstance(env, Mapping):
            raise ExprError("expression environment must be a mapping", expression=self.source)
        try:
            return self._fn(Scope(env, Budget()))
        except _NilChain:
            return None
        except ExprError as exc:
            if exc.expression is None:
                raise ExprError(str(exc), expression=self.source) from exc
            raise
        except RecursionError:
            raise ExprError("expression too deeply nested", expression=self.source) from None
        except (ArithmeticError, ValueError, TypeError, IndexError, KeyError) as exc:
            # Defensive: a helper met input it did not anticipate. Report it as a bad expression.
            raise ExprError(f"cannot evaluate: {type(exc).__name__}: {exc}", expression=self.source) from exc


@functools.lru_cache(maxsize=4096)
def compile_expr(source: str) -> Program:
    """Parse and compile ``source`` (cached); raises ExprError for syntax errors and unknown functions."""
    if not isinstance(source, str):
        raise ExprError(f"expression must be a string, not {type(source).__name__}")
    tree = parse(source)
    try:
        fn = _compile(tree)
    except ExprError as exc:
        if exc.expression is None:
            raise ExprError(str(exc), expression=source) from exc
        raise
    names = nodes.free_names(tree) - NAMESPACES - {"$env"}
    return Program(source, fn, names, nodes.member_paths(tree))


def evaluate(source: str, env: Mapping[str, Any]) -> Any:
    """Compile (cached) and run ``source`` against ``env``."""
    return compile_expr(source).run(env)


# --- compilation ------------------------------------------------------------------------------------


def _compile(node: nodes.Node) -> Fn:
    if isinstance(node, nodes.Literal):
        value = node.value
        return lambda s: value
    if isinstance(node, nodes.Ident):
        return _ident(node.name)
    if isinstance(node, nodes.Pointer):
        return _pointer(node.name)
    if isinstance(node, nodes.Member):
        return _member(node)
    if isinstance(node, nodes.Slice):
        return _slice(node)
    if isinstance(node, nodes.Chain):
        return _chain(_compile(node.node))
    if isinstance(node, nodes.Unary):
        return _unary(node.op, _compile(node.operand))
    if isinstance(node, nodes.Binary):
        return _binary(node)
    if isinstance(node, nodes.Conditional):
        return _conditional(_compile(node.cond), _compile(node.yes), _compile(node.no))
    if isinstance(node, nodes.ArrayLit):
        return _array([_compile(item) for item in node.items])
    if isinstance(node, nodes.MapLit):
        return _map([(_compile(k), _compile(v)) for k, v in node.pairs])
    if isinstance(node, nodes.Call):
        return _call(node)
    if isinstance(node, nodes.MethodCall):
        return _method(node)
    raise ExprError("a predicate can only be an argument of a builtin such as filter or map")


def _ident(name: str) -> Fn:
    if name == "$env":
        return lambda s: s.env

    def run(s: Scope) -> Any:
        try:
            return s.env[name]
        except KeyError:
            return None

    return run


def _pointer(name: str) -> Fn:
    if name == "index":
        return lambda s: s.index
    if name == "acc":
        return lambda s: s.acc
    return lambda s: s.item


def _nil_access(key: Any, optional: bool) -> Exception:
    if optional:
        return _NilChain()
    return _NilFetch(f"cannot fetch {go_sprint(key) if not isinstance(key, str) else key} from nil")


def _member(node: nodes.Member) -> Fn:
    obj = _compile(node.obj)
    optional = node.optional
    if isinstance(node.key, nodes.Literal) and isinstance(node.key.value, str):
        key = node.key.value

        def run_const(s: Scope) -> Any:
            o = obj(s)
            if type(o) is dict:
                return o.get(key)
            if o is None:
                raise _nil_access(key, optional)
            return values.fetch(o, key)

        return run_const
    key_fn = _compile(node.key)

    def run(s: Scope) -> Any:
        o = obj(s)
        k = key_fn(s)
        if o is None:
            raise _nil_access(k, optional)
        return values.fetch(o, k)

    return run


def _slice(node: nodes.Slice) -> Fn:
    obj = _compile(node.obj)
    lo = _compile(node.lo) if node.lo is not None else None
    hi = _compile(node.hi) if node.hi is not None else None

    def run(s: Scope) -> Any:
        return values.slice_of(obj(s), lo(s) if lo else None, hi(s) if hi else None, s.budget)

    return run


def _chain(inner: Fn) -> Fn:
    def run(s: Scope) -> Any:
        try:
            return inner(s)
        except _NilChain:
            return None

    return run


def _unary(op: str, operand: Fn) -> Fn:
    if op == "!":
        return lambda s: not values.as_bool(operand(s), "operator !")
    if op == "-":
        return lambda s: values.negate(operand(s))
    return lambda s: values.plus(operand(s))


def _conditional(cond: Fn, yes: Fn, no: Fn) -> Fn:
    def run(s: Scope) -> Any:
        return yes(s) if values.as_bool(cond(s), "the condition of ?:") else no(s)

    return run


def _array(items: list[Fn]) -> Fn:
    def run(s: Scope) -> list[Any]:
        out = [f(s) for f in items]
        s.budget.spend(len(out))
        return out

    return run


def _map(pairs: list[tuple[Fn, Fn]]) -> Fn:
    def run(s: Scope) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_fn, value_fn in pairs:
            key = key_fn(s)
            out[key if isinstance(key, str) else go_sprint(key)] = value_fn(s)
        s.budget.spend(len(out))
        return out

    return run


def _range(a: Any, b: Any, budget: Budget) -> list[int]:
    if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
        raise values.mismatch("..", a, b)
    count = b - a + 1
    if count > MAX_RANGE:
        raise ExprError(f"range {a}..{b} has more than {MAX_RANGE} elements")
    budget.spend(max(count, 0))
    return list(range(a, b + 1))


def _matches(node: nodes.Binary, left: Fn, right: Fn) -> Fn:
    if isinstance(node.right, nodes.Literal) and isinstance(node.right.value, str):
        # A constant pattern is checked when compiling, like expr-lang does.
        regex = compile_regex(node.right.value)

        def run_const(s: Scope) -> bool:
            text = left(s)
            if not isinstance(text, str):
                raise values.mismatch("matches", text, regex.pattern)
            return regex.matches(text)

        return run_const

    def run(s: Scope) -> bool:
        text, pattern = left(s), right(s)
        if not (isinstance(text, str) and isinstance(pattern, str)):
            raise values.mismatch("matches", text, pattern)
        return compile_regex(pattern).matches(text)

    return run


def _binary(node: nodes.Binary) -> Fn:
    op = node.op
    left, right = _compile(node.left), _compile(node.right)
    if op in ("&&", "and"):
        return lambda s: (
            values.as_bool(left(s), f"operator {op}") and values.as_bool(right(s), f"operator {op}")
        )
    if op in ("||", "or"):
        return lambda s: (
            values.as_bool(left(s), f"operator {op}") or values.as_bool(right(s), f"operator {op}")
        )
    if op == "??":

        def coalesce(s: Scope) -> Any:
            try:
                value = left(s)
            except _NilFetch:
                value = None
            return right(s) if value is None else value

        return coalesce
    if op == "?:":

        def elvis(s: Scope) -> Any:
            value = left(s)
            return right(s) if value is None or value is False else value

        return elvis
    if op == "matches":
        return _matches(node, left, right)
    simple: dict[str, Callable[[Any, Any], Any]] = {
        "==": values.equal,
        "!=": lambda a, b: not values.equal(a, b),
        "-": values.sub,
        "*": values.mul,
        "/": values.div,
        "%": values.mod,
        "**": values.power,
        "^": values.power,
        "in": values.contained_in,
        "contains": values.str_contains,
        "startsWith": values.starts_with,
        "endsWith": values.ends_with,
    }
    if op in simple:
        impl = simple[op]
        return lambda s: impl(left(s), right(s))
    if op in ("<", ">", "<=", ">="):
        return lambda s: values.compare(op, left(s), right(s))
    if op == "+":
        return lambda s: values.add(left(s), right(s), s.budget)
    if op == "..":
        return lambda s: _range(left(s), right(s), s.budget)
    raise ExprError(f"unsupported operator {op}")


def _call(node: nodes.Call) -> Fn:
    name = node.name
    if name in functions.PREDICATE_BUILTINS:
        impl = functions.PREDICATE_BUILTINS[name]
        collection = _compile(node.args[0])
        body: Fn | None = None
        extras: list[Fn] = []
        for arg in node.args[1:]:
            if isinstance(arg, nodes.Predicate):
                body = _compile(arg.body)
            else:
                extras.append(_compile(arg))

        def run_predicate(s: Scope) -> Any:
            return impl(s, collection(s), body, [e(s) for e in extras])

        return run_predicate
    builtin = functions.BUILTINS.get(name)
    if builtin is None:
        raise ExprError(f"unknown function {name}()")
    args = [_compile(a) for a in node.args]

    def run(s: Scope) -> Any:
        return builtin(s, [a(s) for a in args])

    return run


def _method(node: nodes.MethodCall) -> Fn:
    args = [_compile(a) for a in node.args]
    if isinstance(node.obj, nodes.Ident) and node.obj.name == "sprig":
        impl = sprig.call(node.name)

        def run_sprig(s: Scope) -> Any:
            return impl(s, [a(s) for a in args])

        return run_sprig
    obj = _compile(node.obj)
    name, optional = node.name, node.optional

    def run(s: Scope) -> Any:
        o = obj(s)
        if o is None:
            raise _nil_access(name, optional)
        return functions.call_method(o, name, [a(s) for a in args])

    return run
