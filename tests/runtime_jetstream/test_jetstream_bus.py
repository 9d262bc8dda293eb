"""The JetStream event bus against a real nats-server: the embedded bus's contract where JetStream keeps
it (order, DeliverNew, redelivery, dedupe, filters, key-value state with acks, the log), what differs
(redelivery after ack_wait rather than on reopening, limits enforced by the server), name escaping, a
server restart, and the sensor runner end to end, including crashes on either side of the state write."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ReferenceError_, SpecError, StoreError
from engine.events.actions import ObjectAction
from engine.events.sensor import Firing, compile_sensor
from engine.runtime.base import EventBus
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
from tests.natsserver import NatsServer, free_port
from tests.runtime_jetstream.conftest import OpenBus

T = TypeVar("T")
NS = "default"
WEBHOOK = SubjectFilter(NS, "webhook", "example")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return asyncio.run(main())


def event(eid: str, source: str = "webhook", name: str = "example", **data: Any) -> dict[str, Any]:
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


def test_jetstream_bus_implements_every_method_of_the_event_bus_port() -> None:
    port = {n for n, v in vars(EventBus).items() if not n.startswith("_") and callable(v)}
    assert port >= {"publish", "consumer", "fetch", "ack", "ack_batch", "kv_put", "read", "compact", "close"}
    for name in sorted(port):
        ours = getattr(JetStreamBus, name)
        assert inspect.iscoroutinefunction(ours), name
        theirs = inspect.signature(getattr(EventBus, name)).parameters
        mine = inspect.signature(ours).parameters
        assert [(p.name, p.kind, p.default) for p in mine.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name


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


# ----------------------------------------------------------------------------------------- contract


def test_fetch_returns_events_in_publish_order_and_ack_removes_them(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("sensor-a", [WEBHOOK])
        seqs = [await bus.publish(NS, event(f"e{i}", n=i)) for i in range(5)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        got = await bus.fetch("sensor-a", limit=3)
        assert [d.seq for d in got] == seqs[:3]
        assert [d.event["data"]["n"] for d in got] == [0, 1, 2]
        assert all(d.deliveries == 1 and d.subject == "default.webhook.example" for d in got)
        assert all(abs(d.published_at - time.time()) < 60 for d in got)
        for d in got:
            assert await bus.ack("sensor-a", d.seq)
        rest = await bus.fetch("sensor-a", limit=10)
        assert [d.seq for d in rest] == seqs[3:]
        for d in rest:
            await bus.ack("sensor-a", d.seq)
        assert await bus.fetch("sensor-a", limit=10) == []
        assert not await bus.ack("sensor-a", seqs[0]), "a second ack of the same event must report False"
        await bus.close()

    run(go)


def test_new_consumer_starts_after_existing_events_unless_asked_for_all(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        old = [await bus.publish(NS, event(f"old{i}")) for i in range(3)]
        info = await bus.consumer("new", [WEBHOOK])
        assert info.created and info.delivered_seq == old[-1]
        assert await bus.fetch("new") == []
        everything = await bus.consumer("all", [WEBHOOK], deliver_all=True)
        assert everything.created and everything.delivered_seq == 0
        fresh = await bus.publish(NS, event("fresh"))
        assert [d.seq for d in await bus.fetch("new", limit=10)] == [fresh]
        assert [d.seq for d in await bus.fetch("all", limit=10)] == [*old, fresh]
        await bus.ack("new", fresh)
        later = await bus.publish(NS, event("later"))
        await bus.close()

        # A durable consumer keeps its position for a new client: re-declaring it does not skip `later`.
        bus = await open_bus()
        await bus.publish(NS, event("after-reconnect"))
        again = await bus.consumer("new", [WEBHOOK], deliver_all=True)
        assert not again.created and again.delivered_seq == fresh
        got = await bus.fetch("new", limit=10)
        assert [d.event["id"] for d in got] == ["later", "after-reconnect"]
        assert got[0].seq == later
        await bus.close()

    run(go)


def test_consumer_gets_only_subjects_its_filters_match(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("pair", [SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick")])
        await bus.consumer("prefix", [SubjectFilter(NS, "webhook")])
        await bus.consumer("other-ns", [SubjectFilter("prod")])
        await bus.consumer("dotted", [SubjectFilter(NS, "webhook.a")])
        await bus.publish(NS, event("1", "webhook", "a"))
        await bus.publish(NS, event("2", "webhook", "b"))
        await bus.publish(NS, event("3", "cal", "tick"))
        await bus.publish("prod", event("4", "webhook", "a"))
        await bus.publish(NS, event("5", "webhook.a", "x"))  # a dot in a name is not a subject separator
        await bus.publish(NS, event("6", "webhook", "a b*>%"))

        async def ids(consumer: str) -> list[str]:
            return [d.event["id"] for d in await bus.fetch(consumer, limit=10)]

        assert await ids("pair") == ["1", "3"]
        assert await ids("prefix") == ["1", "2", "6"]
        assert await ids("other-ns") == ["4"]
        assert await ids("dotted") == ["5"]
        tail = await bus.read(1, 10, [SubjectFilter(NS, "webhook.a")])
        assert [(r.event["id"], r.subject) for r in tail] == [("5", "default.webhook.a.x")]
        odd = await bus.read(1, 10, [SubjectFilter(NS, "webhook", "a b*>%")])
        assert [(r.event["id"], r.namespace) for r in odd] == [("6", NS)]
        await bus.close()

    run(go)


def test_events_a_wide_consumer_filters_out_are_acked_and_never_come_back(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        info = await bus.consumer(
            "pair", [SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick")], ack_wait=0.5
        )
        assert info.filters == (SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick"))
        await bus.publish(NS, event("other", "webhook", "b"))
        mine = await bus.publish(NS, event("mine", "webhook", "a"))
        assert [d.seq for d in await bus.fetch("pair", limit=10)] == [mine]
        assert await bus.ack("pair", mine)
        await asyncio.sleep(1.2)
        assert await bus.fetch("pair", limit=10, timeout=0.3) == []
        await bus.close()

    run(go)


def test_redeclaring_a_consumer_changes_its_filters_and_keeps_its_position(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "example")])
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        assert await bus.ack("c", got[0].seq)
        # More filters under the same covering subject (default.*.example): updated in place.
        wider = [WEBHOOK, SubjectFilter(NS, "cal", "example"), SubjectFilter(NS, "other", "example")]
        info = await bus.consumer("c", wider, ack_wait=10)
        assert not info.created and info.ack_wait == 10 and info.ack_pending == 2
        assert (await bus.consumer("c", wider, ack_wait=10)).ack_pending == 2
        # Another covering subject: the consumer is replaced and resumes at its first unacked event.
        info = await bus.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "tick")], ack_wait=10)
        assert not info.created
        tick = await bus.publish(NS, event("t", "cal", "tick"))
        more = await bus.publish(NS, event("more"))
        again = await bus.fetch("c", limit=10)
        assert [d.seq for d in again] == [*seqs[1:], tick, more]
        assert await bus.ack_batch("c", [d.seq for d in again]) == [d.seq for d in again]
        await bus.close()

        bus = await open_bus()
        info = await bus.consumer("c", [SubjectFilter(NS, "cal", "tick")], ack_wait=10)
        assert not info.created and info.ack_pending == 0
        later = await bus.publish(NS, event("t2", "cal", "tick"))
        await bus.publish(NS, event("not-any-more"))
        assert [d.seq for d in await bus.fetch("c", limit=10)] == [later]
        await bus.close()

    run(go)


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

    run(go)


def test_unacked_event_is_redelivered_after_ack_wait_with_its_delivery_count(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK], ack_wait=1)
        first = await bus.publish(NS, event("a"))
        second = await bus.publish(NS, event("b"))
        assert [d.seq for d in await bus.fetch("c", limit=10)] == [first, second]
        assert await bus.ack("c", second)
        assert await bus.fetch("c", limit=10, timeout=0.5) == []
        again = await bus.fetch("c", limit=10, timeout=5)
        assert [(d.seq, d.deliveries) for d in again] == [(first, 2)]
        third = await bus.fetch("c", limit=10, timeout=5)
        assert [(d.seq, d.deliveries) for d in third] == [(first, 3)]
        assert await bus.ack("c", first)
        assert await bus.fetch("c", timeout=1.5) == []
        await bus.close()

    run(go)


def test_waiting_fetch_wakes_when_a_delivery_passes_its_ack_wait(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK], ack_wait=0.5)
        seq = await bus.publish(NS, event("a"))
        assert [d.seq for d in await bus.fetch("c")] == [seq]
        # The fetch's own timeout is far longer than the guard: only the redelivery can end it.
        again = await asyncio.wait_for(bus.fetch("c", timeout=120), 20)
        assert [(d.seq, d.deliveries) for d in again] == [(seq, 2)]
        await bus.close()

    run(go)


def test_nak_hands_a_delivery_out_again_before_ack_wait(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK], ack_wait=60)
        seq = await bus.publish(NS, event("a"))
        await bus.fetch("c")
        assert await bus.nak("c", seq, delay=1.0)
        assert await bus.fetch("c", timeout=0.5) == []
        assert [(d.seq, d.deliveries) for d in await bus.fetch("c", timeout=5)] == [(seq, 2)]
        assert not await bus.nak("c", seq + 100)
        assert await bus.nak("c", seq)  # no delay: due at once
        assert [(d.seq, d.deliveries) for d in await bus.fetch("c", timeout=5)] == [(seq, 3)]
        await bus.close()

    run(go)


def test_deliveries_a_closed_bus_held_come_back_to_a_new_bus_after_ack_wait(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK], ack_wait=1)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        await bus.ack("c", got[1].seq)
        await bus.close()

        bus = await open_bus()
        # The new client holds nothing yet: an ack of what the old one fetched applies nothing.
        assert not await bus.ack("c", seqs[0], kv_updates=[KVUpdate("s", "k", {"stale": True})])
        assert await bus.kv_get("s", "k") is None
        again = await bus.fetch("c", limit=10, timeout=5)
        assert [(d.seq, d.deliveries) for d in again] == [(seqs[0], 2), (seqs[2], 2)]
        await bus.close()

    run(go)


def test_long_poll_fetch_returns_when_a_matching_event_is_published(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        writer = await open_bus()
        await bus.consumer("c", [WEBHOOK])
        waiting = asyncio.ensure_future(bus.fetch("c", timeout=120))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await writer.publish(NS, event("other", "cal", "tick"))  # not for this consumer
        await asyncio.sleep(0.2)
        assert not waiting.done()
        seq = await writer.publish(NS, event("mine"))
        got = await asyncio.wait_for(waiting, 20)
        assert [d.seq for d in got] == [seq]
        assert await bus.fetch("c", timeout=0.1) == []
        await writer.close()
        await bus.close()

    run(go)


def test_long_poll_returns_every_event_that_is_due_with_the_first(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK])
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(20)]
        started = time.monotonic()
        got = await bus.fetch("c", limit=100, timeout=30)
        assert [d.seq for d in got] == seqs
        assert time.monotonic() - started < 5, "a fetch with events due must not wait for its timeout"
        await bus.close()

    run(go)


def test_publish_is_idempotent_per_namespace_source_and_id(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [SubjectFilter(NS)], deliver_all=True)
        first = await bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick"))
        retries = await asyncio.gather(
            *(bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick")) for _ in range(5))
        )
        assert set(retries) == {first}
        other_source = await bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal2", "tick"))
        other_ns = await bus.publish("prod", event("fire-2026-01-01T00:05:00Z", "cal", "tick"))
        # Parts are escaped in the message id: "a/b" + "c" is not "a" + "b/c".
        slashed = await bus.publish(NS, event("c", "a/b", "tick"))
        other_split = await bus.publish(NS, event("b/c", "a", "tick"))
        assert len({first, other_source, other_ns, slashed, other_split}) == 5
        got = await bus.fetch("c", limit=10)
        assert [d.seq for d in got] == [first, other_source, slashed, other_split]
        await bus.close()

        bus = await open_bus()
        assert await bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick")) == first
        await bus.close()

    run(go)


def test_invalid_events_are_refused_with_the_field_at_fault(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus(max_event_bytes=1000)
        bad = event("x")
        del bad["source"]
        with pytest.raises(SpecError) as err:
            await bus.publish(NS, bad)
        assert [p.path for p in err.value.problems] == ["event.source"]
        with pytest.raises(SpecError, match="JSON"):
            await bus.publish(NS, event("y", value=float("nan")))
        with pytest.raises(SpecError, match="bytes"):
            await bus.publish(NS, event("z", blob="é" * 600))
        with pytest.raises(SpecError, match="namespace"):
            await bus.publish("", event("w"))
        assert await bus.read() == []
        assert await bus.last_seq() == 0
        await bus.close()

    run(go)


def test_ack_writes_kv_updates_with_it_and_a_stale_ack_applies_none(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("sensor.trigger", [WEBHOOK], ack_wait=0.5)
        seq = await bus.publish(NS, event("a"))
        [first] = await bus.fetch("sensor.trigger")
        [second] = await bus.fetch("sensor.trigger", timeout=5)  # the same event handed out again
        assert second.seq == seq and second.deliveries == 2
        update = KVUpdate("sensor", "trigger/dep-a", {"event": first.event})
        await bus.kv_put("sensor", "gone", {"x": 1})
        assert await bus.ack("sensor.trigger", seq, kv_updates=[update, KVUpdate("sensor", "gone", None)])
        stale = KVUpdate("sensor", "trigger/dep-a", {"event": "stale"})
        assert not await bus.ack("sensor.trigger", seq, kv_updates=[stale])
        assert await bus.kv_list("sensor") == {"trigger/dep-a": {"event": first.event}}
        await bus.close()

        # Both the ack and its update hold for a new client: no redelivery, state present.
        bus = await open_bus()
        assert await bus.fetch("sensor.trigger", timeout=1.5) == []
        assert await bus.kv_list("sensor") == {"trigger/dep-a": {"event": first.event}}
        await bus.close()

    run(go)


def test_ack_batch_acks_a_fetched_batch_and_writes_its_state(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK], ack_wait=1)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        await bus.ack("c", got[0].seq)
        state = KVUpdate("sensor", "trigger", {"last": "e2"})
        assert await bus.ack_batch("c", [d.seq for d in got], kv_updates=[state]) == seqs[1:]
        assert await bus.kv_get("sensor", "trigger") == {"last": "e2"}
        stale = KVUpdate("sensor", "trigger", {"last": "stale"})
        assert await bus.ack_batch("c", seqs, kv_updates=[stale]) == []
        await bus.close()

        bus = await open_bus()
        assert await bus.fetch("c", limit=10, timeout=2) == []
        assert await bus.kv_get("sensor", "trigger") == {"last": "e2"}
        await bus.close()

    run(go)


def test_ack_with_a_value_that_cannot_be_stored_leaves_the_event_pending(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK])
        seq = await bus.publish(NS, event("a"))
        await bus.fetch("c")
        with pytest.raises(SpecError):
            await bus.ack("c", seq, kv_updates=[KVUpdate("b", "k", {"bad": object()})])
        assert await bus.kv_get("b", "k") is None
        assert await bus.ack("c", seq, kv_updates=[KVUpdate("b", "k", {"ok": 1})])
        assert await bus.kv_get("b", "k") == {"ok": 1}
        await bus.close()

    run(go)


def test_kv_put_get_list_delete(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        assert await bus.kv_list("s1") == {}
        await bus.kv_put("s1", "t/a", {"n": 1})
        await bus.kv_put("s1", "t/b", {"n": 2})
        await bus.kv_put("s1", "t/a", {"n": 3})
        await bus.kv_put("s2", "t/a", {"n": 4})
        # Keys and buckets outside KV's alphabet, and prefixes of one another, stay apart.
        await bus.kv_put("s1.x", "a.b c", {"n": 5})
        await bus.kv_put("s1", "", {"n": 6})
        await bus.kv_put("sensor/ns/é", "ü=", {"n": 7})
        assert await bus.kv_get("s1", "t/a") == {"n": 3}
        assert await bus.kv_get("s1", "missing") is None
        assert await bus.kv_list("s1") == {"": {"n": 6}, "t/a": {"n": 3}, "t/b": {"n": 2}}
        assert await bus.kv_list("s1.x") == {"a.b c": {"n": 5}}
        assert await bus.kv_list("sensor/ns/é") == {"ü=": {"n": 7}}
        assert await bus.kv_delete("s1", "t/a")
        assert not await bus.kv_delete("s1", "t/a")
        assert await bus.kv_get("s1", "t/a") is None
        assert await bus.kv_list("s1") == {"": {"n": 6}, "t/b": {"n": 2}}
        assert await bus.kv_list("s2") == {"t/a": {"n": 4}}
        await bus.close()

    run(go)


def test_read_returns_the_log_from_a_sequence_number_with_filters(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        assert await bus.read() == [] and await bus.last_seq() == 0
        seqs = [await bus.publish(NS, event(f"e{i}", "webhook" if i % 2 else "cal", "x")) for i in range(6)]
        records = await bus.read()
        assert [r.seq for r in records] == seqs
        assert [r.event["id"] for r in records] == [f"e{i}" for i in range(6)]
        assert [r.seq for r in await bus.read(seqs[2], 2)] == seqs[2:4]
        webhook = await bus.read(1, 100, [SubjectFilter(NS, "webhook")])
        assert [r.event["id"] for r in webhook] == ["e1", "e3", "e5"]
        both = await bus.read(
            seqs[1], 100, [SubjectFilter(NS, "webhook", "x"), SubjectFilter(NS, "cal", "x")]
        )
        assert [r.seq for r in both] == seqs[1:]
        assert await bus.read(seqs[-1] + 1) == []
        assert await bus.last_seq() == seqs[-1]
        await bus.close()

    run(go)


def test_the_server_enforces_retention_limits_and_compact_has_nothing_to_do(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus(max_msgs=3)
        await bus.consumer("c", [WEBHOOK], deliver_all=True, ack_wait=30)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(5)]
        assert [r.seq for r in await bus.read()] == seqs[2:]
        assert await bus.compact() == 0
        assert [(d.seq, d.deliveries) for d in await bus.fetch("c", limit=10)] == [(s, 1) for s in seqs[2:]]
        assert await bus.last_seq() == seqs[-1]
        await bus.close()

        # Reopening with other limits updates the stream.
        bus = await open_bus(max_msgs=1)
        assert [r.seq for r in await bus.read()] == seqs[-1:]
        await bus.close()

    run(go)


def test_close_lets_publishes_under_way_finish_and_refuses_new_ones(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        tasks = [asyncio.ensure_future(bus.publish(NS, event(f"e{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # the publishes are under way, none awaited
        await bus.close()
        seqs = await asyncio.gather(*tasks)
        with pytest.raises(StoreError, match="closed"):
            await bus.publish(NS, event("late"))
        reader = await open_bus()
        assert [r.seq for r in await reader.read(1, 100)] == sorted(seqs)
        await reader.close()

    run(go)


def test_close_ends_a_waiting_fetch_with_store_error(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        await bus.consumer("c", [WEBHOOK])
        waiting = asyncio.ensure_future(bus.fetch("c", timeout=120))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(bus.close(), 20)
        with pytest.raises(StoreError, match="closed"):
            await asyncio.wait_for(waiting, 20)

    run(go)


def test_fetch_from_an_unknown_or_deleted_consumer_raises_reference_error(open_bus: OpenBus) -> None:
    async def go() -> None:
        bus = await open_bus()
        with pytest.raises(ReferenceError_, match="nope"):
            await bus.fetch("nope")
        await bus.consumer("c", [WEBHOOK])
        other = await open_bus()
        assert await other.delete_consumer("c")
        assert not await other.delete_consumer("c")
        with pytest.raises(ReferenceError_):
            await bus.fetch("c", timeout=1)
        await other.close()
        # Deleted by the bus a fetch waits on: the fetch ends at once.
        await bus.consumer("d", [WEBHOOK])
        waiting = asyncio.ensure_future(bus.fetch("d", timeout=120))
        await asyncio.sleep(0.2)
        assert await bus.delete_consumer("d")
        with pytest.raises(ReferenceError_, match="deleted"):
            await asyncio.wait_for(waiting, 20)
        await bus.close()

    run(go)


def test_a_consumer_with_many_filters_works_from_a_bus_that_did_not_declare_it(open_bus: OpenBus) -> None:
    async def go() -> None:
        filters = [SubjectFilter(NS, f"source-{i:03d}-with-a-rather-long-name", "event") for i in range(150)]
        declaring = await open_bus()
        await declaring.consumer("wide", filters, ack_wait=30)
        await declaring.close()
        bus = await open_bus()
        await bus.publish(NS, event("no", "source-999-with-a-rather-long-name", "event"))
        yes = await bus.publish(NS, event("yes", "source-042-with-a-rather-long-name", "event"))
        assert [d.seq for d in await bus.fetch("wide", limit=10)] == [yes]
        assert await bus.delete_consumer("wide")
        await bus.close()

    run(go)


def test_an_unreachable_server_is_a_store_error() -> None:
    async def go() -> None:
        started = time.monotonic()
        with pytest.raises(StoreError, match="cannot connect"):
            await JetStreamBus(f"nats://user:secret@127.0.0.1:{free_port()}", connect_timeout=1).open()
        assert time.monotonic() - started < 10

    run(go)


def test_error_messages_do_not_show_the_password_in_the_url() -> None:
    async def go() -> None:
        with pytest.raises(StoreError) as err:
            await JetStreamBus(f"nats://user:secret@127.0.0.1:{free_port()}", connect_timeout=1).open()
        assert "secret" not in str(err.value)

    run(go)


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

    run(go)


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

    def load_source(self, template: TriggerTemplate, namespace: str) -> Any:
        return None

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

    actions = run(go)
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

    actions, final = run(go)
    # One firing, with a-1 and b-1; b-1 redelivered is a duplicate, so a-2 waits for a new b.
    assert actions.created == [{"a": "a-1", "b": "b-1"}] and len(actions.keys) == 1
    assert final is not None and set(final["held"]) == {"a"} and final["held"]["a"]["id"] == "a-2"
