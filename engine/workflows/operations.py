"""Operations on a workflow's status that are not reconciles: retry in place, node selectors, podGC.

``reset_for_retry`` keeps every Succeeded (and ``when``-Skipped) node and removes the rest, so the next
reconcile rebuilds the failed parts: node ids are deterministic, so a rebuilt steps group or DAG finds
its succeeded children again and does not run them twice. Called by ``sluice retry`` on both runtimes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from engine.errors import SluiceError
from engine.workflows import nodes as N
from engine.workflows.nodes import Node
from engine.workflows.status import WF_RUNNING, WorkflowStatus

_SELECTABLE: dict[str, Callable[[Node], str]] = {
    "id": lambda n: n.id,
    "name": lambda n: n.name,
    "displayName": lambda n: n.display_name,
    "templateName": lambda n: n.template_name or "",
    "phase": lambda n: n.phase,
    "type": lambda n: n.type,
    "templateRef.name": lambda n: (n.template_ref or {}).get("name", ""),
    "templateRef.template": lambda n: (n.template_ref or {}).get("template", ""),
}


def node_matcher(selector: str | None) -> Callable[[Node], bool]:
    """A predicate for Argo's ``--node-field-selector`` (``a=b,c!=d``)."""
    if not selector:
        return lambda _n: True
    clauses = []
    for part in selector.split(","):
        part = part.strip()
        if not part:
            continue
        neg = "!=" in part
        key, _, value = part.partition("!=" if neg else "=")
        key = key.strip()
        if key not in _SELECTABLE:
            raise SluiceError(f"unknown node field {key!r} (one of {', '.join(_SELECTABLE)})")
        clauses.append((_SELECTABLE[key], value.strip().lstrip("="), neg))

    def match(n: Node) -> bool:
        return all((get(n) == value) != neg for get, value, neg in clauses)

    return match


def reset_for_retry(
    status: WorkflowStatus, *, restart_successful: bool = False, node_selector: str | None = None
) -> list[str]:
    """Drop the nodes that must run again; returns their names. The status becomes Running."""
    select: Callable[[Node], bool] = node_matcher(node_selector) if restart_successful else (lambda _n: False)
    keep: dict[str, Node] = {}
    for nid, n in status.nodes.items():
        if n.name.endswith(".onExit") and n.boundary_id is None:
            continue
        if (n.phase == N.SUCCEEDED or (n.phase == N.SKIPPED and n.type == N.SKIPPED_TYPE)) and not select(n):
            keep[nid] = n
    dropped = [n.name for nid, n in status.nodes.items() if nid not in keep]
    status.nodes = keep
    status.phase = WF_RUNNING
    status.message = None
    status.finished_at = None
    status.conditions = [c for c in status.conditions if c.get("type") != "Completed"]
    return dropped


def pods_to_collect(
    status: WorkflowStatus, strategy: str | None, changed: Iterable[str], *, finished: bool
) -> list[Node]:
    """podGC: the Pod nodes whose pods may go now, for ``strategy`` (OnPodCompletion, OnPodSuccess,
    OnWorkflowCompletion, OnWorkflowSuccess), given the nodes a reconcile ``changed`` and whether it
    ``finished`` the workflow. Both runtimes delete what this names (after deleteDelayDuration)."""
    nodes = status.nodes
    if strategy in ("OnPodCompletion", "OnPodSuccess"):
        doomed = []
        for nid in changed:
            n = nodes.get(nid)
            done = n is not None and n.type == N.POD and n.completed()
            if done and n is not None and (strategy == "OnPodCompletion" or n.phase == N.SUCCEEDED):
                doomed.append(n)
        return doomed
    if finished and (strategy == "OnWorkflowCompletion" or (strategy and status.phase == "Succeeded")):
        return [n for n in nodes.values() if n.type == N.POD]
    return []
