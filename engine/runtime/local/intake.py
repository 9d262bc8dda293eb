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
* parent: ``{"op": "hold", "subjects": [[namespace, source, event], ...]}`` the subjects whose
  triggers are full (see :class:`~engine.runtime.local.events.IntakePacer`); a request for one of them
  waits, for at most ``--max-wait`` seconds, until the parent sends a set without it;
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
    """Publishes for the webhooks: holds an event while the parent says its subject is full, notes
    each commit for the parent."""

    def __init__(self, publisher: BusPublisher, send: Any, max_wait: float) -> None:
        self._publisher = publisher
        self._send = send
        self.max_wait = max_wait
        self._held: set[Subject] = set()
        self._changed: asyncio.Future[None] | None = None
        self._out: list[list[Any]] = []

    def hold(self, subjects: set[Subject]) -> None:
        self._held = subjects
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def publish(self, namespace: str, event: Mapping[str, Any]) -> int:
        key = (namespace, str(event.get("source")), str(event.get("subject")))
        if key in self._held:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_wait
            while key in self._held and (remaining := deadline - loop.time()) > 0:
                if self._changed is None:
                    self._changed = loop.create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._changed), remaining)
        seq = await self._publisher.publish(namespace, event)
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
            if message["op"] == "hold":
                gate.hold({(str(a), str(b), str(c)) for a, b, c in message["subjects"]})
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
    Pacing is decided here, where the sensors are: after such a batch and on :meth:`progress`, a
    subject whose ``backlog`` (the most unfinished events of a trigger listening to it) reached
    ``limit`` is held until it is down to half of it, as :class:`~engine.runtime.local.events.IntakePacer`
    does in process (``limit`` 0: never). A child that dies is started again after ``RESTART_DELAY``
    seconds and told its sources again.
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
        self._held: set[Subject] = set()
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
        self._held = set()
        self._reader = asyncio.get_running_loop().create_task(self._read(self._proc), name="intake process")

    async def update(self, sources: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Serve ``sources`` (namespace, EventSource manifest) from now on; the problems the webhooks
        found (ports that cannot be bound, secrets that cannot be read)."""
        self._sources = sources
        if self.pid is None:
            # Dead and about to be started again, with these sources.
            return ["the intake process is being started again; the webhooks follow"]
        answer = await self._ask({"op": "sources", "sources": sources})
        self.bound_ports = {str(k): int(v) for k, v in answer["ports"].items()}
        return [str(p) for p in answer["problems"]]

    def progress(self) -> None:
        """A trigger finished an event: held subjects may have room again."""
        if self._held:
            self._decide(set())

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

    def _decide(self, published: set[Subject]) -> None:
        if self.limit <= 0:
            return
        held = set()
        for subject in published | self._held:
            taken = self.backlog(subject)
            if taken is not None and (
                taken >= self.limit or (subject in self._held and taken > self.limit // 2)
            ):
                held.add(subject)
        if held != self._held:
            self._held = held
            with contextlib.suppress(SluiceError):
                self._send({"op": "hold", "subjects": sorted(held)})

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            message = json.loads(line)
            if message["op"] == "published":
                events = [(str(a), str(b), str(c), int(d)) for a, b, c, d in message["events"]]
                self.on_published(events)
                self._decide({(a, b, c) for a, b, c, _ in events})
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
