"""Shared fixtures and data for the events tests: the Argo Events example corpus, a webhook CloudEvent.

Used by the tests under ``tests/events`` and by ``tests/runtime_local/test_sensor_runner.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.events.model import Event
from tests.conformance.run import EVENTS_CORPUS_MISSING, events_sensors_dir


@pytest.fixture(scope="session")
def events_corpus() -> Path:
    sensors = events_sensors_dir()
    if not sensors.is_dir():
        print(EVENTS_CORPUS_MISSING)
        pytest.skip(EVENTS_CORPUS_MISSING)
    return sensors.parent


def model_event(data: Any = None, **context: str) -> Event:
    """An :class:`Event` of webhook source ``webhook``, event ``example``, id ``e1``; ``context``
    overrides any attribute."""
    attrs = {
        "id": "e1",
        "source": "webhook",
        "type": "webhook",
        "subject": "example",
        "time": "2024-05-01T12:00:00Z",
        **context,
    }
    return Event(data=data, **attrs)


def webhook_event(n: int) -> dict[str, Any]:
    """Event ``n`` of webhook source ``webhook``, event ``example``: id ``evt-N``, body ``{"n": N}``."""
    return {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "webhook",
        "type": "webhook",
        "subject": "example",
        "time": "2027-01-15T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"body": {"n": n}},
    }
