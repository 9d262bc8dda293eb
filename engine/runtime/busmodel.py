"""Record types of the event bus port (:class:`engine.runtime.base.EventBus`), shared by its implementations.

The embedded bus (``engine.runtime.local.eventbus``) and a JetStream bus for clusters return these;
event sources publish through the port and sensors consume through it. Events are CloudEvents held as
JSON-able dicts; the bus reads only their ``source`` (the EventSource's name), ``subject`` (the event's
name inside that EventSource) and ``id``.

A subject is the triple (namespace, eventSourceName, eventName). Its text form
``<namespace>.<eventSourceName>.<eventName>`` is what JetStream calls a subject; the embedded bus keeps
the three parts apart, so names that contain dots cannot be confused there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import Problem, SpecError

# How both buses write JSON: compact, UTF-8 as is, and no NaN (not JSON).
JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def subject_key(namespace: str, event_source: str, event_name: str) -> str:
    """``<namespace>.<eventSourceName>.<eventName>``: a subject as JetStream and log lines spell it."""
    return f"{namespace}.{event_source}.{event_name}"


@dataclass(frozen=True, slots=True)
class SubjectFilter:
    """Which subjects a consumer receives; a part left as None matches any value.

    ``SubjectFilter("default", "webhook", "example")`` is one (eventSourceName, eventName) pair,
    ``SubjectFilter("default", "webhook")`` every event of one EventSource (a prefix), and
    ``SubjectFilter("default")`` everything in a namespace.
    """

    namespace: str | None = None
    event_source: str | None = None
    event_name: str | None = None

    def matches(self, namespace: str, event_source: str, event_name: str) -> bool:
        return (
            (self.namespace is None or self.namespace == namespace)
            and (self.event_source is None or self.event_source == event_source)
            and (self.event_name is None or self.event_name == event_name)
        )

    def key(self) -> str:
        """The JetStream filter subject: ``*`` for a free part, ``>`` for a free tail."""
        parts = [self.namespace, self.event_source, self.event_name]
        while parts and parts[-1] is None:
            parts.pop()
        if len(parts) < 3:
            return ".".join([*(p or "*" for p in parts), ">"])
        return ".".join(p or "*" for p in parts)


@dataclass(frozen=True, slots=True)
class BusRecord:
    """One event on the bus, as the log holds it (``sluice events tail``)."""

    seq: int
    namespace: str
    event: dict[str, Any]
    published_at: float  # seconds since the epoch, when the bus committed it

    @property
    def subject(self) -> str:
        return subject_key(self.namespace, str(self.event.get("source")), str(self.event.get("subject")))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event handed to a consumer; ack it by ``seq``. ``deliveries`` is 1 the first time."""

    seq: int
    namespace: str
    event: dict[str, Any]
    published_at: float
    deliveries: int

    @property
    def subject(self) -> str:
        return subject_key(self.namespace, str(self.event.get("source")), str(self.event.get("subject")))


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """A durable consumer's configuration and position."""

    name: str
    filters: tuple[SubjectFilter, ...]
    ack_wait: float
    delivered_seq: int  # the log position up to which events have been handed out (or skipped)
    ack_pending: int  # delivered and not yet acknowledged
    created: bool  # True when this call created it


@dataclass(frozen=True, slots=True)
class KVUpdate:
    """A write to the bus's key-value store, applied atomically with an ack; ``value=None`` deletes."""

    bucket: str
    key: str
    value: dict[str, Any] | None


def encode_event(namespace: str, event: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """Check the attributes every bus reads and serialize the event: (source, subject, id, JSON text).

    Raises SpecError listing every problem (an empty namespace or attribute, data that is not JSON).
    """
    problems: list[Problem] = []
    if not isinstance(namespace, str) or not namespace:
        problems.append(Problem("namespace", "must be a non-empty string"))
    if not isinstance(event, Mapping):
        raise SpecError([Problem("event", f"must be a mapping, not {type(event).__name__}")])
    for attr in ("id", "source", "subject"):
        value = event.get(attr)
        if not isinstance(value, str) or not value:
            problems.append(Problem(f"event.{attr}", "must be a non-empty string"))
    try:
        text = JSON_ENCODER.encode(dict(event))
    except (TypeError, ValueError) as exc:
        problems.append(Problem("event", f"is not JSON-serializable: {exc}"))
        text = ""
    if problems:
        raise SpecError(problems)
    return event["source"], event["subject"], event["id"], text


def check_consumer(name: str, filters: Sequence[SubjectFilter], ack_wait: float) -> None:
    """The arguments every bus's ``consumer`` refuses, as SpecError."""
    if not name:
        raise SpecError([Problem("consumer", "name must not be empty")])
    if not filters:
        raise SpecError([Problem("consumer.filters", "at least one filter is required")])
    if ack_wait <= 0:
        raise SpecError([Problem("consumer.ackWait", "must be positive")])
