"""The intake process: ``sluice server`` serves its webhook EventSources from a process of their own.

Why a process: one Python process runs on one core at a time, and a webhook's HTTP work (parsing,
checks, the CloudEvent, the bus commit) would take that core from the sensors and the workflow engine
that act on its events. In a process of its own it runs on another core, as an EventSource's pod
runs beside a Sensor's on a cluster. The server (:class:`IntakeProcess`, in the parent) still owns
the bus, the store and the sensors; the child only appends events to the bus
(:class:`~engine.runtime.local.eventbus.BusPublisher`) and reads Secrets from the store.

The two talk in JSON lines, the parent on the child's stdin, the child on its stdout:

* parent: ``{"op": "sources", "id": N, "sources": [[namespace, manifest], ...]}`` serve these
  EventSources' webhooks from now on (the parent validated them); the child answers
  ``{"op": "served", "id": N, "ports": {spec port: bound port}, "problems": [text, ...]}``;
* parent: ``{"op": "room", "grants": [[namespace, source, event, total], ...]}`` pacing (see
  :class:`~engine.runtime.local.events.IntakePacer`): the child may start publishing an event of that
  subject while it has started fewer than ``total`` of them since it began; past that, a request
  waits for more room, for at most ``--max-wait`` seconds. ``total`` null: the subject is free;
* child: ``{"op": "published", "events": [[namespace, source, event, seq], ...]}`` after commits,
  so that the parent's waiting fetches look again and its pacing counts them.

A 2xx answer still means the event is committed to the bus: the child answers after its commit,
whatever the parent is doing. End of its stdin stops the child: it closes its ports, commits what it
took and exits. The kernel kills it when the parent dies, SIGKILL included (``PR_SET_PDEATHSIG``), so
a restarted server can bind the same ports at once.

Run by :class:`IntakeProcess` as ``python -m engine.runtime.local.intake``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import SluiceError
from engine.events.sources.webhook import WebhookServer
from engine.runtime.gctune import tune_gc, tune_switching
from engine.runtime.local.engine import StoreObjects
from engine.runtime.local.eventbus import BusPublisher, events_path
from engine.runtime.local.store import Store
from engine.spec.events import EventSource
from engine.spec.loader import normalise_api_version

log = logging.getLogger(__name__)

Subject = tuple[str, str, str]  # namespace, event source, event name
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent ends (Linux; elsewhere stdin's EOF does)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Gate:
    """Publishes for the webhooks within the room the parent grants, and notes each commit for it.

    The parent grants room per subject as a running total (``room``): the child may start the
    publishing of an event of that subject while the events of it it started since it began are fewer
    than the total. Counting here, where the events arrive, is what keeps a trigger's backlog at the
    limit: a parent that decided from the commits it heard of would hear of them only between its
    sensor batches, and the senders would get that long's worth of events past the limit. Requests
    that find no room wait in line, and new room goes to the first of them. A subject without a grant
    (no trigger listens to it, or the parent has not heard of it yet) is not held.
    """

    def __init__(self, publisher: BusPublisher, send: Any, max_wait: float) -> None:
        self._publisher = publisher
        self._send = send
        self.max_wait = max_wait
        self._started: dict[Subject, int] = {}
        self._granted: dict[Subject, int] = {}
        # Per subject, the requests waiting for room, first come first; a future's result: let in.
        self._waiting: dict[Subject, collections.deque[asyncio.Future[None]]] = {}
        self._out: list[list[Any]] = []

    def room(self, grants: list[tuple[Subject, int | None]]) -> None:
        """The parent's new running totals; None: the subject is no longer held at all."""
        for subject, total in grants:
            if total is None:
                self._granted.pop(subject, None)
            else:
                self._granted[subject] = total
            self._let_in(subject)

    def _has_room(self, key: Subject) -> bool:
        total = self._granted.get(key)
        return total is None or self._started.get(key, 0) < total

    def _take(self, key: Subject) -> None:
        """Count an event as started: it takes room from now on, committed or not yet."""
        self._started[key] = self._started.get(key, 0) + 1

    def _give_back(self, key: Subject) -> None:
        """An event counted as started will not go on the bus: its room goes to the next in line."""
        self._started[key] -= 1
        self._let_in(key)

    def _let_in(self, key: Subject) -> None:
        line = self._waiting.get(key)
        while line and self._has_room(key):
            fut = line.popleft()
            if not fut.done():
                self._take(key)
                fut.set_result(None)

    async def _wait_for_room(self, key: Subject) -> None:
        """Wait in line for room, at most ``max_wait``; counts the event as started either way."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._waiting.setdefault(key, collections.deque())
        line.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.max_wait)
        except TimeoutError:
            if not fut.done():  # not let in at the last moment
                # The sensors are stalled: publish anyway (the parent hears of it and counts it).
                self._take(key)
        except BaseException:
            if fut.done():  # let in, then cancelled
                self._give_back(key)
            raise
        finally:
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(ValueError):
                    line.remove(fut)

    async def publish(self, namespace: str, event: Mapping[str, Any]) -> int:
        key = (namespace, str(event.get("source")), str(event.get("subject")))
        if self._waiting.get(key) or not self._has_room(key):
            await self._wait_for_room(key)
        else:
            self._take(key)
        try:
            seq = await self._publisher.publish(namespace, event)
        except BaseException:
            self._give_back(key)  # not on the bus: the parent will never hear of it
            raise
        if not self._out:
            # Everything one commit answered goes to the parent in one message.
            asyncio.get_running_loop().call_soon(self._report)
        self._out.append([*key, seq])
        return seq

    def _report(self) -> None:
        out, self._out = self._out, []
        self._send({"op": "published", "events": out})


def _parse_sources(raw: list[list[Any]]) -> tuple[list[tuple[str, EventSource]], list[str]]:
    """The EventSources the parent sent, and a line for each that does not parse (the parent validated
    them, but a bad one must not take the other webhooks down with this process)."""
    sources: list[tuple[str, EventSource]] = []
    problems: list[str] = []
    for namespace, manifest in raw:
        try:
            sources.append((str(namespace), EventSource.parse(normalise_api_version(manifest))))
        except SluiceError as exc:
            problems.append(f"EventSource {namespace}/{(manifest.get('metadata') or {}).get('name')}: {exc}")
    return sources, problems


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    home = Path(args.home)
    store = Store(home)
    publisher = BusPublisher(events_path(home))
    writer_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)

    def send(message: Mapping[str, Any]) -> None:
        if not writer_transport.is_closing():
            writer_transport.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    gate = _Gate(publisher, send, args.max_wait)
    ports = {str(k): int(v) for k, v in json.loads(args.ports).items()}
    webhooks = WebhookServer([], publish=gate.publish, secrets=StoreObjects(store).secret, ports=ports)
    await webhooks.start(args.host)
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            message = json.loads(line)
            if message["op"] == "room":
                gate.room([((a, b, c), None if t is None else int(t)) for a, b, c, t in message["grants"]])
            elif message["op"] == "sources":
                sources, problems = _parse_sources(message["sources"])
                problems += [str(p) for p in await webhooks.update(sources)]
                send(
                    {"op": "served", "id": message["id"], "ports": webhooks.bound_ports, "problems": problems}
                )
    finally:
        await webhooks.stop()
        await publisher.close()
        store.close()
        writer_transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.runtime.local.intake")
    parser.add_argument("--home", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", default="{}", help="JSON: spec port -> port to bind (0: any free)")
    parser.add_argument("--max-wait", type=float, default=0.5)
    args = parser.parse_args(argv)
    _die_with_parent()
    tune_gc()
    tune_switching()
    # As the server's own process logs: warnings and errors, here marked as the intake process's.
    logging.basicConfig(level=logging.WARNING, format="intake process: %(levelname)s %(name)s: %(message)s")
    # The parent stops this process by closing its stdin, after its own orderly shutdown: a Ctrl-C
    # or a SIGTERM sent to the whole process group is the parent's to act on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        asyncio.run(_serve(args))
    except SluiceError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ============================================================================================ the parent


class IntakeProcess:
    """The server's side of the intake process: starts it, tells it what to serve, hears its commits.

    ``on_published`` gets each batch of commits the child reports, as (namespace, source, event, seq).
    Pacing is decided here, where the sensors are, and carried out in the child, where the events
    arrive: for each subject the child has published, the room it may use is what it published that
    this side has heard of, plus ``limit`` less the ``backlog`` (the most unfinished events of a
    trigger listening to it). Events the child published that this side has not heard of yet are
    counted by the child against that room, so a trigger's backlog stays within the limit however late
    this side reads (``limit`` 0: no pacing). The room is sent again each time a trigger finishes an
    event and whenever commits are heard of. A child that dies is started again after
    ``RESTART_DELAY`` seconds and told its sources again.
    """

    RESTART_DELAY = 1.0
    ANSWER_TIMEOUT = 60.0

    def __init__(
        self,
        home: Path,
        *,
        host: str,
        ports: Mapping[str, int],
        on_published: Callable[[list[tuple[str, str, str, int]]], None],
        backlog: Callable[[Subject], int | None],
        limit: int,
        max_wait: float,
    ) -> None:
        self.home = home
        self.host = host
        self.ports = dict(ports)
        self.on_published = on_published
        self.backlog = backlog
        self.limit = limit
        self.max_wait = max_wait
        self.bound_ports: dict[str, int] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._sources: list[tuple[str, dict[str, Any]]] = []
        # Per subject the child serves or has published: its commits heard of, and the room last
        # granted (None: not held).
        self._heard: dict[Subject, int] = {}
        self._granted: dict[Subject, int | None] = {}
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.runtime.local.intake", "--home", str(self.home),
            "--host", self.host, "--ports", json.dumps(self.ports), "--max-wait", str(self.max_wait),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
        )  # fmt: skip
        # A new child counts from zero.
        self._heard, self._granted = {}, {}
        self._reader = asyncio.get_running_loop().create_task(self._read(self._proc), name="intake process")

    async def update(self, sources: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Serve ``sources`` (namespace, EventSource manifest) from now on; the problems the webhooks
        found (ports that cannot be bound, secrets that cannot be read)."""
        self._sources = sources
        for ns, m in sources:
            for event in (m.get("spec") or {}).get("webhook") or {}:
                # Granted room before its first event, so that the first senders are paced too.
                self._heard.setdefault((ns, str((m.get("metadata") or {}).get("name")), str(event)), 0)
        if self.pid is None:
            # Dead and about to be started again, with these sources.
            return ["the intake process is being started again; the webhooks follow"]
        answer = await self._ask({"op": "sources", "sources": sources})
        self.bound_ports = {str(k): int(v) for k, v in answer["ports"].items()}
        self._grant()
        return [str(p) for p in answer["problems"]]

    def progress(self) -> None:
        """A trigger finished an event, or the sensors changed: the room may have changed."""
        self._grant()

    async def stop(self) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    # -- talking to the child -----------------------------------------------------------------------------

    def _send(self, message: Mapping[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            raise SluiceError("the intake process is not running")
        proc.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[ident] = fut
        try:
            self._send({**message, "id": ident})
            return await asyncio.wait_for(fut, self.ANSWER_TIMEOUT)
        except TimeoutError:
            raise SluiceError(
                f"the intake process did not answer within {self.ANSWER_TIMEOUT:.0f} s"
            ) from None
        finally:
            self._answers.pop(ident, None)

    def _grant(self) -> None:
        if self.limit <= 0:
            return
        changed: list[list[Any]] = []
        # More room goes in steps of half the limit: let in one at a time, each event would be a commit
        # of its own and a sensor batch of one, which costs the sensors more per event.
        step = max(1, self.limit // 2)
        for subject, heard in self._heard.items():
            taken = self.backlog(subject)
            total = None if taken is None else heard + max(0, self.limit - taken)
            before = self._granted.get(subject)
            if total is not None and before is not None:
                # Room once granted may be in use already: it is never taken back. (It can shrink when
                # events from elsewhere, a calendar in the server, fill the trigger.)
                total = max(total, before)
            if total != before and (total is None or before is None or total >= before + step):
                self._granted[subject] = total
                changed.append([*subject, total])
        if changed:
            with contextlib.suppress(SluiceError):
                self._send({"op": "room", "grants": changed})

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            message = json.loads(line)
            if message["op"] == "published":
                events = [(str(a), str(b), str(c), int(d)) for a, b, c, d in message["events"]]
                for a, b, c, _ in events:
                    self._heard[(a, b, c)] = self._heard.get((a, b, c), 0) + 1
                self.on_published(events)
                self._grant()
            elif message["op"] == "served" and (fut := self._answers.get(message["id"])) and not fut.done():
                fut.set_result(message)
        code = await proc.wait()
        for fut in self._answers.values():
            if not fut.done():
                fut.set_exception(SluiceError(f"the intake process exited with code {code}"))
        if not self._stopping:
            log.error("the intake process exited with code %s; starting it again", code)
            asyncio.get_running_loop().create_task(self._restart(), name="intake process restart")

    async def _restart(self) -> None:
        await asyncio.sleep(self.RESTART_DELAY)
        if self._stopping:
            return
        try:
            await self.start()
            await self.update(self._sources)
        except (SluiceError, OSError) as exc:
            log.error("the intake process could not be started again: %s", exc)
