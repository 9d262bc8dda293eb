"""Crash safety of the local runtime: ``kill -9`` the engine mid-workflow, start a new one, finish.

The acceptance scenario: a 50-step workflow (parallelism 2) whose steps append their name to a log in a
shared directory. Half-way through, the next steps to start are *held* (they spin while a ``hold``
file exists), so the steps in flight at the kill are known and would live forever if nobody reaped
them. The server is SIGKILLed, a new server on the same SLUICE_HOME must reap the orphans, adopt the
workflow and finish it: every step ran exactly once, except those in flight at the kill (read from the
persisted node phases), which ran at most twice.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.local.isolation import proc_start_time
from tests.cli.support import SLUICE, ServerProcess, cli, sluice_env, wait_for, write
from tests.procs import pids_with

STEPS = 50
PARALLELISM = 2
# These steps mention only system paths, so by default they get the ``session`` isolation mode, where
# a SIGKILLed engine's steps keep running until a new engine reaps them. Under bwrap they may die with
# the engine instead; then only "none survives" is checked.
SESSION_STEPS = os.environ.get("SLUICE_ISOLATION", "auto") in ("auto", "session")

# $0 is the token (so /proc shows which processes are this test's steps), $1 the index, $2 the dir.
STEP_SCRIPT = (
    'echo "step-$1" >> "$2/ran.log"; '
    'while [ -e "$2/hold" ]; do touch "$2/held-$1"; sleep 0.05; done; '
    "sleep 0.1; true"
)

FIFTY = f"""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: fifty-}}
spec:
  entrypoint: main
  parallelism: {PARALLELISM}
  arguments: {{parameters: [{{name: dir}}, {{name: token}}]}}
  templates:
  - name: main
    steps:
    - - name: work
        template: work
        arguments: {{parameters: [{{name: i, value: "{{{{item}}}}"}}]}}
        withSequence: {{count: "{STEPS}"}}
  - name: work
    inputs: {{parameters: [{{name: i}}]}}
    container:
      image: busybox
      command:
      - sh
      - -c
      - '{STEP_SCRIPT}'
      - "{{{{workflow.parameters.token}}}}"
      - "{{{{inputs.parameters.i}}}}"
      - "{{{{workflow.parameters.dir}}}}"
"""


# The same fan-out as a DAG task, limited by the DAG template's own parallelism: children held back
# by it exist only in the planner's memory at the kill, and must still start after the restart.
FIFTY_DAG = FIFTY.replace(f"  parallelism: {PARALLELISM}\n", "").replace(
    "  - name: main\n    steps:\n    - - name: work\n",
    f"  - name: main\n    parallelism: {PARALLELISM}\n    dag:\n      tasks:\n      - name: work\n",
)


def ran(shared: Path) -> Counter[str]:
    path = shared / "ran.log"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def held(shared: Path) -> set[str]:
    return {p.name.removeprefix("held-") for p in shared.glob("held-*")}


def workflow(home: Path, name: str) -> dict[str, Any]:
    res = cli("get", name, "-o", "json", home=home)
    assert res.returncode == 0, res.stderr
    obj: dict[str, Any] = json.loads(res.stdout)
    return obj


def pod_nodes(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in obj["status"]["nodes"].values() if n["type"] == "Pod"]


def step_of(node: dict[str, Any]) -> str:
    params = {p["name"]: p["value"] for p in node["inputs"]["parameters"]}
    return f"step-{params['i']}"


@pytest.mark.parametrize("manifest", [FIFTY, FIFTY_DAG], ids=["steps", "dag"])
def test_kill_9_mid_workflow_then_restart_finishes_with_each_step_run_once(
    home: Path, tmp_path: Path, shared: Path, manifest: str
) -> None:
    token = f"crash-step-{shared.name}"
    path = write(tmp_path, "fifty.yaml", manifest)
    first = ServerProcess(home).start()
    second: ServerProcess | None = None
    try:
        res = cli("submit", path, "-o", "name", "-p", f"dir={shared}", "-p", f"token={token}", home=home)
        assert res.returncode == 0, res.stderr
        name = res.stdout.strip()

        wait_for(lambda: sum(ran(shared).values()) >= STEPS // 2, timeout=60, what="half the steps")
        (shared / "hold").touch()
        wait_for(lambda: len(held(shared)) == PARALLELISM, timeout=30, what="the held steps")

        first.kill()
        orphans = {pid: proc_start_time(pid) for pid in pids_with(token)}
        if SESSION_STEPS:
            assert orphans, "the held steps should outlive a SIGKILLed engine until reaped"

        # What was acknowledged at the kill: the store is quiet now that its only writer is dead.
        at_kill = workflow(home, name)
        assert at_kill["status"]["phase"] == "Running"
        in_flight = {step_of(n) for n in pod_nodes(at_kill) if n["phase"] in ("Pending", "Running")}
        done_at_kill = {step_of(n) for n in pod_nodes(at_kill) if n["phase"] == "Succeeded"}
        assert in_flight == {f"step-{i}" for i in held(shared)}
        assert len(in_flight) <= PARALLELISM

        second = ServerProcess(home).start()

        def orphans_gone() -> bool:
            return all(proc_start_time(pid) != start for pid, start in orphans.items())

        wait_for(orphans_gone, timeout=15, what="the new server to reap the orphaned steps")
        assert not [p for p in pids_with(token) if p in orphans]
        (shared / "hold").unlink()

        waited = cli("wait", name, home=home)
        assert waited.stdout == f"{name} Succeeded\n"

        final = workflow(home, name)
        assert final["status"]["phase"] == "Succeeded"
        nodes = pod_nodes(final)
        assert len(nodes) == STEPS
        assert all(n["phase"] == "Succeeded" for n in nodes)

        counts = ran(shared)
        assert set(counts) == {f"step-{i}" for i in range(STEPS)}
        twice = {s for s, c in counts.items() if c > 1}
        assert twice <= in_flight, f"steps run twice that were not in flight: {twice - in_flight}"
        assert all(counts[s] <= 2 for s in in_flight)
        assert all(counts[s] == 1 for s in done_at_kill)
        assert sum(counts.values()) <= STEPS + PARALLELISM
        assert pids_with(token) == []
    finally:
        first.kill()
        if second is not None:
            second.kill()


SUSPENDED = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: gated-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: dir}]}
  templates:
  - name: main
    steps:
    - - {name: before, template: record}
    - - {name: approve, template: gate}
    - - {name: after, template: record}
  - name: gate
    suspend: {}
  - name: record
    container: {image: busybox, command: [sh, -c, 'echo x >> "{{workflow.parameters.dir}}/record.log"']}
"""


def test_kill_9_while_suspended_then_resume_on_a_new_server(home: Path, tmp_path: Path, shared: Path) -> None:
    first = ServerProcess(home).start()
    second: ServerProcess | None = None
    try:
        res = cli(
            "submit", write(tmp_path, "wf.yaml", SUSPENDED), "-o", "name", "-p", f"dir={shared}", home=home
        )
        name = res.stdout.strip()

        def gate_waiting() -> bool:
            nodes = (workflow(home, name)["status"].get("nodes") or {}).values()
            return any(n["displayName"] == "approve" and n["phase"] == "Running" for n in nodes)

        wait_for(gate_waiting, what="the suspend node")
        first.kill()
        second = ServerProcess(home).start()
        assert cli("resume", name, home=home).returncode == 0
        assert cli("wait", name, home=home).stdout == f"{name} Succeeded\n"
        assert (shared / "record.log").read_text().splitlines() == ["x", "x"]  # before ran once, after once
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_server_adopts_a_workflow_whose_sluice_run_was_killed(
    home: Path, tmp_path: Path, shared: Path
) -> None:
    token = f"run-step-{shared.name}"
    path = write(tmp_path, "fifty.yaml", FIFTY.replace(f'count: "{STEPS}"', 'count: "4"'))
    (shared / "hold").touch()
    run = subprocess.Popen(
        [*SLUICE, "run", path, "-p", f"dir={shared}", "-p", f"token={token}"],
        env=sluice_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server: ServerProcess | None = None
    try:
        wait_for(lambda: len(held(shared)) == PARALLELISM, timeout=30, what="the held steps")
        run.kill()
        run.wait(timeout=10)
        orphans = {pid: proc_start_time(pid) for pid in pids_with(token)}
        if SESSION_STEPS:
            assert orphans
        name = json.loads(cli("list", "-o", "json", home=home).stdout)[0]["name"]
        server = ServerProcess(home).start()

        def orphans_gone() -> bool:
            return all(proc_start_time(pid) != start for pid, start in orphans.items())

        wait_for(orphans_gone, timeout=15, what="the orphans of `sluice run` to be reaped")
        (shared / "hold").unlink()
        assert cli("wait", name, home=home).stdout == f"{name} Succeeded\n"
        counts = ran(shared)
        assert set(counts) == {f"step-{i}" for i in range(4)}
        assert sum(counts.values()) <= 4 + PARALLELISM
    finally:
        if run.poll() is None:
            run.kill()
        if server is not None:
            server.kill()
