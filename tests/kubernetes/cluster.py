"""A whole test cluster for the operator's scenarios: API server, kubelet, S3 and ``sluice operator``.

The ``cluster`` fixture (``tests/kubernetes/conftest.py``) gives a :class:`Cluster`: the CRDs applied,
the artifact repository ConfigMap and its credentials Secret in ``default`` pointing at moto, the test
kubelet running every pod for real, and the operator started as a subprocess. Helpers submit
workflows and wait for their end through the API, as ``kubectl`` would.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.kubernetes.apiserver import ApiServer
from tests.kubernetes.kubelet import TestKubelet
from tests.kubernetes.operator_process import OperatorProcess
from tests.s3server import ACCESS_KEY, BUCKET, SECRET_KEY, MotoS3

WORKFLOWS = "/apis/sluice.dev/v1alpha1/namespaces/default/workflows"
PODS = "/api/v1/namespaces/default/pods"
FINISHED = ("Succeeded", "Failed", "Error")
MERGE = "application/merge-patch+json"


def repository_objects(s3: MotoS3) -> list[dict[str, Any]]:
    """The artifact repository ConfigMap and Secret, as a user would write them for this S3."""
    repo = {
        "s3": {
            "bucket": BUCKET,
            "endpoint": s3.endpoint,
            "insecure": True,
            "accessKeySecret": {"name": "sluice-artifacts-s3", "key": "accesskey"},
            "secretKeySecret": {"name": "sluice-artifacts-s3", "key": "secretkey"},
        }
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "artifact-repositories",
                "namespace": "default",
                "annotations": {"workflows.argoproj.io/default-artifact-repository": "default-v1"},
            },
            "data": {"default-v1": yaml.safe_dump(repo)},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sluice-artifacts-s3", "namespace": "default"},
            "data": {
                "accesskey": base64.b64encode(ACCESS_KEY.encode()).decode(),
                "secretkey": base64.b64encode(SECRET_KEY.encode()).decode(),
            },
        },
    ]


@dataclass
class Cluster:
    api: ApiServer
    kubelet: TestKubelet
    s3: MotoS3
    operator: OperatorProcess

    def submit(self, manifest: dict[str, Any] | Path | str) -> str:
        if isinstance(manifest, Path):
            manifest = yaml.safe_load(manifest.read_text())
        elif isinstance(manifest, str):
            manifest = yaml.safe_load(manifest)
        assert isinstance(manifest, dict)
        manifest.setdefault("metadata", {})["namespace"] = "default"
        made = self.api.create(WORKFLOWS, manifest)
        return str(made["metadata"]["name"])

    def workflow(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.request("GET", f"{WORKFLOWS}/{name}")
        return obj

    def status(self, name: str) -> dict[str, Any]:
        """The status with ``nodes`` decompressed when stored as ``compressedNodes``."""
        from engine.workflows.status import decompress_nodes

        status = dict(self.workflow(name).get("status") or {})
        if status.get("compressedNodes"):
            status["nodes"] = decompress_nodes(status.pop("compressedNodes"))
        return status

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.operator.alive:
                raise AssertionError(f"the operator died:\n{self.operator.log_tail()}")
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}\noperator log:\n{self.operator.log_tail()}"
            f"\nkubelet errors: {self.kubelet.errors}"
        )

    def wait_finished(self, name: str, timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in FINISHED else None

        result: dict[str, Any] = self.wait_until(f"workflow {name} to finish", done, timeout)
        return result

    def run(self, manifest: dict[str, Any] | Path | str, timeout: float = 60) -> dict[str, Any]:
        return self.wait_finished(self.submit(manifest), timeout)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.api.request("PATCH", f"{WORKFLOWS}/{name}", {"spec": spec}, content_type=MERGE)

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.request("GET", PODS)["items"]
        return items


def nodes_by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(n["displayName"]): n for n in (status.get("nodes") or {}).values()}
