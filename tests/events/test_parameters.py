"""Trigger parameters: resolving values from events, sjson destinations, operations and templates."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ExprError
from engine.events.model import Event
from engine.events.parameters import (
    MAX_OUTPUT,
    MAX_TEMPLATE,
    SKIP,
    apply,
    apply_all,
    render_template,
    resolve,
    template_language,
)
from engine.spec.events import TriggerParameter, TriggerParameterSource
from engine.spec.loader import load_file
from tests.events.conftest import model_event


def event(data: Any = None, **context: str) -> Event:
    """An event whose time has nanoseconds and an offset, as templates may print it."""
    return model_event(data, **{"time": "2024-05-01T12:00:00.123456789+02:00", **context})


def param(dest: str = "x", operation: str | None = None, **src: Any) -> TriggerParameter:
    src.setdefault("dependency_name", "dep")
    return TriggerParameter(src=TriggerParameterSource(**src), dest=dest, operation=operation)


def corpus_trigger(corpus: Path, sensor: str) -> dict[str, Any]:
    doc = load_file(corpus / "sensors" / sensor)[0]
    return doc.raw["spec"]["triggers"][0]


def corpus_params(items: list[dict[str, Any]]) -> list[TriggerParameter]:
    return [TriggerParameter.parse(p, "parameters") for p in items]


# --- the corpus ----------------------------------------------------------------------------------------


def test_trigger_with_template_fills_the_workflow_from_data_and_context(events_corpus: Path) -> None:
    k8s = corpus_trigger(events_corpus, "trigger-with-template.yaml")["template"]["k8s"]
    resource = k8s["source"]["resource"]
    before = copy.deepcopy(resource)
    ev = event({"body": {"message": "hello world", "name": "John Doe"}})
    out = apply_all(resource, corpus_params(k8s["parameters"]), {"test-dep": ev})
    assert out["spec"]["arguments"]["parameters"] == [
        {"name": "message", "value": "Hello World"},
        {"name": "subject", "value": "Example"},
    ]
    assert out["metadata"]["generateName"] == "webhook-johndoe-"
    assert resource == before


def test_github_sensor_builds_a_name_from_a_number_and_a_short_sha(events_corpus: Path) -> None:
    k8s = corpus_trigger(events_corpus, "github.yaml")["template"]["k8s"]
    sha = "2c065a1f0e1d4b5a"
    ev = event({"body": {"pull_request": {"title": "Fix", "number": 21500, "head": {"sha": sha}}}})
    out = apply_all(k8s["source"]["resource"], corpus_params(k8s["parameters"]), {"test-dep": ev})
    values = [p.get("value") for p in out["spec"]["arguments"]["parameters"]]
    assert values == ["Fix", "21500", "2c065a1"]
    assert out["metadata"]["name"] == "21500-2c065a1"  # appended to nothing: just set


def test_http_trigger_payload_is_built_from_data_and_context(events_corpus: Path) -> None:
    http = corpus_trigger(events_corpus, "http-trigger.yaml")["template"]["http"]
    ev = event({"notification": [{"s3": {"bucket": {"name": "input"}}}]}, type="minio")
    assert apply_all({}, corpus_params(http["payload"]), {"test-dep": ev}) == {
        "bucket": "input",
        "type": "minio",
    }


def test_trigger_level_parameters_rewrite_the_template_and_append_the_port(events_corpus: Path) -> None:
    trigger = corpus_trigger(events_corpus, "complete-trigger-parameterization.yaml")
    data = {"name": "my-trigger", "bucket": "workflows", "key": "hello.yaml", "port": "9001"}
    out = apply_all(trigger["template"], corpus_params(trigger["parameters"]), {"test-dep": event(data)})
    assert out["name"] == "my-trigger"
    s3 = out["k8s"]["source"]["s3"]
    assert s3["bucket"] == {"name": "workflows", "key": "hello.yaml"}
    assert s3["endpoint"] == "minio-service.argo-events:90009001"
    assert trigger["template"]["name"] == "THIS_WILL_BE_REPLACED_BY_NAME_FROM_EVENT"


# --- resolving ------------------------------------------------------------------------------------------

DATA = {"body": {"s": "text", "n": 10, "f": 2.5, "t": True, "z": None, "o": {"k": [1, "a"]}}}


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("body.s", False, "text"),
        ("body.n", False, "10"),
        ("body.f", False, "2.5"),
        ("body.t", False, "true"),
        ("body.z", False, "null"),
        ("body.o", False, '{"k":[1,"a"]}'),
        ("body.o.k.1", False, "a"),
        ("body.s", True, "text"),
        ("body.n", True, 10),
        ("body.f", True, 2.5),
        ("body.t", True, True),
        ("body.z", True, None),
        ("body.o", True, {"k": [1, "a"]}),
    ],
)
def test_data_keys_give_text_unless_raw_data_is_asked_for(key: str, raw: bool, expected: Any) -> None:
    assert resolve(param(data_key=key, use_raw_data=raw), {"dep": event(DATA)}) == expected


def test_context_keys_read_the_cloudevents_attributes() -> None:
    ev = event(DATA, type="calendar", subject="tick")
    assert resolve(param(context_key="type"), {"dep": ev}) == "calendar"
    assert resolve(param(context_key="subject"), {"dep": ev}) == "tick"
    # Argo serialises the event time in UTC with whole seconds
    assert resolve(param(context_key="time"), {"dep": ev}) == "2024-05-01T10:00:00Z"


def test_data_wins_when_data_and_context_are_both_named() -> None:
    p = param(data_key="body.s", context_key="type")
    assert resolve(p, {"dep": event(DATA)}) == "text"


def test_templates_come_before_keys_and_fall_back_to_them() -> None:
    ev = {"dep": event(DATA)}
    assert resolve(param(data_template="{{ .Input.body.s | upper }}", data_key="body.n"), ev) == "TEXT"
    # a template that fails, or renders nothing, falls back to the key, then to the default
    assert resolve(param(data_template="{{ .Input.body.s.x.y }}", data_key="body.n"), ev) == "10"
    assert resolve(param(data_template="{{ if false }}x{{ end }}", data_key="body.n"), ev) == "10"
    assert resolve(param(data_template="{{ fail }}", value="dflt"), ev) == "dflt"
    assert (
        resolve(param(context_template="{{ .Input.source }}/{{ .Input.subject }}"), ev) == "webhook/example"
    )


def test_go_template_numbers_print_as_argo_prints_float64() -> None:
    ev = {"dep": event({"n": 21500, "big": 1234567})}
    assert resolve(param(data_template="{{ .Input.n }}"), ev) == "21500"
    assert resolve(param(data_template="{{ .Input.big }}"), ev) == "1.234567e+06"


def test_a_missing_key_uses_the_default_or_fails_naming_the_parameter() -> None:
    ev = {"dep": event(DATA)}
    assert resolve(param(data_key="body.nope", value="fallback"), ev) == "fallback"
    with pytest.raises(ExprError) as exc:
        resolve(param(dest="spec.x", data_key="body.nope"), ev)
    assert "spec.x" in str(exc.value)
    assert "'dep'" in str(exc.value)
    assert "body.nope" in str(exc.value)


def test_a_dependency_that_did_not_fire_gives_its_default_or_is_skipped() -> None:
    assert resolve(param(data_key="a", value="d"), {}) == "d"
    assert resolve(param(data_key="a"), {"other": event(DATA)}) is SKIP
    obj = {"keep": 1}
    assert apply_all(obj, [param(dest="keep", data_key="a")], {}) == {"keep": 1}


def test_without_key_or_template_the_default_or_the_whole_event_is_used() -> None:
    ev = {"dep": event(DATA)}
    assert resolve(param(value="plain"), ev) == "plain"
    whole = json.loads(resolve(param(), ev))
    assert whole["data"] == DATA
    assert whole["context"]["subject"] == "example"
    assert whole["context"]["id"] == "e1"


def test_data_that_is_not_json_uses_the_default_or_fails() -> None:
    ev = {"dep": event(b"\xffnot json")}
    assert resolve(param(data_key="a", value="d"), ev) == "d"
    with pytest.raises(ExprError, match="not valid JSON"):
        resolve(param(data_key="a"), ev)


# --- writing --------------------------------------------------------------------------------------------

V = "v"


@pytest.mark.parametrize(
    ("obj", "dest", "expected"),
    [
        ({}, "a", {"a": V}),
        ({}, "a.b.c", {"a": {"b": {"c": V}}}),
        ({}, "a.0", {"a": [V]}),
        ({}, "a.2", {"a": [None, None, V]}),
        ({}, "a.-1", {"a": [V]}),
        ({}, "a.0.b", {"a": [{"b": V}]}),
        ({}, "a.:0", {"a": {"0": V}}),
        ({}, "a\\.b", {"a.b": V}),
        ({}, "a\\\\b", {"a\\b": V}),
        ({"a": [1, 2]}, "a.1", {"a": [1, V]}),
        ({"a": [1, 2]}, "a.-1", {"a": [1, 2, V]}),
        ({"a": [1, 2]}, "a.4", {"a": [1, 2, None, None, V]}),
        ({"a": [{"b": 1}]}, "a.0.c", {"a": [{"b": 1, "c": V}]}),
        ({"a": {"0": 1}}, "a.0", {"a": {"0": V}}),  # on an object a number is a key
        ({"a": [1]}, "a.:0", {"a": [V]}),  # an existing element is found before ":" matters
        ({"a": {}}, "a.-1", {"a": {"-1": V}}),
        ({"a": "scalar"}, "a.b", {"a": {"b": V}}),  # a scalar in the way is replaced
        ({"a": None}, "a.1", {"a": [None, V]}),
        ({"a": 1, "b": 2}, "b", {"a": 1, "b": V}),
        ("not an object", "a", {"a": V}),
    ],
)  # fmt: skip
def test_dest_paths_follow_sjson(obj: Any, dest: str, expected: Any) -> None:
    assert apply(obj, dest, V) == expected


@pytest.mark.parametrize(
    ("obj", "dest", "message"),
    [
        ({}, "", "empty"),
        ({"a": [1]}, "a.b", "non-numeric key"),
        ({"a": [1]}, "a.:5", "non-numeric key"),  # ":" forces an object key, which an array has not
        ({}, "a.#", "not supported"),
        ({}, "a.*", "not supported"),
        ({}, "a|b", "not supported"),
        ({}, "a.99999999", "past the end"),
        ({}, ".".join(["k"] * 500), "keys"),
    ],
)
def test_bad_dest_paths_are_errors(obj: Any, dest: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        apply(obj, dest, V)


def test_apply_copies_only_along_the_path() -> None:
    obj = {"spec": {"a": {"deep": [1, 2]}, "b": {"x": 1}}, "other": {"big": list(range(10))}}
    before = copy.deepcopy(obj)
    out = apply(obj, "spec.b.x", 2)
    assert obj == before
    assert out["spec"]["b"] == {"x": 2}
    assert out["other"] is obj["other"]
    assert out["spec"]["a"] is obj["spec"]["a"]


@pytest.mark.parametrize(
    ("current", "op", "value", "expected"),
    [
        ("web-", "append", "hook", "web-hook"),
        ("web-", "prepend", "hook", "hookweb-"),
        ("x", "overwrite", "y", "y"),
        ("x", None, "y", "y"),
        (5, "append", "x", "5x"),  # the current value's text; the result is a string
        ("n=", "append", 42, "n=42"),  # a raw value joins as its JSON text
        ({"a": 1}, "prepend", "x", 'x{"a":1}'),
        (True, "append", None, "truenull"),
    ],
)
def test_append_and_prepend_concatenate_with_the_current_text(
    current: Any, op: str | None, value: Any, expected: Any
) -> None:
    assert apply({"k": current}, "k", value, op) == {"k": expected}


def test_append_to_nothing_sets_the_value_unchanged() -> None:
    assert apply({}, "k", 42, "append") == {"k": 42}
    assert apply({}, "k", "x", "prepend") == {"k": "x"}


def test_unsupported_operations_are_errors() -> None:
    with pytest.raises(ExprError, match="unsupported trigger parameter operation"):
        apply({}, "k", "x", "merge")


def test_raw_values_are_written_as_json() -> None:
    params = [
        param(dest="n", data_key="body.n", use_raw_data=True),
        param(dest="o", data_key="body.o", use_raw_data=True),
    ]
    assert apply_all({}, params, {"dep": event(DATA)}) == {"n": 10, "o": {"k": [1, "a"]}}


# --- payload text stays data ----------------------------------------------------------------------------

HOSTILE = [
    "{{ 7*7 }}",
    "{{ .Input }}",
    "{{ Input.__class__ }}",
    "{% for i in range(10) %}x{% endfor %}",
    "$(id)",
    "`id`",
    "; rm -rf /",
    "__import__('os').system('id')",
    "${jndi:ldap://x}",
    "\u00e9\u6f22\u5b57 \U0001f600",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_payload_text_is_inserted_byte_for_byte(text: str) -> None:
    ev = {"dep": event({"body": {"name": text}})}
    params = [
        param(dest="key", data_key="body.name"),
        param(dest="go", data_template="{{ .Input.body.name }}"),
        param(dest="jinja", data_template="{{ Input.body.name }}"),
        param(dest="append", data_key="body.name", operation="append"),
    ]
    out = apply_all({"append": text}, params, ev)
    assert out == {"key": text, "go": text, "jinja": text, "append": text + text}


# --- templates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("{{ .Input.body.name | lower }}", "go"),
        ("{{.Input.x}}", "go"),
        ("{{- .Input.x -}}", "go"),
        ("{{ $.Input.x }}", "go"),
        ("{{ lower .Input.x }}", "go"),
        ('{{ printf "%s-%s" .Input.a .Input.b }}', "go"),
        ("{{ if .Input.x }}a{{ end }}", "go"),
        ("{{ if true }}a{{ end }}", "go"),
        ("{{ Input.body.name | lower }}", "jinja2"),
        ("{{- Input.x }}", "jinja2"),
        ("{% if Input.x %}a{% endif %}", "jinja2"),
        ("{# note #}{{ Input.x }}", "jinja2"),
        ('{{ Input["a.b"] }}', "jinja2"),
        ("plain text", "go"),
    ],
)
def test_template_language_is_told_from_the_text(text: str, language: str) -> None:
    assert template_language(text) == language


def test_jinja2_templates_see_input_as_the_data() -> None:
    data = {"body": {"name": "John Doe", "items": [1, 2, 3]}}
    assert render_template("{{ Input.body.name | lower | replace(' ', '') }}", data) == "johndoe"
    assert render_template("{% for i in Input.body['items'] %}{{ i }},{% endfor %}", data) == "1,2,3,"
    assert render_template("{{ Input.body.name ~ '!' }}", data) == "John Doe!"
    assert render_template("{{ Input.body['items'] | sum }}", data) == "6"
    assert render_template("{{ Input.body['items'] | join('-') }}", data) == "1-2-3"
    # keys win over dict methods of the same name
    assert render_template("{{ Input.body.items | join('-') }}", data) == "1-2-3"
    assert render_template("{{ Input.body.keys() | join(',') }}", data) == "name,items"


def test_jinja2_undefined_names_are_errors() -> None:
    with pytest.raises(ExprError):
        render_template("{{ Input.body.missing }}", {"body": {}})


@pytest.mark.parametrize(
    "template",
    [
        "{{ Input.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ Input.body.pop('x') }}",
        "{{ lipsum() }}",
        "{{ 'x' * 100000000 }}",
        "{{ ['x'] * 100000000 }}",
        "{{ 'x' | center(100000000) }}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ '{:>100000000}'.format(1) }}",
        "{{ '%100000000d' % 1 }}",
        "{{ 2 ** 100000000 }}",
        "{{ range(99) | random }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{{ Input.body.s | replace('', Input.body.s) }}",
        "{{ [Input.body.s] | batch(100000000, 'x') | list }}",
        "{{ Input.body.s | indent(100000000) }}",
    ],
)
def test_jinja2_sandbox_refuses_escapes_and_unbounded_work(template: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ExprError):
        render_template(template, {"body": {"s": "y" * 5000}})
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "template",
    [
        "{% for c in Input.nums %}{% if c in Input.nums %}{% endif %}{% endfor %}",
        "{% for c in Input.nums %}{% if Input.text | upper %}{% endif %}{% endfor %}",
        "{% for c in Input.nums %}{% if Input.text is string %}{% endif %}{% endfor %}",
        "{% for c in Input.nums %}{% if Input.text.upper() %}{% endif %}{% endfor %}",
    ],
)
def test_jinja2_loops_over_large_payloads_stop_at_the_scan_allowance(template: str) -> None:
    data = {"nums": list(range(30_000)), "text": "t" * 200_000}
    start = time.perf_counter()
    with pytest.raises(ExprError, match="allowance"):
        render_template(template, data)
    assert time.perf_counter() - start < 5


def test_jinja2_loops_over_ordinary_payloads_fit_the_allowances() -> None:
    data = {"commits": [{"id": f"c{i}", "msg": "fix " * 20} for i in range(2000)]}
    out = render_template(
        "{% for c in Input.commits %}{% if 'fix' in c.msg %}{{ c.id }},{% endif %}{% endfor %}", data
    )
    assert out.count(",") == 2000


def test_templates_over_the_size_limit_are_refused() -> None:
    with pytest.raises(ExprError, match="longer than"):
        render_template("x" * (MAX_TEMPLATE + 1), {})
    with pytest.raises(ExprError):
        render_template("{{ Input }}", "z" * (MAX_OUTPUT + 1))


def test_apply_all_errors_name_the_destination() -> None:
    with pytest.raises(ExprError, match=re.escape("'spec.#'")):
        apply_all({}, [param(dest="spec.#", value="x")], {"dep": event(DATA)})


def test_unforeseen_evaluator_errors_become_expr_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: Any, path: str) -> Any:
        raise IndexError("evaluator bug")

    monkeypatch.setattr("engine.events.parameters.gjson.get", broken)
    with pytest.raises(ExprError, match="IndexError"):
        apply_all({}, [param(dest="x", data_key="body.s")], {"dep": event(DATA)})
