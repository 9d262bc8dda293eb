"""Mutexes and semaphores through the pure core: workflows and steps wait for each other's locks."""

from __future__ import annotations

from engine.workflows.plan import RunStep, StepOutcome
from engine.workflows.reconciler import Reconciler
from engine.workflows.submit import prepare_workflow
from engine.workflows.sync import LockManager
from tests.workflows.sim import load, simulate


def _running(rec: Reconciler) -> int:
    """Steps launched and not finished (nodes waiting for a lock have no process)."""
    return sum(
        1 for n in rec.status.nodes.values() if n.type == "Pod" and n.active() and n.id in rec._started
    )


WF_MUTEX = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: NAME}
spec:
  entrypoint: t
  synchronization:
    mutexes: [{name: shared}]
  templates:
  - name: t
    container: {image: busybox, command: [echo]}
"""


def _start(text: str, locks: LockManager, now: float) -> tuple[Reconciler, list[RunStep]]:
    wf, status = prepare_workflow(load(text), name_suffix="", uid="u", now=now)
    rec = Reconciler(wf, status, locks=locks)
    plan = rec.reconcile([], now)
    return rec, [a for a in plan.actions if isinstance(a, RunStep)]


def test_second_workflow_waits_pending_for_the_mutex_and_runs_after_release() -> None:
    locks = LockManager()
    first, runs1 = _start(WF_MUTEX.replace("NAME", "one"), locks, 100.0)
    second, runs2 = _start(WF_MUTEX.replace("NAME", "two"), locks, 101.0)
    assert len(runs1) == 1 and runs2 == []
    assert second.status.phase == "Pending"
    assert second.status.message == "Waiting for default/Mutex/shared lock. Lock status: 1/1"
    first.reconcile([StepOutcome(node_id=runs1[0].step.node_id, phase="Succeeded")], 102.0)
    assert first.status.phase == "Succeeded"
    plan = second.reconcile([], 103.0)
    assert [a.step.node_name for a in plan.actions if isinstance(a, RunStep)] == ["two"]
    assert second.status.synchronization == {
        "mutex": {"holding": [{"mutex": "default/Mutex/shared", "holder": "default/two"}]}
    }


def test_template_mutex_serialises_parallel_steps() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: tm}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: locked}
      - {name: b, template: locked}
  - name: locked
    synchronization: {mutexes: [{name: m}]}
    container: {image: busybox, command: [echo]}
"""
    seen: list[int] = []
    r = simulate(manifest, on_round=lambda rec, _r: seen.append(_running(rec)))
    assert r.phase == "Succeeded"
    assert max(seen) == 1
    waits = [n for n in r.status.nodes.values() if n.name.endswith(".b")]
    assert waits[0].phase == "Succeeded"


def test_semaphore_admits_as_many_holders_as_the_configmap_says() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: sem}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: s, template: locked, withSequence: {count: "5"}}
  - name: locked
    synchronization:
      semaphores: [{configMapKeyRef: {name: limits, key: workers}}]
    container: {image: busybox, command: [echo]}
"""
    seen: list[int] = []
    r = simulate(
        manifest,
        configmaps={"limits": {"workers": "2"}},
        on_round=lambda rec, _r: seen.append(_running(rec)),
    )
    assert r.phase == "Succeeded"
    assert max(seen) == 2
    assert len(r.started) == 5


def test_restored_holding_blocks_others_after_a_restart() -> None:
    locks = LockManager()
    first, _ = _start(WF_MUTEX.replace("NAME", "one"), locks, 100.0)
    # A new runtime: a fresh lock manager restored from the first workflow's persisted status.
    fresh = LockManager()
    Reconciler(first.workflow, first.status, locks=fresh)
    second, runs2 = _start(WF_MUTEX.replace("NAME", "two"), fresh, 101.0)
    assert runs2 == [] and second.status.phase == "Pending"
