"""Stored objects from the command line: workflow templates, config maps and secrets, used by runs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.cli.support import GREETER_TEMPLATE, USES_GREETER, cli, error_line, write

READS_CONFIGMAP = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: cm-}
spec:
  entrypoint: main
  arguments:
    parameters:
    - name: greeting
      valueFrom: {configMapKeyRef: {name: my-config, key: greeting}}
  templates:
  - name: main
    inputs:
      parameters:
      - name: colour
        valueFrom: {configMapKeyRef: {name: my-config, key: colour}}
    container:
      image: busybox
      command: [echo, "{{workflow.parameters.greeting}} {{inputs.parameters.colour}}"]
"""

READS_SECRET = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: secret-}
spec:
  entrypoint: main
  templates:
  - name: main
    container:
      image: busybox
      command: [sh, -c, 'printf "%s" "$PASSWORD"']
      env:
      - name: PASSWORD
        valueFrom: {secretKeyRef: {name: my-secret, key: password}}
"""


def results(obj: dict) -> list[str]:  # type: ignore[type-arg]
    return [
        str(n["outputs"]["result"])
        for n in obj["status"]["nodes"].values()
        if n["type"] == "Pod" and "result" in (n.get("outputs") or {})
    ]


def run_json(home: Path, path: Path) -> dict:  # type: ignore[type-arg]
    res = cli("run", path, "-o", "json", home=home)
    obj: dict = json.loads(res.stdout)  # type: ignore[type-arg]
    return obj


def test_template_create_list_get_delete(home: Path, tmp_path: Path) -> None:
    res = cli("template", "create", write(tmp_path, "t.yaml", GREETER_TEMPLATE), home=home)
    assert (res.returncode, res.stdout) == (0, "workflowtemplate/greeter created\n")

    listed = cli("template", "list", home=home)
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[1].split() == ["greeter", "WorkflowTemplate"]

    got = cli("template", "get", "greeter", "-o", "json", home=home)
    obj = json.loads(got.stdout)
    assert obj["kind"] == "WorkflowTemplate" and obj["metadata"]["name"] == "greeter"
    assert obj["spec"]["templates"][0]["name"] == "hello"
    assert yaml.safe_load(cli("template", "get", "greeter", home=home).stdout) == obj

    deleted = cli("template", "delete", "greeter", home=home)
    assert (deleted.returncode, deleted.stdout) == (0, "workflowtemplate/greeter deleted\n")
    assert cli("template", "list", home=home).stdout == "No workflow templates found\n"


def test_template_get_and_delete_of_an_unknown_name_fail_with_one_line(home: Path) -> None:
    for verb in ("get", "delete"):
        res = cli("template", verb, "ghost", home=home)
        assert res.returncode == 1
        assert error_line(res) == "sluice: WorkflowTemplate 'ghost' not found"


def test_template_create_refuses_an_invalid_template(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", GREETER_TEMPLATE.replace("container:", "containr:"))
    res = cli("template", "create", path, home=home)
    assert res.returncode == 2
    assert error_line(res) == f"sluice: {path}: spec.templates[0].containr: unknown field"
    assert cli("template", "list", home=home).stdout == "No workflow templates found\n"


def test_template_create_refuses_other_kinds(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "wf.yaml", USES_GREETER)
    res = cli("template", "create", path, home=home)
    assert res.returncode == 2
    assert error_line(res).startswith(f"sluice: {path}: kind: expected")


def test_stored_template_is_used_by_a_run_and_missing_once_deleted(home: Path, tmp_path: Path) -> None:
    cli("template", "create", write(tmp_path, "t.yaml", GREETER_TEMPLATE), home=home)
    workflow = write(tmp_path, "wf.yaml", USES_GREETER)
    obj = run_json(home, workflow)
    assert obj["status"]["phase"] == "Succeeded"
    assert results(obj) == ["hello bob"]

    cli("template", "delete", "greeter", home=home)
    res = cli("run", workflow, home=home)
    assert res.returncode == 2
    assert "spec.templates[0].steps[0][0].templateRef.name: WorkflowTemplate 'greeter' not found" in (
        error_line(res)
    )


def test_configmap_from_literal_feeds_configmapkeyref_parameters(home: Path, tmp_path: Path) -> None:
    res = cli(
        "configmap",
        "create",
        "my-config",
        "--from-literal",
        "greeting=bonjour",
        "--from-literal",
        "colour=bleu=azur",
        home=home,
    )
    assert (res.returncode, res.stdout) == (0, "configmap/my-config created\n")
    got = yaml.safe_load(cli("configmap", "get", "my-config", home=home).stdout)
    assert got["data"] == {"greeting": "bonjour", "colour": "bleu=azur"}

    obj = run_json(home, write(tmp_path, "wf.yaml", READS_CONFIGMAP))
    assert obj["status"]["phase"] == "Succeeded"
    assert results(obj) == ["bonjour bleu=azur"]


def test_configmap_from_file_uses_the_file_name_as_key(home: Path, tmp_path: Path) -> None:
    data = write(tmp_path, "greeting", "hallo")
    assert cli("configmap", "create", "c", "--from-file", data, home=home).returncode == 0
    assert yaml.safe_load(cli("configmap", "get", "c", home=home).stdout)["data"] == {"greeting": "hallo"}


def test_configmap_literal_without_equals_is_rejected(home: Path) -> None:
    res = cli("configmap", "create", "c", "--from-literal", "novalue", home=home)
    assert res.returncode == 2
    assert "'novalue' must be key=value" in error_line(res)


def test_workflow_reading_a_missing_configmap_does_not_succeed(home: Path, tmp_path: Path) -> None:
    res = cli("run", write(tmp_path, "wf.yaml", READS_CONFIGMAP), home=home)
    assert res.returncode in (1, 2)
    assert "my-config" in res.stdout + res.stderr


def test_secret_feeds_secretkeyref_env_and_is_hidden_by_get(home: Path, tmp_path: Path) -> None:
    res = cli("secret", "create", "my-secret", "--from-literal", "password=s3cr3t w0rd", home=home)
    assert (res.returncode, res.stdout) == (0, "secret/my-secret created\n")
    shown = cli("secret", "get", "my-secret", home=home).stdout
    assert "s3cr3t" not in shown
    assert yaml.safe_load(shown)["data"] == {"password": "(hidden)"}

    obj = run_json(home, write(tmp_path, "wf.yaml", READS_SECRET))
    assert obj["status"]["phase"] == "Succeeded"
    assert results(obj) == ["s3cr3t w0rd"]


def test_secret_list_and_delete(home: Path) -> None:
    cli("secret", "create", "s1", "--from-literal", "k=v", home=home)
    assert cli("secret", "list", home=home).stdout.splitlines()[1].split() == ["s1", "Secret"]
    assert cli("secret", "delete", "s1", home=home).stdout == "secret/s1 deleted\n"
    assert cli("secret", "list", home=home).stdout == "No secrets found\n"


def test_group_command_without_subcommand_prints_help_and_exits_two(home: Path) -> None:
    res = cli("template", home=home)
    assert res.returncode == 2
    assert "create" in res.stdout
