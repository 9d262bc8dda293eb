"""The embedded event bus on real SQLite files: ordering, durable consumers, redelivery, dedupe, group
commit, key-value state committed with acks, retention, and SIGKILLed publishers and consumers."""

from __future__ import annotations

import asyncio
import inspect
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.errors import ReferenceError_, SpecError, StoreError
from engine.runtime.base import EventBus
from engine.runtime.busmodel import KVUpdate, SubjectFilter
from engine.runtime.local.eventbus import EventLogReader, LocalEventBus, events_path

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
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


class FakeClock:
    """Monotonic and wall clocks a test moves by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def test_local_bus_implements_every_method_of_the_event_bus_port() -> None:
    port = {n for n, v in vars(EventBus).items() if not n.startswith("_") and callable(v)}
    assert port >= {"publish", "consumer", "fetch", "ack", "kv_put", "read", "compact", "close"}
    for name in sorted(port):
        ours = getattr(LocalEventBus, name)
        assert inspect.iscoroutinefunction(ours), name
        theirs = inspect.signature(getattr(EventBus, name)).parameters
        mine = inspect.signature(ours).parameters
        assert [(p.name, p.kind, p.default) for p in mine.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name


def test_fetch_returns_events_in_publish_order_and_ack_removes_them(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("sensor-a", [WEBHOOK])
        seqs = [await bus.publish(NS, event(f"e{i}", n=i)) for i in range(5)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        got = await bus.fetch("sensor-a", limit=3)
        assert [d.seq for d in got] == seqs[:3]
        assert [d.event["data"]["n"] for d in got] == [0, 1, 2]
        assert all(d.deliveries == 1 and d.subject == "default.webhook.example" for d in got)
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


def test_new_consumer_starts_after_existing_events_unless_asked_for_all(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        old = [await bus.publish(NS, event(f"old{i}")) for i in range(3)]
        info = await bus.consumer("new", [WEBHOOK])
        assert info.created and info.delivered_seq == old[-1]
        assert await bus.fetch("new") == []
        everything = await bus.consumer("all", [WEBHOOK], deliver_all=True)
        assert everything.delivered_seq == 0
        fresh = await bus.publish(NS, event("fresh"))
        assert [d.seq for d in await bus.fetch("new", limit=10)] == [fresh]
        assert [d.seq for d in await bus.fetch("all", limit=10)] == [*old, fresh]
        await bus.ack("new", fresh)
        later = await bus.publish(NS, event("later"))
        await bus.close()

        # A durable consumer keeps its position across a restart: re-declaring it does not skip `later`.
        bus = LocalEventBus(path)
        await bus.publish(NS, event("after-restart"))
        again = await bus.consumer("new", [WEBHOOK])
        assert not again.created and again.delivered_seq == fresh
        got = await bus.fetch("new", limit=10)
        assert [d.event["id"] for d in got] == ["later", "after-restart"]
        assert got[0].seq == later
        await bus.close()

    run(go)


def test_consumer_gets_only_subjects_its_filters_match(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("pair", [SubjectFilter(NS, "webhook", "a"), SubjectFilter(NS, "cal", "tick")])
        await bus.consumer("prefix", [SubjectFilter(NS, "webhook")])
        await bus.consumer("other-ns", [SubjectFilter("prod")])
        await bus.publish(NS, event("1", "webhook", "a"))
        await bus.publish(NS, event("2", "webhook", "b"))
        await bus.publish(NS, event("3", "cal", "tick"))
        await bus.publish("prod", event("4", "webhook", "a"))
        await bus.publish(NS, event("5", "webhook.a", "x"))  # a dot in a name is not a subject separator

        async def ids(consumer: str) -> list[str]:
            return [d.event["id"] for d in await bus.fetch(consumer, limit=10)]

        assert await ids("pair") == ["1", "3"]
        assert await ids("prefix") == ["1", "2"]
        assert await ids("other-ns") == ["4"]
        tail = await bus.read(1, 10, [SubjectFilter(NS, "webhook.a")])
        assert [r.event["id"] for r in tail] == ["5"]
        await bus.close()

    run(go)


def test_subject_filter_key_spells_jetstream_wildcards() -> None:
    assert SubjectFilter(NS, "webhook", "a").key() == "default.webhook.a"
    assert SubjectFilter(NS, "webhook").key() == "default.webhook.>"
    assert SubjectFilter(NS, None, "a").key() == "default.*.a"
    assert SubjectFilter().key() == ">"


def test_unacked_event_is_redelivered_after_ack_wait_with_its_delivery_count(tmp_path: Path) -> None:
    clock = FakeClock()

    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), monotonic=clock)
        await bus.consumer("c", [WEBHOOK], ack_wait=30)
        first = await bus.publish(NS, event("a"))
        second = await bus.publish(NS, event("b"))
        assert [d.seq for d in await bus.fetch("c", limit=10)] == [first, second]
        await bus.ack("c", second)
        clock.t += 29
        assert await bus.fetch("c", limit=10) == []
        clock.t += 2
        again = await bus.fetch("c", limit=10)
        assert [(d.seq, d.deliveries) for d in again] == [(first, 2)]
        clock.t += 31
        assert [(d.seq, d.deliveries) for d in await bus.fetch("c")] == [(first, 3)]
        assert await bus.ack("c", first)
        clock.t += 100
        assert await bus.fetch("c") == []
        await bus.close()

    run(go)


def test_waiting_fetch_wakes_when_a_delivery_passes_its_ack_wait(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("c", [WEBHOOK], ack_wait=0.2)
        seq = await bus.publish(NS, event("a"))
        assert [d.seq for d in await bus.fetch("c")] == [seq]
        # The fetch's own timeout is far longer than the guard: only the ack_wait deadline can end it.
        again = await asyncio.wait_for(bus.fetch("c", timeout=120), 20)
        assert [(d.seq, d.deliveries) for d in again] == [(seq, 2)]
        await bus.close()

    run(go)


def test_nak_hands_a_delivery_out_again_before_ack_wait(tmp_path: Path) -> None:
    clock = FakeClock()

    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), monotonic=clock)
        await bus.consumer("c", [WEBHOOK], ack_wait=30)
        seq = await bus.publish(NS, event("a"))
        await bus.fetch("c")
        assert await bus.nak("c", seq, delay=5)
        clock.t += 4
        assert await bus.fetch("c") == []
        clock.t += 2
        assert [(d.seq, d.deliveries) for d in await bus.fetch("c")] == [(seq, 2)]
        assert not await bus.nak("c", seq + 100)
        await bus.close()

    run(go)


def test_pending_deliveries_are_redelivered_after_reopening(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        await bus.consumer("c", [WEBHOOK], ack_wait=3600)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        await bus.ack("c", got[1].seq)
        await bus.close()

        bus = LocalEventBus(path)
        again = await bus.fetch("c", limit=10)
        assert [(d.seq, d.deliveries) for d in again] == [(seqs[0], 2), (seqs[2], 2)]
        await bus.close()

    run(go)


def test_long_poll_fetch_returns_when_a_matching_event_is_published(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("c", [WEBHOOK])
        waiting = asyncio.ensure_future(bus.fetch("c", timeout=120))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await bus.publish(NS, event("other", "cal", "tick"))  # not for this consumer
        seq = await bus.publish(NS, event("mine"))
        got = await asyncio.wait_for(waiting, 20)
        assert [d.seq for d in got] == [seq]
        assert await bus.fetch("c", timeout=0.05) == []
        await bus.close()

    run(go)


def test_publish_is_idempotent_per_namespace_source_and_id(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("c", [SubjectFilter(NS)], deliver_all=True)
        first = await bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick"))
        # Concurrent retries of the same event land in one batch and still store it once.
        retries = await asyncio.gather(
            *(bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick")) for _ in range(5))
        )
        assert set(retries) == {first}
        other_source = await bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal2", "tick"))
        other_ns = await bus.publish("prod", event("fire-2026-01-01T00:05:00Z", "cal", "tick"))
        assert len({first, other_source, other_ns}) == 3
        got = await bus.fetch("c", limit=10)
        assert [d.seq for d in got] == [first, other_source]
        await bus.close()

        bus = LocalEventBus(events_path(tmp_path))
        assert await bus.publish(NS, event("fire-2026-01-01T00:05:00Z", "cal", "tick")) == first
        await bus.close()

    run(go)


def test_concurrent_publishes_share_commits_and_all_get_distinct_sequences(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("c", [SubjectFilter(NS)])
        batches: list[int] = []
        run_batch = bus._run_batch

        def counting(ops: list[Any]) -> Any:
            batches.append(len(ops))
            return run_batch(ops)

        bus._run_batch = counting  # type: ignore[method-assign]
        seqs = await asyncio.gather(*(bus.publish(NS, event(f"e{i}", n=i)) for i in range(500)))
        assert len(set(seqs)) == 500
        assert sum(batches) == 500
        assert len(batches) < 50, f"500 concurrent publishes took {len(batches)} transactions"
        records = await bus.read(1, 1000)
        assert {r.seq: r.event["id"] for r in records} == {s: f"e{i}" for i, s in enumerate(seqs)}
        got = await bus.fetch("c", limit=1000)
        assert [d.seq for d in got] == sorted(seqs)
        await bus.close()

    run(go)


def test_a_failing_operation_does_not_fail_the_others_in_its_batch(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        results = await asyncio.gather(
            bus.publish(NS, event("a")),
            bus.fetch("no-such-consumer"),
            bus.publish(NS, event("b")),
            return_exceptions=True,
        )
        assert isinstance(results[1], ReferenceError_)
        assert isinstance(results[0], int) and isinstance(results[2], int)
        assert [r.event["id"] for r in await bus.read()] == ["a", "b"]
        await bus.close()

    run(go)


def test_publish_that_cannot_be_written_raises_store_error(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.publish(NS, event("small"))
        # Cap the database at its current size: the next large event cannot be written.
        pages = bus._db.execute("PRAGMA page_count").fetchone()[0]
        bus._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match="full"):
            await bus.publish(NS, event("big", blob="x" * 200_000))
        assert [r.event["id"] for r in await bus.read()] == ["small"]
        await bus.close()

    run(go)


def test_invalid_events_are_refused_with_the_field_at_fault(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), max_event_bytes=1000)
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
        await bus.close()

    run(go)


def test_ack_commits_kv_updates_with_it_and_a_stale_ack_applies_none(tmp_path: Path) -> None:
    clock = FakeClock()

    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path, monotonic=clock)
        await bus.consumer("sensor.trigger", [WEBHOOK], ack_wait=30)
        seq = await bus.publish(NS, event("a"))
        [first] = await bus.fetch("sensor.trigger")
        clock.t += 31
        [second] = await bus.fetch("sensor.trigger")  # the same event handed out again
        assert second.deliveries == 2
        update = KVUpdate("sensor", "trigger/dep-a", {"event": first.event})
        assert await bus.ack("sensor.trigger", seq, kv_updates=[update, KVUpdate("sensor", "gone", None)])
        stale = KVUpdate("sensor", "trigger/dep-a", {"event": "stale"})
        assert not await bus.ack("sensor.trigger", seq, kv_updates=[stale])
        assert await bus.kv_get("sensor", "trigger/dep-a") == {"event": first.event}
        await bus.close()

        # Both the ack and its update survive a restart: no redelivery, state present.
        bus = LocalEventBus(path, monotonic=clock)
        assert await bus.fetch("sensor.trigger") == []
        assert await bus.kv_list("sensor") == {"trigger/dep-a": {"event": first.event}}
        await bus.close()

    run(go)


def test_ack_batch_acks_a_fetched_batch_and_its_state_in_one_transaction(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        await bus.consumer("c", [WEBHOOK])
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        await bus.ack("c", got[0].seq)
        state = KVUpdate("sensor", "trigger", {"last": "e2"})
        assert await bus.ack_batch("c", [d.seq for d in got], kv_updates=[state]) == seqs[1:]
        assert await bus.kv_get("sensor", "trigger") == {"last": "e2"}
        stale = KVUpdate("sensor", "trigger", {"last": "stale"})
        assert await bus.ack_batch("c", seqs, kv_updates=[stale]) == []
        await bus.close()

        bus = LocalEventBus(path)
        assert await bus.fetch("c", limit=10) == []
        assert await bus.kv_get("sensor", "trigger") == {"last": "e2"}
        await bus.close()

    run(go)


def test_ack_of_a_failing_kv_update_leaves_the_event_pending(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("c", [WEBHOOK])
        seq = await bus.publish(NS, event("a"))
        await bus.fetch("c")
        with pytest.raises(SpecError):
            await bus.ack("c", seq, kv_updates=[KVUpdate("b", "k", {"bad": object()})])
        assert (await bus.read())[0].seq == seq
        assert await bus.ack("c", seq, kv_updates=[KVUpdate("b", "k", {"ok": 1})])
        assert await bus.kv_get("b", "k") == {"ok": 1}
        await bus.close()

    run(go)


def test_kv_put_get_list_delete(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.kv_put("s1", "t/a", {"n": 1})
        await bus.kv_put("s1", "t/b", {"n": 2})
        await bus.kv_put("s1", "t/a", {"n": 3})
        await bus.kv_put("s2", "t/a", {"n": 4})
        assert await bus.kv_get("s1", "t/a") == {"n": 3}
        assert await bus.kv_get("s1", "missing") is None
        assert await bus.kv_list("s1") == {"t/a": {"n": 3}, "t/b": {"n": 2}}
        assert await bus.kv_delete("s1", "t/a")
        assert not await bus.kv_delete("s1", "t/a")
        assert await bus.kv_list("s1") == {"t/b": {"n": 2}}
        assert await bus.kv_list("s2") == {"t/a": {"n": 4}}
        await bus.close()

    run(go)


def test_compact_removes_events_beyond_max_msgs_whether_acked_or_not(tmp_path: Path) -> None:
    clock = FakeClock()

    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), max_msgs=3, max_age=None, monotonic=clock)
        await bus.consumer("c", [WEBHOOK], ack_wait=30)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(5)]
        assert len(await bus.fetch("c", limit=2)) == 2  # e0, e1 pending, unacked
        assert await bus.compact() == 2
        assert [r.seq for r in await bus.read()] == seqs[2:]
        assert await bus.compact() == 0
        clock.t += 31
        # The removed pending events are not redelivered; the rest arrive in order.
        assert [(d.seq, d.deliveries) for d in await bus.fetch("c", limit=10)] == [(s, 1) for s in seqs[2:]]

        bus.max_msgs = 0
        assert await bus.compact() == 3
        assert await bus.read() == []
        # Sequence numbers are never reused, even with the log emptied.
        after = await bus.publish(NS, event("after"))
        assert after == seqs[-1] + 1 and await bus.last_seq() == after
        assert [d.seq for d in await bus.fetch("c", limit=10)] == [after]
        await bus.close()

    run(go)


def test_compact_removes_events_older_than_max_age(tmp_path: Path) -> None:
    wall = FakeClock(1_767_225_600.0)

    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), max_age=3600, max_msgs=None, now=wall)
        old = [await bus.publish(NS, event(f"old{i}")) for i in range(3)]
        wall.t += 1800
        young = await bus.publish(NS, event("young"))
        wall.t += 1801
        assert await bus.compact() == 3
        assert [r.seq for r in await bus.read()] == [young]
        assert old[-1] < young
        wall.t += 1800
        assert await bus.compact() == 1
        await bus.close()

    run(go)


def test_close_commits_publishes_already_submitted(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        tasks = [asyncio.ensure_future(bus.publish(NS, event(f"e{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # the publishes are submitted, none awaited
        await bus.close()
        seqs = await asyncio.gather(*tasks)
        with pytest.raises(StoreError, match="closed"):
            await bus.publish(NS, event("late"))
        with EventLogReader(path) as reader:
            assert [r.seq for r in reader.read(1, 100)] == seqs

    run(go)


def test_close_ends_a_waiting_fetch_with_store_error(tmp_path: Path) -> None:
    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path))
        await bus.consumer("c", [WEBHOOK])
        waiting = asyncio.ensure_future(bus.fetch("c", timeout=120))
        await asyncio.sleep(0.05)
        await bus.close()
        with pytest.raises(StoreError, match="closed"):
            await asyncio.wait_for(waiting, 20)

    run(go)


def test_an_idle_bus_can_be_used_from_one_event_loop_after_another(tmp_path: Path) -> None:
    bus = LocalEventBus(events_path(tmp_path))
    first = asyncio.run(bus.publish(NS, event("a")))
    second = asyncio.run(bus.publish(NS, event("b")))
    assert second > first
    assert [r.seq for r in asyncio.run(bus.read())] == [first, second]
    asyncio.run(bus.close())


def test_only_one_process_opens_a_bus_and_others_read_it(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        await bus.consumer("c", [WEBHOOK])
        seq = await bus.publish(NS, event("a"))
        with pytest.raises(StoreError, match="already open"):
            LocalEventBus(path)
        with EventLogReader(path) as reader:
            assert [r.event["id"] for r in reader.read()] == ["a"]
            assert reader.last_seq() == seq
            [info] = reader.consumers()
            assert info.name == "c" and info.filters == (WEBHOOK,)
        await bus.close()
        await LocalEventBus(path).close()  # released by close

    run(go)


# ------------------------------------------------------------------------------------------- crashes

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from engine.runtime.local.eventbus import LocalEventBus

    async def main():
        bus = LocalEventBus(Path(sys.argv[1]))
        async def one(i):
            seq = await bus.publish("default", {"id": f"e{i}", "source": "webhook", "subject": "example",
                                                "specversion": "1.0", "type": "webhook", "data": {"i": i}})
            print(i, seq, flush=True)
        i = 0
        while True:
            await asyncio.gather(*(one(i + k) for k in range(25)))
            i += 25

    asyncio.run(main())
    """
)

CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from engine.runtime.busmodel import KVUpdate, SubjectFilter
    from engine.runtime.local.eventbus import LocalEventBus

    async def main():
        bus = LocalEventBus(Path(sys.argv[1]))
        await bus.consumer("c", [SubjectFilter("default")], deliver_all=True, ack_wait=3600)
        while True:
            for d in await bus.fetch("c", limit=7, timeout=5):
                print("fetched", d.seq, flush=True)
                if d.seq % 2 == 0:
                    await bus.ack("c", d.seq, kv_updates=[KVUpdate("s", str(d.seq), {"seen": d.event["id"]})])
                    print("acked", d.seq, flush=True)

    asyncio.run(main())
    """
)


def _run_until_killed(script: str, path: Path, enough: Callable[[list[str]], bool]) -> list[str]:
    """Run ``script``, SIGKILL it once its output satisfies ``enough``; return its complete lines."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    buf = b""
    lines: list[str] = []
    deadline = time.monotonic() + 60
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while not enough(lines):
            if time.monotonic() > deadline or proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                pytest.fail(f"child stopped or stalled after {len(lines)} lines: {err}")
            if sel.select(timeout=1):
                chunk = os.read(proc.stdout.fileno(), 65536)
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines.extend(x.decode() for x in done)
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        sel.close()
    assert proc.returncode == -signal.SIGKILL
    *done, _partial = (buf + rest).split(b"\n")  # a line cut by the kill is not a report
    return lines + [x.decode() for x in done]


@pytest.mark.slow
def test_every_publish_reported_before_sigkill_is_on_the_bus_after_reopening(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    lines = _run_until_killed(PUBLISHER, path, lambda lines: len(lines) >= 2000)
    reported = {int(i): int(seq) for i, seq in (line.split() for line in lines)}
    assert len(reported) >= 2000

    async def go() -> None:
        bus = LocalEventBus(path)
        stored = {r.seq: r.event["id"] for r in await bus.read(1, 1_000_000)}
        missing = {i: s for i, s in reported.items() if stored.get(s) != f"e{i}"}
        assert not missing, f"{len(missing)} reported publishes lost, e.g. {list(missing.items())[:5]}"
        assert len(set(stored.values())) == len(stored)
        # The bus goes on after the crash: new numbers follow the old, a replay is deduplicated.
        assert await bus.publish(NS, event("after-crash")) > max(stored)
        some_i, some_seq = next(iter(reported.items()))
        replay = {"id": f"e{some_i}", "source": "webhook", "subject": "example", "data": {}}
        assert await bus.publish(NS, replay) == some_seq
        await bus.close()

    run(go)


@pytest.mark.slow
def test_acks_and_their_kv_updates_survive_sigkill_and_the_rest_is_redelivered(tmp_path: Path) -> None:
    path = events_path(tmp_path)

    async def publish_all() -> list[int]:
        bus = LocalEventBus(path)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3000)]
        await bus.close()
        return seqs

    seqs = run(publish_all)
    lines = _run_until_killed(CONSUMER, path, lambda lines: sum(x.startswith("acked") for x in lines) >= 300)
    fetched = {int(x.split()[1]) for x in lines if x.startswith("fetched")}
    acked = {int(x.split()[1]) for x in lines if x.startswith("acked")}
    assert len(acked) >= 300

    async def go() -> None:
        bus = LocalEventBus(path)
        kv = await bus.kv_list("s")
        committed = {int(k) for k in kv}
        assert acked <= committed, "an ack reported before the kill was lost"
        index = {s: i for i, s in enumerate(seqs)}
        assert all(kv[str(s)] == {"seen": f"e{index[s]}"} for s in committed)
        again = await bus.fetch("c", limit=10_000)
        redelivered = {d.seq for d in again}
        # Exactly the events without a committed ack come back, each once; those delivered before the
        # kill carry a higher delivery count. An ack and its kv update are never split.
        assert redelivered.isdisjoint(committed)
        assert redelivered | committed == set(seqs)
        assert len(again) == len(redelivered)
        counts = {d.seq: d.deliveries for d in again}
        assert all(counts[s] >= 2 for s in fetched - committed)
        await bus.close()

    run(go)
