"""Firings turned into actions: parameters applied, objects named by the firing, HTTP and log actions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.events.actions import (
    ANNOTATION_EVENT_IDS,
    ANNOTATION_FIRING,
    ActionError,
    HttpAction,
    LogAction,
    ObjectAction,
    copy_tree,
    plan_action,
)
from engine.events.model import Event
from engine.events.sensor import compile_sensor, on_event, restore
from engine.spec.events import Sensor
from engine.spec.loader import load_file

NOW = 1_800_000_000.0


def event(data: Any, n: int = 1, source: str = "webhook", subject: str = "example") -> Event:
    return Event(
        id=f"id-{n}", source=source, type="webhook", subject=subject, time="2027-01-15T10:00:00Z", data=data
    )


def fire(s: Sensor, e: Event, trigger: int = 0) -> Any:
    t = compile_sensor(s)[trigger]
    step = on_event(t, restore(t, None, NOW), e, NOW)
    assert step.firing is not None, step.reason
    return plan_action(t, step.firing, now=NOW, namespace="team-a")


def corpus_sensor(corpus: Path, name: str) -> Sensor:
    (doc,) = load_file(corpus / "sensors" / name)
    assert isinstance(doc.obj, Sensor)
    return doc.obj


def test_templated_parameters_fill_the_workflow_and_name_it_after_the_firing(events_corpus: Path) -> None:
    s = corpus_sensor(events_corpus, "trigger-with-template.yaml")
    action = fire(s, event({"body": {"message": "hello there", "name": "Ada Lovelace"}}))
    assert isinstance(action, ObjectAction) and action.operation == "create"
    meta, spec = action.obj["metadata"], action.obj["spec"]
    assert [p.get("value") for p in spec["arguments"]["parameters"]] == ["Hello There", "Example"]
    assert "generateName" not in meta
    assert (
        meta["name"].startswith("webhook-adalovelace-")
        and len(meta["name"]) == len("webhook-adalovelace-") + 10
    )
    assert meta["namespace"] == "team-a"
    assert meta["labels"]["events.argoproj.io/sensor"] == "trigger-with-template"
    assert meta["annotations"][ANNOTATION_EVENT_IDS] == "id-1"
    again = fire(s, event({"body": {"message": "hello there", "name": "Ada Lovelace"}}))
    other = fire(s, event({"body": {"message": "hello there", "name": "Ada Lovelace"}}, n=2))
    assert again.obj["metadata"]["name"] == meta["name"] != other.obj["metadata"]["name"]
    assert again.obj["metadata"]["annotations"][ANNOTATION_FIRING] == meta["annotations"][ANNOTATION_FIRING]


def test_payload_text_is_inserted_verbatim_never_evaluated(events_corpus: Path) -> None:
    s = corpus_sensor(events_corpus, "webhook.yaml")
    hostile = "{{ 7*7 }} $(id) `id` {{inputs.parameters.message}} ; rm -rf /"
    action = fire(s, event({"body": {"message": hostile}}))
    assert isinstance(action, ObjectAction)
    # The dependency's dataKey is the whole body, so the parameter is its JSON text.
    assert action.obj["spec"]["arguments"]["parameters"][0]["value"] == json.dumps(
        {"message": hostile}, separators=(",", ":")
    )


def test_http_trigger_builds_a_json_body_from_its_payload_parameters(events_corpus: Path) -> None:
    s = corpus_sensor(events_corpus, "http-trigger.yaml")
    data = {"notification": [{"s3": {"bucket": {"name": "input"}}}]}
    action = fire(s, event(data, source="minio"))
    assert isinstance(action, HttpAction)
    assert (action.method, action.url) == ("POST", "http://http-server.argo-events.svc:8090/hello")
    assert action.body == b'{"bucket":"input","type":"webhook"}'
    assert action.headers["Content-Type"] == "application/json"


def test_log_trigger_logs_context_and_data(events_corpus: Path) -> None:
    s = corpus_sensor(events_corpus, "log.yaml")
    action = fire(s, event({"eventTime": "x"}, source="calendar", subject="example-with-interval"))
    assert isinstance(action, LogAction)
    assert '"subject": "example-with-interval"' in action.text and '"eventTime": "x"' in action.text


def test_missing_parameter_without_a_default_is_an_action_error() -> None:
    raw = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Sensor",
        "metadata": {"name": "s"},
        "spec": {
            "dependencies": [{"name": "d", "eventSourceName": "webhook", "eventName": "example"}],
            "triggers": [
                {
                    "template": {
                        "name": "t",
                        "k8s": {
                            "source": {
                                "resource": {
                                    "apiVersion": "v1",
                                    "kind": "ConfigMap",
                                    "metadata": {"name": "x"},
                                }
                            },
                            "parameters": [
                                {"src": {"dependencyName": "d", "dataKey": "body.nope"}, "dest": "data.v"}
                            ],
                        },
                    }
                }
            ],
        },
    }
    with pytest.raises(ActionError, match=r"body\.nope"):
        fire(Sensor.parse(raw), event({"body": {}}))


def test_a_copied_tree_is_equal_and_shares_no_mapping_or_list_with_the_original() -> None:
    when = datetime(2027, 1, 15, tzinfo=UTC)  # YAML timestamps: immutable, may be shared
    tree = {"a": [1, {"b": "x", "c": None}], "d": {"e": [True, 2.5]}, "t": when}
    copied = copy_tree(tree)
    assert copied == tree
    copied["a"][1]["b"] = "changed"
    copied["d"]["e"].append(3)
    assert tree == {"a": [1, {"b": "x", "c": None}], "d": {"e": [True, 2.5]}, "t": when}
