"""Argo's languages inside manifests: template tags, expr-lang expressions, ``when`` and ``depends``.

Pure and sandboxed: no I/O, no clock (``now()`` reads ``env["__now__"]``), never Python ``eval``, and no
attribute access on Python objects; evaluation only reads mappings, sequences and scalars. Every
failure is an :class:`engine.errors.ExprError`, and every evaluation is bounded in time and memory.

The workflow core is the caller:

* :func:`substitute` / :func:`find_tags` / :func:`has_tags` / :func:`check_syntax` for ``{{...}}`` tags;
* :func:`compile_expr` / :func:`evaluate` for expr-lang fields (``{{= }}``, retry and hook expressions,
  HTTP ``successCondition``, output ``valueFrom.expression``, CronWorkflow ``stopStrategy``);
* :func:`evaluate_when` for ``when`` after substitution (govaluate semantics);
* :func:`parse_depends` for DAG ``depends``.
"""

from __future__ import annotations

from .depends import Depends, parse_depends
from .evaluator import Program, compile_expr, evaluate
from .govaluate import evaluate_when
from .scope import NOW_KEY
from .tags import Tag, check_syntax, find_tags, has_tags, substitute
from .times import Duration, Time

__all__ = [
    "NOW_KEY",
    "Depends",
    "Duration",
    "Program",
    "Tag",
    "Time",
    "check_syntax",
    "compile_expr",
    "evaluate",
    "evaluate_when",
    "find_tags",
    "has_tags",
    "parse_depends",
    "substitute",
]
