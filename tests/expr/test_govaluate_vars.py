"""govaluate with variables, as Argo Events' expression filters use it: names bound from event fields."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ExprError
from engine.expr import (
    check_govaluate,
    evaluate_govaluate,
    evaluate_govaluate_bool,
    evaluate_when,
    gjson_get,
)
from tests.conformance.run import EVENTS_CORPUS_MISSING, events_sensors_dir

EVENT = {"a": "b", "c": 10, "e": False, "s": "xyz-42", "f": 2.5, "n": None, "l": [1, "two"], "m": {"k": 1}}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('a == "b"', True),
        ('a == "b" && c != 10', False),
        ('a == "x" || c == 10', True),
        ("c == 10", True),
        ("c == 10.0", True),
        ("c > 9.5 && c <= 10", True),
        ('c == "10"', False),  # no conversion between strings and numbers
        ("e == false", True),
        ("!e", True),
        ('s =~ "^xyz-[0-9]+$"', True),
        ('s !~ "^abc"', True),
        ("c + f", 12.5),
        ('a + "!"', "b!"),
        ("c * 2 - 1", 19.0),
        ("c % 3", 1.0),
        ("c in (1, 10, 100)", True),
        ('a in ("x", "y")', False),
        ("n == nil_is_not_a_keyword || true", True),
        ('c > 5 ? "big" : "small"', "big"),
        ("[a] == 'b'", True),
        ('"two" in l', True),
        ("l == l", True),
        ("m == m", True),
    ],
)
def test_bare_words_are_variables_bound_from_parameters(expr: str, expected: Any) -> None:
    params = dict(EVENT, nil_is_not_a_keyword=False)
    assert evaluate_govaluate(expr, params) == expected


def test_numbers_compare_as_float64_whatever_python_type_they_arrive_as() -> None:
    assert evaluate_govaluate_bool("x == 3", {"x": 3})
    assert evaluate_govaluate_bool("x == 3", {"x": 3.0})
    assert evaluate_govaluate_bool("x < 2.5", {"x": 2})
    assert evaluate_govaluate("x", {"x": [1, {"y": 2}]}) == [1.0, {"y": 2.0}]


def test_bracketed_names_may_hold_characters_govaluate_would_read_as_operators() -> None:
    assert evaluate_govaluate_bool("[a-longer-name] == 10", {"a-longer-name": 10})
    # Unbracketed, the hyphens are subtraction of three variables.
    with pytest.raises(ExprError, match="No parameter 'longer' found"):
        evaluate_govaluate("a-longer-name == 10", {"a": 1, "name": 1})


@pytest.mark.parametrize(
    ("expr", "params", "message"),
    [
        ("x == 1", {}, "No parameter 'x' found."),
        ("a.b == 1", {"a": {"b": 1}}, "Unable to access 'b', 'a' is not a struct"),
        ("a.b == 1", {}, "No parameter 'a' found."),
        ("m > 1", {"m": {"k": 1}}, "Value 'map[k:1]' cannot be used with the comparator '>'"),
        ("s > 1", {"s": "x"}, "cannot be used with the comparator '>'"),
        ("f(1)", {"f": 1}, "Cannot transition token types"),
        ("a ==", {"a": 1}, "Unexpected end of expression"),
        ("", {}, "Unexpected end of expression"),
        ("(a", {"a": 1}, "Unbalanced parenthesis"),
        ('s =~ "("', {"s": "x"}, "Unable to compile regexp pattern"),
    ],
)
def test_errors_use_govaluate_wording(expr: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ExprError, match=re.escape(message)):
        evaluate_govaluate(expr, params)


def test_check_reports_syntax_errors_without_any_parameters() -> None:
    check_govaluate('a == "b" && [c-d] != 10 || e =~ "^x"')
    for bad in ("a ==", "(a", "a $ b", "f(1)", "", "a."):
        with pytest.raises(ExprError, match="Invalid expression"):
            check_govaluate(bad)


def test_unbound_name_on_the_short_circuited_side_is_not_evaluated() -> None:
    assert evaluate_govaluate("false && missing", {}) is False
    assert evaluate_govaluate("true || missing", {}) is True


def test_bool_variant_is_true_only_for_a_true_result() -> None:
    assert evaluate_govaluate_bool("c", {"c": True})
    assert not evaluate_govaluate_bool("c", {"c": 1})
    assert not evaluate_govaluate_bool("c", {"c": "true"})


def test_when_still_reads_bare_words_as_strings() -> None:
    assert evaluate_when("heads == heads")
    assert evaluate_govaluate("heads == tails", {"heads": 1, "tails": 1}) is True
    with pytest.raises(ExprError, match="No parameter 'heads' found"):
        evaluate_govaluate("heads == heads", {})


# --- the corpus: expression filters with the payload their comments give ----------------------------


def _expr_filter_cases() -> list[tuple[str, str, dict[str, str], Any, bool]]:
    """(file, expr, name -> path, payload, expected) for every annotated expr filter in the corpus."""
    cases: list[tuple[str, str, dict[str, str], Any, bool]] = []
    sensors = events_sensors_dir()
    for file in sorted(sensors.glob("*.yaml")) if sensors.is_dir() else []:
        text = file.read_text()
        header = re.match(r"# Event Payload\n((?:#.*\n)+)", text)
        if header is None or "exprs:" not in text:
            continue
        payload = json.loads("\n".join(line[1:] for line in header.group(1).splitlines()))
        expected = {
            m.group(1).strip(): m.group(2) == "true"
            for m in re.finditer(r"- expr: (.*?)\s+#\s*(true|FALSE)\b", text)
        }
        for doc in yaml.safe_load_all(text):
            for dep in (doc or {}).get("spec", {}).get("dependencies", []):
                for item in (dep.get("filters") or {}).get("exprs", []):
                    fields = {f["name"]: f["path"] for f in item["fields"]}
                    cases.append((file.name, item["expr"], fields, payload, expected[item["expr"]]))
    return cases


CASES = _expr_filter_cases()

# Annotations in Argo's examples that contradict govaluate: the payload has "a": "b", so the left side
# of this "||" alone is true (the file's "or" makes the event pass either way).
MISLABELLED = {("filter-with-multiple-expr-filters-in-or.yaml", 'a == "b" || c != 10')}


@pytest.mark.skipif(not CASES, reason=EVENTS_CORPUS_MISSING)
@pytest.mark.parametrize(("file", "expr", "fields", "payload", "expected"), CASES)
def test_corpus_expression_filters_give_their_annotated_result(
    file: str, expr: str, fields: dict[str, str], payload: Any, expected: bool
) -> None:
    params = {name: gjson_get(payload, path) for name, path in fields.items()}
    if (file, expr) in MISLABELLED:
        expected = not expected
    assert evaluate_govaluate_bool(expr, params) is expected


# --- hostile input -------------------------------------------------------------------------------

TOKENS = ["a", "b", "c", "[a]", "1", "2.5", '"s"', "'t'", "true", "(", ")", "==", "!=", "<", "&&", "||"]
TOKENS += ["!", "-", "+", "*", "/", "%", "**", "=~", "in", ",", "?", ":", "??", "a.b", "[", "]", "~", "^"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(TOKENS), max_size=20).map(" ".join),
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    ),
)
def test_random_expressions_raise_nothing_but_expr_error(text: str, params: dict[str, Any]) -> None:
    with contextlib.suppress(ExprError):
        evaluate_govaluate(text, params)
