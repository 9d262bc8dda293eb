"""Dependency filters: the corpus sensors' filters on hand-built events, then Argo's edge cases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from engine.events import filters as filters_module
from engine.events.filters import compile_filters, passes
from engine.events.model import Event
from engine.spec.events import (
    DataFilter,
    EventContextFilter,
    EventDependency,
    EventDependencyFilter,
    ExprFilter,
    PayloadField,
    TimeFilter,
)
from engine.spec.loader import load_file
from tests.events.conftest import model_event

event = model_event


def dependency(corpus: Path, sensor: str, index: int = 0) -> EventDependency:
    doc = load_file(corpus / "sensors" / sensor)[0]
    return doc.obj.spec.dependencies[index]


def check(dep: EventDependency, ev: Event) -> bool:
    return passes(dep.filters, dep.filters_logical_operator, ev).passed


# --- the corpus ----------------------------------------------------------------------------------------

CORPUS_DATA_CASES = [
    # filter-with-data-simple-1: body.message matches "hello" or "hey", unanchored
    ("filter-with-data-simple-1.yaml", {"body": {"message": "hello"}}, True),
    ("filter-with-data-simple-1.yaml", {"body": {"message": "say hello there"}}, True),
    ("filter-with-data-simple-1.yaml", {"body": {"message": "they"}}, True),
    ("filter-with-data-simple-1.yaml", {"body": {"message": "goodbye"}}, False),
    ("filter-with-data-simple-1.yaml", {"body": {}}, False),
    ("filter-with-data-simple-1.yaml", {"body": {"message": 7}}, False),
    # filter-with-data-simple-2: two alternative bucket names
    ("filter-with-data-simple-2.yaml", {"bucket": "argo-workflow-input"}, True),
    ("filter-with-data-simple-2.yaml", {"bucket": "argo-workflow-input1"}, True),
    ("filter-with-data-simple-2.yaml", {"bucket": "other"}, False),
    # filter-with-data-simple-3: number equal to 50.0 (numeric text counts, as gjson reads it)
    ("filter-with-data-simple-3.yaml", {"body": {"value": 50}}, True),
    ("filter-with-data-simple-3.yaml", {"body": {"value": 50.0}}, True),
    ("filter-with-data-simple-3.yaml", {"body": {"value": "50"}}, True),
    ("filter-with-data-simple-3.yaml", {"body": {"value": 51}}, False),
    # filter-with-data-simple-4: number greater than 50.0
    ("filter-with-data-simple-4.yaml", {"body": {"value": 50.5}}, True),
    ("filter-with-data-simple-4.yaml", {"body": {"value": 51}}, True),
    ("filter-with-data-simple-4.yaml", {"body": {"value": 50}}, False),
    ("filter-with-data-simple-4.yaml", {"body": {"value": -3}}, False),
    # filter-with-data-advanced: bool, number and string entries, all must hold
    ("filter-with-data-advanced.yaml", {"a": True, "b": {"c": 3.14, "d": "hello, world"}}, True),
    ("filter-with-data-advanced.yaml", {"a": "true", "b": {"c": "3.14", "d": "hello,world"}}, True),
    ("filter-with-data-advanced.yaml", {"a": False, "b": {"c": 3.14, "d": "hello, world"}}, False),
    ("filter-with-data-advanced.yaml", {"a": True, "b": {"c": 3.15, "d": "hello, world"}}, False),
    ("filter-with-data-advanced.yaml", {"a": True, "b": {"c": 3.14, "d": "hello world"}}, False),
    ("filter-with-data-advanced.yaml", {"a": True, "b": {"c": 3.14}}, False),
    # filter-with-multiple-data-filters-in-or: one passing entry is enough
    ("filter-with-multiple-data-filters-in-or.yaml", {"a": True, "b": {"c": 1, "d": "x"}}, True),
    ("filter-with-multiple-data-filters-in-or.yaml", {"a": False, "b": {"c": 3.14, "d": "x"}}, True),
    ("filter-with-multiple-data-filters-in-or.yaml", {"a": False, "b": {"c": 1, "d": "hello there"}}, True),
    ("filter-with-multiple-data-filters-in-or.yaml", {"a": False, "b": {"c": 1, "d": "x"}}, False),
    # a missing path is skipped by "or" as long as another entry passes
    ("filter-with-multiple-data-filters-in-or.yaml", {"b": {"c": 3.14}}, True),
    ("filter-with-multiple-data-filters-in-or.yaml", {"b": {"c": 1}}, False),
]


@pytest.mark.parametrize(("sensor", "data", "expected"), CORPUS_DATA_CASES)
def test_corpus_data_filters_accept_exactly_the_matching_payloads(
    events_corpus: Path, sensor: str, data: Any, expected: bool
) -> None:
    assert check(dependency(events_corpus, sensor), event(data)) is expected


NESTED_FALSE = {"nested": {"path": {"can-get": {"longer": False}}}}
NESTED_TRUE = {"nested": {"path": {"can-get": {"longer": True}}}}

CORPUS_EXPR_CASES = [
    # filter-with-expressions: (a == "b" || c == 10) && e == false
    ("filter-with-expressions.yaml", {"a": "b", "a-longer-name": 1, **NESTED_FALSE}, True),
    ("filter-with-expressions.yaml", {"a": "x", "a-longer-name": 10, **NESTED_FALSE}, True),
    ("filter-with-expressions.yaml", {"a": "x", "a-longer-name": 11, **NESTED_FALSE}, False),
    ("filter-with-expressions.yaml", {"a": "b", "a-longer-name": 1, **NESTED_TRUE}, False),
    ("filter-with-expressions.yaml", {"a": "b", **NESTED_FALSE}, False),  # a field's path is missing
    # filter-with-multiple-expr-filters-in-or: (a == "b" || c != 10) or (e == false)
    ("filter-with-multiple-expr-filters-in-or.yaml", {"a": "x", "a-longer-name": 10, **NESTED_FALSE}, True),
    ("filter-with-multiple-expr-filters-in-or.yaml", {"a": "b", "a-longer-name": 10, "nested": {}}, True),
    (
        "filter-with-multiple-expr-filters-in-or.yaml",
        {"a": "x", "a-longer-name": 10, "nested": {"path": {"can-get": {"longer": True}}}},
        False,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("sensor", "data", "expected"), CORPUS_EXPR_CASES)
def test_corpus_expression_filters_bind_fields_and_evaluate_govaluate(
    events_corpus: Path, sensor: str, data: Any, expected: bool
) -> None:
    assert check(dependency(events_corpus, sensor), event(data)) is expected


GROUPS_CASES = [
    # filter-with-multiple-filters: every group (exprs and data, each "and") must pass
    ("filter-with-multiple-filters.yaml", {"a": "b", "c": 10, "d": {"e": False}}, True),
    ("filter-with-multiple-filters.yaml", {"a": "b", "c": 11, "d": {"e": False}}, False),
    ("filter-with-multiple-filters.yaml", {"a": "x", "c": 10, "d": {"e": False}}, False),
    # filter-with-multiple-filters-mixed: groups in "or"; the data group ("and", c > 20) fails, exprs pass
    ("filter-with-multiple-filters-mixed.yaml", {"a": "b", "c": 10, "d": {"e": False}}, True),
    ("filter-with-multiple-filters-mixed.yaml", {"a": "x", "c": 30, "d": {"e": True}}, False),
    # filter-with-multiple-filters-in-or: everything in "or"
    ("filter-with-multiple-filters-in-or.yaml", {"a": "b", "c": 10, "d": {"e": False}}, True),
    ("filter-with-multiple-filters-in-or.yaml", {"a": "x", "c": 30, "d": {"e": True}}, True),
    ("filter-with-multiple-filters-in-or.yaml", {"a": "x", "c": 3, "d": {"e": True}}, False),
]


@pytest.mark.parametrize(("sensor", "data", "expected"), GROUPS_CASES)
def test_corpus_filter_groups_combine_with_filters_logical_operator(
    events_corpus: Path, sensor: str, data: Any, expected: bool
) -> None:
    assert check(dependency(events_corpus, sensor), event(data)) is expected


TIME_CASES = [
    ("filter-with-time.yaml", 0, "2024-05-01T02:30:00Z", True),  # start is inclusive
    ("filter-with-time.yaml", 0, "2024-05-01T03:59:59.999Z", True),
    ("filter-with-time.yaml", 0, "2024-05-01T04:30:00Z", False),  # stop is exclusive
    ("filter-with-time.yaml", 0, "2024-05-01T02:29:59Z", False),
    ("filter-with-time.yaml", 0, "2024-05-01T05:00:00+02:00", True),  # 03:00 UTC
    # 09:00-17:00 in New York, summer (UTC-4) and winter (UTC-5)
    ("filter-with-time-timezone.yaml", 0, "2024-07-01T13:00:00Z", True),
    ("filter-with-time-timezone.yaml", 0, "2024-07-01T12:59:59Z", False),
    ("filter-with-time-timezone.yaml", 0, "2024-07-01T21:00:00Z", False),
    ("filter-with-time-timezone.yaml", 0, "2024-01-15T13:30:00Z", False),
    ("filter-with-time-timezone.yaml", 0, "2024-01-15T14:00:00Z", True),
    # time-filter-webhook's second dependency: 23:34:05 to 00:24:05 the next day
    ("time-filter-webhook.yaml", 1, "2024-05-01T23:34:05Z", True),
    ("time-filter-webhook.yaml", 1, "2024-05-01T23:59:59Z", True),
    ("time-filter-webhook.yaml", 1, "2024-05-02T00:10:00Z", True),
    ("time-filter-webhook.yaml", 1, "2024-05-02T00:24:05Z", False),
    ("time-filter-webhook.yaml", 1, "2024-05-02T12:00:00Z", False),
    ("time-filter-webhook.yaml", 0, "2024-05-02T22:30:00Z", True),
    ("time-filter-webhook.yaml", 0, "2024-05-02T23:10:00Z", False),
]


@pytest.mark.parametrize(("sensor", "index", "at", "expected"), TIME_CASES)
def test_corpus_time_filters_use_the_event_time_in_a_half_open_window(
    events_corpus: Path, sensor: str, index: int, at: str, expected: bool
) -> None:
    assert check(dependency(events_corpus, sensor, index), event({"x": 1}, time=at)) is expected


def test_corpus_context_filters_compare_the_set_attributes_exactly(events_corpus: Path) -> None:
    custom = dependency(events_corpus, "filter-with-context.yaml")
    assert check(custom, event({}, source="custom-webhook"))
    assert not check(custom, event({}, source="webhook"))
    assert not check(custom, event({}, source="custom-webhook-2"))
    three = dependency(events_corpus, "context-filter-webhook.yaml")
    assert check(three, event({}))
    assert not check(three, event({}, subject="other"))
    assert not check(three, event({}, datacontenttype="application/xml"))


def test_corpus_script_filter_never_passes_and_says_lua_is_unsupported(events_corpus: Path) -> None:
    dep = dependency(events_corpus, "filter-script.yaml")
    result = passes(dep.filters, dep.filters_logical_operator, event({"body": {"a": "b", "d": {"e": "z"}}}))
    assert not result.passed
    assert "Lua" in result.reason


# --- semantics beyond the corpus ------------------------------------------------------------------------


def data_filter(**kwargs: Any) -> EventDependencyFilter:
    return EventDependencyFilter(data=(DataFilter(**kwargs),))


def test_no_filters_pass_every_event() -> None:
    assert passes(None, None, event({"a": 1})).passed
    assert passes(EventDependencyFilter(), None, event({"a": 1})).passed


def test_or_operator_with_no_filter_configured_passes_nothing() -> None:
    result = passes(EventDependencyFilter(), "or", event({"a": 1}))
    assert not result.passed
    assert "or" in result.reason


def test_an_event_without_data_passes_data_and_expression_filters() -> None:
    spec = EventDependencyFilter(
        data=(DataFilter(path="a", type="string", value=("x",)),),
        exprs=(ExprFilter(expr="a == 1", fields_=(PayloadField(name="a", path="a"),)),),
    )
    assert passes(spec, None, event(None)).passed


def test_data_that_is_not_json_is_an_error() -> None:
    spec = data_filter(path="a", type="string", value=("x",))
    result = passes(spec, None, event(b"{not json"))
    assert not result.passed
    assert "not valid JSON" in result.reason
    assert passes(spec, None, event(b'{"a": "x"}')).passed


def test_missing_path_rejects_and_names_the_path() -> None:
    result = passes(data_filter(path="body.missing", type="string", value=("x",)), None, event({"body": {}}))
    assert not result.passed
    assert "body.missing" in result.reason


@pytest.mark.parametrize(
    ("kind", "values", "actual", "expected"),
    [
        ("bool", ("true",), True, True),
        ("bool", ("T",), "TRUE", True),  # gjson lower-cases text before reading it as a bool
        ("bool", ("true",), 1, True),  # a non-zero number reads as true
        ("bool", ("false",), 0, True),
        ("bool", ("false",), "yes", True),  # text that is no bool reads as false
        ("bool", ("false",), {"x": 1}, True),
        ("number", ("0",), "abc", True),  # text that is no number reads as 0
        ("number", ("1",), True, True),
        ("number", ("1e3",), 1000, True),
        ("number", ("10",), 10**30, False),
        ("string", ("^3$",), 3, True),  # numbers are matched in their text form
        ("string", ('"k":1',), {"k": 1}, True),  # objects as compact JSON
        ("string", ("^true$",), True, True),
        ("string", ("^$",), None, True),  # null reads as empty text
    ],
)
def test_data_values_are_converted_as_gjson_converts_them(
    kind: str, values: tuple[str, ...], actual: Any, expected: bool
) -> None:
    spec = data_filter(path="v", type=kind, value=values)
    assert passes(spec, None, event({"v": actual})).passed is expected


@pytest.mark.parametrize(
    ("comparator", "actual", "expected"),
    [
        (None, 5, True),
        ("=", 5, True),
        ("!=", 5, False),
        ("!=", 6, True),
        (">", 6, True),
        (">=", 5, True),
        ("<", 5, False),
        ("<=", 5, True),
        ("==", 5, False),  # not a comparator Argo knows: never matches
    ],
)
def test_number_comparators(comparator: str | None, actual: int, expected: bool) -> None:
    spec = data_filter(path="n", type="number", value=("5",), comparator=comparator)
    assert passes(spec, None, event({"n": actual})).passed is expected


def test_string_values_are_unanchored_regexes_and_not_equal_inverts_them() -> None:
    eq = data_filter(path="s", type="string", value=("wor.d",))
    ne = data_filter(path="s", type="string", value=("wor.d",), comparator="!=")
    gt = data_filter(path="s", type="string", value=("wor.d",), comparator=">")
    assert passes(eq, None, event({"s": "hello world!"})).passed
    assert not passes(ne, None, event({"s": "hello world!"})).passed
    assert passes(ne, None, event({"s": "hello there"})).passed
    assert not passes(gt, None, event({"s": "hello world!"})).passed


def test_a_bad_value_is_an_error_only_when_evaluation_reaches_it() -> None:
    spec = data_filter(path="s", type="string", value=("ok", "(unclosed"))
    assert passes(spec, None, event({"s": "ok"})).passed
    result = passes(spec, None, event({"s": "no"}))
    assert not result.passed
    assert "missing closing )" in result.reason
    numbers = data_filter(path="n", type="number", value=("1", "many"))
    assert passes(numbers, None, event({"n": 1})).passed
    assert "ParseFloat" in passes(numbers, None, event({"n": 2})).reason


@pytest.mark.parametrize("kind", ["boolean", "int", "String", ""])
def test_an_unsupported_type_rejects_with_its_name(kind: str) -> None:
    result = passes(data_filter(path="a", type=kind, value=("1",)), None, event({"a": 1}))
    assert not result.passed
    assert "unsupported JSON type" in result.reason


def test_an_entry_without_values_is_an_error() -> None:
    result = passes(data_filter(path="a", type="string"), None, event({"a": "x"}))
    assert not result.passed
    assert "no values" in result.reason


def test_a_data_template_rewrites_the_text_before_comparing() -> None:
    spec = data_filter(path="name", type="string", value=("^john doe$",), template="{{ .Input | lower }}")
    assert passes(spec, None, event({"name": "John DOE"})).passed
    assert not passes(spec, None, event({"name": "Jane"})).passed
    number = data_filter(path="n", type="number", value=("8",), template="{{ len .Input }}")
    assert passes(number, None, event({"n": "abcdefgh"})).passed


def test_a_data_template_rendering_nothing_is_an_error() -> None:
    spec = data_filter(path="name", type="string", value=(".*",), template="{{ if false }}x{{ end }}")
    result = passes(spec, None, event({"name": "x"}))
    assert not result.passed
    assert "empty" in result.reason


def test_expression_results_other_than_true_do_not_pass() -> None:
    field = (PayloadField(name="a", path="a"),)
    not_bool = EventDependencyFilter(exprs=(ExprFilter(expr="a + 1", fields_=field),))
    assert not passes(not_bool, None, event({"a": 1})).passed
    broken = EventDependencyFilter(exprs=(ExprFilter(expr="a ==", fields_=field),))
    assert not passes(broken, None, event({"a": 1})).passed


def test_expression_numbers_are_floats_and_strings_compare_as_text() -> None:
    fields = (PayloadField(name="n", path="n"), PayloadField(name="s", path="s"))
    spec = EventDependencyFilter(exprs=(ExprFilter(expr="n / 2 == 2.5 && s == '10'", fields_=fields),))
    assert passes(spec, None, event({"n": 5, "s": "10"})).passed
    regex = EventDependencyFilter(exprs=(ExprFilter(expr="s =~ '^ab+$'", fields_=fields[1:]),))
    assert passes(regex, None, event({"s": "abbb"})).passed
    assert not passes(regex, None, event({"s": "xabbb"})).passed


def test_an_expression_without_fields_takes_no_part() -> None:
    skipped = ExprFilter(expr="false")
    assert passes(EventDependencyFilter(exprs=(skipped,)), None, event({"a": 1})).passed
    in_or = EventDependencyFilter(exprs=(skipped,), expr_logical_operator="or")
    assert not passes(in_or, None, event({"a": 1})).passed


def test_or_groups_are_rejected_when_any_group_errs_even_if_another_passes() -> None:
    spec = EventDependencyFilter(
        context=EventContextFilter(source="webhook"),
        data=(DataFilter(path="missing", type="string", value=("x",)),),
    )
    result = passes(spec, "or", event({"a": 1}))
    assert not result.passed
    assert "missing" in result.reason
    fine = EventDependencyFilter(
        context=EventContextFilter(source="webhook"),
        data=(DataFilter(path="a", type="string", value=("nope",)),),
    )
    assert passes(fine, "or", event({"a": 1})).passed


def test_an_or_data_group_errs_only_when_no_entry_passes() -> None:
    spec = EventDependencyFilter(
        data=(
            DataFilter(path="missing", type="string", value=("x",)),
            DataFilter(path="a", type="number", value=("1",)),
        ),
        data_logical_operator="or",
    )
    assert passes(spec, None, event({"a": 1})).passed
    result = passes(spec, None, event({"a": 2}))
    assert not result.passed
    assert "does not exist" in result.reason


def test_and_is_the_default_for_any_other_operator_spelling() -> None:
    spec = EventDependencyFilter(
        context=EventContextFilter(source="webhook"),
        data=(DataFilter(path="a", type="string", value=("nope",)),),
    )
    for op in (None, "", "and", "OR", "xor"):
        assert not passes(spec, op, event({"a": 1})).passed
    assert passes(spec, "or", event({"a": 1})).passed


def test_context_filters_ignore_id_specversion_and_time() -> None:
    spec = EventDependencyFilter(context=EventContextFilter(id="other", specversion="0.3", time="never"))
    assert passes(spec, None, event({})).passed


def test_context_failure_names_the_attribute() -> None:
    result = passes(EventDependencyFilter(context=EventContextFilter(type="calendar")), None, event({}))
    assert not result.passed
    assert "type" in result.reason
    assert "calendar" in result.reason


def test_time_window_with_equal_start_and_stop_is_the_whole_day() -> None:
    spec = EventDependencyFilter(time=TimeFilter(start="10:00:00", stop="10:00:00"))
    for at in ("2024-05-01T10:00:00Z", "2024-05-01T09:59:59Z", "2024-05-01T00:00:00Z"):
        assert passes(spec, None, event({}, time=at)).passed


@pytest.mark.parametrize(
    ("spec", "at", "why"),
    [
        (TimeFilter(start="10:00", stop="11:00:00"), "2024-05-01T10:30:00Z", "cannot parse"),
        (TimeFilter(start="25:00:00", stop="11:00:00"), "2024-05-01T10:30:00Z", "out of range"),
        (TimeFilter(start="10:00:00", stop="11:00:00", timezone="Mars/Olym"), "2024-05-01T10:30:00Z", "zone"),
        (TimeFilter(start="10:00:00", stop="11:00:00"), "yesterday", "RFC 3339"),
    ],
)  # fmt: skip
def test_time_filter_errors_reject_with_a_reason(spec: TimeFilter, at: str, why: str) -> None:
    result = passes(EventDependencyFilter(time=spec), None, event({}, time=at))
    assert not result.passed
    assert why in result.reason


def test_single_digit_hours_are_accepted_as_go_parses_them() -> None:
    spec = EventDependencyFilter(time=TimeFilter(start="9:00:00", stop="17:00:00"))
    assert passes(spec, None, event({}, time="2024-05-01T09:30:00Z")).passed


def test_reasons_name_the_failing_group() -> None:
    spec = EventDependencyFilter(data=(DataFilter(path="a", type="number", value=("1",)),))
    result = passes(spec, None, event({"a": 2}))
    assert not result.passed
    assert result.reason.startswith("data filter")


def test_compiled_filters_are_reused_for_the_same_spec_object(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[EventDependencyFilter] = []

    def counting(spec: EventDependencyFilter, op: str | None = None) -> filters_module.CompiledFilters:
        calls.append(spec)
        return compile_filters(spec, op)

    monkeypatch.setattr(filters_module, "compile_filters", counting)
    first = data_filter(path="a", type="string", value=("x",))
    second = data_filter(path="a", type="string", value=("y",))
    for _ in range(5):
        assert passes(first, None, event({"a": "x"})).passed
        assert not passes(second, None, event({"a": "x"})).passed
    assert calls == [first, second]


def test_filtering_is_fast_enough_for_a_thousand_events_per_second(events_corpus: Path) -> None:
    dep = dependency(events_corpus, "filter-with-multiple-filters.yaml")
    events = [event({"a": "b", "c": 10, "d": {"e": False}, "n": i}, id=str(i)) for i in range(2000)]
    start = time.perf_counter()
    assert all(check(dep, ev) for ev in events)
    elapsed = time.perf_counter() - start
    # The whole sensor path must reach 1,000 events/s on two cores; filters may take a small part of it.
    assert elapsed < 1.0, f"2000 events took {elapsed:.2f}s"


def test_unforeseen_evaluator_errors_reject_the_event_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(data: Any, path: str) -> Any:
        raise IndexError("evaluator bug")

    monkeypatch.setattr("engine.events.filters.gjson.get", broken)
    result = passes(data_filter(path="a", type="string", value=("x",)), None, event({"a": "x"}))
    assert not result.passed
    assert "IndexError" in result.reason
