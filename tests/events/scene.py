"""A sensor over the embedded bus with an HTTP trigger aimed at a scripted loopback server.

:class:`Scene` runs a real :class:`~engine.runtime.sensors.SensorRunner` over a
:class:`~engine.runtime.local.eventbus.LocalEventBus` in the test's directory; :class:`Receiver` is an
aiohttp server that answers each request by a script (fail the first N, hold one open, answer late)
and records it. Used by ``test_trigger_policies.py`` and ``test_intake_pacing.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.runtime.local.engine import LocalEngine, StoreObjects
from engine.runtime.local.eventbus import EventLogReader, LocalEventBus
from engine.runtime.local.triggers import LocalObjectActions
from engine.runtime.sensors import SensorRunner, TriggerCounters, consumer_name
from engine.spec.events import Sensor
from tests.events.conftest import webhook_event

NAMESPACE = "default"
SENSOR = "notify"
TRIGGER = "tell"
# Short, so that a delivery left unacknowledged would come back within the tests' patience.
ACK_WAIT = 0.3

# (path, how many requests that path had before this one) -> the status to answer; None holds the
# request open without ever answering (the caller is cut off first).
Script = Callable[[str, int], int | None]


@dataclass
class Hit:
    at: float  # time.monotonic() when the request arrived
    path: str
    body: dict[str, Any]
    status: int | None  # None: never answered


@dataclass
class Receiver:
    """A loopback HTTP server that answers by ``script`` and records each request."""

    script: Script
    # Seconds each answer waits (a slow endpoint).
    delay: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)  # a held request is not waited for
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = self.script(request.path, len(self.on(request.path)))
        self.hits.append(Hit(time.monotonic(), request.path, body, status))
        if status is None:
            await asyncio.Event().wait()  # held until the caller goes away or the server stops
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=status or 200)

    def on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [h.body for h in self.on(path)]

    def statuses(self, path: str) -> list[int | None]:
        return [h.status for h in self.on(path)]


def always(status: int) -> Script:
    return lambda path, n: status


def failing_first(count: int, *, path: str = "/main") -> Script:
    """``path`` answers 500 to its first ``count`` requests and 200 afterwards; other paths answer 200."""
    return lambda p, n: 500 if p == path and n < count else 200


def http_trigger(name: str, url: str, **options: Any) -> dict[str, Any]:
    """A trigger POSTing the event's ``body.n`` and id as ``{"n": ..., "event": ...}``, accepting only 200."""
    payload = [
        {"src": {"dependencyName": "push", "dataKey": "body.n"}, "dest": "n"},
        {"src": {"dependencyName": "push", "contextKey": "id"}, "dest": "event"},
    ]
    return {
        "template": {"name": name, "http": {"url": url, "method": "POST", "payload": payload}},
        "policy": {"status": {"allow": [200]}},
        **options,
    }


def sensor(trigger: dict[str, Any]) -> Sensor:
    return Sensor.parse(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Sensor",
            "metadata": {"name": SENSOR},
            "spec": {
                "dependencies": [{"name": "push", "eventSourceName": "webhook", "eventName": "example"}],
                "triggers": [trigger],
            },
        }
    )


def sent(*ns: int) -> list[dict[str, Any]]:
    """The bodies the trigger sends for events ``ns``, in that order."""
    return [{"n": str(n), "event": f"evt-{n}"} for n in ns]


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Scene:
    """One sensor with one trigger over an embedded bus; runners may come and go, the bus stays."""

    def __init__(self, tmp_path: Path, trigger: dict[str, Any]) -> None:
        self.path = tmp_path / "events.db"
        self.sensor = sensor(trigger)
        self.bus = LocalEventBus(self.path)
        self.engine = LocalEngine(home=tmp_path / "home")
        self.runner: SensorRunner | None = None
        self.published = 0

    async def start_runner(self) -> SensorRunner:
        self.runner = SensorRunner(
            namespace=NAMESPACE,
            sensor=self.sensor,
            bus=self.bus,
            objects=LocalObjectActions(self.engine),
            lookup=StoreObjects(self.engine.store),
            ack_wait=ACK_WAIT,
        )
        await self.runner.start()
        return self.runner

    async def crash_and_restart(self) -> SensorRunner:
        """Stop the runner wherever it is, as a crash would (nothing more gets acknowledged), then start
        a new one on the same bus and consumer."""
        assert self.runner is not None
        await self.runner.stop()
        return await self.start_runner()

    async def publish(self, *ns: int) -> None:
        for n in ns:
            await self.bus.publish(NAMESPACE, webhook_event(n))
            self.published += 1

    def counters(self) -> TriggerCounters:
        assert self.runner is not None
        return self.runner.counters()[TRIGGER]

    def ack_pending(self) -> int:
        """Deliveries of the trigger's consumer not acknowledged yet, as the bus's database has them."""
        with EventLogReader(self.path) as reader:
            (info,) = [c for c in reader.consumers() if c.name == consumer_name(NAMESPACE, SENSOR, TRIGGER)]
        return info.ack_pending

    async def settled(self, events: int) -> None:
        """Wait until the runner took in ``events`` events and the bus holds none of them unacknowledged."""
        await until(f"{events} events processed and acknowledged", lambda: self.counters().events >= events)
        await until("the batch acknowledged", lambda: self.ack_pending() == 0)

    async def feed(self, *ns: int) -> None:
        """Publish events ``ns`` and wait until the runner has dealt with everything published so far."""
        await self.publish(*ns)
        await self.settled(self.published)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        await self.bus.close()
        self.engine.store.close()


def play(tmp_path: Path, script: Script, make_trigger: Callable[[str], dict[str, Any]], scenario: Any) -> Any:
    """Run ``scenario(scene, receiver)`` with a receiver answering by ``script`` and a running sensor whose
    trigger is ``make_trigger(receiver.url)``; everything is torn down afterwards."""

    async def main() -> Any:
        receiver = await Receiver(script).start()
        scene = Scene(tmp_path, make_trigger(receiver.url))
        try:
            await scene.start_runner()
            return await scenario(scene, receiver)
        finally:
            await scene.close()
            await receiver.stop()

    return asyncio.run(main())
