"""Property tests: arbitrary input raises nothing but ExprError, finishes quickly, and data stays data."""

from __future__ import annotations

import math
import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ExprError
from engine.expr import compile_expr, evaluate, evaluate_when, find_tags, parse_depends, substitute
from engine.expr.encoding import go_float, json_float
from engine.expr.regex import compile_regex

# SLUICE_FUZZ_EXAMPLES raises the example count for a longer local or nightly fuzzing run.
FUZZ = settings(
    max_examples=int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "300")),
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)

# Text biased towards the characters the grammars care about.
SYNTAX = st.text(
    alphabet=st.sampled_from(list("{}=[]()'\"`#.?:!&|<>+-*/%^,;$@ _\\\n\t") + list("ab1")), max_size=60
)
ANY_TEXT = st.one_of(st.text(max_size=80), SYNTAX)

EXPR_TOKENS = [
    "1", "2.5", "'s'", '"t"', "nil", "true", "false", "a", "b", "items", "#", "#index", ".name", "(", ")",
    "[", "]", "{", "}", ",", ":", "?", "??", "?.", ".", "..", "+", "-", "*", "/", "%", "**", "==", "!=", "<",
    ">=", "&&", "||", "!", "not", "in", "matches", "contains", "startsWith", "|", "len", "filter", "map",
    "all", "sprig.add", "sprig.upper", "toJson", "fromJson", "asInt", "jsonpath", "now", "duration",
    "split", "repeat", "1..3", "'^a+$'", "'$.x'",
]  # fmt: skip
EXPR_SOUP = st.lists(st.sampled_from(EXPR_TOKENS), max_size=25).map(" ".join)

WHEN_TOKENS = [
    "heads", "tails", "1", "2.5", "'q'", '"d"', "true", "false", "==", "!=", "<", ">=", "&&", "||", "!", "(",
    ")", "=~", "!~", "in", ",", "+", "-", "*", "/", "%", "**", "?", ":", "??", "[x y]", "'2024-01-01'", "-",
]  # fmt: skip
WHEN_SOUP = st.lists(st.sampled_from(WHEN_TOKENS), max_size=25).map(" ".join)

DEPENDS_TOKENS = [
    "A",
    "b-c",
    "d_1",
    "A.Succeeded",
    "b-c.Failed",
    "x.AllFailed",
    "&&",
    "||",
    "!",
    "(",
    ")",
    "and",
    "not",
]
DEPENDS_SOUP = st.lists(st.sampled_from(DEPENDS_TOKENS), max_size=20).map(" ".join)

ENV: dict[str, Any] = {
    "a": 1,
    "b": "text",
    "items": [{"name": "x"}, {"name": "y"}],
    "inputs": {"parameters": {"p": "5"}},
    "__now__": 1_700_000_000.0,
}

JSON_DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)  # beyond that JSON numbers are float64, as in Go
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def only_expr_errors(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except ExprError:
        return None


@FUZZ
@given(ANY_TEXT)
def test_find_tags_never_fails_and_returns_ordered_disjoint_spans(text: str) -> None:
    tags = find_tags(text)
    end = 0
    for tag in tags:
        assert end <= tag.start < tag.end <= len(text)
        assert text.startswith("{{", tag.start)
        assert text.endswith("}}", 0, tag.end)
        end = tag.end
    if "{{" not in text:
        assert tags == []


@FUZZ
@given(ANY_TEXT, st.booleans())
def test_substitute_raises_only_expr_error(text: str, keep: bool) -> None:
    def resolve(name: str) -> str:
        if len(name) % 2:
            raise KeyError(name)
        return name.upper()

    result = only_expr_errors(lambda: substitute(text, resolve, env=ENV, keep_unresolved=keep))
    if keep:
        assert isinstance(result, str)


@FUZZ
@given(st.one_of(ANY_TEXT, EXPR_SOUP))
def test_compile_and_run_raise_only_expr_error(source: str) -> None:
    try:
        program = compile_expr(source)
    except ExprError:
        return
    only_expr_errors(program.run, ENV)


@FUZZ
@given(st.one_of(ANY_TEXT, WHEN_SOUP))
def test_evaluate_when_raises_only_expr_error_and_returns_bool(text: str) -> None:
    result = only_expr_errors(evaluate_when, text)
    assert result is None or isinstance(result, bool)


@FUZZ
@given(st.one_of(ANY_TEXT, DEPENDS_SOUP))
def test_parse_depends_raises_only_expr_error(text: str) -> None:
    dep = only_expr_errors(parse_depends, text)
    if dep is not None:
        names = dep.task_names()
        assert dep.evaluate(lambda task, result: task in names and result != "Failed") in (True, False)


@FUZZ
@given(SYNTAX, st.text(max_size=40))
def test_regex_compile_and_match_raise_only_expr_error(pattern: str, subject: str) -> None:
    try:
        regex = compile_regex(pattern)
    except ExprError:
        return
    only_expr_errors(regex.matches, subject)


@FUZZ
@given(st.text(max_size=200))
def test_substituted_values_are_never_rescanned(value: str) -> None:
    values = {"inputs.parameters.v": value}
    env = {"inputs": {"parameters": {"v": value}}}
    assert substitute("<{{inputs.parameters.v}}>", values.__getitem__) == f"<{value}>"
    assert substitute("<{{= inputs.parameters.v }}>", values.__getitem__, env=env) == f"<{value}>"
    assert (
        substitute("<{{inputs.parameters.v}}>", values.__getitem__, env=env, keep_unresolved=True)
        == f"<{value}>"
    )


@FUZZ
@given(JSON_DATA)
def test_to_json_and_from_json_round_trip(data: Any) -> None:
    assert evaluate("fromJson(toJson(v)) == v", {"v": data}) is True


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_go_float_spellings_round_trip(value: float) -> None:
    assert float(go_float(value)) == value
    assert float(json_float(value)) == value
    assert not math.isnan(float(go_float(value)))


@FUZZ
@given(st.text(max_size=30), st.text(max_size=30))
def test_string_operators_agree_with_python(x: str, y: str) -> None:
    env = {"x": x, "y": y}
    assert evaluate("x + y", env) == x + y
    assert evaluate("x contains y", env) == (y in x)
    assert evaluate("x startsWith y", env) == x.startswith(y)
    assert evaluate("x == y", env) == (x == y)
    assert evaluate("x < y", env) == (x < y)


@FUZZ
@given(st.integers(min_value=-(2**40), max_value=2**40), st.integers(min_value=-(2**20), max_value=2**20))
def test_integer_arithmetic_matches_go(a: int, b: int) -> None:
    env = {"a": a, "b": b}
    assert evaluate("a + b", env) == a + b
    assert evaluate("a * b", env) == a * b
    if b:
        go_remainder = int(math.fmod(a, b))
        assert evaluate("a % b", env) == go_remainder
        assert evaluate("a / b", env) == a / b
