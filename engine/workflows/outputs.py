"""Outputs between nodes: what ``steps.X.*``/``tasks.X.*`` resolve to, loop aggregation, template outputs.

A node's outputs become its siblings' variables (``tasks.a.outputs.result``, ``.exitCode``, ``.status``,
``.id``...). A looped step's children aggregate into JSON lists (only Succeeded, non-hook, non-retry
children, in loop order). A steps/DAG template's own outputs come from its scope through
``valueFrom.parameter``/``expression`` and ``from``/``fromExpression``. Used by the reconciler's frames.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.errors import ExprError
from engine.spec.workflow import Template
from engine.workflows.nodes import RETRY, SKIPPED_TYPE, SUCCEEDED, Node, NodeOutputs, rfc3339
from engine.workflows.scope import ABSENT, MISSING, Scope

_LOOP_INDEX = re.compile(r"\((\d+):")


class OutputError(Exception):
    """An output could not be produced; the node it belongs to ends in Error with this message."""


# Paths under ``steps.<name>``/``tasks.<name>`` that hold further variables (all else is a value).
NAMESPACE_SUFFIXES = frozenset({"", "outputs", "outputs.parameters", "outputs.artifacts"})


def node_variable(node: Node, rest: str, *, skipped_default: dict[str, str] | None = None) -> Any:
    """The value of ``<prefix>.<rest>`` for one node (``outputs.result``, ``status``, ``id``...)."""
    if rest == "id":
        return node.id
    if rest == "status":
        return node.phase
    if rest == "startedAt":
        return rfc3339(node.started_at) if node.started_at is not None else MISSING
    if rest == "finishedAt":
        return rfc3339(node.finished_at) if node.finished_at is not None else MISSING
    if rest == "hostNodeName":
        return node.host_node_name if node.host_node_name else MISSING
    if rest == "ip":
        return node.pod_ip if node.pod_ip else MISSING
    out = node.outputs
    skipped = node.type == SKIPPED_TYPE
    if rest in ("exitCode", "outputs.exitCode"):
        if out is not None and out.exit_code is not None:
            return out.exit_code
        return ABSENT if skipped else MISSING
    if rest == "outputs.result":
        if out is not None and out.result is not None:
            return out.result
        return ABSENT if skipped else MISSING
    if rest.startswith("outputs.parameters."):
        pname = rest[len("outputs.parameters.") :]
        if out is not None:
            p = out.parameter(pname)
            if p is not None and "value" in p:
                return p["value"]
        if skipped:
            if skipped_default and pname in skipped_default:
                return skipped_default[pname]
            return ABSENT
        return MISSING
    if rest.startswith("outputs.artifacts."):
        aname = rest[len("outputs.artifacts.") :]
        if out is not None:
            a = out.artifact(aname)
            if a is not None:
                return a
        return ABSENT if skipped else MISSING
    return MISSING


def node_variables(prefix: str, node: Node, nodes: dict[str, Node]) -> dict[str, Any]:
    """Every ``<prefix>.*`` variable of one node, for hooks that run while its group is still open.

    A Retry node exposes its last attempt's outputs, as Argo does for exit hooks.
    """
    src = node
    if node.type == RETRY and node.children:
        last = nodes.get(node.children[-1])
        if last is not None:
            src = last
    out: dict[str, Any] = {f"{prefix}.id": node.id, f"{prefix}.status": node.phase}
    for key in ("startedAt", "finishedAt", "hostNodeName", "ip"):
        v = node_variable(node, key)
        if v is not MISSING:
            out[f"{prefix}.{key}"] = v
    o = src.outputs
    if o is not None:
        if o.result is not None:
            out[f"{prefix}.outputs.result"] = o.result
        if o.exit_code is not None:
            out[f"{prefix}.exitCode"] = o.exit_code
        for p in o.parameters:
            if "value" in p:
                out[f"{prefix}.outputs.parameters.{p['name']}"] = p["value"]
        for a in o.artifacts:
            out[f"{prefix}.outputs.artifacts.{a['name']}"] = a
    return out


def loop_index(node: Node) -> int:
    m = _LOOP_INDEX.search(node.name[node.name.rfind("(") :] if "(" in node.name else "")
    return int(m.group(1)) if m else 0


def _aggregate_list(values: list[str]) -> str:
    parsed: list[Any] = []
    for v in values:
        try:
            parsed.append(json.loads(v))
        except ValueError:
            return json.dumps(values, separators=(",", ":"))
    return json.dumps(parsed, separators=(",", ":"))


def aggregate_variable(children: list[Node], rest: str) -> Any:
    """``steps.X.<rest>`` for a looped step: JSON lists built from its Succeeded children."""
    kids = sorted(
        (n for n in children if not n.hooked() and n.type != RETRY and n.phase == SUCCEEDED and n.outputs),
        key=loop_index,
    )
    if rest == "outputs.result":
        results: list[Any] = []
        for n in kids:
            assert n.outputs is not None
            if n.outputs.result is None:
                continue
            try:
                results.append(json.loads(n.outputs.result))
            except ValueError:
                # Argo requires each iteration's result to be a JSON item; plain words are taken as strings.
                results.append(n.outputs.result)
        return json.dumps(results, separators=(",", ":"))
    if rest == "outputs.parameters":
        rows = []
        for n in kids:
            assert n.outputs is not None
            if n.outputs.parameters:
                rows.append({p["name"]: p.get("value", "") for p in n.outputs.parameters})
        return json.dumps(rows, separators=(",", ":"))
    if rest.startswith("outputs.parameters."):
        pname = rest[len("outputs.parameters.") :]
        values = []
        for n in kids:
            assert n.outputs is not None
            p = n.outputs.parameter(pname)
            if p is not None and "value" in p:
                values.append(str(p["value"]))
        return _aggregate_list(values)
    return MISSING


def single_tag(text: str) -> str | None:
    """The key of ``text`` when it is exactly one simple tag (``{{steps.a.outputs.result}}``), else None."""
    t = text.strip()
    if not (t.startswith("{{") and t.endswith("}}")) or t.count("{{") != 1:
        return None
    body = t[2:-2].strip()
    if body.startswith("="):
        return None
    return body


def resolve_artifact_ref(scope: Scope, ref: str) -> Any:
    """An artifact dict for ``from: "{{steps.a.outputs.artifacts.x}}"`` (MISSING/ABSENT when unavailable)."""
    key = single_tag(ref)
    if key is None:
        raise ExprError(f"artifact reference {ref!r} must be a single {{{{...}}}} tag")
    return scope.get(key)


def template_outputs(tmpl: Template, scope: Scope) -> NodeOutputs | None:
    """Outputs of a steps/DAG (or suspend) template from its scope; raises OutputError."""
    spec = tmpl.outputs
    if not spec.parameters and not spec.artifacts and spec.result is None:
        return None
    out = NodeOutputs()
    for p in spec.parameters:
        value: Any = MISSING
        vf = p.value_from
        try:
            if vf is not None and vf.parameter:
                key = single_tag(vf.parameter)
                value = scope.get(key) if key is not None else scope.substitute(vf.parameter)
            elif vf is not None and vf.expression:
                value = scope.evaluate(vf.expression)
                if value is None:
                    value = MISSING
            elif p.value is not None:
                value = scope.substitute(p.value)
        except ExprError as exc:
            if vf is None or vf.default is None:
                raise OutputError(f"unable to resolve outputs.parameters.{p.name}: {exc}") from exc
            value = MISSING
        if value is MISSING or value is ABSENT:
            if vf is not None and vf.default is not None:
                value = vf.default
            else:
                raise OutputError(f"unable to resolve outputs.parameters.{p.name}")
        entry: dict[str, Any] = {"name": p.name, "value": value if isinstance(value, str) else _text(value)}
        if p.global_name:
            entry["globalName"] = p.global_name
        out.parameters.append(entry)
    for a in spec.artifacts:
        art: Any = MISSING
        try:
            if a.from_:
                art = resolve_artifact_ref(scope, a.from_)
            elif a.from_expression:
                art = scope.evaluate(a.from_expression)
                if art is None:
                    art = MISSING
        except ExprError as exc:
            raise OutputError(f"unable to resolve outputs.artifacts.{a.name}: {exc}") from exc
        if art is MISSING or art is ABSENT or not isinstance(art, dict):
            if a.optional:
                continue
            raise OutputError(f"unable to resolve outputs.artifacts.{a.name}")
        entry = dict(art)
        entry["name"] = a.name
        if a.global_name:
            entry["globalName"] = a.global_name
        out.artifacts.append(entry)
    return out


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
