"""How a step pod's state becomes its node's outcome (engine.runtime.kubernetes.podstate)."""

from __future__ import annotations

from typing import Any

from engine.runtime.kubernetes.executor import STOPPED_PROBLEM
from engine.runtime.kubernetes.pods import ANNOTATION_STOP_MESSAGE
from engine.runtime.kubernetes.podstate import DELETED_MESSAGE, pod_outcome
from engine.workflows.plan import DEADLINE_MESSAGE
from tests.kubernetes.apiserver import container_status


def pod(
    phase: str, *containers: dict[str, Any], inits: tuple[dict[str, Any], ...] = (), **status: Any
) -> Any:
    return {
        "metadata": {"name": "wf-step-1", "annotations": {"workflows.sluice.dev/node-id": "wf-1"}},
        "spec": {"nodeName": "node-a"},
        "status": {
            "phase": phase,
            "startTime": "2026-11-23T10:00:00Z",
            "podIP": "10.0.0.7",
            "containerStatuses": list(containers),
            "initContainerStatuses": list(inits),
            **status,
        },
    }


OUTPUTS = {
    "v": 1,
    "result": "hello",
    "parameters": [{"name": "p", "value": "1"}],
    "artifacts": [{"name": "a", "path": "/tmp/a", "s3": {"key": "k"}}],
    "problems": [],
    "exitCodes": {"main": 0},
}


def test_a_pod_without_our_node_annotation_is_ignored() -> None:
    assert pod_outcome({"metadata": {"name": "x"}, "status": {"phase": "Running"}}) is None


def test_pending_and_running_pods_report_where_they_are() -> None:
    pending = pod_outcome(pod("Pending", container_status("main")))
    running = pod_outcome(pod("Running", container_status("main", running=True)))
    assert pending is not None and pending.phase == "Pending"
    assert running is not None and (running.phase, running.host_node_name, running.pod_ip) == (
        "Running",
        "node-a",
        "10.0.0.7",
    )


def test_a_succeeded_pod_carries_the_outputs_the_wait_container_reported() -> None:
    done = pod_outcome(
        pod("Succeeded", container_status("main", exit_code=0), container_status("wait", exit_code=0)),
        outputs=OUTPUTS,
    )
    assert done is not None
    assert (done.phase, done.exit_code, done.result) == ("Succeeded", 0, "hello")
    assert done.parameters == (("p", "1"),)
    assert done.artifacts[0]["s3"] == {"key": "k"}


def test_a_non_zero_exit_is_failed_with_the_exit_code_in_the_message() -> None:
    failed = pod_outcome(
        pod("Failed", container_status("main", exit_code=3), container_status("wait", exit_code=0)),
        outputs={**OUTPUTS, "exitCodes": {"main": 3}},
    )
    assert failed is not None
    assert (failed.phase, failed.message, failed.exit_code) == ("Failed", "Error (exit code 3)", 3)


def test_an_out_of_memory_kill_is_an_error_naming_oomkilled() -> None:
    killed = pod_outcome(
        pod("Failed", container_status("main", exit_code=137, reason="OOMKilled"), container_status("wait"))
    )
    assert killed is not None
    assert killed.phase == "Error" and killed.message.startswith("OOMKilled")


def test_an_out_of_memory_kill_ends_the_node_while_the_other_containers_still_run() -> None:
    killed = pod_outcome(
        pod(
            "Running",
            container_status("main", exit_code=137, reason="OOMKilled"),
            container_status("wait", running=True),
        )
    )
    assert killed is not None
    assert (killed.phase, killed.message) == ("Error", "OOMKilled (exit code 137)")


def test_a_main_container_that_could_not_start_ends_the_node_while_wait_still_runs() -> None:
    broken = pod_outcome(
        pod(
            "Running",
            container_status(
                "main",
                exit_code=128,
                reason="StartError",
                message="exec: permission denied",
            ),
            container_status("wait", running=True),
        )
    )
    assert broken is not None
    assert (broken.phase, broken.message) == (
        "Error",
        "container main: StartError: exec: permission denied",
    )


def test_a_pod_stopped_through_its_deadline_keeps_mains_outputs_and_says_why() -> None:
    stopped = pod(
        "Failed",
        container_status("main", exit_code=143),
        container_status("wait", exit_code=0),
        reason="DeadlineExceeded",
    )
    stopped["metadata"]["annotations"][ANNOTATION_STOP_MESSAGE] = "Stopped with strategy 'Stop'"
    outputs = {**OUTPUTS, "exitCodes": {"main": 143}, "problems": [STOPPED_PROBLEM]}
    done = pod_outcome(stopped, outputs=outputs)
    assert done is not None
    assert (done.phase, done.message, done.exit_code, done.result) == (
        "Failed",
        "Stopped with strategy 'Stop'",
        143,
        "hello",
    )


def test_an_evicted_pod_is_an_error_with_the_kubelet_reason() -> None:
    evicted = pod_outcome(pod("Failed", reason="Evicted", message="The node was low on resource: memory."))
    assert evicted is not None
    assert (evicted.phase, evicted.message) == ("Error", "Evicted: The node was low on resource: memory.")


def test_an_image_that_cannot_be_pulled_is_an_error_while_the_pod_is_still_pending() -> None:
    stuck = pod_outcome(
        pod(
            "Pending",
            container_status("main", reason="ImagePullBackOff", message='Back-off pulling image "nope"'),
        )
    )
    assert stuck is not None
    assert stuck.phase == "Error" and "ImagePullBackOff" in stuck.message and "nope" in stuck.message


def test_a_deleted_running_pod_is_an_error_and_a_finished_one_keeps_its_phase() -> None:
    gone = pod_outcome(pod("Running", container_status("main", running=True)), deleted=True)
    assert gone is not None and (gone.phase, gone.message) == ("Error", DELETED_MESSAGE)
    finished = pod_outcome(
        pod("Succeeded", container_status("main", exit_code=0), container_status("wait", exit_code=0)),
        outputs=OUTPUTS,
        deleted=True,
    )
    assert finished is not None and finished.phase == "Succeeded"


def test_the_pod_deadline_is_the_step_deadline() -> None:
    late = pod_outcome(pod("Failed", container_status("main", exit_code=137), reason="DeadlineExceeded"))
    assert late is not None and (late.phase, late.message) == ("Failed", DEADLINE_MESSAGE)


def test_a_failed_init_container_is_an_error_with_its_last_message_line() -> None:
    init = container_status("init", exit_code=1, message="fetching input 'data'\nno such key: x")
    failed = pod_outcome(pod("Failed", container_status("main"), inits=(init,)))
    assert failed is not None
    assert failed.phase == "Error"
    assert failed.message == "init container init failed with exit code 1: no such key: x"


def test_output_problems_turn_a_succeeded_pod_into_an_error() -> None:
    problems = {**OUTPUTS, "problems": ["output parameter 'p': /tmp/p: no such file or directory"]}
    errored = pod_outcome(
        pod("Succeeded", container_status("main", exit_code=0), container_status("wait", exit_code=0)),
        outputs=problems,
    )
    assert errored is not None
    assert (errored.phase, errored.message) == ("Error", problems["problems"][0])


def test_outputs_that_could_not_be_read_make_a_succeeded_pod_an_error() -> None:
    errored = pod_outcome(
        pod("Succeeded", container_status("main", exit_code=0), container_status("wait", exit_code=0)),
        outputs_error="could not read the step's outputs: 500",
    )
    assert errored is not None and errored.phase == "Error" and "500" in errored.message


def test_container_set_containers_get_their_own_outcomes() -> None:
    pod_body = pod(
        "Failed",
        container_status("a", exit_code=0),
        container_status("b", exit_code=2),
        container_status("wait", exit_code=0),
    )
    outcome = pod_outcome(
        pod_body, outputs={**OUTPUTS, "exitCodes": {"a": 0, "b": 2}}, container_set=("a", "b")
    )
    assert outcome is not None
    assert [(c.name, c.phase, c.exit_code) for c in outcome.containers] == [
        ("a", "Succeeded", 0),
        ("b", "Failed", 2),
    ]
    assert outcome.phase == "Failed"
