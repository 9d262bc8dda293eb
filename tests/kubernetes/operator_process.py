"""``sluice operator`` as the tests run it: a subprocess against the tests' API server, as in production.

``OperatorProcess`` starts ``sluice operator`` with its settings in the environment (the way the Deployment's
ConfigMap gives them), waits for kopf's liveness endpoint, and can stop it gently, kill it with SIGKILL
(the restart scenarios) and start it again. ``metrics()`` reads its ``/metrics``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.kubernetes.apiserver import ApiServer

REPO = Path(__file__).resolve().parents[2]


# Runs the operator with the kernel told to kill it when the test process dies, however that happens (the
# setting survives exec). A preexec_fn could do it too, but is unsafe while the test kubelet's threads run.
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL); "  # 1: PR_SET_PDEATHSIG
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OperatorProcess:
    def __init__(self, api_server: ApiServer, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.api_server = api_server
        self.workdir = workdir
        self.log_path = workdir / "operator.log"
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.liveness_port = 0
        self.starts = 0

    def start(self, timeout: float = 30) -> OperatorProcess:
        self.metrics_port, self.liveness_port = free_port(), free_port()
        env = {
            **os.environ,
            "SLUICE_NAMESPACE": "default",
            "SLUICE_METRICS_PORT": str(self.metrics_port),
            "SLUICE_LIVENESS_PORT": str(self.liveness_port),
            # The tests' API server is fast and local: the production limits would only slow them down.
            "SLUICE_API_QPS": "2000",
            "SLUICE_API_BURST": "2000",
            "SLUICE_POD_CREATES_PER_SECOND": "2000",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        env.pop("KUBECONFIG", None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "sluice"),
                    "operator",
                    "--kubeconfig",
                    str(self.api_server.kubeconfig),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the operator exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"the operator did not become live in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: nothing gets written on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text: str = r.read().decode()
            return text

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
