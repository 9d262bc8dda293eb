"""http steps on Kubernetes piece by piece: the pod the builder makes for one, ``sluice executor http``
against a real server, and what podstate makes of the verdict the command leaves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.kubernetes.executor import run_http
from engine.runtime.kubernetes.pods import ANNOTATION_STEP_KIND, HTTP_ENV, WRAPPER, build_pod
from engine.runtime.kubernetes.podstate import pod_outcome
from engine.runtime.local.executor import expand_vars
from engine.runtime.outputs import read_result
from tests.kubernetes.apiserver import ApiServer, container_status
from tests.kubernetes.httpserver import TOKEN, HttpServer, closed_port, http_server
from tests.kubernetes.kubelet import TestKubelet
from tests.kubernetes.test_kubelet import box, create_pod, ended, states
from tests.kubernetes.test_pods import NOW, SETTINGS, containers, step_doc, steps_of

__all__ = ["http_server"]

ROOT = Path(__file__).resolve().parents[2]
NODE_ID = "workflows.sluice.dev/node-id"


def http_pod(http: Mapping[str, Any]) -> dict[str, Any]:
    """The pod of a workflow whose entrypoint is an http template with this ``http`` body."""
    (step,) = steps_of(f"""
  - name: main
    http: {json.dumps(http)}
""")
    return build_pod(step, SETTINGS, now=NOW)


def main_env(pod: Mapping[str, Any], secrets: Mapping[tuple[str, str], str]) -> dict[str, str]:
    """main's environment as a kubelet makes it: ``$(VAR)`` expanded in values, secret keys filled in
    (an optional one that does not exist left unset)."""
    env: dict[str, str] = {}
    for item in containers(dict(pod))["main"]["env"]:
        if "value" in item:
            env[item["name"]] = expand_vars(item["value"], env)
            continue
        ref = item["valueFrom"].get("secretKeyRef")
        if ref is None:
            continue  # the downward API: not needed by the command
        value = secrets.get((ref["name"], ref["key"]))
        if value is not None:
            env[item["name"]] = value
        else:
            assert ref.get("optional"), ref
    return env


def run(env: Mapping[str, str], tmp_path: Path) -> tuple[int, bytes, str]:
    """``run_http`` as main runs it: exit code, stdout, and the termination message it left."""
    log = tmp_path / "termination-log"
    log.write_text("")
    out, err = io.BytesIO(), io.StringIO()
    code = run_http(env, stdout=out, stderr=err, termination_log=log)
    return code, out.getvalue(), log.read_text()


# ------------------------------------------------------------------------------------------ the pod


def test_an_http_step_runs_sluice_executor_http_from_the_executor_image_under_sluice_run() -> None:
    pod = http_pod({"url": "http://example.com/", "timeoutSeconds": 5})
    main = containers(pod)["main"]
    assert main["image"] == SETTINGS.executor_image
    assert main["command"] == [WRAPPER, "--name", "main", "--stdout", "--", "sluice", "executor", "http"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["init"]
    assert list(containers(pod)) == ["main", "wait"]
    assert pod["metadata"]["annotations"][ANNOTATION_STEP_KIND] == "http"
    doc = step_doc(pod)
    # wait keeps main's stdout as the result, and nothing else is collected.
    assert (doc["result"], doc["wrapped"], doc["parameters"], doc["artifacts"]) == (True, ["main"], [], [])
    request = json.loads(main_env(pod, {})[HTTP_ENV])["request"]
    assert request == {"url": "http://example.com/", "timeoutSeconds": 5}
    # The artifact repository's credentials are for init and wait only.
    assert not any(e["name"].startswith("SLUICE_S3") for e in main["env"])


def test_container_step_pods_carry_no_step_kind_annotation() -> None:
    (step,) = steps_of("""
  - name: main
    container: {image: busybox, command: [echo, hi]}
""")
    assert ANNOTATION_STEP_KIND not in build_pod(step, SETTINGS, now=NOW)["metadata"]["annotations"]


def test_secret_headers_become_secret_key_refs_that_the_kubelet_resolves() -> None:
    ref = {"secretKeyRef": {"name": "api", "key": "token"}}
    pod = http_pod(
        {
            "url": "http://example.com/",
            "headers": [
                {"name": "X-Token", "valueFrom": ref},
                {"name": "X-Again", "valueFrom": ref},
                {"name": "X-Plain", "value": "p"},
            ],
        }
    )
    env = containers(pod)["main"]["env"]
    refs = [e for e in env if "secretKeyRef" in (e.get("valueFrom") or {})]
    # One variable per secret key, optional so a missing one fails the request with its own message.
    assert [e["valueFrom"]["secretKeyRef"] for e in refs] == [
        {"name": "api", "key": "token", "optional": True}
    ]
    doc = json.loads(main_env(pod, {})[HTTP_ENV])
    assert doc["secrets"] == [{"name": "api", "key": "token", "env": refs[0]["name"]}]
    assert doc["request"]["headers"][2] == {"name": "X-Plain", "value": "p"}


def test_the_request_arrives_as_written_through_the_kubelets_variable_expansion() -> None:
    body = "$(ARGO_POD_NAME) costs $$5 and $x"
    pod = http_pod({"url": "http://example.com/$(ARGO_NODE_ID)", "body": body})
    request = json.loads(main_env(pod, {})[HTTP_ENV])["request"]
    assert (request["url"], request["body"]) == ("http://example.com/$(ARGO_NODE_ID)", body)


# ------------------------------------------------------------------------------------------ the command


def test_the_command_prints_the_body_and_exits_0_without_a_message(
    http_server: HttpServer, tmp_path: Path
) -> None:
    code, out, message = run(main_env(http_pod({"url": http_server.url("/ok")}), {}), tmp_path)
    assert (code, out, message) == (0, b"hello from http\n", "")


def test_the_result_wait_reads_is_the_body_byte_for_byte(http_server: HttpServer, tmp_path: Path) -> None:
    code, out, _ = run(main_env(http_pod({"url": http_server.url("/newline")}), {}), tmp_path)
    stdout = tmp_path / "stdout"
    stdout.write_bytes(out)
    assert code == 0
    assert read_result(stdout) == "two lines\nend\n"


def test_a_non_2xx_response_exits_1_with_the_reason_as_termination_message(
    http_server: HttpServer, tmp_path: Path
) -> None:
    code, out, message = run(main_env(http_pod({"url": http_server.url("/missing")}), {}), tmp_path)
    assert (code, out, message) == (1, b"missing\n", "received non-2xx response code: 404")


def test_a_false_success_condition_exits_1_naming_the_condition(
    http_server: HttpServer, tmp_path: Path
) -> None:
    spec = {"url": http_server.url("/ok"), "successCondition": "response.statusCode == 201"}
    code, out, message = run(main_env(http_pod(spec), {}), tmp_path)
    assert (code, out) == (1, b"hello from http\n")
    assert message == "successCondition 'response.statusCode == 201' was false (response code 200)"


def test_a_secret_header_is_sent_with_the_value_the_kubelet_filled_in(
    http_server: HttpServer, tmp_path: Path
) -> None:
    header = {"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    pod = http_pod({"url": http_server.url("/token"), "headers": [header]})
    code, out, _ = run(main_env(pod, {("api", "token"): TOKEN}), tmp_path)
    assert (code, out) == (0, b"token accepted\n")
    assert [r.token for r in http_server.requests_to("/token")] == [TOKEN]


def test_a_missing_secret_is_an_error_and_no_request_is_sent(http_server: HttpServer, tmp_path: Path) -> None:
    header = {"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    pod = http_pod({"url": http_server.url("/token"), "headers": [header]})
    code, out, message = run(main_env(pod, {}), tmp_path)
    assert (code, out, message) == (2, b"", "header X-Token: secret api/token not found")
    assert http_server.requests_to("/token") == []


def test_a_closed_port_fails_naming_the_request(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    code, out, message = run(main_env(http_pod({"url": url}), {}), tmp_path)
    assert (code, out) == (1, b"")
    assert message.startswith(f"GET {url}: Cannot connect to host")


def test_a_malformed_request_document_is_an_error(tmp_path: Path) -> None:
    code, out, message = run({HTTP_ENV: "{not json"}, tmp_path)
    assert (code, out) == (2, b"")
    assert message.startswith(f"${HTTP_ENV} is not valid JSON")


def test_sluice_executor_http_is_the_command_line_of_run_http(http_server: HttpServer) -> None:
    env = main_env(http_pod({"url": http_server.url("/echo"), "method": "POST", "body": "hi"}), {})
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "executor", "http"],
        env={**os.environ, **env},
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, b"POST None hi\n"), proc.stderr


# ------------------------------------------------------------------------------------------ podstate


def http_pod_state(phase: str, *statuses: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "wf-call-1",
            "annotations": {NODE_ID: "wf-1", ANNOTATION_STEP_KIND: "http"},
        },
        "status": {"phase": phase, "startTime": "2026-11-23T10:00:00Z", "containerStatuses": list(statuses)},
    }


def outputs(result: str, main: int) -> dict[str, Any]:
    return {
        "v": 1,
        "result": result,
        "parameters": [],
        "artifacts": [],
        "problems": [],
        "exitCodes": {"main": main},
    }


def test_a_succeeded_http_pod_has_the_body_as_result_and_no_exit_code() -> None:
    pod = http_pod_state(
        "Succeeded", container_status("main", exit_code=0), container_status("wait", exit_code=0)
    )
    done = pod_outcome(pod, outputs=outputs("hello from http", 0))
    assert done is not None
    assert (done.phase, done.message, done.result, done.exit_code) == (
        "Succeeded",
        "",
        "hello from http",
        None,
    )


@pytest.mark.parametrize(("code", "phase"), [(1, "Failed"), (2, "Error")])
def test_the_exit_code_is_the_phase_and_the_termination_message_the_message(code: int, phase: str) -> None:
    message = "received non-2xx response code: 404"
    main = container_status("main", exit_code=code, message=message)
    pod = http_pod_state("Failed", main, container_status("wait", exit_code=0))
    ended = pod_outcome(pod, outputs=outputs("missing", code))
    assert ended is not None
    assert (ended.phase, ended.message, ended.result, ended.exit_code) == (phase, message, "missing", None)


@pytest.mark.parametrize("code", [1, 137])
def test_an_http_command_that_left_no_verdict_is_an_error(code: int) -> None:
    pod = http_pod_state(
        "Failed", container_status("main", exit_code=code), container_status("wait", exit_code=0)
    )
    ended = pod_outcome(pod, outputs=outputs("", code))
    assert ended is not None
    assert (ended.phase, ended.message) == (
        "Error",
        f"the http request ended without a verdict (exit code {code})",
    )


def test_an_empty_body_is_no_result_as_on_the_embedded_runtime() -> None:
    pod = http_pod_state(
        "Succeeded", container_status("main", exit_code=0), container_status("wait", exit_code=0)
    )
    done = pod_outcome(pod, outputs=outputs("", 0))
    assert done is not None and (done.phase, done.result) == ("Succeeded", None)


def test_an_http_pod_whose_wait_still_runs_is_running() -> None:
    main = container_status("main", exit_code=1, message="received non-2xx response code: 500")
    running = pod_outcome(http_pod_state("Running", main, container_status("wait", running=True)))
    assert running is not None and running.phase == "Running"


def test_a_container_step_with_a_termination_message_keeps_its_exit_code_rule() -> None:
    pod = http_pod_state(
        "Failed", container_status("main", exit_code=1, message="boom"), container_status("wait", exit_code=0)
    )
    del pod["metadata"]["annotations"][ANNOTATION_STEP_KIND]
    failed = pod_outcome(pod, outputs=outputs("", 1))
    assert failed is not None
    assert (failed.phase, failed.message, failed.exit_code) == ("Failed", "Error (exit code 1)", 1)


# ------------------------------------------------------------------------------------------ the channel


def test_what_a_container_writes_to_its_termination_log_is_its_terminated_message(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    create_pod(
        api_server,
        "last-words",
        {
            "containers": [
                box("main", "printf 'received non-2xx response code: 404' > /dev/termination-log; exit 1"),
                box("quiet", "true"),
                box("elsewhere", "echo -n moved > /tmp/said", terminationMessagePath="/tmp/said"),
            ]
        },
    )
    pod = ended(api_server, "last-words")
    main, quiet, elsewhere = (states(pod)[n]["terminated"] for n in ("main", "quiet", "elsewhere"))
    assert (main["exitCode"], main["message"]) == (1, "received non-2xx response code: 404")
    assert "message" not in quiet or not quiet["message"]
    assert elsewhere["message"] == "moved"
