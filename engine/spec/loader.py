"""Reading manifests: YAML/JSON text with one or more documents -> typed documents.

Every document is checked for a known ``apiVersion``/``kind`` and parsed into its model; problems carry
the file name, the document number (for multi-document files) and the field path. ``argoproj.io`` is
accepted as ``sluice.dev``. Called by the CLI (``run``, ``lint``, ``submit``, ``template create``...), the
server and the conformance harness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, SpecError
from engine.spec.events import EventBus, EventSource, Sensor
from engine.spec.fields import Model
from engine.spec.workflow import (
    API_VERSION,
    ARGO_API_VERSION,
    ConfigMap,
    CronWorkflow,
    Secret,
    Workflow,
    WorkflowTemplate,
)

ARGO_KINDS: dict[str, type[Model]] = {
    "Workflow": Workflow,
    "WorkflowTemplate": WorkflowTemplate,
    "ClusterWorkflowTemplate": WorkflowTemplate,
    "CronWorkflow": CronWorkflow,
    "EventSource": EventSource,
    "Sensor": Sensor,
    "EventBus": EventBus,
}
CORE_KINDS: dict[str, type[Model]] = {"ConfigMap": ConfigMap, "Secret": Secret}

try:  # the C loader is ~10x faster; PyYAML wheels ship it
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-python PyYAML build
    _Loader = yaml.SafeLoader

# Real manifests nest about 20 levels and hold thousands of values; these bounds keep hostile input
# from costing quadratic parse time (flow collections), exhausting the interpreter's recursion limit in
# later passes, or expanding exponentially through YAML aliases ("billion laughs").
MAX_FLOW_DEPTH = 1000
MAX_DOCUMENT_DEPTH = 100
MAX_DOCUMENT_VALUES = 1_000_000


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed document: its kind, typed object, the raw dict (API version normalised) and origin."""

    kind: str
    obj: Any
    raw: dict[str, Any]
    source: str
    index: int

    @property
    def name(self) -> str:
        meta = self.raw.get("metadata") or {}
        return str(meta.get("name") or meta.get("generateName") or "")


def normalise_api_version(raw: dict[str, Any]) -> dict[str, Any]:
    """The same document with ``argoproj.io/v1alpha1`` rewritten to ``sluice.dev/v1alpha1``."""
    if raw.get("apiVersion") == ARGO_API_VERSION:
        raw = dict(raw)
        raw["apiVersion"] = API_VERSION
    return raw


def parse_yaml(text: str, *, source: str) -> list[Any]:
    """Every document in ``text`` (empty documents dropped), or SpecError with the line of the problem."""
    if _flow_depth(text) > MAX_FLOW_DEPTH:
        too_deep = f"invalid YAML: nested more than {MAX_FLOW_DEPTH} levels deep"
        raise SpecError([Problem("", too_deep)], file=source)
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise SpecError([Problem("", f"invalid YAML at {where}: {exc.problem}")], file=source) from exc
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise SpecError([Problem("", f"invalid YAML: {exc}")], file=source) from exc


_FLOW_TOKENS = re.compile(r"""[\[\]{}\n#"'\\]""")


def _flow_depth(text: str) -> int:
    """How deep ``[``/``{`` collections nest, skipping quoted scalars and comments.

    A light scan, not a YAML parser: a quote opens a scalar only after a blank or a flow indicator.
    Brackets inside block scalars count (balanced code does no harm), and an unmatched quote inside
    one hides what follows; the bound is a guard on parse cost, the parser still decides validity.
    """
    if text.count("[") + text.count("{") <= MAX_FLOW_DEPTH:
        return 0
    depth = deepest = 0
    quote = ""
    skip_until = -1
    for m in _FLOW_TOKENS.finditer(text):
        i = m.start()
        if i < skip_until:
            continue
        ch = m.group()
        if quote:
            if ch == "\\" and quote == '"':
                skip_until = i + 2
            elif ch == quote:
                if quote == "'" and text.startswith("''", i):
                    skip_until = i + 2
                else:
                    quote = ""
            continue
        prev = text[i - 1] if i else "\n"
        if ch in "\"'":
            if prev in " \t\n[{,:":
                quote = ch
        elif ch == "#":
            if prev in " \t\n":
                end = text.find("\n", i)
                skip_until = len(text) if end < 0 else end
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _shape(raw: Any) -> tuple[int, int]:
    """(how many collections deep ``raw`` goes, how many values it holds once YAML aliases are expanded).

    Each distinct collection is visited once, so a document that repeats a subtree through aliases
    costs its size in memory, not its expanded size.
    """
    memo: dict[int, tuple[int, int]] = {}
    stack: list[tuple[Any, bool]] = [(raw, False)]
    while stack:
        value, children_done = stack.pop()
        if id(value) in memo:
            continue
        items = list(value.values() if isinstance(value, dict) else value)
        children = [v for v in items if isinstance(v, dict | list)]
        if children_done:
            height = 1 + max((memo[id(c)][0] for c in children), default=0)
            size = 1 + len(items) - len(children) + sum(memo[id(c)][1] for c in children)
            memo[id(value)] = (height, size)
            continue
        stack.append((value, True))
        stack.extend((c, False) for c in children if id(c) not in memo)
    return memo.get(id(raw), (0, 1))


def parse_document(raw: Any, *, source: str, index: int = 0, multi: bool = False) -> Document:
    """Parse one document dict into its model."""
    label = f"{source} (document {index + 1})" if multi else source
    if not isinstance(raw, dict):
        raise SpecError(
            [Problem("", "a manifest must be a mapping with apiVersion, kind and metadata")], file=label
        )
    kind = raw.get("kind")
    api = raw.get("apiVersion")
    if kind is not None and not isinstance(kind, str):
        raise SpecError([Problem("kind", "must be a string")], file=label)
    height, size = _shape(raw)
    if height > MAX_DOCUMENT_DEPTH:
        too_deep = f"manifest nested more than {MAX_DOCUMENT_DEPTH} levels deep"
        raise SpecError([Problem("", too_deep)], file=label)
    if size > MAX_DOCUMENT_VALUES:
        too_big = f"manifest holds more than {MAX_DOCUMENT_VALUES:,} values once its aliases are expanded"
        raise SpecError([Problem("", too_big)], file=label)
    if kind in ARGO_KINDS:
        if api not in (API_VERSION, ARGO_API_VERSION):
            raise SpecError(
                [Problem("apiVersion", f"must be {API_VERSION} (or {ARGO_API_VERSION}), not {api!r}")],
                file=label,
            )
        model = ARGO_KINDS[kind]
    elif kind in CORE_KINDS:
        if api != "v1":
            raise SpecError([Problem("apiVersion", f"must be v1 for {kind}, not {api!r}")], file=label)
        model = CORE_KINDS[kind]
    else:
        known = ", ".join([*ARGO_KINDS, *CORE_KINDS])
        what = "is required" if kind is None else f"unsupported kind {kind!r} (expected one of {known})"
        raise SpecError([Problem("kind", what)], file=label)
    raw = normalise_api_version(raw)
    try:
        obj = model.parse(raw)
    except SpecError as exc:
        raise exc.with_file(label) from None
    except RecursionError as exc:
        raise SpecError([Problem("", "manifest nested too deeply")], file=label) from exc
    return Document(kind=str(kind), obj=obj, raw=raw, source=source, index=index)


def load_text(text: str, *, source: str = "<stdin>") -> list[Document]:
    docs = parse_yaml(text, source=source)
    if not docs:
        raise SpecError([Problem("", "no documents found")], file=source)
    multi = len(docs) > 1
    return [parse_document(d, source=source, index=i, multi=multi) for i, d in enumerate(docs)]


def load_file(path: str | Path) -> list[Document]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError([Problem("", "no such file")], file=str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem("", f"cannot read: {exc}")], file=str(path)) from exc
    return load_text(text, source=str(path))
