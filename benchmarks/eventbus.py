"""What a publish on the embedded event bus costs, against a bare SQLite insert loop in the same run.

What is measured: ``LocalEventBus.publish`` of a webhook-sized CloudEvent (about 1 KB of JSON) by C
concurrent publishers — coroutines in one event loop, each publishing its share in a loop and awaiting
each publish, as concurrent webhook requests do — for C in ``--concurrency`` (default 1, 10, 100), N
events per run (``--events``), each run in a fresh ``events.db`` (WAL, ``synchronous=NORMAL``) in a
temporary directory under ``--state-dir`` (default: the home directory, where ``~/.sluice`` lives).

The floor is the least the same durable writes cost from Python: one sqlite3 connection with the bus's
own schema and pragmas, a plain loop that serializes each event and runs the bus's insert statement,
committing every B rows, where B is the mean transaction size the bus reached at that concurrency (in the
same run, or the run before when the floor goes first), so both sides do the same inserts and about the
same number of commits; no event loop, no threads, no futures.

How to read it:

* ``bus ev/s``    publishes per second, submit of the first to return of the last — the target is
                  >= 2,000/s with concurrent callers (C >= 10) on a 2-core machine;
* ``batch``       mean publishes per transaction (group commit; 1.0 means a commit per publish);
* ``p50/p99 ms``  latency of one publish, call to return (the commit included);
* ``floor ev/s``  the bare loop above; ``x floor`` = bus ev/s / floor ev/s, what share of the floor's
                  rate the bus keeps — comparable across machines.

Medians of ``--repeat`` runs (default 3), bus and floor alternating which goes first. A missed target is
a finding, not a failure: the exit code is 0 either way. ``--quick``: 2,000 events, once.

Run: ``.venv/bin/python benchmarks/eventbus.py [--quick] [--events N] [--concurrency 1,10,100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Measure the checkout this file is in, whatever tree the venv's editable install points at.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine.runtime.local import eventbus  # noqa: E402

TARGET_PER_S = 2_000.0
NAMESPACE = "default"


def make_event(i: int) -> dict[str, Any]:
    """A webhook event as the webhook source builds it: headers and a JSON body, about 1 KB."""
    return {
        "specversion": "1.0",
        "id": f"{i:032x}",
        "source": "webhook",
        "type": "webhook",
        "subject": "example",
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "header": {
                "Content-Type": ["application/json"],
                "User-Agent": ["GitHub-Hookshot/abc123"],
                "X-Github-Event": ["push"],
                "X-Github-Delivery": [f"{i:08d}-0000-0000-0000-000000000000"],
            },
            "body": {
                "ref": "refs/heads/main",
                "before": "0" * 40,
                "after": f"{i:040x}",
                "repository": {"name": "sluicegate", "full_name": "example/sluicegate", "private": False},
                "pusher": {"name": "dev", "email": "dev@example.com"},
                "commits": [
                    {"id": f"{i:040x}", "message": "Event bus: group commit " + "x" * 300, "added": []}
                ],
            },
        },
    }


@dataclass(frozen=True)
class BusRun:
    seconds: float
    batches: int
    latencies: list[float]


async def run_bus(path: Path, events: list[dict[str, Any]], concurrency: int) -> BusRun:
    bus = eventbus.LocalEventBus(path)
    sizes: list[int] = []
    run_batch = bus._run_batch

    def counting(ops: list[Any]) -> Any:
        sizes.append(len(ops))
        return run_batch(ops)

    bus._run_batch = counting  # type: ignore[method-assign]
    latencies: list[float] = []

    async def publisher(share: list[dict[str, Any]]) -> None:
        for ev in share:
            t = time.perf_counter()
            await bus.publish(NAMESPACE, ev)
            latencies.append(time.perf_counter() - t)

    shares = [events[k::concurrency] for k in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(publisher(s) for s in shares))
    seconds = time.perf_counter() - start
    await bus.close()
    return BusRun(seconds, len(sizes), latencies)


def run_floor(path: Path, events: list[dict[str, Any]], batch: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in eventbus.SCHEMA.split(";"):
        db.execute(statement)
    insert = (
        "INSERT INTO events (namespace, source, subject, event_id, published_at, event)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, source, event_id) DO NOTHING"
    )
    start = time.perf_counter()
    for lo in range(0, len(events), batch):
        db.execute("BEGIN IMMEDIATE")
        now = time.time()
        for ev in events[lo : lo + batch]:
            text = json.dumps(ev, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            db.execute(insert, (NAMESPACE, ev["source"], ev["subject"], ev["id"], now, text))
        db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    return seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2,000 events, once")
    ap.add_argument("--events", type=int, default=None, help="events per run (default 20,000)")
    ap.add_argument("--concurrency", default="1,10,100", help="comma-separated publisher counts")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure, median reported (default 3)")
    ap.add_argument("--state-dir", type=Path, default=Path.home(), help="where the temporary databases go")
    args = ap.parse_args(argv)
    n = args.events or (2_000 if args.quick else 20_000)
    repeat = args.repeat or (1 if args.quick else 3)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    events = [make_event(i) for i in range(n)]
    size = len(json.dumps(events[0], separators=(",", ":")))

    print(
        f"eventbus: {n} publishes of {size} B events per run, median of {repeat} run(s); "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPU(s), "
        f"load {os.getloadavg()[0]:.1f}; state in {args.state_dir};"
        f" engine from {Path(engine.__file__).parent}"
    )
    head = f"{'C':>5}{'bus ev/s':>11}{'batch':>8}{'p50 ms':>9}{'p99 ms':>9}{'floor ev/s':>12}{'x floor':>9}"
    print(head)
    print("-" * len(head))
    judged: list[tuple[int, float]] = []
    for c in levels:
        rates: list[float] = []
        floors: list[float] = []
        batches: list[float] = []
        p50s: list[float] = []
        p99s: list[float] = []
        for r in range(repeat):
            work = Path(tempfile.mkdtemp(prefix="sluice-bench-bus-", dir=args.state_dir))
            try:
                if r % 2 == 1:
                    # Floor first this time, at the transaction size the bus reached in the previous run.
                    floor_s = run_floor(work / "floor.db", events, max(1, round(batches[-1])))
                    got = asyncio.run(run_bus(work / "events.db", events, c))
                else:
                    got = asyncio.run(run_bus(work / "events.db", events, c))
                    floor_s = run_floor(work / "floor.db", events, max(1, round(n / got.batches)))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            mean_batch = n / got.batches
            rates.append(n / got.seconds)
            floors.append(n / floor_s)
            batches.append(mean_batch)
            p50s.append(percentile(got.latencies, 0.50) * 1e3)
            p99s.append(percentile(got.latencies, 0.99) * 1e3)
        rate, floor = statistics.median(rates), statistics.median(floors)
        print(
            f"{c:>5}{rate:>11,.0f}{statistics.median(batches):>8.1f}{statistics.median(p50s):>9.2f}"
            f"{statistics.median(p99s):>9.2f}{floor:>12,.0f}{rate / floor:>9.2f}"
        )
        if c >= 10:
            judged.append((c, rate))

    print()
    print("targets")
    for c, rate in judged:
        verdict = "PASS" if rate >= TARGET_PER_S else "MISS"
        print(f"  publishes/s with {c} concurrent publishers >= {TARGET_PER_S:,.0f}: {rate:,.0f}  {verdict}")
    if not judged:
        print("  (no concurrency >= 10 measured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
