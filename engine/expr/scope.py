"""The evaluation state one compiled expression runs against.

A :class:`Scope` holds the caller's environment mapping, the current predicate element (``#``,
``#index``, ``#acc``) and the work budget shared by the whole evaluation. The evaluator creates one per
run and builtins taking predicates derive child scopes from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ExprError

from .limits import Budget
from .times import Time

NOW_KEY = "__now__"


class Scope:
    __slots__ = ("acc", "budget", "env", "index", "item")

    def __init__(self, env: Mapping[str, Any], budget: Budget) -> None:
        self.env = env
        self.budget = budget
        self.item: Any = None
        self.index: int = 0
        self.acc: Any = None

    def child(self) -> Scope:
        """A scope for a predicate; the builtin sets ``item``/``index``/``acc`` before each call."""
        return Scope(self.env, self.budget)

    def now(self) -> Time:
        """The current time the caller supplied as ``env["__now__"]`` (epoch seconds)."""
        try:
            value = self.env[NOW_KEY]
        except KeyError:
            raise ExprError("now() needs the current time, and none was supplied") from None
        if isinstance(value, Time):
            return value
        return Time.from_epoch(value)
