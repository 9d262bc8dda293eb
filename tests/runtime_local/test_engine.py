"""The local engine end to end: real processes, SQLite state, garbage collection and shared locks."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
import yaml

from engine.runtime.local.engine import EngineSettings, LocalEngine
from engine.spec.workflow import Workflow


def wf(text: str) -> Workflow:
    return Workflow.parse(yaml.safe_load(text))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


ECHO = """
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {generateName: gc-}
spec:
  entrypoint: main
  EXTRA
  templates:
  - name: main
    steps:
    - - {name: ok, template: ok}
  - name: ok
    container: {image: busybox, command: [echo, hi]}
"""


def test_pod_gc_on_pod_success_removes_the_step_directory(tmp_path: Path) -> None:
    async def go() -> tuple[str, Path]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        r = await eng.submit(
            wf(ECHO.replace("EXTRA", "podGC: {strategy: OnPodSuccess, deleteDelayDuration: 0s}"))
        )
        await r.done.wait()
        await asyncio.sleep(0.3)
        await eng.close()
        return r.status.phase, tmp_path / "pods"

    phase, pods = run(go())
    assert phase == "Succeeded"
    assert list(pods.iterdir()) == []


def test_without_pod_gc_step_logs_stay(tmp_path: Path) -> None:
    async def go() -> Path:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        r = await eng.submit(wf(ECHO.replace("EXTRA", "")))
        await r.done.wait()
        await eng.close()
        return tmp_path / "pods"

    pods = run(go())
    (pod,) = list(pods.iterdir())
    assert (pod / "main.log").read_text() == "hi\n"


def test_ttl_strategy_deletes_the_finished_workflow(tmp_path: Path) -> None:
    async def go() -> tuple[bool, bool]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        r = await eng.submit(wf(ECHO.replace("EXTRA", "ttlStrategy: {secondsAfterCompletion: 0}")))
        await r.done.wait()
        present = eng.store.get_workflow("default", r.name) is not None
        await asyncio.sleep(0.3)
        gone = eng.store.get_workflow("default", r.name) is None
        await eng.close()
        return present, gone

    present, gone = run(go())
    assert present and gone


MUTEX = """
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {generateName: locked-}
spec:
  entrypoint: main
  synchronization: {mutexes: [{name: one-at-a-time}]}
  templates:
  - name: main
    script:
      image: python
      command: [python3]
      source: |
        import time
        print(time.time()); time.sleep(0.4); print(time.time())
"""


@pytest.mark.parametrize("count", [3])
def test_workflows_sharing_a_mutex_never_overlap(tmp_path: Path, count: int) -> None:
    async def go() -> list[tuple[float, float]]:
        eng = LocalEngine(home=tmp_path, settings=EngineSettings())
        await eng.start(adopt=False)
        runs = [await eng.submit(wf(MUTEX)) for _ in range(count)]
        await asyncio.gather(*(r.done.wait() for r in runs))
        await eng.close()
        spans = []
        for r in runs:
            assert r.status.phase == "Succeeded", r.status.message
            start, end = (float(x) for x in r.status.nodes[r.name].outputs.result.split())
            spans.append((start, end))
        return sorted(spans)

    spans = run(go())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end


CLAIMS = """
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {generateName: claims-}
spec:
  entrypoint: main
  volumeClaimTemplates:
  - metadata: {name: work}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}
  templates:
  - name: main
    container:
      image: busybox
      command: [sh, -c, "echo data > /work/file && exit CODE"]
      volumeMounts: [{name: work, mountPath: /work}]
"""


@pytest.mark.parametrize(("code", "kept"), [(0, False), (1, True)])
def test_volume_claims_are_removed_after_success_and_kept_after_failure(
    tmp_path: Path, code: int, kept: bool
) -> None:
    async def go() -> tuple[str, bool]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        r = await eng.submit(wf(CLAIMS.replace("CODE", str(code))))
        await r.done.wait()
        await eng.close()
        return r.status.phase, (tmp_path / "volumes" / f"{r.name}-work" / "file").exists()

    phase, exists = run(go())
    assert phase == ("Succeeded" if code == 0 else "Failed")
    assert exists is kept


def test_a_database_from_before_the_manifests_table_is_migrated_without_loss(tmp_path: Path) -> None:
    import json
    import sqlite3

    from engine.runtime.local.store import Store

    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(
        "CREATE TABLE workflows (uid TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,"
        " manifest TEXT NOT NULL, phase TEXT NOT NULL DEFAULT '', message TEXT,"
        " status TEXT NOT NULL DEFAULT '{}', control TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL,"
        " finished_at REAL, owner TEXT, UNIQUE (namespace, name));"
    )
    manifest = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "old"}}
    db.execute(
        "INSERT INTO workflows (uid, namespace, name, manifest, phase, created_at) VALUES (?,?,?,?,?,?)",
        ("u1", "default", "old", json.dumps(manifest), "Succeeded", 1.0),
    )
    db.commit()
    db.close()
    row = Store(tmp_path).get_workflow("default", "old")
    assert row is not None and row.manifest == manifest and row.phase == "Succeeded"
