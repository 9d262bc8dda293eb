"""The node model of a running workflow: Argo's NodeStatus, its phases, types, ids and JSON form.

A node is one invocation in the tree (the workflow root, a steps/DAG template, a step group, a retry
wrapper, a pod, a suspend point...). Ids are deterministic: ``<workflow>-<fnv32a(node name)>`` and the
root's id is the workflow name, so the same name always maps to the same node and pod name. Used by the
reconciler, the runtimes (which persist nodes as JSON) and the CLI (which renders them).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

# Node phases.
PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
SKIPPED = "Skipped"
FAILED = "Failed"
ERROR = "Error"
OMITTED = "Omitted"

# Node types.
POD = "Pod"
CONTAINER = "Container"
STEPS = "Steps"
STEP_GROUP = "StepGroup"
DAG = "DAG"
TASK_GROUP = "TaskGroup"
RETRY = "Retry"
SKIPPED_TYPE = "Skipped"
SUSPEND = "Suspend"
HTTP = "HTTP"
PLUGIN = "Plugin"

COMPLETED_PHASES = frozenset({SUCCEEDED, FAILED, ERROR})
FULFILLED_PHASES = frozenset({SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED})
UNSUCCESSFUL_PHASES = frozenset({FAILED, ERROR})
LEAF_TYPES = frozenset({POD, SUSPEND, HTTP, PLUGIN, SKIPPED_TYPE, CONTAINER})

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv32a(text: str) -> int:
    h = _FNV_OFFSET
    for b in text.encode():
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


@functools.lru_cache(maxsize=1 << 16)
def node_id(workflow_name: str, node_name: str) -> str:
    """Argo's deterministic node id; the root node's id is the workflow name itself."""
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{fnv32a(node_name)}"


POD_NAME_MAX = 253
_HASH_ROOM = 10


@functools.lru_cache(maxsize=1 << 14)
def pod_name(workflow_name: str, nid: str, template_name: str | None) -> str:
    """Argo's v2 pod name ``<wf>-<template>-<hash>``, from the node's id (prefix cut to fit 253 characters).

    The hash part is the node id's suffix, so a node whose id was disambiguated after a hash collision
    (``<wf>-<hash>-1``) also gets a pod name of its own.
    """
    if nid == workflow_name:
        return workflow_name
    head = workflow_name + "-"
    suffix = nid[len(head) :] if nid.startswith(head) else str(fnv32a(nid))
    prefix = f"{workflow_name}-{template_name}" if template_name else workflow_name
    room = POD_NAME_MAX - _HASH_ROOM - 1
    return f"{prefix[:room]}-{suffix}"


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _rfc3339_seconds(int(ts))


@functools.lru_cache(maxsize=4096)
def _rfc3339_seconds(seconds: int) -> str:
    # Nodes of a workflow share few distinct seconds; formatting dominated writing node JSON.
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


class NodeOutputs:
    """Outputs of a node: parameters (ordered, with their globalName), artifacts, result and exit code."""

    __slots__ = ("artifacts", "exit_code", "parameters", "result")

    def __init__(
        self,
        parameters: list[dict[str, Any]] | None = None,
        artifacts: list[dict[str, Any]] | None = None,
        result: str | None = None,
        exit_code: str | None = None,
    ) -> None:
        self.parameters = parameters or []
        self.artifacts = artifacts or []
        self.result = result
        self.exit_code = exit_code

    def parameter(self, name: str) -> dict[str, Any] | None:
        for p in self.parameters:
            if p.get("name") == name:
                return p
        return None

    def artifact(self, name: str) -> dict[str, Any] | None:
        for a in self.artifacts:
            if a.get("name") == name:
                return a
        return None

    def is_empty(self) -> bool:
        return not (
            self.parameters or self.artifacts or self.result is not None or self.exit_code is not None
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.parameters:
            out["parameters"] = self.parameters
        if self.artifacts:
            out["artifacts"] = self.artifacts
        if self.result is not None:
            out["result"] = self.result
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> NodeOutputs | None:
        if not data:
            return None
        return cls(
            parameters=list(data.get("parameters") or []),
            artifacts=list(data.get("artifacts") or []),
            result=data.get("result"),
            exit_code=data.get("exitCode"),
        )

    def copy(self) -> NodeOutputs:
        return NodeOutputs(
            [dict(p) for p in self.parameters], [dict(a) for a in self.artifacts], self.result, self.exit_code
        )


class Node:
    """One node of ``status.nodes``; mutable, owned by the reconciler."""

    __slots__ = (
        "boundary_id",
        "children",
        "daemoned",
        "display_name",
        "estimated_duration",
        "finished_at",
        "host_node_name",
        "id",
        "inputs",
        "memoization_status",
        "message",
        "name",
        "node_flag",
        "outbound_nodes",
        "outputs",
        "phase",
        "pod_ip",
        "progress",
        "started_at",
        "synchronization_status",
        "template_name",
        "template_ref",
        "template_scope",
        "type",
    )

    def __init__(
        self,
        *,
        id: str,
        name: str,
        display_name: str,
        type: str,
        phase: str,
        template_name: str | None = None,
        template_ref: dict[str, Any] | None = None,
        template_scope: str | None = None,
        boundary_id: str | None = None,
        message: str | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.display_name = display_name
        self.type = type
        self.phase = phase
        self.template_name = template_name
        self.template_ref = template_ref
        self.template_scope = template_scope
        self.boundary_id = boundary_id
        self.message = message
        self.started_at = started_at
        self.finished_at = finished_at
        self.children: list[str] = []
        self.outbound_nodes: list[str] = []
        self.inputs: dict[str, Any] | None = None
        self.outputs: NodeOutputs | None = None
        self.host_node_name: str | None = None
        self.pod_ip: str | None = None
        self.daemoned: bool | None = None
        self.node_flag: dict[str, bool] | None = None
        self.memoization_status: dict[str, Any] | None = None
        self.synchronization_status: dict[str, Any] | None = None
        self.progress: str | None = None
        self.estimated_duration: int | None = None

    # --- predicates, as Argo defines them -----------------------------------------------------------

    def fulfilled(self) -> bool:
        return self.phase in FULFILLED_PHASES or (bool(self.daemoned) and self.phase != PENDING)

    def completed(self) -> bool:
        return self.phase in COMPLETED_PHASES

    def unsuccessful(self) -> bool:
        return self.phase in UNSUCCESSFUL_PHASES

    def active(self) -> bool:
        return self.phase in (PENDING, RUNNING)

    def hooked(self) -> bool:
        return bool(self.node_flag and self.node_flag.get("hooked"))

    def input_parameters(self) -> dict[str, str]:
        if not self.inputs:
            return {}
        return {p["name"]: p.get("value", "") for p in self.inputs.get("parameters", ())}

    # --- JSON ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "type": self.type,
            "phase": self.phase,
        }
        if self.template_name:
            out["templateName"] = self.template_name
        if self.template_ref:
            out["templateRef"] = self.template_ref
        if self.template_scope:
            out["templateScope"] = self.template_scope
        if self.boundary_id:
            out["boundaryID"] = self.boundary_id
        if self.message:
            out["message"] = self.message
        if self.started_at is not None:
            out["startedAt"] = rfc3339(self.started_at)
        if self.finished_at is not None:
            out["finishedAt"] = rfc3339(self.finished_at)
        if self.progress:
            out["progress"] = self.progress
        if self.children:
            out["children"] = self.children
        if self.outbound_nodes:
            out["outboundNodes"] = self.outbound_nodes
        if self.inputs:
            out["inputs"] = self.inputs
        if self.outputs is not None and not self.outputs.is_empty():
            out["outputs"] = self.outputs.to_dict()
        if self.host_node_name:
            out["hostNodeName"] = self.host_node_name
        if self.pod_ip:
            out["podIP"] = self.pod_ip
        if self.daemoned:
            out["daemoned"] = True
        if self.node_flag:
            out["nodeFlag"] = self.node_flag
        if self.memoization_status:
            out["memoizationStatus"] = self.memoization_status
        if self.synchronization_status:
            out["synchronizationStatus"] = self.synchronization_status
        if self.estimated_duration is not None:
            out["estimatedDuration"] = self.estimated_duration
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        node = cls(
            id=data["id"],
            name=data["name"],
            display_name=data.get("displayName", data["name"]),
            type=data["type"],
            phase=data.get("phase") or PENDING,
            template_name=data.get("templateName"),
            template_ref=data.get("templateRef"),
            template_scope=data.get("templateScope"),
            boundary_id=data.get("boundaryID"),
            message=data.get("message"),
            started_at=parse_time(data.get("startedAt")),
            finished_at=parse_time(data.get("finishedAt")),
        )
        node.children = list(data.get("children") or [])
        node.outbound_nodes = list(data.get("outboundNodes") or [])
        node.inputs = data.get("inputs")
        node.outputs = NodeOutputs.from_dict(data.get("outputs"))
        node.host_node_name = data.get("hostNodeName")
        node.pod_ip = data.get("podIP")
        node.daemoned = data.get("daemoned")
        node.node_flag = data.get("nodeFlag")
        node.memoization_status = data.get("memoizationStatus")
        node.synchronization_status = data.get("synchronizationStatus")
        node.progress = data.get("progress")
        node.estimated_duration = data.get("estimatedDuration")
        return node

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.type}, {self.phase})"
