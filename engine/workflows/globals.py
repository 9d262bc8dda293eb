"""The workflow's global variables: ``workflow.name``, ``workflow.parameters.*``, labels, timestamps...

Built once when the workflow starts (and again after a restart, from the same inputs), then extended as
it runs (``workflow.outputs.*`` from globalName outputs; ``workflow.status`` and ``workflow.failures``
for exit handlers). Used by the reconciler as the root of every scope.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from typing import Any, Protocol

from engine.errors import SluiceError
from engine.expr import evaluate
from engine.spec.workflow import Workflow
from engine.workflows.nodes import parse_time
from engine.workflows.scope import Scope

SCHEDULED_TIME_ANNOTATION = "workflows.argoproj.io/scheduled-time"
# strftime characters Argo exposes as workflow.creationTimestamp.<char>.
_STRFTIME_CHARS = "aAbBcCdDeFgGhHIjklmMnpRrSTtuUVwWxXyYzZ"


class _Control(Protocol):
    suspend: bool


def _param_value(p: Any, configmaps: Mapping[str, Mapping[str, str]]) -> str:
    if p.value is not None:
        return str(p.value)
    vf = p.value_from
    if vf is not None and vf.config_map_key_ref is not None:
        ref = vf.config_map_key_ref
        cm = configmaps.get(ref.name)
        if cm is not None and ref.key in cm:
            return str(cm[ref.key])
        if vf.default is not None:
            return str(vf.default)
        raise SluiceError(
            f"failed to set global parameter {p.name} from configmap with name {ref.name} and key {ref.key}"
        )
    if p.default is not None:
        return str(p.default)
    if vf is not None and vf.default is not None:
        return str(vf.default)
    raise SluiceError(
        f"either value or valueFrom must be specified in order to set global parameter {p.name}"
    )


@functools.lru_cache(maxsize=64)
def _creation_timestamp(created: int) -> dict[str, str]:
    """The ``workflow.creationTimestamp.*`` globals of one second; workflows created together share them."""
    ts = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    rfc = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = {
        "workflow.creationTimestamp": rfc,
        "workflow.creationTimestamp.RFC3339": rfc,
        "workflow.creationTimestamp.s": str(created),
    }
    for ch in _STRFTIME_CHARS:
        try:
            out[f"workflow.creationTimestamp.{ch}"] = ts.strftime("%" + ch)
        except ValueError:
            continue
    return out


def build_globals(
    workflow: Workflow, status: Any, configmaps: Mapping[str, Mapping[str, str]], control: _Control
) -> Scope:
    meta = workflow.metadata
    spec = workflow.spec
    g: dict[str, Any] = {
        "workflow.name": meta.name or "",
        "workflow.namespace": meta.namespace or "default",
        "workflow.uid": meta.uid or "",
        "workflow.mainEntrypoint": spec.entrypoint or "",
        "workflow.serviceAccountName": spec.service_account_name or "",
        "workflow.status": "Running",
    }
    created = parse_time(meta.creation_timestamp) if meta.creation_timestamp else None
    if created is None:
        created = status.started_at if status.started_at is not None else 0.0
    g.update(_creation_timestamp(int(created)))
    if spec.priority is not None:
        g["workflow.priority"] = str(spec.priority)
    scheduled = meta.annotations.get(SCHEDULED_TIME_ANNOTATION)
    if scheduled:
        g["workflow.scheduledTime"] = str(scheduled)

    params = []
    for p in spec.arguments.parameters:
        value = _param_value(p, configmaps)
        g[f"workflow.parameters.{p.name}"] = value
        params.append({"name": p.name, "value": value})
    g["workflow.parameters"] = json.dumps(params, separators=(",", ":"))
    g["workflow.parameters.json"] = g["workflow.parameters"]

    labels = dict(meta.labels)
    annotations = dict(meta.annotations)
    md = spec.workflow_metadata
    if md is not None:
        labels.update(md.labels)
        annotations.update(md.annotations)
    for k, v in annotations.items():
        g[f"workflow.annotations.{k}"] = str(v)
    g["workflow.annotations"] = json.dumps(annotations, separators=(",", ":"), sort_keys=True)
    g["workflow.annotations.json"] = g["workflow.annotations"]
    for k, v in labels.items():
        g[f"workflow.labels.{k}"] = str(v)
    scope = Scope(g)
    if md is not None:
        for k, src in md.labels_from.items():
            expr_src = src.get("expression") if isinstance(src, dict) else None
            if not expr_src:
                continue
            v = evaluate(expr_src, scope.env)
            if not isinstance(v, str):
                raise SluiceError(f"workflowMetadata.labelsFrom.{k}: expression must give a string")
            labels[k] = v
            g[f"workflow.labels.{k}"] = v
    g["workflow.labels"] = json.dumps(labels, separators=(",", ":"), sort_keys=True)
    g["workflow.labels.json"] = g["workflow.labels"]

    outputs = getattr(status, "outputs", None) or {}
    for p in outputs.get("parameters", ()):
        if "value" in p:
            g[f"workflow.outputs.parameters.{p['name']}"] = p["value"]
    for a in outputs.get("artifacts", ()):
        g[f"workflow.outputs.artifacts.{a['name']}"] = a
    return scope
