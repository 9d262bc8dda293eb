"""Helpers for tests that drive the real ``sluice`` command line and ``sluice server`` as subprocesses.

Used by ``tests/cli``, ``tests/server`` and ``tests/robustness``. Every call gets an explicit
``SLUICE_HOME``; a server started here is always killed by the test that started it.

Steps run on the host but with a private ``/tmp`` (see ``engine.runtime.local.isolation``), so a
directory a test shares with its steps lives under ``/var/tmp`` (``shared_dir``), a system directory
steps see as it is.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import Client
from tests.procs import pids_with

SLUICE = (sys.executable, "-m", "engine")


def sluice_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["SLUICE_HOME"] = str(home)
    env.pop("SLUICE_STEP_PATH", None)
    env.update(extra or {})
    return env


def sluice(
    *args: str | os.PathLike[str],
    home: Path,
    timeout: float = 60,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input_: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``sluice ARGS`` to completion and return it (text mode, output captured)."""
    return subprocess.run(
        [*SLUICE, *(os.fspath(a) for a in args)],
        env=sluice_env(home, env),
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        input=input_,
        check=False,
    )


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failing command printed on stderr (asserts it is exactly one line)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines!r}"
    return lines[0]


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """A fresh directory the test and its workflow steps both see at the same path."""
    path = Path(tempfile.mkdtemp(prefix="sluice-test-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh, empty SLUICE_HOME."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_directory() as path:
        yield path


@pytest.fixture
def server(home: Path) -> Iterator[ServerProcess]:
    """A running ``sluice server`` on ``home``; killed after the test."""
    srv = ServerProcess(home).start()
    try:
        yield srv
    finally:
        srv.kill()


# ------------------------------------------------------------------------------------------------ data

# A stored WorkflowTemplate and a Workflow that calls it through templateRef.
GREETER_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: greeter}
spec:
  templates:
  - name: hello
    inputs: {parameters: [{name: who}]}
    container: {image: busybox, command: [echo, "hello {{inputs.parameters.who}}"]}
"""

USES_GREETER = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: uses-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: call
        templateRef: {name: greeter, template: hello}
        arguments: {parameters: [{name: who, value: bob}]}
"""


# ------------------------------------------------------------------------------------------------ server


class ServerProcess:
    """``sluice server`` in a subprocess on one SLUICE_HOME; ``start`` waits until it answers."""

    def __init__(self, home: Path, *, extra_args: Sequence[str] = ("--no-cron",)) -> None:
        self.home = home
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / f"server-{time.monotonic_ns()}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*SLUICE, "server", *self.extra_args],
                env=sluice_env(self.home),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        client = Client(self.home)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.output()}")
            if self._answers(client):
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not answer within {timeout}s: {self.output()}")
            time.sleep(0.05)

    def _answers(self, client: Client) -> bool:
        try:
            health: Any = client.call("GET", "/api/v1/health", timeout=2)
        except Exception:
            return False
        return bool(health.get("ok")) and health.get("pid") == self.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server (as a crash would) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait: the server's orderly shutdown; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode


# ------------------------------------------------------------------------------------------------ /proc


def kill_all_with(token: str) -> None:
    for pid in pids_with(token):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ in process


def cli(*args: str | os.PathLike[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``engine.cli.main.main`` in this process with captured output (much cheaper than a process).

    An exception that escapes ``main`` is not caught: it fails the test, as a traceback would.
    """
    from engine.cli.main import main

    argv = ["--home", str(home), *(os.fspath(a) for a in args)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return subprocess.CompletedProcess(argv, int(code or 0), out.getvalue(), err.getvalue())


def wait_for(predicate: Any, *, timeout: float = 30, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``predicate()`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
