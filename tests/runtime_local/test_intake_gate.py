"""The intake process's gate: its webhooks' events go on the bus within the room the server grants.

The server side (IntakeProcess) and the whole loop through a real server are in
tests/events/test_server_events.py; here the gate alone, with a publisher that records what it is given.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.runtime.local.intake import _Gate

SUBJECT = ("default", "webhook", "example")


class Publisher:
    """Publishes at once, or fails for the events whose ``n`` is in ``failing``."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        self.published: list[int] = []
        self.failing = failing

    async def publish(self, namespace: str, event: dict[str, Any]) -> int:
        n = event["data"]["n"]
        if n in self.failing:
            raise OSError("disk full")
        self.published.append(n)
        return len(self.published)


def gate_over(pub: Publisher, *, max_wait: float = 10.0, sent: list[Any] | None = None) -> _Gate:
    """A gate publishing to ``pub``; the messages for the parent go to ``sent``."""
    out = sent if sent is not None else []
    return _Gate(pub, out.append, max_wait=max_wait)  # type: ignore[arg-type]


def event(n: int, source: str = "webhook") -> dict[str, Any]:
    return {"source": source, "subject": "example", "data": {"n": n}}


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_events_past_the_room_wait_and_new_room_lets_them_in_first_come_first() -> None:
    async def go() -> None:
        pub = Publisher()
        sent: list[Any] = []
        gate = gate_over(pub, sent=sent)
        gate.room([(SUBJECT, 2)])
        tasks = [asyncio.create_task(gate.publish("default", event(n))) for n in range(5)]
        await settle()
        assert pub.published == [0, 1]
        gate.room([(SUBJECT, 4)])
        await settle()
        assert pub.published == [0, 1, 2, 3]
        gate.room([(SUBJECT, None)])  # no longer held
        await asyncio.gather(*tasks)
        assert pub.published == [0, 1, 2, 3, 4]
        # The parent hears of every commit.
        assert sorted(e[3] for m in sent for e in m["events"]) == [1, 2, 3, 4, 5]

    asyncio.run(go())


def test_a_subject_without_a_grant_is_not_held() -> None:
    async def go() -> None:
        pub = Publisher()
        gate = gate_over(pub)
        gate.room([(SUBJECT, 0)])
        await asyncio.wait_for(gate.publish("default", event(1, source="other")), 1.0)
        assert pub.published == [1]

    asyncio.run(go())


def test_an_event_waits_at_most_max_wait_and_then_counts_against_the_room() -> None:
    async def go() -> None:
        pub = Publisher()
        gate = gate_over(pub, max_wait=0.05)
        gate.room([(SUBJECT, 0)])
        await asyncio.wait_for(gate.publish("default", event(1)), 1.0)
        assert pub.published == [1]
        # The event it let through took room: room for one more is not room yet.
        gate.room([(SUBJECT, 1)])
        task = asyncio.create_task(gate.publish("default", event(2)))
        await settle()
        assert pub.published == [1]
        gate.room([(SUBJECT, 2)])
        await task
        assert pub.published == [1, 2]

    asyncio.run(go())


def test_a_failed_publish_gives_its_room_back() -> None:
    async def go() -> None:
        pub = Publisher(failing=frozenset({0}))
        gate = gate_over(pub)
        gate.room([(SUBJECT, 1)])
        with pytest.raises(OSError):
            await gate.publish("default", event(0))
        await asyncio.wait_for(gate.publish("default", event(1)), 1.0)
        assert pub.published == [1]

    asyncio.run(go())


def test_a_request_cancelled_while_it_waits_leaves_the_line_and_takes_no_room() -> None:
    async def go() -> None:
        pub = Publisher()
        gate = gate_over(pub)
        gate.room([(SUBJECT, 0)])
        first = asyncio.create_task(gate.publish("default", event(1)))
        second = asyncio.create_task(gate.publish("default", event(2)))
        await settle()
        first.cancel()  # its client went away
        await settle()
        gate.room([(SUBJECT, 1)])
        await asyncio.wait_for(second, 1.0)
        assert first.cancelled() and pub.published == [2]
        assert not gate._waiting[SUBJECT]

    asyncio.run(go())
