"""The ``bus`` fixture of the contract suite: each test runs once on the embedded bus (SQLite in the
test's temporary directory) and once on a JetStream bus (a fresh ``nats-server -js`` of the test's own,
tests/natsserver.py, skipped with the reason printed when the binary is missing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.runtime.local.eventbus import events_path
from tests.buses.support import Backend, EmbeddedBackend, JetStreamBackend
from tests.natsserver import nats_binary, nats_server

__all__ = ["nats_binary", "nats_server"]


@pytest.fixture(params=["embedded", "jetstream"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The bus under test: ``await bus.open(**options)`` opens one in the running event loop."""
    if request.param == "embedded":
        return EmbeddedBackend(events_path(tmp_path))
    # Only the JetStream runs need (and start) a server.
    return JetStreamBackend(request.getfixturevalue("nats_server"))
