"""Start and drive the tests' Kubernetes API server (``kmock_server.py``, a subprocess) from pytest.

``ApiServer`` starts and stops it, writes a kubeconfig for ``kubernetes.config.load_kube_config(
config_file=...)`` and for ``kopf run`` (``KUBECONFIG``), applies the CRDs in ``crds/``, and is the side
channel of the tests' "kubelet", which no API server has: ``set_pod_status`` (a PATCH of
``pods/{name}/status``, as a kubelet reports) and ``set_pod_log`` (the text ``pods/{name}/log`` answers).

The ``api_server`` fixture (``tests/kubernetes/conftest.py``) shares one server per session and resets it
before every test. Used by ``tests/kubernetes/test_apiserver.py`` and the Kubernetes runtime's tests.
"""

from __future__ import annotations

import functools
import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
SERVER_SCRIPT = Path(__file__).with_name("kmock_server.py")
READY = "KMOCK_READY "


def container_status(
    name: str,
    *,
    image: str = "busybox",
    running: bool = False,
    exit_code: int | None = None,
    reason: str | None = None,
    message: str | None = None,
    restart_count: int = 0,
    started_at: str | None = None,
    finished_at: str | None = None,
    container_id: str | None = None,
) -> dict[str, Any]:
    """One ``status.containerStatuses`` entry as a kubelet writes it: waiting, ``running``, or terminated
    with ``exit_code``. Complete on purpose: the official client (v37, pydantic models) refuses to read a
    pod, even in a watch event, whose container status lacks image, imageID, ready or restartCount.

    ``started_at`` / ``finished_at`` (RFC 3339) default to now; ``container_id`` to ``containerd://NAME``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state: dict[str, Any]
    if exit_code is not None:
        terminated = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": started_at or stamp,
            "finishedAt": finished_at or stamp,
            "containerID": container_id or f"containerd://{name}",
        }
        state = {"terminated": {**terminated, **({"message": message} if message else {})}}
    elif running:
        state = {"running": {"startedAt": started_at or stamp}}
    else:
        state = {
            "waiting": {"reason": reason or "ContainerCreating", **({"message": message} if message else {})}
        }
    return {
        "name": name,
        "image": image,
        "imageID": f"docker.io/library/{image}@sha256:{'0' * 64}",
        "ready": running,
        "started": running,
        "restartCount": restart_count,
        "state": state,
    }


@functools.cache
def _documents(path: Path, mtime_ns: int) -> tuple[Any, ...]:
    """The YAML documents of ``path``, parsed once per version of the file: our CRDs take ~0.3 s each."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader))  # a safe loader


class ApiError(Exception):
    """A non-2xx answer of the API server: ``status`` and the decoded ``Status`` body (or text)."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.body = body


class ApiServer:
    """One ``kmock_server.py`` subprocess on a free loopback port, with its kubeconfig in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig.yaml"
        self.log_path = workdir / "kmock.log"  # one line per request, then anything the server prints
        self.url = ""
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    # -- lifecycle --

    def start(self, timeout: float = 30) -> ApiServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(SERVER_SCRIPT), "--log", "--exit-on-stdin-eof"],
                stdin=subprocess.PIPE,  # held open: the server exits when we are gone, even after kill -9
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.url = self._read_ready_line(timeout)
        self.startup_seconds = time.monotonic() - started
        self._write_kubeconfig()
        self._client = None  # a client of an earlier process would call a dead port
        return self

    def _read_ready_line(self, timeout: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self._process.stdout], [], [], 0.1)
            if readable:
                line = self._process.stdout.readline().decode()
                if line.startswith(READY):
                    return line[len(READY) :].strip()
                if not line:  # EOF: it died
                    break
        self.stop()
        raise RuntimeError(f"the kmock server did not get ready within {timeout}s:\n{self.log_tail()}")

    def _write_kubeconfig(self) -> None:
        # JSON is YAML: no need for a YAML writer. A token, because some clients refuse no credentials.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock"}}],
            "contexts": [
                {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}
            ],
            "current-context": "kmock",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2), encoding="utf-8")

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the server's own signal to exit
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def env(self) -> dict[str, str]:
        """The environment for a subprocess that should talk to this server (``kopf run``, ``sluice``)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def reset(self) -> None:
        """Back to the start state: the start namespaces only, no CRDs, no logs; open watches end."""
        self.request("POST", "/_kmock/reset")

    # -- clients --

    def kubernetes_client(self) -> Any:
        """The official client's ``ApiClient`` for this server, built once (the first one costs ~1 s)."""
        if self._client is None:
            from kubernetes import client, config

            configuration = client.Configuration()
            # config_file explicitly: load_kube_config() alone reads a $KUBECONFIG fixed at import time.
            config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
            self._client = client.ApiClient(configuration)
        return self._client

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 10,
    ) -> Any:
        """A plain HTTP call (no client library): the decoded JSON answer, or ``ApiError``."""
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            try:
                detail: Any = json.loads(raw)
            except ValueError:
                detail = raw
            raise ApiError(method, path, exc.code, detail) from None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.request("POST", path, body)
        return created

    def apply_crds(self, directory: Path = CRD_DIR) -> list[str]:
        """Create every CustomResourceDefinition in ``directory`` (default: the project's ``crds/``)."""
        names = []
        for path in sorted(directory.glob("*.yaml")):
            for doc in _documents(path, path.stat().st_mtime_ns):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    self.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
                    names.append(doc["metadata"]["name"])
        return names

    # -- the tests' kubelet --

    def set_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge ``status`` into the pod's status, as a kubelet's status update does; returns the pod.

        Lists (``containerStatuses``, ``conditions``) are replaced whole: send all of them every time,
        each complete (``container_status`` builds one).
        The pod gets a new resourceVersion and watchers a MODIFIED event; its spec is untouched.
        """
        pod: dict[str, Any] = self.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
        return pod

    def set_pod_log(self, namespace: str, name: str, text: str, *, container: str | None = None) -> None:
        """Make ``pods/{name}/log`` answer ``text`` (the whole log so far) for this pod's ``container``.

        ``container`` may be left out for a pod with one container. The pod must exist; the log is tied
        to its uid, so it goes with the pod.
        """
        suffix = f"/{container}" if container else ""
        self.request("PUT", f"/_kmock/logs/{namespace}/{name}{suffix}", text, content_type="text/plain")
