"""Fixtures for the local step executor tests: real processes in a temporary SLUICE home.

``mode`` runs a test under every isolation mode; a mode this machine lacks is skipped with the
reason (shown by ``pytest -ra``), so the same tests prove the fallback paths on a bare CI machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.runtime.local.artifacts import LocalDirRepository
from engine.runtime.local.executor import LocalExecutor
from engine.runtime.local.isolation import available_modes, unavailable_reasons
from engine.workflows.plan import StepOutcome, StepRun
from tests.procs import pids_with

T = TypeVar("T")

ALL_MODES = ("auto", "bwrap", "unshare", "session")


class Objects:
    """An ObjectLookup over two dicts: {(namespace, name): {key: value}}."""

    def __init__(
        self,
        configmaps: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
        secrets: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    ) -> None:
        self.configmaps = dict(configmaps or {})
        self.secrets = dict(secrets or {})

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.configmaps.get((namespace, name))

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get((namespace, name))


_ids = itertools.count()


def make_step(**kw: Any) -> StepRun:
    """A StepRun with unique ids; keyword arguments override any field."""
    n = next(_ids)
    base: dict[str, Any] = {
        "node_id": f"wf-{n}",
        "node_name": f"wf.step-{n}",
        "pod_name": f"wf-step-{n}",
        "template_name": "step",
        "kind": "container",
        "workflow_name": "wf",
        "workflow_uid": "uid-1",
        "namespace": "default",
    }
    base.update(kw)
    return StepRun(**base)


class Harness:
    """A LocalExecutor plus the outcomes its sink received, per node."""

    def __init__(self, home: Path, mode: str, objects: Objects | None = None, **kw: Any) -> None:
        self.home = home
        self.outcomes: dict[str, list[StepOutcome]] = defaultdict(list)
        self._finals: dict[str, asyncio.Future[StepOutcome]] = {}
        self.repository = LocalDirRepository(home / "artifacts")
        self.executor = LocalExecutor(
            home=home,
            sink=self._sink,
            repository=self.repository,
            objects=objects or Objects(),
            isolation=mode,
            **kw,
        )

    def _future(self, node_id: str) -> asyncio.Future[StepOutcome]:
        if node_id not in self._finals:
            self._finals[node_id] = asyncio.get_running_loop().create_future()
        return self._finals[node_id]

    def _sink(self, outcome: StepOutcome) -> None:
        self.outcomes[outcome.node_id].append(outcome)
        if outcome.phase != "Running":
            fut = self._future(outcome.node_id)
            if not fut.done():
                fut.set_result(outcome)

    async def final(self, node_id: str, timeout: float = 30) -> StepOutcome:
        return await asyncio.wait_for(asyncio.shield(self._future(node_id)), timeout)

    async def run(self, step: StepRun, timeout: float = 30) -> StepOutcome:
        await self.executor.start(step)
        return await self.final(step.node_id, timeout)

    async def wait_running(self, node_id: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not any(o.phase == "Running" for o in self.outcomes[node_id]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node_id} never reported Running: {self.outcomes[node_id]}")
            await asyncio.sleep(0.01)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@pytest.fixture(params=ALL_MODES)
def mode(request: pytest.FixtureRequest) -> str:
    m: str = request.param
    if m != "auto" and m not in available_modes():
        pytest.skip(f"isolation mode {m} unavailable: {unavailable_reasons().get(m, '?')}")  # type: ignore[call-overload]
    return m


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def harness_factory(home: Path) -> Callable[..., Harness]:
    def make(mode: str = "auto", objects: Objects | None = None, **kw: Any) -> Harness:
        return Harness(home, mode, objects, **kw)

    return make


# ------------------------------------------------------------------------------------------------


@pytest.fixture
def token(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique string to put in a command line; leftovers are killed after the test."""
    t = f"sluicetest-{os.getpid()}-{next(_ids)}-{time.monotonic_ns()}"
    yield t
    for pid in pids_with(t):
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
