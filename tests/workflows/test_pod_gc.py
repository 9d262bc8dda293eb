"""Which pods podGC lets go (engine.workflows.operations.pods_to_collect, used by both runtimes)."""

from __future__ import annotations

import pytest

from engine.workflows import nodes as N
from engine.workflows.operations import pods_to_collect
from engine.workflows.status import WorkflowStatus


def status(phase: str = "Running") -> WorkflowStatus:
    st = WorkflowStatus()
    st.phase = phase
    for nid, kind, node_phase in [
        ("ok", N.POD, N.SUCCEEDED),
        ("bad", N.POD, N.FAILED),
        ("busy", N.POD, N.RUNNING),
        ("group", "Steps", N.SUCCEEDED),
    ]:
        st.nodes[nid] = N.Node(id=nid, name=nid, display_name=nid, type=kind, phase=node_phase)
    return st


def ids(nodes: list[N.Node]) -> list[str]:
    return sorted(n.id for n in nodes)


def test_on_pod_completion_takes_every_finished_pod_a_reconcile_changed() -> None:
    changed = {"ok", "bad", "busy", "group"}
    assert ids(pods_to_collect(status(), "OnPodCompletion", changed, finished=False)) == ["bad", "ok"]
    assert ids(pods_to_collect(status(), "OnPodSuccess", changed, finished=False)) == ["ok"]
    assert pods_to_collect(status(), "OnPodSuccess", {"busy"}, finished=False) == []


@pytest.mark.parametrize(
    ("strategy", "phase", "expected"),
    [
        ("OnWorkflowCompletion", "Failed", ["bad", "busy", "ok"]),
        ("OnWorkflowSuccess", "Failed", []),
        ("OnWorkflowSuccess", "Succeeded", ["bad", "busy", "ok"]),
        (None, "Succeeded", []),
    ],
)
def test_workflow_strategies_take_all_pods_once_the_workflow_ends(
    strategy: str | None, phase: str, expected: list[str]
) -> None:
    assert pods_to_collect(status(phase), strategy, set(), finished=False) == []
    assert ids(pods_to_collect(status(phase), strategy, set(), finished=True)) == expected
