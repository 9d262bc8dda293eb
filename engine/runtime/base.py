"""Ports between the runtimes and what they drive, as Protocols.

The workflow core (``engine.workflows``) never sees these: a runtime implements them and glues them to
the core's Plan/observation data. The local runtime implements them with SQLite, processes and a
directory of artifacts; the Kubernetes runtime with the API server, pods and S3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

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
