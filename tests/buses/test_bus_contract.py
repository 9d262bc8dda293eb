"""The event bus contract (:class:`engine.runtime.base.EventBus`), written once and run on both buses:
the embedded SQLite bus and the JetStream bus on a real nats-server (the ``bus`` fixture of
tests/buses/conftest.py).

Order, DeliverNew and deliver_all, filters, redelivery after ``ack_wait`` with its count, nak, long-poll
fetches, dedupe, refused events, key-value state written with acks, the log, retention limits, close,
and deleted consumers. What only one bus does (group commit, crash files, stream and consumer naming,
server restarts) and where the two differ is tested in tests/runtime_local/test_eventbus.py and
tests/runtime_jetstream/test_jetstream_bus.py.

"A new bus" below is the same bus opened again after ``close``: the embedded bus after a restart of its
process, a second client on the JetStream server. ``bus.let_time_pass`` moves the embedded bus's clock
and sleeps for the JetStream one, whose server keeps the time.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from engine.errors import ReferenceError_, SpecError, StoreError
from engine.runtime.base import EventBus
from engine.runtime.busmodel import KVUpdate, SubjectFilter
from engine.runtime.jetstream import JetStreamBus
from engine.runtime.local.eventbus import LocalEventBus
from tests.buses.support import NS, WEBHOOK, Backend, event, waiting_fetch

# --------------------------------------------------------------------------- the port and its records


@pytest.mark.parametrize("implementation", [LocalEventBus, JetStreamBus], ids=["embedded", "jetstream"])
def test_bus_implements_every_method_of_the_event_bus_port(implementation: type) -> None:
    port = {n for n, v in vars(EventBus).items() if not n.startswith("_") and callable(v)}
    assert port >= {"publish", "consumer", "fetch", "ack", "ack_batch", "kv_put", "read", "compact", "close"}
    for name in sorted(port):
        ours = getattr(implementation, name)
        assert inspect.iscoroutinefunction(ours), name
        theirs = inspect.signature(getattr(EventBus, name)).parameters
        mine = inspect.signature(ours).parameters
        assert [(p.name, p.kind, p.default) for p in mine.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name


def test_subject_filter_key_spells_jetstream_wildcards() -> None:
    assert SubjectFilter(NS, "webhook", "a").key() == "default.webhook.a"
    assert SubjectFilter(NS, "webhook").key() == "default.webhook.>"
    assert SubjectFilter(NS, None, "a").key() == "default.*.a"
    assert SubjectFilter().key() == ">"


# ------------------------------------------------------------------------------- order and consumers


def test_fetch_returns_events_in_publish_order_and_ack_removes_them(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("sensor-a", [WEBHOOK])
        seqs = [await eb.publish(NS, event(f"e{i}", n=i)) for i in range(5)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        got = await eb.fetch("sensor-a", limit=3)
        assert [d.seq for d in got] == seqs[:3]
        assert [d.event["data"]["n"] for d in got] == [0, 1, 2]
        assert all(d.deliveries == 1 and d.subject == "default.webhook.example" for d in got)
        assert all(abs(d.published_at - time.time()) < 60 for d in got)
        for d in got:
            assert await eb.ack("sensor-a", d.seq)
        rest = await eb.fetch("sensor-a", limit=10)
        assert [d.seq for d in rest] == seqs[3:]
        for d in rest:
            await eb.ack("sensor-a", d.seq)
        assert await eb.fetch("sensor-a", limit=10) == []
        assert not await eb.ack("sensor-a", seqs[0]), "a second ack of the same event must report False"
        await eb.close()

    asyncio.run(go())


def test_new_consumer_starts_after_existing_events_unless_asked_for_all(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        old = [await eb.publish(NS, event(f"old{i}")) for i in range(3)]
        info = await eb.consumer("new", [WEBHOOK])
        assert info.created and info.delivered_seq == old[-1]
        assert await eb.fetch("new") == []
        everything = await eb.consumer("all", [WEBHOOK], deliver_all=True)
        assert everything.created and everything.delivered_seq == 0
        fresh = await eb.publish(NS, event("fresh"))
        assert [d.seq for d in await eb.fetch("new", limit=10)] == [fresh]
        assert [d.seq for d in await eb.fetch("all", limit=10)] == [*old, fresh]
        await eb.ack("new", fresh)
        later = await eb.publish(NS, event("later"))
        await eb.close()

        # A durable consumer keeps its position for a new bus: re-declaring it, with or without
        # deliver_all, neither skips `later` nor starts over.
        eb = await bus.open()
        await eb.publish(NS, event("after-reopening"))
        again = await eb.consumer("new", [WEBHOOK])
        assert not again.created and again.delivered_seq == fresh
        again = await eb.consumer("new", [WEBHOOK], deliver_all=True)
        assert not again.created and again.delivered_seq == fresh
        got = await eb.fetch("new", limit=10)
        assert [d.event["id"] for d in got] == ["later", "after-reopening"]
        assert got[0].seq == later
        await eb.close()

    asyncio.run(go())


def test_consumer_gets_only_subjects_its_filters_match(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("pair", [SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick")])
        await eb.consumer("prefix", [SubjectFilter(NS, "webhook")])
        await eb.consumer("other-ns", [SubjectFilter("prod")])
        await eb.consumer("dotted", [SubjectFilter(NS, "webhook.a")])
        await eb.publish(NS, event("1", "webhook", "a"))
        await eb.publish(NS, event("2", "webhook", "b"))
        await eb.publish(NS, event("3", "cal", "tick"))
        await eb.publish("prod", event("4", "webhook", "a"))
        await eb.publish(NS, event("5", "webhook.a", "x"))  # a dot in a name is not a subject separator
        await eb.publish(NS, event("6", "webhook", "a b*>%"))

        async def ids(consumer: str) -> list[str]:
            return [d.event["id"] for d in await eb.fetch(consumer, limit=10)]

        assert await ids("pair") == ["1", "3"]
        assert await ids("prefix") == ["1", "2", "6"]
        assert await ids("other-ns") == ["4"]
        assert await ids("dotted") == ["5"]
        tail = await eb.read(1, 10, [SubjectFilter(NS, "webhook.a")])
        assert [(r.event["id"], r.subject) for r in tail] == [("5", "default.webhook.a.x")]
        odd = await eb.read(1, 10, [SubjectFilter(NS, "webhook", "a b*>%")])
        assert [(r.event["id"], r.namespace) for r in odd] == [("6", NS)]
        await eb.close()

    asyncio.run(go())


def test_events_no_filter_of_a_consumer_matches_never_come_to_it(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        info = await eb.consumer(
            "pair", [SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick")], ack_wait=0.5
        )
        assert info.filters == (SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick"))
        await eb.publish(NS, event("other", "webhook", "b"))
        mine = await eb.publish(NS, event("mine", "webhook", "a"))
        assert [d.seq for d in await eb.fetch("pair", limit=10)] == [mine]
        assert await eb.ack("pair", mine)
        await bus.let_time_pass(1.2)  # past ack_wait: nothing filtered out comes back either
        assert await eb.fetch("pair", limit=10, timeout=0.3) == []
        await eb.close()

    asyncio.run(go())


def test_redeclaring_a_consumer_updates_its_filters_and_ack_wait_and_keeps_its_position(
    bus: Backend,
) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "example")])
        seqs = [await eb.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await eb.fetch("c", limit=10)
        assert await eb.ack("c", got[0].seq)
        wider = [WEBHOOK, SubjectFilter(NS, "cal", "example"), SubjectFilter(NS, "other", "example")]
        info = await eb.consumer("c", wider, ack_wait=10)
        assert not info.created and info.ack_wait == 10 and info.ack_pending == 2
        assert info.filters == tuple(wider)
        assert (await eb.consumer("c", wider, ack_wait=10)).ack_pending == 2
        assert await eb.ack_batch("c", seqs[1:]) == seqs[1:]
        # What becomes of events still pending when the filters change differs between the buses:
        # see test_eventbus.py and test_jetstream_bus.py.
        info = await eb.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "tick")], ack_wait=10)
        assert not info.created and info.ack_pending == 0
        tick = await eb.publish(NS, event("t", "cal", "tick"))
        more = await eb.publish(NS, event("more"))
        again = await eb.fetch("c", limit=10)
        assert [d.seq for d in again] == [tick, more]
        assert await eb.ack_batch("c", [d.seq for d in again]) == [tick, more]
        await eb.close()

        eb = await bus.open()
        info = await eb.consumer("c", [SubjectFilter(NS, "cal", "tick")], ack_wait=10)
        assert not info.created and info.ack_pending == 0
        later = await eb.publish(NS, event("t2", "cal", "tick"))
        await eb.publish(NS, event("not-any-more"))
        assert [d.seq for d in await eb.fetch("c", limit=10)] == [later]
        await eb.close()

    asyncio.run(go())


def test_a_consumer_with_many_filters_works_from_a_bus_that_did_not_declare_it(bus: Backend) -> None:
    async def go() -> None:
        filters = [SubjectFilter(NS, f"source-{i:03d}-with-a-rather-long-name", "event") for i in range(150)]
        declaring = await bus.open()
        await declaring.consumer("wide", filters, ack_wait=30)
        await declaring.close()
        eb = await bus.open()
        await eb.publish(NS, event("no", "source-999-with-a-rather-long-name", "event"))
        yes = await eb.publish(NS, event("yes", "source-042-with-a-rather-long-name", "event"))
        assert [d.seq for d in await eb.fetch("wide", limit=10)] == [yes]
        assert await eb.delete_consumer("wide")
        await eb.close()

    asyncio.run(go())


def test_fetch_from_an_unknown_or_deleted_consumer_raises_reference_error(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        with pytest.raises(ReferenceError_, match="nope"):
            await eb.fetch("nope")
        await eb.consumer("c", [WEBHOOK])
        assert await eb.delete_consumer("c")
        assert not await eb.delete_consumer("c")
        with pytest.raises(ReferenceError_, match="'c'"):
            await eb.fetch("c", timeout=1)
        # Deleted while a fetch waits on it: the fetch ends at once.
        await eb.consumer("d", [WEBHOOK])
        waiting = await waiting_fetch(eb, "d")
        assert await eb.delete_consumer("d")
        with pytest.raises(ReferenceError_, match="'d'"):
            await asyncio.wait_for(waiting, 20)
        await eb.close()

    asyncio.run(go())


# -------------------------------------------------------------------------------- redelivery and nak


def test_unacked_event_is_redelivered_after_ack_wait_with_its_delivery_count(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK], ack_wait=1)
        first = await eb.publish(NS, event("a"))
        second = await eb.publish(NS, event("b"))
        assert [d.seq for d in await eb.fetch("c", limit=10)] == [first, second]
        assert await eb.ack("c", second)
        await bus.let_time_pass(0.5)
        assert await eb.fetch("c", limit=10) == []
        await bus.let_time_pass(0.6)
        again = await eb.fetch("c", limit=10, timeout=5)
        assert [(d.seq, d.deliveries) for d in again] == [(first, 2)]
        await bus.let_time_pass(1.1)
        third = await eb.fetch("c", limit=10, timeout=5)
        assert [(d.seq, d.deliveries) for d in third] == [(first, 3)]
        assert await eb.ack("c", first)
        await bus.let_time_pass(1.5)
        assert await eb.fetch("c", timeout=0.2) == []
        await eb.close()

    asyncio.run(go())


def test_waiting_fetch_wakes_when_a_delivery_passes_its_ack_wait(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK], ack_wait=0.5)
        seq = await eb.publish(NS, event("a"))
        assert [d.seq for d in await eb.fetch("c")] == [seq]
        # The fetch's own timeout is far longer than the guard: only the redelivery can end it.
        again = await asyncio.wait_for(eb.fetch("c", timeout=120), 20)
        assert [(d.seq, d.deliveries) for d in again] == [(seq, 2)]
        await eb.close()

    asyncio.run(go())


def test_nak_hands_a_delivery_out_again_before_ack_wait(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK], ack_wait=60)
        seq = await eb.publish(NS, event("a"))
        await eb.fetch("c")
        assert await eb.nak("c", seq, delay=1.0)
        await bus.let_time_pass(0.5)
        assert await eb.fetch("c") == []
        await bus.let_time_pass(0.6)
        assert [(d.seq, d.deliveries) for d in await eb.fetch("c", timeout=5)] == [(seq, 2)]
        assert not await eb.nak("c", seq + 100)
        assert await eb.nak("c", seq)  # no delay: due at once
        assert [(d.seq, d.deliveries) for d in await eb.fetch("c", timeout=5)] == [(seq, 3)]
        await eb.close()

    asyncio.run(go())


def test_deliveries_a_closed_bus_held_come_back_to_a_new_bus(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK], ack_wait=1)
        seqs = [await eb.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await eb.fetch("c", limit=10)
        await eb.ack("c", got[1].seq)
        await eb.close()

        # When they come back (at once, or once ack_wait passed) differs: see the tests of each bus.
        eb = await bus.open()
        await bus.let_time_pass(1.0)
        again = await eb.fetch("c", limit=10, timeout=5)
        assert [(d.seq, d.deliveries) for d in again] == [(seqs[0], 2), (seqs[2], 2)]
        await eb.close()

    asyncio.run(go())


# --------------------------------------------------------------------------------------- long polls


def test_long_poll_fetch_returns_when_a_matching_event_is_published(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK])
        waiting = await waiting_fetch(eb, "c")
        await eb.publish(NS, event("other", "cal", "tick"))  # not for this consumer
        await asyncio.sleep(0.2)
        assert not waiting.done()
        seq = await eb.publish(NS, event("mine"))
        got = await asyncio.wait_for(waiting, 20)
        assert [d.seq for d in got] == [seq]
        assert await eb.fetch("c", timeout=0.1) == []
        await eb.close()

    asyncio.run(go())


def test_long_poll_returns_every_event_that_is_due_with_the_first(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK])
        seqs = [await eb.publish(NS, event(f"e{i}")) for i in range(20)]
        started = time.monotonic()
        got = await eb.fetch("c", limit=100, timeout=30)
        assert [d.seq for d in got] == seqs
        assert time.monotonic() - started < 5, "a fetch with events due must not wait for its timeout"
        await eb.close()

    asyncio.run(go())


# ------------------------------------------------------------------------------------------ publish


def test_publish_is_idempotent_per_namespace_source_and_id(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [SubjectFilter(NS)], deliver_all=True)
        first = await eb.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick"))
        retries = await asyncio.gather(
            *(eb.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick")) for _ in range(5))
        )
        assert set(retries) == {first}
        other_source = await eb.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal2", "tick"))
        other_ns = await eb.publish("prod", event("fire-2026-01-01T00:05:00Z", "cal", "tick"))
        # The parts stay apart: source "a/b" with id "c" is not source "a" with id "b/c".
        slashed = await eb.publish(NS, event("c", "a/b", "tick"))
        other_split = await eb.publish(NS, event("b/c", "a", "tick"))
        assert len({first, other_source, other_ns, slashed, other_split}) == 5
        got = await eb.fetch("c", limit=10)
        assert [d.seq for d in got] == [first, other_source, slashed, other_split]
        await eb.close()

        eb = await bus.open()
        assert await eb.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick")) == first
        await eb.close()

    asyncio.run(go())


def test_invalid_events_are_refused_with_the_field_at_fault(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open(max_event_bytes=1000)
        bad = event("x")
        del bad["source"]
        with pytest.raises(SpecError) as err:
            await eb.publish(NS, bad)
        assert [p.path for p in err.value.problems] == ["event.source"]
        with pytest.raises(SpecError, match="JSON"):
            await eb.publish(NS, event("y", value=float("nan")))
        with pytest.raises(SpecError, match="bytes"):
            await eb.publish(NS, event("z", blob="é" * 600))
        with pytest.raises(SpecError, match="namespace"):
            await eb.publish("", event("w"))
        assert await eb.read() == []
        assert await eb.last_seq() == 0
        await eb.close()

    asyncio.run(go())


# ------------------------------------------------------------------------------ acks and their state


def test_ack_applies_kv_updates_with_it_and_a_stale_ack_applies_none(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("sensor.trigger", [WEBHOOK], ack_wait=0.5)
        seq = await eb.publish(NS, event("a"))
        [first] = await eb.fetch("sensor.trigger")
        await bus.let_time_pass(0.6)
        [second] = await eb.fetch("sensor.trigger", timeout=5)  # the same event handed out again
        assert second.seq == seq and second.deliveries == 2
        update = KVUpdate("sensor", "trigger/dep-a", {"event": first.event})
        await eb.kv_put("sensor", "gone", {"x": 1})
        deletes = [KVUpdate("sensor", "gone", None), KVUpdate("sensor", "never-there", None)]
        assert await eb.ack("sensor.trigger", seq, kv_updates=[update, *deletes])
        stale = KVUpdate("sensor", "trigger/dep-a", {"event": "stale"})
        assert not await eb.ack("sensor.trigger", seq, kv_updates=[stale])
        assert await eb.kv_get("sensor", "trigger/dep-a") == {"event": first.event}
        assert await eb.kv_list("sensor") == {"trigger/dep-a": {"event": first.event}}
        await eb.close()

        # Both the ack and its update hold for a new bus: no redelivery, state present.
        eb = await bus.open()
        await bus.let_time_pass(1.0)
        assert await eb.fetch("sensor.trigger", timeout=0.5) == []
        assert await eb.kv_list("sensor") == {"trigger/dep-a": {"event": first.event}}
        await eb.close()

    asyncio.run(go())


def test_ack_batch_acks_a_fetched_batch_and_applies_its_state(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK], ack_wait=1)
        seqs = [await eb.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await eb.fetch("c", limit=10)
        await eb.ack("c", got[0].seq)
        state = KVUpdate("sensor", "trigger", {"last": "e2"})
        assert await eb.ack_batch("c", [d.seq for d in got], kv_updates=[state]) == seqs[1:]
        assert await eb.kv_get("sensor", "trigger") == {"last": "e2"}
        stale = KVUpdate("sensor", "trigger", {"last": "stale"})
        assert await eb.ack_batch("c", seqs, kv_updates=[stale]) == []
        await eb.close()

        eb = await bus.open()
        await bus.let_time_pass(1.5)
        assert await eb.fetch("c", limit=10, timeout=0.5) == []
        assert await eb.kv_get("sensor", "trigger") == {"last": "e2"}
        await eb.close()

    asyncio.run(go())


def test_ack_with_a_value_that_cannot_be_stored_leaves_the_event_pending(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK])
        seq = await eb.publish(NS, event("a"))
        await eb.fetch("c")
        with pytest.raises(SpecError):
            await eb.ack("c", seq, kv_updates=[KVUpdate("b", "k", {"bad": object()})])
        assert await eb.kv_get("b", "k") is None
        assert [r.seq for r in await eb.read()] == [seq]
        assert await eb.ack("c", seq, kv_updates=[KVUpdate("b", "k", {"ok": 1})])
        assert await eb.kv_get("b", "k") == {"ok": 1}
        await eb.close()

    asyncio.run(go())


def test_kv_put_get_list_delete(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        assert await eb.kv_list("s1") == {}
        await eb.kv_put("s1", "t/a", {"n": 1})
        await eb.kv_put("s1", "t/b", {"n": 2})
        await eb.kv_put("s1", "t/a", {"n": 3})
        await eb.kv_put("s2", "t/a", {"n": 4})
        # Keys and buckets outside JetStream KV's alphabet, and prefixes of one another, stay apart.
        await eb.kv_put("s1.x", "a.b c", {"n": 5})
        await eb.kv_put("s1", "", {"n": 6})
        await eb.kv_put("sensor/ns/é", "ü=", {"n": 7})
        assert await eb.kv_get("s1", "t/a") == {"n": 3}
        assert await eb.kv_get("s1", "missing") is None
        assert await eb.kv_list("s1") == {"": {"n": 6}, "t/a": {"n": 3}, "t/b": {"n": 2}}
        assert await eb.kv_list("s1.x") == {"a.b c": {"n": 5}}
        assert await eb.kv_list("sensor/ns/é") == {"ü=": {"n": 7}}
        assert await eb.kv_delete("s1", "t/a")
        assert not await eb.kv_delete("s1", "t/a")
        assert await eb.kv_get("s1", "t/a") is None
        assert await eb.kv_list("s1") == {"": {"n": 6}, "t/b": {"n": 2}}
        assert await eb.kv_list("s2") == {"t/a": {"n": 4}}
        await eb.close()

    asyncio.run(go())


# --------------------------------------------------------------------------------- the log and limits


def test_read_returns_the_log_from_a_sequence_number_with_filters(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        assert await eb.read() == [] and await eb.last_seq() == 0
        seqs = [await eb.publish(NS, event(f"e{i}", "webhook" if i % 2 else "cal", "x")) for i in range(6)]
        records = await eb.read()
        assert [r.seq for r in records] == seqs
        assert [r.event["id"] for r in records] == [f"e{i}" for i in range(6)]
        assert [r.seq for r in await eb.read(seqs[2], 2)] == seqs[2:4]
        webhook = await eb.read(1, 100, [SubjectFilter(NS, "webhook")])
        assert [r.event["id"] for r in webhook] == ["e1", "e3", "e5"]
        both = await eb.read(seqs[1], 100, [SubjectFilter(NS, "webhook", "x"), SubjectFilter(NS, "cal", "x")])
        assert [r.seq for r in both] == seqs[1:]
        assert await eb.read(seqs[-1] + 1) == []
        assert await eb.last_seq() == seqs[-1]
        await eb.close()

    asyncio.run(go())


def test_retention_keeps_the_newest_max_msgs_events_and_never_reuses_a_sequence_number(
    bus: Backend,
) -> None:
    async def go() -> None:
        # When the limit applies (on compact, or as events arrive) differs: see the tests of each bus.
        eb = await bus.open(max_msgs=3, max_age=None)
        await eb.consumer("c", [WEBHOOK], deliver_all=True, ack_wait=30)
        seqs = [await eb.publish(NS, event(f"e{i}")) for i in range(5)]
        await eb.compact()
        assert [r.seq for r in await eb.read()] == seqs[2:]
        assert [(d.seq, d.deliveries) for d in await eb.fetch("c", limit=10)] == [(s, 1) for s in seqs[2:]]
        assert await eb.last_seq() == seqs[-1]
        after = await eb.publish(NS, event("after"))
        assert after == seqs[-1] + 1 and await eb.last_seq() == after
        await eb.close()

    asyncio.run(go())


# ------------------------------------------------------------------------------------------- closing


def test_close_lets_publishes_under_way_finish_and_refuses_new_ones(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        tasks = [asyncio.ensure_future(eb.publish(NS, event(f"e{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # the publishes are under way, none awaited
        await eb.close()
        seqs = await asyncio.gather(*tasks)
        with pytest.raises(StoreError, match="closed"):
            await eb.publish(NS, event("late"))
        reader = await bus.open()
        assert [r.seq for r in await reader.read(1, 100)] == sorted(seqs)
        await reader.close()

    asyncio.run(go())


def test_close_ends_a_waiting_fetch_with_store_error(bus: Backend) -> None:
    async def go() -> None:
        eb = await bus.open()
        await eb.consumer("c", [WEBHOOK])
        waiting = await waiting_fetch(eb, "c")
        await asyncio.wait_for(eb.close(), 20)
        with pytest.raises(StoreError, match="closed"):
            await asyncio.wait_for(waiting, 20)

    asyncio.run(go())
