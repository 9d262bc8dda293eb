"""The calendar event source: events on a cron schedule or a fixed interval, published to the bus.

The runtimes build one :class:`CalendarSource` per EventSource that has ``spec.calendar`` events, with a
``publish`` callable into the bus, a :class:`CursorStore` for the per-event cursor, and (in tests) a
fake clock and sleep; they ``await run()`` in a task and ``await stop()`` it at shutdown or when the
EventSource changes (a changed EventSource is a new CalendarSource over the same cursor store).

What is due and what each event looks like is decided by the pure planner :mod:`engine.events.calendar`;
this module does the waiting, the publishing and the bookkeeping, one asyncio task per calendar event:

1. read the event's cursor (``{"lastFired": <epoch seconds>}`` under ``calendar.<ns>.<source>.<event>``);
2. ask the planner which fire times are due now; for each, in order, publish its event through the
   ``cloudevents`` SDK (:mod:`engine.events.cloudevent`) unless ``filter.expression`` rejects it, then
   save the cursor; a rejected fire time still moves the cursor;
3. sleep until the next fire time (in naps of at most a minute, so that a clock jump is noticed), or
   until :meth:`CalendarSource.stop`.

The cursor is saved whether or not ``persistence`` is set (Argo saves it only with a ConfigMap), but
only ``persistence.catchup.enabled`` makes a restart emit what was missed. A failed publish or cursor
write is retried with exponential backoff and the cursor does not move past a fire time until its
event is on the bus. Event ids are derived from the fire time, so an event published again after a
crash between publishing and saving the cursor is dropped by the bus as a duplicate: a fire time
reaches the bus at most once, and with catch-up exactly once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine.errors import ExprError, Problem, SpecError
from engine.events import cloudevent
from engine.events.calendar import CompiledCalendar, accepts, compile_calendar, due, event_for, next_due
from engine.events.model import Event
from engine.events.sources.ports import CursorStore, Publish, Sleep
from engine.spec.events import EventSource

log = logging.getLogger(__name__)

#: Longest single sleep: the loop re-plans at least this often, so wall-clock jumps are noticed.
MAX_NAP = 60.0

_T = TypeVar("_T")


def cursor_key(namespace: str, source: str, event: str) -> str:
    """Where one calendar event's cursor is kept."""
    return f"calendar.{namespace}.{source}.{event}"


class _Stopped(Exception):
    """Internal: the source was stopped while an operation was being retried."""


@dataclass(frozen=True, slots=True)
class _Calendar:
    name: str
    compiled: CompiledCalendar
    key: str


class CalendarSource:
    """Runs every calendar event of one EventSource until stopped."""

    def __init__(
        self,
        namespace: str,
        source: EventSource,
        *,
        publish: Publish,
        cursors: CursorStore,
        now: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        retry_initial: float = 0.1,
        retry_max: float = 30.0,
    ) -> None:
        """Compile the EventSource's calendar events; raises :class:`SpecError` naming every bad field."""
        self.namespace = namespace
        self.name = source.metadata.name or ""
        problems: list[Problem] = []
        calendars: list[_Calendar] = []
        for event, cal in source.spec.calendar.items():
            try:
                compiled = compile_calendar(cal, path=f"spec.calendar.{event}")
            except SpecError as exc:
                problems.extend(exc.problems)
                continue
            calendars.append(_Calendar(event, compiled, cursor_key(namespace, self.name, event)))
        if problems:
            raise SpecError(problems)
        self._calendars = tuple(calendars)
        self._publish = publish
        self._cursors = cursors
        self._now = now
        self._sleep = sleep
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def events(self) -> tuple[str, ...]:
        """The names of the calendar events this source runs."""
        return tuple(c.name for c in self._calendars)

    async def run(self) -> None:
        """Serve every calendar event until :meth:`stop`; returns once all of them have stopped."""
        if not self._idle.is_set():
            raise RuntimeError(f"calendar source {self.namespace}/{self.name} is already running")
        self._idle.clear()
        try:
            started_at = self._now()
            async with asyncio.TaskGroup() as group:
                for cal in self._calendars:
                    group.create_task(self._serve(cal, started_at))
        finally:
            self._idle.set()

    async def stop(self) -> None:
        """Stop serving and wait until :meth:`run` has returned. A fire time being published when the
        source stops is left for the next run (its cursor has not moved)."""
        self._stopping.set()
        await self._idle.wait()

    # ------------------------------------------------------------------------------------------ loop

    async def _serve(self, cal: _Calendar, started_at: float) -> None:
        label = f"{self.namespace}/{self.name} event {cal.name}"
        c = cal.compiled
        try:
            last = await self._retrying(label, "reading the cursor", lambda: self._load(cal, label))
            while not self._stopping.is_set():
                now = self._now()
                fires = due(
                    c,
                    last_fired=last,
                    started_at=started_at,
                    now=now,
                    catchup=c.catchup,
                    max_catchup=c.max_catchup,
                )
                if len(fires) > 1:
                    log.info("calendar: %s: catching up %d missed fire times", label, len(fires))
                for fire in fires:
                    await self._fire(cal, fire, label)
                    last = fire
                wake = next_due(c, last_fired=last, started_at=started_at, now=now, catchup=c.catchup)
                await self._nap(wake - self._now())
        except _Stopped:
            pass

    async def _fire(self, cal: _Calendar, fire: float, label: str) -> None:
        """Publish one fire time's event (unless filtered out) and move the cursor to it."""
        c = cal.compiled
        event = event_for(
            namespace=self.namespace,
            source_name=self.name,
            event_name=cal.name,
            fire_time=fire,
            metadata=c.metadata,
            zone=c.zone,
        )
        payload = self._bus_form(event, fire) if self._accepts(c, event, label) else None
        await self._retrying(label, "publishing", functools.partial(self._deliver, cal, fire, payload))

    async def _load(self, cal: _Calendar, label: str) -> float | None:
        value = await self._cursors.get(cal.key)
        if value is None:
            return None
        last = value.get("lastFired")
        if isinstance(last, bool) or not isinstance(last, int | float) or not math.isfinite(last):
            log.warning("calendar: %s: ignoring an unreadable cursor %r", label, value)
            return None
        return float(last)

    async def _deliver(self, cal: _Calendar, fire: float, payload: dict[str, Any] | None) -> None:
        if payload is not None:
            await self._publish(self.namespace, payload)
        await self._cursors.put(cal.key, {"lastFired": fire})

    @staticmethod
    def _accepts(c: CompiledCalendar, event: Event, label: str) -> bool:
        try:
            ok = accepts(c, event.data)
        except ExprError as exc:
            log.warning("calendar: %s: filter failed, event dropped: %s", label, exc)
            return False
        if not ok:
            log.debug("calendar: %s: filtered out", label)
        return ok

    @staticmethod
    def _bus_form(event: Event, fire: float) -> dict[str, Any]:
        ce = cloudevent.build(
            id=event.id,
            source=event.source,
            type=event.type,
            subject=event.subject,
            time=datetime.fromtimestamp(fire, UTC),
            data=event.data,
        )
        return cloudevent.to_bus(ce)

    async def _retrying(self, label: str, what: str, op: Callable[[], Awaitable[_T]]) -> _T:
        delay = self._retry_initial
        while True:
            if self._stopping.is_set():
                raise _Stopped
            try:
                return await op()
            except Exception as exc:  # any failure of the bus or the store is retried
                log.warning("calendar: %s: %s failed, retrying in %.1fs: %s", label, what, delay, exc)
            await self._nap(delay)
            delay = min(delay * 2, self._retry_max)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds`` (at most :data:`MAX_NAP`), waking early when the source is stopped."""
        if self._stopping.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(max(0.0, min(seconds, MAX_NAP))))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
            # Let both finish their cancellation so no task outlives the nap.
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
        if sleeper.done() and not sleeper.cancelled():
            sleeper.result()


__all__ = ["MAX_NAP", "CalendarSource", "CursorStore", "Publish", "Sleep", "cursor_key"]
