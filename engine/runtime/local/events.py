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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
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
from engine.runtime.local.triggers import LocalObjectActions
from engine.runtime.sensors import SensorRunner, TriggerCounters
from engine.spec.events import EventSource, Sensor
from engine.spec.loader import normalise_api_version

log = logging.getLogger(__name__)

COMPACT_INTERVAL = 300.0
CURSOR_BUCKET = "sources"


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
    ) -> None:
        self.engine = engine
        self.host = host
        self.s3_poll_interval = s3_poll_interval
        self.lookup = StoreObjects(engine.store)
        self.bus = LocalEventBus(events_path(engine.home))
        self.webhooks = WebhookServer([], publish=self.bus.publish, secrets=self.lookup.secret, ports=ports)
        self.actions = LocalObjectActions(engine)
        self.sources: dict[tuple[str, str, str], _Running] = {}
        self.sensors: dict[tuple[str, str], _Running] = {}
        self.problems: dict[str, list[str]] = {}
        self._lock = asyncio.Lock()
        self._compactor: asyncio.Task[None] | None = None

    async def start(self) -> None:
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
            problems = await self.webhooks.update([(ns, es) for ns, _, es in sources if es.spec.webhook])
            for p in problems:
                log.warning("webhook: %s", p)
            await self._reload_sources(sources)
            await self._reload_sensors(self._valid("Sensor"))

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
                    source = CalendarSource(ns, es, publish=self.bus.publish, cursors=BusCursors(self.bus))
                else:
                    event = what.split("/", 1)[1]
                    source = S3Source(
                        namespace=ns,
                        event_source=es,
                        event_name=event,
                        spec=es.spec.minio[event],
                        publish=self.bus.publish,
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
            try:
                await runner.start()
            except SluiceError as exc:
                log.warning("Sensor %s/%s: %s", key[0], key[1], exc)
                await runner.stop()
                continue
            self.sensors[key] = _Running(digest, runner.stop, runner=runner)

    # -- what runs ---------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        def counters(c: TriggerCounters) -> dict[str, Any]:
            return {"events": c.events, "fired": c.fired, "failed": c.failed, "lastError": c.last_error}

        return {
            "webhookPorts": self.webhooks.bound_ports,
            "sources": sorted(f"{ns}/{name} {what}" for ns, name, what in self.sources),
            "sensors": {
                f"{ns}/{name}": {t: counters(c) for t, c in r.runner.counters().items()}
                for (ns, name), r in self.sensors.items()
                if r.runner is not None
            },
            "problems": self.problems,
        }


__all__ = ["BusCursors", "EventsHost"]
