"""Running a Sensor: consume its triggers' events from a bus, fire, act, acknowledge. Shared by both runtimes.

One task per trigger (each trigger has its own durable consumer and its own state, as in Argo). A
batch of deliveries is fed through the pure sensor core (:mod:`engine.events.sensor`); every firing's
action runs before the batch is acknowledged, and the acknowledgement carries the trigger's new state
(one transaction on the embedded bus; on JetStream the state is written first, then the acks). A
crash before the state is stored redelivers the batch against the old state, which yields the same
firings with the same keys; after it, the new state already lists the events as consumed, so their
redelivery is a duplicate. Object actions are idempotent by the firing key (a Workflow is created
under a name derived from it), so each firing creates its object once; an HTTP action cut off by a
crash is sent again. Argo acknowledges before acting unless
``atLeastOnce`` is set; here the acknowledgement always follows the action, and ``atLeastOnce`` only
decides what a failed action does afterwards (with it, ``dlqTrigger`` runs; without, it is logged).

Actions on objects go through :class:`ObjectActions`, which each runtime implements (the local store
and engine, or the API server); HTTP and log actions are carried out here. Called by the local server
(``engine.runtime.local.events``) and by ``sluice sensor run`` on a cluster.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from engine.errors import ExprError, SluiceError
from engine.events.actions import (
    ActionError,
    HttpAction,
    LogAction,
    ObjectAction,
    plan_action,
    trigger_template,
)
from engine.events.model import Event
from engine.events.sensor import (
    CompiledTrigger,
    Firing,
    TriggerState,
    compile_sensor,
    next_wakeup,
    on_event,
    on_tick,
    restore,
)
from engine.runtime.base import EventBus, ObjectLookup
from engine.runtime.busmodel import KVUpdate, SubjectFilter
from engine.spec.duration import parse_duration
from engine.spec.events import Backoff, Sensor, Trigger, TriggerTemplate

log = logging.getLogger(__name__)

FETCH_BATCH = 128
# How long a trigger works through a batch before it lets other tasks run.
SLICE = 0.005
# The most unfinished events a trigger counts for SensorRunner.backlog (far above any pacing limit).
UNFINISHED_MAX = 4096
IDLE_POLL = 30.0
RATE_UNITS = {"Second": 1.0, "Minute": 60.0, "Hour": 3600.0}


class ObjectActions(Protocol):
    """A runtime's side of ``k8s`` and ``argoWorkflow`` triggers."""

    async def fetch_source(self, template: TriggerTemplate, namespace: str) -> Any:
        """The text of a trigger source kept outside the Sensor (``configmap``, ``file``, ``url``, ``s3``,
        ``git``); None for ``resource``/``inline`` sources. Network fetches must not block the loop."""
        ...

    async def run(self, action: ObjectAction, firing: Firing) -> str:
        """Carry out ``action`` idempotently (the same firing twice acts once); return what was done."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Wraps the actions of one batch of deliveries, which is acknowledged only once it ends
        without raising (a runtime may commit the batch's writes together)."""
        ...


def consumer_name(namespace: str, sensor: str, trigger: str) -> str:
    return f"sensor/{namespace}/{sensor}/{trigger}"


def state_bucket(namespace: str, sensor: str) -> str:
    return f"sensor/{namespace}/{sensor}"


@dataclass
class TriggerCounters:
    """What a trigger did since the runner started (exposed by the server's API and metrics)."""

    events: int = 0
    fired: int = 0
    failed: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class _Attempts:
    steps: int
    duration: float
    factor: float
    jitter: float

    @classmethod
    def of(cls, backoff: Backoff | None) -> _Attempts:
        if backoff is None:
            return cls(1, 0.0, 1.0, 0.0)
        return cls(
            steps=max(1, backoff.steps or 1),
            duration=parse_duration(backoff.duration) if backoff.duration is not None else 1.0,
            factor=float(backoff.factor) if backoff.factor is not None else 1.0,
            jitter=float(backoff.jitter) if backoff.jitter is not None else 0.0,
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based; the first waits nothing)."""
        if attempt <= 1:
            return 0.0
        base = self.duration * self.factor ** (attempt - 2)
        return base + (random.random() * self.jitter * base if self.jitter else 0.0)


class _RateLimiter:
    """A token bucket per trigger: ``requestsPerUnit`` per ``unit``, waiting when it is empty."""

    def __init__(self, per_unit: int, unit: str) -> None:
        self.rate = per_unit / RATE_UNITS.get(unit or "Second", 1.0)
        self.capacity = float(per_unit)
        self.tokens = float(per_unit)
        self.stamp = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class _TriggerTask:
    compiled: CompiledTrigger
    counters: TriggerCounters = field(default_factory=TriggerCounters)
    limiter: _RateLimiter | None = None
    task: asyncio.Task[None] | None = None
    # The (eventSourceName, eventName) pairs it listens to; the bus sequence numbers, in order, of
    # events the local sources published for it that it has not finished yet, and the highest one it
    # finished: see SensorRunner.backlog.
    subjects: frozenset[tuple[str, str]] = frozenset()
    unfinished: list[int] = field(default_factory=list)
    finished_seq: int = 0


class SensorRunner:
    """Runs every trigger of one Sensor against ``bus`` until :meth:`stop`."""

    def __init__(
        self,
        *,
        namespace: str,
        sensor: Sensor,
        bus: EventBus,
        objects: ObjectActions,
        lookup: ObjectLookup,
        now: Callable[[], float] = time.time,
        ack_wait: float = 60.0,
    ) -> None:
        self.namespace = namespace
        self.sensor = sensor
        self.name = sensor.metadata.name or ""
        self.bus = bus
        self.objects = objects
        self.lookup = lookup
        self.now = now
        self.ack_wait = ack_wait
        self.triggers: dict[str, _TriggerTask] = {}
        # Called after each delivery a trigger finishes (the local server paces its sources with it).
        self.on_progress: Callable[[], None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False

    async def start(self) -> None:
        for compiled in compile_sensor(self.sensor):
            rate = compiled.spec.rate_limit
            limiter = None
            if rate is not None and rate.requests_per_unit:
                limiter = _RateLimiter(rate.requests_per_unit, rate.unit or "Second")
            tt = _TriggerTask(compiled, limiter=limiter, subjects=frozenset(compiled.subjects()))
            filters = [SubjectFilter(self.namespace, src, name) for src, name in compiled.subjects()]
            await self.bus.consumer(
                consumer_name(self.namespace, self.name, compiled.name), filters, ack_wait=self.ack_wait
            )
            self.triggers[compiled.name] = tt
            tt.task = asyncio.get_running_loop().create_task(
                self._loop(tt), name=f"sensor {self.namespace}/{self.name} trigger {compiled.name}"
            )

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t.task for t in self.triggers.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forget(self) -> None:
        """The sensor was deleted: drop its consumers and stored state too."""
        await self.stop()
        for name in self.triggers:
            await self.bus.delete_consumer(consumer_name(self.namespace, self.name, name))
            await self.bus.kv_delete(state_bucket(self.namespace, self.name), name)

    def note_published(self, namespace: str, subject: tuple[str, str], seq: int) -> None:
        """An event of ``subject`` (eventSourceName, eventName) went on the bus as ``seq``: the triggers
        listening to it count it as unfinished until they have acted on it (see :meth:`backlog`)."""
        if namespace != self.namespace:
            return
        for tt in self.triggers.values():
            # A publisher may hear of its commit after the trigger already acted on the event.
            if subject in tt.subjects and seq > tt.finished_seq:
                bisect.insort(tt.unfinished, seq)
                if len(tt.unfinished) > UNFINISHED_MAX:  # a stalled trigger: count no further
                    del tt.unfinished[0]

    def backlog(self, namespace: str | None = None, subject: tuple[str, str] | None = None) -> int | None:
        """The most events noted by :meth:`note_published` that a trigger listening to ``subject`` (any
        subject when None) has not finished; None when no trigger listens to it."""
        if namespace is not None and namespace != self.namespace:
            return None
        counts = [
            len(tt.unfinished) for tt in self.triggers.values() if subject is None or subject in tt.subjects
        ]
        return max(counts) if counts else None

    # -- one trigger ----------------------------------------------------------------------------------

    async def _loop(self, tt: _TriggerTask) -> None:
        ct = tt.compiled
        consumer = consumer_name(self.namespace, self.name, ct.name)
        bucket = state_bucket(self.namespace, self.name)
        state: TriggerState | None = None
        while not self._stopping:
            try:
                if state is None:
                    state = restore(ct, await self.bus.kv_get(bucket, ct.name), self.now())
                state = await self._step(tt, consumer, bucket, state)
            except SluiceError as exc:
                # The bus is unavailable (a restart, the network): what was not acknowledged comes back
                # after ack_wait, so carry on from the stored state once the bus answers again.
                log.warning("sensor %s/%s trigger %s: %s; retrying", self.namespace, self.name, ct.name, exc)
                tt.counters.last_error = str(exc)
                state = None
                await asyncio.sleep(1.0)

    async def _step(self, tt: _TriggerTask, consumer: str, bucket: str, state: TriggerState) -> TriggerState:
        """Wait for the next batch of deliveries (or the next conditions reset) and process it."""
        ct = tt.compiled
        wake = next_wakeup(ct, state)
        timeout = IDLE_POLL if wake is None else max(0.0, min(IDLE_POLL, wake - self.now()))
        deliveries = await self.bus.fetch(consumer, limit=FETCH_BATCH, timeout=timeout)
        if not deliveries:
            step = on_tick(ct, state, self.now())
            if step.outcome == "reset":
                await self.bus.kv_put(bucket, ct.name, step.state.to_json())
            return step.state
        return await self._batch(tt, consumer, bucket, state, deliveries)

    async def _batch(
        self, tt: _TriggerTask, consumer: str, bucket: str, state: TriggerState, deliveries: list[Any]
    ) -> TriggerState:
        ct = tt.compiled
        progress = self.on_progress
        unfinished = tt.unfinished
        loop = asyncio.get_running_loop()
        turn = loop.time()
        with self.objects.batch():
            for d in deliveries:
                if loop.time() - turn > SLICE:
                    # A batch of actions that never wait (workflows submitted on this machine) would
                    # keep the loop from everything else; let the rest (webhooks, workflows) have a turn.
                    await asyncio.sleep(0)
                    turn = loop.time()
                tt.counters.events += 1
                try:
                    event = Event.from_json(d.event)
                except ExprError as exc:
                    log.warning(
                        "sensor %s/%s: dropping malformed event seq %s: %s",
                        self.namespace,
                        self.name,
                        d.seq,
                        exc,
                    )
                    continue
                step = on_event(ct, state, event, self.now())
                state = step.state
                if step.firing is not None:
                    await self._fire(tt, step.firing)
                tt.finished_seq = max(tt.finished_seq, d.seq)
                if unfinished and unfinished[0] <= d.seq:
                    del unfinished[: bisect.bisect_right(unfinished, d.seq)]
                    if progress is not None:
                        progress()
        # The whole batch and the state after it commit together.
        await self.bus.ack_batch(
            consumer, [d.seq for d in deliveries], kv_updates=[KVUpdate(bucket, ct.name, state.to_json())]
        )
        return state

    async def _fire(self, tt: _TriggerTask, firing: Firing) -> bool:
        trigger = tt.compiled.spec
        error = await self._act(tt, trigger, firing)
        if error is None:
            tt.counters.fired += 1
            return True
        tt.counters.failed += 1
        tt.counters.last_error = error
        log.warning(
            "sensor %s/%s trigger %s failed for events %s: %s",
            self.namespace,
            self.name,
            tt.compiled.name,
            ",".join(firing.event_ids()),
            error,
        )
        if trigger.at_least_once and trigger.dlq_trigger is not None:
            dlq_error = await self._act(tt, trigger.dlq_trigger, firing)
            if dlq_error is not None:
                log.warning("sensor %s/%s: dlqTrigger failed too: %s", self.namespace, self.name, dlq_error)
        return False

    async def _act(self, tt: _TriggerTask, trigger: Trigger, firing: Firing) -> str | None:
        """Run ``trigger``'s action for ``firing`` with its retry strategy; the last error, or None."""
        attempts = _Attempts.of(trigger.retry_strategy)
        compiled = tt.compiled if trigger is tt.compiled.spec else _recompiled(tt.compiled, trigger)
        error: str | None = None
        for attempt in range(1, attempts.steps + 1):
            if attempt > 1:
                await asyncio.sleep(attempts.delay(attempt))
            if tt.limiter is not None:
                await tt.limiter.take()
            try:
                template = trigger_template(compiled, firing)
                loaded = await self.objects.fetch_source(template, self.namespace)
                action = plan_action(
                    compiled,
                    firing,
                    now=self.now(),
                    namespace=self.namespace,
                    loaded=loaded,
                    template=template,
                )
                done = await self._run(action, firing)
            except ActionError as exc:
                return str(exc)  # the same firing would fail the same way again
            except (TimeoutError, SluiceError, aiohttp.ClientError, OSError) as exc:
                error = str(exc) or type(exc).__name__
                continue
            log.info("sensor %s/%s trigger %s: %s", self.namespace, self.name, compiled.name, done)
            return None
        return error

    async def _run(self, action: Any, firing: Firing) -> str:
        if isinstance(action, ObjectAction):
            return await self.objects.run(action, firing)
        if isinstance(action, HttpAction):
            return await self._http(action)
        assert isinstance(action, LogAction)
        for line in action.text.splitlines():
            log.info("sensor %s/%s: %s", self.namespace, self.name, line)
        return "logged"

    async def _http(self, action: HttpAction) -> str:
        headers = dict(action.headers)
        for h in action.secure_headers:
            headers[h.name] = self._secure_value(h.value_from)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=action.timeout)
        async with self._session.request(
            action.method, action.url, data=action.body, headers=headers, timeout=timeout
        ) as resp:
            await resp.read()
            if action.allow and resp.status not in action.allow:
                raise SluiceError(
                    f"{action.method} {action.url} answered {resp.status}, not one of {list(action.allow)}"
                )
            return f"{action.method} {action.url} -> {resp.status}"

    def _secure_value(self, source: Any) -> str:
        ref = source.secret_key_ref or source.config_map_key_ref
        if ref is None or not ref.name:
            raise ActionError("a secure header names no secret or config map")
        if source.secret_key_ref is not None:
            data: Mapping[str, str] | None = self.lookup.secret(self.namespace, ref.name)
        else:
            data = self.lookup.configmap(self.namespace, ref.name)
        if data is None or ref.key not in data:
            raise SluiceError(f"secure header: key {ref.key!r} of {ref.name!r} not found")
        return data[ref.key]

    def counters(self) -> dict[str, TriggerCounters]:
        return {name: t.counters for name, t in self.triggers.items()}


def _recompiled(base: CompiledTrigger, trigger: Trigger) -> CompiledTrigger:
    """``base`` with another trigger spec (a dlqTrigger acts on the same events as its trigger)."""
    return CompiledTrigger(
        sensor=base.sensor,
        name=trigger.template.name if trigger.template else base.name,
        spec=trigger,
        conditions=base.conditions,
        dependencies=base.dependencies,
        routes=base.routes,
        resets=base.resets,
        digest=base.digest,
    )


__all__ = ["ObjectActions", "SensorRunner", "TriggerCounters", "consumer_name", "state_bucket"]
