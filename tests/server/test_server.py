"""``sluice server`` in a subprocess, driven by the CLI commands that talk to it over its socket.

Each test starts its own server on a fresh SLUICE_HOME (the ``server`` fixture). The client commands
run in-process (``cli``): they only speak HTTP over the Unix socket and read the SQLite state, so the
server under test is the real, separate process either way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.cli.support import ServerProcess, cli, error_line, wait_for, write
from tests.procs import pids_with

SAY = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: say-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: text, value: hello}, {name: code, value: "0"}]}
  templates:
  - name: main
    container:
      image: busybox
      command: [sh, -c, "echo {{workflow.parameters.text}}; exit {{workflow.parameters.code}}"]
"""

APPROVAL = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: approval-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: before, template: say}
    - - {name: approve, template: gate}
    - - {name: after, template: say}
  - name: gate
    suspend: {}
  - name: say
    container: {image: busybox, command: [echo, hi]}
"""

# ``main`` sleeps until stopped; the exit handler leaves a file behind when it runs.
LONG_WITH_EXIT_HANDLER = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: long-}
spec:
  entrypoint: main
  onExit: cleanup
  arguments: {parameters: [{name: dir}, {name: token}]}
  templates:
  - name: main
    container: {image: busybox, command: [sh, -c, "sleep 30; true", "{{workflow.parameters.token}}"]}
  - name: cleanup
    container:
      image: busybox
      command: [sh, -c, 'echo "{{workflow.status}}" > "{{workflow.parameters.dir}}/exit-handler-ran"']
"""

# ``flaky`` fails the first time (it leaves a marker) and succeeds once the marker is there.
FLAKY = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: flaky-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: dir}]}
  templates:
  - name: main
    steps:
    - - {name: steady, template: steady}
    - - {name: flaky, template: flaky}
  - name: steady
    container: {image: busybox, command: [sh, -c, 'echo ran >> "{{workflow.parameters.dir}}/steady.log"']}
  - name: flaky
    container:
      image: busybox
      command:
      - sh
      - -c
      - |
        echo attempt >> "{{workflow.parameters.dir}}/flaky.log"
        if [ -e "{{workflow.parameters.dir}}/marker" ]; then echo second time; exit 0; fi
        touch "{{workflow.parameters.dir}}/marker"
        exit 3
"""


def status(home: Path, name: str) -> dict[str, Any]:
    res = cli("get", name, "-o", "json", home=home)
    assert res.returncode == 0, res.stderr
    obj: dict[str, Any] = json.loads(res.stdout)["status"]
    return obj


def node(home: Path, name: str, display_name: str) -> dict[str, Any] | None:
    for n in (status(home, name).get("nodes") or {}).values():
        if n["displayName"] == display_name:
            return dict(n)
    return None


def submit(home: Path, path: Path, *args: str) -> str:
    res = cli("submit", path, "-o", "name", *args, home=home)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def wait_running(home: Path, name: str, display_name: str) -> None:
    def running() -> bool:
        n = node(home, name, display_name)
        return n is not None and n["phase"] == "Running"

    wait_for(running, timeout=30, what=f"{display_name} of {name} to run")


def test_submit_wait_exits_with_the_workflow_result(server: ServerProcess, tmp_path: Path) -> None:
    path = write(tmp_path, "say.yaml", SAY)
    ok = cli("submit", path, "--wait", "-p", "text=server", home=server.home)
    assert ok.returncode == 0, ok.stderr
    name, phase = ok.stdout.split()
    assert phase == "Succeeded"
    assert cli("logs", name, home=server.home).stdout == f"{name}: server\n"

    failed = cli("submit", path, "--wait", "-p", "code=7", home=server.home)
    assert failed.returncode == 1
    assert failed.stdout.split()[1] == "Failed"


def test_submit_without_wait_returns_at_once_and_wait_waits(server: ServerProcess, tmp_path: Path) -> None:
    res = cli("submit", write(tmp_path, "say.yaml", SAY), home=server.home)
    assert res.returncode == 0
    fields = dict(line.split(":", 1) for line in res.stdout.splitlines())
    name = fields["Name"].strip()
    assert fields["Namespace"].strip() == "default" and fields["Status"].strip() == "Pending"
    waited = cli("wait", name, home=server.home)
    assert (waited.returncode, waited.stdout) == (0, f"{name} Succeeded\n")


def test_wait_on_several_workflows_fails_if_any_failed(server: ServerProcess, tmp_path: Path) -> None:
    path = write(tmp_path, "say.yaml", SAY)
    good = submit(server.home, path)
    bad = submit(server.home, path, "-p", "code=1")
    res = cli("wait", good, bad, home=server.home)
    assert res.returncode == 1
    assert res.stdout.splitlines()[0] == f"{good} Succeeded"
    assert res.stdout.splitlines()[1].startswith(f"{bad} Failed")


def test_submit_refuses_an_invalid_workflow_with_one_line(server: ServerProcess, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", SAY.replace("name: main\n", "name: main\n    timeout: soon\n"))
    res = cli("submit", path, home=server.home)
    assert res.returncode == 2
    assert error_line(res).startswith(f"sluice: {path}: spec.templates[0].timeout: invalid duration")
    assert cli("list", "-o", "name", home=server.home).stdout == ""


def test_suspend_step_waits_for_resume(server: ServerProcess, tmp_path: Path) -> None:
    home = server.home
    name = submit(home, write(tmp_path, "approval.yaml", APPROVAL))
    wait_running(home, name, "approve")
    assert node(home, name, "after") is None
    assert status(home, name)["phase"] == "Running"

    res = cli("resume", name, home=home)
    assert (res.returncode, res.stdout) == (0, f"workflow {name} resumed\n")
    assert cli("wait", name, home=home).returncode == 0
    after = node(home, name, "after")
    assert after is not None and after["phase"] == "Succeeded"
    approve = node(home, name, "approve")
    assert approve is not None and approve["phase"] == "Succeeded"


def test_suspended_workflow_starts_no_new_step_until_resumed(
    server: ServerProcess, tmp_path: Path, shared: Path
) -> None:
    home = server.home
    text = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: pausable-}
spec:
  entrypoint: main
  arguments: {parameters: [{name: dir}]}
  templates:
  - name: main
    steps:
    - - {name: first, template: first}
    - - {name: second, template: second}
  - name: first
    container:
      image: busybox
      command: [sh, -c, 'while [ ! -e "{{workflow.parameters.dir}}/go" ]; do sleep 0.05; done']
  - name: second
    container: {image: busybox, command: [echo, two]}
"""
    name = submit(home, write(tmp_path, "wf.yaml", text), "-p", f"dir={shared}")
    wait_running(home, name, "first")
    assert cli("suspend", name, home=home).stdout == f"workflow {name} suspended\n"
    (shared / "go").touch()

    def first_done() -> bool:
        n = node(home, name, "first")
        return n is not None and n["phase"] == "Succeeded"

    wait_for(first_done, what="the first step to finish")
    listed = cli("list", home=home).stdout
    assert "Running (Suspended)" in listed
    time.sleep(0.5)  # time enough for the engine to start ``second`` if it were going to
    assert node(home, name, "second") is None

    assert cli("resume", name, home=home).returncode == 0
    assert cli("wait", name, home=home).returncode == 0
    second = node(home, name, "second")
    assert second is not None and second["phase"] == "Succeeded"


def test_stop_runs_the_exit_handler(server: ServerProcess, tmp_path: Path, shared: Path) -> None:
    home = server.home
    token = f"stop-token-{shared.name}"
    path = write(tmp_path, "long.yaml", LONG_WITH_EXIT_HANDLER)
    name = submit(home, path, "-p", f"dir={shared}", "-p", f"token={token}")
    wait_running(home, name, name)
    res = cli("stop", name, home=home)
    assert (res.returncode, res.stdout) == (0, f"workflow {name} stopped\n")
    waited = cli("wait", name, home=home)
    assert waited.returncode == 1
    assert waited.stdout == f"{name} Failed (Stopped with strategy 'Stop')\n"
    assert (shared / "exit-handler-ran").read_text().strip() == "Failed"
    assert wait_for(lambda: not pids_with(token), timeout=5, what="the stopped step to die")


def test_terminate_skips_the_exit_handler(server: ServerProcess, tmp_path: Path, shared: Path) -> None:
    home = server.home
    token = f"terminate-token-{shared.name}"
    path = write(tmp_path, "long.yaml", LONG_WITH_EXIT_HANDLER)
    name = submit(home, path, "-p", f"dir={shared}", "-p", f"token={token}")
    wait_running(home, name, name)
    res = cli("terminate", name, home=home)
    assert (res.returncode, res.stdout) == (0, f"workflow {name} terminated\n")
    waited = cli("wait", name, home=home)
    assert waited.stdout == f"{name} Failed (Stopped with strategy 'Terminate')\n"
    assert not (shared / "exit-handler-ran").exists()
    assert all(n["displayName"] != f"{name}.onExit" for n in status(home, name)["nodes"].values())
    assert wait_for(lambda: not pids_with(token), timeout=5, what="the stopped step to die")


def test_retry_reruns_a_failed_workflow_in_place(server: ServerProcess, tmp_path: Path, shared: Path) -> None:
    home = server.home
    name = submit(home, write(tmp_path, "flaky.yaml", FLAKY), "-p", f"dir={shared}")
    assert cli("wait", name, home=home).returncode == 1
    flaky = node(home, name, "flaky")
    assert flaky is not None and flaky["phase"] == "Failed"

    res = cli("retry", name, "--wait", home=home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines() == [f"workflow {name} retried", f"{name} Succeeded"]
    assert cli("list", "-o", "name", home=home).stdout == f"{name}\n"
    assert (shared / "flaky.log").read_text().splitlines() == ["attempt", "attempt"]
    assert (shared / "steady.log").read_text().splitlines() == ["ran"]  # not run again
    flaky = node(home, name, "flaky")
    assert flaky is not None and flaky["phase"] == "Succeeded"
    assert flaky["outputs"]["result"] == "second time"


def test_retry_of_a_succeeded_workflow_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    home = server.home
    name = submit(home, write(tmp_path, "say.yaml", SAY))
    assert cli("wait", name, home=home).returncode == 0
    res = cli("retry", name, home=home)
    assert res.returncode == 1
    assert error_line(res) == (
        f"sluice: workflow '{name}' is Succeeded: only a Failed or Error one can be retried"
    )


def test_resubmit_starts_a_new_workflow_from_the_same_spec(server: ServerProcess, tmp_path: Path) -> None:
    home = server.home
    first = submit(home, write(tmp_path, "say.yaml", SAY), "-p", "text=original")
    assert cli("wait", first, home=home).returncode == 0

    res = cli("resubmit", first, "-o", "name", "--wait", home=home)
    assert res.returncode == 0, res.stderr
    second = res.stdout.splitlines()[0]
    assert second != first and second.startswith("say-")
    assert res.stdout.splitlines()[1] == f"{second} Succeeded"
    obj = json.loads(cli("get", second, "-o", "json", home=home).stdout)
    assert obj["metadata"]["labels"]["workflows.argoproj.io/resubmitted-from-workflow"] == first
    assert cli("logs", second, home=home).stdout == f"{second}: original\n"

    again = cli("resubmit", first, "-o", "name", "-p", "text=changed", "--wait", home=home)
    third = again.stdout.splitlines()[0]
    assert cli("logs", third, home=home).stdout == f"{third}: changed\n"
    assert sorted(cli("list", "-o", "name", home=home).stdout.split()) == sorted([first, second, third])


def test_delete_removes_finished_and_running_workflows(
    server: ServerProcess, tmp_path: Path, shared: Path
) -> None:
    home = server.home
    done = submit(home, write(tmp_path, "say.yaml", SAY))
    assert cli("wait", done, home=home).returncode == 0
    token = f"delete-token-{shared.name}"
    running = submit(
        home,
        write(tmp_path, "long.yaml", LONG_WITH_EXIT_HANDLER),
        "-p",
        f"dir={shared}",
        "-p",
        f"token={token}",
    )
    wait_running(home, running, running)
    assert pids_with(token)

    res = cli("delete", done, running, home=home)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f'Workflow "{done}" deleted', f'Workflow "{running}" deleted']
    assert cli("list", "-o", "name", home=home).stdout == ""
    assert wait_for(lambda: not pids_with(token), timeout=10, what="the deleted step to die")
    missing = cli("delete", done, home=home)
    assert missing.returncode == 1
    assert error_line(missing) == f"sluice: workflow '{done}' not found in namespace 'default'"


def test_operations_on_unknown_or_finished_workflows_fail_with_one_line(
    server: ServerProcess, tmp_path: Path
) -> None:
    home = server.home
    for op in ("stop", "terminate", "suspend", "resume", "retry", "resubmit"):
        res = cli(op, "ghost", home=home)
        assert res.returncode == 1, op
        assert error_line(res) == "sluice: workflow 'ghost' not found in namespace 'default'", op
    name = submit(home, write(tmp_path, "say.yaml", SAY))
    assert cli("wait", name, home=home).returncode == 0
    for op in ("stop", "terminate", "suspend", "resume"):
        res = cli(op, name, home=home)
        assert res.returncode == 1, op
        assert error_line(res) == f"sluice: workflow '{name}' has already completed (Succeeded)", op


def test_server_shuts_down_cleanly_on_sigterm_and_a_new_one_continues(home: Path, tmp_path: Path) -> None:
    first = ServerProcess(home).start()
    try:
        name = submit(home, write(tmp_path, "approval.yaml", APPROVAL))
        wait_running(home, name, "approve")
        assert first.stop() == 0
        assert not (home / "server.sock").exists()
    finally:
        first.kill()
    assert status(home, name)["phase"] == "Running"

    second = ServerProcess(home).start()
    try:
        assert cli("resume", name, home=home).returncode == 0
        assert cli("wait", name, home=home).returncode == 0
        after = node(home, name, "after")
        assert after is not None and after["phase"] == "Succeeded"
        before = node(home, name, "before")
        assert before is not None and before["phase"] == "Succeeded"
        assert second.stop() == 0
    finally:
        second.kill()
