"""``sluice get``, ``list`` and ``logs`` after runs: they read the local state, no server needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.support import cli, error_line, write

TWO_STEPS = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: two-steps}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: first, template: say, arguments: {parameters: [{name: text, value: one}]}}
    - - {name: second, template: say, arguments: {parameters: [{name: text, value: two}]}}
  - name: say
    inputs: {parameters: [{name: text}]}
    container:
      image: busybox
      command: [sh, -c, 'echo "line-a {{inputs.parameters.text}}"; echo "line-b {{inputs.parameters.text}}"']
"""

FAILING = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: failing}
spec:
  entrypoint: main
  templates:
  - name: main
    container: {image: busybox, command: [sh, -c, "echo oops >&2; exit 5"]}
"""


@pytest.fixture
def ran(home: Path, tmp_path: Path) -> Path:
    """A home holding one Succeeded (``two-steps``) and one Failed (``failing``) workflow."""
    assert cli("run", write(tmp_path, "ok.yaml", TWO_STEPS), home=home).returncode == 0
    assert cli("run", write(tmp_path, "bad.yaml", FAILING), home=home).returncode == 1
    return home


def pod_nodes(home: Path, name: str) -> dict[str, dict]:  # type: ignore[type-arg]
    obj = json.loads(cli("get", name, "-o", "json", home=home).stdout)
    out = {}
    for node in obj["status"]["nodes"].values():
        if node["type"] == "Pod":
            out[node["displayName"]] = node
    return out


def test_get_shows_the_tree_of_a_finished_workflow(ran: Path) -> None:
    res = cli("get", "two-steps", home=ran)
    assert res.returncode == 0
    assert "Name:           two-steps" in res.stdout
    assert "Status:         Succeeded" in res.stdout
    assert "STEP" in res.stdout and "PODNAME" in res.stdout
    assert "✔ first" in res.stdout and "✔ second" in res.stdout


def test_get_json_and_yaml_carry_the_status(ran: Path) -> None:
    as_json = json.loads(cli("get", "failing", "-o", "json", home=ran).stdout)
    as_yaml = yaml.safe_load(cli("get", "failing", "-o", "yaml", home=ran).stdout)
    assert as_json == as_yaml
    assert as_json["status"]["phase"] == "Failed"
    assert as_json["metadata"]["labels"]["workflows.argoproj.io/completed"] == "true"
    assert "Error (exit code 5)" in json.dumps(as_json["status"]["nodes"])
    assert cli("get", "failing", "-o", "name", home=ran).stdout == "failing\n"


def test_get_latest_is_the_most_recent_workflow(ran: Path) -> None:
    assert cli("get", "@latest", "-o", "name", home=ran).stdout == "failing\n"


def test_get_of_an_unknown_workflow_is_one_line_exit_one(home: Path) -> None:
    res = cli("get", "ghost", home=home)
    assert res.returncode == 1
    assert error_line(res) == "sluice: workflow 'ghost' not found in namespace 'default'"


def test_list_shows_every_workflow_with_its_status(ran: Path) -> None:
    res = cli("list", home=ran)
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE", "DURATION", "MESSAGE"]
    rows = {ln.split()[0]: ln.split()[1] for ln in lines[1:]}
    assert rows == {"two-steps": "Succeeded", "failing": "Failed"}


def test_list_filters_and_formats(ran: Path) -> None:
    listed = json.loads(cli("list", "-o", "json", home=ran).stdout)
    assert {(w["name"], w["phase"]) for w in listed} == {("two-steps", "Succeeded"), ("failing", "Failed")}
    assert sorted(cli("list", "-o", "name", "--completed", home=ran).stdout.split()) == [
        "failing",
        "two-steps",
    ]
    assert cli("list", "--running", home=ran).stdout == "No workflows found\n"
    assert cli("-n", "elsewhere", "list", home=ran).stdout == "No workflows found\n"
    assert len(json.loads(cli("list", "-A", "-o", "json", home=ran).stdout)) == 2


def test_list_of_an_empty_home(home: Path) -> None:
    assert cli("list", home=home).stdout == "No workflows found\n"


def test_logs_prefix_every_line_with_the_pod_name(ran: Path) -> None:
    pods = pod_nodes(ran, "two-steps")
    first, second = pods["first"]["id"], pods["second"]["id"]
    assert first != second
    res = cli("logs", "two-steps", home=ran)
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    prefixes = {ln.split(": ", 1)[0] for ln in lines}
    assert len(prefixes) == 2
    assert all(p.startswith("two-steps-say-") for p in prefixes)
    by_text = {ln.split(": ", 1)[1]: ln.split(": ", 1)[0] for ln in lines}
    assert set(by_text) == {"line-a one", "line-b one", "line-a two", "line-b two"}
    assert by_text["line-a one"] == by_text["line-b one"] != by_text["line-a two"]
    assert lines.index(f"{by_text['line-a one']}: line-a one") < lines.index(
        f"{by_text['line-a two']}: line-a two"
    )


def test_logs_of_one_node_without_prefix(ran: Path) -> None:
    res = cli("logs", "two-steps", "second", "--no-prefix", home=ran)
    assert res.stdout.splitlines() == ["line-a two", "line-b two"]


def test_logs_include_stderr_of_a_failed_step(ran: Path) -> None:
    assert cli("logs", "failing", home=ran).stdout == "failing: oops\n"


def test_logs_of_an_unknown_workflow_is_one_line(home: Path) -> None:
    res = cli("logs", "ghost", home=home)
    assert res.returncode == 1
    assert "ghost" in error_line(res)


def test_delete_without_a_server_removes_a_finished_workflow(ran: Path) -> None:
    res = cli("delete", "failing", home=ran)
    assert (res.returncode, res.stdout) == (0, 'Workflow "failing" deleted\n')
    assert cli("list", "-o", "name", home=ran).stdout == "two-steps\n"
    again = cli("delete", "failing", home=ran)
    assert again.returncode == 1
    assert error_line(again) == "sluice: workflow 'failing' not found in namespace 'default'"


def test_version(home: Path) -> None:
    res = cli("version", home=home)
    assert res.returncode == 0 and res.stdout.startswith("sluice ")
