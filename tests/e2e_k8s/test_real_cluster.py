"""The examples on a real cluster (kind, k3d...) with Sluicegate installed from ``deploy/``.

Runs only when ``SLUICE_E2E_KUBECONFIG`` names the cluster's kubeconfig; otherwise every test is skipped
and says so. The cluster needs the operator running (``kubectl apply -k deploy/`` with an image the
nodes can pull, e.g. ``kind load docker-image``), the artifact repository ConfigMap pointing at a
bucket the pods can reach and its credentials Secret in ``SLUICE_E2E_NAMESPACE`` (default ``default``).
Each example is submitted with ``sluice --kube submit``, awaited with ``wait``, and its final node tree
is compared with the embedded runtime's, as ``tests/kubernetes/test_cross_runtime.py`` does on the
test cluster.

What only this suite covers (the test API server does not emulate it): the real scheduler and kubelet,
image pulls and entrypoints, container runtimes' exit codes and OOM kills, CRD schema validation and
pruning, ownerReference garbage collection by the real controller, RBAC of deploy/ in force, watch
bookmarks and 410 Gone, server-side field selectors and resourceVersion conflicts under load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.examples.test_examples import EXAMPLES
from tests.kubernetes.test_cross_runtime import SHOP_SETTINGS, TOOLBOX, _embedded, examples, tree

KUBECONFIG = os.environ.get("SLUICE_E2E_KUBECONFIG", "")
NAMESPACE = os.environ.get("SLUICE_E2E_NAMESPACE", "default")
SKIP_REASON = (
    "SLUICE_E2E_KUBECONFIG is not set: the real-cluster suite needs a cluster with Sluicegate installed"
)

if not KUBECONFIG:
    print(SKIP_REASON)
pytestmark = pytest.mark.skipif(not KUBECONFIG, reason=SKIP_REASON)


def kube(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "engine", "--kube", "--kubeconfig", KUBECONFIG, "-n", NAMESPACE, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def prerequisites(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("e2e")
    cm = work / "shop-settings.yaml"
    cm.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "shop-settings"},
                "data": SHOP_SETTINGS,
            }
        )
    )
    for path in (cm, TOOLBOX):
        done = kube("apply", str(path))
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("name", "params"), sorted(examples().items()))
def test_an_example_ends_on_a_real_cluster_as_on_the_embedded_runtime(
    prerequisites: None, tmp_path: Path, name: str, params: tuple[str, ...]
) -> None:
    argv = ["submit", str(EXAMPLES / name), "-o", "name"]
    for p in params:
        argv += ["-p", p]
    done = kube(*argv)
    assert done.returncode == 0, done.stderr
    workflow = done.stdout.strip()
    kube("wait", workflow)
    got = kube("get", workflow, "-o", "json")
    assert got.returncode == 0, got.stderr
    obj = json.loads(got.stdout)
    mine = _embedded(tmp_path / "home", name, params)
    assert tree(obj["status"], obj["metadata"]["name"]) == tree(mine.status, mine.name)
