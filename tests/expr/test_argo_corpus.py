"""The expressions, ``when`` conditions and ``depends`` strings of Argo's own examples.

Reads the conformance corpus (``$SLUICE_CONFORMANCE_DIR``, default ``<repo>/../shared/conformance``);
skipped, with the reason printed, when it is absent. Nothing from the corpus is copied here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.errors import ExprError
from engine.expr import compile_expr, evaluate_when, find_tags, parse_depends, substitute

ARGO_ROOTS = {
    "inputs",
    "outputs",
    "steps",
    "tasks",
    "workflow",
    "item",
    "lastRetry",
    "cronworkflow",
    "retries",
}
NOW = 1_714_979_289.0  # 2024-05-06T07:08:09Z


def manifest(corpus: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((corpus / "manifest.json").read_text())
    return data


@functools.cache
def _load(examples: Path) -> tuple[tuple[Path, dict[str, Any]], ...]:
    found: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(examples.rglob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        found.extend((path, doc) for doc in docs if isinstance(doc, dict))
    return tuple(found)


def documents(corpus: Path) -> tuple[tuple[Path, dict[str, Any]], ...]:
    """Every YAML document of the example corpus (parsed once per session)."""
    return _load(corpus / "examples")


def fields(node: Any, name: str) -> Iterator[Any]:
    """Every value stored under key ``name`` anywhere in a YAML document."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if key == name:
                    yield value
                stack.append(value)
        elif isinstance(current, list):
            stack.extend(current)


def expand(flat: dict[str, str]) -> dict[str, Any]:
    """Dotted keys to nested maps, the way Argo builds the expression environment."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node.setdefault(parts[-1], value)
    return root


def test_every_corpus_expression_compiles(argo_workflows_corpus: Path) -> None:
    expressions = [
        e for wf in manifest(argo_workflows_corpus)["workflows"] for e in wf.get("expressions", [])
    ]
    assert expressions, "the manifest lists no expressions"
    for source in expressions:
        program = compile_expr(source)
        assert program.names <= ARGO_ROOTS, (source, program.names)


def test_corpus_expression_tags_resolve_through_the_argo_pipeline(argo_workflows_corpus: Path) -> None:
    """Resolve each example's global and input parameters as the controller would, in order."""
    checked = 0
    outcomes: dict[str, str] = {}
    for wf in manifest(argo_workflows_corpus)["workflows"]:
        if not wf.get("expressions"):
            continue
        path = argo_workflows_corpus / wf["path"]
        doc = next(
            d for p, d in documents(argo_workflows_corpus) if p == path and d.get("kind") == "Workflow"
        )
        flat: dict[str, str] = {"workflow.name": "wf", "workflow.creationTimestamp": "2024-05-06T07:08:09Z"}
        for param in doc["spec"].get("arguments", {}).get("parameters", []):
            flat[f"workflow.parameters.{param['name']}"] = str(param.get("value", ""))
        flat["workflow.parameters.json"] = json.dumps(doc["spec"].get("arguments", {}).get("parameters", []))
        for template in doc["spec"]["templates"]:
            scope = dict(flat)
            for param in template.get("inputs", {}).get("parameters", []):
                if "value" not in param:
                    continue
                env = {**expand(scope), "__now__": NOW}
                value = substitute(str(param["value"]), scope.__getitem__, env=env, keep_unresolved=True)
                scope[f"inputs.parameters.{param['name']}"] = value
                outcomes[f"{path.stem}/{param['name']}"] = value
                checked += 1
            env = {**expand(scope), "__now__": NOW, "item": "3"}
            body = template.get("script") or template.get("container") or {}
            for text in [*(e.get("value", "") for e in body.get("env", [])), *body.get("args", [])]:
                for tag in find_tags(str(text)):
                    if tag.kind == "expr":
                        substitute(tag.raw(str(text)), scope.__getitem__, env=env, keep_unresolved=True)
                        checked += 1
    assert checked > 0
    # Spot checks of results documented in the examples' comments.
    assert outcomes.get("expression-destructure-json-complex/a") == "[43]"
    assert outcomes.get("expression-destructure-json-complex/d") == '["Baris","Mo","Jai"]'
    assert outcomes.get("expression-reusing-verbose-snippets/week-temps") == '{"avg":35.8,"max":57,"min":15}'


def test_every_expression_field_in_the_corpus_compiles(argo_workflows_corpus: Path) -> None:
    seen = 0
    for _, doc in documents(argo_workflows_corpus):
        for value in fields(doc, "expression"):
            if not isinstance(value, str):
                continue
            # Simple tags are substituted before expr-lang runs (retry-conditional.yaml).
            source = substitute(value, lambda name: "true", keep_unresolved=True)
            compile_expr(source)
            seen += 1
        for value in fields(doc, "successCondition"):
            if isinstance(value, str) and doc.get("kind") != "Workflow":
                compile_expr(value)
    assert seen > 0


def test_every_depends_in_the_corpus_parses(argo_workflows_corpus: Path) -> None:
    seen = 0
    for path, doc in documents(argo_workflows_corpus):
        for value in fields(doc, "depends"):
            if isinstance(value, str):
                dep = parse_depends(value)
                assert dep.task_names(), (path, value)
                assert dep.evaluate(lambda task, result: result in (None, "Succeeded")) in (True, False)
                seen += 1
    assert seen > 10


@pytest.mark.parametrize("tag_value", ["heads", "tails", "1", "Succeeded", "true"])
def test_every_when_in_the_corpus_evaluates_to_a_bool(argo_workflows_corpus: Path, tag_value: str) -> None:
    env = {
        "inputs": {"parameters": {"should-print": "true"}},
        "workflow": {"parameters": {"json": '[{"name": "should-print", "value": "true"}]'}},
        "cronworkflow": {"lastScheduledTime": None},
        "__now__": NOW,
    }
    seen = 0
    for path, doc in documents(argo_workflows_corpus):
        for value in fields(doc, "when"):
            if not isinstance(value, str):
                continue
            text = substitute(value, lambda name: tag_value, env=env)
            try:
                assert evaluate_when(text) in (True, False)
            except ExprError as exc:
                # Substituting one word into every tag can make arithmetic on words; nothing else may fail.
                assert "cannot be used with" in str(exc), (path, value, exc)
            seen += 1
    assert seen > 10
