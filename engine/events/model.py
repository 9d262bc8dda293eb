"""The event as the events core sees it: a CloudEvents 1.0 context plus JSON data.

Event sources build their events with the ``cloudevents`` SDK at the edge (``engine.events.sources``)
and hand them to the bus as :meth:`Event.to_json` dicts (CloudEvents' structured JSON form); sensors
read them back with :meth:`Event.from_json`. ``source`` is the EventSource's name, ``subject`` the name
of the event inside it and ``type`` the source type (``webhook``, ``calendar``, ``minio``), as Argo sets
them. Pure data, used by filters, conditions, parameters and trigger planning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import ExprError

CONTEXT_KEYS = ("id", "source", "specversion", "type", "subject", "time", "datacontenttype")


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    source: str
    type: str
    subject: str
    time: str
    data: Any = None
    datacontenttype: str = "application/json"
    specversion: str = "1.0"

    def context(self) -> dict[str, str]:
        """The CloudEvents attributes, as sensors' ``contextKey`` and context filters read them."""
        return {k: getattr(self, k) for k in CONTEXT_KEYS}

    def to_json(self) -> dict[str, Any]:
        return {**self.context(), "data": self.data}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Event:
        missing = [k for k in ("id", "source", "type", "subject", "time") if not isinstance(raw.get(k), str)]
        if missing:
            raise ExprError(f"not an event: attribute {missing[0]!r} is missing or not a string")
        return cls(
            id=raw["id"],
            source=raw["source"],
            type=raw["type"],
            subject=raw["subject"],
            time=raw["time"],
            data=raw.get("data"),
            datacontenttype=str(raw.get("datacontenttype") or "application/json"),
            specversion=str(raw.get("specversion") or "1.0"),
        )


__all__ = ["CONTEXT_KEYS", "Event"]
