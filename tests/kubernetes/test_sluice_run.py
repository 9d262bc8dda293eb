"""sluice-run, the static program in front of every step container: built with the host's C compiler
and run here as real processes, with a temporary directory standing in for the pod's /var/run/sluice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubernetes.wrapper import wrapper

__all__ = ["wrapper"]  # the fixture, for pytest


@pytest.fixture
def var(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "var"
    d.mkdir()
    yield d


def run(wrapper: Path, var: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(wrapper), *args],
        env={**os.environ, "SLUICE_VAR_DIR": str(var)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_stdout_goes_to_the_log_and_alone_to_the_result_file(wrapper: Path, var: Path) -> None:
    res = run(wrapper, var, "--name", "main", "--stdout", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert (var / "ctr/main/stdout").read_text() == "out\n"
    assert (var / "ctr/main/exitcode").read_text() == "3"


def test_without_stdout_flag_nothing_is_kept(wrapper: Path, var: Path) -> None:
    res = run(wrapper, var, "--name", "main", "--", "echo", "hi")
    assert (res.returncode, res.stdout) == (0, "hi\n")
    assert not (var / "ctr/main/stdout").exists()
    assert (var / "ctr/main/exitcode").read_text() == "0"


def test_outputs_are_copied_after_the_command_even_when_it_fails(
    wrapper: Path, var: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    script = (
        f"mkdir -p {work}/d/sub; echo v > {work}/p; echo f > {work}/d/sub/f; ln -s f {work}/d/sub/l; exit 1"
    )
    res = run(
        wrapper,
        var,
        "--name",
        "main",
        "--save",
        f"parameters/p={work}/p",
        "--save",
        f"artifacts/d={work}/d",
        "--save",
        f"parameters/missing={work}/none",
        "--",
        "sh",
        "-c",
        script,
    )
    assert res.returncode == 1
    assert (var / "outputs/parameters/p").read_text() == "v\n"
    assert (var / "outputs/artifacts/d/sub/f").read_text() == "f\n"
    assert os.readlink(var / "outputs/artifacts/d/sub/l") == "f"
    assert not (var / "outputs/parameters/missing").exists()


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        ("no-such-program-x", 127, 'exec: "no-such-program-x": executable file not found in $PATH'),
        ("/no/such/file", 127, 'exec: "/no/such/file": no such file or directory'),
        ("{tmp}/data", 126, 'exec: "{tmp}/data": permission denied'),
        ("{tmp}/text", 126, 'exec: "{tmp}/text": exec format error'),
    ],
)
def test_a_command_that_cannot_start_says_why(
    wrapper: Path, var: Path, tmp_path: Path, command: str, code: int, message: str
) -> None:
    (tmp_path / "data").write_text("not a program\n")
    # Executable but neither ELF nor #!: a shell would run it as a script, a container runtime refuses.
    (tmp_path / "text").write_text("echo should not run\n")
    (tmp_path / "text").chmod(0o755)
    command, message = command.format(tmp=tmp_path), message.format(tmp=tmp_path)
    res = run(wrapper, var, "--name", "main", "--", command)
    assert res.returncode == code
    assert (var / "ctr/main/error").read_text() == message
    assert (var / "ctr/main/exitcode").read_text() == str(code)


def test_dependents_run_after_success_and_are_skipped_after_failure(wrapper: Path, var: Path) -> None:
    assert run(wrapper, var, "--name", "a", "--", "true").returncode == 0
    assert run(wrapper, var, "--name", "b", "--", "false").returncode == 1
    ok = run(wrapper, var, "--name", "c", "--after", "a", "--", "echo", "ran")
    assert (ok.stdout, (var / "ctr/c/exitcode").read_text()) == ("ran\n", "0")
    skipped = run(wrapper, var, "--name", "d", "--after", "a,b", "--", "echo", "ran")
    assert (skipped.returncode, skipped.stdout) == (0, "")
    assert (var / "ctr/d/exitcode").read_text() == "skipped"


def test_a_dependent_waits_until_its_dependency_has_exited(wrapper: Path, var: Path) -> None:
    env = {**os.environ, "SLUICE_VAR_DIR": str(var)}
    dependent = subprocess.Popen(
        [str(wrapper), "--name", "late", "--after", "early", "--", "echo", "after"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.3)
        assert dependent.poll() is None, "it must not start before its dependency exits"
        assert run(wrapper, var, "--name", "early", "--", "true").returncode == 0
        out, _ = dependent.communicate(timeout=10)
        assert out == "after\n"
    finally:
        dependent.kill()


def test_a_sidecar_is_stopped_once_main_exits_then_killed_after_the_grace(wrapper: Path, var: Path) -> None:
    env = {**os.environ, "SLUICE_VAR_DIR": str(var)}
    # The sidecar ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    sidecar = subprocess.Popen(
        [str(wrapper), "--name", "db", "--stop-on", "main", "--grace", "1", "--", "sh", "-c",
         "trap '' TERM; while true; do sleep 0.05; done"],
        env=env,
    )  # fmt: skip
    try:
        time.sleep(0.3)
        assert sidecar.poll() is None
        assert run(wrapper, var, "--name", "main", "--", "true").returncode == 0
        assert sidecar.wait(timeout=10) == 0, "a sidecar stopped because main is done ends with 0"
        assert (var / "ctr/db/exitcode").read_text() == "0"
    finally:
        sidecar.kill()


def test_termination_is_forwarded_to_the_command(wrapper: Path, var: Path) -> None:
    env = {**os.environ, "SLUICE_VAR_DIR": str(var)}
    proc = subprocess.Popen([str(wrapper), "--name", "main", "--", "sleep", "60"], env=env)
    try:
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
        assert (var / "ctr/main/exitcode").read_text() == str(128 + signal.SIGTERM)
    finally:
        proc.kill()


def test_a_background_process_holding_stdout_does_not_keep_the_step_alive(wrapper: Path, var: Path) -> None:
    # stderr goes nowhere: the background sleep inherits it, and a pipe would keep this test waiting
    # (in a pod the container ends with its first process, whoever holds its output).
    proc = subprocess.Popen(
        [str(wrapper), "--name", "main", "--stdout", "--", "sh", "-c", "sleep 5 & echo done"],
        env={**os.environ, "SLUICE_VAR_DIR": str(var)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.wait(timeout=3) == 0
        assert (var / "ctr/main/stdout").read_text() == "done\n"
    finally:
        proc.kill()


def test_bad_usage_is_refused(wrapper: Path, var: Path) -> None:
    assert run(wrapper, var, "--", "true").returncode == 125
    assert run(wrapper, var, "--name", "main").returncode == 125
    assert "unknown argument --bogus" in run(wrapper, var, "--name", "m", "--bogus", "--", "true").stderr
