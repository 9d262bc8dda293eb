"""``jsonpath(json, path)``: the JSONPath subset Argo manifests use."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import ExprError
from engine.expr import evaluate

CONFIG = json.dumps(
    {
        "employees": [{"name": "Baris", "age": 43}, {"name": "Mo", "age": 42}, {"name": "Jai", "age": 44}],
        "store": {"book": [{"title": "A", "isbn": "1", "price": 8.95}, {"title": "B", "price": 22.99}]},
        "weird-key": {"a.b": 1},
        "flag": True,
        "nothing": None,
    }
)

CASES = [
    ("$", json.loads(CONFIG)),
    ("$.flag", True),
    ("$.nothing", None),
    ("$.employees[0].name", "Baris"),
    ("$.employees[-1].name", "Jai"),
    ("$['employees'][1]['age']", 42),
    ('$["weird-key"]["a.b"]', 1),
    ("$.weird-key", {"a.b": 1}),
    ("$.employees[*].name", ["Baris", "Mo", "Jai"]),
    ("$.employees.*.age", [43, 42, 44]),
    ("$.employees[0:1]", [{"name": "Baris", "age": 43}]),
    ("$.employees[1:]", [{"name": "Mo", "age": 42}, {"name": "Jai", "age": 44}]),
    ("$.employees[::2].name", ["Baris", "Jai"]),
    ("$.employees[0,2].name", ["Baris", "Jai"]),
    ('$.employees[?(@.name=="Baris")].age', [43]),
    ("$.employees[?(@.age>42 && @.age<44)].age", [43]),
    ("$.employees[?(@.age < 43 || @.name == 'Jai')].name", ["Mo", "Jai"]),
    ("$.employees[?(!(@.age == 42))].name", ["Baris", "Jai"]),
    ("$.employees[?(@.name =~ '^M')].name", ["Mo"]),
    ("$.employees[?(@.age == $.employees[0].age)].name", ["Baris"]),
    ("$.store.book[?(@.isbn)].title", ["A"]),
    ("$.store.book[?(@.price < 10)].title", ["A"]),
    ("$..price", [8.95, 22.99]),
    ("$..book[1].title", ["B"]),
    ("$.employees[?(@.age > 100)]", []),
]


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_jsonpath_queries(path: str, expected: Any) -> None:
    assert evaluate("jsonpath(doc, path)", {"doc": CONFIG, "path": path}) == expected


def test_jsonpath_accepts_already_decoded_values() -> None:
    assert evaluate("jsonpath({a: [1, 2]}, '$.a[1]')", {}) == 2


def test_argo_conditionals_example() -> None:
    params = json.dumps([{"name": "should-print", "value": "true"}])
    assert evaluate(
        "jsonpath(workflow.parameters.json, '$[0].value') == 'true'",
        {"workflow": {"parameters": {"json": params}}},
    )


@pytest.mark.parametrize(
    ("document", "path", "fragment"),
    [
        (CONFIG, "$.missing", "not found"),
        (CONFIG, "$.employees[9]", "out of range"),
        (CONFIG, "employees", "must start with \\$"),
        (CONFIG, "$.employees[", "expected an index"),
        (CONFIG, "$.employees[?(@.age >)]", "unexpected"),
        (CONFIG, "$.employees[0:1:0]", "step cannot be zero"),
        ("{not json", "$", "invalid JSON"),
    ],
)
def test_jsonpath_errors(document: str, path: str, fragment: str) -> None:
    with pytest.raises(ExprError, match=fragment):
        evaluate("jsonpath(doc, path)", {"doc": document, "path": path})


def test_recursive_descent_is_bounded_on_deep_documents() -> None:
    deep = "[" * 2000 + "]" * 2000
    with pytest.raises(ExprError):
        evaluate("jsonpath(doc, '$..x')", {"doc": deep})
