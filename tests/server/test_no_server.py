"""Commands that need ``sluice server`` say so in one line and exit 1 when none is running.

Covers a home that never had a server and a stale socket left behind by a SIGKILLed one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import ServerProcess, cli, error_line, sluice, write

SAY = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: say}
spec:
  entrypoint: main
  templates:
  - name: main
    container: {image: busybox, command: [echo, hi]}
"""

NEEDS_SERVER = [
    ("submit", "{file}"),
    ("stop", "say"),
    ("terminate", "say"),
    ("suspend", "say"),
    ("resume", "say"),
    ("retry", "say"),
    ("resubmit", "say"),
]


def no_server_line(home: Path) -> str:
    return f"sluice: no sluice server is running for {home} (start one with `sluice server`)"


@pytest.mark.parametrize(("command", "arg"), NEEDS_SERVER, ids=[c for c, _ in NEEDS_SERVER])
def test_command_without_a_server_fails_with_one_clear_line(
    home: Path, tmp_path: Path, command: str, arg: str
) -> None:
    res = cli(command, arg.format(file=write(tmp_path, "say.yaml", SAY)), home=home)
    assert res.returncode == 1
    assert error_line(res) == no_server_line(home)


def test_submit_without_a_server_from_a_real_process(home: Path, tmp_path: Path) -> None:
    res = sluice("submit", write(tmp_path, "say.yaml", SAY), home=home)
    assert res.returncode == 1
    assert error_line(res) == no_server_line(home)
    assert res.stdout == ""


def test_stale_socket_of_a_killed_server_reads_as_no_server(home: Path, tmp_path: Path) -> None:
    server = ServerProcess(home).start()
    server.kill()
    assert (home / "server.sock").exists(), "a SIGKILLed server cannot remove its socket"
    res = cli("submit", write(tmp_path, "say.yaml", SAY), home=home)
    assert res.returncode == 1
    assert error_line(res) == no_server_line(home)


def test_deleting_an_unfinished_workflow_needs_the_server(home: Path, tmp_path: Path) -> None:
    server = ServerProcess(home).start()
    try:
        # A suspend step: nothing runs, so killing the server leaves no orphan behind.
        text = SAY.replace("container: {image: busybox, command: [echo, hi]}", "suspend: {}")
        assert cli("submit", write(tmp_path, "say.yaml", text), home=home).returncode == 0
    finally:
        server.kill()
    res = cli("delete", "say", home=home)
    assert res.returncode == 1
    assert error_line(res) == no_server_line(home)
    assert cli("list", "-o", "name", home=home).stdout == "say\n"
