"""Fixtures for the ``sluice --kube`` tests: the tests' API server with sluice's CRDs, fresh SLUICE_HOMEs.

There is no operator here: a test plays it by writing statuses and reading back what the CLI patched.
"""

from __future__ import annotations

import pytest

from tests.cli.support import home
from tests.kubernetes.apiserver import ApiServer
from tests.kubernetes.conftest import _api_server_process, api_server

__all__ = ["_api_server_process", "api_server", "cluster", "home"]


@pytest.fixture
def cluster(api_server: ApiServer) -> ApiServer:
    """The session's API server, reset, serving the sluice.dev kinds."""
    api_server.apply_crds()
    return api_server
