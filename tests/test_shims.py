"""Tests of the host stand-ins for example images: ``tests/shims/argosay`` and ``tests/shims/cowsay``.

They run as real processes, the way the conformance run starts them (found on PATH by name).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

SHIMS = Path(__file__).parent / "shims"
ARGOSAY = SHIMS / "argosay"
COWSAY = SHIMS / "cowsay"


def run(
    program: Path, *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
    )


@pytest.mark.parametrize("program", [ARGOSAY, COWSAY])
def test_shims_are_executable_scripts(program: Path) -> None:
    assert os.access(program, os.X_OK)
    assert program.read_text().startswith("#!")


def test_shims_are_found_on_path_by_name(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{SHIMS}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["argosay", "exit", "3"], env=env, capture_output=True, timeout=30, check=False)
    assert done.returncode == 3


# -------------------------------------------------------------------------------------------- argosay


def test_argosay_without_arguments_says_hello_argo() -> None:
    done = run(ARGOSAY)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "hello argo\n")


def test_argosay_echo_without_a_string_says_hello_argo() -> None:
    done = run(ARGOSAY, "echo")
    assert (done.returncode, done.stderr) == (0, "hello argo\n")


def test_argosay_echo_prints_its_string_on_stderr_like_the_image() -> None:
    done = run(ARGOSAY, "echo", "hello world")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "hello world\n")


def test_argosay_echo_to_a_file_writes_the_string_and_creates_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    done = run(ARGOSAY, "echo", "payload", str(target))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert target.read_bytes() == b"payload"  # no newline added


def test_argosay_echo_to_a_file_replaces_its_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("a much longer previous content")
    assert run(ARGOSAY, "echo", "new", str(target)).returncode == 0
    assert target.read_text() == "new"


def test_argosay_echo_to_a_relative_file_writes_in_the_working_directory(tmp_path: Path) -> None:
    assert run(ARGOSAY, "echo", "here", "rel.txt", cwd=tmp_path).returncode == 0
    assert (tmp_path / "rel.txt").read_text() == "here"


def test_argosay_echo_with_too_many_arguments_is_a_usage_error(tmp_path: Path) -> None:
    done = run(ARGOSAY, "echo", "a", str(tmp_path / "f"), "extra")
    assert done.returncode == 2
    assert "usage: argosay echo [string] [file]" in done.stderr
    assert not (tmp_path / "f").exists()


def test_argosay_cat_copies_files_to_stdout_in_order(tmp_path: Path) -> None:
    (tmp_path / "one").write_text("first\n")
    (tmp_path / "two").write_text("second")
    done = run(ARGOSAY, "cat", str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "one"))
    assert (done.returncode, done.stdout) == (0, "first\nsecond" + "first\n")


def test_argosay_cat_without_files_prints_nothing() -> None:
    done = run(ARGOSAY, "cat")
    assert (done.returncode, done.stdout) == (0, "")


def test_argosay_cat_of_a_missing_file_fails(tmp_path: Path) -> None:
    done = run(ARGOSAY, "cat", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "missing" in done.stderr


@pytest.mark.parametrize(
    ("args", "code"), [((), 0), (("0",), 0), (("1",), 1), (("42",), 42), (("1", "2"), 0)]
)
def test_argosay_exit_exits_with_the_given_code(args: tuple[str, ...], code: int) -> None:
    assert run(ARGOSAY, "exit", *args).returncode == code


def test_argosay_exit_with_a_non_number_fails() -> None:
    done = run(ARGOSAY, "exit", "one")
    assert done.returncode == 2
    assert "invalid syntax" in done.stderr


def test_argosay_sleep_waits_for_a_go_duration() -> None:
    started = time.monotonic()
    done = run(ARGOSAY, "sleep", "300ms")
    assert done.returncode == 0
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("duration", ["0", "0s", "-5s", "1us", "0.001s", ".0005s", "0h0m0s"])
def test_argosay_sleep_accepts_go_duration_forms(duration: str) -> None:
    assert run(ARGOSAY, "sleep", duration).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("garbage",), "invalid duration"),
        (("5",), "invalid duration"),
        (("5x",), "unknown unit"),
        ((), "usage: argosay sleep"),
    ],
)
def test_argosay_sleep_rejects_what_is_not_one_duration(args: tuple[str, ...], message: str) -> None:
    done = run(ARGOSAY, "sleep", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_argosay_assert_contains_succeeds_when_the_file_contains_the_string(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_text("the quick brown fox")
    assert run(ARGOSAY, "assert_contains", str(target), "brown").returncode == 0


def test_argosay_assert_contains_fails_when_the_string_is_absent(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_text("foo")
    done = run(ARGOSAY, "assert_contains", str(target), "bar")
    assert done.returncode == 2
    assert f'expected "{target}" to contain "bar", but was "foo"' in done.stderr


@pytest.mark.parametrize("args", [(), ("only-a-file",)])
def test_argosay_assert_contains_needs_a_file_and_a_string(args: tuple[str, ...]) -> None:
    done = run(ARGOSAY, "assert_contains", *args)
    assert done.returncode == 2
    assert "usage: assert_contains" in done.stderr


def test_argosay_assert_contains_on_a_missing_file_fails(tmp_path: Path) -> None:
    assert run(ARGOSAY, "assert_contains", str(tmp_path / "nope"), "x").returncode == 2


def test_argosay_unknown_subcommand_prints_usage_and_fails() -> None:
    done = run(ARGOSAY, "dance")
    assert done.returncode == 2
    assert "usage: argosay [assert_contains file string|cat [file...]|echo [string] [file]" in done.stderr


# --------------------------------------------------------------------------------------------- cowsay

COW = (
    "        \\   ^__^\n"
    "         \\  (oo)\\_______\n"
    "            (__)\\       )\\/\\\n"
    "                ||----w |\n"
    "                ||     ||\n"
)


def test_cowsay_puts_a_one_line_message_in_angle_brackets_above_the_cow() -> None:
    done = run(COWSAY, "hello", "world")
    assert done.returncode == 0
    assert done.stdout == " _____________\n< hello world >\n -------------\n" + COW


def test_cowsay_reads_the_message_from_stdin_without_arguments() -> None:
    done = run(COWSAY, stdin="moo\n")
    assert done.stdout == " _____\n< moo >\n -----\n" + COW


def test_cowsay_wraps_long_messages_at_39_columns_in_a_multi_line_balloon() -> None:
    done = run(COWSAY, " ".join(["word"] * 10))
    assert done.stdout == (
        " _________________________________________\n"
        "/ word word word word word word word word \\\n"
        "\\ word word                               /\n"
        " -----------------------------------------\n" + COW
    )


def test_cowsay_uses_bars_for_middle_lines() -> None:
    done = run(COWSAY, "-W", "4", "aa bb cc")
    assert done.stdout.splitlines()[:5] == [" ____", "/ aa \\", "| bb |", "\\ cc /", " ----"]


def test_cowsay_fill_joins_lines_of_a_paragraph_and_keeps_paragraphs_apart() -> None:
    done = run(COWSAY, stdin="one\ntwo   three\n\nfour\n")
    assert done.stdout.splitlines()[:5] == [
        " _______________",
        "/ one two three \\",
        "|               |",
        "\\ four          /",
        " ---------------",
    ]


def test_cowsay_n_keeps_the_message_lines_as_given() -> None:
    done = run(COWSAY, "-n", stdin="a  b\nlonger line\n")
    assert done.stdout.splitlines()[:4] == [
        " _____________",
        "/ a  b        \\",
        "\\ longer line /",
        " -------------",
    ]


def test_cowsay_cuts_words_longer_than_the_wrap_width() -> None:
    done = run(COWSAY, "x" * 45)
    lines = done.stdout.splitlines()
    assert lines[1] == "/ " + "x" * 39 + " \\"
    assert lines[2] == "\\ " + "xxxxxx".ljust(39) + " /"


@pytest.mark.parametrize(
    ("flags", "eyes", "tongue"),
    [(("-d",), "xx", "U "), (("-b",), "==", "  "), (("-e", "^^"), "^^", "  "), (("-T", "U"), "oo", "U ")],
)
def test_cowsay_face_options_change_the_eyes_and_tongue(
    flags: tuple[str, ...], eyes: str, tongue: str
) -> None:
    lines = run(COWSAY, *flags, "hi").stdout.splitlines()
    assert lines[4] == f"         \\  ({eyes})\\_______"
    assert lines[6] == f"             {tongue} ||----w |"


def test_cowsay_with_an_unknown_cow_file_fails() -> None:
    done = run(COWSAY, "-f", "dragon", "hi")
    assert done.returncode == 1
    assert "Could not find dragon cowfile" in done.stderr


def test_cowsay_with_an_unknown_option_fails() -> None:
    done = run(COWSAY, "-Z", "hi")
    assert done.returncode == 1
    assert "usage: cowsay" in done.stderr


def test_cowsay_double_dash_ends_options() -> None:
    assert run(COWSAY, "--", "-n").stdout.splitlines()[1] == "< -n >"


def test_cowsay_with_an_empty_message_draws_an_empty_balloon() -> None:
    done = run(COWSAY, stdin="")
    assert done.stdout.splitlines()[:3] == [" __", "<  >", " --"]
