"""Property tests: hostile event payloads and random filter specs against filters and parameters.

Whatever the payload, filters return a FilterResult and parameters either apply or raise ExprError;
nothing in a payload is ever evaluated (template text comes out as it went in); and every call
finishes quickly.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ExprError
from engine.events.filters import FilterResult, passes
from engine.events.model import Event
from engine.events.parameters import SKIP, apply, apply_all, render_template, resolve
from engine.spec.events import (
    DataFilter,
    EventContextFilter,
    EventDependency,
    EventDependencyFilter,
    ExprFilter,
    PayloadField,
    TimeFilter,
    TriggerParameter,
    TriggerParameterSource,
)
from engine.spec.loader import load_file

# SLUICE_FUZZ_EXAMPLES raises the example count for a longer local or nightly fuzzing run.
FUZZ = settings(
    max_examples=int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "200")),
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# One call on one event: far above the real cost, far below a hang.
QUICK = 1.0

HOSTILE = [
    "{{ 7*7 }}",
    "{{ .Input }}",
    "{{ .Input.body | printf }}",
    "{{ Input.__class__.__mro__ }}",
    "{% for x in range(100000) %}{% endfor %}",
    "{# c #}",
    "${{ 7*7 }}",
    "__import__('os').system('id')",
    "$(id)",
    "`id`",
    "; rm -rf /",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "\\u0000",
    "\x00\x01",
    "a\nb\r\n",
    "\u00e9\u6f22\u5b57\U0001f600\u202e",
    "1e309",
    "-0",
    "NaN",
    "true",
    "50.0",
    "hello",
    "",
]
TEXT = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))
KEYS = [
    "body", "message", "value", "a", "b", "c", "d", "e", "bucket", "name", "nested", "path", "can-get",
    "longer", "a-longer-name", "pull_request", "head", "sha", "number", "title", "notification", "s3",
    "key", "port", "namespace", "image", "0",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), TEXT), inner, max_size=5),
    ),
    max_leaves=25,
)
PAYLOAD = st.one_of(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6), JSON)
TIMES = st.one_of(
    st.sampled_from(["2024-05-01T03:00:00Z", "2024-07-01T14:00:00-04:00", "2024-12-31T23:59:59.999999999Z"]),
    TEXT,
)


def event(data: Any, at: str = "2024-05-01T03:00:00Z") -> Event:
    return Event(id="1", source="webhook", type="webhook", subject="example", time=at, data=data)


FILTER_SENSORS = [
    "filter-with-context.yaml",
    "filter-with-data-advanced.yaml",
    "filter-with-data-simple-1.yaml",
    "filter-with-data-simple-2.yaml",
    "filter-with-data-simple-3.yaml",
    "filter-with-data-simple-4.yaml",
    "filter-with-expressions.yaml",
    "filter-with-multiple-data-filters-in-or.yaml",
    "filter-with-multiple-expr-filters-in-or.yaml",
    "filter-with-multiple-filters-in-or.yaml",
    "filter-with-multiple-filters-mixed.yaml",
    "filter-with-multiple-filters.yaml",
    "filter-with-time-timezone.yaml",
    "filter-with-time.yaml",
    "filter-script.yaml",
    "context-filter-webhook.yaml",
    "time-filter-webhook.yaml",
]
PARAMETER_SENSORS = [
    "trigger-with-template.yaml",
    "github.yaml",
    "http-trigger.yaml",
    "complete-trigger-parameterization.yaml",
]


@pytest.fixture(scope="module")
def corpus_dependencies(events_corpus: Path) -> list[EventDependency]:
    deps: list[EventDependency] = []
    for name in FILTER_SENSORS:
        deps.extend(load_file(events_corpus / "sensors" / name)[0].obj.spec.dependencies)
    return deps


@pytest.fixture(scope="module")
def corpus_parameters(events_corpus: Path) -> list[tuple[dict[str, Any], list[TriggerParameter]]]:
    """(object, parameters) pairs: each trigger template with its own parameters, and its resource."""
    out: list[tuple[dict[str, Any], list[TriggerParameter]]] = []
    for name in PARAMETER_SENSORS:
        trigger = load_file(events_corpus / "sensors" / name)[0].raw["spec"]["triggers"][0]
        tpl = trigger["template"]
        out.append((tpl, [TriggerParameter.parse(p, "p") for p in trigger.get("parameters", [])]))
        for kind in ("k8s", "http"):
            spec = tpl.get(kind) or {}
            resource = (spec.get("source") or {}).get("resource") or {}
            items = spec.get("parameters", []) + spec.get("payload", [])
            out.append((resource, [TriggerParameter.parse(p, "p") for p in items]))
    return out


@FUZZ
@given(data=PAYLOAD, at=TIMES)
def test_corpus_filters_answer_every_payload_without_raising(
    corpus_dependencies: list[EventDependency], data: Any, at: str
) -> None:
    for dep in corpus_dependencies:
        start = time.perf_counter()
        result = passes(dep.filters, dep.filters_logical_operator, event(data, at))
        assert isinstance(result, FilterResult)
        assert isinstance(result.reason, str)
        assert time.perf_counter() - start < QUICK


@FUZZ
@given(data=PAYLOAD)
def test_corpus_parameters_apply_or_raise_expr_error_and_never_touch_the_input(
    corpus_parameters: list[tuple[dict[str, Any], list[TriggerParameter]]], data: Any
) -> None:
    events = {"test-dep": event(data)}
    for obj, params in corpus_parameters:
        before = copy.deepcopy(obj)
        start = time.perf_counter()
        with contextlib.suppress(ExprError):
            apply_all(obj, params, events)
        assert time.perf_counter() - start < QUICK
        assert obj == before


TEMPLATES = [
    "{{ .Input.body.message }}",
    '{{ .Input.body.message | printf "%s" }}',
    "{{ Input.body.message }}",
    "{{ Input.body.message | string }}",
    "{{- Input['body']['message'] -}}",
]


@FUZZ
@given(text=TEXT.filter(lambda t: t not in ("", "<no value>")), extra=JSON)
def test_payload_text_comes_out_exactly_as_it_went_in(text: str, extra: Any) -> None:
    # (An empty rendering or Go's "<no value>" counts as a failed template, as in Argo.)
    events = {"dep": event({"body": {"message": text, "extra": extra}})}

    def value(**src: Any) -> Any:
        p = TriggerParameter(src=TriggerParameterSource(dependency_name="dep", **src), dest="v")
        return resolve(p, events)

    assert value(data_key="body.message") == text
    assert value(data_key="body.message", use_raw_data=True) == text
    for template in TEMPLATES:
        assert value(data_template=template) == text, template
    out = apply_all(
        {"spec": {"x": text}},
        [
            TriggerParameter(
                src=TriggerParameterSource(dependency_name="dep", data_key="body.message"),
                dest="spec.x",
                operation="append",
            )
        ],
        events,
    )
    assert out == {"spec": {"x": text + text}}


@FUZZ
@given(text=TEXT.filter(bool))
def test_payload_text_in_a_data_filter_is_matched_never_rendered(text: str) -> None:
    # A payload such as "{{ 7*7 }}" is compared as text: only the text "49" itself matches ^49$.
    spec = EventDependencyFilter(data=(DataFilter(path="body.m", type="string", value=("^49$",)),))
    assert passes(spec, None, event({"body": {"m": text}})).passed is (text == "49")


# --- random filter specs --------------------------------------------------------------------------------

PATHS = st.one_of(
    st.sampled_from(
        ["a", "b.c", "body.message", "d.e", "#", "a.#", "[a,b]", "a,b", "@this", "a.*", "b.?", "x\\.y"]
    ),
    TEXT,
)
DATA_FILTERS = st.builds(
    DataFilter,
    path=PATHS,
    type=st.one_of(st.sampled_from(["string", "number", "bool", "boolean", ""]), TEXT),
    value=st.lists(
        st.one_of(st.sampled_from(["1", "true", "^a", "(", "[", "1e999", "x{2,1}"]), TEXT), max_size=3
    ).map(tuple),
    comparator=st.one_of(st.none(), st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "=="]), TEXT),
    template=st.one_of(
        st.none(),
        st.sampled_from(["{{ .Input | upper }}", "{{ .Input.x }}", "{{", "{{ end }}", "{{ len .Input }}"]),
        TEXT,
    ),
)
EXPR_TOKENS = [
    "a",
    "b",
    "e",
    "==",
    "!=",
    "&&",
    "||",
    "!",
    "(",
    ")",
    "1",
    "'s'",
    '"t"',
    "=~",
    "+",
    "?",
    ":",
    "in",
    "true",
]
EXPR_FILTERS = st.builds(
    ExprFilter,
    expr=st.one_of(st.lists(st.sampled_from(EXPR_TOKENS), max_size=12).map(" ".join), TEXT),
    fields_=st.lists(
        st.builds(PayloadField, name=st.sampled_from(["a", "b", "e"]), path=PATHS), max_size=3
    ).map(tuple),
)
CLOCKS = st.one_of(
    st.sampled_from(["00:00:00", "02:30:00", "23:59:59", "9:00:00", "24:00:00", "1:2:3"]), TEXT
)
FILTER_SPECS = st.builds(
    EventDependencyFilter,
    data=st.lists(DATA_FILTERS, max_size=3).map(tuple),
    exprs=st.lists(EXPR_FILTERS, max_size=2).map(tuple),
    data_logical_operator=st.sampled_from([None, "and", "or", "OR"]),
    expr_logical_operator=st.sampled_from([None, "and", "or"]),
    context=st.one_of(
        st.none(),
        st.builds(EventContextFilter, type=st.one_of(st.none(), TEXT), source=st.one_of(st.none(), TEXT)),
    ),
    time=st.one_of(
        st.none(),
        st.builds(
            TimeFilter,
            start=CLOCKS,
            stop=CLOCKS,
            timezone=st.one_of(st.none(), st.sampled_from(["UTC", "America/New_York", "Nowhere/Land"]), TEXT),
        ),
    ),
    script=st.one_of(st.none(), st.just("return true")),
)


@FUZZ
@given(spec=FILTER_SPECS, op=st.sampled_from([None, "and", "or"]), data=PAYLOAD, at=TIMES)
def test_random_filter_specs_never_raise(
    spec: EventDependencyFilter, op: str | None, data: Any, at: str
) -> None:
    start = time.perf_counter()
    result = passes(spec, op, event(data, at))
    assert isinstance(result, FilterResult)
    assert time.perf_counter() - start < QUICK


DEST_PARTS = st.one_of(st.sampled_from(["a", "b", "0", "1", "-1", ":0", "spec", "7", "a\\.b", "", "#"]), TEXT)


@FUZZ
@given(obj=JSON, dest=st.lists(DEST_PARTS, min_size=1, max_size=6).map(".".join), value=JSON,
       op=st.sampled_from([None, "overwrite", "append", "prepend", "merge"]))  # fmt: skip
def test_random_destinations_apply_or_raise_expr_error_without_touching_the_input(
    obj: Any, dest: str, value: Any, op: str | None
) -> None:
    before = copy.deepcopy(obj)
    with contextlib.suppress(ExprError):
        apply(obj, dest, value, op)
    assert obj == before


TEMPLATE_TOKENS = [
    "{{", "}}", "{%", "%}", "{#", "#}", ".Input", "Input", ".", "$", "|", "lower", "upper", "for", "in",
    "range(10)", "endfor", "if", "end", "endif", "x", "'s'", '"t"', "~", "+", "*", "9", "(", ")", "[", "]",
    "join", "length", "printf", "index", "default", "-", " ",
]  # fmt: skip


@FUZZ
@given(template=st.lists(st.sampled_from(TEMPLATE_TOKENS), max_size=20).map("".join), data=PAYLOAD)
def test_random_templates_render_or_raise_expr_error_quickly(template: str, data: Any) -> None:
    start = time.perf_counter()
    try:
        out = render_template(template, data)
    except ExprError:
        pass
    else:
        assert isinstance(out, str)
    assert time.perf_counter() - start < QUICK


@FUZZ
@given(data=PAYLOAD, value=st.one_of(st.none(), TEXT))
def test_an_absent_dependency_gives_the_default_or_skip(data: Any, value: str | None) -> None:
    p = TriggerParameter(
        src=TriggerParameterSource(dependency_name="dep", data_key="a", value=value), dest="x"
    )
    assert resolve(p, {"other": event(data)}) == (value if value is not None else SKIP)
