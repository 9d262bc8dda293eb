"""Shared fixtures for the events tests: the Argo Events example corpus."""

from __future__ import annotations

import os
from pathlib import Path

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
