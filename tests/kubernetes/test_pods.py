"""Step pods: the core's StepRun for real manifests, turned into Pod manifests by the pod builder."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import ExecutorError
from engine.runtime.kubernetes.pods import (
    ANNOTATION_NODE_ID,
    LABEL_COMPLETED,
    LABEL_WORKFLOW,
    STEP_ENV,
    VAR_DIR,
    WRAPPER,
    PodSettings,
    build_pod,
    merge_pod_spec,
)
from engine.workflows.plan import StepRun
from tests.workflows.sim import simulate

SETTINGS = PodSettings(
    executor_image="sluicegate/sluice:test",
    executor_env=({"name": "SLUICE_S3_BUCKET", "value": "art"},),
    instance_id="blue",
)
NOW = 1_700_000_000.0


def steps_of(templates: str, *, entry: str = "main", spec: str = "") -> list[StepRun]:
    manifest = f"""
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {{name: wf}}
spec:
  entrypoint: {entry}
{spec}  templates:
{templates}"""
    return simulate(manifest).started


def one_pod(templates: str, **kw: Any) -> dict[str, Any]:
    (step,) = steps_of(templates, **kw)
    return build_pod(step, SETTINGS, now=NOW)


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


def step_doc(pod: dict[str, Any]) -> dict[str, Any]:
    wait = containers(pod)["wait"]
    (value,) = [e["value"] for e in wait["env"] if e["name"] == STEP_ENV]
    doc: dict[str, Any] = json.loads(value)
    return doc


HELLO = """
  - name: main
    container: {image: busybox, command: [echo], args: [hello]}
"""


def test_container_step_pod_is_named_labelled_and_owned_by_its_workflow() -> None:
    (step,) = steps_of(HELLO)
    pod = build_pod(step, SETTINGS, now=NOW)
    meta = pod["metadata"]
    assert meta["name"] == step.pod_name
    assert meta["labels"][LABEL_WORKFLOW] == "wf"
    assert meta["labels"][LABEL_COMPLETED] == "false"
    assert meta["labels"]["workflows.sluice.dev/controller-instanceid"] == "blue"
    assert meta["annotations"][ANNOTATION_NODE_ID] == step.node_id
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Workflow",
        "wf",
        "uid-1",
        True,
    )
    assert pod["spec"]["restartPolicy"] == "Never"
    assert build_pod(step, SETTINGS, now=NOW) == pod, "the same step must always give the same pod"


def test_main_runs_under_sluice_run_between_init_and_wait() -> None:
    pod = one_pod(HELLO)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["init"]
    assert list(containers(pod)) == ["main", "wait"]
    main = containers(pod)["main"]
    assert main["image"] == "busybox"
    assert main["command"] == [WRAPPER, "--name", "main", "--stdout", "--", "echo", "hello"]
    assert main["args"] == []
    assert {"name": "sluice-var", "mountPath": VAR_DIR} in main["volumeMounts"]
    env = {e["name"]: e for e in main["env"]}
    assert env["ARGO_CONTAINER_NAME"]["value"] == "main"
    assert env["ARGO_POD_UID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    wait = containers(pod)["wait"]
    assert wait["image"] == "sluicegate/sluice:test"
    assert wait["command"] == ["sh", "-c", "trap '' TERM; exec sluice executor wait"]
    assert {"name": "SLUICE_S3_BUCKET", "value": "art"} in wait["env"]
    assert pod["spec"]["volumes"][0] == {"name": "sluice-var", "emptyDir": {}}


def test_script_source_goes_to_the_executor_and_its_path_after_the_command() -> None:
    pod = one_pod(
        """
  - name: main
    script: {image: python:3.12, command: [python], source: "print(1 + 1)"}
"""
    )
    main = containers(pod)["main"]
    assert main["command"][-2:] == ["--", "python"]
    assert main["args"] == [f"{VAR_DIR}/staging/script"]
    assert step_doc(pod)["script"] == "print(1 + 1)"


def test_output_paths_are_saved_by_the_wrapper_and_collected_by_wait() -> None:
    pod = one_pod(
        """
  - name: main
    container: {image: busybox, command: [sh, -c, "echo 3 > /tmp/n; mkdir /out"]}
    outputs:
      parameters:
      - {name: n, valueFrom: {path: /tmp/n, default: "0"}}
      artifacts:
      - {name: out, path: /out, archive: {none: {}}}
"""
    )
    command = containers(pod)["main"]["command"]
    dashdash = command.index("--")
    assert command[:dashdash].count("--save") == 2
    assert "parameters/n=/tmp/n" in command[:dashdash]
    assert "artifacts/out=/out" in command[:dashdash]
    doc = step_doc(pod)
    assert doc["parameters"] == [{"name": "n", "path": "/tmp/n", "default": "0"}]
    (art,) = doc["artifacts"]
    assert (art["name"], art["path"], art["archive"]) == ("out", "/out", {"none": {}})
    assert doc["containers"] == ["main"] and doc["wrapped"] == ["main"]


def test_input_artifacts_are_mounted_at_their_paths_from_the_shared_volume() -> None:
    pod = one_pod(
        """
  - name: main
    inputs:
      artifacts:
      - {name: data, path: /in/data.txt, raw: {data: "x"}}
    container: {image: busybox, command: [cat, /in/data.txt]}
"""
    )
    mounts = containers(pod)["main"]["volumeMounts"]
    assert {"name": "sluice-var", "mountPath": "/in/data.txt", "subPath": "inputs/artifacts/data"} in mounts
    assert step_doc(pod)["inputs"][0]["raw"] == {"data": "x"}


def test_a_container_without_command_runs_its_images_entrypoint_under_the_wrapper() -> None:
    pod = one_pod(
        """
  - name: main
    container: {image: argoproj/argosay:v2, args: [echo, hi]}
"""
    )
    assert containers(pod)["main"]["command"][-4:] == ["--", "argosay", "echo", "hi"]


def test_an_unknown_image_without_command_runs_unwrapped_unless_it_has_output_files() -> None:
    plain = one_pod(
        """
  - name: main
    container: {image: example.com/mystery:1, args: [go]}
"""
    )
    main = containers(plain)["main"]
    assert "command" not in main and main["args"] == ["go"]
    assert step_doc(plain)["wrapped"] == []
    with pytest.raises(ExecutorError, match="give the container a command"):
        one_pod(
            """
  - name: main
    container: {image: example.com/mystery:1}
    outputs: {parameters: [{name: p, valueFrom: {path: /tmp/p}}]}
"""
        )


def test_sidecars_are_stopped_by_the_wrapper_once_main_exits() -> None:
    pod = one_pod(
        """
  - name: main
    container: {image: busybox, command: [true]}
    sidecars:
    - {name: db, image: busybox, command: [sleep, "3600"]}
"""
    )
    db = containers(pod)["db"]
    assert db["command"] == [
        WRAPPER,
        "--name",
        "db",
        "--stop-on",
        "main",
        "--grace",
        "10",
        "--",
        "sleep",
        "3600",
    ]
    with pytest.raises(ExecutorError, match="sidecar 'db'"):
        one_pod(
            """
  - name: main
    container: {image: busybox, command: [true]}
    sidecars: [{name: db, image: example.com/db:1}]
"""
        )


def test_container_set_containers_wait_for_their_dependencies() -> None:
    pod = one_pod(
        """
  - name: main
    containerSet:
      containers:
      - {name: a, image: busybox, command: [echo, a]}
      - {name: main, image: busybox, command: [echo, b], dependencies: [a]}
    outputs: {parameters: [{name: p, valueFrom: {path: /tmp/p}}]}
"""
    )
    cs = containers(pod)
    assert list(cs) == ["a", "main", "wait"]
    assert cs["a"]["command"] == [WRAPPER, "--name", "a", "--", "echo", "a"]
    main = cs["main"]["command"]
    assert main[: main.index("--", 3)] == [
        WRAPPER,
        "--name",
        "main",
        "--stdout",
        "--after",
        "a",
        "--save",
        "parameters/p=/tmp/p",
    ]
    assert "dependencies" not in cs["main"]
    assert step_doc(pod)["containers"] == ["a", "main"]


def test_deadline_becomes_the_pods_active_deadline() -> None:
    pod = one_pod(
        """
  - name: main
    activeDeadlineSeconds: 30
    container: {image: busybox, command: [sleep, "60"]}
"""
    )
    assert pod["spec"]["activeDeadlineSeconds"] == 30


def test_pod_fields_and_pod_spec_patch_reach_the_pod() -> None:
    pod = one_pod(
        """
  - name: main
    serviceAccountName: runner
    nodeSelector: {disk: ssd}
    tolerations: [{key: gpu, operator: Exists}]
    podSpecPatch: '{"containers":[{"name":"main","resources":{"limits":{"cpu":"2"}}}],"hostPID":false}'
    container: {image: busybox, command: [true]}
"""
    )
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "runner"
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert spec["hostPID"] is False
    main = containers(pod)["main"]
    assert main["resources"] == {"limits": {"cpu": "2"}}
    assert main["command"][0] == WRAPPER, "the patch merges into main, it does not replace it"


def test_strategic_merge_merges_named_lists_and_deletes_nulls() -> None:
    spec = {"containers": [{"name": "a", "image": "x"}, {"name": "b"}], "dnsPolicy": "Default"}
    patch = {"containers": [{"name": "b", "image": "y"}, {"name": "c"}], "dnsPolicy": None}
    assert merge_pod_spec(spec, patch) == {
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}, {"name": "c"}]
    }


def test_resource_steps_do_not_become_pods() -> None:
    (step,) = steps_of(
        """
  - name: main
    resource: {action: create, manifest: "apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: x}\\n"}
"""
    )
    with pytest.raises(ExecutorError, match="does not run as a pod"):
        build_pod(step, SETTINGS, now=NOW)


def test_mirror_volume_mounts_give_init_containers_and_sidecars_mains_mounts() -> None:
    pod = one_pod(
        """
  - name: main
    volumes: [{name: scratch, emptyDir: {}}]
    initContainers:
    - {name: seed, image: busybox, command: [true], mirrorVolumeMounts: true}
    - {name: plain, image: busybox, command: [true]}
    sidecars:
    - {name: cache, image: busybox, command: [sleep, "60"], mirrorVolumeMounts: true}
    container:
      image: busybox
      command: [true]
      volumeMounts: [{name: scratch, mountPath: /scratch}]
"""
    )
    inits = {c["name"]: c for c in pod["spec"]["initContainers"]}
    assert {"name": "scratch", "mountPath": "/scratch"} in inits["seed"]["volumeMounts"]
    assert "volumeMounts" not in inits["plain"] or not inits["plain"]["volumeMounts"]
    assert {"name": "scratch", "mountPath": "/scratch"} in containers(pod)["cache"]["volumeMounts"]
    assert all("mirrorVolumeMounts" not in c for c in [*inits.values(), *containers(pod).values()])
