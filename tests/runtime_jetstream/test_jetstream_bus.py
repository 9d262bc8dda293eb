"""What only the JetStream event bus does, against a real nats-server: subject, key and consumer names,
a consumer replaced when its filter subject changes, messages on the stream that the bus did not
publish, several clients on one stream, limits the server enforces, an unreachable or restarting
server, and the sensor runner end to end, including crashes on either side of the state write.

The contract it shares with the embedded bus (order, DeliverNew, redelivery, dedupe, filters,
key-value state with acks, the log) is tests/buses/test_bus_contract.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ReferenceError_, StoreError
from engine.events.actions import ObjectAction
from engine.events.sensor import Firing, compile_sensor
from engine.runtime.busmodel import KVUpdate, SubjectFilter
from engine.runtime.jetstream import (
    JetStreamBus,
    _kv_untoken,
    _untoken,
    consumer_id,
    covering_filter,
    kv_token,
    subject_token,
)
from engine.runtime.sensors import SensorRunner, consumer_name, state_bucket
from engine.spec.events import Sensor, TriggerTemplate
from tests.buses.support import NS, WEBHOOK, event, waiting_fetch
from tests.natsserver import NatsServer, free_port
from tests.runtime_jetstream.conftest import OpenBus

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
    """``probe()``'s first result that does not raise StoreError (the client reconnecting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await probe()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------------------- naming


@given(st.text())
def test_subject_tokens_hold_no_separator_wildcard_or_space_and_decode_back(text: str) -> None:
    token = subject_token(text)
    assert not any(c in token for c in ".*>") and not any(c.isspace() for c in token)
    assert token.isascii()
    assert _untoken(token) == text


@given(st.text())
def test_kv_key_parts_use_only_the_kv_alphabet_and_decode_back(text: str) -> None:
    token = kv_token(text)
    assert token and set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/=")
    assert _kv_untoken(token) == text


def test_usual_names_stay_readable_in_subjects_keys_and_consumer_names() -> None:
    assert subject_token("webhook-1") == "webhook-1"
    assert subject_token("webhook.a") == "webhook%2Ea"
    assert kv_token("sensor/default/build") == "sensor/default/build"
    assert consumer_id("sensor-a") == "sensor-a"
    slashed = consumer_id("sensor/default/build/start")
    assert slashed.startswith("sensor_default_build_start_")
    assert consumer_id("a/b") != consumer_id("a.b") != consumer_id("a_b")


def test_covering_filter_keeps_the_tokens_every_filter_agrees_on() -> None:
    a, b = SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick")
    assert covering_filter([a]) == a
    assert covering_filter([a, b]) == SubjectFilter(NS)
    assert covering_filter([a, SubjectFilter(NS, "cal", "a")]) == SubjectFilter(NS, None, "a")
    assert covering_filter([a, SubjectFilter("prod", "webhook", "a")]) == SubjectFilter(None, "webhook", "a")
    assert covering_filter([SubjectFilter(NS, "webhook"), a]) == SubjectFilter(NS, "webhook")


# ------------------------------------------------------------------------------ consumers and clients


def test_a_consumer_whose_filter_subject_changes_hands_its_unacked_events_out_again_at_once(
    open_bus: OpenBus,
) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "example")])
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        assert await bus.ack("c", got[0].seq)
        # Another covering subject (default.*.example becomes default.>): the consumer is replaced by
        # one that resumes at its first unacked event, so those come again without waiting for ack_wait
        # (the embedded bus keeps them pending until then).
        info = await bus.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "tick")], ack_wait=10)
        assert not info.created
        tick = await bus.publish(NS, event("t", "cal", "tick"))
        more = await bus.publish(NS, event("more"))
        again = await bus.fetch("c", limit=10)
        assert [d.seq for d in again] == [*seqs[1:], tick, more]
        assert await bus.ack_batch("c", [d.seq for d in again]) == [d.seq for d in again]
        await bus.close()

    asyncio.run(go())


def test_a_new_client_cannot_ack_what_another_client_fetched(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK], ack_wait=30)
        seq = await bus.publish(NS, event("a"))
        assert [d.seq for d in await bus.fetch("c")] == [seq]
        await bus.close()

        bus = await open_bus()
        # The new client holds nothing yet: an ack of what the old one fetched applies nothing, and the
        # delivery is not handed out before ack_wait passes (the embedded bus does both at once).
        assert not await bus.ack("c", seq, kv_updates=[KVUpdate("s", "k", {"stale": True})])
        assert await bus.kv_get("s", "k") is None
        assert await bus.fetch("c", limit=10) == []
        await bus.close()

    asyncio.run(go())


def test_a_publish_from_another_client_wakes_a_waiting_fetch(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        writer = await open_bus()
        await bus.consumer("c", [WEBHOOK])
        waiting = await waiting_fetch(bus, "c")
        seq = await writer.publish(NS, event("mine"))
        got = await asyncio.wait_for(waiting, 20)
        assert [d.seq for d in got] == [seq]
        await writer.close()
        await bus.close()

    asyncio.run(go())


def test_a_deleted_consumer_is_gone_for_every_client_and_a_waiting_fetch_says_so(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        other = await open_bus()
        await bus.consumer("c", [WEBHOOK])
        assert await other.delete_consumer("c")
        assert not await other.delete_consumer("c")
        assert not await bus.delete_consumer("c")
        with pytest.raises(ReferenceError_, match="'c'"):
            await bus.fetch("c", timeout=1)
        # A fetch waiting on a consumer ends at once when the server deletes it, whichever client asked,
        # and says why (the embedded bus says that it knows no such consumer).
        for name, deleter in (("d", other), ("e", bus)):
            await bus.consumer(name, [WEBHOOK])
            waiting = await waiting_fetch(bus, name)
            assert await deleter.delete_consumer(name)
            with pytest.raises(ReferenceError_, match=f"'{name}' was deleted"):
                await asyncio.wait_for(waiting, 20)
        await other.close()
        await bus.close()

    asyncio.run(go())


def test_a_message_on_the_stream_that_the_bus_did_not_publish_is_dropped(
    open_bus: OpenBus, nats_server: NatsServer
) -> None:
    import nats

    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [SubjectFilter(NS)], ack_wait=0.5)
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().publish(f"sluice.{NS}.webhook.example", b"not json")
        await nc.jetstream().publish(f"sluice.{NS}.too.many.tokens", b"{}")
        await nc.close()
        seq = await bus.publish(NS, event("real"))
        assert [d.seq for d in await bus.fetch("c", limit=10)] == [seq]
        await bus.ack("c", seq)
        await asyncio.sleep(1)
        assert await bus.fetch("c", limit=10, timeout=0.3) == []
        assert [r.seq for r in await bus.read()] == [seq]
        await bus.close()

    asyncio.run(go())


def test_the_server_enforces_retention_limits_and_compact_has_nothing_to_do(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus(max_msgs=3)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(5)]
        assert [r.seq for r in await bus.read()] == seqs[2:]  # no compact needed
        assert await bus.compact() == 0
        await bus.close()

        # Reopening with other limits updates the stream.
        bus = await open_bus(max_msgs=1)
        assert [r.seq for r in await bus.read()] == seqs[-1:]
        await bus.close()

    asyncio.run(go())


# ------------------------------------------------------------------------------------------- server


def test_an_unreachable_server_is_a_store_error() -> None:
    async def go() -> None:
        started = time.monotonic()
        with pytest.raises(StoreError, match="cannot connect"):
            await JetStreamBus(f"nats://user:secret@127.0.0.1:{free_port()}", connect_timeout=1).open()
        assert time.monotonic() - started < 10

    asyncio.run(go())


def test_error_messages_do_not_show_the_password_in_the_url() -> None:
    async def go() -> None:
        with pytest.raises(StoreError) as err:
            await JetStreamBus(f"nats://user:secret@127.0.0.1:{free_port()}", connect_timeout=1).open()
        assert "secret" not in str(err.value)

    asyncio.run(go())


def test_events_state_and_positions_survive_a_server_restart(
    open_bus: OpenBus, nats_server: NatsServer
) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK], ack_wait=30)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        [first] = await bus.fetch("c")
        assert await bus.ack("c", first.seq, kv_updates=[KVUpdate("s", "t", {"after": first.seq})])
        nats_server.restart()
        # The client reconnects by itself; operations fail with StoreError until it has.
        rest = await eventually(lambda: bus.fetch("c", limit=10, timeout=1))
        assert [d.seq for d in rest] == seqs[1:]
        assert await bus.kv_get("s", "t") == {"after": first.seq}
        assert await bus.publish(NS, event("after-restart")) == seqs[-1] + 1
        await bus.close()

    asyncio.run(go())


# --------------------------------------------------------------------------------------- the runner


def sensor(name: str, deps: list[tuple[str, str, str]], conditions: str | None = None) -> Sensor:
    template: dict[str, Any] = {
        "name": "start",
        "argoWorkflow": {
            "source": {
                "resource": {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Workflow",
                    "metadata": {"generateName": f"{name}-"},
                    "spec": {
                        "entrypoint": "main",
                        "templates": [{"name": "main", "container": {"image": "x"}}],
                    },
                }
            }
        },
    }
    if conditions:
        template["conditions"] = conditions
    return Sensor.parse(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Sensor",
            "metadata": {"name": name},
            "spec": {
                "dependencies": [
                    {"name": dep, "eventSourceName": source, "eventName": ev} for dep, source, ev in deps
                ],
                "triggers": [{"template": template}],
            },
        }
    )


class NoObjects:
    def configmap(self, namespace: str, name: str) -> None:
        return None

    def secret(self, namespace: str, name: str) -> None:
        return None


class Actions:
    """Idempotent by firing key, as a runtime's actions are; ``hang_at`` makes run number N never return
    after acting (the process dies there, before the bus hears of the ack)."""

    def __init__(self, hang_at: int | None = None) -> None:
        self.hang_at = hang_at
        self.keys: list[str] = []
        self.created: list[dict[str, str]] = []  # the dependency -> event id of each object created
        self.hung = asyncio.Event()

    async def fetch_source(self, template: TriggerTemplate, namespace: str) -> Any:
        return None

    def batch(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    async def run(self, action: ObjectAction, firing: Firing) -> str:
        self.keys.append(firing.key)
        if firing.key in self.keys[:-1]:
            return "was already submitted for this firing"
        self.created.append({dep: e.id for dep, e in firing.events.items()})
        if len(self.keys) == self.hang_at:
            self.hung.set()
            await asyncio.Event().wait()
        return "submitted"


async def until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def test_sensor_runner_on_jetstream_acts_once_for_a_firing_redelivered_after_a_crash(
    open_bus: OpenBus,
) -> None:
    s = sensor("build", [("push", "webhook", "example")])

    async def go() -> Actions:
        actions = Actions(hang_at=1)
        bus = await open_bus()
        first = SensorRunner(
            namespace=NS, sensor=s, bus=bus, objects=actions, lookup=NoObjects(), ack_wait=1.0
        )
        await first.start()
        await bus.publish(NS, event("evt-1"))
        await asyncio.wait_for(actions.hung.wait(), 20)
        await first.stop()
        await bus.close()
        # Another process: JetStream redelivers the unacknowledged event once ack_wait has passed.
        bus = await open_bus()
        second = SensorRunner(
            namespace=NS, sensor=s, bus=bus, objects=actions, lookup=NoObjects(), ack_wait=1.0
        )
        await second.start()
        await until(lambda: len(actions.keys) >= 2)
        await bus.publish(NS, event("evt-2"))
        await until(lambda: len(actions.keys) >= 3)
        await second.stop()
        await bus.close()
        return actions

    actions = asyncio.run(go())
    assert len(actions.keys) == 3 and actions.keys[0] == actions.keys[1] != actions.keys[2]
    assert actions.created == [{"push": "evt-1"}, {"push": "evt-2"}]


def test_a_crash_between_the_state_write_and_the_acks_fires_nothing_twice(
    open_bus: OpenBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nats.aio.msg import Msg

    s = sensor("both", [("a", "webhook", "a"), ("b", "calendar", "b")], conditions="a && b")
    consumer = consumer_name(NS, "both", "start")
    filters = [SubjectFilter(NS, src, name) for src, name in compile_sensor(s)[0].subjects()]
    bucket = state_bucket(NS, "both")
    real_ack_sync = Msg.ack_sync
    acks_hang = asyncio.Event()

    async def ack_sync(self: Msg, timeout: float = 1.0) -> Msg:
        if acks_hang.is_set():
            await asyncio.Event().wait()  # the process dies after the state write, before any ack
        return await real_ack_sync(self, timeout=timeout)

    monkeypatch.setattr(Msg, "ack_sync", ack_sync)

    async def wait_until(probe: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + 20
        while not await probe():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)

    async def go() -> tuple[Actions, dict[str, Any] | None]:
        actions = Actions()
        bus = await open_bus()

        async def state() -> dict[str, Any]:
            return (await bus.kv_get(bucket, "start")) or {"held": {}, "seen": []}

        async def settled() -> bool:
            # Re-declaring with the runner's own filters changes nothing and reports what is unacked.
            return (await bus.consumer(consumer, filters, ack_wait=1.0)).ack_pending == 0

        runner = SensorRunner(
            namespace=NS, sensor=s, bus=bus, objects=actions, lookup=NoObjects(), ack_wait=1.0
        )
        await runner.start()
        await bus.publish(NS, event("a-1", "webhook", "a"))

        async def a1_consumed() -> bool:
            return "a" in (await state())["held"] and await settled()

        await wait_until(a1_consumed)
        acks_hang.set()
        await bus.publish(NS, event("b-1", "calendar", "b"))

        async def b1_in_state() -> bool:
            return "b-1" in (await state())["seen"]

        await wait_until(b1_in_state)
        assert len(actions.keys) == 1 and not await settled()
        await runner.stop()
        await bus.close()
        acks_hang.clear()

        # The restarted runner gets b-1 again (never acked) against the state that already consumed it.
        bus = await open_bus()
        runner = SensorRunner(
            namespace=NS, sensor=s, bus=bus, objects=actions, lookup=NoObjects(), ack_wait=1.0
        )
        await runner.start()
        await wait_until(settled)
        await bus.publish(NS, event("a-2", "webhook", "a"))

        async def a2_held() -> bool:
            return "a" in (await state())["held"] and await settled()

        await wait_until(a2_held)
        await runner.stop()
        final = await bus.kv_get(bucket, "start")
        await bus.close()
        return actions, final

    actions, final = asyncio.run(go())
    # One firing, with a-1 and b-1; b-1 redelivered is a duplicate, so a-2 waits for a new b.
    assert actions.created == [{"a": "a-1", "b": "b-1"}] and len(actions.keys) == 1
    assert final is not None and set(final["held"]) == {"a"} and final["held"]["a"]["id"] == "a-2"
