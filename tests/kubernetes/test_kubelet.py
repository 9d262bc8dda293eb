"""The tests' kubelet (``tests/kubernetes/kubelet.py``): hand-written pods created in the test API server
run as real processes under bubblewrap, and report back as a node would."""

from __future__ import annotations

import base64
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.kubernetes.pods import VAR_DIR, WRAPPER, PodSettings, build_pod
from tests.kubernetes.apiserver import ApiServer
from tests.kubernetes.kubelet import (
    DEADLINE_MESSAGE,
    EVICTED_MESSAGE,
    TestKubelet,
    kubelet_unavailable_reason,
    pod_phase_is,
    wait_for_pod,
)
from tests.kubernetes.test_sluice_run import wrapper
from tests.workflows.sim import simulate

__all__ = ["wrapper"]  # the compiled sluice-run, a fixture

NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
ENDED = pod_phase_is("Succeeded", "Failed")


def create_pod(api: ApiServer, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return api.create(PODS, {"metadata": {"name": name, **metadata}, "spec": spec})


def box(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container that runs ``script`` with the host's sh."""
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def ended(api: ApiServer, name: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for_pod(api, NS, name, ENDED, timeout=timeout, what="Succeeded or Failed")


def states(pod: dict[str, Any], key: str = "containerStatuses") -> dict[str, dict[str, Any]]:
    return {s["name"]: s["state"] for s in pod["status"].get(key) or ()}


def log(api: ApiServer, pod: str, container: str) -> str:
    text: str = api.request("GET", f"{PODS}/{pod}/log?container={container}")
    return text


def running(name: str) -> Any:
    """Running, with ``name``'s container in its running state."""
    return lambda pod: pod_phase_is("Running")(pod) and "running" in states(pod).get(name, {})


def processes_with(token: str) -> list[int]:
    """PIDs whose command line mentions ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline:
                found.append(int(entry))
    return found


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


def read_with_official_client(api: ApiServer, name: str) -> Any:
    """The pod as the official client's models read it: they reject incomplete statuses."""
    from kubernetes import client

    return client.CoreV1Api(api.kubernetes_client()).read_namespaced_pod(name, NS)


# ------------------------------------------------------------------------------------------ running


def test_a_file_main_writes_into_an_empty_dir_is_read_by_a_second_container(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    mount = [{"name": "work", "mountPath": "/work"}]
    create_pod(
        api_server,
        "share",
        {
            "volumes": [{"name": "work", "emptyDir": {}}],
            "containers": [
                box(
                    "main",
                    "echo out; echo err >&2; echo from-main > /work/msg.tmp; mv /work/msg.tmp /work/msg",
                    volumeMounts=mount,
                ),
                box(
                    "reader",
                    "while [ ! -e /data/msg ]; do sleep 0.05; done; cat /data/msg",
                    volumeMounts=[{"name": "work", "mountPath": "/data"}],
                ),
            ],
        },
    )
    pod = ended(api_server, "share")
    status = pod["status"]
    assert status["phase"] == "Succeeded"
    assert status["podIP"] == status["hostIP"] == "127.0.0.1"
    assert status["startTime"].endswith("Z")
    for name, state in states(pod).items():
        term = state["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed"), name
        assert term["startedAt"] <= term["finishedAt"]
    assert log(api_server, "share", "main") == "out\nerr\n"
    assert log(api_server, "share", "reader") == "from-main\n"
    assert read_with_official_client(api_server, "share").status.phase == "Succeeded"
    assert kubelet.started == ["share"]


def test_a_container_sees_its_own_tmp_and_the_hosts_tools(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    create_pod(
        api_server,
        "tmp",
        {
            "containers": [
                box(
                    "a",
                    "echo a > /tmp/mine && cat /tmp/mine && command -v sluice >/dev/null && echo has-sluice",
                ),
                box("b", "sleep 0.2; test -e /tmp/mine || echo private"),
            ]
        },
    )
    assert ended(api_server, "tmp")["status"]["phase"] == "Succeeded"
    assert log(api_server, "tmp", "a") == "a\nhas-sluice\n"
    assert log(api_server, "tmp", "b") == "private\n"


def test_env_comes_from_the_downward_api_config_maps_and_secrets(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    api_server.create(
        f"/api/v1/namespaces/{NS}/configmaps",
        {"metadata": {"name": "cm"}, "data": {"color": "blue", "size": "3"}},
    )
    secret = base64.b64encode(b"s3cr3t").decode()
    api_server.create(
        f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": "sec"}, "data": {"token": secret}}
    )
    kubelet.extra_env.update(FROM_NODE="node", OVERRIDDEN="node")
    env = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "ABSENT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}}},
        {"name": "GREETING", "value": "hi $(POD) $$(POD) $(UNDEFINED)"},
        {"name": "OVERRIDDEN", "value": "pod"},
    ]
    created = create_pod(
        api_server,
        "envy",
        {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sh", "-c", 'env; echo "arg=$1"', "sh"],
                    "args": ["$(COLOR)"],
                    "env": env,
                    "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                }
            ]
        },
        labels={"app": "demo"},
        annotations={"note": "n1"},
    )
    assert ended(api_server, "envy")["status"]["phase"] == "Succeeded"
    lines = log(api_server, "envy", "main").splitlines()
    seen = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("arg="))
    assert {k: seen.get(k) for k in ("POD", "POD_NS", "APP", "NOTE", "IP", "COLOR", "TOKEN")} == {
        "POD": "envy",
        "POD_NS": NS,
        "APP": "demo",
        "NOTE": "n1",
        "IP": "127.0.0.1",
        "COLOR": "blue",
        "TOKEN": "s3cr3t",
    }
    assert seen["POD_UID"] == created["metadata"]["uid"]
    assert seen["GREETING"] == "hi envy $(POD) $(UNDEFINED)"
    assert (seen["CM_color"], seen["CM_size"]) == ("blue", "3")
    assert (seen["FROM_NODE"], seen["OVERRIDDEN"], seen["HOSTNAME"]) == ("node", "pod", "envy")
    assert seen["PATH"].endswith(":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    assert "ABSENT" not in seen
    assert "arg=blue" in lines


def test_a_container_waits_for_a_missing_config_map_and_starts_once_it_exists(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    ref = {"configMapKeyRef": {"name": "late", "key": "k"}}
    create_pod(
        api_server,
        "patient",
        {"containers": [box("main", 'echo "$V"', env=[{"name": "V", "valueFrom": ref}])]},
    )
    pod = wait_for_pod(
        api_server,
        NS,
        "patient",
        lambda p: states(p).get("main", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError",
        what="main waiting for its config map",
    )
    assert pod["status"]["phase"] == "Pending"
    assert 'configmap "late" not found' in states(pod)["main"]["waiting"]["message"]
    api_server.create(
        f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "late"}, "data": {"k": "arrived"}}
    )
    assert ended(api_server, "patient")["status"]["phase"] == "Succeeded"
    assert log(api_server, "patient", "main") == "arrived\n"


def test_sub_path_read_only_config_map_and_secret_mounts(api_server: ApiServer, kubelet: TestKubelet) -> None:
    api_server.create(
        f"/api/v1/namespaces/{NS}/configmaps",
        {"metadata": {"name": "conf"}, "data": {"app.conf": "level=debug\n", "other": "x"}},
    )
    token = base64.b64encode(b"t0k3n").decode()
    api_server.create(
        f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": "creds"}, "data": {"token": token}}
    )
    # Outside /tmp on purpose: the mount points are created on the host and must go when the kubelet stops.
    top = f"/run/sluice-kubelet-test-{uuid.uuid4().hex[:8]}"
    script = (
        f"echo deep > {top}/nested/f && cat {top}/data/nested/dir/f"
        f" && if {{ echo y > {top}/ro/g; }} 2>/dev/null; then echo WROTE; else echo read-only; fi"
        f" && cat /tmp/cfg/conf/app.conf && ls /tmp/cfg && cat {top}/secret/token"
    )
    create_pod(
        api_server,
        "mounts",
        {
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {
                    "name": "cfg",
                    "configMap": {"name": "conf", "items": [{"key": "app.conf", "path": "conf/app.conf"}]},
                },
                {"name": "sec", "secret": {"secretName": "creds"}},
            ],
            "containers": [
                box(
                    "main",
                    script,
                    volumeMounts=[
                        {"name": "data", "mountPath": f"{top}/data"},
                        {"name": "data", "mountPath": f"{top}/nested", "subPath": "nested/dir"},
                        {"name": "data", "mountPath": f"{top}/ro", "readOnly": True},
                        {"name": "cfg", "mountPath": "/tmp/cfg"},
                        {"name": "sec", "mountPath": f"{top}/secret", "readOnly": True},
                    ],
                )
            ],
        },
    )
    pod = ended(api_server, "mounts")
    assert log(api_server, "mounts", "main") == "deep\nread-only\nlevel=debug\nconf\nt0k3n"
    assert pod["status"]["phase"] == "Succeeded"
    assert Path(top).exists(), "the mount point exists while the kubelet runs"
    kubelet.stop()
    assert not Path(top).exists(), "the kubelet removes the mount points it created on the host"


def test_a_claim_is_shared_by_the_pods_that_mount_it(api_server: ApiServer, kubelet: TestKubelet) -> None:
    claim = {"name": "c", "persistentVolumeClaim": {"claimName": "results"}}
    mount = [{"name": "c", "mountPath": "/tmp/claim"}]
    create_pod(
        api_server,
        "producer",
        {"volumes": [claim], "containers": [box("main", "echo kept > /tmp/claim/x", volumeMounts=mount)]},
    )
    assert ended(api_server, "producer")["status"]["phase"] == "Succeeded"
    create_pod(
        api_server,
        "consumer",
        {"volumes": [claim], "containers": [box("main", "cat /tmp/claim/x", volumeMounts=mount)]},
    )
    assert ended(api_server, "consumer")["status"]["phase"] == "Succeeded"
    assert log(api_server, "consumer", "main") == "kept\n"
    assert kubelet.started == ["producer", "consumer"]


def test_a_container_without_command_runs_its_images_entrypoint_or_fails_to_start(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    create_pod(
        api_server,
        "images",
        {
            "containers": [
                {"name": "main", "image": "docker/whalesay", "args": ["moo"]},
                {"name": "mystery", "image": "example.com/mystery:1", "args": ["go"]},
            ]
        },
    )
    pod = ended(api_server, "images")
    assert pod["status"]["phase"] == "Failed"
    assert "< moo >" in log(api_server, "images", "main")
    term = states(pod)["mystery"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")
    assert "example.com/mystery:1" in term["message"]


def test_a_program_that_does_not_exist_fails_to_start(api_server: ApiServer, kubelet: TestKubelet) -> None:
    create_pod(
        api_server,
        "missing",
        {"containers": [{"name": "main", "image": "busybox", "command": ["no-such-program-x"]}]},
    )
    term = states(ended(api_server, "missing"))["main"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")
    assert term["message"] == 'exec: "no-such-program-x": executable file not found in $PATH'


def test_pods_from_before_the_start_and_across_watch_streams_each_run_once(
    api_server: ApiServer, tmp_path: Path
) -> None:
    reason = kubelet_unavailable_reason()
    if reason:
        print(reason)
        pytest.skip(reason)
    create_pod(api_server, "early", {"containers": [box("main", "true")]})
    # One-second watch streams: the later pods arrive on streams resumed from a resourceVersion.
    with TestKubelet(api_server, tmp_path / "kubelet", watch_seconds=1) as node:
        ended(api_server, "early")
        for name in ("second", "third"):
            streams = node.watch_streams
            wait_until(lambda s=streams: node.watch_streams > s, 10, "a new watch stream")
            create_pod(api_server, name, {"containers": [box("main", "true")]})
            assert ended(api_server, name)["status"]["phase"] == "Succeeded"
        assert node.started == ["early", "second", "third"]
        assert node.errors == []


# ------------------------------------------------------------------------------------------ failing


def test_a_failing_init_container_fails_the_pod_before_anything_else_starts(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    create_pod(
        api_server,
        "bad-init",
        {
            "initContainers": [box("first", "echo boom; exit 3"), box("second", "true")],
            "containers": [box("main", "echo should not run")],
        },
    )
    pod = ended(api_server, "bad-init")
    assert pod["status"]["phase"] == "Failed"
    inits = states(pod, "initContainerStatuses")
    assert (inits["first"]["terminated"]["exitCode"], inits["first"]["terminated"]["reason"]) == (3, "Error")
    assert "waiting" in inits["second"]
    assert "waiting" in states(pod)["main"]
    assert log(api_server, "bad-init", "first") == "boom\n"
    assert log(api_server, "bad-init", "main") == ""


def test_init_containers_run_in_order_before_the_containers(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    mount = [{"name": "w", "mountPath": "/tmp/w"}]
    create_pod(
        api_server,
        "ordered",
        {
            "volumes": [{"name": "w", "emptyDir": {}}],
            "initContainers": [
                box("one", "echo one >> /tmp/w/order", volumeMounts=mount),
                box("two", "echo two >> /tmp/w/order", volumeMounts=mount),
            ],
            "containers": [box("main", "cat /tmp/w/order", volumeMounts=mount)],
        },
    )
    pod = ended(api_server, "ordered")
    assert pod["status"]["phase"] == "Succeeded"
    assert log(api_server, "ordered", "main") == "one\ntwo\n"
    inits = states(pod, "initContainerStatuses")
    assert inits["one"]["terminated"]["reason"] == inits["two"]["terminated"]["reason"] == "Completed"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Initialized"] == "True"


def test_a_non_zero_exit_fails_the_pod_with_that_exit_code(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    create_pod(api_server, "exit7", {"containers": [box("main", "exit 7"), box("other", "true")]})
    pod = ended(api_server, "exit7")
    assert pod["status"]["phase"] == "Failed"
    assert (states(pod)["main"]["terminated"]["exitCode"], states(pod)["main"]["terminated"]["reason"]) == (
        7,
        "Error",
    )
    assert states(pod)["other"]["terminated"]["reason"] == "Completed"


def all_terminated(pod: dict[str, Any]) -> bool:
    return bool(ENDED(pod)) and all("terminated" in state for state in states(pod).values())


def test_a_pod_past_its_active_deadline_fails_at_once_and_is_stopped_gracefully(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    create_pod(
        api_server,
        "slow",
        {
            "activeDeadlineSeconds": 2,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                box("main", "trap 'echo stopping; exit 3' TERM; sleep 60 & wait"),
                box("stubborn", "trap '' TERM; while true; do sleep 0.1; done"),
            ],
        },
    )
    pod = wait_for_pod(api_server, NS, "slow", running("main"), what="Running")
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    started = time.monotonic()
    # As a kubelet, the pod is Failed as soon as its deadline passes; its containers end after.
    failed = wait_for_pod(api_server, NS, "slow", ENDED, timeout=20, what="Failed")
    status = failed["status"]
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed",
        "DeadlineExceeded",
        DEADLINE_MESSAGE,
    )
    pod = wait_for_pod(api_server, NS, "slow", all_terminated, timeout=20, what="every container ended")
    assert time.monotonic() - started < 15
    main, stubborn = states(pod)["main"]["terminated"], states(pod)["stubborn"]["terminated"]
    assert (main["exitCode"], main["reason"]) == (3, "Error")
    assert stubborn["exitCode"] == 137
    assert log(api_server, "slow", "main") == "stopping\n"
    assert read_with_official_client(api_server, "slow").status.reason == "DeadlineExceeded"


def test_lowering_a_running_pods_active_deadline_stops_it(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    create_pod(api_server, "cut", {"containers": [box("main", "sleep 60")]})
    wait_for_pod(api_server, NS, "cut", running("main"), what="Running")
    started = time.monotonic()
    api_server.request(
        "PATCH",
        f"{PODS}/cut",
        {"spec": {"activeDeadlineSeconds": 1}},
        content_type="application/merge-patch+json",
    )
    pod = wait_for_pod(api_server, NS, "cut", all_terminated, timeout=20, what="every container ended")
    assert time.monotonic() - started < 10
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert states(pod)["main"]["terminated"]["exitCode"] == 128 + signal.SIGTERM


def test_deleting_a_pod_kills_its_processes_quickly(api_server: ApiServer, kubelet: TestKubelet) -> None:
    token = f"delete-me-{uuid.uuid4().hex[:8]}"
    create_pod(api_server, "doomed", {"containers": [box("main", f"sleep 60; : {token}")]})
    wait_for_pod(api_server, NS, "doomed", running("main"), what="Running")
    wait_until(lambda: processes_with(token), 5, "the container's process showing up")
    started = time.monotonic()
    api_server.request("DELETE", f"{PODS}/doomed")
    wait_until(lambda: not processes_with(token), 5, "the deleted pod's processes ending")
    assert time.monotonic() - started < 5


def test_a_pod_being_deleted_gets_sigterm_then_sigkill_after_its_grace_period(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    # A finalizer keeps the pod (with its deletionTimestamp) readable after the delete request.
    create_pod(
        api_server,
        "graceful",
        {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                box("polite", "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done"),
                box("stubborn", "trap '' TERM; while true; do sleep 0.1; done"),
            ],
        },
        finalizers=["example.com/keep"],
    )
    wait_for_pod(api_server, NS, "graceful", lambda p: running("polite")(p) and running("stubborn")(p))
    api_server.request("DELETE", f"{PODS}/graceful")
    pod = ended(api_server, "graceful", timeout=15)
    assert pod["status"]["phase"] == "Failed"
    polite, stubborn = states(pod)["polite"]["terminated"], states(pod)["stubborn"]["terminated"]
    assert (polite["exitCode"], stubborn["exitCode"]) == (0, 137)
    assert log(api_server, "graceful", "polite") == "got TERM\n"
    api_server.request(
        "PATCH",
        f"{PODS}/graceful",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )


def test_stopping_the_kubelet_kills_every_process_it_started(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    token = f"outlive-{uuid.uuid4().hex[:8]}"
    create_pod(api_server, "lingering", {"containers": [box("main", f"sleep 60; : {token}")]})
    wait_for_pod(api_server, NS, "lingering", running("main"), what="Running")
    wait_until(lambda: processes_with(token), 5, "the container's process showing up")
    kubelet.stop()
    wait_until(lambda: not processes_with(token), 5, "the processes ending with the kubelet")


# ------------------------------------------------------------------------------------------ injected failures


def test_an_injected_oom_kill_ends_main_with_137_oom_killed(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    kubelet.fail_next("^oom-", "OOMKilled")
    create_pod(api_server, "oom-pod", {"containers": [box("main", "sleep 60"), box("other", "echo fine")]})
    pod = ended(api_server, "oom-pod")
    assert pod["status"]["phase"] == "Failed"
    main = states(pod)["main"]["terminated"]
    assert (main["exitCode"], main["reason"]) == (137, "OOMKilled")
    assert states(pod)["other"]["terminated"]["reason"] == "Completed"
    create_pod(api_server, "oom-again", {"containers": [box("main", "true")]})
    assert ended(api_server, "oom-again")["status"]["phase"] == "Succeeded", "only the next pod fails"


def test_an_injected_image_pull_back_off_keeps_the_pod_pending(
    api_server: ApiServer, kubelet: TestKubelet
) -> None:
    kubelet.fail_next("pull", "ImagePullBackOff")
    create_pod(
        api_server,
        "pull",
        {
            "initContainers": [box("init", "true")],
            "containers": [{**box("main", "true"), "image": "busybox:nope"}],
        },
    )
    pod = wait_for_pod(
        api_server,
        NS,
        "pull",
        lambda p: states(p).get("main", {}).get("waiting", {}).get("reason") == "ImagePullBackOff",
        what="main in ImagePullBackOff",
    )
    assert states(pod)["main"]["waiting"]["message"] == 'Back-off pulling image "busybox:nope"'
    assert states(pod, "initContainerStatuses")["init"]["terminated"]["exitCode"] == 0
    # A pod created later runs to its end while this one is still Pending.
    create_pod(api_server, "later", {"containers": [box("main", "true")]})
    ended(api_server, "later")
    assert api_server.request("GET", f"{PODS}/pull")["status"]["phase"] == "Pending"


def test_an_injected_eviction_fails_the_running_pod(api_server: ApiServer, kubelet: TestKubelet) -> None:
    kubelet.fail_next("evict", "Evicted")
    create_pod(api_server, "evict", {"containers": [box("main", "sleep 60")]})
    pod = ended(api_server, "evict")
    status = pod["status"]
    assert (status["phase"], status["reason"], status["message"]) == ("Failed", "Evicted", EVICTED_MESSAGE)
    assert states(pod)["main"]["terminated"]["exitCode"] == 137


def test_a_held_pod_stays_pending_until_released(api_server: ApiServer, kubelet: TestKubelet) -> None:
    kubelet.fail_next("^held", "hold")
    create_pod(api_server, "held", {"containers": [box("main", "echo ran")]})
    create_pod(api_server, "free", {"containers": [box("main", "true")]})
    ended(api_server, "free")
    wait_until(lambda: kubelet.held == ["held"], 5, "the kubelet holding the pod")
    pod = api_server.request("GET", f"{PODS}/held")
    assert pod["status"] == {"phase": "Pending"}, "nothing ran and nothing was reported"
    assert kubelet.release("held") == ["held"]
    assert ended(api_server, "held")["status"]["phase"] == "Succeeded"
    assert log(api_server, "held", "main") == "ran\n"
    create_pod(api_server, "held-again", {"containers": [box("main", "true")]})
    assert ended(api_server, "held-again")["status"]["phase"] == "Succeeded"
    assert kubelet.started == ["free", "held", "held-again"], "each pod ran once, the held one when released"


def test_an_unknown_failure_is_refused(kubelet: TestKubelet) -> None:
    with pytest.raises(ValueError, match="unknown failure"):
        kubelet.fail_next("x", "Exploded")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ step pods


def test_a_step_pod_runs_its_main_through_sluice_run(
    api_server: ApiServer, kubelet: TestKubelet, wrapper: Path
) -> None:
    manifest = """
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    container: {image: busybox, command: [sh, -c], args: ["echo hello; echo 42 > /tmp/answer"]}
    outputs:
      parameters:
      - {name: answer, valueFrom: {path: /tmp/answer}}
"""
    (step,) = simulate(manifest).started
    pod = build_pod(step, PodSettings(executor_image="sluicegate/sluice:test"), now=time.time())
    # Stand-ins for `sluice executor init|wait`: put sluice-run in place; wait for main and show what
    # sluice-run left in the shared directory.
    (init,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "init"]
    init["command"] = ["sh", "-c", f'mkdir -p {VAR_DIR}/bin && cp "$SLUICE_RUN_BINARY" {WRAPPER}']
    (wait,) = [c for c in pod["spec"]["containers"] if c["name"] == "wait"]
    wait["command"] = [
        "sh",
        "-c",
        f"while [ ! -e {VAR_DIR}/ctr/main/exitcode ]; do sleep 0.05; done;"
        f" cat {VAR_DIR}/ctr/main/exitcode; echo;"
        f" cat {VAR_DIR}/ctr/main/stdout {VAR_DIR}/outputs/parameters/answer",
    ]
    kubelet.share(wrapper)
    kubelet.extra_env["SLUICE_RUN_BINARY"] = str(wrapper)
    api_server.create(PODS, pod)
    name = step.pod_name
    done = ended(api_server, name)
    assert done["status"]["phase"] == "Succeeded", log(api_server, name, "main")
    assert states(done)["main"]["terminated"]["exitCode"] == 0
    assert log(api_server, name, "main") == "hello\n"
    assert log(api_server, name, "wait") == "0\nhello\n42\n"
    assert kubelet.started == [name]
