"""Fixtures for the JetStream event bus tests: a fresh ``nats-server -js`` per test (tests/natsserver.py)
and a way to open buses on it inside the test's event loop (tests/buses/support.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from engine.runtime.jetstream import JetStreamBus
from tests.buses.support import JetStreamBackend
from tests.natsserver import NatsServer, nats_binary, nats_server

__all__ = ["nats_binary", "nats_server"]

OpenBus = Callable[..., Awaitable[JetStreamBus]]


@pytest.fixture
def open_bus(nats_server: NatsServer) -> OpenBus:
    """``await open_bus(**options)``: a JetStreamBus on this test's server, opened in the running loop."""
    return JetStreamBackend(nats_server).open
