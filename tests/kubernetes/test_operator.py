"""``sluice operator`` end to end: kopf and the official client against the tests' API server, every pod
run for real by the test kubelet, artifacts in moto's S3."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.cluster import FINISHED, Cluster, nodes_by_name

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def workflow(templates: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "t-"},
        "spec": {"entrypoint": templates[0]["name"], "templates": templates, **spec},
    }


def sh(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "container": {"image": "busybox", "command": ["sh", "-c", script]}, **extra}


def test_a_dag_passes_parameters_and_an_output_artifact_through_s3(cluster: Cluster) -> None:
    status = cluster.run(EXAMPLES / "artifacts-passing.yaml")
    assert status["phase"] == "Succeeded", status.get("message")
    nodes = nodes_by_name(status)
    build = nodes["build"]["outputs"]["artifacts"]
    assert {a["name"] for a in build} == {"report", "site"}
    assert all("s3" in a for a in build)
    keys = cluster.s3.keys()
    assert any(k.endswith("report") or "report" in k for k in keys), keys
    assert nodes["check"]["outputs"]["result"] == (
        "pages=about.html,index.html | report=build ok: 2 pages | style=compact"
    )


def test_dag_parameters_and_results_flow_between_tasks(cluster: Cluster) -> None:
    manifest = workflow(
        [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {"name": "make", "template": "make"},
                        {
                            "name": "use",
                            "template": "use",
                            "dependencies": ["make"],
                            "arguments": {
                                "parameters": [
                                    {"name": "word", "value": "{{tasks.make.outputs.parameters.word}}"},
                                    {"name": "said", "value": "{{tasks.make.outputs.result}}"},
                                ]
                            },
                        },
                    ]
                },
            },
            sh(
                "make",
                "echo -n sluice > /tmp/word; echo made",
                outputs={"parameters": [{"name": "word", "valueFrom": {"path": "/tmp/word"}}]},
            ),
            {
                "name": "use",
                "inputs": {"parameters": [{"name": "word"}, {"name": "said"}]},
                "container": {
                    "image": "busybox",
                    "command": ["echo", "{{inputs.parameters.word}}-{{inputs.parameters.said}}"],
                },
            },
        ]
    )
    status = cluster.run(manifest)
    assert status["phase"] == "Succeeded", status.get("message")
    nodes = nodes_by_name(status)
    assert nodes["make"]["outputs"]["parameters"] == [{"name": "word", "value": "sluice"}]
    assert nodes["use"]["outputs"]["result"] == "sluice-made"


def test_a_failed_pod_is_retried_in_a_new_pod(cluster: Cluster) -> None:
    manifest = workflow(
        [
            {"name": "main", "steps": [[{"name": "flaky", "template": "flaky"}]]},
            sh("flaky", "test {{retries}} -ge 1", retryStrategy={"limit": 2}),
        ]
    )
    status = cluster.run(manifest)
    assert status["phase"] == "Succeeded", status.get("message")
    attempts = [n for n in status["nodes"].values() if n["type"] == "Pod"]
    assert sorted(n["phase"] for n in attempts) == ["Failed", "Succeeded"]
    failed = next(n for n in attempts if n["phase"] == "Failed")
    assert failed["message"] == "Error (exit code 1)"
    names = [p["metadata"]["name"] for p in cluster.pods()]
    assert len(names) == len(set(names)) == 2


def test_with_items_fans_out_one_pod_per_item(cluster: Cluster) -> None:
    manifest = workflow(
        [
            {
                "name": "main",
                "steps": [
                    [
                        {
                            "name": "each",
                            "template": "echo",
                            "arguments": {"parameters": [{"name": "x", "value": "{{item}}"}]},
                            "withItems": ["a", "b", "c", "d", "e"],
                        }
                    ]
                ],
            },
            {
                "name": "echo",
                "inputs": {"parameters": [{"name": "x"}]},
                "container": {"image": "busybox", "command": ["echo", "item-{{inputs.parameters.x}}"]},
            },
        ]
    )
    status = cluster.run(manifest)
    assert status["phase"] == "Succeeded", status.get("message")
    results = sorted(n["outputs"]["result"] for n in status["nodes"].values() if n["type"] == "Pod")
    assert results == [f"item-{x}" for x in "abcde"]
    assert len(cluster.kubelet.started) == 5


def test_an_exit_handler_runs_after_a_failure_and_sees_the_status(cluster: Cluster) -> None:
    manifest = workflow(
        [
            sh("main", "exit 2"),
            sh("cleanup", "echo status={{workflow.status}}"),
        ],
        onExit="cleanup",
    )
    status = cluster.run(manifest)
    assert status["phase"] == "Failed"
    nodes = nodes_by_name(status)
    handler = next(n for name, n in nodes.items() if name.endswith(".onExit"))
    assert handler["phase"] == "Succeeded"
    assert handler["outputs"]["result"] == "status=Failed"


def _running_pod(cluster: Cluster) -> str:
    def running() -> str | None:
        for pod in cluster.pods():
            if (pod.get("status") or {}).get("phase") == "Running":
                return str(pod["metadata"]["name"])
        return None

    name: str = cluster.wait_until("a running pod", running)
    return name


@pytest.mark.parametrize("strategy", ["Stop", "Terminate"])
def test_stop_and_terminate_end_a_running_workflow(cluster: Cluster, strategy: str) -> None:
    manifest = workflow(
        [
            {"name": "main", "steps": [[{"name": "long", "template": "long"}]]},
            sh("long", "echo copied 3 rows; sleep 60"),
            sh("bye", "echo bye"),
        ],
        onExit="bye",
    )
    name = cluster.submit(manifest)
    pod = _running_pod(cluster)
    started = time.monotonic()
    cluster.patch_spec(name, {"shutdown": strategy})
    status = cluster.wait_finished(name, timeout=30)
    assert time.monotonic() - started < 20
    assert status["phase"] == "Failed"
    nodes = nodes_by_name(status)
    long = nodes["long"]
    assert (long["phase"], long["message"]) == ("Failed", f"Stopped with strategy '{strategy}'")
    # Stopped through its deadline, not deleted: the step's output so far and exit code are kept.
    assert long["outputs"]["result"] == "copied 3 rows"
    assert long["outputs"]["exitCode"] == str(128 + signal.SIGTERM)
    stopped = cluster.api.request("GET", f"/api/v1/namespaces/default/pods/{pod}")
    assert (stopped["status"]["phase"], stopped["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    exit_ran = any(n.endswith(".onExit") and v["phase"] == "Succeeded" for n, v in nodes.items())
    assert exit_ran == (strategy == "Stop")


def test_a_deleted_pod_is_an_error(cluster: Cluster) -> None:
    name = cluster.submit(workflow([sh("main", "sleep 60")]))
    pod = _running_pod(cluster)
    cluster.api.request("DELETE", f"/api/v1/namespaces/default/pods/{pod}")
    status = cluster.wait_finished(name, timeout=30)
    assert status["phase"] == "Error"
    assert nodes_by_name(status)[name]["message"] == "pod deleted"


def test_active_deadline_seconds_kills_the_pods_and_fails_the_workflow(cluster: Cluster) -> None:
    started = time.monotonic()
    status = cluster.run(workflow([sh("main", "sleep 60")], activeDeadlineSeconds=2), timeout=30)
    assert status["phase"] == "Failed"
    assert time.monotonic() - started < 20
    assert not any((p.get("status") or {}).get("phase") == "Running" for p in cluster.pods())


@pytest.mark.parametrize(
    ("how", "expected"),
    [("OOMKilled", "OOMKilled"), ("Evicted", "Evicted"), ("ImagePullBackOff", "ImagePullBackOff")],
)
def test_pod_failures_the_step_cannot_help_are_errors_with_the_reason(
    cluster: Cluster, how: str, expected: str
) -> None:
    cluster.kubelet.fail_next("", how)  # type: ignore[arg-type]
    status = cluster.run(workflow([sh("main", "sleep 5")]), timeout=30)
    assert status["phase"] == "Error"
    node = next(n for n in status["nodes"].values() if n["type"] == "Pod")
    assert node["phase"] == "Error" and expected in node["message"]


def test_pod_gc_on_success_deletes_finished_pods(cluster: Cluster) -> None:
    manifest = workflow(
        [
            {"name": "main", "steps": [[{"name": "a", "template": "ok"}, {"name": "b", "template": "ok"}]]},
            sh("ok", "true"),
        ],
        podGC={"strategy": "OnPodSuccess"},
    )
    status = cluster.run(manifest)
    assert status["phase"] == "Succeeded"
    cluster.wait_until("the pods to be deleted", lambda: cluster.pods() == [], timeout=15)
    assert len(cluster.kubelet.started) == 2


def test_a_cron_workflow_fires_a_run_it_missed_while_the_operator_was_away(cluster: Cluster) -> None:
    cron = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "every-minute", "namespace": "default"},
        "spec": {
            "schedule": "* * * * *",
            "startingDeadlineSeconds": 600,
            "workflowSpec": {"entrypoint": "main", "templates": [sh("main", "echo tick")]},
        },
    }
    path = "/apis/sluice.dev/v1alpha1/namespaces/default/cronworkflows"
    # The operator is away while the cron workflow is created and its status says the last run it
    # knows of was five minutes ago (a running operator would record its own first look instead).
    cluster.operator.stop()
    cluster.api.create(path, cron)
    last = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 300))
    cluster.api.request(
        "PATCH",
        f"{path}/every-minute/status",
        {"status": {"lastScheduledTime": last}},
        content_type="application/merge-patch+json",
    )
    cluster.operator.start()
    # The run due since then was missed and starts now, not at the next minute.

    def child() -> dict[str, Any] | None:
        items = cluster.api.request("GET", "/apis/sluice.dev/v1alpha1/namespaces/default/workflows")["items"]
        return items[0] if items else None

    made = cluster.wait_until("the cron workflow to start a run", child, timeout=30)
    assert made["metadata"]["labels"]["workflows.argoproj.io/cron-workflow"] == "every-minute"
    assert made["metadata"]["ownerReferences"][0]["kind"] == "CronWorkflow"
    status = cluster.wait_finished(made["metadata"]["name"])
    assert status["phase"] == "Succeeded"


def test_an_operator_killed_mid_workflow_continues_without_running_a_step_twice(cluster: Cluster) -> None:
    manifest = workflow(
        [
            {
                "name": "main",
                "steps": [
                    [{"name": "first", "template": "ok"}],
                    [{"name": "held", "template": "ok"}, {"name": "side", "template": "ok"}],
                    [{"name": "last", "template": "ok"}],
                ],
            },
            sh("ok", "echo {{pod.name}}"),
        ]
    )
    cluster.kubelet.fail_next("-ok-", "hold")  # the first pod waits until released
    name = cluster.submit(manifest)
    cluster.wait_until("the first pod to be held", lambda: cluster.kubelet.held, timeout=30)
    cluster.operator.kill()
    cluster.kubelet.release()
    time.sleep(1)  # the pod finishes while no operator watches
    cluster.operator.start()
    status = cluster.wait_finished(name)
    assert status["phase"] == "Succeeded", status.get("message")
    started = cluster.kubelet.started
    assert len(started) == len(set(started)) == 4, started
    pods = [n for n in status["nodes"].values() if n["type"] == "Pod"]
    assert len(pods) == 4 and all(n["phase"] == "Succeeded" for n in pods)


def test_the_operator_reports_its_work_on_metrics(cluster: Cluster) -> None:
    status = cluster.run(workflow([sh("main", "true")]))
    assert status["phase"] in FINISHED
    text = cluster.operator.metrics()
    assert 'sluice_workflows{phase="Succeeded"} 1' in text
    assert "sluice_pods_created_total 1" in text
    assert "sluice_reconcile_duration_seconds_count" in text
    assert 'sluice_api_requests_total{method="POST"}' in text


def test_an_invalid_workflow_ends_in_error_naming_the_field(cluster: Cluster) -> None:
    bad = workflow([{"name": "main", "steps": [[{"name": "x", "template": "missing"}]]}])
    status = cluster.run(bad, timeout=20)
    assert status["phase"] == "Error"
    assert "missing" in status["message"]
    assert cluster.pods() == []


def test_example_manifests_parse_for_the_cluster() -> None:
    # Guards the test data itself: every example is a Workflow of our API group.
    for path in sorted(EXAMPLES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == "sluice.dev/v1alpha1", path


def sluice_kube(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        str(Path(sys.executable).parent / "sluice"),
        "--kube",
        "--kubeconfig",
        str(cluster.api.kubeconfig),
    ]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, check=False)


def test_a_suspended_step_waits_for_resume_from_the_cli(cluster: Cluster) -> None:
    manifest = workflow(
        [
            {
                "name": "main",
                "steps": [
                    [{"name": "approve", "template": "approve"}],
                    [{"name": "after", "template": "after"}],
                ],
            },
            {"name": "approve", "suspend": {}},
            sh("after", "echo approved"),
        ]
    )
    name = cluster.submit(manifest)
    cluster.wait_until(
        "the suspend node to be running",
        lambda: nodes_by_name(cluster.status(name)).get("approve", {}).get("phase") == "Running",
    )
    time.sleep(1)
    assert cluster.kubelet.started == []
    resumed = sluice_kube(cluster, "resume", name)
    assert resumed.returncode == 0, resumed.stderr
    status = cluster.wait_finished(name)
    assert status["phase"] == "Succeeded", status.get("message")
    assert nodes_by_name(status)["after"]["outputs"]["result"] == "approved"
    annotations = cluster.workflow(name)["metadata"].get("annotations") or {}
    assert "workflows.sluice.dev/resume" not in annotations


def test_retry_from_the_cli_reruns_only_what_failed(cluster: Cluster) -> None:
    manifest = workflow(
        [
            {
                "name": "main",
                "steps": [[{"name": "good", "template": "good"}], [{"name": "flaky", "template": "flaky"}]],
            },
            sh("good", "echo once"),
            # Fails until the file a first attempt leaves behind in the shared claim is there.
            {
                "name": "flaky",
                "container": {
                    "image": "busybox",
                    "command": [
                        "sh",
                        "-c",
                        "test -e /work/seen && echo fixed || { touch /work/seen; exit 1; }",
                    ],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                },
            },
        ],
        volumeClaimTemplates=[
            {
                "metadata": {"name": "work"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
            }
        ],
    )
    name = cluster.submit(manifest)
    first = cluster.wait_finished(name)
    assert first["phase"] == "Failed"
    retried = sluice_kube(cluster, "retry", name)
    assert retried.returncode == 0, retried.stderr

    def second_run() -> dict[str, Any] | None:
        status = cluster.status(name)
        flaky = nodes_by_name(status).get("flaky", {})
        return status if status.get("phase") in FINISHED and flaky.get("phase") == "Succeeded" else None

    status = cluster.wait_until("the retried workflow to succeed", second_run)
    assert status["phase"] == "Succeeded"
    assert nodes_by_name(status)["flaky"]["outputs"]["result"] == "fixed"
    # The step that had succeeded kept its node and did not run again.
    assert sum(1 for p in cluster.kubelet.started if "-good-" in p) == 1
