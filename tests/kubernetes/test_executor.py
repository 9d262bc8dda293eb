"""The step pod's executor side, end to end without a cluster: a real manifest becomes a StepRun and a
Pod (the pod builder), then ``sluice executor init``, the pod's main command under a freshly built
sluice-run, and ``sluice executor wait`` run as real code and processes against a temporary directory
standing in for the pod's ``/var/run/sluice`` and a real S3 endpoint (moto's server).

The container's own filesystem is a temporary directory too: the manifests put their paths there, and
the input artifacts' ``subPath`` mounts are stood in for by symlinks into the var dir."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.artifacts import load_input
from engine.runtime.kubernetes.executor import (
    OUTPUTS_MARKER,
    STOP_WAIT_ENV,
    STOPPED_PROBLEM,
    parse_outputs,
    run_init,
    run_wait,
)
from engine.runtime.kubernetes.pods import STEP_ENV, VAR_DIR, PodSettings, build_pod
from engine.runtime.local.executor import expand_vars
from engine.runtime.s3 import S3Repository, executor_env
from tests.kubernetes.wrapper import wrapper
from tests.s3server import BUCKET, MotoS3, moto_server, s3
from tests.workflows.sim import simulate

__all__ = ["moto_server", "s3", "wrapper"]  # the fixtures, for pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class StepPod:
    """One step's pod and the directories standing in for its volumes and its main filesystem."""

    pod: dict[str, Any]
    var: Path
    fs: Path
    wrapper: Path
    secret: dict[str, str]

    def container(self, name: str) -> dict[str, Any]:
        spec = self.pod["spec"]
        found: list[dict[str, Any]] = [
            c for c in [*spec["initContainers"], *spec["containers"]] if c["name"] == name
        ]
        assert len(found) == 1, name
        return found[0]

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.executor_environ("wait")[STEP_ENV])
        return doc

    def executor_environ(self, name: str) -> dict[str, str]:
        """The env the kubelet gives an executor container: values ($(VAR) expanded, $$ read as $),
        and secretKeyRefs resolved."""
        env: dict[str, str] = {}
        for e in self.container(name)["env"]:
            if "value" in e:
                env[e["name"]] = expand_vars(e["value"], env)
            else:
                env[e["name"]] = self.secret[e["valueFrom"]["secretKeyRef"]["key"]]
        # What the image and the volume give it.
        env["SLUICE_VAR_DIR"] = str(self.var)
        env["SLUICE_RUN_BINARY"] = str(self.wrapper)
        return env

    def init(self) -> tuple[int, str]:
        err = io.StringIO()
        code = run_init(self.executor_environ("init"), stderr=err)
        return code, err.getvalue()

    def run(self, name: str = "main") -> subprocess.CompletedProcess[str]:
        """Run a step container as the pod would: its command (sluice-run from the var dir) and env."""
        process = self.start(name)
        try:
            stdout, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def start(self, name: str = "main") -> subprocess.Popen[str]:
        c = self.container(name)
        argv = [self._local(a) for a in [*c["command"], *c.get("args", [])]]
        env = {**os.environ, **{e["name"]: e["value"] for e in c.get("env", []) if "value" in e}}
        env["SLUICE_VAR_DIR"] = str(self.var)
        if name == "main":
            for m in c["volumeMounts"]:
                if "subPath" in m:  # the kubelet's subPath mount, as a symlink
                    link = Path(m["mountPath"])
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(self.var / m["subPath"])
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_wait(self.executor_environ("wait"), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    def outputs(self) -> dict[str, Any]:
        code, out, err = self.wait()
        assert code == 0, err
        assert out.count("\n") == 1 and out.startswith(OUTPUTS_MARKER), out
        parsed = parse_outputs(out)
        assert parsed is not None
        return parsed

    def _local(self, arg: str) -> str:
        return str(self.var) + arg[len(VAR_DIR) :] if arg.startswith(VAR_DIR + "/") else arg


@pytest.fixture
def make_pod(tmp_path: Path, wrapper: Path, s3: MotoS3) -> Iterator[Any]:
    def make(templates: str, *, repository: bool = True) -> StepPod:
        fs = tmp_path / "fs"
        fs.mkdir(exist_ok=True)
        manifest = f"""
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {{name: wf}}
spec:
  entrypoint: main
  templates:
{templates.replace("FS", str(fs))}"""
        (step,) = simulate(manifest).started
        env = tuple(executor_env(s3.config())) if repository else ()
        pod = build_pod(step, PodSettings(executor_image="sluicegate/sluice:test", executor_env=env), now=0)
        var = tmp_path / "var"
        var.mkdir()
        secret = {"accesskey": str(s3.credentials.access_key), "secretkey": str(s3.credentials.secret_key)}
        return StepPod(pod=pod, var=var, fs=fs, wrapper=wrapper, secret=secret)

    yield make


def tgz_of(files: dict[str, str], tmp: Path) -> bytes:
    src = tmp / "src" / "data"
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    with tarfile.open(tmp / "data.tgz", "w:gz") as tf:
        tf.add(src, arcname="data")
    return (tmp / "data.tgz").read_bytes()


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


SCRIPT_STEP = """
  - name: main
    inputs:
      artifacts:
      - {name: greeting, path: FS/in/greeting.txt, raw: {data: "hello from raw"}}
      - {name: dataset, path: FS/in/data, s3: {key: inputs/data.tgz}}
    outputs:
      parameters:
      - name: count
        valueFrom: {path: FS/count.txt}
      - name: fallback
        valueFrom: {path: FS/never-written, default: "the default"}
      - name: missing
        valueFrom: {path: FS/also-never-written}
      artifacts:
      - {name: report, path: FS/report}
      - {name: plain, path: FS/plain.txt, archive: {none: {}}}
      - {name: placed, path: FS/plain.txt, s3: {key: custom/place.tgz}}
      - {name: maybe, path: FS/maybe, optional: true}
    script:
      image: python:3.12
      command: [sh]
      source: |
        mkdir -p FS/report/sub
        ls FS/in/data | wc -l | tr -d ' ' > FS/count.txt
        cp FS/in/data/b/two.txt FS/report/sub/copied.txt
        cat FS/in/greeting.txt > FS/plain.txt
        echo "the result"
        echo "not the result" >&2
"""


def test_dollar_signs_in_a_script_reach_the_pod_as_written(make_pod: Any) -> None:
    source = 'echo "$$ $(SLUICE_STEP) $(HOME) $$(x)"\n'
    pod = make_pod(f"""
  - name: main
    script:
      image: alpine
      command: [sh]
      source: {json.dumps(source)}
""")
    assert pod.init() == (0, "")
    assert (pod.var / "staging/script").read_text() == source


def test_init_stages_the_wrapper_script_and_inputs_and_wait_reports_the_outputs(
    make_pod: Any, s3: MotoS3, tmp_path: Path
) -> None:
    s3.client().put_object(
        Bucket=BUCKET, Key="inputs/data.tgz", Body=tgz_of({"one.txt": "1", "b/two.txt": "2"}, tmp_path)
    )
    pod = make_pod(SCRIPT_STEP)
    assert pod.init() == (0, "")
    var = pod.var
    assert (var / "bin/sluice-run").read_bytes() == pod.wrapper.read_bytes()
    assert os.stat(var / "bin/sluice-run").st_mode & 0o777 == 0o755
    assert (var / "staging/script").read_text() == pod.doc["script"]
    assert (var / "inputs/artifacts/greeting").read_text() == "hello from raw"
    assert tree(var / "inputs/artifacts/dataset") == {"one.txt": "1", "b/two.txt": "2"}

    main = pod.run()
    assert (main.returncode, main.stdout, main.stderr) == (0, "the result\n", "not the result\n")

    out = pod.outputs()
    fs, pod_name = pod.fs, pod.pod["metadata"]["name"]
    assert out["result"] == "the result"
    assert out["parameters"] == [
        {"name": "count", "value": "2"},
        {"name": "fallback", "value": "the default"},
    ]
    assert out["problems"] == [
        f"output parameter 'missing': {fs}/also-never-written: no such file or directory"
    ]
    assert (out["exitCodes"], out["errors"]) == ({"main": 0}, {})
    location = {"bucket": BUCKET, "endpoint": s3.endpoint, "insecure": True}
    assert out["artifacts"] == [
        {"name": "report", "path": f"{fs}/report", "s3": {**location, "key": f"wf/{pod_name}/report.tgz"}},
        {
            "name": "plain",
            "path": f"{fs}/plain.txt",
            "s3": {**location, "key": f"wf/{pod_name}/plain"},
            "archive": {"none": {}},
        },
        {"name": "placed", "path": f"{fs}/plain.txt", "s3": {**location, "key": "custom/place.tgz"}},
    ]
    assert s3.read(f"wf/{pod_name}/plain") == b"hello from raw"

    # What the next step's init would do with them: the same contents come back.
    repo = S3Repository(s3.config(), s3.credentials)
    for art, expected in ((out["artifacts"][0], {"sub/copied.txt": "2"}), (out["artifacts"][2], None)):
        dest = tmp_path / "next" / art["name"]
        load_input(art, dest, staging=tmp_path / "staging", repository_get=repo.get, secret=lambda n, k: None)
        if expected is None:
            assert dest.read_text() == "hello from raw"
        else:
            assert tree(dest) == expected


def test_a_command_that_cannot_start_reports_its_exit_code_and_why(make_pod: Any) -> None:
    pod = make_pod("""
  - name: main
    outputs:
      parameters:
      - name: p
        valueFrom: {path: FS/p}
    container: {image: alpine, command: [no-such-program-x]}
""")
    assert pod.init()[0] == 0
    assert pod.run().returncode == 127
    out = pod.outputs()
    assert out["exitCodes"] == {"main": 127}
    assert out["errors"] == {"main": 'exec: "no-such-program-x": executable file not found in $PATH'}
    assert out["result"] == ""
    assert out["problems"] == [f"output parameter 'p': {pod.fs}/p: no such file or directory"]


def test_a_container_set_reports_every_container_and_a_skipped_main(make_pod: Any) -> None:
    pod = make_pod("""
  - name: main
    containerSet:
      containers:
      - {name: prepare, image: alpine, command: [sh, -c, "exit 3"]}
      - {name: main, image: alpine, command: [echo, never], dependencies: [prepare]}
""")
    assert pod.doc["wrapped"] == ["prepare", "main"]
    assert pod.init()[0] == 0
    assert pod.run("prepare").returncode == 3
    assert pod.run("main").returncode == 0
    out = pod.outputs()
    assert out["exitCodes"] == {"prepare": 3, "main": "skipped"}
    assert out["problems"] == []


def test_an_unwrapped_main_is_not_waited_for_and_has_no_result(make_pod: Any) -> None:
    pod = make_pod("""
  - name: main
    container: {image: example.com/unknown-entrypoint:1}
""")
    assert pod.doc["wrapped"] == []
    assert pod.init()[0] == 0
    out = pod.outputs()  # returns at once although nothing ran
    assert (out["result"], out["exitCodes"], out["problems"]) == (None, {}, [])


def test_archive_logs_stores_mains_stdout_as_main_logs(make_pod: Any, s3: MotoS3) -> None:
    pod = make_pod("""
  - name: main
    archiveLocation: {archiveLogs: true}
    container: {image: alpine, command: [sh, -c, "echo line one; echo line two"]}
""")
    assert pod.init()[0] == 0
    pod.run()
    out = pod.outputs()
    key = f"wf/{pod.pod['metadata']['name']}/main.log"
    assert out["artifacts"] == [
        {"name": "main-logs", "s3": {"bucket": BUCKET, "endpoint": s3.endpoint, "insecure": True, "key": key}}
    ]
    assert s3.read(key) == b"line one\nline two\n"


def test_outputs_without_an_artifact_repository_are_problems_not_crashes(make_pod: Any) -> None:
    pod = make_pod(
        """
  - name: main
    outputs:
      artifacts:
      - {name: report, path: FS/r.txt}
    container: {image: alpine, command: [sh, -c, "echo x > FS/r.txt"]}
""",
        repository=False,
    )
    assert pod.init()[0] == 0
    pod.run()
    out = pod.outputs()
    assert out["artifacts"] == []
    assert out["problems"] == ["output artifact 'report': no artifact repository is configured"]


def test_a_failed_upload_is_a_problem_naming_the_artifact(make_pod: Any, s3: MotoS3) -> None:
    pod = make_pod("""
  - name: main
    outputs:
      artifacts:
      - {name: report, path: FS/r.txt}
    container: {image: alpine, command: [sh, -c, "echo x > FS/r.txt"]}
""")
    assert pod.init()[0] == 0
    pod.run()
    s3.client().delete_bucket(Bucket=BUCKET)
    out = pod.outputs()
    assert out["problems"] == [
        f"output artifact 'report': s3 bucket '{BUCKET}' does not exist at {s3.endpoint}"
    ]


def test_init_fails_with_one_line_when_an_input_cannot_be_fetched(make_pod: Any) -> None:
    pod = make_pod("""
  - name: main
    inputs:
      artifacts:
      - {name: dataset, path: FS/in/data, s3: {key: inputs/absent.tgz}}
    container: {image: alpine, command: [ls, FS/in/data]}
""")
    code, err = pod.init()
    assert code == 1
    assert err == (
        "sluice executor init: failed to load input artifact 'dataset': "
        f"artifact not found: s3://{BUCKET}/inputs/absent.tgz\n"
    )


def test_init_fails_with_one_line_without_the_wrapper_binary(make_pod: Any, tmp_path: Path) -> None:
    pod = make_pod("""
  - name: main
    container: {image: alpine, command: [true]}
""")
    pod.wrapper = tmp_path / "nowhere" / "sluice-run"
    code, err = pod.init()
    assert (code, err) == (
        1,
        f"sluice executor init: cannot copy sluice-run from {pod.wrapper}: No such file or directory\n",
    )


def test_a_bad_step_document_is_the_only_reason_wait_fails() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_wait({STEP_ENV: "{not json"}, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith("sluice executor wait: $SLUICE_STEP is not valid JSON")


def sluice(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", *args],
        env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_wait_command_waits_for_main_then_prints_one_line(make_pod: Any) -> None:
    pod = make_pod("""
  - name: main
    outputs:
      parameters:
      - name: p
        valueFrom: {path: FS/p}
    container: {image: alpine, command: [sh, -c, "printf 'v\\n' > FS/p; echo done"]}
""")
    init = sluice("executor", "init", env=pod.executor_environ("init"))
    assert init.wait(timeout=30) == 0, init.stderr.read() if init.stderr else ""
    wait = sluice("executor", "wait", env=pod.executor_environ("wait"))
    try:
        time.sleep(1.0)
        assert wait.poll() is None, "wait must not finish before main has exited"
        assert pod.run().returncode == 0
        stdout, stderr = wait.communicate(timeout=30)
    finally:
        wait.kill()
    assert wait.returncode == 0, stderr
    assert stdout.count("\n") == 1
    out = parse_outputs(stdout)
    assert out is not None
    assert (out["result"], out["parameters"], out["problems"]) == ("done", [{"name": "p", "value": "v"}], [])


def test_on_sigterm_wait_reports_what_main_left_when_the_kubelet_stopped_it(make_pod: Any) -> None:
    pod = make_pod("""
  - name: main
    outputs:
      parameters:
      - name: rows
        valueFrom: {path: FS/rows}
      artifacts:
      - {name: report, path: FS/rows}
    container: {image: alpine, command: [sh, -c, "echo copied 3 rows; echo 3 > FS/rows; sleep 60"]}
""")
    assert pod.init()[0] == 0
    wait = sluice("executor", "wait", env=pod.executor_environ("wait"))
    main = pod.start()
    try:
        time.sleep(1.0)  # wait has started (Python is up and its SIGTERM handler is in place)
        deadline = time.monotonic() + 10
        while not (pod.fs / "rows").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # A pod past its deadline: the kubelet sends SIGTERM to every container at once.
        main.send_signal(signal.SIGTERM)
        wait.send_signal(signal.SIGTERM)
        stdout, stderr = wait.communicate(timeout=10)
        main.communicate(timeout=10)
    finally:
        wait.kill()
        main.kill()
    assert main.returncode == 128 + signal.SIGTERM
    out = parse_outputs(stdout)
    assert out is not None, stderr
    assert out["result"] == "copied 3 rows"
    assert out["exitCodes"] == {"main": 128 + signal.SIGTERM}
    assert out["parameters"] == [{"name": "rows", "value": "3"}]
    # As on the embedded runtime, a stopped step stores no output artifacts.
    assert (out["artifacts"], out["problems"]) == ([], [STOPPED_PROBLEM])


def test_on_sigterm_wait_gives_main_a_bounded_time_then_says_the_step_was_stopped(make_pod: Any) -> None:
    pod = make_pod("""
  - name: main
    outputs:
      artifacts:
      - {name: report, path: FS/r.txt}
    container: {image: alpine, command: [sleep, "60"]}
""")
    wait = sluice("executor", "wait", env={**pod.executor_environ("wait"), STOP_WAIT_ENV: "0.5"})
    try:
        time.sleep(1.0)
        assert wait.poll() is None
        wait.send_signal(signal.SIGTERM)
        started = time.monotonic()
        stdout, stderr = wait.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        wait.kill()
    assert wait.returncode == 0, stderr
    assert 0.4 < took < 3.0
    out = parse_outputs(stdout)
    assert out is not None
    assert (out["problems"], out["artifacts"], out["exitCodes"]) == ([STOPPED_PROBLEM], [], {})


def test_parse_outputs_takes_the_last_marked_line_of_an_interleaved_log() -> None:
    log = "\n".join(
        [
            "sluice executor wait: a diagnostic",
            'SLUICE-OUTPUTS {"v":1,"result":"old"}',
            "more stderr",
            'SLUICE-OUTPUTS {"v":1,"result":"new","parameters":[]}',
            "a last stderr line",
        ]
    )
    assert parse_outputs(log) == {"v": 1, "result": "new", "parameters": []}
    assert parse_outputs("no marker here\n") is None
    assert parse_outputs("SLUICE-OUTPUTS {truncated") is None
    assert parse_outputs('SLUICE-OUTPUTS {"v":2}') is None
    # stderr without its newline, then the marker on the same line of the interleaved log
    assert parse_outputs('a warning without newlineSLUICE-OUTPUTS {"v":1,"result":"x"}\n') == {
        "v": 1,
        "result": "x",
    }
