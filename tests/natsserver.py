"""A real NATS JetStream server for the tests: ``nats-server -js`` (Debian's ``nats-server`` package).

The ``nats_server`` fixture starts one per test, on a free loopback port with its store in the test's
temporary directory, waits until its monitoring endpoint reports JetStream ready, and stops it
afterwards; a server starts in a few tens of milliseconds, so tests share no streams, consumers or
buckets. :meth:`NatsServer.restart` stops it gracefully and starts it again on the same port and
store, as a server pod restarting does. Used by ``tests/runtime_jetstream`` and ``tests/buses``
(import the fixture into a conftest) and by ``benchmarks/jetstream_bus.py`` (:func:`start`, :func:`stop`).

Without the binary the fixture first runs ``scripts/install-sysdeps.sh`` (which installs it with
apt when it can); if it is still missing, the tests are skipped with that reason printed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Debian installs it in /usr/sbin, which is not on every user's PATH.
CANDIDATES = ("nats-server", "/usr/sbin/nats-server", "/usr/local/sbin/nats-server")


def find_binary() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class NatsServer:
    binary: str
    port: int
    http_port: int
    store: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def restart(self) -> None:
        """Stop the server (SIGTERM: it flushes its store) and start it on the same port and store."""
        stop(self)
        fresh = start(self.store.parent, binary=self.binary, port=self.port, http_port=self.http_port)
        self.process = fresh.process


def _ready(server: NatsServer) -> bool:
    url = f"http://127.0.0.1:{server.http_port}/healthz?js-enabled-only=true"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(
    workdir: Path, *, binary: str | None = None, port: int | None = None, http_port: int | None = None
) -> NatsServer:
    """Start ``nats-server -js`` with its store and log under ``workdir``; return once it is ready."""
    exe = binary or find_binary()
    if exe is None:
        raise RuntimeError("nats-server not found")
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "store"
    log = workdir / "nats.log"
    port = port or free_port()
    http_port = http_port or free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [exe, "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(http_port), "-sd", str(store)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = NatsServer(exe, port, http_port, store, log, process)
    deadline = time.monotonic() + 20
    while not _ready(server):
        if not server.alive:
            raise RuntimeError(f"nats-server exited with {process.returncode}:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(f"nats-server was not ready within 20 s:\n{server.log_tail()}")
        time.sleep(0.02)
    return server


def stop(server: NatsServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def _binary_or_skip() -> str:
    binary = find_binary()
    if binary is None:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "install-sysdeps.sh")],
            check=False,
            capture_output=True,
            timeout=600,
        )
        binary = find_binary()
    if binary is None:
        reason = (
            "nats-server not found and scripts/install-sysdeps.sh could not install it (needs root and apt)"
        )
        print(reason)
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def nats_binary() -> str:
    return _binary_or_skip()


@pytest.fixture
def nats_server(nats_binary: str, tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh JetStream server of this test's own."""
    server = start(tmp_path / "nats", binary=nats_binary)
    try:
        yield server
    finally:
        stop(server)
