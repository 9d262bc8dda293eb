"""The sensor core: which events a trigger holds, when it fires, and what it fires with.

Each trigger of a sensor is evaluated on its own (its own bus consumer and its own state), as Argo
does. For every event delivered to a trigger, :func:`on_event` decides, from the trigger's compiled
spec, its persisted :class:`TriggerState` and the event alone:

* an event whose id the trigger has already consumed is a duplicate and changes nothing;
* the event is offered to every dependency the trigger's ``conditions`` name whose eventSourceName and
  eventName match it; a dependency takes it when its filters pass;
* a trigger whose conditions are a plain OR of names fires at once with just the matching events;
* otherwise the trigger keeps the latest event per dependency; once ``conditions`` hold it fires with
  everything it holds and clears its state.

``conditionsReset`` schedules clear the held events (:func:`on_tick`, :func:`next_wakeup`). State
carries a digest of the trigger's spec and of the dependencies it reads; :func:`restore` drops
state saved under another digest, so editing a trigger starts it afresh. A :class:`Firing` carries a
key derived from the trigger and the event ids, which the runtimes use to make the trigger's action
idempotent (the same firing, redelivered after a crash, creates the same object once).

Pure: the runtimes (the local server, ``sluice sensor run``) load state, call these functions, run the
firing's action and store the new state in the same transaction as the bus acknowledgement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import ExprError
from engine.events.conditions import Conditions, all_of, parse_conditions
from engine.events.filters import passes
from engine.events.model import Event
from engine.expr.cron import CronSchedule, load_zone
from engine.spec.events import EventDependency, Sensor, Trigger

# How many consumed event ids a trigger remembers to recognise a redelivery after its state moved on.
SEEN_WINDOW = 256


@dataclass(frozen=True, slots=True)
class Reset:
    schedule: CronSchedule
    zone: ZoneInfo


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    """One trigger with everything per-event evaluation needs precomputed."""

    sensor: str
    name: str
    spec: Trigger
    conditions: Conditions
    dependencies: Mapping[str, EventDependency]
    routes: Mapping[tuple[str, str], tuple[EventDependency, ...]]
    resets: tuple[Reset, ...]
    digest: str

    def subjects(self) -> tuple[tuple[str, str], ...]:
        """The (eventSourceName, eventName) pairs this trigger listens to."""
        return tuple(self.routes)


def compile_sensor(sensor: Sensor) -> tuple[CompiledTrigger, ...]:
    """Compile every trigger of a validated sensor (see :mod:`engine.events.validate`)."""
    deps = {d.name: d for d in sensor.spec.dependencies}
    name = sensor.metadata.name or ""
    return tuple(_compile_trigger(name, t, deps) for t in sensor.spec.triggers if t.template is not None)


def _compile_trigger(sensor: str, trigger: Trigger, deps: Mapping[str, EventDependency]) -> CompiledTrigger:
    assert trigger.template is not None
    tpl = trigger.template
    conditions = parse_conditions(tpl.conditions) if tpl.conditions else all_of(list(deps))
    used = {n: deps[n] for n in deps if n in conditions.names}
    routes: dict[tuple[str, str], list[EventDependency]] = {}
    for dep in used.values():
        routes.setdefault((dep.event_source_name, dep.event_name), []).append(dep)
    resets = tuple(
        Reset(CronSchedule.parse(r.by_time.cron), load_zone(r.by_time.timezone or "UTC"))
        for r in tpl.conditions_reset
        if r.by_time is not None
    )
    material = {"trigger": trigger.dump(), "dependencies": [d.dump() for d in used.values()]}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    return CompiledTrigger(
        sensor=sensor,
        name=tpl.name,
        spec=trigger,
        conditions=conditions,
        dependencies=used,
        routes={k: tuple(v) for k, v in routes.items()},
        resets=resets,
        digest=digest,
    )


@dataclass(frozen=True, slots=True)
class TriggerState:
    """What a trigger remembers between events; stored as JSON next to the bus acknowledgement."""

    digest: str
    held: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seen: tuple[str, ...] = ()
    checked_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "held": dict(self.held),
            "seen": list(self.seen),
            "checkedAt": self.checked_at,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TriggerState:
        held = raw.get("held")
        seen = raw.get("seen")
        checked = raw.get("checkedAt")
        return cls(
            digest=str(raw.get("digest") or ""),
            held={str(k): v for k, v in held.items() if isinstance(v, dict)}
            if isinstance(held, dict)
            else {},
            seen=tuple(str(s) for s in seen) if isinstance(seen, list) else (),
            checked_at=float(checked) if isinstance(checked, int | float) else 0.0,
        )


def fresh_state(trigger: CompiledTrigger, now: float) -> TriggerState:
    return TriggerState(digest=trigger.digest, checked_at=now)


def restore(trigger: CompiledTrigger, raw: Mapping[str, Any] | None, now: float) -> TriggerState:
    """The stored state, or a fresh one when there is none or it belongs to another spec of the trigger."""
    if not raw:
        return fresh_state(trigger, now)
    state = TriggerState.from_json(raw)
    if state.digest != trigger.digest:
        return fresh_state(trigger, now)
    return state


@dataclass(frozen=True, slots=True)
class Firing:
    """A trigger firing: the events per dependency and a key naming this firing."""

    sensor: str
    trigger: str
    events: Mapping[str, Event]
    key: str

    def event_ids(self) -> tuple[str, ...]:
        return tuple(sorted({e.id for e in self.events.values()}))


def firing_key(sensor: str, trigger: str, events: Mapping[str, Event]) -> str:
    ids = sorted(f"{e.source}/{e.id}" for e in events.values())
    return hashlib.sha256("\n".join([sensor, trigger, *ids]).encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Step:
    """What one event (or tick) did to a trigger: its next state, a firing if any, and why."""

    state: TriggerState
    firing: Firing | None
    outcome: str  # duplicate | unrouted | filtered | held | fired | reset | idle
    reason: str = ""


def _remember(seen: Sequence[str], event_id: str) -> tuple[str, ...]:
    return (*seen[-(SEEN_WINDOW - 1) :], event_id)


def _apply_resets(trigger: CompiledTrigger, state: TriggerState, now: float) -> tuple[TriggerState, bool]:
    """Clear held events if a conditionsReset schedule fired since the state was last checked."""
    if not trigger.resets or now <= state.checked_at:
        return state, False
    due = any(r.schedule.next_after(state.checked_at, r.zone) <= now for r in trigger.resets)
    held = {} if due else state.held
    return TriggerState(state.digest, held, state.seen, now), due and bool(state.held)


def on_tick(trigger: CompiledTrigger, state: TriggerState, now: float) -> Step:
    state, cleared = _apply_resets(trigger, state, now)
    return Step(state, None, "reset" if cleared else "idle")


def next_wakeup(trigger: CompiledTrigger, state: TriggerState) -> float | None:
    """When :func:`on_tick` next has something to do (a reset schedule's next time), if ever."""
    if not trigger.resets or not state.held:
        return None
    return min(r.schedule.next_after(state.checked_at, r.zone) for r in trigger.resets)


def on_event(trigger: CompiledTrigger, state: TriggerState, event: Event, now: float) -> Step:
    """Feed one delivered event to ``trigger``."""
    state, _ = _apply_resets(trigger, state, now)
    if event.id in state.seen:
        return Step(state, None, "duplicate", f"event {event.id} was already consumed")
    candidates = trigger.routes.get((event.source, event.subject), ())
    if not candidates:
        return Step(state, None, "unrouted", f"no dependency listens to {event.source}/{event.subject}")
    matched: dict[str, Event] = {}
    reasons: list[str] = []
    for dep in candidates:
        try:
            result = passes(dep.filters, dep.filters_logical_operator, event)
        except ExprError as exc:  # a filter that cannot be evaluated does not pass
            reasons.append(f"{dep.name}: {exc}")
            continue
        if result.passed:
            matched[dep.name] = event
        else:
            reasons.append(f"{dep.name}: {result.reason}")
    seen = _remember(state.seen, event.id)
    if not matched:
        return Step(
            TriggerState(state.digest, state.held, seen, state.checked_at),
            None,
            "filtered",
            "; ".join(reasons),
        )
    if trigger.conditions.pure_or:
        firing = Firing(
            trigger.sensor, trigger.name, matched, firing_key(trigger.sensor, trigger.name, matched)
        )
        return Step(TriggerState(state.digest, state.held, seen, state.checked_at), firing, "fired")
    held = {**state.held, **{name: e.to_json() for name, e in matched.items()}}
    if not trigger.conditions.holds(held):
        return Step(TriggerState(state.digest, held, seen, state.checked_at), None, "held")
    events = {name: Event.from_json(raw) for name, raw in held.items()}
    firing = Firing(trigger.sensor, trigger.name, events, firing_key(trigger.sensor, trigger.name, events))
    return Step(TriggerState(state.digest, {}, seen, state.checked_at), firing, "fired")


__all__ = [
    "CompiledTrigger",
    "Firing",
    "Step",
    "TriggerState",
    "compile_sensor",
    "fresh_state",
    "next_wakeup",
    "on_event",
    "on_tick",
    "restore",
]
