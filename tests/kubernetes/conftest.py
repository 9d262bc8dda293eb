"""Fixtures for the Kubernetes runtime's tests: a fresh SLUICE_HOME for CLI calls, ``api_server`` and
``kubelet``.

``api_server`` is the tests' Kubernetes API server (kmock plus a compatibility layer, see
``tests/kubernetes/apiserver.py``): one subprocess per session, reset to its start state before each test.
``kubelet`` runs the pods created in it as local processes (``tests/kubernetes/kubelet.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtime.local.shims import install_shims
from tests.cli.support import home
from tests.kubernetes.apiserver import ApiServer
from tests.kubernetes.cluster import Cluster, repository_objects
from tests.kubernetes.kubelet import STANDARD_PATH, TestKubelet, kubelet_unavailable_reason
from tests.kubernetes.operator_process import OperatorProcess
from tests.kubernetes.wrapper import wrapper
from tests.s3server import MotoS3, moto_server, s3

__all__ = ["api_server", "cluster", "home", "kubelet", "moto_server", "s3", "wrapper"]


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


@pytest.fixture
def kubelet(api_server: ApiServer, tmp_path: Path) -> Iterator[TestKubelet]:
    """A started kubelet for ``api_server``: every pod created from now on runs, under ``tmp_path/kubelet``.

    Containers find ``sluice`` (the venv's bin is first on their PATH) and the stand-ins of well-known
    images' programs (``cowsay``, ``argosay``). Tests add to ``kubelet.extra_env`` and ``kubelet.share()``
    before creating their pods. Skipped, saying why, where bubblewrap cannot run. The test fails when the
    kubelet itself failed (``kubelet.errors``).
    """
    reason = kubelet_unavailable_reason()
    if reason:
        print(reason)
        pytest.skip(reason)
    shims = tmp_path / "kubelet-shims"
    install_shims(shims, STANDARD_PATH)
    node = TestKubelet(api_server, tmp_path / "kubelet", path_prefix=[Path(sys.executable).parent, shims])
    node.start()
    try:
        yield node
    finally:
        node.stop()
    if node.errors:
        pytest.fail("the test kubelet failed:\n" + "\n".join(node.errors))


@pytest.fixture
def cluster(
    api_server: ApiServer, kubelet: TestKubelet, s3: MotoS3, wrapper: Path, tmp_path: Path
) -> Iterator[Cluster]:
    """CRDs, the artifact repository (moto) and ``sluice operator`` on top of ``api_server`` and ``kubelet``
    (see ``tests/kubernetes/cluster.py``)."""
    api_server.apply_crds()
    for obj in repository_objects(s3):
        plural = "configmaps" if obj["kind"] == "ConfigMap" else "secrets"
        api_server.create(f"/api/v1/namespaces/default/{plural}", obj)
    kubelet.share(wrapper)
    operator = OperatorProcess(
        api_server, tmp_path / "operator", env={"SLUICE_EXECUTOR_ENV_SLUICE_RUN_BINARY": str(wrapper)}
    ).start()
    try:
        yield Cluster(api_server, kubelet, s3, operator)
    finally:
        # SIGKILL: a graceful stop costs kopf seconds and proves nothing here (the restart test kills it
        # mid-workflow on purpose).
        operator.kill()
