"""The server's cron loop on the local engine: CronWorkflows start children on schedule, once each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from engine.runtime.local.engine import LocalEngine
from engine.runtime.local.server import CRON_LABEL, Server

CRON = """
apiVersion: sluice.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  schedules: ["*/5 * * * *"]
  concurrencyPolicy: Forbid
  workflowSpec:
    entrypoint: main
    templates:
    - name: main
      container: {image: busybox, command: [echo, "{{workflow.scheduledTime}}"]}
"""

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_cron_loop_starts_one_child_per_fire_time_and_records_status(tmp_path: Path) -> None:
    now = [T0 + 5 * 60 + 3]  # three seconds after the 00:05 fire time

    async def go() -> tuple[list[str], dict[str, object], str]:
        eng = LocalEngine(home=tmp_path, clock=lambda: now[0])
        await eng.start(adopt=False)
        eng.store.put_object("CronWorkflow", "default", "nightly", yaml.safe_load(CRON))
        server = Server(eng)
        await server.cron_pass()
        await server.cron_pass()  # a second pass at the same time must not start it again
        rows = eng.store.list_workflows("default")
        for r in rows:
            await eng.wait(r.name)
        done = eng.store.get_workflow("default", rows[0].name)
        assert done is not None
        status = eng.store.load_status(done)
        result = status.nodes[done.name].outputs.result  # type: ignore[union-attr]
        await eng.close()
        labels = rows[0].manifest["metadata"]["labels"]
        assert labels[CRON_LABEL] == "nightly"
        return [r.name for r in rows], eng.store.cron_state("default", "nightly") or {}, result

    names, state, result = asyncio.run(asyncio.wait_for(go(), 60))
    assert names == [f"nightly-{int(T0 + 300)}"]
    assert state["lastScheduledTime"] == "2026-01-01T00:05:00Z"
    assert result == "2026-01-01T00:05:00Z"
