"""What the JetStream event bus costs over bare nats-py, publishing and consuming, measured in the same run.

What is measured, on one ``nats-server -js`` (started here on a loopback port with its store in a
temporary directory, or the server at ``--url``), with a webhook-sized CloudEvent (about 1 KB of JSON):

* publishes: ``JetStreamBus.publish`` by C concurrent publishers (coroutines in one event loop, each
  awaiting each publish, as concurrent webhook requests do), for C in ``--concurrency`` (default 1, 10,
  100), N events per run (``--events``);
* fetch+ack: one consumer draining N events with ``fetch(limit=128)`` then ``ack_batch`` of the batch
  with one key-value update (what the sensor runner does per batch).

The floors are the same work in bare nats-py on the same server, in a stream of their own: for
publishes, ``js.publish`` of the same payload to a subject of the same shape with the same
``Nats-Msg-Id`` header by the same C coroutines; for fetch+ack, a durable pull subscription
(``pull_subscribe``) fetching 128 at a time and double-acking each message (``ack_sync``, all of a batch
at once), plus one ``kv.put`` per batch. What the bus adds is its checks and encoding, its own pull
requests and bookkeeping of held deliveries.

How to read it: ``ev/s`` is events per second (first call to last return), ``floor ev/s`` the bare loop,
``x floor`` the bus's rate as a share of the floor's — comparable across machines. Medians of
``--repeat`` runs (default 3), bus and floor alternating which goes first. There is no target and no
assertion: the exit code is 0 either way. ``--quick``: 1,000 events, once.

Run: ``.venv/bin/python benchmarks/jetstream_bus.py [--quick] [--events N] [--concurrency 1,10,100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

# Measure the checkout this file is in, whatever tree the venv's editable install points at.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
from nats.js import api  # noqa: E402

import engine  # noqa: E402
from engine.runtime.busmodel import KVUpdate, SubjectFilter  # noqa: E402
from engine.runtime.jetstream import JetStreamBus  # noqa: E402
from tests import natsserver  # noqa: E402

NAMESPACE = "default"
BATCH = 128
_runs = iter(range(1_000_000))
Timed = Callable[[], Coroutine[Any, Any, float]]  # one run; returns the seconds it measured


def run_name(kind: str) -> str:
    """A stream name no other run (of this process or an earlier one on a shared server) uses."""
    return f"{kind}{os.getpid()}x{next(_runs)}"


async def drop(url: str, *streams: str) -> None:
    """Delete a run's streams, so that a shared server (``--url``) is left as it was."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for stream in streams:
        await js.delete_stream(stream)
    await nc.close()


def make_event(i: int, run: str) -> dict[str, Any]:
    """A webhook event as the webhook source builds it: headers and a JSON body, about 1 KB."""
    return {
        "specversion": "1.0",
        "id": f"{run}-{i:024x}",
        "source": "webhook",
        "type": "webhook",
        "subject": "example",
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "header": {"Content-Type": ["application/json"], "X-Github-Event": ["push"]},
            "body": {
                "ref": "refs/heads/main",
                "after": f"{i:040x}",
                "repository": {"name": "sluicegate", "full_name": "example/sluicegate"},
                "commits": [{"id": f"{i:040x}", "message": "Event bus on JetStream " + "x" * 600}],
            },
        },
    }


async def _spread(
    items: list[Any], concurrency: int, one: Callable[[Any], Coroutine[Any, Any, None]]
) -> float:
    async def worker(share: list[Any]) -> None:
        for item in share:
            await one(item)

    start = time.perf_counter()
    await asyncio.gather(*(worker(items[k::concurrency]) for k in range(concurrency)))
    return time.perf_counter() - start


async def bus_publish(url: str, n: int, concurrency: int) -> float:
    run = run_name("bus")
    bus = await JetStreamBus(url, stream=run, subject_prefix=run).open()
    events = [make_event(i, run) for i in range(n)]

    async def one(ev: dict[str, Any]) -> None:
        await bus.publish(NAMESPACE, ev)

    seconds = await _spread(events, concurrency, one)
    await bus.close()
    await drop(url, run, f"KV_{bus.kv_bucket}")
    return seconds


async def floor_publish(url: str, n: int, concurrency: int) -> float:
    run = run_name("floor")
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name=run, subjects=[f"{run}.>"], duplicate_window=300))
    subject = f"{run}.{NAMESPACE}.webhook.example"
    events = [make_event(i, run) for i in range(n)]

    async def one(ev: dict[str, Any]) -> None:
        data = json.dumps(ev, separators=(",", ":")).encode()
        await js.publish(subject, data, headers={"Nats-Msg-Id": f"{NAMESPACE}/webhook/{ev['id']}"})

    seconds = await _spread(events, concurrency, one)
    await nc.close()
    await drop(url, run)
    return seconds


async def bus_consume(url: str, n: int) -> float:
    run = run_name("bus")
    bus = await JetStreamBus(url, stream=run, subject_prefix=run).open()
    await bus.consumer("c", [SubjectFilter(NAMESPACE, "webhook", "example")], ack_wait=60)
    await asyncio.gather(*(bus.publish(NAMESPACE, make_event(i, run)) for i in range(n)))
    done = 0
    start = time.perf_counter()
    while done < n:
        got = await bus.fetch("c", limit=BATCH, timeout=5)
        state = KVUpdate("sensor/default/s", "t", {"last": got[-1].event["id"]})
        done += len(await bus.ack_batch("c", [d.seq for d in got], kv_updates=[state]))
    seconds = time.perf_counter() - start
    await bus.close()
    await drop(url, run, f"KV_{bus.kv_bucket}")
    return seconds


async def floor_consume(url: str, n: int) -> float:
    run = run_name("floor")
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name=run, subjects=[f"{run}.>"]))
    kv = await js.create_key_value(bucket=f"{run}-kv", history=1)
    subject = f"{run}.{NAMESPACE}.webhook.example"
    await asyncio.gather(*(js.publish(subject, json.dumps(make_event(i, run)).encode()) for i in range(n)))
    sub = await js.pull_subscribe(
        subject, durable="c", stream=run, config=api.ConsumerConfig(ack_wait=60, max_deliver=-1)
    )
    done = 0
    start = time.perf_counter()
    while done < n:
        msgs = await sub.fetch(BATCH, timeout=5)
        last = json.loads(msgs[-1].data)["id"]
        await kv.put("sensor.t", json.dumps({"last": last}).encode())
        await asyncio.gather(*(m.ack_sync() for m in msgs))
        done += len(msgs)
    seconds = time.perf_counter() - start
    await nc.close()
    await drop(url, run, f"KV_{run}-kv")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,000 events, once")
    ap.add_argument("--events", type=int, default=None, help="events per run (default 10,000)")
    ap.add_argument("--concurrency", default="1,10,100", help="comma-separated publisher counts")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure, median reported (default 3)")
    ap.add_argument("--url", default=None, help="use this nats-server (-js) instead of starting one")
    args = ap.parse_args(argv)
    n = args.events or (1_000 if args.quick else 10_000)
    repeat = args.repeat or (1 if args.quick else 3)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-jetstream-"))
    server = None
    try:
        if args.url:
            url, where = args.url, args.url
        else:
            server = natsserver.start(work)
            url, where = server.url, f"nats-server {server.binary} (store in {work})"
        size = len(json.dumps(make_event(0, run_name("size")), separators=(",", ":")))
        print(
            f"jetstream_bus: {n} events of {size} B per run, median of {repeat} run(s); "
            f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}; "
            f"{where}; engine from {Path(engine.__file__).parent}"
        )
        head = f"{'what':<22}{'ev/s':>11}{'floor ev/s':>12}{'x floor':>9}"
        print(head)
        print("-" * len(head))

        def row(label: str, ours: Timed, floor: Timed) -> None:
            rates: list[float] = []
            floors: list[float] = []
            for r in range(repeat):
                if r % 2:
                    floors.append(n / asyncio.run(floor()))
                    rates.append(n / asyncio.run(ours()))
                else:
                    rates.append(n / asyncio.run(ours()))
                    floors.append(n / asyncio.run(floor()))
            rate, base = statistics.median(rates), statistics.median(floors)
            print(f"{label:<22}{rate:>11,.0f}{base:>12,.0f}{rate / base:>9.2f}")

        for c in levels:
            row(
                f"publish, C={c}",
                partial(bus_publish, url, n, c),
                partial(floor_publish, url, n, c),
            )
        row(f"fetch+ack, batch {BATCH}", partial(bus_consume, url, n), partial(floor_consume, url, n))
    finally:
        if server is not None:
            natsserver.stop(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
