"""Retries, exit handlers, hooks, deadlines, stop/terminate, suspend/resume and restarts in the pure core."""

from __future__ import annotations

import itertools
import json

from engine.workflows.plan import RunStep, StepOutcome
from engine.workflows.reconciler import Reconciler
from engine.workflows.status import WorkflowStatus
from tests.workflows.sim import load, simulate


def retry_wf(strategy: str) -> str:
    return f"""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{name: r}}
spec:
  entrypoint: t
  templates:
  - name: t
    retryStrategy: {strategy}
    container: {{image: busybox, command: [sh, -c, "exit 1"]}}
"""


def always(phase: str, message: str = "Error (exit code 1)"):  # type: ignore[no-untyped-def]
    return lambda run: {"phase": phase, "message": message, "exit_code": 1}


def test_retry_limit_n_means_n_plus_one_attempts_named_by_index() -> None:
    r = simulate(retry_wf("{limit: 2}"), outcome=always("Failed"))
    assert r.phase == "Failed"
    root = r.by_name()["r"]
    assert root.type == "Retry" and root.message == "No more retries left"
    assert [r.status.nodes[c].name for c in root.children] == ["r(0)", "r(1)", "r(2)"]
    assert all(r.status.nodes[c].node_flag == {"retried": True} for c in root.children)
    assert [s.attempt for s in r.started] == [0, 1, 2]


def test_default_retry_policy_does_not_retry_errors() -> None:
    r = simulate(retry_wf("{limit: 3}"), outcome=always("Error", "pod deleted"))
    assert len(r.started) == 1
    assert r.by_name()["r"].phase == "Error"


def test_on_error_policy_retries_errors_but_not_failures() -> None:
    r = simulate(retry_wf("{limit: 3, retryPolicy: OnError}"), outcome=always("Error", "pod deleted"))
    assert len(r.started) == 4
    r = simulate(retry_wf("{limit: 3, retryPolicy: OnError}"), outcome=always("Failed"))
    assert len(r.started) == 1


def test_retry_succeeds_when_a_later_attempt_succeeds_and_takes_its_outputs() -> None:
    def outcome(run):  # type: ignore[no-untyped-def]
        if run.attempt < 2:
            return {"phase": "Failed", "message": "Error (exit code 1)", "exit_code": 1}
        return {"phase": "Succeeded", "result": "third time", "exit_code": 0}

    r = simulate(retry_wf("{limit: 5}"), outcome=outcome)
    assert r.phase == "Succeeded"
    assert r.by_name()["r"].outputs.result == "third time"


def test_backoff_waits_duration_times_factor_capped_between_attempts() -> None:
    r = simulate(
        retry_wf("{limit: 4, backoff: {duration: '10', factor: 2, cap: '25s'}}"),
        outcome=always("Failed"),
        step_seconds=1.0,
    )
    assert len(r.started) == 5
    attempts = sorted((n for n in r.status.nodes.values() if n.name.startswith("r(")), key=lambda n: n.name)
    gaps = [b.started_at - a.finished_at for a, b in itertools.pairwise(attempts)]
    assert gaps == [10.0, 20.0, 25.0, 25.0]


def test_retry_expression_stops_retries_with_argo_message() -> None:
    r = simulate(
        retry_wf("{limit: 10, expression: 'asInt(lastRetry.exitCode) > 1'}"),
        outcome=lambda run: {"phase": "Failed", "message": "Error (exit code 1)", "exit_code": 1},
    )
    assert len(r.started) == 1
    assert r.by_name()["r"].message == "retryStrategy.expression evaluated to false"


def test_max_duration_fails_the_retry_node() -> None:
    r = simulate(
        retry_wf("{limit: 10, backoff: {duration: '30s', maxDuration: '45s'}}"),
        outcome=always("Failed"),
    )
    assert r.by_name()["r"].message in (
        "Backoff would exceed max duration limit",
        "Max duration limit exceeded",
    )
    assert len(r.started) == 2


EXIT = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: ex}
spec:
  entrypoint: main
  onExit: handler
  templates:
  - name: main
    container: {image: busybox, command: [echo]}
  - name: handler
    container: {image: busybox, command: [echo], args: ["{{workflow.status}}", "{{workflow.failures}}"]}
"""


def test_exit_handler_sees_workflow_status_and_failures() -> None:
    def outcome(run):  # type: ignore[no-untyped-def]
        if run.template_name == "main":
            return {"phase": "Failed", "message": "Error (exit code 3)"}
        return {"phase": "Succeeded"}

    r = simulate(EXIT, outcome=outcome)
    handler = next(s for s in r.started if s.template_name == "handler")
    assert handler.container["args"][0] == "Failed"
    failures = json.loads(json.loads(handler.container["args"][1]))
    assert failures[0]["displayName"] == "ex" and failures[0]["message"] == "Error (exit code 3)"
    assert r.by_name()["ex.onExit"].node_flag == {"hooked": True}
    assert r.phase == "Failed"


def test_failed_exit_handler_fails_a_succeeded_workflow() -> None:
    def outcome(run):  # type: ignore[no-untyped-def]
        if run.template_name == "handler":
            return {"phase": "Failed", "message": "Error (exit code 1)"}
        return {"phase": "Succeeded"}

    r = simulate(EXIT, outcome=outcome)
    assert r.phase == "Failed"
    assert r.status.message == "Error (exit code 1)"


def test_step_level_exit_hook_runs_before_the_group_completes() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: sx}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: t, hooks: {exit: {template: t}}}
    - - {name: b, template: t}
  - name: t
    container: {image: busybox, command: [echo]}
"""
    r = simulate(manifest)
    order = [s.node_name for s in r.started]
    assert order == ["sx[0].a", "sx[0].a.onExit", "sx[1].b"]
    n = r.by_name()
    assert n["sx[0].a.onExit"].id in n["sx[0].a"].children


def test_lifecycle_hook_fires_once_when_its_expression_holds() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: hk}
spec:
  entrypoint: main
  hooks:
    running: {expression: workflow.status == "Running", template: t}
  templates:
  - name: main
    steps:
    - - {name: a, template: t, hooks: {done: {expression: 'steps.a.status == "Succeeded"', template: t}}}
  - name: t
    container: {image: busybox, command: [echo]}
"""
    r = simulate(manifest)
    names = [s.node_name for s in r.started]
    assert names.count("hk.hooks.running") == 1
    assert names.count("hk[0].a.hooks.done") == 1
    assert r.phase == "Succeeded"


def test_workflow_deadline_kills_running_steps_and_runs_exit_handler() -> None:
    manifest = EXIT.replace("onExit: handler", "onExit: handler\n  activeDeadlineSeconds: 5")
    r = simulate(
        manifest, outcome=lambda run: None if run.template_name == "main" else {"phase": "Succeeded"}
    )
    assert r.killed and r.killed[0].message == "Step exceeded its deadline"
    assert r.by_name()["ex"].phase == "Failed"
    assert "ex.onExit" in r.by_name()
    assert r.phase == "Failed"


def start(manifest: str) -> tuple[Reconciler, list[RunStep]]:
    wf = load(manifest)
    from engine.workflows.submit import prepare_workflow

    wf, status = prepare_workflow(wf, name_suffix="x", uid="u", now=100.0)
    rec = Reconciler(wf, status)
    plan = rec.reconcile([], 100.0)
    return rec, [a for a in plan.actions if isinstance(a, RunStep)]


def test_stop_kills_steps_and_still_runs_exit_handler() -> None:
    rec, runs = start(EXIT)
    rec.set_shutdown("Stop")
    plan = rec.reconcile([], 101.0)
    kill = plan.actions[0]
    assert kill.message == "Stopped with strategy 'Stop'"
    plan = rec.reconcile(
        [StepOutcome(node_id=runs[0].step.node_id, phase="Failed", message=kill.message)], 102.0
    )
    assert any(isinstance(a, RunStep) and a.step.template_name == "handler" for a in plan.actions)


def test_terminate_does_not_run_exit_handler() -> None:
    rec, runs = start(EXIT)
    rec.set_shutdown("Terminate")
    rec.reconcile([], 101.0)
    plan = rec.reconcile(
        [
            StepOutcome(
                node_id=runs[0].step.node_id, phase="Failed", message="Stopped with strategy 'Terminate'"
            )
        ],
        102.0,
    )
    assert not any(isinstance(a, RunStep) for a in plan.actions)
    assert rec.status.phase == "Failed"
    assert rec.status.message == "Stopped with strategy 'Terminate'"


SUSPEND = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: sus}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: wait, template: wait}
    - - {name: after, template: t}
  - name: wait
    suspend: {}
  - name: t
    container: {image: busybox, command: [echo]}
"""


def test_suspend_node_waits_for_resume_then_succeeds() -> None:
    rec, runs = start(SUSPEND)
    assert runs == []
    wait = next(n for n in rec.status.nodes.values() if n.type == "Suspend")
    assert wait.phase == "Running"
    plan = rec.reconcile([], 200.0)
    assert not plan.actions
    assert rec.resume() == 1
    plan = rec.reconcile([], 201.0)
    assert wait.phase == "Succeeded"
    assert [a.step.node_name for a in plan.actions if isinstance(a, RunStep)] == ["sus[1].after"]


def test_suspend_duration_resumes_by_itself_and_requeues_at_the_right_time() -> None:
    rec, _ = start(SUSPEND.replace("suspend: {}", "suspend: {duration: 30s}"))
    plan = rec.reconcile([], 110.0)
    assert plan.requeue_at == 130.0
    rec.reconcile([], 130.0)
    assert next(n for n in rec.status.nodes.values() if n.type == "Suspend").phase == "Succeeded"


def test_workflow_suspend_holds_new_steps_until_resumed() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: ws}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: t}
    - - {name: b, template: t}
  - name: t
    container: {image: busybox, command: [echo]}
"""
    rec, runs = start(manifest)
    rec.suspend()
    plan = rec.reconcile([StepOutcome(node_id=runs[0].step.node_id, phase="Succeeded")], 101.0)
    assert not any(isinstance(a, RunStep) for a in plan.actions)
    rec.resume()
    plan = rec.reconcile([], 102.0)
    assert [a.step.node_name for a in plan.actions if isinstance(a, RunStep)] == ["ws[1].b"]


def test_restart_from_persisted_status_never_reruns_succeeded_nodes() -> None:
    """Rebuild a Reconciler from the JSON status mid-run; only in-flight steps are asked to start again."""
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: rs}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: a, template: t}
      - {name: b, template: t, dependencies: [a]}
      - {name: c, template: t, dependencies: [a]}
      - {name: d, template: t, dependencies: [b, c]}
  - name: t
    container: {image: busybox, command: [echo]}
"""
    rec, runs = start(manifest)
    plan = rec.reconcile([StepOutcome(node_id=runs[0].step.node_id, phase="Succeeded")], 101.0)
    in_flight = [a.step for a in plan.actions if isinstance(a, RunStep)]
    assert {s.node_name for s in in_flight} == {"rs.b", "rs.c"}
    # b finishes; then the runtime dies. A new reconciler is built from the stored JSON.
    b = next(s for s in in_flight if s.node_name == "rs.b")
    rec.reconcile([StepOutcome(node_id=b.node_id, phase="Succeeded")], 102.0)
    stored = json.loads(json.dumps(rec.status.to_dict()))
    rec2 = Reconciler(rec.workflow, WorkflowStatus.from_dict(stored))
    plan = rec2.reconcile([], 103.0)
    again = [a.step.node_name for a in plan.actions if isinstance(a, RunStep)]
    assert again == ["rs.c"]
    c = next(a.step for a in plan.actions if isinstance(a, RunStep))
    assert c.node_name == "rs.c"
    plan = rec2.reconcile([StepOutcome(node_id=c.node_id, phase="Succeeded")], 104.0)
    assert [a.step.node_name for a in plan.actions if isinstance(a, RunStep)] == ["rs.d"]


def test_same_reconcile_twice_starts_nothing_twice() -> None:
    rec, runs = start(SUSPEND.replace("suspend: {}", "container: {image: busybox, command: [echo]}"))
    again = rec.reconcile([], 101.0)
    assert not any(isinstance(a, RunStep) for a in again.actions)
    assert len(runs) == 1


def test_memoized_step_reuses_cached_outputs_without_running() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: memo}
spec:
  entrypoint: t
  templates:
  - name: t
    memoize: {key: k1, cache: {configMap: {name: cache}}}
    container: {image: busybox, command: [echo]}
"""
    wf = load(manifest)
    from engine.workflows.submit import prepare_workflow

    wf, status = prepare_workflow(wf, name_suffix="", uid="u", now=100.0)
    rec = Reconciler(wf, status, memo={"cache": {"k1": {"outputs": {"result": "cached"}}}})
    plan = rec.reconcile([], 100.0)
    assert not plan.actions
    node = rec.status.nodes["memo"]
    assert node.phase == "Succeeded" and node.outputs.result == "cached"
    assert node.memoization_status == {"hit": True, "key": "k1", "cacheName": "cache"}
    assert rec.status.phase == "Succeeded"


def test_memoized_step_on_a_miss_runs_and_asks_to_save_its_outputs() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: memo}
spec:
  entrypoint: t
  templates:
  - name: t
    memoize: {key: "k-{{workflow.name}}", cache: {configMap: {name: cache}}}
    container: {image: busybox, command: [echo]}
"""
    from engine.workflows.plan import SaveMemo

    rec, runs = start(manifest)
    node = rec.status.nodes["memo"]
    assert node.memoization_status == {"hit": False, "key": "k-memo", "cacheName": "cache"}
    plan = rec.reconcile([StepOutcome(node_id=runs[0].step.node_id, phase="Succeeded", result="out")], 101.0)
    saves = [a for a in plan.actions if isinstance(a, SaveMemo)]
    assert [(s.cache, s.key, s.outputs) for s in saves] == [("cache", "k-memo", {"result": "out"})]


def test_exit_handler_runs_after_the_workflow_deadline_without_that_deadline() -> None:
    manifest = EXIT.replace("onExit: handler", "onExit: handler\n  activeDeadlineSeconds: 5")
    r = simulate(
        manifest, outcome=lambda run: None if run.template_name == "main" else {"phase": "Succeeded"}
    )
    handler = next(s for s in r.started if s.template_name == "handler")
    assert handler.deadline is None
    assert r.by_name()["ex.onExit"].phase == "Succeeded"
    assert r.phase == "Failed"


def test_workflow_failures_is_null_when_nothing_failed() -> None:
    r = simulate(EXIT)
    handler = next(s for s in r.started if s.template_name == "handler")
    assert handler.container["args"] == ["Succeeded", '"null"']


DAG_LOOP_PARALLELISM = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: lp}
spec:
  entrypoint: main
  templates:
  - name: main
    parallelism: 2
    dag:
      tasks:
      - {name: fan, template: t, withItems: [1, 2, 3, 4, 5]}
      - {name: after, template: t, depends: fan.Failed}
  - name: t
    container: {image: busybox, command: [echo]}
"""


def test_dag_loop_with_template_parallelism_below_its_items_runs_them_all() -> None:
    active: list[int] = []
    r = simulate(DAG_LOOP_PARALLELISM, on_round=lambda rec, _round: active.append(len(rec.active_pods)))
    assert r.phase == "Succeeded"
    assert [s.node_name for s in r.started] == [f"lp.fan({i}:{i + 1})" for i in range(5)]
    assert max(active) == 2
    assert r.by_name()["lp.after"].phase == "Omitted"


def test_restart_while_dag_loop_children_are_held_by_parallelism_starts_the_rest() -> None:
    rec, runs = start(DAG_LOOP_PARALLELISM)
    assert len(runs) == 2
    done = [StepOutcome(node_id=r.step.node_id, phase="Succeeded") for r in runs]
    plan = rec.reconcile(done, 101.0)
    third = [a.step for a in plan.actions if isinstance(a, RunStep)]
    assert len(third) == 2
    # The runtime dies with two children running and one never created.
    rec2 = Reconciler(rec.workflow, WorkflowStatus.from_dict(json.loads(json.dumps(rec.status.to_dict()))))
    plan = rec2.reconcile([], 102.0)
    assert sorted(a.step.node_name for a in plan.actions if isinstance(a, RunStep)) == sorted(
        s.node_name for s in third
    )
    plan = rec2.reconcile([StepOutcome(node_id=s.node_id, phase="Succeeded") for s in third], 103.0)
    (last,) = [a.step for a in plan.actions if isinstance(a, RunStep)]
    assert last.node_name == "lp.fan(4:5)"
    rec2.reconcile([StepOutcome(node_id=last.node_id, phase="Succeeded")], 104.0)
    assert rec2.status.phase == "Succeeded"
    assert rec2.status.nodes[rec2.id_for("lp.after")].phase == "Omitted"


def test_stop_fails_new_pods_instead_of_starting_them() -> None:
    rec, runs = start(DAG_LOOP_PARALLELISM)
    rec.set_shutdown("Stop")
    plan = rec.reconcile([], 101.0)
    assert {a.message for a in plan.actions} == {"Stopped with strategy 'Stop'"}
    stopped = "Stopped with strategy 'Stop'"
    killed = [StepOutcome(node_id=r.step.node_id, phase="Failed", message=stopped) for r in runs]
    plan = rec.reconcile(killed, 102.0)
    # The rest of the fan-out and the task that waits for its failure are never started.
    assert not any(isinstance(a, RunStep) for a in plan.actions)
    assert rec.status.phase == "Failed"
    by_name = {n.name: n for n in rec.status.nodes.values()}
    assert by_name["lp.fan(4:5)"].phase == "Failed"
    assert by_name["lp.fan(4:5)"].message == "workflow shutdown with strategy: Stop"
    assert by_name["lp.after"].message == "workflow shutdown with strategy: Stop"
