"""The expr-lang subset: literals, operators, member access, builtins, predicates, errors."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from engine.errors import ExprError
from engine.expr import Duration, Program, Time, compile_expr, evaluate

ENV: dict[str, Any] = {
    "inputs": {"parameters": {"foo": "4", "my-param": "x", "flag": "true", "list": '["a","b"]'}},
    "steps": {"my-step": {"outputs": {"result": "ok"}, "status": "Succeeded"}},
    "workflow": {"status": "Failed", "name": "wf", "creationTimestamp": "2024-05-06T07:08:09Z"},
    "lastRetry": {"exitCode": "2", "status": "Failed", "duration": "12", "message": "boom"},
    "items": [{"name": "a", "n": 1}, {"name": "b", "n": 5}, {"name": "c", "n": 3}],
    "nums": [3, 1, 2],
    "empty": [],
    "nothing": None,
    "tuple": (1, 2),
    "__now__": 1_700_000_000.25,
}


def ev(source: str, env: Mapping[str, Any] | None = None) -> Any:
    return evaluate(source, ENV if env is None else env)


LITERALS = [
    ("42", 42),
    ("0x2A", 42),
    ("0o52", 42),
    ("0b101010", 42),
    ("1_000", 1000),
    ("0.5", 0.5),
    (".5", 0.5),
    ("1e3", 1000.0),
    ("2.5e-1", 0.25),
    ("'single'", "single"),
    ('"double"', "double"),
    ('"tab\\tnew\\nline"', "tab\tnew\nline"),
    ('"\\u00e9\\x41"', "éA"),
    ("`raw \\n`", "raw \\n"),
    ("true", True),
    ("false", False),
    ("nil", None),
    ("[1, 'a', nil]", [1, "a", None]),
    ("[1, 2,]", [1, 2]),
    ("{a: 1, 'b-c': 2, \"d\": 3, 4: 5}", {"a": 1, "b-c": 2, "d": 3, "4": 5}),
    ("{(1 + 1): 'two'}", {"2": "two"}),
    ("{}", {}),
    ("-9223372036854775808", -(2**63)),
    ("1 /* comment */ + // line\n 2", 3),
]


@pytest.mark.parametrize(("source", "expected"), LITERALS)
def test_literals(source: str, expected: Any) -> None:
    assert ev(source) == expected


ARITHMETIC = [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 / 2", 3.5),
    ("6 / 3", 2.0),
    ("7 % 3", 1),
    ("-7 % 3", -1),
    ("2 ** 10", 1024.0),
    ("2 ^ 3", 8.0),
    ("2 ** 3 ** 2", 512.0),
    ("-2 ** 2", -4.0),
    ("-(3)", -3),
    ("+3", 3),
    ("1 + 2.5", 3.5),
    ("10 - 2 - 3", 5),
    ("'a' + 'b'", "ab"),
    ("1..4", [1, 2, 3, 4]),
    ("3..1", []),
    ("1 / 0", math.inf),
    ("-1 / 0", -math.inf),
]


@pytest.mark.parametrize(("source", "expected"), ARITHMETIC)
def test_arithmetic_follows_expr_lang(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


COMPARISONS = [
    ("1 == 1.0", True),
    ("1 != 2", True),
    ("'a' < 'b'", True),
    ("2 >= 2", True),
    ("1 < 2 < 3", True),
    ("3 > 2 > 2", False),
    ("nil == nil", True),
    ("nothing == nil", True),
    ("1 == '1'", False),
    ("[1, 2] == [1, 2]", True),
    ("{a: 1} == {a: 1}", True),
    ("true && false", False),
    ("true and true", True),
    ("false || true", True),
    ("false or false", False),
    ("!true", False),
    ("not false", True),
    ("not true == false", True),
    ("'a' in ['a', 'b']", True),
    ("'z' not in ['a', 'b']", True),
    ("'foo' in {foo: 1}", True),
    ("2 in tuple", True),
    ("'abc' contains 'b'", True),
    ("'abc' not contains 'z'", True),
    ("'abc' startsWith 'ab'", True),
    ("'abc' endsWith 'bc'", True),
    ("'abc' matches '^a.c$'", True),
    ("'abc' not matches '^b'", True),
    ("true ? 'y' : 'n'", "y"),
    ("false ? 'y' : 1 > 0 ? 'm' : 'n'", "m"),
    ("nil ?: 'elvis'", "elvis"),
    ("nil ?? 'fallback'", "fallback"),
    ("0 ?? 'fallback'", 0),
    ("false && (1 / 0 > 'x')", False),
]


@pytest.mark.parametrize(("source", "expected"), COMPARISONS)
def test_comparison_logic_and_membership(source: str, expected: Any) -> None:
    assert ev(source) == expected


MEMBERS = [
    ("inputs.parameters.foo", "4"),
    ("inputs.parameters['my-param']", "x"),
    ('inputs.parameters["my-param"]', "x"),
    ("steps['my-step'].outputs.result", "ok"),
    ("steps['my-step'].status == 'Succeeded'", True),
    ("inputs.parameters.missing", None),
    ("unknown_identifier", None),
    ("nothing?.field", None),
    ("nothing?.a.b.c", None),
    ("nothing?.['k']", None),
    ("unknown?.x ?? 'd'", "d"),
    ("items[0].name", "a"),
    ("items[-1].name", "c"),
    ("nums[1:]", [1, 2]),
    ("nums[:2]", [3, 1]),
    ("nums[-2:]", [1, 2]),
    ("nums[5:9]", []),
    ("'hello'[1:3]", "el"),
    ("'hello'[-1]", "o"),
    ("$env.workflow.name", "wf"),
    ("'workflow' in $env", True),
]


@pytest.mark.parametrize(("source", "expected"), MEMBERS)
def test_member_access_indexing_and_slicing(source: str, expected: Any) -> None:
    assert ev(source) == expected


BUILTINS = [
    ("len('héllo')", 5),
    ("len(nums)", 3),
    ("len({a: 1})", 1),
    ("abs(-3)", 3),
    ("abs(-2.5)", 2.5),
    ("int('42')", 42),
    ("int(3.9)", 3),
    ("float('1.5')", 1.5),
    ("asInt('42')", 42),
    ("asInt(inputs.parameters.foo) * 10", 40),
    ("asFloat('2.5') * 2", 5.0),
    ("string(1)", "1"),
    ("string(1.5)", "1.5"),
    ("string(1e6)", "1e+06"),
    ("string([1, 'a'])", "[1 a]"),
    ("string({b: 1, a: true})", "map[a:true b:1]"),
    ("string(nil)", "<nil>"),
    ("toJson({b: [1, 2.0], a: 'x<y'})", '{"a":"x\\u003cy","b":[1,2]}'),
    ("toJSON([true, nil])", "[true,null]"),
    ("fromJson('{\"a\": [1, 2]}').a[1]", 2),
    ("fromJSON(inputs.parameters.list)", ["a", "b"]),
    ("type(1)", "int"),
    ("type(1.0)", "float"),
    ("type('s')", "string"),
    ("type(nums)", "array"),
    ("type({})", "map"),
    ("type(nil)", "nil"),
    ("trim('  x  ')", "x"),
    ("trim('__x__', '_')", "x"),
    ("trimPrefix('v1.2', 'v')", "1.2"),
    ("trimSuffix('a.yaml', '.yaml')", "a"),
    ("upper('abc')", "ABC"),
    ("lower('ABC')", "abc"),
    ("split('a,b,c', ',')", ["a", "b", "c"]),
    ("split('a,b,c', ',', 2)", ["a", "b,c"]),
    ("splitAfter('a,b', ',')", ["a,", "b"]),
    ("replace('aaa', 'a', 'b')", "bbb"),
    ("repeat('ab', 3)", "ababab"),
    ("indexOf('apple pie', 'pie')", 6),
    ("lastIndexOf('abab', 'ab')", 2),
    ("hasPrefix('abc', 'a')", True),
    ("hasSuffix('abc', 'c')", True),
    ("join(['a', 'b'], '-')", "a-b"),
    ("join(['a', 'b'])", "ab"),
    ("keys({b: 1, a: 2})", ["a", "b"]),
    ("values({b: 1, a: 2})", [2, 1]),
    ("toPairs({a: 1})", [["a", 1]]),
    ("fromPairs([['a', 1]])", {"a": 1}),
    ("max(1, 5, 3)", 5),
    ("max(nums)", 3),
    ("min(2.5, 1)", 1),
    ("sum([1, 2, 3])", 6),
    ("sum([1, 2.5])", 3.5),
    ("mean([1, 2, 3])", 2.0),
    ("median([3, 1, 2])", 2.0),
    ("ceil(1.2)", 2.0),
    ("floor(1.8)", 1.0),
    ("round(2.5)", 3.0),
    ("round(-2.5)", -3.0),
    ("first(nums)", 3),
    ("last(nums)", 2),
    ("first(empty)", None),
    ("take(nums, 2)", [3, 1]),
    ("reverse(nums)", [2, 1, 3]),
    ("sort(nums)", [1, 2, 3]),
    ("sort(nums, 'desc')", [3, 2, 1]),
    ("uniq([1, 1, 2])", [1, 2]),
    ("concat([1], [2, 3])", [1, 2, 3]),
    ("flatten([1, [2, [3]]])", [1, 2, 3]),
    ("get(nums, 10)", None),
    ("get({a: 1}, 'a')", 1),
    ("toBase64('hi')", "aGk="),
    ("fromBase64('aGk=')", "hi"),
    ("bitand(12, 10)", 8),
    ("bitor(12, 10)", 14),
    ("bitxor(12, 10)", 6),
    ("bitnot(10)", -11),
    ("bitshl(1, 3)", 8),
    ("bitshr(16, 2)", 4),
    ("'a b' | upper() | split(' ')", ["A", "B"]),
    ("nums | sort() | first()", 1),
]


@pytest.mark.parametrize(("source", "expected"), BUILTINS)
def test_builtin_functions(source: str, expected: Any) -> None:
    assert ev(source) == expected


PREDICATES = [
    ("filter([1, 2, 3], {# > 1})", [2, 3]),
    ("filter([1, 2, 3], # > 1)", [2, 3]),
    ("map([1, 2], {# * 2})", [2, 4]),
    ("map(items, .name)", ["a", "b", "c"]),
    ("map(items, #.n)", [1, 5, 3]),
    ("map(items, #index)", [0, 1, 2]),
    ("map([[1, 2], [3, 4]], {#[0] + #[1]})", [3, 7]),
    ("all(nums, {# > 0})", True),
    ("any(nums, {# > 2})", True),
    ("none(nums, {# > 5})", True),
    ("one(nums, {# == 1})", True),
    ("count(nums, {# > 1})", 2),
    ("count([true, false, true])", 2),
    ("sum(items, .n)", 9),
    ("find(items, .n > 1).name", "b"),
    ("findIndex(nums, # == 2)", 2),
    ("findLast(nums, # < 3)", 2),
    ("findLastIndex(nums, # == 9)", -1),
    (
        "groupBy(items, .n > 2)",
        {"false": [{"name": "a", "n": 1}], "true": [{"name": "b", "n": 5}, {"name": "c", "n": 3}]},
    ),
    ("sortBy(items, .n)[2].name", "b"),
    ("sortBy(items, .n, 'desc')[0].name", "b"),
    ("reduce(1..4, #acc + #)", 10),
    ("reduce(1..4, #acc + #, 10)", 20),
    ("filter(1..10, # % 2 == 0) | map(# * 10)", [20, 40, 60, 80, 100]),
    ("map(filter(items, .n > 1), {map(1..2, {# * 10})})", [[10, 20], [10, 20]]),
    ("filter(nothing, # > 1)", []),
    ("map([[1, 2]], {toJson({s: sprig.add(#[0], #[1])})})[0]", '{"s":3}'),
]


@pytest.mark.parametrize(("source", "expected"), PREDICATES)
def test_predicate_builtins(source: str, expected: Any) -> None:
    assert ev(source) == expected


ARGO_DOC_EXPRESSIONS = [
    # docs/variables.md and docs/retries.md examples
    ("[1, 2]", [1, 2]),
    ("filter([1, 2], { # > 1})", [2]),
    ("map([1, 2], { # * 2 })", [2, 4]),
    ("asInt(inputs.parameters.foo)", 4),
    ("asFloat(inputs.parameters.foo)", 4.0),
    ("string(1)", "1"),
    ("toJson([1, 2])", "[1,2]"),
    ("jsonpath('{\"a\": {\"b\": 1}}', '$.a.b')", 1),
    ("sprig.trim('  c  ')", "c"),
    ("workflow.status == 'Failed'", True),
    ("steps['my-step'].status == 'Succeeded'", True),
    ("asInt(lastRetry.exitCode) > 1", True),
    ("lastRetry.status == 'Error' or asInt(lastRetry.duration) < 60", True),
    ("lastRetry.message matches 'bo+m'", True),
    ("inputs.parameters.flag == 'true' ? 'yes' : 'no'", "yes"),
]


@pytest.mark.parametrize(("source", "expected"), ARGO_DOC_EXPRESSIONS)
def test_expressions_from_argo_documentation(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_time_values_support_go_methods() -> None:
    assert ev("now().Year()") == 2023
    assert ev("now().Unix()") == 1_700_000_000
    assert ev("now().Format('2006-01-02T15:04:05.000Z07:00')") == "2023-11-14T22:13:20.250Z"
    assert ev("(now() - date('2023-11-14T22:13:00Z')).Seconds()") == 20.25
    assert ev("(now() - workflow.creationTimestamp).Hours() < 0")
    assert ev("duration('1h30m').Minutes()") == 90.0
    assert ev("string(duration('90s'))") == "1m30s"
    assert ev("now() > date('2020-01-01')")
    assert ev("(now() + duration('1h')).Hour()") == 23
    assert ev("date('2024-01-31').AddDate(0, 1, 0).Format('2006-01-02')") == "2024-03-02"
    assert isinstance(ev("now()"), Time)
    assert ev("duration('2s') * 3") == Duration(6_000_000_000)


def test_cron_when_expression_from_argo_examples() -> None:
    source = (
        "cronworkflow.lastScheduledTime == nil || (now() - cronworkflow.lastScheduledTime).Seconds() > 360"
    )
    assert ev(source, {"cronworkflow": {"lastScheduledTime": None}, "__now__": 1000.0}) is True
    recent = {"cronworkflow": {"lastScheduledTime": "1970-01-01T00:15:00Z"}, "__now__": 1000.0}
    assert ev(source, recent) is False
    old = {"cronworkflow": {"lastScheduledTime": Time.from_epoch(0)}, "__now__": 1000.0}
    assert ev(source, old) is True


def test_now_without_a_supplied_clock_is_an_error() -> None:
    with pytest.raises(ExprError, match="current time"):
        evaluate("now()", {})


class LazyMapping(Mapping[str, Any]):
    """A mapping that computes values on access, like the workflow core's scopes."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.reads.append(key)
        if key == "inputs":
            return LazyMapping()
        if key in ("parameters", "x"):
            return {"x": "5"} if key == "parameters" else "5"
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["inputs"])

    def __len__(self) -> int:
        return 1


def test_any_mapping_is_a_map_and_is_read_lazily() -> None:
    env = LazyMapping()
    assert evaluate("asInt(inputs.parameters.x) + 1", env) == 6
    assert evaluate("missing", env) is None
    assert env.reads[0] == "inputs"


def test_compiled_programs_are_cached_and_reusable() -> None:
    program = compile_expr("a + 1")
    assert compile_expr("a + 1") is program
    assert isinstance(program, Program)
    assert program.source == "a + 1"
    assert program.run({"a": 1}) == 2
    assert program.run({"a": 41}) == 42
    assert compile_expr("inputs.parameters.x ?? steps.y").names == frozenset({"inputs", "steps"})


ERRORS = [
    ("1 +", "unexpected end"),
    ("(1 + 2", "parenthesis"),
    ("[1, 2", "unexpected end"),
    ("1 2", "unexpected token"),
    ("'unterminated", "not terminated"),
    ("nosuch(1)", "unknown function"),
    ("sprig.nosuch(1)", "unknown sprig function"),
    ("#", "outside predicate"),
    ("a ?? b || c", "cannot be mixed"),
    ("inputs.parameters.my-param", "invalid operation"),
    ("1 + 'a'", "mismatched types int and string"),
    ("'a' - 1", "mismatched types"),
    ("1 && true", "needs a bool"),
    ("!1", "needs a bool"),
    ("1 ? 2 : 3", "needs a bool"),
    ("nothing.field", "cannot fetch field from nil"),
    ("nums[10]", "index out of range"),
    ("nums['a']", "cannot index array"),
    ("{a: 1}[1]", "map key"),
    ("1 % 0", "divide by zero"),
    ("1.5 % 1", "mismatched types"),
    ("'a' < 1", "mismatched types"),
    ("int('4.5')", "invalid syntax"),
    ("int(' 4')", "invalid syntax"),
    ("float('1_0')", "invalid syntax"),
    ("'a' matches '('", "error parsing regexp"),
    ("len(1)", "invalid argument for len"),
    ("upper(1)", "expects a string"),
    ("filter(1, # > 0)", "expects an array"),
    ("filter([1], # + 1)", "must return a bool"),
    ("reduce([], #acc)", "empty array"),
    ("duration('1x')", "unknown unit"),
    ("date('yesterday')", "cannot parse"),
    ("now().Bogus()", "no method Bogus"),
    ("'x'.Year()", "no method Year"),
    ("9223372036854775807 + 1", "integer overflow"),
    ("9223372036854775808", "out of range"),
    ("", "empty expression"),
    ("a.b.c(", "unexpected end"),
    ("{a 1}", "expected ':'"),
    ("1 in 'abc'", "operator 'in' not defined"),
    ("toJson(1 / 0)", "unsupported value"),
]


@pytest.mark.parametrize(("source", "fragment"), ERRORS)
def test_invalid_expressions_raise_expr_error(source: str, fragment: str) -> None:
    with pytest.raises(ExprError, match=fragment.replace("(", r"\(").replace("?", r"\?").replace("|", r"\|")):
        ev(source)


def test_errors_name_the_expression() -> None:
    with pytest.raises(ExprError) as info:
        ev("1 + 'a'")
    assert "1 + 'a'" in str(info.value)
    assert info.value.expression == "1 + 'a'"


def test_environment_must_be_a_mapping() -> None:
    with pytest.raises(ExprError, match="mapping"):
        compile_expr("1").run([])  # type: ignore[arg-type]
