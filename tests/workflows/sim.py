"""A simulated runtime for table tests of the workflow core: scripted step outcomes and a fake clock.

``simulate(manifest, outcome=...)`` runs a workflow to the end without processes: every RunStep gets the
outcome the test's function returns (by default: Succeeded, stdout = the container's args joined).
Time advances only when the core asks for a requeue or a step takes time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.spec.workflow import Workflow, WorkflowTemplate
from engine.workflows.plan import KillStep, RunStep, StepOutcome, StepRun
from engine.workflows.reconciler import Reconciler, Settings
from engine.workflows.status import WorkflowStatus
from engine.workflows.submit import prepare_workflow


@dataclass
class Result:
    """What happened: the final status, every step started (in order) and the reconciler."""

    status: WorkflowStatus
    started: list[StepRun]
    reconciler: Reconciler
    killed: list[KillStep] = field(default_factory=list)
    rounds: int = 0

    @property
    def phase(self) -> str:
        return self.status.phase

    def node(self, name: str) -> Any:
        for n in self.status.nodes.values():
            if n.name == name or (n.display_name == name and n.name.count(".") <= 1):
                return n
        raise KeyError(name)

    def by_name(self) -> dict[str, Any]:
        return {n.name: n for n in self.status.nodes.values()}

    def phases(self) -> dict[str, str]:
        return {n.name: n.phase for n in self.status.nodes.values()}


Outcome = Callable[[StepRun], StepOutcome | dict[str, Any] | None]


def default_outcome(run: StepRun) -> dict[str, Any]:
    args = [str(a) for a in (run.container.get("args") or [])]
    return {"phase": "Succeeded", "result": " ".join(args), "exit_code": 0}


def load(text: str) -> Workflow:
    return Workflow.parse(yaml.safe_load(text))


def simulate(
    manifest: str | Workflow,
    *,
    outcome: Outcome = default_outcome,
    templates: Mapping[str, str] | None = None,
    parameters: list[tuple[str, str]] | None = None,
    configmaps: Mapping[str, Mapping[str, str]] | None = None,
    step_seconds: float = 1.0,
    start: float = 1_700_000_000.0,
    max_rounds: int = 10_000,
    settings: Settings | None = None,
    on_round: Callable[[Reconciler, int], None] | None = None,
) -> Result:
    wf = load(manifest) if isinstance(manifest, str) else manifest
    stored = {}
    for text in (templates or {}).values():
        wt = WorkflowTemplate.parse(yaml.safe_load(text))
        cluster = wt.kind == "ClusterWorkflowTemplate"
        stored[(cluster, wt.metadata.name)] = wt.spec
    wf, status = prepare_workflow(
        wf,
        name_suffix="abcde",
        uid="uid-1",
        now=start,
        parameters=parameters or [],
        source=lambda cluster, name: stored.get((cluster, name)),
    )
    rec = Reconciler(
        wf, status, configmaps=configmaps, settings=settings or Settings(always_capture_result=True)
    )
    now = start
    pending: list[StepOutcome] = []
    running: dict[str, tuple[float, StepOutcome]] = {}
    started: list[StepRun] = []
    killed: list[KillStep] = []
    rounds = 0
    while rounds < max_rounds:
        rounds += 1
        if on_round is not None:
            on_round(rec, rounds)
        plan = rec.reconcile(pending, now)
        pending = []
        for action in plan.actions:
            if isinstance(action, RunStep):
                run = action.step
                started.append(run)
                out = outcome(run)
                if out is None:
                    continue  # stays running until killed
                if isinstance(out, dict):
                    out = StepOutcome(
                        node_id=run.node_id,
                        phase=out.get("phase", "Succeeded"),
                        message=out.get("message", ""),
                        exit_code=out.get("exit_code"),
                        result=out.get("result"),
                        parameters=tuple(out.get("parameters", {}).items()),
                        artifacts=tuple(out.get("artifacts", ())),
                    )
                pending.append(StepOutcome(node_id=run.node_id, phase="Running", started_at=now))
                running[run.node_id] = (now + step_seconds, out)
            elif isinstance(action, KillStep):
                killed.append(action)
                running.pop(action.node_id, None)
                pending.append(
                    StepOutcome(
                        node_id=action.node_id, phase="Failed", message=action.message, finished_at=now
                    )
                )
        if plan.finished:
            break
        if not pending:
            due = [t for t, _ in running.values()]
            candidates = [*due, *([plan.requeue_at] if plan.requeue_at is not None else [])]
            if not candidates:
                raise AssertionError(
                    f"workflow stuck in round {rounds}: {rec.status.to_dict(include_nodes=False)}"
                )
            now = max(now, min(candidates))
            for nid, (t, out) in list(running.items()):
                if t <= now:
                    del running[nid]
                    pending.append(
                        StepOutcome(
                            node_id=out.node_id,
                            phase=out.phase,
                            message=out.message,
                            exit_code=out.exit_code,
                            result=out.result,
                            parameters=out.parameters,
                            artifacts=out.artifacts,
                            finished_at=now,
                        )
                    )
    return Result(rec.status, started, rec, killed, rounds)
