"""Fixtures for the Kubernetes runtime's tests: a fresh SLUICE_HOME for CLI calls, and ``api_server``.

``api_server`` is the tests' Kubernetes API server (kmock plus a compatibility layer, see
``tests/kubernetes/apiserver.py``): one subprocess per session, reset to its start state before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.support import home
from tests.kubernetes.apiserver import ApiServer

__all__ = ["api_server", "home"]


@pytest.fixture(scope="session")
def _api_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path_factory.mktemp("kmock")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_server(_api_server_process: ApiServer) -> ApiServer:
    """The session's API server, back at its start state: namespaces default, kube-system, kube-public and
    kube-node-lease; no CRDs (``api_server.apply_crds()``), no objects, no logs."""
    server = _api_server_process
    if not server.alive:
        # An earlier test crashed it; that test has failed already, the rest need not fail with it.
        print(f"the kmock server had died; restarting it. Its log ends:\n{server.log_tail()}")
        server.start()
    server.reset()
    return server
