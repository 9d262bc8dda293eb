"""Shared fixtures and data for the events tests: the Argo Events example corpus, a webhook CloudEvent.

Used by the tests under ``tests/events`` and by ``tests/runtime_local/test_sensor_runner.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.run import CORPUS_ENV, REPO


@pytest.fixture(scope="session")
def events_corpus() -> Path:
    setting = os.environ.get(CORPUS_ENV)
    base = Path(setting) if setting else REPO.parent / "shared" / "conformance"
    corpus = base / "argo-events"
    if not (corpus / "sensors").is_dir():
        why = f"Argo Events corpus not found: no argo-events/sensors under {base}"
        print(why)
        pytest.skip(why)
    return corpus


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
