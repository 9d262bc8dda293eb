"""The sensor core: conditions, held events, firing, resets, duplicates and state across restarts."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ExprError
from engine.events.conditions import parse_conditions
from engine.events.model import Event
from engine.events.sensor import (
    CompiledTrigger,
    Step,
    TriggerState,
    compile_sensor,
    next_wakeup,
    on_event,
    on_tick,
    restore,
)
from engine.spec.events import Sensor

T0 = 1_800_000_000.0


def sensor(triggers: list[dict[str, Any]], deps: list[dict[str, Any]] | None = None) -> Sensor:
    deps = deps or [{"name": n, "eventSourceName": "webhook", "eventName": n} for n in ("a", "b", "c")]
    raw = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Sensor",
        "metadata": {"name": "s"},
        "spec": {"dependencies": deps, "triggers": [{"template": t} for t in triggers]},
    }
    return Sensor.parse(raw)


def log_trigger(name: str, conditions: str | None = None, **extra: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": name, "log": {}, **extra}
    if conditions is not None:
        t["conditions"] = conditions
    return t


def event(subject: str, n: int = 0, data: Any = None, source: str = "webhook") -> Event:
    return Event(
        id=f"{subject}-{n}",
        source=source,
        type="webhook",
        subject=subject,
        time="2027-01-15T10:00:00Z",
        data=data if data is not None else {"body": {"n": n}},
    )


class Runner:
    """Feeds events to every trigger of a sensor the way a runtime does, keeping each trigger's state."""

    def __init__(self, s: Sensor) -> None:
        self.triggers = {t.name: t for t in compile_sensor(s)}
        self.states = {name: restore(t, None, T0) for name, t in self.triggers.items()}

    def send(self, e: Event, now: float = T0) -> dict[str, Step]:
        steps = {}
        for name, t in self.triggers.items():
            step = on_event(t, self.states[name], e, now)
            self.states[name] = step.state
            steps[name] = step
        return steps

    def fired(self, e: Event, now: float = T0) -> dict[str, list[str]]:
        return {
            name: sorted(f"{dep}={ev.id}" for dep, ev in step.firing.events.items())
            for name, step in self.send(e, now).items()
            if step.firing is not None
        }


def test_reference_condition_sequence_fires_each_trigger_only_when_its_expression_holds() -> None:
    r = Runner(sensor([log_trigger("t1", "(a && b) || c"), log_trigger("t2", "a")]))
    assert r.fired(event("a", 1)) == {"t2": ["a=a-1"]}
    assert r.fired(event("b", 1)) == {"t1": ["a=a-1", "b=b-1"]}
    assert r.fired(event("b", 2)) == {}
    assert r.fired(event("c", 1)) == {"t1": ["b=b-2", "c=c-1"]}


def test_latest_event_per_dependency_is_kept_and_earlier_ones_dropped() -> None:
    r = Runner(sensor([log_trigger("t", "a && b")]))
    for n in range(1, 11):
        assert r.fired(event("a", n)) == {}
    assert r.fired(event("b", 1)) == {"t": ["a=a-10", "b=b-1"]}
    assert r.states["t"].held == {}


def test_pure_or_fires_on_each_event_with_only_that_dependency() -> None:
    r = Runner(sensor([log_trigger("t", "a || b")]))
    assert r.fired(event("a", 1)) == {"t": ["a=a-1"]}
    assert r.fired(event("a", 2)) == {"t": ["a=a-2"]}
    assert r.fired(event("b", 1)) == {"t": ["b=b-1"]}
    assert r.states["t"].held == {}


def test_without_conditions_a_trigger_needs_every_dependency() -> None:
    r = Runner(sensor([log_trigger("t")]))
    assert r.fired(event("a")) == {}
    assert r.fired(event("c")) == {}
    assert r.fired(event("b")) == {"t": ["a=a-0", "b=b-0", "c=c-0"]}


def test_redelivered_event_is_a_duplicate_and_fires_nothing() -> None:
    r = Runner(sensor([log_trigger("t", "a")]))
    assert r.fired(event("a", 1)) == {"t": ["a=a-1"]}
    step = r.send(event("a", 1))["t"]
    assert (step.outcome, step.firing) == ("duplicate", None)


def test_same_events_give_the_same_firing_key_and_different_events_another() -> None:
    s = sensor([log_trigger("t", "a")])
    (t,) = compile_sensor(s)
    fresh = restore(t, None, T0)
    first = on_event(t, fresh, event("a", 1), T0).firing
    again = on_event(t, fresh, event("a", 1), T0 + 5).firing
    other = on_event(t, fresh, event("a", 2), T0).firing
    assert first is not None and again is not None and other is not None
    assert first.key == again.key != other.key


def test_events_for_other_sources_or_names_are_not_routed() -> None:
    r = Runner(sensor([log_trigger("t", "a")]))
    assert r.send(event("a", source="calendar"))["t"].outcome == "unrouted"
    assert r.send(event("zzz"))["t"].outcome == "unrouted"


def test_filtered_event_is_not_held() -> None:
    deps = [
        {
            "name": "a",
            "eventSourceName": "webhook",
            "eventName": "a",
            "filters": {"data": [{"path": "body.action", "type": "string", "value": ["^opened$"]}]},
        },
        {"name": "b", "eventSourceName": "webhook", "eventName": "b"},
    ]
    r = Runner(sensor([log_trigger("t", "a && b")], deps))
    step = r.send(event("a", 1, {"body": {"action": "closed"}}))["t"]
    assert step.outcome == "filtered" and r.states["t"].held == {}
    assert r.send(event("a", 2, {"body": {"action": "opened"}}))["t"].outcome == "held"
    assert r.fired(event("b", 1)) == {"t": ["a=a-2", "b=b-1"]}


def test_two_dependencies_on_the_same_event_both_take_it() -> None:
    deps = [
        {"name": "x", "eventSourceName": "webhook", "eventName": "a"},
        {"name": "y", "eventSourceName": "webhook", "eventName": "a"},
    ]
    r = Runner(sensor([log_trigger("t", "x && y")], deps))
    assert r.fired(event("a", 1)) == {"t": ["x=a-1", "y=a-1"]}


def test_partial_state_survives_a_restart_through_json() -> None:
    s = sensor([log_trigger("t", "a && b")])
    (t,) = compile_sensor(s)
    held = on_event(t, restore(t, None, T0), event("a", 1), T0).state
    (t_again,) = compile_sensor(sensor([log_trigger("t", "a && b")]))
    state = restore(t_again, held.to_json(), T0 + 60)
    step = on_event(t_again, state, event("b", 1), T0 + 60)
    assert step.firing is not None and sorted(step.firing.events) == ["a", "b"]


def test_partial_state_is_dropped_when_the_trigger_spec_changes() -> None:
    (t,) = compile_sensor(sensor([log_trigger("t", "a && b")]))
    held = on_event(t, restore(t, None, T0), event("a", 1), T0).state
    (changed,) = compile_sensor(sensor([log_trigger("t", "a && b", log={"intervalSeconds": 5})]))
    assert restore(changed, held.to_json(), T0).held == {}
    assert restore(t, held.to_json(), T0).held.keys() == {"a"}


def test_conditions_reset_by_time_clears_held_events_at_the_scheduled_time() -> None:
    reset = [{"byTime": {"cron": "0 * * * *"}}]
    (t,) = compile_sensor(sensor([log_trigger("t", "a && b", conditionsReset=reset)]))
    start = 1_800_000_000.0 - (1_800_000_000.0 % 3600) + 600  # ten past an hour
    state = on_event(t, restore(t, None, start), event("a", 1), start).state
    wake = next_wakeup(t, state)
    assert wake == start - 600 + 3600
    assert on_tick(t, state, wake - 1).state.held.keys() == {"a"}
    assert on_tick(t, state, wake).outcome == "reset"
    later = on_event(t, state, event("b", 1), wake + 1)
    assert later.firing is None and later.state.held.keys() == {"b"}


def test_conditions_parse_names_with_hyphens_and_report_syntax_errors() -> None:
    c = parse_conditions("test-dep && (dep.two || !other_dep)")
    assert c.names == {"test-dep", "dep.two", "other_dep"}
    assert c.holds({"test-dep", "dep.two"}) and not c.holds({"test-dep", "other_dep"})
    for bad in ("a &&", "(a || b", "a b", "&& a", "a + b", ""):
        with pytest.raises(ExprError):
            parse_conditions(bad)


def test_state_json_ignores_garbage() -> None:
    state = TriggerState.from_json({"digest": 3, "held": {"a": "x", "b": {}}, "seen": "no", "checkedAt": "x"})
    assert state == TriggerState(digest="3", held={"b": {}}, seen=(), checked_at=0.0)


def test_compiled_trigger_listens_only_to_what_its_conditions_name() -> None:
    (t,) = compile_sensor(sensor([log_trigger("t", "a || c")]))
    assert isinstance(t, CompiledTrigger)
    assert sorted(t.subjects()) == [("webhook", "a"), ("webhook", "c")]
