"""DAG ``depends`` conditions."""

from __future__ import annotations

import pytest

from engine.errors import ExprError
from engine.expr import Depends, parse_depends

# Task states for the table below: (task, result) pairs that hold. A bare name holds when the task
# Succeeded/Skipped/Daemoned, as Argo expands it.
STATE = {
    "A": {"Succeeded"},
    "B": {"Failed"},
    "C": {"Succeeded"},
    "should-execute-2": {"Succeeded"},
    "should-not-execute": {"Skipped"},
    "loop": {"AnySucceeded"},
    "inner_A": {"Omitted"},
}


def status_of(task: str, result: str | None) -> bool:
    held = STATE.get(task, set())
    if result is None:
        return bool(held & {"Succeeded", "Skipped", "Daemoned"})
    return result in held


CASES = [
    ("A", True),
    ("B", False),
    ("A && C", True),
    ("A && B", False),
    ("B || C", True),
    ("B.Failed && C", True),
    ("A && (C.Succeeded || C.Failed)", True),
    ("should-execute-2.Succeeded || should-not-execute", True),
    ("!B.Succeeded", True),
    ("!(A && B)", True),
    ("!!A", True),
    ("loop.AnySucceeded && !loop.AllFailed", True),
    ("inner_A.Omitted", True),
    ("A and not B", True),
    ("B or C.Errored", False),
    ("  A   &&\n  C  ", True),
    ("A && B || C", True),
    ("A && (B || C.Errored)", False),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_depends_conditions(text: str, expected: bool) -> None:
    assert parse_depends(text).evaluate(status_of) is expected


def test_task_names_include_hyphenated_names() -> None:
    dep = parse_depends("A && (C.Succeeded || C.Failed) && should-execute-2.Succeeded")
    assert isinstance(dep, Depends)
    assert dep.source == "A && (C.Succeeded || C.Failed) && should-execute-2.Succeeded"
    assert dep.task_names() == frozenset({"A", "C", "should-execute-2"})
    assert dep.operands() == frozenset(
        {("A", None), ("C", "Succeeded"), ("C", "Failed"), ("should-execute-2", "Succeeded")}
    )


def test_status_callback_receives_task_and_result() -> None:
    seen: list[tuple[str, str | None]] = []

    def record(task: str, result: str | None) -> bool:
        seen.append((task, result))
        return True

    parse_depends("gen-data.Succeeded && consume").evaluate(record)
    assert seen == [("gen-data", "Succeeded"), ("consume", None)]


def test_evaluation_short_circuits() -> None:
    calls: list[str] = []

    def only_a(task: str, result: str | None) -> bool:
        calls.append(task)
        return task == "A"

    assert parse_depends("B && C").evaluate(only_a) is False
    assert calls == ["B"]


def test_parsing_is_cached() -> None:
    assert parse_depends("X && Y") is parse_depends("X && Y")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("A.Finished", "unknown task result 'Finished'"),
        ("A.succeeded", "unknown task result"),
        ("A.", "missing result"),
        ("A &&", "expected a task name"),
        ("&& A", "unexpected '&&'"),
        ("(A || B", "missing ')'"),
        ("A B", "unexpected 'B'"),
        ("A + B", "invalid character '+'"),
        ("A.Succeeded.Failed", "invalid character '.'"),
        ("", "empty depends"),
        ("   ", "empty depends"),
        ("A ||| B", "invalid character '|'"),
    ],
)
def test_malformed_depends_raise(text: str, fragment: str) -> None:
    with pytest.raises(
        ExprError,
        match=fragment.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("+", r"\+")
        .replace("|", r"\|")
        .replace(".", r"\."),
    ):
        parse_depends(text)


def test_deep_nesting_is_rejected() -> None:
    with pytest.raises(ExprError, match="too deeply nested"):
        parse_depends("(" * 200 + "A" + ")" * 200)
    with pytest.raises(ExprError, match="too deeply nested"):
        parse_depends("!" * 200 + "A")
