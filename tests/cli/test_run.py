"""``sluice run``: exit codes, the default tree and ``-o json`` outputs, and argument overrides.

The exit codes are checked through a real ``python -m engine`` process; the rest calls the same
``main`` in-process (``cli``), which is an order of magnitude cheaper.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.support import cli, error_line, sluice, write

ECHO = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: echo-}
spec:
  entrypoint: main
  arguments:
    parameters:
    - {name: greeting, value: hello}
    - {name: who, value: world}
  templates:
  - name: main
    inputs:
      parameters: [{name: greeting}, {name: who}]
    container:
      image: busybox
      command: [echo, "{{inputs.parameters.greeting}} {{inputs.parameters.who}}"]
"""

EXIT_WITH = """
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {generateName: exit-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: code, value: "0"}]}
  templates:
  - name: main
    steps:
    - - name: first
        template: code
    - - name: second
        template: code
  - name: code
    container: {image: busybox, command: [sh, -c, "exit {{workflow.parameters.code}}"]}
"""


def run_json(home: Path, *args: str | Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    res = cli("run", *args, "-o", "json", home=home)
    return res.returncode, json.loads(res.stdout)


def result_of(obj: dict) -> str:  # type: ignore[type-arg]
    pods = [n for n in obj["status"]["nodes"].values() if n["type"] == "Pod"]
    assert len(pods) == 1
    return str(pods[0]["outputs"]["result"])


def test_run_exits_zero_when_the_workflow_succeeds(home: Path, tmp_path: Path) -> None:
    res = sluice("run", write(tmp_path, "wf.yaml", EXIT_WITH), home=home)
    assert res.returncode == 0, res.stderr
    assert "Status:         Succeeded" in res.stdout


def test_run_exits_one_when_a_step_fails(home: Path, tmp_path: Path) -> None:
    res = sluice("run", write(tmp_path, "wf.yaml", EXIT_WITH), "-p", "code=3", home=home)
    assert res.returncode == 1
    assert "Status:         Failed" in res.stdout
    assert "Error (exit code 3)" in res.stdout
    assert "Traceback" not in res.stderr


def test_run_exits_two_on_invalid_input_without_starting_anything(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "wf.yaml", EXIT_WITH.replace("template: code", "template: nope", 1))
    res = sluice("run", path, home=home)
    assert res.returncode == 2
    assert "spec.templates[0].steps[0][0].template" in error_line(res)
    assert json.loads(sluice("list", "-o", "json", home=home).stdout) == []


def test_run_default_output_shows_the_node_tree(home: Path, tmp_path: Path) -> None:
    res = cli("run", write(tmp_path, "wf.yaml", EXIT_WITH), home=home)
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("STEP"))
    assert header.split() == ["STEP", "TEMPLATE", "PODNAME", "DURATION", "MESSAGE"]
    name = next(ln.split()[1] for ln in lines if ln.startswith("Name:"))
    tree = "\n".join(lines[lines.index(header) :])
    assert f"✔ {name}" in tree
    for step in ("first", "second"):
        row = next(ln for ln in lines if f" {step} " in ln)
        assert "✔" in row and "code" in row and f"{name}-code-" in row


def test_run_failed_step_shows_its_message_in_the_tree(home: Path, tmp_path: Path) -> None:
    res = cli("run", write(tmp_path, "wf.yaml", EXIT_WITH), "-p", "code=4", home=home)
    row = next(ln for ln in res.stdout.splitlines() if " first " in ln)
    assert "✖" in row and row.rstrip().endswith("Error (exit code 4)")


def test_run_json_output_has_phase_and_nodes(home: Path, tmp_path: Path) -> None:
    code, obj = run_json(home, write(tmp_path, "wf.yaml", ECHO))
    assert code == 0
    assert obj["kind"] == "Workflow"
    assert obj["status"]["phase"] == "Succeeded"
    assert obj["metadata"]["name"].startswith("echo-")
    assert obj["metadata"]["labels"]["workflows.argoproj.io/phase"] == "Succeeded"
    nodes = obj["status"]["nodes"]
    assert obj["metadata"]["name"] in nodes
    assert result_of(obj) == "hello world"


def test_run_name_output_prints_only_the_name(home: Path, tmp_path: Path) -> None:
    res = cli("run", write(tmp_path, "wf.yaml", ECHO), "-o", "name", home=home)
    assert res.returncode == 0
    (name,) = res.stdout.splitlines()
    assert name.startswith("echo-") and " " not in name
    assert res.stderr == ""


def test_run_json_output_of_a_failed_workflow_still_parses(home: Path, tmp_path: Path) -> None:
    code, obj = run_json(home, write(tmp_path, "wf.yaml", EXIT_WITH), "-p", "code=1")
    assert code == 1
    assert obj["status"]["phase"] == "Failed"
    assert any(n["phase"] == "Failed" for n in obj["status"]["nodes"].values())


def test_run_parameter_flag_overrides_a_workflow_argument(home: Path, tmp_path: Path) -> None:
    _, obj = run_json(home, write(tmp_path, "wf.yaml", ECHO), "-p", "who=sluice")
    assert result_of(obj) == "hello sluice"
    params = {p["name"]: p["value"] for p in obj["spec"]["arguments"]["parameters"]}
    assert params == {"greeting": "hello", "who": "sluice"}


def test_run_parameter_value_may_contain_equals_signs(home: Path, tmp_path: Path) -> None:
    _, obj = run_json(home, write(tmp_path, "wf.yaml", ECHO), "-p", "who=a=b")
    assert result_of(obj) == "hello a=b"


def test_run_parameter_file_overrides_arguments(home: Path, tmp_path: Path) -> None:
    params = write(tmp_path, "params.yaml", "greeting: bonjour\nwho: le monde\n")
    _, obj = run_json(home, write(tmp_path, "wf.yaml", ECHO), "-f", params)
    assert result_of(obj) == "bonjour le monde"


def test_run_parameter_flag_wins_over_the_parameter_file(home: Path, tmp_path: Path) -> None:
    params = write(tmp_path, "params.yaml", "greeting: bonjour\nwho: le monde\n")
    _, obj = run_json(home, write(tmp_path, "wf.yaml", ECHO), "-f", params, "-p", "who=toi")
    assert result_of(obj) == "bonjour toi"


def test_run_parameter_file_accepts_json(home: Path, tmp_path: Path) -> None:
    params = write(tmp_path, "params.json", '{"greeting": "hi", "who": "json"}')
    _, obj = run_json(home, write(tmp_path, "wf.yaml", ECHO), "-f", params)
    assert result_of(obj) == "hi json"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n"], ids=["list", "scalar"])
def test_run_rejects_a_parameter_file_that_is_not_a_mapping(home: Path, tmp_path: Path, text: str) -> None:
    params = write(tmp_path, "params.yaml", text)
    res = cli("run", write(tmp_path, "wf.yaml", ECHO), "-f", params, home=home)
    assert res.returncode == 2
    line = error_line(res)
    assert str(params) in line and "mapping" in line


def test_run_rejects_a_parameter_without_equals_sign(home: Path, tmp_path: Path) -> None:
    res = cli("run", write(tmp_path, "wf.yaml", ECHO), "-p", "who", home=home)
    assert res.returncode == 2
    assert "'who' must be name=value" in error_line(res)


def test_run_entrypoint_flag_picks_another_template(home: Path, tmp_path: Path) -> None:
    text = (
        ECHO
        + """
  - name: other
    container: {image: busybox, command: [echo, other]}
"""
    )
    _, obj = run_json(home, write(tmp_path, "wf.yaml", text), "--entrypoint", "other")
    assert result_of(obj) == "other"
