"""DAG templates through the pure core: readiness, depends logic, Omitted vs Skipped, phase from targets."""

from __future__ import annotations

import json

from tests.workflows.sim import simulate


def dag(tasks: str, extra: str = "") -> str:
    return f"""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{name: d}}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
{extra}
      tasks:
{tasks}
  - name: t
    inputs: {{parameters: [{{name: m, default: x}}]}}
    container: {{image: busybox, command: [echo], args: ["{{{{inputs.parameters.m}}}}"]}}
"""


def fail_on(*names: str):  # type: ignore[no-untyped-def]
    def outcome(run):  # type: ignore[no-untyped-def]
        task = run.node_name.split(".")[-1].split("(")[0]
        if task in names:
            return {"phase": "Failed", "message": "Error (exit code 1)", "exit_code": 1}
        return {"phase": "Succeeded", "result": run.container["args"][0]}

    return outcome


DIAMOND = dag(
    """
      - {name: A, template: t}
      - {name: B, template: t, dependencies: [A]}
      - {name: C, template: t, dependencies: [A]}
      - {name: D, template: t, dependencies: [B, C]}
"""
)


def test_diamond_links_dependents_as_children_of_their_dependencies() -> None:
    r = simulate(DIAMOND)
    assert r.phase == "Succeeded"
    n = r.by_name()
    assert n["d"].children == [n["d.A"].id]
    assert set(n["d.A"].children) == {n["d.B"].id, n["d.C"].id}
    assert n["d.B"].children == [n["d.D"].id] and n["d.C"].children == [n["d.D"].id]
    assert n["d"].outbound_nodes == [n["d.D"].id]
    # D starts only after both B and C finished.
    order = [s.node_name for s in r.started]
    assert order.index("d.D") > order.index("d.B") and order.index("d.D") > order.index("d.C")


def test_failed_dependency_omits_dependents_and_fails_the_dag() -> None:
    r = simulate(DIAMOND, outcome=fail_on("B"))
    n = r.by_name()
    assert n["d.D"].type == "Skipped" and n["d.D"].phase == "Omitted"
    assert n["d.D"].message == "omitted: depends condition not met"
    assert n["d"].phase == "Failed" and r.phase == "Failed"


def test_depends_failed_branch_runs_and_omitted_leaf_inherits_failure() -> None:
    # Argo's dag-continue-on-fail: the handled failure still fails the DAG through another leaf.
    manifest = dag(
        """
      - {name: A, template: t}
      - {name: B, template: t, depends: A}
      - {name: C, template: t, depends: A}
      - {name: D, template: t, depends: "B.Failed && C"}
      - {name: E, template: t, depends: A}
      - {name: F, template: t, depends: A}
      - {name: G, template: t, depends: "E && F"}
"""
    )
    r = simulate(manifest, outcome=fail_on("B", "E"))
    n = r.by_name()
    assert n["d.D"].phase == "Succeeded"
    assert n["d.G"].phase == "Omitted"
    assert r.phase == "Failed"


def test_leaf_with_continue_on_failed_does_not_fail_the_dag() -> None:
    manifest = dag(
        """
      - {name: A, template: t}
      - {name: B, template: t, dependencies: [A], continueOn: {failed: true}}
"""
    )
    r = simulate(manifest, outcome=fail_on("B"))
    assert r.by_name()["d.B"].phase == "Failed"
    assert r.phase == "Succeeded"


def test_dependencies_with_continue_on_let_dependents_run() -> None:
    manifest = dag(
        """
      - {name: A, template: t, continueOn: {failed: true}}
      - {name: B, template: t, dependencies: [A]}
"""
    )
    r = simulate(manifest, outcome=fail_on("A"))
    assert r.by_name()["d.B"].phase == "Succeeded"
    assert r.phase == "Succeeded"


def test_when_false_is_skipped_and_bare_dependency_on_skipped_runs() -> None:
    manifest = dag(
        """
      - {name: A, template: t, when: "1 == 2"}
      - {name: B, template: t, depends: A}
      - {name: C, template: t, depends: A.Succeeded}
"""
    )
    r = simulate(manifest)
    n = r.by_name()
    assert (n["d.A"].type, n["d.A"].phase) == ("Skipped", "Skipped")
    assert n["d.B"].phase == "Succeeded"
    assert n["d.C"].phase == "Omitted"
    assert r.phase == "Succeeded"


def test_hyphenated_task_names_work_in_depends_and_outputs() -> None:
    manifest = dag(
        """
      - {name: gen-data, template: t, arguments: {parameters: [{name: m, value: hello}]}}
      - name: use-it
        template: t
        depends: gen-data.Succeeded
        arguments: {parameters: [{name: m, value: "{{tasks.gen-data.outputs.result}}!"}]}
"""
    )
    r = simulate(manifest)
    assert r.by_name()["d.use-it"].inputs["parameters"] == [{"name": "m", "value": "hello!"}]


def test_target_runs_only_what_the_target_needs() -> None:
    manifest = dag(
        """
      - {name: A, template: t}
      - {name: B, template: t, dependencies: [A]}
      - {name: C, template: t, dependencies: [A]}
""",
        extra="      target: B",
    )
    r = simulate(manifest)
    assert r.phase == "Succeeded"
    assert r.by_name()["d"].outbound_nodes == [r.by_name()["d.B"].id]


def test_fail_fast_false_lets_other_branches_finish() -> None:
    manifest = dag(
        """
      - {name: A, template: t}
      - {name: B, template: t, dependencies: [A]}
      - {name: X, template: t}
""",
        extra="      failFast: false",
    )
    r = simulate(manifest, outcome=fail_on("A"))
    assert r.by_name()["d.X"].phase == "Succeeded"
    assert r.phase == "Failed"


def test_looped_task_becomes_task_group_and_any_all_results_work() -> None:
    manifest = dag(
        """
      - name: L
        template: t
        arguments: {parameters: [{name: m, value: "{{item}}"}]}
        withItems: [good, bad]
      - {name: any, template: t, depends: L.AnySucceeded}
      - {name: all, template: t, depends: L.AllFailed}
"""
    )

    def outcome(run):  # type: ignore[no-untyped-def]
        if run.container["args"][0] == "bad":
            return {"phase": "Failed", "message": "Error (exit code 1)"}
        return {"phase": "Succeeded", "result": json.dumps(run.container["args"][0])}

    r = simulate(manifest, outcome=outcome)
    n = r.by_name()
    assert n["d.L"].type == "TaskGroup" and n["d.L"].phase == "Failed"
    assert {r.status.nodes[c].name for c in n["d.L"].children} == {"d.L(0:good)", "d.L(1:bad)"}
    assert n["d.any"].phase == "Succeeded"
    assert n["d.all"].phase == "Omitted"


def test_dag_error_child_propagates_error_phase() -> None:
    r = simulate(DIAMOND, outcome=lambda run: {"phase": "Error", "message": "pod deleted"})
    assert r.by_name()["d"].phase == "Error"
    assert r.phase == "Error"


def test_skipped_producer_without_default_drops_argument_so_consumer_default_applies() -> None:
    manifest = dag(
        """
      - {name: P, template: t, when: "false == true"}
      - name: Q
        template: t
        depends: P
        arguments: {parameters: [{name: m, value: "{{tasks.P.outputs.result}}"}]}
"""
    )
    r = simulate(manifest)
    assert r.by_name()["d.Q"].inputs["parameters"] == [{"name": "m", "value": "x"}]
    assert r.phase == "Succeeded"


def test_wide_dag_costs_each_reconcile_only_what_changed() -> None:
    """A 2,000-task barrier DAG finishes with a bounded number of reconciles and starts each task once."""
    layers, width = 200, 10
    lines = []
    for layer in range(layers):
        for i in range(width):
            deps = (
                ""
                if layer == 0
                else f", dependencies: [{', '.join(f'L{layer - 1}x{j}' for j in range(width))}]"
            )
            lines.append(f"      - {{name: L{layer}x{i}, template: t{deps}}}")
    r = simulate(dag("\n".join(lines)))
    assert r.phase == "Succeeded"
    assert len(r.started) == layers * width
    assert len({s.node_id for s in r.started}) == layers * width


def test_steps_expansion_error_waits_for_running_siblings_then_fails_the_dag_above() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: ex}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: inner, template: group}
  - name: group
    steps:
    - - {name: ok, template: t}
      - name: bad
        template: t
        arguments: {parameters: [{name: v, value: "{{=asInt('x')}}"}]}
  - name: t
    inputs: {parameters: [{name: v, default: "1"}]}
    container: {image: busybox, command: [echo]}
"""
    r = simulate(manifest, step_seconds=5.0)
    assert r.phase == "Failed"
    assert [s.node_name for s in r.started] == ["ex.inner[0].ok"]
    nodes = r.by_name()
    assert nodes["ex.inner[0].ok"].phase == "Succeeded"
    assert nodes["ex.inner[0].bad"].phase == "Error"
    assert nodes["ex.inner[0]"].phase == "Error"
    assert nodes["ex.inner[0]"].message.startswith(
        "step group deemed errored due to child ex.inner[0].bad error"
    )
    # As in Argo, an unsuccessful group fails its steps node with the group's message.
    assert nodes["ex.inner"].phase == "Failed"
    assert nodes["ex.inner"].message == nodes["ex.inner[0]"].message
