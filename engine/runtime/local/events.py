"""Events on one machine: ``sluice server`` hosts the event sources, the embedded bus and the sensors.

:class:`EventsHost` reads the EventSources and Sensors in the local store and keeps running what they
describe: one webhook server per port, a task per calendar and S3 event, a
:class:`~engine.runtime.sensors.SensorRunner` per Sensor whose triggers submit workflows to the same
engine. :meth:`EventsHost.reload` is level-triggered: the CLI calls it (through the server's API) after
creating or deleting an object, and it starts what is new, restarts what changed and stops what is gone
(a deleted Sensor's consumers and partial state go with it). An object that does not validate is
skipped with its problems logged and kept in :attr:`EventsHost.problems`.

Sources keep their cursors, and sensors their partial state, in the bus's key-value table, so both
survive a restart of the server; the bus is ``$SLUICE_HOME/events.db``. Called by
:mod:`engine.runtime.local.server`.

With ``intake_process`` (what ``sluice server`` does unless told otherwise) the webhooks are served
by :class:`~engine.runtime.local.intake.IntakeProcess`, a child process that appends to the bus
itself, so their HTTP work runs on another core than the sensors and the workflows; calendar and S3
sources, whose events are few, stay here.

A source taking events faster than the sensors can act on them would only grow the bus's backlog, and
with it the time from an event to its workflow, without bound. :class:`IntakePacer` publishes for the
sources here and holds an event back while a sensor trigger that listens to it has ``limit`` or more
of the events published still to act on (see :meth:`SensorRunner.backlog`), for at most half a second:
a webhook's answer waits instead, so its sender slows down to what the sensors can do. The intake
process holds its webhooks' events within the room this process grants it, to the same limit (see
:class:`~engine.runtime.local.intake.IntakeProcess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import SluiceError, SpecError
from engine.events.sources.calendar import CalendarSource
from engine.events.sources.s3 import S3Source
from engine.events.sources.webhook import WebhookServer
from engine.events.validate import validate_event_object
from engine.runtime import s3 as s3client
from engine.runtime.local.engine import LocalEngine, StoreObjects
from engine.runtime.local.eventbus import LocalEventBus, events_path
from engine.runtime.local.intake import IntakeProcess
from engine.runtime.local.triggers import LocalObjectActions
from engine.runtime.sensors import SensorRunner, TriggerCounters
from engine.spec.events import EventSource, Sensor
from engine.spec.loader import normalise_api_version

log = logging.getLogger(__name__)

COMPACT_INTERVAL = 300.0
CURSOR_BUCKET = "sources"
# Intake pacing: an event waits while a trigger listening to it has PACE_LIMIT events still to act on,
# for at most PACE_MAX_WAIT seconds. The limit trades the time an event waits on the bus for the size
# of the sensors' batches: with the intake process, at 4 clients, 8 gave 1,200-1,400 events/s and 16
# gave 1,500-1,700 for about the same p99 (15 ms); 24 added 5-10 ms to the p99 for no more events.
PACE_LIMIT = 16
PACE_MAX_WAIT = 0.5


class IntakePacer:
    """Publishes the local sources' events, each once the triggers listening to it have room for it.

    ``runners`` gives the running :class:`SensorRunner` objects. Each published event is noted with
    them (:meth:`SensorRunner.note_published`); they call :meth:`progress` when they finish one. The
    events held for a subject go together once its triggers are down to half the limit: released one
    by one, each would be a commit of its own and a sensor batch of one, which costs the sensors more
    per event than the batches they otherwise take. ``limit`` 0 turns pacing off.
    """

    def __init__(
        self,
        publish: Callable[[str, Mapping[str, Any]], Awaitable[int]],
        runners: Callable[[], Iterable[SensorRunner]],
        *,
        limit: int = PACE_LIMIT,
        max_wait: float = PACE_MAX_WAIT,
    ) -> None:
        self._publish = publish
        self._runners = runners
        self.limit = limit
        self.max_wait = max_wait
        # Held events: (namespace, subject, woken when it may try again).
        self._held: list[tuple[str, tuple[str, str], asyncio.Future[None]]] = []
        # Events between passing the gate and their commit: room they take already.
        self._publishing = 0

    def backlog(self, namespace: str, subject: tuple[str, str]) -> int | None:
        """The largest backlog of a trigger listening to ``subject``; None when none listens."""
        counts = [n for r in self._runners() if (n := r.backlog(namespace, subject)) is not None]
        return max(counts) if counts else None

    def _full(self, namespace: str, subject: tuple[str, str]) -> bool:
        taken = self.backlog(namespace, subject)
        return taken is not None and taken + self._publishing >= self.limit

    async def publish(self, namespace: str, event: Mapping[str, Any]) -> int:
        subject = (str(event.get("source")), str(event.get("subject")))
        if self.limit > 0 and self._full(namespace, subject):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_wait
            while self._full(namespace, subject):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                held: asyncio.Future[None] = loop.create_future()
                entry = (namespace, subject, held)
                self._held.append(entry)
                try:
                    await asyncio.wait_for(held, remaining)
                except TimeoutError:
                    break
                finally:
                    with contextlib.suppress(ValueError):
                        self._held.remove(entry)
        self._publishing += 1
        try:
            seq = await self._publish(namespace, event)
        finally:
            self._publishing -= 1
        self.note(namespace, subject, seq)
        return seq

    def note(self, namespace: str, subject: tuple[str, str], seq: int) -> None:
        """``seq`` went on the bus: the triggers listening to ``subject`` count it as unfinished."""
        for runner in self._runners():
            runner.note_published(namespace, subject, seq)

    def progress(self) -> None:
        """A trigger finished an event: the held events whose triggers are down to half the limit try
        again."""
        if not self._held:
            return
        room: dict[tuple[str, tuple[str, str]], bool] = {}
        keep = []
        for entry in self._held:
            namespace, subject, held = entry
            key = (namespace, subject)
            if key not in room:
                taken = self.backlog(namespace, subject)
                room[key] = taken is None or taken <= self.limit // 2
            if not room[key]:
                keep.append(entry)
            elif not held.done():
                held.set_result(None)
        self._held = keep


class BusCursors:
    """A source's cursor store over the bus's key-value table."""

    def __init__(self, bus: LocalEventBus, bucket: str = CURSOR_BUCKET) -> None:
        self.bus = bus
        self.bucket = bucket

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self.bus.kv_get(self.bucket, key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        await self.bus.kv_put(self.bucket, key, value)


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj.get("spec"), sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Running:
    digest: str
    stop: Any  # an async callable
    task: asyncio.Task[None] | None = None
    runner: SensorRunner | None = None


class EventsHost:
    def __init__(
        self,
        engine: LocalEngine,
        *,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        s3_poll_interval: float = 5.0,
        pace_limit: int | None = None,
        intake_process: bool = False,
    ) -> None:
        """``pace_limit`` None: PACE_LIMIT."""
        if pace_limit is None:
            pace_limit = PACE_LIMIT
        self.engine = engine
        self.host = host
        self.s3_poll_interval = s3_poll_interval
        self.lookup = StoreObjects(engine.store)
        self.bus = LocalEventBus(events_path(engine.home))
        self.pacer = IntakePacer(
            self.bus.publish, lambda: (r.runner for r in self.sensors.values() if r.runner), limit=pace_limit
        )
        self.webhooks = WebhookServer([], publish=self.pacer.publish, secrets=self.lookup.secret, ports=ports)
        self.intake: IntakeProcess | None = None
        if intake_process:
            self.intake = IntakeProcess(
                engine.home,
                host=host,
                ports=ports or {},
                on_published=self._published_elsewhere,
                backlog=lambda s: self.pacer.backlog(s[0], (s[1], s[2])),
                limit=pace_limit,
                max_wait=PACE_MAX_WAIT,
            )
        self.actions = LocalObjectActions(engine)
        self.sources: dict[tuple[str, str, str], _Running] = {}
        self.sensors: dict[tuple[str, str], _Running] = {}
        self.problems: dict[str, list[str]] = {}
        self._lock = asyncio.Lock()
        self._compactor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.intake is not None:
            await self.intake.start()
        else:
            await self.webhooks.start(self.host)
        await self.reload()
        self._compactor = asyncio.get_running_loop().create_task(self._compact_loop())

    async def close(self) -> None:
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        async with self._lock:
            for running in [*self.sources.values(), *self.sensors.values()]:
                await running.stop()
            self.sources.clear()
            self.sensors.clear()
        if self.intake is not None:
            await self.intake.stop()
        await self.webhooks.stop()
        await self.bus.close()

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(COMPACT_INTERVAL)
            try:
                removed = await self.bus.compact()
            except SluiceError as exc:
                log.warning("event bus compaction failed: %s", exc)
            else:
                if removed:
                    log.info("event bus: %d event(s) past retention removed", removed)

    # -- what the store says should run ------------------------------------------------------------------

    def _valid(self, kind: str) -> list[tuple[str, dict[str, Any], Any]]:
        out = []
        for raw in self.engine.store.list_objects(kind):
            meta = raw.get("metadata") or {}
            label = f"{kind} {meta.get('namespace') or 'default'}/{meta.get('name')}"
            try:
                model = EventSource if kind == "EventSource" else Sensor
                obj = model.parse(normalise_api_version(raw))
                validate_event_object(obj)
            except SpecError as exc:
                self.problems[label] = exc.lines()
                log.warning("%s is not run: %s", label, exc.one_line())
                continue
            self.problems.pop(label, None)
            out.append((str(meta.get("namespace") or "default"), raw, obj))
        return out

    async def reload(self) -> None:
        async with self._lock:
            sources = self._valid("EventSource")
            problems: list[Any]
            if self.intake is not None:
                problems = await self.intake.update([(ns, raw) for ns, raw, es in sources if es.spec.webhook])
            else:
                problems = await self.webhooks.update([(ns, es) for ns, _, es in sources if es.spec.webhook])
            for p in problems:
                log.warning("webhook: %s", p)
            await self._reload_sources(sources)
            await self._reload_sensors(self._valid("Sensor"))
            if self.intake is not None:
                self.intake.progress()  # the triggers listening to its subjects may have changed

    async def _reload_sources(self, sources: list[tuple[str, dict[str, Any], EventSource]]) -> None:
        wanted: dict[tuple[str, str, str], tuple[str, EventSource]] = {}
        for ns, raw, es in sources:
            name = es.metadata.name or ""
            digest = _digest(raw)
            if es.spec.calendar:
                wanted[(ns, name, "calendar")] = (digest, es)
            for event in es.spec.minio:
                wanted[(ns, name, f"minio/{event}")] = (digest, es)
        for key in [k for k, r in self.sources.items() if k not in wanted or wanted[k][0] != r.digest]:
            await self.sources.pop(key).stop()
        for key, (digest, es) in wanted.items():
            if key in self.sources:
                continue
            ns, _, what = key
            try:
                source: CalendarSource | S3Source
                if what == "calendar":
                    source = CalendarSource(ns, es, publish=self.pacer.publish, cursors=BusCursors(self.bus))
                else:
                    event = what.split("/", 1)[1]
                    source = S3Source(
                        namespace=ns,
                        event_source=es,
                        event_name=event,
                        spec=es.spec.minio[event],
                        publish=self.pacer.publish,
                        cursors=BusCursors(self.bus),
                        secrets=self.lookup.secret,
                        connect=s3client.open_bucket,
                        poll_interval=self.s3_poll_interval,
                    )
            except SluiceError as exc:
                log.warning("EventSource %s/%s: %s", ns, key[1], exc)
                continue
            task = asyncio.get_running_loop().create_task(source.run(), name=f"source {ns}/{key[1]} {what}")
            self.sources[key] = _Running(digest, source.stop, task)

    async def _reload_sensors(self, sensors: list[tuple[str, dict[str, Any], Sensor]]) -> None:
        wanted = {(ns, s.metadata.name or ""): (_digest(raw), s) for ns, raw, s in sensors}
        for key in [k for k in self.sensors if k not in wanted]:
            running = self.sensors.pop(key)
            assert running.runner is not None
            await running.runner.forget()
        for key in [k for k, r in self.sensors.items() if wanted[k][0] != r.digest]:
            await self.sensors.pop(key).stop()
        for key, (digest, sensor) in wanted.items():
            if key in self.sensors:
                continue
            runner = SensorRunner(
                namespace=key[0], sensor=sensor, bus=self.bus, objects=self.actions, lookup=self.lookup
            )
            runner.on_progress = self._progress
            try:
                await runner.start()
            except SluiceError as exc:
                log.warning("Sensor %s/%s: %s", key[0], key[1], exc)
                await runner.stop()
                continue
            self.sensors[key] = _Running(digest, runner.stop, runner=runner)

    def _progress(self) -> None:
        self.pacer.progress()
        if self.intake is not None:
            self.intake.progress()

    def _published_elsewhere(self, events: list[tuple[str, str, str, int]]) -> None:
        """The intake process committed these (namespace, source, event, seq)."""
        for namespace, source, name, seq in events:
            self.pacer.note(namespace, (source, name), seq)
        self.bus.published_elsewhere({(ns, src, name) for ns, src, name, _ in events})

    # -- what runs ---------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        def counters(c: TriggerCounters) -> dict[str, Any]:
            return {"events": c.events, "fired": c.fired, "failed": c.failed, "lastError": c.last_error}

        return {
            "webhookPorts": self.intake.bound_ports if self.intake is not None else self.webhooks.bound_ports,
            "intakePid": self.intake.pid if self.intake is not None else None,
            "sources": sorted(f"{ns}/{name} {what}" for ns, name, what in self.sources),
            "sensors": {
                f"{ns}/{name}": {t: counters(c) for t, c in r.runner.counters().items()}
                for (ns, name), r in self.sensors.items()
                if r.runner is not None
            },
            "problems": self.problems,
        }


__all__ = ["BusCursors", "EventsHost", "IntakePacer"]
