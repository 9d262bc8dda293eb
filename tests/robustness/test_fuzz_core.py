"""Fuzzing the workflow core: odd but valid workflows always end in a phase, or raise only SluiceError.

A generator builds random steps/DAG workflows from real features (depends expressions, ``when``,
loops over items/params/sequences, retries, timeouts, continueOn, failFast, exit handlers, nested
templates, expression tags that fail at run time) and random step outcomes. Whatever passes
validation goes through ``tests.workflows.sim.simulate`` (the pure reconciler with a fake clock): it
must finish with Succeeded/Failed/Error and leave no node running, or raise a SluiceError.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import SluiceError, SpecError
from engine.spec.workflow import Workflow
from engine.workflows.nodes import COMPLETED_PHASES, FULFILLED_PHASES
from engine.workflows.plan import StepRun
from engine.workflows.validate import validate_workflow
from tests.robustness.test_fuzz_manifests import within
from tests.workflows.sim import simulate

FUZZ = settings(
    max_examples=int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "150")),
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("SLUICE_FUZZ_RANDOM") is None,
)

RESULTS = ["1", "2", "[1, 2]", "[]", '[{"a": 1}]', '{"a": 1}', "not json", "", "true", "{{workflow.name}}"]
SUFFIXES = [
    "", ".Succeeded", ".Failed", ".Errored", ".Skipped", ".Completed", ".Omitted", ".AnySucceeded",
    ".AllFailed", ".Daemoned",
]  # fmt: skip


def leaf_templates(rng: random.Random) -> list[dict[str, Any]]:
    """Step templates; ``v`` is every leaf's one (defaulted) input."""
    inputs = {"parameters": [{"name": "v", "default": "d"}]}
    container = {"image": "busybox", "command": ["echo"], "args": ["{{inputs.parameters.v}}"]}
    retry: dict[str, Any] = {"limit": rng.choice([0, 1, 3, "2", "{{=1+1}}"])}
    if rng.random() < 0.5:
        retry["retryPolicy"] = rng.choice(["Always", "OnFailure", "OnError", "OnTransientError"])
    if rng.random() < 0.3:
        retry["backoff"] = {"duration": rng.choice(["1s", "2", "0s"]), "factor": rng.choice([1, 2])}
    if rng.random() < 0.3:
        retry["expression"] = rng.choice(["lastRetry.status == 'Failed'", "asInt(lastRetry.exitCode) > 1"])
    return [
        {"name": "leaf", "inputs": inputs, "container": container},
        {"name": "retried", "inputs": inputs, "retryStrategy": retry, "container": container},
        {
            "name": "slow",
            "inputs": inputs,
            "timeout": rng.choice(["500ms", "2s", "1m"]),
            "activeDeadlineSeconds": rng.choice([1, 5, "{{=2}}"]),
            "container": container,
        },
        {
            "name": "script",
            "inputs": inputs,
            "script": {"image": "busybox", "command": ["sh"], "source": "echo {{inputs.parameters.v}}"},
        },
        {"name": "pause", "inputs": inputs, "suspend": {"duration": rng.choice(["1s", "0", "3"])}},
    ]


def depends_expr(rng: random.Random, names: list[str]) -> str:
    def atom() -> str:
        return rng.choice(names) + rng.choice(SUFFIXES)

    expr = atom()
    for _ in range(rng.randrange(3)):
        expr = f"{expr} {rng.choice(['&&', '||'])} {'!' if rng.random() < 0.2 else ''}{atom()}"
        if rng.random() < 0.3:
            expr = f"({expr})"
    return expr


def argument_value(rng: random.Random, ref: str | None) -> str:
    choices = [
        "plain",
        "{{workflow.name}}",
        "{{=sprig.upper('a')}}",
        "{{=asInt('x')}}",  # fails while the step is being expanded
        "{{= 1 / 0 }}",
        "{{workflow.parameters.g}}",
        "",
    ]
    if ref:
        choices += [
            f"{{{{{ref}.outputs.result}}}}",
            f"{{{{{ref}.status}}}}",
            f"{{{{={ref}.outputs.result}}}}",
        ]
    return rng.choice(choices)


def when_expr(rng: random.Random, ref: str | None) -> str:
    choices = ["true", "false", "1 == 1", "'a' == 'b'", "{{workflow.parameters.g}} == x", "{{=1 > 2}}"]
    if ref:
        choices += [
            f"{{{{{ref}.status}}}} == Succeeded",
            f"{{{{{ref}.outputs.result}}}} == 1",
            f"{{{{{ref}.outputs.result}}}} =~ '^[0-9]+$'",
            f"{{{{{ref}.outputs.result}}}} > 1",
        ]
    return rng.choice(choices)


def loop(rng: random.Random, ref: str | None) -> dict[str, Any]:
    kind = rng.randrange(5)
    if kind == 0:
        return {"withItems": rng.choice([[1, 2], ["a"], [], [{"x": 1}, {"x": 2}], [[1], [2]]])}
    if kind == 1 and ref:
        return {"withParam": f"{{{{{ref}.outputs.result}}}}"}
    if kind == 2:
        return {"withSequence": rng.choice([{"count": "2"}, {"start": "3", "end": "1"}, {"count": "0"}])}
    return {}


def call(rng: random.Random, name: str, callee: str, ref: str | None) -> dict[str, Any]:
    """A step/task calling ``callee``, sometimes with what fails while the step is being expanded."""
    item = {"name": name, "template": callee}
    item.update(loop(rng, ref))
    value = "{{item}}" if ("withItems" in item or "withParam" in item) and rng.random() < 0.7 else None
    value = value or argument_value(rng, ref)
    item["arguments"] = {"parameters": [{"name": "v", "value": value}]}
    if rng.random() < 0.3:
        item["when"] = when_expr(rng, ref)
    if rng.random() < 0.2:
        item["continueOn"] = rng.choice([{"failed": True}, {"error": True}, {"failed": True, "error": True}])
    return item


def composite(rng: random.Random, name: str, callees: list[str]) -> dict[str, Any]:
    if rng.random() < 0.5:
        tasks: list[dict[str, Any]] = []
        for i in range(rng.randint(1, 5)):
            earlier = [t["name"] for t in tasks]
            ref_task = rng.choice(earlier) if earlier else None
            task = call(rng, f"t{i}", rng.choice(callees), f"tasks.{ref_task}" if ref_task else None)
            if earlier and rng.random() < 0.8:
                task["depends"] = depends_expr(rng, earlier) if ref_task is None else ref_task
                if rng.random() < 0.5:
                    task["depends"] = depends_expr(rng, earlier)
            tasks.append(task)
        dag: dict[str, Any] = {"tasks": tasks}
        if rng.random() < 0.3:
            dag["failFast"] = rng.choice([True, False])
        return {"name": name, "inputs": {"parameters": [{"name": "v", "default": "d"}]}, "dag": dag}
    groups: list[list[dict[str, Any]]] = []
    done: list[str] = []
    for g in range(rng.randint(1, 3)):
        group = []
        size = rng.randint(1, 3)
        for s in range(size):
            ref = f"steps.{rng.choice(done)}" if done else None
            group.append(call(rng, f"s{g}x{s}", rng.choice(callees), ref))
        done += [s["name"] for s in group]
        groups.append(group)
    return {"name": name, "inputs": {"parameters": [{"name": "v", "default": "d"}]}, "steps": groups}


def odd_workflow(rng: random.Random) -> dict[str, Any]:
    templates = leaf_templates(rng)
    names = [t["name"] for t in templates]
    for i in range(rng.randint(1, 3)):
        templates.append(composite(rng, f"c{i}", list(names)))
        names.append(f"c{i}")
    spec: dict[str, Any] = {
        "entrypoint": names[-1],
        "arguments": {"parameters": [{"name": "g", "value": rng.choice(["x", "y", "{{workflow.name}}"])}]},
        "templates": templates,
    }
    if rng.random() < 0.3:
        spec["onExit"] = rng.choice(names[:-1])
    if rng.random() < 0.2:
        spec["activeDeadlineSeconds"] = rng.choice([3, 30])
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "odd-"},
        "spec": spec,
    }


def outcomes(rng: random.Random) -> Any:
    def outcome(run: StepRun) -> dict[str, Any]:
        phase = rng.choices(["Succeeded", "Failed", "Error"], weights=[7, 2, 1])[0]
        code = 0 if phase == "Succeeded" else rng.choice([1, 2, 137])
        return {"phase": phase, "result": rng.choice(RESULTS), "exit_code": code, "message": phase}

    return outcome


@FUZZ
@given(rng=st.randoms(use_true_random=False))
def test_odd_valid_workflows_end_in_a_phase_or_raise_sluice_error(rng: random.Random) -> None:
    wf = Workflow.parse(odd_workflow(rng))
    try:
        validate_workflow(wf)
    except SpecError:
        return  # not the core's business: lint and run refuse it
    with within(20):
        try:
            result = simulate(
                wf, outcome=outcomes(rng), step_seconds=rng.choice([0.1, 1.0, 5.0]), max_rounds=3000
            )
        except SluiceError:
            return
    status = result.status
    assert status.phase in COMPLETED_PHASES, (status.phase, result.rounds)
    left = {n.name: n.phase for n in status.nodes.values() if n.phase not in FULFILLED_PHASES}
    assert not left, left


def test_the_generator_mostly_builds_valid_workflows() -> None:
    rng = random.Random(7)
    valid = 0
    for _ in range(100):
        try:
            validate_workflow(Workflow.parse(odd_workflow(rng)))
            valid += 1
        except SpecError:
            pass
    assert valid >= 50
