"""WorkflowStatus: the workflow's phase, times, message, global outputs and node map, in Argo's JSON form.

The reconciler owns one and mutates it; runtimes persist it (the local runtime per node row, the
Kubernetes runtime as the object's status, compressed when large) and load it back with
:meth:`WorkflowStatus.from_dict`.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from engine.workflows.nodes import (
    FAILED,
    PENDING,
    POD,
    RUNNING,
    SUCCEEDED,
    Node,
    parse_time,
    rfc3339,
)

WF_UNKNOWN = ""
WF_PENDING = "Pending"
WF_RUNNING = "Running"
WF_SUCCEEDED = "Succeeded"
WF_FAILED = "Failed"
WF_ERROR = "Error"
WF_COMPLETED = frozenset({WF_SUCCEEDED, WF_FAILED, WF_ERROR})


class WorkflowStatus:
    __slots__ = (
        "conditions",
        "estimated_duration",
        "finished_at",
        "message",
        "nodes",
        "outputs",
        "phase",
        "progress",
        "started_at",
        "stored_templates",
        "synchronization",
    )

    def __init__(self) -> None:
        self.phase: str = WF_UNKNOWN
        self.message: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.nodes: dict[str, Node] = {}
        # Global outputs (globalName): {"parameters": [...], "artifacts": [...]}.
        self.outputs: dict[str, list[dict[str, Any]]] = {}
        self.stored_templates: dict[str, Any] = {}
        self.conditions: list[dict[str, str]] = []
        self.progress: str | None = None
        self.estimated_duration: int | None = None
        self.synchronization: dict[str, Any] | None = None

    def fulfilled(self) -> bool:
        return self.phase in WF_COMPLETED

    def compute_progress(self) -> str:
        """Argo's ``progress``: finished pods / all pods."""
        total = done = 0
        for n in self.nodes.values():
            if n.type == POD:
                total += 1
                if n.phase not in (PENDING, RUNNING):
                    done += 1
        return f"{done}/{total}"

    def to_dict(self, *, include_nodes: bool = True, include_stored: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase}
        if self.started_at is not None:
            out["startedAt"] = rfc3339(self.started_at)
        if self.finished_at is not None:
            out["finishedAt"] = rfc3339(self.finished_at)
        if self.message:
            out["message"] = self.message
        out["progress"] = self.progress or self.compute_progress()
        if self.estimated_duration is not None:
            out["estimatedDuration"] = self.estimated_duration
        if include_nodes and self.nodes:
            out["nodes"] = {nid: n.to_dict() for nid, n in self.nodes.items()}
        if self.outputs:
            out["outputs"] = self.outputs
        if self.stored_templates and include_stored:
            out["storedTemplates"] = self.stored_templates
        if self.conditions:
            out["conditions"] = self.conditions
        if self.synchronization:
            out["synchronization"] = self.synchronization
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WorkflowStatus:
        st = cls()
        if not data:
            return st
        st.phase = data.get("phase") or WF_UNKNOWN
        st.message = data.get("message")
        st.started_at = parse_time(data.get("startedAt"))
        st.finished_at = parse_time(data.get("finishedAt"))
        nodes = data.get("nodes")
        if nodes is None and data.get("compressedNodes"):
            nodes = decompress_nodes(data["compressedNodes"])
        st.nodes = {nid: Node.from_dict(n) for nid, n in (nodes or {}).items()}
        st.outputs = data.get("outputs") or {}
        st.stored_templates = data.get("storedTemplates") or {}
        st.conditions = list(data.get("conditions") or [])
        st.estimated_duration = data.get("estimatedDuration")
        st.synchronization = data.get("synchronization")
        return st


def compress_nodes(nodes: dict[str, Any]) -> str:
    """Argo's ``compressedNodes``: gzip of the nodes JSON, base64-encoded."""
    raw = json.dumps(nodes, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=6)).decode()


def decompress_nodes(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(text)))
    return data


WORKFLOW_PHASE_OF_NODE = {
    PENDING: WF_PENDING,
    RUNNING: WF_RUNNING,
    SUCCEEDED: WF_SUCCEEDED,
    "Skipped": WF_SUCCEEDED,
    "Omitted": WF_SUCCEEDED,
    FAILED: WF_FAILED,
    "Error": WF_ERROR,
}
