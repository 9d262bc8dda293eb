"""The CRDs under crds/: generated from engine/spec, structural, and accepting every manifest we run.

An API server validates and *prunes* custom objects with the CRD's schema: a field the schema does not
know is dropped without a word. So besides "no validation error", every example of ours and every
workflow kind of Argo's corpus (converted to sluice.dev) must come through with nothing pruned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli.main import crd_text
from engine.spec.crd import custom_resource_definitions, file_name
from engine.spec.loader import load_file
from tests.cli.support import cli
from tests.conformance.run import locate_corpus
from tests.kubernetes.openapi import check, structural_problems

REPO = Path(__file__).resolve().parents[2]
CRDS = {d["spec"]["names"]["kind"]: d for d in custom_resource_definitions()}


def schema_of(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def verdicts(paths: list[Path]) -> tuple[int, list[str]]:
    """How many custom objects the files hold, and every error or pruned field, one line each."""
    count, problems = 0, []
    for path in paths:
        for doc in load_file(path):
            if doc.kind not in CRDS:
                continue
            count += 1
            v = check(doc.raw, schema_of(doc.kind))
            problems += [f"{path.name}: {e}" for e in v.errors]
            problems += [f"{path.name}: {p} would be pruned" for p in v.pruned]
    return count, problems


def test_committed_crds_are_what_the_models_generate(home: Path) -> None:
    committed = {p.name for p in (REPO / "crds").glob("*.yaml")}
    expected = {file_name(d): crd_text(d) for d in custom_resource_definitions()}
    assert committed == set(expected), "run `sluice crds --dir crds`"
    for name, text in expected.items():
        assert (REPO / "crds" / name).read_text(encoding="utf-8") == text, f"{name} drifted: regenerate"


@pytest.mark.parametrize("kind", list(CRDS))
def test_every_crd_schema_is_structural(kind: str) -> None:
    assert structural_problems(schema_of(kind)) == []


def test_workflow_kinds_are_named_scoped_and_printed_as_on_argo() -> None:
    wf = CRDS["Workflow"]["spec"]
    assert CRDS["Workflow"]["metadata"]["name"] == "workflows.sluice.dev"
    assert wf["names"]["shortNames"] == ["swf"]
    version = wf["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["jsonPath"] for c in version["additionalPrinterColumns"]] == [
        ".status.phase",
        ".status.progress",
        ".metadata.creationTimestamp",
        ".status.message",
    ]
    assert CRDS["ClusterWorkflowTemplate"]["spec"]["scope"] == "Cluster"
    assert "subresources" not in CRDS["WorkflowTemplate"]["spec"]["versions"][0]
    assert CRDS["CronWorkflow"]["spec"]["versions"][0]["subresources"] == {"status": {}}
    assert all(d["spec"]["names"]["categories"] == ["sluice"] for d in CRDS.values())


def test_our_examples_validate_with_nothing_pruned() -> None:
    count, problems = verdicts(sorted((REPO / "examples" / "workflows").glob("*.yaml")))
    assert count >= 15
    assert problems == []


def test_argo_corpus_validates_with_nothing_pruned() -> None:
    corpus, why = locate_corpus()
    if corpus is None:
        print(why)
        pytest.skip(why)
    paths = [p for p in sorted((corpus / "examples").rglob("*.yaml")) if _loads(p)]
    count, problems = verdicts(paths)
    assert count >= 200
    assert problems == []


def _loads(path: Path) -> bool:
    """Files our loader refuses (other kinds such as PersistentVolumeClaim) are not the CRDs' business."""
    from engine.errors import SpecError

    try:
        load_file(path)
    except SpecError:
        return False
    return True


WORKFLOW = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"generateName": "x-", "labels": {"a": "b"}},
    "spec": {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "flag", "value": True}, {"name": "n", "value": 1.5}]},
        "templates": [
            {"name": "main", "container": {"image": "busybox", "resources": {"limits": {"cpu": 1}}}}
        ],
    },
}


def test_any_scalar_argument_and_free_form_kubernetes_fields_are_kept() -> None:
    v = check(WORKFLOW, schema_of("Workflow"))
    assert (v.errors, v.pruned) == ([], [])


def test_wrong_types_are_rejected_and_unknown_fields_pruned() -> None:
    bad = yaml.safe_load(yaml.safe_dump(WORKFLOW))
    bad["spec"]["templates"][0]["container"]["command"] = "echo hi"
    bad["spec"]["parallelism"] = [2]
    bad["spec"]["entrypont"] = "typo"
    bad["spec"]["templates"][0]["retryStrategy"] = {"limit": 2, "backof": {"duration": "1s"}}
    v = check(bad, schema_of("Workflow"))
    assert "spec.templates[0].container.command: must be array, not str" in v.errors
    assert any(e.startswith("spec.parallelism:") for e in v.errors)
    assert sorted(v.pruned) == ["spec.entrypont", "spec.templates[0].retryStrategy.backof"]
    assert check({"apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow"}, schema_of("Workflow")).errors == [
        ".spec: required"
    ]


def test_structural_checker_names_what_a_real_api_server_would_refuse() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "spec": {
                "type": "object",
                "properties": {"a": {"description": "no type"}},
                "additionalProperties": {"type": "string"},
            },
            "list": {"type": "array"},
        },
    }
    problems = structural_problems(schema)
    assert "<root>.spec: properties and additionalProperties are mutually exclusive" in problems
    assert "<root>.spec.a: type is required" in problems
    assert "<root>.list: an array must give items" in problems
    assert any(p.startswith("<root>.metadata: only name and generateName") for p in problems)


def test_crds_command_prints_every_definition(home: Path, tmp_path: Path) -> None:
    res = cli("crds", home=home)
    assert res.returncode == 0
    kinds = [d["spec"]["names"]["kind"] for d in yaml.safe_load_all(res.stdout)]
    assert kinds == [
        "Workflow",
        "WorkflowTemplate",
        "ClusterWorkflowTemplate",
        "CronWorkflow",
        "EventSource",
        "Sensor",
        "EventBus",
    ]
    assert cli("crds", "--dir", str(tmp_path / "out"), home=home).returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        file_name(d) for d in custom_resource_definitions()
    )
