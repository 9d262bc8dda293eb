"""Reading manifests: YAML/JSON text with one or more documents -> typed documents.

Every document is checked for a known ``apiVersion``/``kind`` and parsed into its model; problems carry
the file name, the document number (for multi-document files) and the field path. ``argoproj.io`` is
accepted as ``sluice.dev``. Called by the CLI (``run``, ``lint``, ``submit``, ``template create``...), the
server and the conformance harness.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, SpecError
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
}
CORE_KINDS: dict[str, type[Model]] = {"ConfigMap": ConfigMap, "Secret": Secret}

try:  # the C loader is ~10x faster; PyYAML wheels ship it
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-python PyYAML build
    _Loader = yaml.SafeLoader


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
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise SpecError([Problem("", f"invalid YAML at {where}: {exc.problem}")], file=source) from exc
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise SpecError([Problem("", f"invalid YAML: {exc}")], file=source) from exc


def parse_document(raw: Any, *, source: str, index: int = 0, multi: bool = False) -> Document:
    """Parse one document dict into its model."""
    label = f"{source} (document {index + 1})" if multi else source
    if not isinstance(raw, dict):
        raise SpecError(
            [Problem("", "a manifest must be a mapping with apiVersion, kind and metadata")], file=label
        )
    kind = raw.get("kind")
    api = raw.get("apiVersion")
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
