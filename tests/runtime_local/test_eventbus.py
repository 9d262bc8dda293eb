"""What only the embedded event bus does, on real SQLite files: group commit and the savepoint of each
operation, a full disk, retention applied by ``compact``, deliveries due at once after a restart,
pending deliveries kept when a consumer's filters change, the lock that lets one process own the bus
while others read, a publisher in another process, SIGKILLed publishers and consumers, and WAL
checkpoints kept out of commits.

The contract it shares with the JetStream bus (order, durable consumers, redelivery, dedupe,
key-value state committed with acks, the log) is tests/buses/test_bus_contract.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ReferenceError_, StoreError
from engine.runtime.busmodel import KVUpdate, SubjectFilter
from engine.runtime.local.eventbus import BusPublisher, EventLogReader, LocalEventBus, events_path
from engine.runtime.local.walcheckpoint import Checkpointer, no_autocheckpoint
from tests.buses.support import NS, WEBHOOK, StepClock, event

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------- group commit


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

    asyncio.run(go())


def _fetch_work(path: Path, logged: int) -> int:
    """SQLite's work (virtual machine steps, in hundreds) for a consumer that has acknowledged
    ``logged`` events of its subject to fetch the next 5."""

    async def go() -> int:
        bus = LocalEventBus(path)
        await bus.consumer("c", [WEBHOOK])
        await asyncio.gather(*(bus.publish(NS, event(f"old{i}", n=i)) for i in range(logged)))
        while got := await bus.fetch("c", limit=1000, timeout=0):
            await bus.ack_batch("c", [d.seq for d in got])
        for i in range(5):
            await bus.publish(NS, event(f"new{i}", n=i))
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        bus._db.set_progress_handler(count, 100)
        got = await bus.fetch("c", limit=128, timeout=0)
        bus._db.set_progress_handler(None, 0)
        assert [d.event["id"] for d in got] == [f"new{i}" for i in range(5)]
        await bus.close()
        return steps[0]

    return asyncio.run(go())


def test_a_fetch_reads_from_the_consumers_position_whatever_the_length_of_the_log(tmp_path: Path) -> None:
    short = _fetch_work(tmp_path / "short.db", 20)
    long = _fetch_work(tmp_path / "long.db", 4000)
    # Reading the events of the subject from the source's index and sorting them would be work in
    # proportion to the log: about 200 here, against 5 for a log of 20 (from the position: 2 or 3).
    assert long <= 2 * short + 20, (short, long)


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

    asyncio.run(go())


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

    asyncio.run(go())


def test_publishes_submitted_before_close_are_committed_in_submission_order(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        tasks = [asyncio.ensure_future(bus.publish(NS, event(f"e{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # the publishes are submitted, none awaited
        await bus.close()
        seqs = await asyncio.gather(*tasks)
        # One writer takes them in the order they were submitted (a cluster's server need not).
        with EventLogReader(path) as reader:
            assert [r.seq for r in reader.read(1, 100)] == seqs

    asyncio.run(go())


# ----------------------------------------------------------------------------- where the buses differ


def test_pending_deliveries_are_due_at_once_after_reopening_and_the_new_bus_can_ack_them(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        await bus.consumer("c", [WEBHOOK], ack_wait=3600)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        await bus.ack("c", got[1].seq)
        await bus.close()

        # Whoever held them is gone: no waiting for ack_wait (JetStream waits for it).
        bus = LocalEventBus(path)
        again = await bus.fetch("c", limit=10)
        assert [(d.seq, d.deliveries) for d in again] == [(seqs[0], 2), (seqs[2], 2)]
        await bus.close()

        # The pending deliveries are in the database, so a bus opened later acks them and applies the
        # updates (a new JetStream client refuses an ack of what another client fetched).
        bus = LocalEventBus(path)
        assert await bus.ack("c", seqs[0], kv_updates=[KVUpdate("s", "k", {"acked": "after reopening"})])
        assert await bus.kv_get("s", "k") == {"acked": "after reopening"}
        assert [(d.seq, d.deliveries) for d in await bus.fetch("c", limit=10)] == [(seqs[2], 3)]
        await bus.close()

    asyncio.run(go())


def test_deliveries_pending_when_a_consumers_filters_change_stay_pending_until_ack_wait(
    tmp_path: Path,
) -> None:
    clock = StepClock()

    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), monotonic=clock)
        await bus.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "example")], ack_wait=30)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3)]
        got = await bus.fetch("c", limit=10)
        assert await bus.ack("c", got[0].seq)
        # JetStream replaces such a consumer and hands these out again at once; here they wait.
        info = await bus.consumer("c", [WEBHOOK, SubjectFilter(NS, "cal", "tick")], ack_wait=10)
        assert not info.created and info.ack_pending == 2
        tick = await bus.publish(NS, event("t", "cal", "tick"))
        more = await bus.publish(NS, event("more"))
        again = await bus.fetch("c", limit=10)
        assert [(d.seq, d.deliveries) for d in again] == [(tick, 1), (more, 1)]
        assert await bus.ack_batch("c", [tick, more]) == [tick, more]
        clock.advance(31)
        later = await bus.fetch("c", limit=10)
        assert [(d.seq, d.deliveries) for d in later] == [(s, 2) for s in seqs[1:]]
        await bus.close()

    asyncio.run(go())


def test_compact_removes_events_beyond_max_msgs_whether_acked_or_not(tmp_path: Path) -> None:
    clock = StepClock()

    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), max_msgs=3, max_age=None, monotonic=clock)
        await bus.consumer("c", [WEBHOOK], ack_wait=30)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(5)]
        assert [r.seq for r in await bus.read()] == seqs  # kept until compact (JetStream: never stored)
        assert len(await bus.fetch("c", limit=2)) == 2  # e0, e1 pending, unacked
        assert await bus.compact() == 2
        assert [r.seq for r in await bus.read()] == seqs[2:]
        assert await bus.compact() == 0
        clock.advance(31)
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

    asyncio.run(go())


def test_compact_removes_events_older_than_max_age(tmp_path: Path) -> None:
    wall = StepClock(lambda: 1_767_225_600.0)

    async def go() -> None:
        bus = LocalEventBus(events_path(tmp_path), max_age=3600, max_msgs=None, now=wall)
        old = [await bus.publish(NS, event(f"old{i}")) for i in range(3)]
        wall.advance(1800)
        young = await bus.publish(NS, event("young"))
        wall.advance(1801)
        assert await bus.compact() == 3
        assert [r.seq for r in await bus.read()] == [young]
        assert old[-1] < young
        wall.advance(1800)
        assert await bus.compact() == 1
        await bus.close()

    asyncio.run(go())


# ------------------------------------------------------------------------------ processes and loops


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

    asyncio.run(go())


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

    asyncio.run(go())


@pytest.mark.slow
def test_acks_and_their_kv_updates_survive_sigkill_and_the_rest_is_redelivered(tmp_path: Path) -> None:
    path = events_path(tmp_path)

    async def publish_all() -> list[int]:
        bus = LocalEventBus(path)
        seqs = [await bus.publish(NS, event(f"e{i}")) for i in range(3000)]
        await bus.close()
        return seqs

    seqs = asyncio.run(publish_all())
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

    asyncio.run(go())


# ------------------------------------------------------------------------ publishing from another process

OTHER_PROCESS_PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from engine.runtime.local.eventbus import BusPublisher

    async def main():
        pub = BusPublisher(Path(sys.argv[1]))
        async def one(i):
            return await pub.publish("default", {"id": f"p{i}", "source": "webhook", "subject": "example",
                                                 "specversion": "1.0", "type": "webhook", "data": {"i": i}})
        for start in range(0, 400, 20):
            await asyncio.gather(*(one(start + k) for k in range(20)))
        # The owner published "o0" first: the same id from here is the same event.
        print(await pub.publish("default", {"id": "o0", "source": "webhook", "subject": "example",
                                            "specversion": "1.0", "type": "webhook", "data": {}}))
        await pub.close()

    asyncio.run(main())
    """
)


def test_a_publisher_in_another_process_interleaves_with_the_owner_in_commit_order(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        await bus.consumer("c", [WEBHOOK], deliver_all=True)
        first = await bus.publish(NS, event("o0"))
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", OTHER_PROCESS_PUBLISHER, str(path),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        owned = 1
        delivered: list[Any] = []
        deadline = time.monotonic() + 60
        while len(delivered) < 400 + owned and time.monotonic() < deadline:
            if child.returncode is None:
                # The owner publishes and consumes while the other process publishes.
                await bus.publish(NS, event(f"o{owned}"))
                owned += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.wait(), 0.001)
            batch = await bus.fetch("c", limit=50, timeout=0.05)
            delivered.extend(batch)
            await bus.ack_batch("c", [d.seq for d in batch])
            if child.returncode not in (None, 0):
                break
        out = (await child.stdout.read()).decode() if child.stdout else ""
        await bus.close()
        assert child.returncode == 0
        seqs = [d.seq for d in delivered]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        ids = [d.event["id"] for d in delivered]
        assert sorted(i for i in ids if i.startswith("p")) == sorted(f"p{i}" for i in range(400))
        assert sorted(i for i in ids if i.startswith("o")) == sorted(f"o{i}" for i in range(owned))
        # The two processes' events are interleaved, not one after the other.
        kinds = "".join(i[0] for i in ids)
        assert "po" in kinds and "op" in kinds
        assert out.split() == [str(first)]  # the duplicate id got the owner's sequence number

    asyncio.run(go())


def test_an_owner_told_of_another_process_publish_wakes_its_waiting_fetch(tmp_path: Path) -> None:
    async def go() -> None:
        path = events_path(tmp_path)
        bus = LocalEventBus(path)
        await bus.consumer("c", [WEBHOOK])
        publisher = BusPublisher(path)
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiting = asyncio.ensure_future(bus.fetch("c", limit=10, timeout=30))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        seq = await publisher.publish(NS, event("x"))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the owner does not see another connection's commit by itself
        bus.published_elsewhere([(NS, WEBHOOK.event_source or "", WEBHOOK.event_name or "")])
        [delivery] = await asyncio.wait_for(waiting, 5)
        assert delivery.seq == seq and delivery.event["id"] == "x"
        assert loop.time() - started < 5
        await publisher.close()
        await bus.close()

    asyncio.run(go())


def test_a_publisher_needs_the_owner_to_have_created_the_bus(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no event bus"):
        BusPublisher(events_path(tmp_path))


# ------------------------------------------------------------------------------------------ checkpoints


def test_commits_leave_the_wal_to_the_checkpointer_which_copies_it_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x TEXT)")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    no_autocheckpoint(db)
    size = path.stat().st_size
    for _ in range(300):  # far past SQLite's automatic checkpoint at 1,000 pages
        db.execute("INSERT INTO t VALUES (?)", ("x" * 20_000,))
    assert path.stat().st_size == size  # every page is still only in the WAL
    checkpointer = Checkpointer(path, interval=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
    assert path.stat().st_size > 300 * 20_000
    db.close()
