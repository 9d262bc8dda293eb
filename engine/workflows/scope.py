"""Variable scopes: what ``{{...}}`` tags and ``{{= }}`` expressions can see at one point of a workflow.

A scope is layered: the invocation's own variables (inputs, item, pod.name, retries...), then the
outputs of sibling steps or tasks (resolved lazily, so a 10,000-task DAG never builds a 10,000-entry
map per task), then the workflow's global variables. Values are strings as in Argo; an output of a
skipped producer without a default is :data:`ABSENT` (nil in expressions, dropped as an argument).
Used by the reconciler; the expression environment wraps a scope as nested read-only mappings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from engine import expr
from engine.errors import ExprError


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


MISSING: Any = _Sentinel("MISSING")
"""No such variable (yet)."""
ABSENT: Any = _Sentinel("ABSENT")
"""The variable names an output of a skipped/omitted producer that declared no default."""


class Siblings(Protocol):
    """Outputs of the other steps (``steps.``) or tasks (``tasks.``) of the enclosing template."""

    prefix: str

    def get(self, key: str) -> Any:
        """The value of a full key such as ``tasks.a.outputs.result``, or MISSING."""
        ...

    def is_namespace(self, key: str) -> bool:
        """True for ``tasks``, ``tasks.a``, ``tasks.a.outputs``... when task ``a`` has a node."""
        ...


class Scope:
    """A lookup chain: own variables -> sibling outputs -> parent scope (ending in the globals)."""

    __slots__ = ("_env", "local", "parent", "siblings")

    def __init__(
        self,
        local: dict[str, Any] | None = None,
        *,
        parent: Scope | None = None,
        siblings: Siblings | None = None,
    ) -> None:
        self.local: dict[str, Any] = local if local is not None else {}
        self.parent = parent
        self.siblings = siblings
        self._env: ExprEnv | None = None

    def child(self, local: dict[str, Any] | None = None) -> Scope:
        return Scope(local, parent=self)

    def get(self, key: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            v = scope.local.get(key, MISSING)
            if v is not MISSING:
                return v
            if scope.siblings is not None and key.startswith(scope.siblings.prefix):
                # steps.X inside a nested steps template never falls through to an outer one.
                return scope.siblings.get(key)
            scope = scope.parent
        return MISSING

    def has_prefix(self, prefix: str) -> bool:
        """True when some variable starts with ``prefix.`` (it is a namespace in expressions)."""
        dotted = prefix + "."
        scope: Scope | None = self
        while scope is not None:
            for k in scope.local:
                if k.startswith(dotted):
                    return True
            if scope.siblings is not None and dotted.startswith(scope.siblings.prefix):
                return scope.siblings.is_namespace(prefix)
            scope = scope.parent
        return False

    def keys_under(self, prefix: str) -> list[str]:
        dotted = prefix + "." if prefix else ""
        seen: dict[str, None] = {}
        scope: Scope | None = self
        while scope is not None:
            for k in scope.local:
                if k.startswith(dotted):
                    seen[k[len(dotted) :].split(".", 1)[0]] = None
            scope = scope.parent
        return list(seen)

    # --- substitution -------------------------------------------------------------------------------

    def resolve_str(self, key: str) -> str:
        """For ``expr.substitute``: the string value or KeyError (absent values are errors here)."""
        v = self.get(key)
        if v is MISSING or v is ABSENT:
            raise KeyError(key)
        return v if isinstance(v, str) else _to_text(v)

    @property
    def env(self) -> ExprEnv:
        if self._env is None:
            self._env = ExprEnv(self, "")
        return self._env

    def substitute(self, text: str, *, keep_unresolved: bool = False) -> str:
        if "{{" not in text:
            return text
        return expr.substitute(text, self.resolve_str, env=self.env, keep_unresolved=keep_unresolved)

    def substitute_json(self, value: Any, *, keep_unresolved: bool = False) -> Any:
        """Substitute every string inside a JSON-like value (dicts, lists)."""
        if isinstance(value, str):
            return self.substitute(value, keep_unresolved=keep_unresolved)
        if isinstance(value, dict):
            return {k: self.substitute_json(v, keep_unresolved=keep_unresolved) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.substitute_json(v, keep_unresolved=keep_unresolved) for v in value]
        return value

    def evaluate(self, source: str) -> Any:
        return expr.evaluate(source, self.env)


def _to_text(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


def has_json_tags(value: Any) -> bool:
    """True when some string inside ``value`` contains ``{{`` (substitution can be skipped otherwise)."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(has_json_tags(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_json_tags(v) for v in value)
    return False


class ExprEnv(Mapping[str, Any]):
    """A scope seen as nested mappings: ``inputs.parameters['a-b']``, ``steps['x'].outputs.result``."""

    __slots__ = ("_prefix", "_scope")

    def __init__(self, scope: Scope, prefix: str) -> None:
        self._scope = scope
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise KeyError(key)
        full = f"{self._prefix}.{key}" if self._prefix else key
        # A name that is both a value and a namespace (``workflow.parameters`` is a JSON list and also
        # holds ``workflow.parameters.x``) is a namespace in expressions, as in Argo's expanded env.
        if self._scope.has_prefix(full):
            return ExprEnv(self._scope, full)
        v = self._scope.get(full)
        if v is ABSENT:
            return None
        if v is not MISSING:
            return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._scope.keys_under(self._prefix))

    def __len__(self) -> int:
        return len(self._scope.keys_under(self._prefix))

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True


def evaluate_bool(scope: Scope, source: str) -> bool:
    v = scope.evaluate(source)
    if not isinstance(v, bool):
        raise ExprError(f"expression must evaluate to a boolean, got {_to_text(v)!r}", expression=source)
    return v
