"""The sensor runner on the embedded bus and engine: redelivery after a crash acts once, state is kept."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from engine.events.actions import ObjectAction
from engine.events.sensor import Firing
from engine.runtime.local.engine import LocalEngine, StoreObjects
from engine.runtime.local.eventbus import LocalEventBus
from engine.runtime.local.triggers import LocalObjectActions
from engine.runtime.sensors import SensorRunner
from engine.spec.events import Sensor, TriggerTemplate
from tests.events.conftest import webhook_event

SENSOR = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "Sensor",
    "metadata": {"name": "build"},
    "spec": {
        "dependencies": [{"name": "push", "eventSourceName": "webhook", "eventName": "example"}],
        "triggers": [
            {
                "template": {
                    "name": "start",
                    "argoWorkflow": {
                        "source": {
                            "resource": {
                                "apiVersion": "argoproj.io/v1alpha1",
                                "kind": "Workflow",
                                "metadata": {"generateName": "build-"},
                                "spec": {
                                    "entrypoint": "main",
                                    "templates": [
                                        {
                                            "name": "main",
                                            "container": {"image": "busybox", "command": ["true"]},
                                        }
                                    ],
                                },
                            }
                        }
                    },
                }
            }
        ],
    },
}


class CrashingActions:
    """Runs the real local actions, then "crashes" (never returns) the first time: no ack follows."""

    def __init__(self, inner: LocalObjectActions) -> None:
        self.inner = inner
        self.keys: list[str] = []
        self.results: list[str] = []
        self.crashed = asyncio.Event()

    async def fetch_source(self, template: TriggerTemplate, namespace: str) -> Any:
        return await self.inner.fetch_source(template, namespace)

    def batch(self) -> AbstractContextManager[None]:
        return self.inner.batch()

    async def run(self, action: ObjectAction, firing: Firing) -> str:
        self.keys.append(firing.key)
        self.results.append(await self.inner.run(action, firing))
        if len(self.keys) == 1:
            self.crashed.set()
            await asyncio.Event().wait()  # the process dies here, before the bus hears of the ack
        return self.results[-1]


def test_a_firing_redelivered_after_a_crash_creates_its_workflow_once(tmp_path: Path) -> None:
    async def go() -> tuple[list[str], list[str], list[str]]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        sensor = Sensor.parse(SENSOR)
        bus = LocalEventBus(tmp_path / "events.db")
        actions = CrashingActions(LocalObjectActions(eng))
        lookup = StoreObjects(eng.store)
        first = SensorRunner(namespace="default", sensor=sensor, bus=bus, objects=actions, lookup=lookup)
        await first.start()
        await bus.publish("default", webhook_event(1))
        await asyncio.wait_for(actions.crashed.wait(), 20)
        await first.stop()
        await bus.close()
        # A new process: the bus redelivers the unacknowledged event to a fresh runner.
        bus = LocalEventBus(tmp_path / "events.db")
        second = SensorRunner(namespace="default", sensor=sensor, bus=bus, objects=actions, lookup=lookup)
        await second.start()
        for _ in range(200):
            if len(actions.keys) >= 2:
                break
            await asyncio.sleep(0.05)
        await bus.publish("default", webhook_event(2))
        for _ in range(200):
            if len(actions.keys) >= 3:
                break
            await asyncio.sleep(0.05)
        await second.stop()
        await bus.close()
        names = [r.name for r in eng.store.list_workflows()]
        for name in names:
            await eng.wait(name)
        await eng.close()
        return actions.keys, actions.results, names

    keys, results, names = asyncio.run(go())
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
    assert results[1].endswith("was already submitted for this firing"), results
    assert len(names) == 2 and all(n.startswith("build-") for n in names)
