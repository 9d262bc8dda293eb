"""Argo's languages inside manifests: template tags, expr-lang expressions, ``when`` and ``depends``.

Pure and sandboxed: no I/O, no clock (``now()`` reads ``env["__now__"]``), never Python ``eval``, and no
attribute access on Python objects; evaluation only reads mappings, sequences and scalars. Every
failure is an :class:`engine.errors.ExprError`, and every evaluation is bounded in time and memory.

The workflow core is the caller:

* :func:`substitute` / :func:`find_tags` / :func:`has_tags` / :func:`check_syntax` for ``{{...}}`` tags;
* :func:`compile_expr` / :func:`evaluate` for expr-lang fields (``{{= }}``, retry and hook expressions,
  HTTP ``successCondition``, output ``valueFrom.expression``, CronWorkflow ``stopStrategy``);
* :func:`evaluate_when` for ``when`` after substitution (govaluate semantics);
* :func:`parse_depends` for DAG ``depends``;
* :class:`CronSchedule` / :func:`next_fire_time` for cron schedules (``engine.expr.cron``).

The events core is the caller of Argo Events' languages:

* :func:`gjson_get` / :func:`gjson_exists` / :func:`gjson_text` / :func:`gjson_raw` for gjson paths
  into event data (``engine.expr.gjson``);
* :func:`render_template` for Go text/template + Sprig (``dataTemplate``, ``contextTemplate``, a
  data filter's ``template``; ``engine.expr.gotemplate``);
* :func:`check_govaluate` / :func:`evaluate_govaluate` / :func:`evaluate_govaluate_bool` for
  expression filters, whose names are variables bound from the event.
"""

from __future__ import annotations

from .cron import CronSchedule, next_fire_time
from .depends import Depends, parse_depends
from .evaluator import Program, compile_expr, evaluate
from .gjson import exists as gjson_exists
from .gjson import get as gjson_get
from .gjson import to_raw as gjson_raw
from .gjson import to_text as gjson_text
from .gotemplate import render as render_template
from .govaluate import check_govaluate, evaluate_govaluate, evaluate_govaluate_bool, evaluate_when
from .scope import NOW_KEY
from .tags import Tag, check_syntax, find_tags, has_tags, substitute
from .times import Duration, Time

__all__ = [
    "NOW_KEY",
    "CronSchedule",
    "Depends",
    "Duration",
    "Program",
    "Tag",
    "Time",
    "check_govaluate",
    "check_syntax",
    "compile_expr",
    "evaluate",
    "evaluate_govaluate",
    "evaluate_govaluate_bool",
    "evaluate_when",
    "find_tags",
    "gjson_exists",
    "gjson_get",
    "gjson_raw",
    "gjson_text",
    "has_tags",
    "next_fire_time",
    "parse_depends",
    "render_template",
    "substitute",
]
