"""Bad input on the command line: one line on stderr naming the file and field, exit 2, no traceback.

Each case is a small manifest with one mistake. ``lint`` must report it as ``file: field.path: message``;
``run`` must refuse it before anything starts. Most cases call ``main`` in-process (``cli``: an escaping
exception fails the test as a traceback would); a few go through a real ``python -m engine``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import cli, error_line, sluice, write

HEAD = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: bad-}
spec:
  entrypoint: main
  templates:
"""

SAY = """
  - name: say
    container: {image: busybox, command: [echo, hi]}
"""

# name -> (manifest body, field path the message must name, words the message must contain)
CASES: dict[str, tuple[str, str, str]] = {
    "unknown-field": (
        HEAD
        + """
  - name: main
    contaner: {image: busybox, command: [echo, hi]}
""",
        "spec.templates[0].contaner",
        "unknown field",
    ),
    "unknown-template": (
        HEAD
        + """
  - name: main
    steps:
    - - name: a
        template: nope
"""
        + SAY,
        "spec.templates[0].steps[0][0].template",
        "'nope' not found",
    ),
    "dag-cycle": (
        HEAD
        + """
  - name: main
    dag:
      tasks:
      - {name: a, template: say, depends: b}
      - {name: b, template: say, depends: a}
"""
        + SAY,
        "spec.templates[0].dag",
        "cycle",
    ),
    "dependencies-and-depends": (
        HEAD
        + """
  - name: main
    dag:
      tasks:
      - {name: a, template: say}
      - {name: b, template: say, depends: a, dependencies: [a]}
"""
        + SAY,
        "spec.templates[0].dag.tasks[1]",
        "dependencies and depends",
    ),
    "bad-duration": (
        HEAD
        + """
  - name: main
    timeout: 5parsecs
    container: {image: busybox, command: [echo, hi]}
""",
        "spec.templates[0].timeout",
        "invalid duration",
    ),
    "missing-required-input": (
        HEAD
        + """
  - name: main
    steps:
    - - name: a
        template: needs
  - name: needs
    inputs: {parameters: [{name: msg}]}
    container: {image: busybox, command: [echo, "{{inputs.parameters.msg}}"]}
""",
        "spec.templates[0].steps[0][0]",
        "msg",
    ),
    "wrong-type": (
        HEAD
        + """
  - name: main
    container: {image: busybox, command: echo}
""",
        "spec.templates[0].container.command",
        "",
    ),
    "bad-api-version": (
        HEAD.replace("argoproj.io/v1alpha1", "argoproj.io/v2"),
        "apiVersion",
        "must be",
    ),
    "unknown-kind": (
        HEAD.replace("kind: Workflow", "kind: Workflo") + SAY,
        "kind",
        "unsupported kind 'Workflo'",
    ),
    "kind-not-a-string": (
        HEAD.replace("kind: Workflow", "kind: [Workflow]") + SAY,
        "kind",
        "must be a string",
    ),
    "argument-without-value": (
        HEAD.replace("  entrypoint: main\n", "  entrypoint: main\n  arguments: {parameters: [{name: who}]}\n")
        + SAY.replace("say", "main"),
        "spec.arguments.parameters[0].value",
        "is required",
    ),
    "container-without-image": (
        HEAD
        + """
  - name: main
    container: {command: [echo, hi]}
""",
        "spec.templates[0].container.image",
        "is required",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lint_names_file_field_and_problem_on_one_line(home: Path, tmp_path: Path, case: str) -> None:
    text, field, words = CASES[case]
    path = write(tmp_path, f"{case}.yaml", text)
    res = cli("lint", path, home=home)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert lines, "lint printed nothing"
    assert all(ln.startswith(f"{path}: ") for ln in lines), lines
    assert any(ln.startswith(f"{path}: {field}") and words in ln for ln in lines), lines


@pytest.mark.parametrize("case", list(CASES))
def test_run_refuses_bad_input_with_one_line_naming_the_field(home: Path, tmp_path: Path, case: str) -> None:
    text, field, words = CASES[case]
    path = write(tmp_path, f"{case}.yaml", text)
    res = cli("run", path, home=home)
    assert res.returncode == 2
    line = error_line(res)
    assert line.startswith(f"sluice: {path}: {field}")
    assert words in line
    assert not (home / "pods").exists() or not any((home / "pods").iterdir())


def test_a_parameter_outside_its_enum_names_the_file_and_argument(home: Path, tmp_path: Path) -> None:
    args = "  arguments: {parameters: [{name: who, value: a, enum: [a, b]}]}\n"
    text = HEAD.replace("  entrypoint: main\n", "  entrypoint: main\n" + args) + SAY.replace("say", "main")
    path = write(tmp_path, "enum.yaml", text)
    assert cli("lint", path, home=home).returncode == 0
    line = error_line(cli("run", path, "-p", "who=c", home=home))
    assert line == f"sluice: {path}: spec.arguments.parameters[0].value: 'c' is not one of a, b"


def test_an_argument_without_value_may_come_from_the_command_line(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "wf.yaml", CASES["argument-without-value"][0])
    res = cli("run", path, "-p", "who=you", home=home)
    assert res.returncode == 0, res.stderr


def test_templatedefaults_may_supply_the_image(home: Path, tmp_path: Path) -> None:
    text = CASES["container-without-image"][0].replace(
        "  templates:\n", "  templateDefaults: {container: {image: busybox}}\n  templates:\n"
    )
    assert cli("lint", write(tmp_path, "wf.yaml", text), home=home).returncode == 0


def test_missing_file_is_one_line_naming_it_from_a_real_process(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    res = sluice("run", missing, home=home)
    assert res.returncode == 2
    assert error_line(res) == f"sluice: {missing}: no such file"


def test_missing_file_is_one_line_naming_it(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for command in ("run", "lint", "submit", "convert"):
        res = cli(command, missing, home=home)
        assert res.returncode == 2, command
        line = error_line(res)
        assert f"{missing}: " in line and "no such file" in line.lower(), command


def test_invalid_yaml_is_one_line_with_the_position(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "apiVersion: v1\nkind: [\n")
    for res in (sluice("run", path, home=home), cli("lint", path, home=home)):
        assert res.returncode == 2
        line = error_line(res)
        assert f"{path}: invalid YAML at line 3" in line


def test_a_directory_is_not_a_workflow_file(home: Path, tmp_path: Path) -> None:
    res = cli("run", tmp_path, home=home)
    assert res.returncode == 2
    assert str(tmp_path) in error_line(res)


def test_non_utf8_file_is_one_line(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"apiVersion: v1\nkind: \xe9t\xe9\n")
    res = cli("run", path, home=home)
    assert res.returncode == 2
    assert str(path) in error_line(res)


def test_empty_file_has_no_documents(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "# nothing here\n")
    res = cli("run", path, home=home)
    assert res.returncode == 2
    assert error_line(res) == f"sluice: {path}: no documents found"


def test_a_file_without_a_workflow_cannot_be_run(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n")
    res = cli("run", path, home=home)
    assert res.returncode == 2
    assert error_line(res) == f"sluice: {path}: kind: the file has no Workflow document to run"


def test_lint_reports_every_problem_one_per_line(home: Path, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "many.yaml",
        HEAD
        + """
  - name: main
    steps:
    - - name: a
        template: nope
    - - name: b
        template: also-nope
  - name: slow
    timeout: forever
    container: {image: busybox, command: [echo, hi]}
""",
    )
    res = cli("lint", path, home=home)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 3, lines
    assert f"{path}: spec.templates[0].steps[0][0].template: template 'nope' not found" in lines
    assert f"{path}: spec.templates[0].steps[1][0].template: template 'also-nope' not found" in lines
    assert any(ln.startswith(f"{path}: spec.templates[1].timeout: invalid duration") for ln in lines)


def test_run_summarises_several_problems_in_one_line(home: Path, tmp_path: Path) -> None:
    text = CASES["dependencies-and-depends"][0]
    res = cli("run", write(tmp_path, "wf.yaml", text), home=home)
    assert res.returncode == 2
    assert "(and 1 more problem)" in error_line(res)


def test_unknown_command_and_option_exit_two(home: Path) -> None:
    assert sluice("frobnicate", home=home).returncode == 2
    assert cli("run", "--no-such-flag", "x.yaml", home=home).returncode == 2
    assert cli(home=home).returncode == 2
