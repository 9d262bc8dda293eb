"""Sandboxing and resource bounds: hostile expressions end quickly with ExprError."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import pytest

from engine.errors import ExprError
from engine.expr import compile_expr, evaluate
from engine.expr.limits import MAX_RANGE, MAX_SOURCE, MAX_STRING


def finishes_quickly(source: str, env: dict[str, Any] | None = None, limit: float = 3.0) -> Any:
    started = time.perf_counter()
    try:
        return evaluate(source, env or {})
    finally:
        assert time.perf_counter() - started < limit, f"{source!r} took too long"


def test_deep_nesting_is_rejected() -> None:
    for source in ["(" * 100 + "1" + ")" * 100, "[" * 100 + "]" * 100, "-" * 100 + "1", "!" * 100 + "true"]:
        with pytest.raises(ExprError, match="too deeply nested"):
            compile_expr(source)


def test_long_operator_chains_are_rejected_before_they_overflow_the_stack() -> None:
    with pytest.raises(ExprError, match="too deeply nested"):
        compile_expr(" + ".join(["1"] * 5000))
    with pytest.raises(ExprError, match="too deeply nested"):
        compile_expr("a" + ".b" * 5000)
    assert evaluate(" + ".join(["1"] * 100), {}) == 100


def test_expression_length_is_limited() -> None:
    with pytest.raises(ExprError, match="too long"):
        compile_expr("1" * (MAX_SOURCE + 1))


def test_range_length_is_limited() -> None:
    assert len(finishes_quickly(f"1..{MAX_RANGE}")) == MAX_RANGE
    with pytest.raises(ExprError, match="more than"):
        evaluate(f"0..{MAX_RANGE}", {})
    with pytest.raises(ExprError, match="more than"):
        evaluate("1..9223372036854775807", {})


def test_exponent_towers_saturate_instead_of_hanging() -> None:
    assert finishes_quickly("9 ** 9 ** 9") == math.inf
    assert finishes_quickly("2 ** 100000") == math.inf
    assert finishes_quickly("(-8) ** (1.0 / 3)") != finishes_quickly("(-8) ** (1.0 / 3)")  # NaN


def test_integer_overflow_is_an_error_not_a_bignum() -> None:
    with pytest.raises(ExprError, match="overflow"):
        evaluate("9223372036854775807 * 9223372036854775807", {})
    with pytest.raises(ExprError, match="overflow"):
        evaluate("reduce(1..100, #acc * 1000, 1)", {})


def test_string_growth_is_bounded() -> None:
    with pytest.raises(ExprError, match="too large"):
        finishes_quickly(f"repeat('x', {MAX_STRING + 1})")
    with pytest.raises(ExprError, match=r"too large|work budget"):
        finishes_quickly("reduce(1..64, #acc + #acc, 'xx')")
    with pytest.raises(ExprError, match=r"too large|work budget"):
        finishes_quickly("replace(repeat('a', 100000), 'a', repeat('b', 1000))")


def test_nested_iteration_exhausts_the_work_budget() -> None:
    with pytest.raises(ExprError, match="work budget"):
        finishes_quickly("map(1..100000, {map(1..100000, {#})})")
    with pytest.raises(ExprError, match="work budget"):
        finishes_quickly("[1..1000000, 1..1000000, 1..1000000, 1..1000000]")
    with pytest.raises(ExprError, match="work budget"):
        finishes_quickly("count(1..1000000, {len(1..1000) > 0})")


def test_regex_in_expressions_cannot_hang() -> None:
    env = {"s": "a" * 50_000 + "!"}
    started = time.perf_counter()
    try:
        assert evaluate("s matches '^(a+)+$'", env) is False
    except ExprError as exc:
        assert "too costly" in str(exc)
    assert time.perf_counter() - started < 3.0


@dataclass
class Secretive:
    password: str = "hunter2"

    def __getitem__(self, key: str) -> str:
        return self.password


@pytest.mark.parametrize(
    "source",
    [
        "obj.password",
        "obj['password']",
        "obj.__class__",
        "obj.__dict__",
        "string(obj)",
        "toJson(obj)",
        "obj.password()",
        "len(obj)",
    ],
)
def test_python_objects_in_the_environment_are_never_introspected(source: str) -> None:
    with pytest.raises(ExprError) as info:
        evaluate(source, {"obj": Secretive()})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('id')",
        "''.__class__.__mro__[1].__subclasses__()",
        "open('/etc/passwd')",
        "eval('1')",
        "exec('x = 1')",
        "getattr(x, 'y')",
        "'abc'.upper()",
        "sprig.env('HOME')",
        "sprig.expandenv('$HOME')",
    ],
)
def test_python_escape_hatches_do_not_exist(source: str) -> None:
    with pytest.raises(ExprError):
        evaluate(source, {"x": {"y": 1}})


def test_dunder_names_are_just_missing_keys() -> None:
    assert evaluate("__builtins__", {}) is None
    assert evaluate("x.__class__ ?? 'none'", {"x": {}}) == "none"


def test_self_referential_data_is_bounded() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ExprError, match="too deeply"):
        evaluate("toJson(x)", {"x": loop})
    with pytest.raises(ExprError, match="too deeply"):
        evaluate("string(x)", {"x": loop})
    with pytest.raises(ExprError, match="too deeply"):
        evaluate("x == x", {"x": loop})


def test_unexpected_python_errors_become_expr_errors() -> None:
    class Broken(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise ValueError("boom")

    with pytest.raises(ExprError, match="boom"):
        evaluate("x.y", {"x": Broken()})


def test_many_large_strings_exhaust_the_budget_before_memory() -> None:
    with pytest.raises(ExprError, match="work budget"):
        finishes_quickly("map(1..1000, {repeat('x', 4000000)})")


def test_uniq_of_a_large_list_is_linear() -> None:
    assert len(finishes_quickly("uniq(map(1..500000, {# % 1000}))")) == 1000
    assert finishes_quickly("uniq([1, 1.0, true, '1', nil, nil, {a: 1}, {a: 1}])") == [
        1,
        True,
        "1",
        None,
        {"a": 1},
    ]
