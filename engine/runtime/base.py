"""Ports between the runtimes and what they drive, as Protocols.

The workflow core (``engine.workflows``) never sees these: a runtime implements them and glues them to
the core's Plan/observation data. The local runtime implements them with SQLite, processes and a
directory of artifacts; the Kubernetes runtime with the API server, pods and S3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.runtime.busmodel import BusRecord, ConsumerInfo, Delivery, KVUpdate, SubjectFilter
from engine.workflows.plan import StepOutcome, StepRun


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class ObjectLookup(Protocol):
    """Read access to ConfigMaps and Secrets (a local store, or the API server)."""

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """Decoded values (not base64)."""
        ...


class ArtifactRepository(Protocol):
    """Where output artifacts go and input artifacts come from."""

    def put(self, key: str, source: Path) -> dict[str, Any]:
        """Store the file at ``source`` under ``key``; return the location, e.g. {"local": {"key": k}}."""
        ...

    def get(self, location: Mapping[str, Any], dest: Path) -> None:
        """Write the object at ``location`` (one location key of an Argo artifact) to ``dest``."""
        ...

    def delete(self, location: Mapping[str, Any]) -> None: ...


OutcomeSink = Callable[[StepOutcome], None]


class StepExecutor(Protocol):
    """Runs leaf nodes. ``start`` returns once the step is launched; outcomes arrive through the sink."""

    async def start(self, step: StepRun) -> None:
        """Launch ``step``; a second call for a pod name already running is a no-op."""
        ...

    async def kill(self, node_id: str, message: str) -> None:
        """Kill the step's whole process tree/pod; the outcome is Failed with ``message``."""
        ...

    async def close(self) -> None:
        """Kill everything still running (engine shutdown)."""
        ...


class EventBus(Protocol):
    """Event sources publish CloudEvents here; sensors read them through durable consumers.

    Delivery is at-least-once: an event handed out by ``fetch`` and not acknowledged within the
    consumer's ``ack_wait`` (or before the bus restarts) is handed out again with ``deliveries`` + 1.
    A publish whose ``id`` is already on the bus for the same namespace and ``source`` is not stored
    twice. The key-value store holds sensors' partial condition state; updates passed to ``ack`` are
    applied in the same transaction as the ack, so "consume the event and record what it changed" is
    one step. Record types are in :mod:`engine.runtime.busmodel`.
    """

    async def publish(self, namespace: str, event: Mapping[str, Any]) -> int:
        """Store ``event`` durably and return its sequence number (the existing one for a duplicate)."""
        ...

    async def consumer(
        self,
        name: str,
        filters: Sequence[SubjectFilter],
        *,
        deliver_all: bool = False,
        ack_wait: float = 30.0,
    ) -> ConsumerInfo:
        """Create or update a durable consumer; a new one starts after the last event (or at the first)."""
        ...

    async def delete_consumer(self, name: str) -> bool: ...

    async def fetch(self, consumer: str, *, limit: int = 1, timeout: float = 0.0) -> list[Delivery]:
        """Up to ``limit`` due events in sequence order, waiting up to ``timeout`` s for the first one."""
        ...

    async def ack(self, consumer: str, seq: int, *, kv_updates: Sequence[KVUpdate] = ()) -> bool:
        """Acknowledge a delivery and apply ``kv_updates`` with it; False (and no updates) if not pending."""
        ...

    async def ack_batch(
        self, consumer: str, seqs: Sequence[int], *, kv_updates: Sequence[KVUpdate] = ()
    ) -> list[int]:
        """Acknowledge several deliveries and apply ``kv_updates`` with them (in one transaction where the
        bus has transactions; JetStream writes the updates first, then acks); return the seqs that were
        pending (the updates are applied when at least one was)."""
        ...

    async def nak(self, consumer: str, seq: int, *, delay: float = 0.0) -> bool:
        """Hand a pending delivery out again after ``delay`` s instead of waiting for ``ack_wait``."""
        ...

    async def read(
        self, from_seq: int = 1, limit: int = 100, filters: Sequence[SubjectFilter] | None = None
    ) -> list[BusRecord]:
        """Events with ``seq >= from_seq`` in order, whoever consumed them (``sluice events tail``)."""
        ...

    async def last_seq(self) -> int:
        """The highest sequence number ever assigned (0 on an empty bus)."""
        ...

    async def kv_get(self, bucket: str, key: str) -> dict[str, Any] | None: ...

    async def kv_put(self, bucket: str, key: str, value: Mapping[str, Any]) -> None: ...

    async def kv_delete(self, bucket: str, key: str) -> bool: ...

    async def kv_list(self, bucket: str) -> dict[str, dict[str, Any]]: ...

    async def compact(self) -> int:
        """Apply the retention limits now; return how many events were removed."""
        ...

    async def close(self) -> None:
        """Commit everything already submitted, then release the bus."""
        ...
