"""Argo Events' example manifests: what the engine runs validates, everything else is named unsupported.

In the corpus an EventSource is named after its type (``webhook``, ``calendar``, ``minio``, ``amqp``...),
so a sensor's dependencies say which source types it needs. A sensor is in scope when all of them are
types the engine runs and its triggers are k8s/argoWorkflow/http/log with a source the engine reads;
those must validate, and every other sensor must fail with an "unsupported" error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import SpecError
from engine.events.validate import event_source_problems, sensor_problems, validate_event_object
from engine.spec.events import SUPPORTED_SOURCES, UNSUPPORTED_SOURCES, EventSource, Sensor
from engine.spec.loader import load_file

# Corpus EventSource names that differ from their type key.
SOURCE_TYPE_OF = {
    "aws-sns": "sns",
    "aws-sqs": "sqs",
    "azure-events-hub": "azureEventsHub",
    "azure-queue-storage": "azureQueueStorage",
    "azure-service-bus": "azureServiceBus",
    "gcp-pubsub": "pubSub",
    "redis-stream": "redisStream",
    "storage-grid": "storageGrid",
}
# How many sensor files of the corpus the engine runs; a change here is a change in scope. Besides
# unsupported source and trigger types, these are rejected: git trigger sources over SSH or with GitHub
# App credentials, Lua script filters and jq/Lua transforms.
IN_SCOPE = 39


def sensors(corpus: Path) -> list[tuple[str, Sensor]]:
    out = []
    for path in sorted((corpus / "sensors").glob("*.y*ml")):
        for doc in load_file(path):
            if doc.kind == "Sensor":
                out.append((path.name, doc.obj))
    return out


def source_types(s: Sensor) -> set[str]:
    return {SOURCE_TYPE_OF.get(d.event_source_name, d.event_source_name) for d in s.spec.dependencies}


def test_every_corpus_manifest_parses(events_corpus: Path) -> None:
    files = sorted(events_corpus.rglob("*.y*ml"))
    assert len(files) >= 80
    for path in files:
        load_file(path)


def test_corpus_sensors_in_scope_validate_and_the_rest_are_rejected_as_unsupported(
    events_corpus: Path,
) -> None:
    valid, rejected = [], []
    for name, s in sensors(events_corpus):
        errors, _ = sensor_problems(s)
        unsupported_sources = sorted(source_types(s) - set(SUPPORTED_SOURCES))
        for kind in unsupported_sources:
            assert kind in UNSUPPORTED_SOURCES, f"{name}: {kind} is neither supported nor known unsupported"
            source = EventSource.parse(
                {"apiVersion": "sluice.dev/v1alpha1", "kind": "EventSource", "spec": {kind: {"example": {}}}}
            )
            (problem,) = event_source_problems(source)
            assert f"unsupported event source type {kind!r}" in problem.message
        if errors:
            text = "; ".join(str(p) for p in errors)
            assert all("unsupported" in p.message for p in errors), f"{name}: {text}"
            rejected.append(name)
        elif unsupported_sources:
            rejected.append(name)
        else:
            valid.append(name)
    print(f"{len(valid)} corpus sensors validate; {len(rejected)} are rejected as unsupported")
    assert len(valid) == IN_SCOPE, valid
    for expected in (
        "webhook.yaml",
        "calendar.yaml",
        "minio.yaml",
        "http-trigger.yaml",
        "log.yaml",
        "url-sensor.yaml",
        "multi-trigger-sensor.yaml",
    ):
        assert expected in valid


def test_corpus_git_trigger_source_with_basic_auth_validates_and_ssh_and_github_app_are_unsupported(
    events_corpus: Path,
) -> None:
    (doc,) = load_file(events_corpus / "sensors" / "trigger-source-git.yaml")
    errors, _ = sensor_problems(doc.obj)
    assert [(p.path, p.message.split(":")[0]) for p in errors] == [
        ("spec.triggers[1].template.k8s.source.git.url", "unsupported"),
        ("spec.triggers[1].template.k8s.source.git.sshKeySecret", "unsupported"),
        ("spec.triggers[2].template.k8s.source.git.githubApp", "unsupported"),
    ]


@pytest.mark.parametrize("name", ["webhook.yaml", "calendar.yaml", "minio.yaml"])
def test_corpus_event_sources_of_supported_types_validate(events_corpus: Path, name: str) -> None:
    (doc,) = load_file(events_corpus / "event-sources" / name)
    assert validate_event_object(doc.obj) == []


def test_generic_event_source_and_nats_streaming_bus_are_rejected(events_corpus: Path) -> None:
    for path, what in (("event-sources/generic.yaml", "'generic'"), ("eventbus/native.yaml", "'nats'")):
        (doc,) = load_file(events_corpus / path)
        with pytest.raises(SpecError, match=f"unsupported event (source type|bus) {what}"):
            validate_event_object(doc.obj)


def test_misplaced_policy_and_at_least_once_are_warnings(events_corpus: Path) -> None:
    for name, key in (
        ("trigger-with-policy.yaml", "policy"),
        ("trigger-with-atleast-once-semantics.yaml", "atLeastOnce"),
    ):
        (doc,) = load_file(events_corpus / "sensors" / name)
        warnings = validate_event_object(doc.obj)
        assert [w.path for w in warnings] == [f"spec.triggers[0].template.{key}"]
