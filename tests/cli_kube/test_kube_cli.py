"""``sluice --kube``: the workflow commands as a subprocess against the tests' API server.

No operator runs: a test plays it, writing the status an operator would write (often the very status the
embedded runtime produced for the same workflow, so the two views can be compared) and reading back the
patches and annotations the CLI sent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.runtime.kubernetes.pods import LABEL_INSTANCE
from engine.workflows.status import compress_nodes
from tests.cli.support import GREETER_TEMPLATE, USES_GREETER, cli, error_line, sluice_env, wait_for, write
from tests.cli.test_inspect import FAILING, TWO_STEPS
from tests.kubernetes.apiserver import ApiError, ApiServer

SLUICE_BIN = Path(sys.executable).with_name("sluice")
GROUP_PATH = "/apis/sluice.dev/v1alpha1"
MERGE = "application/merge-patch+json"
RESUME = "workflows.sluice.dev/resume"
RETRY = "workflows.sluice.dev/retry"

GENERATED = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: gen-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: who, value: world}]}
  templates:
  - name: main
    container: {image: busybox, command: [echo, "{{workflow.parameters.who}}"]}
  - name: other
    container: {image: busybox, command: [echo, other]}
"""

CRON = """
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedules: ["0 3 * * *"]
  workflowSpec:
    entrypoint: main
    templates:
    - name: main
      container: {image: busybox, command: [echo, night]}
"""


class Kube:
    """``sluice --kube`` on the tests' API server, with an empty SLUICE_HOME of its own (so nothing it
    shows can come from a local state), plus the operator's side of the API for the test."""

    def __init__(self, server: ApiServer, home: Path) -> None:
        self.server = server
        self.home = home

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [str(SLUICE_BIN), "--kube", "--kubeconfig", str(self.server.kubeconfig), *map(str, args)]

    def __call__(
        self, *args: str | os.PathLike[str], env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=sluice_env(self.home, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str | os.PathLike[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=sluice_env(self.home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def workflow(self, name: str, namespace: str = "default") -> dict[str, Any]:
        obj: dict[str, Any] = self.server.request(
            "GET", f"{GROUP_PATH}/namespaces/{namespace}/workflows/{name}"
        )
        return obj

    def workflow_names(self, namespace: str = "default") -> list[str]:
        listed = self.server.request("GET", f"{GROUP_PATH}/namespaces/{namespace}/workflows")
        return sorted(o["metadata"]["name"] for o in listed["items"])

    def create_workflow(self, manifest: dict[str, Any], namespace: str = "default") -> str:
        made = self.server.create(f"{GROUP_PATH}/namespaces/{namespace}/workflows", manifest)
        return str(made["metadata"]["name"])

    def write_status(self, name: str, status: dict[str, Any], namespace: str = "default") -> None:
        """What the operator does: a merge patch of the status subresource."""
        self.server.request(
            "PATCH",
            f"{GROUP_PATH}/namespaces/{namespace}/workflows/{name}/status",
            {"status": status},
            content_type=MERGE,
        )

    def create_pod(self, name: str, namespace: str = "default") -> None:
        containers = [{"name": c, "image": "busybox"} for c in ("main", "wait")]
        self.server.create(
            f"/api/v1/namespaces/{namespace}/pods",
            {"metadata": {"name": name}, "spec": {"containers": containers}},
        )


@pytest.fixture
def kube(cluster: ApiServer, tmp_path: Path) -> Kube:
    kube_home = tmp_path / "kube-home"
    kube_home.mkdir()
    return Kube(cluster, kube_home)


def running(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "suspend": {}}]},
    }


def embedded_object(home: Path, name: str) -> dict[str, Any]:
    """The workflow as the embedded CLI's ``get -o json`` shows it."""
    obj: dict[str, Any] = json.loads(cli("get", name, "-o", "json", home=home).stdout)
    return obj


def normalised_get(text: str) -> str:
    # The creation time is each store's own.
    return re.sub(r"^Created:( *).*$", r"Created:\1*", text, flags=re.MULTILINE)


def normalised_list(text: str) -> list[list[str]]:
    """Table cells, AGE and DURATION blanked (the age is each store's own, and the embedded store keeps a
    finish time finer than the status's whole seconds), rows sorted: workflows created within the same
    second of a cluster's clock have no order."""
    rows = [re.split(r" {3,}", line.rstrip()) for line in text.splitlines()]
    if not rows or rows[0][0] != "NAME":  # -o name, or nothing found
        return sorted(rows)
    blanked = [[c if i not in (2, 3) else "*" for i, c in enumerate(r)] for r in rows[1:]]
    return rows[:1] + sorted(blanked)


@pytest.fixture
def ran(home: Path, tmp_path: Path) -> Path:
    """An embedded home where ``two-steps`` (with who=kube) Succeeded and ``failing`` Failed."""
    assert (
        cli("run", write(tmp_path, "two-steps.yaml", TWO_STEPS), "-p", "who=kube", home=home).returncode == 0
    )
    assert cli("run", write(tmp_path, "failing.yaml", FAILING), home=home).returncode == 1
    return home


@pytest.fixture
def mirrored(kube: Kube, ran: Path, tmp_path: Path) -> Kube:
    """The same two workflows submitted with ``--kube``, each given the status the embedded run ended with."""
    assert kube("submit", tmp_path / "two-steps.yaml", "-p", "who=kube").returncode == 0
    assert kube("submit", tmp_path / "failing.yaml").returncode == 0
    for name in ("two-steps", "failing"):
        kube.write_status(name, embedded_object(ran, name)["status"])
    return kube


# ------------------------------------------------------------------------------------------------ submit


def test_submit_creates_the_workflow_with_parameters_and_entrypoint_and_prints_its_name(
    kube: Kube, tmp_path: Path
) -> None:
    path = write(tmp_path, "gen.yaml", GENERATED)
    res = kube("submit", path, "-p", "who=kube", "-p", "extra=1", "--entrypoint", "other", "-o", "name")
    assert res.returncode == 0, res.stderr
    name = res.stdout.strip()
    assert re.fullmatch(r"gen-[a-z0-9]+", name), res.stdout
    assert kube.workflow_names() == [name]
    obj = kube.workflow(name)
    assert obj["apiVersion"] == "sluice.dev/v1alpha1"
    assert obj["spec"]["entrypoint"] == "other"
    assert obj["spec"]["arguments"]["parameters"] == [
        {"name": "who", "value": "kube"},
        {"name": "extra", "value": "1"},
    ]
    assert obj["spec"]["templates"][0]["container"]["command"] == ["echo", "{{workflow.parameters.who}}"]

    plain = kube("submit", path)
    second = next(n for n in kube.workflow_names() if n != name)
    assert plain.stdout == f"Name:      {second}\nNamespace: default\nStatus:    Pending\n"
    assert kube.workflow(second)["spec"]["arguments"]["parameters"] == [{"name": "who", "value": "world"}]


def test_created_workflows_and_crons_carry_the_operator_instance_id(kube: Kube, tmp_path: Path) -> None:
    path = write(tmp_path, "gen.yaml", GENERATED)

    def labels(name: str, kind: str = "workflows") -> dict[str, str]:
        obj = kube.server.request("GET", f"{GROUP_PATH}/namespaces/default/{kind}/{name}")
        found: dict[str, str] = obj["metadata"].get("labels") or {}
        return found

    blue = kube("submit", path, "-o", "name", env={"SLUICE_INSTANCE_ID": "blue"}).stdout.strip()
    assert labels(blue)[LABEL_INSTANCE] == "blue"
    green = kube("--instanceid", "green", "submit", path, "-o", "name").stdout.strip()
    assert labels(green)[LABEL_INSTANCE] == "green"
    plain = kube("submit", path, "-o", "name").stdout.strip()
    assert LABEL_INSTANCE not in labels(plain)
    # A resubmitted run goes to the instance that ran the old one.
    again = kube("resubmit", blue, "-o", "name").stdout.strip()
    assert labels(again)[LABEL_INSTANCE] == "blue"
    cron = write(tmp_path, "c.yaml", CRON)
    assert kube("cron", "create", cron, env={"SLUICE_INSTANCE_ID": "blue"}).returncode == 0
    assert labels("nightly", "cronworkflows")[LABEL_INSTANCE] == "blue"
    assert kube("cron", "suspend", "nightly").returncode == 0  # a later change keeps the label
    assert labels("nightly", "cronworkflows")[LABEL_INSTANCE] == "blue"


def test_a_bad_manifest_is_one_line_naming_file_and_field_and_creates_nothing(
    kube: Kube, tmp_path: Path
) -> None:
    good = GENERATED.strip()
    bad = GENERATED.replace("- name: other\n", "- name: main\n").strip()  # two templates named main
    path = write(tmp_path, "two.yaml", good + "\n---\n" + bad + "\n")
    res = kube("submit", path)
    assert res.returncode == 2
    line = error_line(res)
    assert line.startswith(f"sluice: {path}") and "spec.templates[1].name" in line, line
    assert kube.workflow_names() == []

    missing = write(tmp_path, "missing.yaml", GENERATED.replace("entrypoint: main", "entrypoint: nowhere"))
    res = kube("submit", missing)
    assert res.returncode == 2
    assert str(missing) in error_line(res) and "spec.entrypoint" in error_line(res)
    unknown_parameter = kube("submit", path, "-p", "no-equals-sign")
    assert unknown_parameter.returncode == 2 and "name=value" in error_line(unknown_parameter)
    assert kube.workflow_names() == []


def test_submit_leaves_template_references_to_the_operator_and_brings_the_files_templates(
    kube: Kube, tmp_path: Path
) -> None:
    # The template is not on the cluster: only the operator may resolve it, when it runs the workflow.
    alone = kube("submit", write(tmp_path, "uses.yaml", USES_GREETER), "-o", "name")
    assert alone.returncode == 0, alone.stderr
    both = write(tmp_path, "both.yaml", GREETER_TEMPLATE.strip() + "\n---\n" + USES_GREETER.strip() + "\n")
    assert kube("submit", both).returncode == 0
    template = kube.server.request("GET", f"{GROUP_PATH}/namespaces/default/workflowtemplates/greeter")
    assert template["spec"]["templates"][0]["name"] == "hello"
    assert len(kube.workflow_names()) == 2


def test_submit_wait_returns_when_the_operator_finishes_the_workflow(kube: Kube, tmp_path: Path) -> None:
    proc = kube.popen("submit", write(tmp_path, "gen.yaml", GENERATED), "--wait")
    try:
        name = wait_for(kube.workflow_names, what="the submitted workflow")[0]
        time.sleep(1)
        assert proc.poll() is None, "returned before the workflow finished"
        kube.write_status(name, {"phase": "Failed", "message": "child failed"})
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (proc.returncode, out, err) == (1, f"{name} Failed (child failed)\n", "")


# ------------------------------------------------------------------------------------------------ views


def test_get_prints_what_the_embedded_runtime_prints_for_the_same_status(mirrored: Kube, ran: Path) -> None:
    for name in ("two-steps", "failing"):
        want = cli("get", name, home=ran)
        got = mirrored("get", name)
        assert got.returncode == 0, got.stderr
        assert (
            "PODNAME" in got.stdout and name in got.stdout.split("PODNAME")[1]
        )  # the tree, not just a header
        assert normalised_get(got.stdout) == normalised_get(want.stdout)
    assert "  who:" in mirrored("get", "two-steps").stdout


def test_get_json_and_yaml_carry_the_same_status_as_embedded(mirrored: Kube, ran: Path) -> None:
    want = embedded_object(ran, "failing")
    got = json.loads(mirrored("get", "failing", "-o", "json").stdout)
    assert got["status"] == want["status"]
    assert got["metadata"]["labels"] == want["metadata"]["labels"]
    assert yaml.safe_load(mirrored("get", "failing", "-o", "yaml").stdout) == got
    assert mirrored("get", "@latest", "-o", "name").stdout in ("two-steps\n", "failing\n")


def test_list_prints_what_the_embedded_runtime_prints(mirrored: Kube, ran: Path) -> None:
    for view in ([], ["--completed"], ["--running"], ["-o", "name"]):
        want = cli("list", *view, home=ran).stdout
        got = mirrored("list", *view).stdout
        assert normalised_list(got) == normalised_list(want), view
    as_json = json.loads(mirrored("list", "-o", "json").stdout)
    assert sorted(as_json, key=lambda w: w["name"]) == sorted(
        json.loads(cli("list", "-o", "json", home=ran).stdout), key=lambda w: w["name"]
    )


def test_list_all_namespaces_and_running_suspended(kube: Kube) -> None:
    kube.server.create("/api/v1/namespaces", {"metadata": {"name": "team"}})
    kube.create_workflow(running("here"))
    kube.create_workflow(running("there"), namespace="team")
    kube.write_status("here", {"phase": "Running", "startedAt": "2024-01-01T00:00:00Z"})
    assert kube("suspend", "here").returncode == 0
    table = kube("list").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "AGE", "DURATION", "MESSAGE"]
    assert re.split(r" {3,}", table[1])[:2] == ["here", "Running (Suspended)"]
    assert len(table) == 2
    assert kube("-n", "team", "list", "-o", "name").stdout == "there\n"
    everywhere = json.loads(kube("list", "-A", "-o", "json").stdout)
    assert {(w["namespace"], w["name"]) for w in everywhere} == {("default", "here"), ("team", "there")}


def test_a_workflow_from_a_template_shows_the_spec_the_operator_stored(kube: Kube) -> None:
    kube.create_workflow(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "from-template"},
            "spec": {
                "workflowTemplateRef": {"name": "greeter"},
                "arguments": {"parameters": [{"name": "who", "value": "bob"}]},
            },
        }
    )
    stored = {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "who", "value": "bob"}, {"name": "lang", "value": "fr"}]},
        "templates": [{"name": "main", "suspend": {}}],
    }
    kube.write_status("from-template", {"phase": "Running", "storedWorkflowTemplateSpec": stored})
    assert kube("suspend", "from-template").returncode == 0
    header = kube("get", "from-template").stdout
    assert "Status:         Running (Suspended)" in header
    assert re.search(r"^  who: +bob$", header, re.MULTILINE) and re.search(
        r"^  lang: +fr$", header, re.MULTILINE
    )


def test_compressed_nodes_render_as_the_plain_ones(mirrored: Kube, ran: Path) -> None:
    plain = mirrored("get", "two-steps").stdout
    nodes = embedded_object(ran, "two-steps")["status"]["nodes"]
    mirrored.write_status("two-steps", {"nodes": None, "compressedNodes": compress_nodes(nodes)})
    stored = mirrored.workflow("two-steps")["status"]
    assert "nodes" not in stored and stored["compressedNodes"]
    assert mirrored("get", "two-steps").stdout == plain
    assert json.loads(mirrored("get", "two-steps", "-o", "json").stdout)["status"]["nodes"] == nodes


# ------------------------------------------------------------------------------------------------ operations


@pytest.mark.parametrize(
    ("op", "printed", "spec"),
    [
        ("stop", "stopped", {"shutdown": "Stop"}),
        ("terminate", "terminated", {"shutdown": "Terminate"}),
        ("suspend", "suspended", {"suspend": True}),
    ],
)
def test_stop_terminate_and_suspend_patch_the_spec(
    kube: Kube, op: str, printed: str, spec: dict[str, Any]
) -> None:
    kube.create_workflow(running("busy"))
    kube.write_status("busy", {"phase": "Running"})
    before = kube.workflow("busy")
    res = kube(op, "busy")
    assert (res.returncode, res.stdout, res.stderr) == (0, f"workflow busy {printed}\n", "")
    after = kube.workflow("busy")
    assert after["spec"] == {**before["spec"], **spec}
    assert after["status"] == before["status"]
    assert after["metadata"].get("annotations") is None


def test_resume_clears_suspend_and_annotates_the_request_with_a_fresh_id(kube: Kube) -> None:
    kube.create_workflow(running("paused"))
    kube.write_status("paused", {"phase": "Running"})
    assert kube("suspend", "paused").returncode == 0
    res = kube(
        "resume",
        "paused",
        "--node-field-selector",
        "displayName=approve",
        "--output-parameter",
        "answer=yes",
    )
    assert (res.returncode, res.stdout) == (0, "workflow paused resumed\n")
    obj = kube.workflow("paused")
    assert "suspend" not in obj["spec"]
    first = json.loads(obj["metadata"]["annotations"][RESUME])
    assert {k: v for k, v in first.items() if k != "id"} == {"node": "approve", "outputs": {"answer": "yes"}}

    assert kube("resume", "paused").returncode == 0
    second = json.loads(kube.workflow("paused")["metadata"]["annotations"][RESUME])
    assert {k: v for k, v in second.items() if k != "id"} == {"node": None, "outputs": None}
    assert first["id"] and second["id"] and first["id"] != second["id"]


def test_operations_on_a_finished_workflow_are_refused(kube: Kube) -> None:
    kube.create_workflow(running("done"))
    kube.write_status("done", {"phase": "Succeeded"})
    for op in ("stop", "terminate", "suspend", "resume"):
        res = kube(op, "done")
        assert res.returncode == 1
        assert error_line(res) == "sluice: workflow 'done' has already completed (Succeeded)"
    assert "shutdown" not in kube.workflow("done")["spec"]


def test_retry_annotates_the_request_and_patches_parameters(mirrored: Kube) -> None:
    res = mirrored(
        "retry",
        "two-steps",
        "--restart-successful",
        "--node-field-selector",
        "displayName=first",
        "-p",
        "who=again",
    )
    assert res.returncode == 1 and "is Succeeded: only a Failed or Error one can be retried" in res.stderr
    res = mirrored(
        "retry",
        "failing",
        "--restart-successful",
        "--node-field-selector",
        "displayName=failing",
        "-p",
        "who=again",
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, "workflow failing retried\n", "")
    obj = mirrored.workflow("failing")
    request = json.loads(obj["metadata"]["annotations"][RETRY])
    assert {k: v for k, v in request.items() if k != "id"} == {
        "restartSuccessful": True,
        "nodeFieldSelector": "displayName=failing",
    }
    assert request["id"]
    assert obj["spec"]["arguments"]["parameters"] == [{"name": "who", "value": "again"}]
    assert obj["status"]["phase"] == "Failed"  # the operator resets it, not the CLI

    mirrored.write_status("two-steps", {"phase": "Error"})
    assert mirrored("retry", "two-steps").returncode == 0
    plain = json.loads(mirrored.workflow("two-steps")["metadata"]["annotations"][RETRY])
    assert {k: v for k, v in plain.items() if k != "id"} == {
        "restartSuccessful": False,
        "nodeFieldSelector": None,
    }
    assert mirrored.workflow("two-steps")["spec"]["arguments"]["parameters"] == [
        {"name": "who", "value": "kube"}
    ]


def test_retry_of_a_running_workflow_is_refused(kube: Kube) -> None:
    kube.create_workflow(running("busy"))
    kube.write_status("busy", {"phase": "Running"})
    res = kube("retry", "busy", "-p", "x=1")
    assert res.returncode == 1
    assert error_line(res) == "sluice: workflow 'busy' is Running: only a Failed or Error one can be retried"
    obj = kube.workflow("busy")
    assert obj["metadata"].get("annotations") is None and "arguments" not in obj["spec"]


def test_retry_wait_waits_for_the_operator_to_rerun_the_workflow(kube: Kube) -> None:
    kube.create_workflow(running("flaky"))
    kube.write_status("flaky", {"phase": "Failed", "message": "first try"})
    proc = kube.popen("retry", "flaky", "--wait")
    try:
        wait_for(lambda: RETRY in (kube.workflow("flaky")["metadata"].get("annotations") or {}), what="retry")
        time.sleep(1)
        assert proc.poll() is None, "took the old Failed status for the retry's result"
        # The operator takes the request: clears it, reruns, and this time the workflow succeeds.
        kube.server.request(
            "PATCH",
            f"{GROUP_PATH}/namespaces/default/workflows/flaky",
            {"metadata": {"annotations": {RETRY: None}}},
            content_type=MERGE,
        )
        kube.write_status("flaky", {"phase": "Running", "message": None})
        time.sleep(1)
        assert proc.poll() is None
        kube.write_status("flaky", {"phase": "Succeeded"})
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (proc.returncode, out) == (0, "workflow flaky retried\nflaky Succeeded\n")


def test_resubmit_creates_a_new_workflow_from_the_old_one(mirrored: Kube) -> None:
    assert mirrored("stop", "two-steps").returncode == 1  # finished: nothing to stop
    res = mirrored("resubmit", "two-steps", "-p", "who=again", "-o", "name")
    assert res.returncode == 0, res.stderr
    name = res.stdout.strip()
    assert name.startswith("two-steps-")
    obj = mirrored.workflow(name)
    assert obj["metadata"]["labels"]["workflows.argoproj.io/resubmitted-from-workflow"] == "two-steps"
    assert obj["spec"]["arguments"]["parameters"] == [{"name": "who", "value": "again"}]
    assert obj["spec"]["templates"] == mirrored.workflow("two-steps")["spec"]["templates"]
    assert "status" not in obj


def test_delete_removes_the_object(mirrored: Kube) -> None:
    mirrored.create_workflow(running("busy"))
    res = mirrored("delete", "two-steps")
    assert (res.returncode, res.stdout) == (0, 'Workflow "two-steps" deleted\n')
    assert mirrored.workflow_names() == ["busy", "failing"]
    assert mirrored("delete", "--completed").stdout == 'Workflow "failing" deleted\n'
    assert mirrored.workflow_names() == ["busy"]


# ------------------------------------------------------------------------------------------------ wait, logs


def test_wait_returns_when_the_phase_flips(kube: Kube) -> None:
    kube.create_workflow(running("one"))
    kube.create_workflow(running("two"))
    proc = kube.popen("wait", "one", "two")
    try:
        time.sleep(1.5)
        assert proc.poll() is None
        kube.write_status("two", {"phase": "Succeeded"})
        kube.write_status("one", {"phase": "Running"})
        time.sleep(1.5)
        assert proc.poll() is None, "returned while 'one' was still running"
        threading.Timer(0.5, kube.write_status, ("one", {"phase": "Error", "message": "pod deleted"})).start()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (proc.returncode, out, err) == (1, "one Error (pod deleted)\ntwo Succeeded\n", "")


def embedded_logs(home: Path, *args: str) -> str:
    res = cli("logs", *args, home=home)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_logs_print_each_steps_main_container_as_embedded(mirrored: Kube, ran: Path) -> None:
    want = embedded_logs(ran, "two-steps")
    by_pod: dict[str, str] = {}
    for line in want.splitlines():
        pod, text = line.split(": ", 1)
        by_pod[pod] = by_pod.get(pod, "") + text + "\n"
    assert len(by_pod) == 2
    for pod, text in by_pod.items():
        mirrored.create_pod(pod)
        mirrored.server.set_pod_log("default", pod, text, container="main")
        mirrored.server.set_pod_log("default", pod, '{"outputs": {}}\n', container="wait")
    res = mirrored("logs", "two-steps")
    assert (res.returncode, res.stdout, res.stderr) == (0, want, "")
    assert mirrored("logs", "two-steps", "second", "--no-prefix").stdout == embedded_logs(
        ran, "two-steps", "second", "--no-prefix"
    )
    # A step whose pod is gone (or not started) has no log to show; that is not an error.
    assert mirrored("logs", "failing").stdout == ""


def test_logs_follow_prints_new_lines_until_the_workflow_ends(mirrored: Kube, ran: Path) -> None:
    status = embedded_object(ran, "failing")["status"]
    pod = embedded_logs(ran, "failing").split(": ", 1)[0]
    node_id = next(nid for nid, n in status["nodes"].items() if n["type"] == "Pod")
    mirrored.write_status(
        "failing",
        {
            "phase": "Running",
            "finishedAt": None,
            "nodes": {node_id: {"phase": "Running", "finishedAt": None}},
        },
    )
    mirrored.create_pod(pod)
    mirrored.server.set_pod_log("default", pod, "one\ntw", container="main")
    proc = mirrored.popen("logs", "failing", "-f")
    killer = threading.Timer(60, proc.kill)
    killer.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"{pod}: one\n"
        mirrored.server.set_pod_log("default", pod, "one\ntwo\nthr", container="main")
        time.sleep(1.5)
        assert proc.poll() is None
        mirrored.write_status("failing", {"phase": "Failed", "nodes": {node_id: {"phase": "Failed"}}})
        rest, err = proc.communicate(timeout=30)
    finally:
        killer.cancel()
        proc.kill()
    assert (proc.returncode, rest, err) == (0, f"{pod}: two\n{pod}: thr\n", "")


# ------------------------------------------------------------------------------------------------ objects


def test_template_commands_print_what_embedded_prints(kube: Kube, home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", GREETER_TEMPLATE)
    for argv in (("template", "create", path), ("template", "list")):
        want = cli(*argv, home=home)
        got = kube(*argv)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), argv
    stored = kube.server.request("GET", f"{GROUP_PATH}/namespaces/default/workflowtemplates/greeter")
    assert stored["apiVersion"] == "sluice.dev/v1alpha1"
    got = json.loads(kube("template", "get", "greeter", "-o", "json").stdout)
    want = json.loads(cli("template", "get", "greeter", "-o", "json", home=home).stdout)
    assert (got["kind"], got["metadata"]["name"], got["spec"]) == (want["kind"], "greeter", want["spec"])
    assert kube("template", "create", path).stdout == "workflowtemplate/greeter created\n"  # replaces it
    for after in (("template", "delete", "greeter"), ("template", "list")):
        assert kube(*after).stdout == cli(*after, home=home).stdout
    assert kube("template", "list").stdout == "No workflow templates found\n"


def test_cron_commands_print_what_embedded_prints(kube: Kube, home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", CRON)
    for argv in (
        ("cron", "create", path),
        ("cron", "list"),
        ("cron", "suspend", "nightly"),
        ("cron", "list"),
    ):
        want = cli(*argv, home=home)
        got = kube(*argv)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), argv
    stored = kube.server.request("GET", f"{GROUP_PATH}/namespaces/default/cronworkflows/nightly")
    assert stored["spec"]["suspend"] is True
    assert kube("cron", "resume", "nightly").stdout == "CronWorkflow 'nightly' resumed\n"
    assert (
        kube.server.request("GET", f"{GROUP_PATH}/namespaces/default/cronworkflows/nightly")["spec"][
            "suspend"
        ]
        is False
    )
    got = json.loads(kube("cron", "get", "nightly", "-o", "json").stdout)
    assert got["spec"]["schedules"] == ["0 3 * * *"] and got["metadata"]["name"] == "nightly"
    assert kube("cron", "delete", "nightly").stdout == cli("cron", "delete", "nightly", home=home).stdout


def test_apply_configmap_and_secret_keep_their_objects_on_the_cluster(
    kube: Kube, home: Path, tmp_path: Path
) -> None:
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {colour: blue}\n"
    path = write(tmp_path, "objects.yaml", GREETER_TEMPLATE.strip() + "\n---\n" + config_map)
    for argv in (
        ("apply", path),
        ("configmap", "list"),
        ("configmap", "create", "greeting", "--from-literal", "word=bonjour"),
        ("secret", "create", "key", "--from-literal", "password=s3cr3t"),
        ("secret", "list"),
    ):
        want = cli(*argv, home=home)
        got = kube(*argv)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), argv
    shown = yaml.safe_load(kube("secret", "get", "key").stdout)
    assert shown["data"] == yaml.safe_load(cli("secret", "get", "key", home=home).stdout)["data"]
    assert shown["data"] == {"password": "(hidden)"}
    stored = kube.server.request("GET", "/api/v1/namespaces/default/configmaps/settings")
    assert stored["data"] == {"colour": "blue"}
    assert kube.server.request("GET", "/api/v1/namespaces/default/configmaps/greeting")["data"] == {
        "word": "bonjour"
    }
    assert kube.server.request("GET", f"{GROUP_PATH}/namespaces/default/workflowtemplates/greeter")
    assert kube("configmap", "delete", "settings").stdout == "configmap/settings deleted\n"
    with pytest.raises(ApiError):
        kube.server.request("GET", "/api/v1/namespaces/default/configmaps/settings")


# ------------------------------------------------------------------------------------------------ errors


def test_missing_objects_get_the_embedded_not_found_messages(kube: Kube, home: Path) -> None:
    for argv in (
        ("get", "ghost"),
        ("logs", "ghost"),
        ("wait", "ghost"),
        ("delete", "ghost"),
        ("template", "get", "ghost"),
        ("template", "delete", "ghost"),
        ("cron", "get", "ghost"),
        ("cron", "suspend", "ghost"),
        ("cron", "delete", "ghost"),
    ):
        want = cli(*argv, home=home)
        got = kube(*argv)
        assert (got.returncode, error_line(got)) == (want.returncode, error_line(want)), argv
    for argv in (("stop", "ghost"), ("resume", "ghost"), ("retry", "ghost"), ("resubmit", "ghost")):
        got = kube(*argv)
        assert (got.returncode, error_line(got)) == (
            1,
            "sluice: workflow 'ghost' not found in namespace 'default'",
        ), argv


def test_api_errors_are_one_line(kube: Kube, tmp_path: Path) -> None:
    res = kube("-n", "nowhere", "submit", write(tmp_path, "gen.yaml", GENERATED))
    assert (res.returncode, error_line(res)) == (1, 'sluice: namespaces "nowhere" not found')


def test_a_cluster_without_the_crds_is_named_as_such(api_server: ApiServer, tmp_path: Path) -> None:
    res = Kube(api_server, tmp_path)("list")
    assert res.returncode == 1
    assert error_line(res).startswith("sluice: the cluster does not serve workflows.sluice.dev: ")


def test_an_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        "current-context": "gone",
    }
    kubeconfig = write(tmp_path, "kubeconfig", json.dumps(config))
    res = subprocess.run(
        [str(SLUICE_BIN), "--kube", "--kubeconfig", str(kubeconfig), "get", "x"],
        env=sluice_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    assert error_line(res).startswith(
        "sluice: cannot reach the Kubernetes API server at http://127.0.0.1:9: "
    )


def test_commands_of_the_embedded_runtime_are_refused(kube: Kube, tmp_path: Path) -> None:
    path = write(tmp_path, "gen.yaml", GENERATED)
    for argv in (("run", path), ("server",)):
        res = kube(*argv)
        assert res.returncode == 1
        assert error_line(res).startswith(f"sluice: not available with --kube: `sluice {argv[0]}`"), argv
    assert kube.workflow_names() == []


# ------------------------------------------------------------------------------------------------ options


def test_the_namespace_is_the_contexts_unless_given_and_sluice_kube_enables_it(
    kube: Kube, tmp_path: Path
) -> None:
    kube.server.create("/api/v1/namespaces", {"metadata": {"name": "team"}})
    config = json.loads(kube.server.kubeconfig.read_text())
    config["contexts"].append(
        {"name": "team", "context": {**config["contexts"][0]["context"], "namespace": "team"}}
    )
    kubeconfig = write(tmp_path, "kubeconfig", json.dumps(config))
    path = write(tmp_path, "gen.yaml", GENERATED)

    def sluice(
        *args: str | os.PathLike[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SLUICE_BIN), "--kubeconfig", str(kubeconfig), *map(str, args)],
            env=sluice_env(kube.home, env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    in_team = sluice("--kube", "--context", "team", "submit", path, "-o", "name").stdout.strip()
    assert kube.workflow_names("team") == [in_team]
    assert sluice("--kube", "--context", "team", "-n", "default", "submit", path).returncode == 0
    assert len(kube.workflow_names("default")) == 1
    # The subcommand takes the options too; SLUICE_KUBE=1 stands for --kube.
    assert (
        sluice("list", "-o", "name", "--context", "team", env={"SLUICE_KUBE": "1"}).stdout == f"{in_team}\n"
    )
    assert sluice("list", "-o", "name", "--kube").stdout == f"{kube.workflow_names('default')[0]}\n"
    assert not (kube.home / "state.db").exists()
    with pytest.raises(ApiError):
        kube.workflow(in_team)
