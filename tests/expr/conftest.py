"""Shared fixtures for the expression-package tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.run import locate_corpus


@pytest.fixture(scope="session")
def argo_workflows_corpus() -> Path:
    corpus, why = locate_corpus()
    if corpus is None:
        print(why)
        pytest.skip(why)
    return corpus
