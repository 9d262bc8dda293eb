"""Helpers for the event bus tests: the two buses behind one interface, a clock a test can move, and
CloudEvents to publish.

Used by the contract suite (``tests/buses``, through the ``bus`` fixture of its conftest) and by the
tests of one bus (``tests/runtime_local/test_eventbus.py``, ``tests/runtime_jetstream``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.runtime.base import EventBus
from engine.runtime.busmodel import Delivery, SubjectFilter
from engine.runtime.jetstream import JetStreamBus
from engine.runtime.local.eventbus import LocalEventBus
from tests.natsserver import NatsServer

NS = "default"
WEBHOOK = SubjectFilter(NS, "webhook", "example")


def event(eid: str, source: str = "webhook", name: str = "example", **data: Any) -> dict[str, Any]:
    """A CloudEvent from EventSource ``source``, event ``name``, with ``data`` as its payload."""
    return {
        "specversion": "1.0",
        "id": eid,
        "source": source,
        "type": "webhook",
        "subject": name,
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }


async def waiting_fetch(bus: EventBus, consumer: str) -> asyncio.Future[list[Delivery]]:
    """A fetch from ``consumer`` that waits up to two minutes, once it is waiting (it must be)."""
    waiting = asyncio.ensure_future(bus.fetch(consumer, timeout=120))
    await asyncio.sleep(0.2)
    assert not waiting.done(), "nothing is due, so the fetch must still be waiting"
    return waiting


class StepClock:
    """``read()`` plus the seconds a test added with :meth:`advance`: time goes on as usual and jumps
    when told. ``StepClock(lambda: T)`` stands still at T between jumps."""

    def __init__(self, read: Callable[[], float] = time.monotonic) -> None:
        self.read = read
        self.offset = 0.0

    def __call__(self) -> float:
        return self.read() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class EmbeddedBackend:
    """The SQLite bus in one file; a bus opened again after ``close`` is the bus after a restart.

    ``ack_wait`` runs on a :class:`StepClock`, so :meth:`let_time_pass` costs no real time."""

    kind = "embedded"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = StepClock()

    async def open(self, **options: Any) -> LocalEventBus:
        return LocalEventBus(self.path, monotonic=self.clock, **options)

    async def let_time_pass(self, seconds: float) -> None:
        self.clock.advance(seconds)


class JetStreamBackend:
    """A JetStream bus on one nats-server; each :meth:`open` is a new client (another process)."""

    kind = "jetstream"

    def __init__(self, server: NatsServer) -> None:
        self.server = server

    async def open(self, **options: Any) -> JetStreamBus:
        options.setdefault("connect_timeout", 5.0)
        return await JetStreamBus(self.server.url, **options).open()

    async def let_time_pass(self, seconds: float) -> None:
        # The server times ack_wait on its own clock: only real time moves it.
        await asyncio.sleep(seconds)


Backend = EmbeddedBackend | JetStreamBackend
