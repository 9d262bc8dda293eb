"""Steps templates through the pure core: node tree shape, phases, conditions, loops, outputs."""

from __future__ import annotations

import json

from tests.workflows.sim import simulate

STEPS = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: steps-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: echo, arguments: {parameters: [{name: msg, value: one}]}}
    - - name: b
        template: echo
        arguments: {parameters: [{name: msg, value: "{{steps.a.outputs.result}}-two"}]}
      - {name: c, template: echo, arguments: {parameters: [{name: msg, value: three}]}}
  - name: echo
    inputs: {parameters: [{name: msg}]}
    container: {image: busybox, command: [echo], args: ["{{inputs.parameters.msg}}"]}
"""


def test_steps_build_argo_node_tree_with_groups_linked_through_outbound_nodes() -> None:
    r = simulate(STEPS)
    assert r.phase == "Succeeded"
    nodes = r.by_name()
    root = nodes["steps-abcde"]
    assert root.type == "Steps" and root.id == "steps-abcde"
    g0, g1 = nodes["steps-abcde[0]"], nodes["steps-abcde[1]"]
    a = nodes["steps-abcde[0].a"]
    assert root.children == [g0.id]
    assert g0.children == [a.id]
    # The second group hangs off the first group's outbound node (step a), as in Argo.
    assert a.children == [g1.id]
    assert {r.status.nodes[c].display_name for c in g1.children} == {"b", "c"}
    assert g0.display_name == "[0]" and a.display_name == "a"
    assert sorted(root.outbound_nodes) == sorted(g1.children)


def test_step_outputs_are_visible_to_later_groups() -> None:
    r = simulate(STEPS)
    b = r.by_name()["steps-abcde[1].b"]
    assert b.inputs["parameters"] == [{"name": "msg", "value": "one-two"}]


def test_pod_names_follow_argo_v2_naming() -> None:
    r = simulate(STEPS)
    a_run = next(s for s in r.started if s.node_name.endswith(".a"))
    assert a_run.pod_name.startswith("steps-abcde-echo-")
    assert a_run.pod_name.rsplit("-", 1)[1].isdigit()


def test_failed_child_fails_group_and_later_groups_do_not_run() -> None:
    def outcome(run):  # type: ignore[no-untyped-def]
        if run.node_name.endswith(".a"):
            return {"phase": "Failed", "message": "Error (exit code 1)", "exit_code": 1}
        return {"phase": "Succeeded", "result": "x"}

    r = simulate(STEPS, outcome=outcome)
    assert r.phase == "Failed"
    nodes = r.by_name()
    assert nodes["steps-abcde[0]"].phase == "Failed"
    assert "steps-abcde[1]" not in nodes
    assert nodes["steps-abcde"].message.startswith("child '")


def test_error_child_makes_steps_node_failed_not_error() -> None:
    r = simulate(STEPS, outcome=lambda run: {"phase": "Error", "message": "pod deleted"})
    assert r.status.nodes[r.status.nodes["steps-abcde"].id].phase == "Failed"
    assert r.phase == "Failed"


COINFLIP = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: flip}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: flip, template: flip}
    - - {name: heads, template: echo, when: "{{steps.flip.outputs.result}} == heads"}
      - {name: tails, template: echo, when: "{{steps.flip.outputs.result}} == tails"}
  - name: flip
    container: {image: busybox, command: [echo], args: [tails]}
  - name: echo
    container: {image: busybox, command: [echo], args: [hi]}
"""


def test_when_false_gives_skipped_node_with_argo_message() -> None:
    r = simulate(COINFLIP)
    assert r.phase == "Succeeded"
    heads = r.by_name()["flip[1].heads"]
    assert (heads.type, heads.phase) == ("Skipped", "Skipped")
    assert heads.message == "when 'tails == heads' evaluated false"
    assert r.by_name()["flip[1].tails"].phase == "Succeeded"


LOOPS = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: loops}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: each
        template: echo
        arguments: {parameters: [{name: v, value: "{{item.n}}-{{item.s}}"}]}
        withItems: [{n: 1, s: a}, {n: 2, s: b}]
    - - name: seq
        template: echo
        arguments: {parameters: [{name: v, value: "{{item}}"}]}
        withSequence: {count: "3", format: "x%02d"}
    - - name: agg
        template: echo
        arguments: {parameters: [{name: v, value: "{{steps.each.outputs.result}}"}]}
  - name: echo
    inputs: {parameters: [{name: v}]}
    container: {image: busybox, command: [echo], args: ["{{inputs.parameters.v}}"]}
"""


def test_loop_children_are_named_by_index_and_item_and_aggregate_results_in_order() -> None:
    def outcome(run):  # type: ignore[no-untyped-def]
        arg = run.container["args"][0]
        return {"phase": "Succeeded", "result": json.dumps({"v": arg})}

    r = simulate(LOOPS, outcome=outcome)
    assert r.phase == "Succeeded"
    names = set(r.by_name())
    assert "loops[0].each(0:n:1,s:a)" in names and "loops[0].each(1:n:2,s:b)" in names
    assert {"loops[1].seq(0:x00)", "loops[1].seq(1:x01)", "loops[1].seq(2:x02)"} <= names
    agg = r.by_name()["loops[2].agg"]
    assert json.loads(agg.inputs["parameters"][0]["value"]) == [{"v": "1-a"}, {"v": "2-b"}]


def test_empty_with_param_succeeds_with_a_skipped_node() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: empty}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: none, template: echo, withParam: "[]"}
  - name: echo
    container: {image: busybox, command: [echo]}
"""
    r = simulate(manifest)
    assert r.phase == "Succeeded"
    node = r.by_name()["empty[0].none"]
    assert (node.type, node.phase, node.message) == ("Skipped", "Skipped", "Skipped, empty params")


def test_steps_template_outputs_come_from_its_steps_and_global_names_export() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: outs}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: gen, template: gen}
    outputs:
      parameters:
      - name: out
        globalName: final
        valueFrom: {parameter: "{{steps.gen.outputs.parameters.p}}"}
  - name: gen
    container: {image: busybox, command: [sh, -c, "echo 42 > /tmp/p"]}
    outputs:
      parameters:
      - {name: p, valueFrom: {path: /tmp/p}}
"""
    r = simulate(manifest, outcome=lambda run: {"phase": "Succeeded", "parameters": {"p": "42"}})
    assert r.phase == "Succeeded"
    assert r.by_name()["outs"].outputs.parameters == [{"name": "out", "value": "42", "globalName": "final"}]
    assert r.status.outputs["parameters"] == [{"name": "final", "value": "42"}]


def test_fail_fast_stops_new_loop_children_and_fails_with_argo_message() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: ff}
spec:
  entrypoint: main
  templates:
  - name: main
    failFast: true
    parallelism: 1
    steps:
    - - {name: s, template: t, withItems: [1, 2, 3, 4]}
  - name: t
    container: {image: busybox, command: [echo]}
"""
    r = simulate(manifest, outcome=lambda run: {"phase": "Failed", "message": "Error (exit code 1)"})
    assert r.phase == "Failed"
    assert len(r.started) == 1
    assert r.by_name()["ff"].message == "template has failed or errored children and failFast enabled"


def test_template_parallelism_limits_active_children() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: par}
spec:
  entrypoint: main
  templates:
  - name: main
    parallelism: 2
    steps:
    - - {name: s, template: t, withSequence: {count: "6"}}
  - name: t
    container: {image: busybox, command: [echo]}
"""
    seen_active: list[int] = []

    def watch(rec, _round):  # type: ignore[no-untyped-def]
        seen_active.append(len(rec.active_pods))

    r = simulate(manifest, on_round=watch)
    assert r.phase == "Succeeded"
    assert max(seen_active) <= 2
    assert len(r.started) == 6


def test_continue_on_failed_lets_the_group_succeed() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: cont}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: bad, template: t, continueOn: {failed: true}}
    - - {name: after, template: t}
  - name: t
    container: {image: busybox, command: [echo]}
"""

    def outcome(run):  # type: ignore[no-untyped-def]
        if ".bad" in run.node_name:
            return {"phase": "Failed", "message": "Error (exit code 1)"}
        return {"phase": "Succeeded"}

    r = simulate(manifest, outcome=outcome)
    assert r.phase == "Succeeded"
    assert r.by_name()["cont[1].after"].phase == "Succeeded"


def test_missing_required_input_makes_an_error_node() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: miss}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: s, template: t}
  - name: t
    inputs: {parameters: [{name: need}]}
    container: {image: busybox, command: [echo]}
"""
    r = simulate(manifest)
    node = r.by_name()["miss[0].s"]
    assert node.phase == "Error"
    assert node.message == "inputs.parameters.need was not supplied"
    assert r.phase == "Failed"


def test_node_names_whose_hashes_collide_get_distinct_ids_and_both_run() -> None:
    # "…each(6058:6058)" and "…each(6496:6496)" have the same 32-bit FNV hash, Argo's node id.
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: bench-bench}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: each, template: t, withSequence: {count: "6497"}}
  - name: t
    container: {image: busybox, command: [echo]}
"""
    r = simulate(manifest)
    assert r.phase == "Succeeded"
    assert len(r.started) == 6497
    a = r.by_name()["bench-bench[0].each(6058:6058)"]
    b = r.by_name()["bench-bench[0].each(6496:6496)"]
    assert a.id != b.id and b.id == f"{a.id}-1"
    pods = {s.pod_name for s in r.started}
    assert len(pods) == 6497


def test_workflow_volumes_see_workflow_parameters() -> None:
    manifest = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: vol}
spec:
  entrypoint: t
  arguments: {parameters: [{name: dir, value: /srv/in}]}
  volumes:
  - {name: data, hostPath: {path: "{{workflow.parameters.dir}}"}}
  templates:
  - name: t
    container:
      image: busybox
      command: [ls, /data]
      volumeMounts: [{name: data, mountPath: /data}]
"""
    r = simulate(manifest, parameters=[("dir", "/srv/other")])
    assert r.phase == "Succeeded"
    assert r.started[0].volumes == ({"name": "data", "hostPath": {"path": "/srv/other"}},)
