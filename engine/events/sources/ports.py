"""What every event source is given by the runtime that runs it: a way to publish, a cursor store, secrets.

The local server passes the embedded bus's ``publish`` and key-value table; ``sluice eventsource run``
on a cluster passes JetStream's. Used by :mod:`~engine.events.sources.webhook`,
:mod:`~engine.events.sources.calendar` and :mod:`~engine.events.sources.s3`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol


class Publish(Protocol):
    """Stores one event on the bus; returns once it is durably stored (its sequence number), raises if not."""

    async def __call__(self, namespace: str, event: dict[str, Any]) -> int: ...


class CursorStore(Protocol):
    """Small durable key-value storage where a source keeps its place (last fire time, last listing)."""

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any]) -> None: ...


#: (namespace, secret name) -> the secret's decoded data, or None when there is no such secret.
SecretLookup = Callable[[str, str], Mapping[str, str] | None]

Sleep = Callable[[float], Awaitable[None]]

__all__ = ["CursorStore", "Publish", "SecretLookup", "Sleep"]
