"""Multi-container pods: init containers, sidecars, daemons and containerSets."""

from __future__ import annotations

import asyncio
import sys

from engine.workflows.plan import DEADLINE_MESSAGE, OutputParameterSpec
from tests.procs import pids_with, wait_gone

from .conftest import Harness, make_step, run

PY = sys.executable


def sh(script: str, **kw: object) -> dict[str, object]:
    return {"image": "busybox", "command": ["sh", "-c", script], **kw}


def sleeper(token: str) -> list[str]:
    return [PY, "-c", "import time; time.sleep(300)", token]


def test_init_containers_run_in_order_before_main(harness_factory, mode):
    h: Harness = harness_factory(mode)
    mount = [{"name": "v", "mountPath": "/mnt/v"}]
    step = make_step(
        init_containers=(
            {"name": "one", "command": ["sh", "-c", "echo 1 >> /mnt/v/log"], "volumeMounts": mount},
            {"name": "two", "command": ["sh", "-c", "echo 2 >> /mnt/v/log"], "volumeMounts": mount},
        ),
        container=sh("cat /mnt/v/log", volumeMounts=mount),
        volumes=({"name": "v", "emptyDir": {}},),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "1\n2"


def test_init_container_failure_is_error_and_main_never_runs(harness_factory, mode):
    h: Harness = harness_factory(mode)
    step = make_step(
        init_containers=({"name": "setup", "command": ["sh", "-c", "exit 4"]},),
        container=sh("echo main ran"),
    )
    out = run(h.run(step))
    assert out.phase == "Error"
    assert out.message == "init container setup failed with exit code 4"
    assert not (h.home / "pods" / step.pod_name / "main.log").exists()


def test_sidecar_is_killed_after_main_exits(harness_factory, mode, token):
    h: Harness = harness_factory(mode)
    step = make_step(
        sidecars=({"name": "server", "command": sleeper(token)},),
        container=sh("sleep 0.2; echo main done"),
    )

    async def scenario():
        await h.executor.start(step)
        await h.wait_running(step.node_id)
        assert pids_with(token), "the sidecar runs alongside main"
        return await h.final(step.node_id)

    out = run(scenario())
    assert out.phase == "Succeeded", out.message  # a sidecar we killed does not fail the pod
    assert out.result == "main done"
    assert wait_gone(token) == []
    assert (h.home / "pods" / step.pod_name / "server.log").exists()


def test_sidecar_failing_on_its_own_fails_the_pod(harness_factory):
    h: Harness = harness_factory()
    step = make_step(
        sidecars=({"name": "flaky", "command": ["sh", "-c", "exit 3"]},),
        container=sh("sleep 0.3"),
    )
    out = run(h.run(step))
    assert out.phase == "Failed"
    assert out.message == "sidecar flaky failed with exit code 3"
    assert out.exit_code == 0


def test_daemon_runs_until_killed_and_the_kill_is_final(harness_factory, mode, token):
    h: Harness = harness_factory(mode)
    step = make_step(container={"command": sleeper(token)}, daemon=True)

    async def scenario():
        await h.executor.start(step)
        await h.wait_running(step.node_id)
        await asyncio.sleep(0.2)
        assert step.node_id in h.executor.running()
        await h.executor.kill(step.node_id, "daemon scope ended")
        return await h.final(step.node_id)

    out = run(scenario())
    assert out.phase == "Failed"
    assert out.message == "daemon scope ended"
    assert [o.phase for o in h.outcomes[step.node_id]] == ["Running", "Failed"]
    assert wait_gone(token) == []


def test_kill_of_unknown_node_is_harmless(harness_factory):
    h: Harness = harness_factory()
    run(h.executor.kill("no-such-node", "x"))


def test_container_set_follows_dependencies_and_main(harness_factory, mode):
    h: Harness = harness_factory(mode)
    mount = [{"name": "ws", "mountPath": "/workspace"}]
    step = make_step(
        kind="containerSet",
        containers=(
            {"name": "a", "command": ["sh", "-c", "echo a >> /workspace/order"], "volumeMounts": mount},
            {
                "name": "b",
                "command": ["sh", "-c", "sleep 0.1; echo b >> /workspace/order"],
                "dependencies": ["a"],
                "volumeMounts": mount,
            },
            {
                "name": "main",
                "command": ["sh", "-c", "cat /workspace/order; echo m > /tmp/out"],
                "dependencies": ["a", "b"],
                "volumeMounts": mount,
            },
        ),
        volumes=({"name": "ws", "emptyDir": {}},),
        output_parameters=(OutputParameterSpec("out", "/tmp/out"),),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "a\nb"
    assert out.parameters == (("out", "m"),)
    assert [(c.name, c.phase, c.exit_code) for c in out.containers] == [
        ("a", "Succeeded", 0),
        ("b", "Succeeded", 0),
        ("main", "Succeeded", 0),
    ]
    assert all(c.started_at and c.finished_at for c in out.containers)


def test_container_set_dependency_failure_stops_main(harness_factory):
    h: Harness = harness_factory()
    step = make_step(
        kind="containerSet",
        containers=(
            {"name": "prep", "command": ["sh", "-c", "exit 2"]},
            {"name": "main", "command": ["echo", "never"], "dependencies": ["prep"]},
        ),
    )
    out = run(h.run(step))
    assert out.phase == "Failed"
    prep, main = out.containers
    assert (prep.phase, prep.exit_code, prep.message) == ("Failed", 2, "Error (exit code 2)")
    assert main.phase == "Failed"
    assert "prep" in main.message
    assert main.started_at is None


def test_container_set_parallel_containers_run_together(harness_factory):
    h: Harness = harness_factory()
    step = make_step(
        kind="containerSet",
        containers=(
            {"name": "x", "command": ["sleep", "0.5"]},
            {"name": "y", "command": ["sleep", "0.5"]},
            {"name": "main", "command": ["echo", "ok"], "dependencies": ["x", "y"]},
        ),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded"
    x, y, _ = out.containers
    assert x.started_at is not None and y.started_at is not None and x.finished_at is not None
    assert y.started_at < x.finished_at  # overlapped


def test_container_set_rejects_cycles(harness_factory):
    h: Harness = harness_factory()
    step = make_step(
        kind="containerSet",
        containers=(
            {"name": "a", "command": ["true"], "dependencies": ["main"]},
            {"name": "main", "command": ["true"], "dependencies": ["a"]},
        ),
    )
    out = run(h.run(step))
    assert out.phase == "Error"
    assert "cycle" in out.message


def test_container_set_deadline_fails_the_pod(harness_factory, token):
    import time

    h: Harness = harness_factory()
    step = make_step(
        kind="containerSet",
        containers=({"name": "main", "command": sleeper(token)},),
        deadline=time.time() + 0.5,
    )
    out = run(h.run(step))
    assert out.phase == "Failed"
    assert out.message == DEADLINE_MESSAGE
    assert wait_gone(token) == []


def test_sidecar_with_mirror_volume_mounts_sees_mains_volumes(harness_factory, mode):
    h: Harness = harness_factory(mode)
    step = make_step(
        sidecars=(
            {
                "name": "writer",
                "command": ["sh", "-c", "echo from-sidecar > /mnt/shared/f; sleep 300"],
                "mirrorVolumeMounts": True,
            },
        ),
        container=sh(
            "for i in $(seq 100); do test -s /mnt/shared/f && break; sleep 0.05; done; cat /mnt/shared/f",
            volumeMounts=[{"name": "shared", "mountPath": "/mnt/shared"}],
        ),
        volumes=({"name": "shared", "emptyDir": {}},),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "from-sidecar"
