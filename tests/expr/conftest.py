"""Shared fixtures for the expression-package tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def conformance_dir() -> Path:
    """Where the Argo corpora live: $SLUICE_CONFORMANCE_DIR, else ``<repo>/../shared/conformance``."""
    return Path(os.environ.get("SLUICE_CONFORMANCE_DIR", REPO.parent / "shared" / "conformance"))


@pytest.fixture(scope="session")
def argo_workflows_corpus() -> Path:
    root = conformance_dir() / "argo-workflows"
    if not (root / "manifest.json").is_file():
        reason = f"Argo Workflows conformance corpus not found at {root} (set SLUICE_CONFORMANCE_DIR)"
        print(reason)
        pytest.skip(reason)
    return root
