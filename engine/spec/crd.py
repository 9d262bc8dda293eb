"""The CustomResourceDefinitions of the workflow and event kinds, generated from engine.spec.

``crds/`` holds their YAML (``sluice crds --dir crds`` writes it; a test fails when the files drift from
the models). Each CRD has a structural OpenAPI v3 schema built by :func:`engine.spec.fields.json_schema`
from the same field tables the parser uses, so anything the parser accepts the API server keeps, and
the fields the engine does not interpret (Kubernetes sub-objects, free-form items) are kept as given.
Called by the CLI and by the Kubernetes runtime's tests; pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.spec.events import EventBusSpec, EventSourceSpec, SensorSpec
from engine.spec.fields import Model, json_schema
from engine.spec.workflow import CronWorkflowSpec, WorkflowSpec

GROUP = "sluice.dev"
VERSION = "v1alpha1"
CATEGORY = "sluice"


@dataclass(frozen=True, slots=True)
class Column:
    """One ``additionalPrinterColumns`` entry (``kubectl get`` output)."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    description: str = ""


@dataclass(frozen=True, slots=True)
class CrdKind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[Model]
    namespaced: bool = True
    has_status: bool = False
    columns: tuple[Column, ...] = ()


AGE = Column("Age", "date", ".metadata.creationTimestamp")
PHASES = "Pending, Running, Succeeded, Failed or Error"

# Short names carry an "s" so they never collide with Argo's (wf, cwf, ...) on a cluster running both.
KINDS: tuple[CrdKind, ...] = (
    CrdKind(
        kind="Workflow",
        plural="workflows",
        short_names=("swf",),
        spec=WorkflowSpec,
        has_status=True,
        columns=(
            Column("Phase", "string", ".status.phase", description=PHASES),
            Column("Progress", "string", ".status.progress", description="finished steps / all steps"),
            AGE,
            Column("Message", "string", ".status.message"),
        ),
    ),
    CrdKind(
        kind="WorkflowTemplate",
        plural="workflowtemplates",
        short_names=("swftmpl",),
        spec=WorkflowSpec,
        columns=(AGE,),
    ),
    CrdKind(
        kind="ClusterWorkflowTemplate",
        plural="clusterworkflowtemplates",
        short_names=("scwftmpl",),
        spec=WorkflowSpec,
        namespaced=False,
        columns=(AGE,),
    ),
    CrdKind(
        kind="CronWorkflow",
        plural="cronworkflows",
        short_names=("scwf",),
        spec=CronWorkflowSpec,
        has_status=True,
        columns=(
            Column("Schedules", "string", ".spec.schedules"),
            Column("Suspended", "boolean", ".spec.suspend"),
            Column("Last Scheduled", "date", ".status.lastScheduledTime"),
            AGE,
        ),
    ),
    CrdKind(
        kind="EventSource",
        plural="eventsources",
        short_names=("ses",),
        spec=EventSourceSpec,
        has_status=True,
        columns=(AGE,),
    ),
    CrdKind(
        kind="Sensor",
        plural="sensors",
        short_names=("ssn",),
        spec=SensorSpec,
        has_status=True,
        columns=(AGE,),
    ),
    CrdKind(
        kind="EventBus",
        plural="eventbus",
        short_names=("seb",),
        spec=EventBusSpec,
        has_status=True,
        columns=(AGE,),
    ),
)


def crd(k: CrdKind) -> dict[str, Any]:
    """The CustomResourceDefinition object of one kind."""
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        # The API server owns metadata's schema; a CRD may only restrict name and generateName.
        "metadata": {"type": "object"},
        "spec": json_schema(k.spec),
    }
    if k.has_status:
        # Written by the operator alone; its shape follows the engine's status model.
        properties["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": properties},
        },
    }
    if k.has_status:
        version["subresources"] = {"status": {}}
    if k.columns:
        version["additionalPrinterColumns"] = [_column(c) for c in k.columns]
    singular = k.kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{k.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": k.kind,
                "listKind": f"{k.kind}List",
                "plural": k.plural,
                "singular": singular,
                "shortNames": list(k.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced" if k.namespaced else "Cluster",
            "versions": [version],
        },
    }


def _column(c: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "type": c.type, "jsonPath": c.json_path}
    if c.priority:
        out["priority"] = c.priority
    if c.description:
        out["description"] = c.description
    return out


def custom_resource_definitions() -> list[dict[str, Any]]:
    """Every CRD Sluicegate installs, in a stable order."""
    return [crd(k) for k in KINDS]


def file_name(definition: dict[str, Any]) -> str:
    """``crds/<group>_<plural>.yaml``, the layout kubebuilder projects use."""
    spec = definition["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


__all__ = ["GROUP", "KINDS", "VERSION", "CrdKind", "crd", "custom_resource_definitions", "file_name"]
