"""The operator's reconciler of EventBuses, EventSources and Sensors: their workloads and conditions.

``engine.runtime.kubernetes.operator`` hands every watch event of the three kinds to an
:class:`EventController`. Each event leads to a level-triggered reconcile of that object, serialised
per object: parse and validate it (:func:`engine.events.validate.validate_event_object`), compute the
children it should have (:mod:`engine.runtime.kubernetes.eventworkloads`), list the children it has
(by label), create what is missing, patch what differs (the children's hash annotations say so),
delete and create again what differs in a field the API server will not change in place, and delete
the children no longer wanted (a Service after ``spec.service`` is removed, a JetStream server after
the bus became exotic). Then it writes ``status.conditions`` as Argo Events does:

* EventSource: ``SourcesProvided`` and ``Deployed``;
* Sensor: ``DependenciesProvided``, ``TriggersProvided`` and ``Deployed``;
* EventBus: ``Configured`` and ``Deployed`` (and ``status.config.jetstream.url``).

An invalid object gets its condition False with the one-line error and no change to its workloads.
An EventSource or Sensor whose bus is missing or invalid is not deployed either; when a bus appears,
changes its address or goes, the objects that use it are reconciled again. Writes that fail (the API
server is away, a concurrent writer) are retried with a growing delay. Nothing is stored on the objects
but their status, so a restarted operator recomputes the same children, finds them in place, and
writes nothing. Deleting an object leaves its children to the garbage collector (they are owned).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Problem, SluiceError, SpecError
from engine.events.validate import validate_event_object
from engine.runtime.kubernetes.api import JSON_PATCH, ApiError, AsyncApi, path_of
from engine.runtime.kubernetes.eventworkloads import (
    CHILD_RESOURCES,
    DEFAULT_EVENT_BUS,
    EVENT_BUS_CHILD_KINDS,
    EVENT_SOURCE_CHILD_KINDS,
    LABEL_EVENT_BUS,
    LABEL_EVENT_SOURCE,
    LABEL_SENSOR,
    SENSOR_CHILD_KINDS,
    BusConnection,
    bus_connection,
    bus_name_of,
    decide_change,
    event_bus_children,
    event_source_children,
    owner_selector,
    sensor_children,
    update_patch,
)
from engine.runtime.kubernetes.pods import LABEL_INSTANCE
from engine.runtime.kubernetes.settings import OperatorSettings
from engine.spec.events import EventBus, EventSource, Sensor

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name

EVENT_SOURCE = "EventSource"
SENSOR = "Sensor"
EVENT_BUS = "EventBus"
PLURALS = {EVENT_SOURCE: "eventsources", SENSOR: "sensors", EVENT_BUS: "eventbus"}
OWNER_LABELS = {EVENT_SOURCE: LABEL_EVENT_SOURCE, SENSOR: LABEL_SENSOR, EVENT_BUS: LABEL_EVENT_BUS}
CHILD_KINDS = {
    EVENT_SOURCE: EVENT_SOURCE_CHILD_KINDS,
    SENSOR: SENSOR_CHILD_KINDS,
    EVENT_BUS: EVENT_BUS_CHILD_KINDS,
}
# The retries of a reconcile whose writes failed: 1, 2, 4 ... seconds, at most this long apart.
MAX_RETRY_SECONDS = 60.0
NOT_RECONCILED = "not deployed while the spec is invalid"


@dataclass(frozen=True, slots=True)
class Condition:
    """One entry of ``status.conditions``, as Argo Events writes them."""

    type: str
    ok: bool
    reason: str
    message: str = ""


@dataclass(slots=True)
class Outcome:
    """What one reconcile found: the object's conditions, more status, and whether to try again."""

    conditions: list[Condition]
    extra_status: JSON = field(default_factory=dict)
    retry: bool = False


class _SyncError(SluiceError):
    """A child could not be brought to its desired state (reported in ``Deployed``, then retried)."""


def _one_line(exc: SpecError, problems: Sequence[Problem] | None = None) -> str:
    return SpecError(problems).one_line() if problems else exc.one_line()


def _under(problems: Sequence[Problem], prefix: str) -> list[Problem]:
    return [p for p in problems if p.path == prefix or p.path.startswith((f"{prefix}.", f"{prefix}["))]


def _invalid_sensor(exc: SpecError) -> list[Condition]:
    """A Sensor's problems split as Argo's conditions split them: dependencies, triggers, the rest."""
    deps = _under(exc.problems, "spec.dependencies")
    triggers = _under(exc.problems, "spec.triggers")
    rest = [p for p in exc.problems if p not in deps and p not in triggers]
    return [
        Condition("DependenciesProvided", False, "InvalidDependencies", _one_line(exc, deps))
        if deps
        else Condition("DependenciesProvided", True, "DependenciesProvided"),
        Condition("TriggersProvided", False, "InvalidTriggers", _one_line(exc, triggers))
        if triggers
        else Condition("TriggersProvided", True, "TriggersProvided"),
        Condition("Deployed", False, "InvalidSpec", _one_line(exc, rest) if rest else NOT_RECONCILED),
    ]


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj``'s controller is the object ``uid`` (or it has none, so no one else claims it)."""
    refs = [r for r in (obj.get("metadata") or {}).get("ownerReferences") or () if r.get("controller")]
    return not refs or any(r.get("uid") == uid for r in refs)


def _child_path(kind: str, namespace: str, name: str | None = None) -> str:
    group, version, plural = CHILD_RESOURCES[kind]
    return path_of(plural, namespace, name, group=group, version=version)


class EventController:
    """Every EventBus, EventSource and Sensor this operator sees, reconciled one object at a time."""

    def __init__(
        self, api: AsyncApi, settings: OperatorSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.api = api
        self.settings = settings
        self.clock = clock
        # The latest body of every object, by kind, namespace and name (from the watches).
        self.objects: dict[Key, JSON] = {}
        # Where each bus was last found to be (its URL, or why it cannot be used): a change wakes its users.
        self.bus_states: dict[tuple[str, str], str] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._background):
            task.cancel()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def ours(self, body: Mapping[str, Any]) -> bool:
        labels = (body.get("metadata") or {}).get("labels") or {}
        return str(labels.get(LABEL_INSTANCE, "")) == self.settings.instance_id

    # ------------------------------------------------------------------------------------- events

    async def on_event_source(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        await self.on_object(EVENT_SOURCE, event_type, body)

    async def on_sensor(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        await self.on_object(SENSOR, event_type, body)

    async def on_event_bus(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        await self.on_object(EVENT_BUS, event_type, body)

    async def on_object(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if not namespace or not name:
            return
        key = (kind, namespace, name)
        if event_type == "DELETED" or not self.ours(body):
            # Its children go with it (garbage collection of owned objects); only its users care.
            self.objects.pop(key, None)
            self._locks.pop(key, None)
            self._forget(key)
            if kind == EVENT_BUS:
                self._bus_state(namespace, name, f"no EventBus {name!r} in namespace {namespace!r}")
            return
        self.objects[key] = dict(body)
        await self.reconcile(key)

    def _forget(self, key: Key) -> None:
        self._forget_timer(key)
        self._failures.pop(key, None)

    # ------------------------------------------------------------------------------------- reconcile

    async def reconcile(self, key: Key) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            body = self.objects.get(key)
            if body is None:
                return
            kind, namespace, name = key
            try:
                if kind == EVENT_BUS:
                    outcome = await self._reconcile_bus(body)
                elif kind == EVENT_SOURCE:
                    outcome = await self._reconcile_event_source(body)
                else:
                    outcome = await self._reconcile_sensor(body)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an operator bug must not stop the other objects' reconciles
                log.exception("%s %s/%s: reconcile failed", kind, namespace, name)
                outcome = Outcome([Condition("Deployed", False, "OperatorError", str(exc))], retry=True)
            written = await self._write_status(key, body, outcome)
            self._schedule(key, retry=outcome.retry or not written)

    def _schedule(self, key: Key, *, retry: bool) -> None:
        self._forget_timer(key)
        if not retry:
            self._failures.pop(key, None)
            return
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(MAX_RETRY_SECONDS, 2.0**failures)
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._retry, key)

    def _forget_timer(self, key: Key) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _retry(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.spawn(self.reconcile(key))

    async def _reconcile_event_source(self, body: JSON) -> Outcome:
        try:
            source = EventSource.parse(body)
            validate_event_object(source)
        except SpecError as exc:
            return Outcome(
                [
                    Condition("SourcesProvided", False, "InvalidEventSource", exc.one_line()),
                    Condition("Deployed", False, "InvalidSpec", NOT_RECONCILED),
                ]
            )
        provided = Condition("SourcesProvided", True, "SourcesProvided")
        bus = await self._bus_for(body, bus_name_of(source))
        if isinstance(bus, Condition):
            return Outcome([provided, bus], retry=bus.reason == "DeployFailed")
        try:
            desired = event_source_children(source, bus=bus, settings=self.settings)
        except SpecError as exc:
            return Outcome([provided, Condition("Deployed", False, "InvalidSpec", exc.one_line())])
        deployed = await self._deploy(EVENT_SOURCE, body, desired)
        return Outcome([provided, deployed], retry=not deployed.ok)

    async def _reconcile_sensor(self, body: JSON) -> Outcome:
        try:
            sensor = Sensor.parse(body)
            validate_event_object(sensor)
        except SpecError as exc:
            return Outcome(_invalid_sensor(exc))
        provided = [
            Condition("DependenciesProvided", True, "DependenciesProvided"),
            Condition("TriggersProvided", True, "TriggersProvided"),
        ]
        bus = await self._bus_for(body, bus_name_of(sensor))
        if isinstance(bus, Condition):
            return Outcome([*provided, bus], retry=bus.reason == "DeployFailed")
        try:
            desired = sensor_children(sensor, bus=bus, settings=self.settings)
        except SpecError as exc:
            return Outcome([*provided, Condition("Deployed", False, "InvalidSpec", exc.one_line())])
        deployed = await self._deploy(SENSOR, body, desired)
        return Outcome([*provided, deployed], retry=not deployed.ok)

    async def _reconcile_bus(self, body: JSON) -> Outcome:
        meta = body.get("metadata") or {}
        namespace, name = str(meta["namespace"]), str(meta["name"])
        try:
            bus = EventBus.parse(body)
            validate_event_object(bus)
            connection = bus_connection(bus)
        except SpecError as exc:
            self._bus_state(namespace, name, f"EventBus {name!r} is invalid: {exc.one_line()}")
            return Outcome(
                [
                    Condition("Configured", False, "InvalidEventBus", exc.one_line()),
                    Condition("Deployed", False, "InvalidSpec", NOT_RECONCILED),
                ],
                extra_status={"config": None},
            )
        configured = Condition("Configured", True, "Configured")
        status = {"config": {"jetstream": {"url": connection.url}}}
        self._bus_state(namespace, name, connection.url)
        try:
            desired = event_bus_children(bus, settings=self.settings)
        except SpecError as exc:
            return Outcome([configured, Condition("Deployed", False, "InvalidSpec", exc.one_line())], status)
        deployed = await self._deploy(EVENT_BUS, body, desired)
        if deployed.ok and not desired:
            deployed = Condition("Deployed", True, "Exotic", f"uses the JetStream server at {connection.url}")
        return Outcome([configured, deployed], status, retry=not deployed.ok)

    # ------------------------------------------------------------------------------------- the bus

    async def _bus_for(self, body: Mapping[str, Any], bus_name: str) -> BusConnection | Condition:
        """The connection of the bus an EventSource or Sensor uses, or the ``Deployed`` condition saying
        why there is none."""
        namespace = str((body.get("metadata") or {}).get("namespace"))
        bus_body = self.objects.get((EVENT_BUS, namespace, bus_name))
        if bus_body is None:
            # Not seen (yet): its watch and this object's are independent; ask rather than report it missing.
            try:
                bus_body = await self.api.get_or_none(path_of(PLURALS[EVENT_BUS], namespace, bus_name))
            except ApiError as exc:
                return Condition(
                    "Deployed", False, "DeployFailed", f"could not read EventBus {bus_name!r}: {exc}"
                )
        if bus_body is None:
            return Condition(
                "Deployed", False, "EventBusNotFound", f"no EventBus {bus_name!r} in namespace {namespace!r}"
            )
        try:
            bus = EventBus.parse(bus_body)
            validate_event_object(bus)
            return bus_connection(bus)
        except SpecError as exc:
            return Condition(
                "Deployed", False, "EventBusInvalid", f"EventBus {bus_name!r} is invalid: {exc.one_line()}"
            )

    def _bus_state(self, namespace: str, name: str, state: str) -> None:
        """Record where a bus is; when that changed, reconcile every EventSource and Sensor using it."""
        if self.bus_states.get((namespace, name)) == state:
            return
        self.bus_states[(namespace, name)] = state
        for key, body in list(self.objects.items()):
            kind, ns, _ = key
            if kind == EVENT_BUS or ns != namespace:
                continue
            uses = ((body.get("spec") or {}).get("eventBusName")) or DEFAULT_EVENT_BUS
            if uses == name:
                self.spawn(self.reconcile(key))

    # ------------------------------------------------------------------------------------- children

    async def _deploy(self, kind: str, body: Mapping[str, Any], desired: Sequence[JSON]) -> Condition:
        meta = body.get("metadata") or {}
        namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta.get("uid") or "")
        try:
            await self._sync(kind, namespace, name, uid, desired)
        except _SyncError as exc:
            log.warning("%s %s/%s: %s", kind, namespace, name, exc)
            return Condition("Deployed", False, "DeployFailed", str(exc))
        made = ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in desired)
        return Condition("Deployed", True, "Deployed", made)

    async def _sync(self, kind: str, namespace: str, name: str, uid: str, desired: Sequence[JSON]) -> None:
        selector = owner_selector(OWNER_LABELS[kind], name)
        live: dict[tuple[str, str], JSON] = {}
        for child_kind in CHILD_KINDS[kind]:
            try:
                listed = await self.api.get(
                    _child_path(child_kind, namespace), query=[("labelSelector", selector)]
                )
            except ApiError as exc:
                raise _SyncError(f"could not list {child_kind}s: {exc.api_message or exc}") from None
            for item in listed.get("items") or ():
                live[(child_kind, str(item["metadata"]["name"]))] = item
        for want in desired:
            child_kind, child = str(want["kind"]), str(want["metadata"]["name"])
            have = live.pop((child_kind, child), None)
            what = f"{child_kind} {child}"
            try:
                if have is None:
                    if await self.api.create(_child_path(child_kind, namespace), want) is None:
                        raise _SyncError(f"{what} exists already and is not this {kind}'s (no owner label)")
                    log.info("%s %s/%s: created %s", kind, namespace, name, what)
                    continue
                change = decide_change(have, want)
                if change == "patch":
                    await self.api.call(
                        "PATCH",
                        _child_path(child_kind, namespace, child),
                        body=update_patch(have, want),
                        content_type=JSON_PATCH,
                    )
                    log.info("%s %s/%s: updated %s", kind, namespace, name, what)
                elif change == "recreate":
                    # A field the API server keeps as it was created (a StatefulSet's volume claims...).
                    await self.api.delete(_child_path(child_kind, namespace, child))
                    if await self.api.create(_child_path(child_kind, namespace), want) is None:
                        raise _SyncError(f"{what} is being replaced; the old one is still going away")
                    log.info("%s %s/%s: replaced %s", kind, namespace, name, what)
            except ApiError as exc:
                raise _SyncError(f"could not write {what}: {exc.api_message or exc}") from None
        for (child_kind, child), have in live.items():
            if not _owned_by(have, uid):
                continue
            try:
                await self.api.delete(_child_path(child_kind, namespace, child))
            except ApiError as exc:
                raise _SyncError(f"could not delete {child_kind} {child}: {exc.api_message or exc}") from None
            log.info("%s %s/%s: deleted %s %s", kind, namespace, name, child_kind, child)

    # ------------------------------------------------------------------------------------- status

    def _conditions(self, body: Mapping[str, Any], conditions: Sequence[Condition]) -> list[JSON]:
        """The conditions as written: a condition whose status stays keeps its lastTransitionTime."""
        previous = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or ()}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        out = []
        for c in conditions:
            status = "True" if c.ok else "False"
            before = previous.get(c.type) or {}
            since = before.get("lastTransitionTime") if before.get("status") == status else None
            entry = {"type": c.type, "status": status, "lastTransitionTime": since or now, "reason": c.reason}
            if c.message:
                entry["message"] = c.message
            out.append(entry)
        return out

    async def _write_status(self, key: Key, body: JSON, outcome: Outcome) -> bool:
        """Write the status when it changed; False when the write failed (the reconcile is retried)."""
        kind, namespace, name = key
        status: JSON = {"conditions": self._conditions(body, outcome.conditions), **outcome.extra_status}
        current = body.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return True
        try:
            updated = await self.api.merge_patch(
                path_of(PLURALS[kind], namespace, name, sub="status"), {"status": status}
            )
        except ApiError as exc:
            if exc.status == 404:
                return True  # deleted meanwhile: its DELETED event follows
            log.warning("%s %s/%s: could not write its status: %s", kind, namespace, name, exc)
            return False
        # The next reconcile compares with what was written, even before the watch brings it.
        if self.objects.get(key) is body:
            self.objects[key] = {**body, "status": updated.get("status") or status}
        return True


__all__ = ["Condition", "EventController", "Outcome"]
