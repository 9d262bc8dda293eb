"""Submission: turn a Workflow manifest into the workflow that runs.

Names it (``generateName`` plus a suffix the runtime chooses), merges a ``workflowTemplateRef``'s spec
under the workflow's own fields, applies ``-p``/``-f`` parameters over the arguments, sets the entrypoint
override, and stores every template reachable through ``templateRef`` in the initial status so the run
never depends on stored templates changing. Pure: the runtime passes the suffix, uid, time and the
template lookup. Called by ``sluice run``/``submit``, the server, cron and event triggers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import Problem, ReferenceError_, SpecError
from engine.spec.fields import scalar_str
from engine.spec.workflow import API_VERSION, Workflow, WorkflowSpec
from engine.workflows.nodes import rfc3339
from engine.workflows.status import WorkflowStatus
from engine.workflows.templates import TemplateSource, store_referenced_templates

WORKFLOW_TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"
CLUSTER_WORKFLOW_TEMPLATE_LABEL = "workflows.argoproj.io/cluster-workflow-template"


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    return over


def _merge_params(base: list[dict[str, Any]], over: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(p) for p in base]
    index = {p["name"]: i for i, p in enumerate(out)}
    for p in over:
        if p["name"] in index:
            out[index[p["name"]]] = _merge(out[index[p["name"]]], p)
        else:
            index[p["name"]] = len(out)
            out.append(dict(p))
    return out


def merge_workflow_template(base: WorkflowSpec, spec: WorkflowSpec) -> WorkflowSpec:
    """The template's spec with the workflow's own fields on top; arguments merge by name."""
    b = base.dump()
    o = spec.dump()
    b_args = b.pop("arguments", {})
    o_args = o.pop("arguments", {})
    merged = _merge(b, o)
    args: dict[str, Any] = {}
    params = _merge_params(b_args.get("parameters", []), o_args.get("parameters", []))
    if params:
        args["parameters"] = params
    arts = _merge_params(b_args.get("artifacts", []), o_args.get("artifacts", []))
    if arts:
        args["artifacts"] = arts
    if args:
        merged["arguments"] = args
    return WorkflowSpec.parse(merged)


def apply_parameters(spec: WorkflowSpec, parameters: Iterable[tuple[str, Any]]) -> WorkflowSpec:
    """``-p name=value`` over ``spec.arguments.parameters`` (unknown names are added)."""
    params = list(parameters)
    if not params:
        return spec
    d = spec.dump()
    existing = d.setdefault("arguments", {}).setdefault("parameters", [])
    for name, value in params:
        text = value if isinstance(value, str) else scalar_str(value)
        for p in existing:
            if p["name"] == name:
                p["value"] = text
                p.pop("valueFrom", None)
                break
        else:
            existing.append({"name": name, "value": text})
    return WorkflowSpec.parse(d)


def prepare_workflow(
    wf: Workflow,
    *,
    name_suffix: str,
    uid: str,
    now: float,
    namespace: str | None = None,
    parameters: Iterable[tuple[str, Any]] = (),
    entrypoint: str | None = None,
    source: TemplateSource | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> tuple[Workflow, WorkflowStatus]:
    meta = wf.metadata
    name = meta.name
    if not name:
        if not meta.generate_name:
            raise SpecError([Problem("metadata.name", "is required (or metadata.generateName)")])
        name = meta.generate_name + name_suffix
    spec = wf.spec
    new_labels = dict(meta.labels)
    if spec.workflow_template_ref is not None:
        ref = spec.workflow_template_ref
        base = source(bool(ref.cluster_scope), ref.name) if source is not None else None
        if base is None:
            kind = "ClusterWorkflowTemplate" if ref.cluster_scope else "WorkflowTemplate"
            raise SpecError([Problem("spec.workflowTemplateRef.name", f"{kind} {ref.name!r} not found")])
        spec = merge_workflow_template(base, spec)
        label = CLUSTER_WORKFLOW_TEMPLATE_LABEL if ref.cluster_scope else WORKFLOW_TEMPLATE_LABEL
        new_labels[label] = ref.name
    spec = apply_parameters(spec, parameters)
    if entrypoint:
        spec = dataclasses.replace(spec, entrypoint=entrypoint)
    new_labels.update(labels or {})
    new_annotations = dict(meta.annotations)
    new_annotations.update(annotations or {})
    new_meta = meta.evolve(
        name=name,
        namespace=namespace or meta.namespace or "default",
        uid=uid,
        creation_timestamp=meta.creation_timestamp or rfc3339(now),
        labels=new_labels,
        annotations=new_annotations,
    )
    out = Workflow(api_version=API_VERSION, kind="Workflow", metadata=new_meta, spec=spec)
    status = WorkflowStatus()
    try:
        status.stored_templates = store_referenced_templates(spec, source or (lambda _c, _n: None))
    except ReferenceError_ as exc:
        raise SpecError([Problem("spec", str(exc))]) from None
    return out, status
