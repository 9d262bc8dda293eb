"""Process-tree ownership and private paths of local steps."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from engine.runtime.local.executor import LocalExecutor
from engine.runtime.local.isolation import (
    PathPlan,
    available_modes,
    mentioned_tops,
    proc_start_time,
)
from engine.workflows.plan import DEADLINE_MESSAGE, OutputParameterSpec
from tests.procs import pids_with, wait_gone

from .conftest import Harness, make_step, run

PY = sys.executable


def sleeper(token: str, seconds: int = 300) -> str:
    """A shell fragment starting a process whose command line carries ``token``."""
    return f"{PY} -c 'import time; time.sleep({seconds})' {token}"


def escapees(token: str) -> str:
    """Shell that leaves a setsid escapee and a double-forked daemon behind, then sleeps."""
    daemon = textwrap.dedent(
        """
        import os, sys, time
        if os.fork(): sys.exit(0)
        os.setsid()
        if os.fork(): sys.exit(0)
        for fd in range(3): os.close(fd)
        time.sleep(300)
        """
    ).strip()
    return f"setsid {sleeper(token)} & {PY} -c '{daemon}' {token}-daemon; "


def test_parallel_steps_writing_same_tmp_path_do_not_collide(harness_factory, mode):
    h: Harness = harness_factory(mode)
    host_file = Path("/tmp/hello_world.txt")
    existed = host_file.exists()
    script = "echo $ARGO_POD_NAME > /tmp/hello_world.txt; sleep 0.3; cat /tmp/hello_world.txt"
    steps = [
        make_step(
            container={"command": ["sh", "-c", script]},
            output_parameters=(OutputParameterSpec("who", "/tmp/hello_world.txt"),),
        )
        for _ in range(5)
    ]

    async def scenario():
        for s in steps:
            await h.executor.start(s)
        return await asyncio.gather(*(h.final(s.node_id) for s in steps))

    outs = run(scenario())
    for step, out in zip(steps, outs, strict=True):
        assert out.phase == "Succeeded", out.message
        assert out.result == step.pod_name
        assert out.parameters == (("who", step.pod_name),)
    assert host_file.exists() == existed  # the host's /tmp was never written


def test_step_paths_never_create_files_in_the_host_root(harness_factory, mode):
    h: Harness = harness_factory(mode)
    top = f"sluice-test-{os.getpid()}-{mode}"
    step = make_step(
        container={"command": ["sh", "-c", f"mkdir -p /{top}/out && echo x > /{top}/out/f"]},
        output_parameters=(OutputParameterSpec("f", f"/{top}/out/f"),),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.parameters == (("f", "x"),)
    assert not Path("/" + top).exists()
    assert (h.home / "pods" / step.pod_name / "root" / top / "out" / "f").read_text() == "x\n"


def test_working_dir_is_private_and_created(harness_factory, mode):
    h: Harness = harness_factory(mode)
    step = make_step(
        container={"command": ["sh", "-c", "echo data > rel.txt; pwd"], "workingDir": "/src"},
        output_parameters=(OutputParameterSpec("rel", "/src/rel.txt"),),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.parameters == (("rel", "data"),)
    root = h.home / "pods" / step.pod_name / "root"
    assert out.result == ("/src" if _effective(mode) == "bwrap" else f"{root}/src")
    assert not Path("/src").exists() or Path("/src").is_dir()


def _effective(mode: str) -> str:
    """The mode a step with declared paths gets: auto means the strongest available."""
    return available_modes()[0] if mode == "auto" else mode


def test_deadline_kills_setsid_escapee(harness_factory, mode, token):
    h: Harness = harness_factory(mode)
    step = make_step(
        container={"command": ["sh", "-c", escapees(token) + sleeper(token)]},
        deadline=time.time() + 1.0,
    )
    started = time.monotonic()
    out = run(h.run(step))
    assert out.phase == "Failed"
    assert out.message == DEADLINE_MESSAGE
    assert out.exit_code == 128 + signal.SIGTERM  # stopped as a pod is: SIGTERM first
    assert time.monotonic() - started < 5
    assert wait_gone(token) == []


def test_kill_takes_whole_tree(harness_factory, mode, token):
    h: Harness = harness_factory(mode)
    step = make_step(container={"command": ["sh", "-c", escapees(token) + sleeper(token)]})

    async def scenario():
        await h.executor.start(step)
        await h.wait_running(step.node_id)
        # Let the escapees get going so there is a tree to take.
        for _ in range(200):
            if len(pids_with(token)) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(pids_with(token)) >= 3
        await h.executor.kill(step.node_id, "Stopped by user")
        return await h.final(step.node_id)

    out = run(scenario())
    assert out.phase == "Failed"
    assert out.message == "Stopped by user"
    assert wait_gone(token) == []
    assert h.executor.running() == set()


def test_main_exit_ends_everything_it_started(harness_factory, mode, token):
    h: Harness = harness_factory(mode)
    step = make_step(container={"command": ["sh", "-c", escapees(token) + "sleep 0.3; echo done"]})
    out = run(h.run(step))
    assert out.phase == "Succeeded"
    assert out.result == "done"
    assert wait_gone(token) == []


def test_close_kills_running_steps(harness_factory, mode, token):
    h: Harness = harness_factory(mode)
    step = make_step(container={"command": ["sh", "-c", sleeper(token)]})

    async def scenario():
        await h.executor.start(step)
        await h.wait_running(step.node_id)
        await h.executor.close()
        return await h.final(step.node_id)

    out = run(scenario())
    assert out.phase == "Failed"
    assert "shut down" in out.message
    assert wait_gone(token) == []


ENGINE = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from engine.runtime.local.artifacts import LocalDirRepository
    from engine.runtime.local.executor import LocalExecutor
    from engine.workflows.plan import StepRun

    class Objects:
        def configmap(self, ns, name): return None
        def secret(self, ns, name): return None

    async def main(home, mode, script):
        def sink(o):
            if o.phase == "Running":
                print("running", flush=True)
        ex = LocalExecutor(home=Path(home), sink=sink, repository=LocalDirRepository(Path(home) / "a"),
                           objects=Objects(), isolation=mode)
        await ex.start(StepRun(node_id="n1", node_name="wf.crash", pod_name="wf-crash-1",
                               template_name="t", kind="container", workflow_name="wf",
                               workflow_uid="u", namespace="default",
                               container={"command": ["sh", "-c", script]}))
        await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:]))
    """
)


def test_reap_kills_orphans_of_crashed_engine(home, mode, token):
    engine = subprocess.Popen(
        [PY, "-c", ENGINE, str(home), mode, escapees(token) + sleeper(token)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert engine.stdout is not None
        assert engine.stdout.readline().strip() == b"running"
        deadline = time.monotonic() + 5
        while len(pids_with(token)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(pids_with(token)) >= 3
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    if mode != "bwrap":
        # (bwrap --die-with-parent often, not always, takes the sandbox down with the engine.)
        time.sleep(0.2)
        assert len(pids_with(token)) >= 3, "the step outlives the SIGKILLed engine"

    LocalExecutor.reap(home, ["wf-crash-1"])
    assert wait_gone(token) == []
    assert not (home / "pods" / "wf-crash-1" / "pid").exists()


def test_reap_never_kills_a_recycled_pid(home, token):
    # A pid file naming a live process whose start time differs (the pid was reused).
    bystander = subprocess.Popen([PY, "-c", "import time; time.sleep(60)", token])
    try:
        start = proc_start_time(bystander.pid)
        assert start is not None
        pod = home / "pods" / "wf-old-1"
        pod.mkdir(parents=True)
        (pod / "pid").write_text(f"{bystander.pid} {start - 1} aaaa/ffff/wf-old-1/main main\n")
        LocalExecutor.reap(home, ["wf-old-1"])
        time.sleep(0.1)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_reap_leaves_other_homes_alone(home, tmp_path, token):
    other = tmp_path / "other-home"
    other.mkdir()
    h = Harness(other, "session")
    step = make_step(pod_name="wf-shared-name", container={"command": ["sh", "-c", sleeper(token)]})

    async def scenario():
        await h.executor.start(step)
        await h.wait_running(step.node_id)
        LocalExecutor.reap(home, ["wf-shared-name"])  # same pod name, different home
        await asyncio.sleep(0.1)
        alive = pids_with(token)
        await h.executor.close()
        return alive

    assert run(scenario())


# ------------------------------------------------------------------------------------------------
# path plans (the fallback's rewriting)


def test_rewrite_replaces_whole_components_longest_first(tmp_path):
    root = tmp_path / "root"
    plan = PathPlan.build(
        root,
        private_tops={"tmp", "mnt"},
        exact={"/etc/app/conf"},
        mounts={"/mnt/vol": "/data/volumes/v"},
        mounted=False,
        system_tops={"etc", "usr"},
    )
    assert plan.rewrite("echo hi > /tmp/x") == f"echo hi > {root}/tmp/x"
    assert plan.rewrite("/mnt/vol/a /mnt/other") == f"/data/volumes/v/a {root}/mnt/other"
    assert plan.rewrite("cat /etc/app/conf /etc/passwd") == f"cat {root}/etc/app/conf /etc/passwd"
    # not path components, relative, or inside a URL: untouched
    for text in ("/tmpfile", "./tmp/x", "~/tmp", "http://host/tmp/x", "a/tmp/b", "/etc/app/conf2"):
        assert plan.rewrite(text) == text
    assert plan.rewrite("--out=/tmp/y") == f"--out={root}/tmp/y"
    assert plan.host_path("/mnt/vol/a") == Path("/data/volumes/v/a")
    assert plan.host_path("/tmp/../tmp/x") == root / "tmp" / "x"
    assert plan.host_path("/usr/bin/env") == Path("/usr/bin/env")


def test_bwrap_plan_rewrites_only_what_cannot_be_mounted(tmp_path):
    root = tmp_path / "root"
    plan = PathPlan.build(
        root,
        private_tops={"tmp"},
        exact={"/etc/app/conf"},
        mounts={"/mnt/vol": "/v1", "/etc/cfg": "/v2"},
        mounted=True,
        system_tops={"etc"},
    )
    assert plan.rewrite("/tmp/x /mnt/vol/y") == "/tmp/x /mnt/vol/y"
    assert plan.rewrite("/etc/cfg/a /etc/app/conf") == f"/v2/a {root}/etc/app/conf"


def test_host_directories_under_a_private_top_are_kept(tmp_path):
    root = tmp_path / "root"
    for mounted in (False, True):
        plan = PathPlan.build(
            root,
            private_tops={"tmp"},
            exact=(),
            mounts={},
            mounted=mounted,
            system_tops=(),
            host_paths=["/tmp/checkout/.venv", "/tmp", "/usr/lib"],
        )
        assert plan.host_path("/tmp/checkout/.venv/bin/python") == Path("/tmp/checkout/.venv/bin/python")
        assert plan.host_path("/tmp/checkout/other") == root / "tmp" / "checkout" / "other"
        if not mounted:
            text = "/tmp/checkout/.venv/bin/python /tmp/x"
            assert plan.rewrite(text) == f"/tmp/checkout/.venv/bin/python {root}/tmp/x"


def test_a_program_installed_under_tmp_runs_in_every_mode(harness_factory, mode):
    """A checkout (and its virtualenv) under /tmp stays reachable although a step's /tmp is private."""
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        tool = Path(d) / "bin" / "tool"
        tool.parent.mkdir()
        tool.write_text("#!/bin/sh\necho tool ran\n")
        tool.chmod(0o755)
        h: Harness = harness_factory(mode, extra_path=(str(tool.parent),))
        out = run(h.run(make_step(container={"command": [str(tool)], "args": ["/tmp/x"]})))
        assert (out.phase, out.result) == ("Succeeded", "tool ran")


def test_mentions_find_top_level_directories():
    assert mentioned_tops("echo > /tmp/x; cat /inputs/a 2>/dev/null") == {"tmp", "inputs", "dev"}
    assert mentioned_tops("curl http://example.com/path ./rel ~/h") == set()
    # The host's own directories need nothing private.
    assert mentioned_tops("/tmp/ci/.venv/bin/python -c pass", ["/tmp/ci/.venv"]) == set()
    assert mentioned_tops("/tmp/ci/.venv2/x /tmp/ci/.venv/y", ["/tmp/ci/.venv"]) == {"tmp"}


@pytest.mark.skipif("bwrap" not in available_modes(), reason="bwrap unavailable")
def test_bwrap_step_sees_its_own_pid_namespace(harness_factory):
    h: Harness = harness_factory("bwrap")
    # "$$$$" because Kubernetes turns "$$" into "$" before the shell sees it.
    script = "echo $$$$; ls /proc | grep -c '^[0-9]'"
    out = run(h.run(make_step(container={"command": ["sh", "-c", script]})))
    pid, count = (out.result or "").split()
    assert int(pid) < 10
    assert int(count) < 10
