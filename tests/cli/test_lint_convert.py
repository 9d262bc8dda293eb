"""``sluice lint`` on good files and directories, and ``sluice convert`` to the sluice.dev API."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli.support import GREETER_TEMPLATE, USES_GREETER, cli, write

GOOD = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: good-}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: a, template: say}
      - {name: b, template: say, depends: a}
  - name: say
    container: {image: busybox, command: [echo, hi]}
"""

CRON = """
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  concurrencyPolicy: Forbid
  workflowSpec:
    entrypoint: main
    templates:
    - name: main
      synchronization:
        mutex: {name: db}
      container: {image: busybox, command: [echo, hi]}
"""


def test_lint_accepts_a_good_file(home: Path, tmp_path: Path) -> None:
    res = cli("lint", write(tmp_path, "good.yaml", GOOD), home=home)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert "no linting errors found in 1 file" in res.stdout


def test_lint_accepts_the_shipped_examples(home: Path) -> None:
    for kind in ("workflows", "events"):
        examples = Path(__file__).resolve().parents[2] / "examples" / kind
        res = cli("lint", examples, home=home)
        assert res.returncode == 0, res.stderr


def test_lint_of_a_directory_reports_only_the_bad_files(home: Path, tmp_path: Path) -> None:
    write(tmp_path, "a-good.yaml", GOOD)
    write(tmp_path, "cron.yml", CRON)
    bad = write(tmp_path, "b-bad.yaml", GOOD.replace("depends: a", "depends: zz"))
    write(tmp_path, "notes.txt", "not a manifest")
    res = cli("lint", tmp_path, home=home)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert lines and all(ln.startswith(f"{bad}: spec.templates[0].dag.tasks[1]") for ln in lines), lines
    assert "zz" in lines[0]


def test_lint_resolves_template_refs_within_the_linted_files(home: Path, tmp_path: Path) -> None:
    write(tmp_path, "template.yaml", GREETER_TEMPLATE)
    write(tmp_path, "workflow.yaml", USES_GREETER)
    assert cli("lint", tmp_path, home=home).returncode == 0
    alone = cli("lint", tmp_path / "workflow.yaml", home=home)
    assert alone.returncode == 2
    assert "templateRef.name: WorkflowTemplate 'greeter' not found" in alone.stderr


def test_lint_resolves_template_refs_from_stored_templates(home: Path, tmp_path: Path) -> None:
    assert cli("template", "create", write(tmp_path, "t.yaml", GREETER_TEMPLATE), home=home).returncode == 0
    assert cli("lint", write(tmp_path, "w.yaml", USES_GREETER), home=home).returncode == 0


def test_lint_labels_problems_in_multi_document_files_by_document(home: Path, tmp_path: Path) -> None:
    bad = GOOD.replace("template: say, depends: a", "template: nope, depends: a")
    path = write(tmp_path, "multi.yaml", GOOD + "---\n" + bad.lstrip())
    res = cli("lint", path, home=home)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"{path} (document 2): spec.templates[0].dag.tasks[1].template: template 'nope' not found"
    ]


def test_lint_checks_cron_workflows(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "cron.yaml", CRON.replace("entrypoint: main", "entrypoint: missing"))
    res = cli("lint", path, home=home)
    assert res.returncode == 2
    assert res.stderr.startswith(f"{path}: spec.workflowSpec.entrypoint")


def test_template_lint_is_lint(home: Path, tmp_path: Path) -> None:
    assert cli("template", "lint", write(tmp_path, "t.yaml", GREETER_TEMPLATE), home=home).returncode == 0


def test_convert_rewrites_the_api_group_and_cron_schedule(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", GOOD + "---\n" + CRON.lstrip())
    res = cli("convert", path, home=home)
    assert res.returncode == 0, res.stderr
    workflow, cron = yaml.safe_load_all(res.stdout)
    assert workflow["apiVersion"] == cron["apiVersion"] == "sluice.dev/v1alpha1"
    assert workflow["spec"] == yaml.safe_load(GOOD)["spec"]
    assert "schedule" not in cron["spec"]
    assert cron["spec"]["schedules"] == ["0 3 * * *"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    sync = cron["spec"]["workflowSpec"]["templates"][0]["synchronization"]
    assert sync == {"mutexes": [{"name": "db"}]}


def test_convert_leaves_the_file_alone_unless_in_place(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "cron.yaml", CRON)
    before = path.read_text()
    assert cli("convert", path, home=home).returncode == 0
    assert path.read_text() == before
    assert cli("convert", "--in-place", path, home=home).returncode == 0
    converted = yaml.safe_load(path.read_text())
    assert converted["apiVersion"] == "sluice.dev/v1alpha1"
    assert converted["spec"]["schedules"] == ["0 3 * * *"]


def test_converted_manifests_still_lint_and_convert_is_idempotent(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", GOOD + "---\n" + CRON.lstrip())
    once = cli("convert", path, home=home).stdout
    converted = write(tmp_path, "converted.yaml", once)
    assert cli("lint", converted, home=home).returncode == 0
    assert cli("convert", converted, home=home).stdout == once


def test_convert_keeps_an_explicit_schedules_list_without_duplicates(home: Path, tmp_path: Path) -> None:
    text = CRON.replace(
        'schedule: "0 3 * * *"', 'schedule: "0 3 * * *"\n  schedules: ["0 3 * * *", "@hourly"]'
    )
    res = cli("convert", write(tmp_path, "cron.yaml", text), home=home)
    assert yaml.safe_load(res.stdout)["spec"]["schedules"] == ["0 3 * * *", "@hourly"]


EVENT_FILES = """
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: webhook}
spec:
  webhook:
    example: {port: "12000", endpoint: /example, method: POST}
---
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: notify}
spec:
  dependencies:
  - {name: push, eventSourceName: webhook, eventName: example}
  triggers:
  - template:
      name: tell-slack
      conditions: push && pull
      slack: {channel: general}
"""


def test_lint_reports_unsupported_trigger_types_and_unknown_condition_names(
    home: Path, tmp_path: Path
) -> None:
    path = write(tmp_path, "events.yaml", EVENT_FILES)
    res = cli("lint", str(path), home=home)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert f"{path} (document 2): spec.triggers[0].template.conditions: no dependency named 'pull'" in lines
    assert any("spec.triggers[0].template.slack: unsupported trigger type 'slack'" in line for line in lines)
    assert not any("document 1" in line for line in lines)
