"""gjson paths as Argo Events reads event data: tables from gjson's syntax guide, the corpus's paths,
the String() form parameters see, and hostile paths."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ExprError
from engine.expr import gjson_exists, gjson_get, gjson_raw, gjson_text
from engine.expr.limits import MAX_NESTING, MAX_SOURCE
from tests.conformance.run import EVENTS_CORPUS_MISSING, events_sensors_dir

# The document of gjson's path-syntax guide.
GUIDE: dict[str, Any] = json.loads(
    """{
  "name": {"first": "Tom", "last": "Anderson"},
  "age": 37,
  "children": ["Sara", "Alex", "Jack"],
  "fav.movie": "Deer Hunter",
  "friends": [
    {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
    {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
    {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]}
  ]
}"""
)

# A webhook event's data as the webhook event source delivers it.
WEBHOOK: dict[str, Any] = {
    "header": {"X-Id": ["abc-1", "abc-2"], "Content-Type": ["application/json"]},
    "body": {
        "action": "opened",
        "labels": [{"id": "1234", "name": "Webhook"}, {"id": "5678", "name": "Approved"}],
        "metadata": {"labels": {"app.kubernetes.io/name": "api", "tier": "web"}},
        "count": 3,
        "ratio": 0.25,
        "big": 1e21,
        "done": False,
        "nothing": None,
        "items": [{"name": "a", "n": 1}, {"name": "b"}, {"n": 3}],
    },
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("name.last", "Anderson"),
        ("age", 37),
        ("children", ["Sara", "Alex", "Jack"]),
        ("children.1", "Alex"),
        ("friends.1.first", "Roger"),
        ("child*.2", "Jack"),
        ("c?ildren.0", "Sara"),
        ("fav\\.movie", "Deer Hunter"),
        ("friends.#", 3),
        ("friends.#.age", [44, 68, 47]),
        ('friends.#(last=="Murphy").first', "Dale"),
        ('friends.#(last=="Murphy")#.first', ["Dale", "Jane"]),
        ("friends.#(age>45)#.last", ["Craig", "Murphy"]),
        ('friends.#(first%"D*").last', "Murphy"),
        ('friends.#(first!%"D*").last', "Craig"),
        ('children.#(!%"*a*")', "Alex"),
        ('children.#(%"*a*")#', ["Sara", "Jack"]),
        ('friends.#(nets.#(=="fb"))#.first', ["Dale", "Roger"]),
        ("friends.0|first", "Dale"),
        ("friends|#", 3),
        ('friends.#(last="Murphy")#.0', []),
        ('friends.#(last="Murphy")#|#', 2),
        ('friends.#(last="Murphy")#.#', []),
        ("children.@reverse", ["Jack", "Alex", "Sara"]),
        ("children.@reverse.0", "Jack"),
        ("@this.age", 37),
        ("name.@keys", ["first", "last"]),
        ("[name.first,age,nope]", ["Tom", 37]),
        (
            '{name.first,age,"the_murphys":friends.#(last="Murphy")#.first}',
            {"first": "Tom", "age": 37, "the_murphys": ["Dale", "Jane"]},
        ),
    ],
)
def test_path_reads_what_the_gjson_guide_says(path: str, expected: Any) -> None:
    assert gjson_get(GUIDE, path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("body.action", "opened"),
        ("header.X-Id.0", "abc-1"),
        ("header.Content-Type", ["application/json"]),
        ("body.metadata.labels.app\\.kubernetes\\.io/name", "api"),
        ("body.labels.#.name", ["Webhook", "Approved"]),
        ("body.items.#.n", [1, 3]),
        ("body.items.1.name", "b"),
        ("body.nothing", None),
        ("body.done", False),
        ("body.metadata.labels.t*", "web"),
    ],
)
def test_path_reads_webhook_event_data(path: str, expected: Any) -> None:
    assert gjson_get(WEBHOOK, path) == expected
    assert gjson_exists(WEBHOOK, path)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "body.missing",
        "body.action.deeper",
        "header.X-Id.2",
        "header.X-Id.-1",
        "header.X-Id.first",
        'body.labels.#(name=="Nope").id',
        "body.",
        'friends.#(last="Murphy")#|first',
        "body.metadata.labels.app.kubernetes.io/name",
        "body.count.#",
    ],
)
def test_missing_path_is_an_error_naming_the_path(path: str) -> None:
    assert not gjson_exists(WEBHOOK | GUIDE, path)
    with pytest.raises(ExprError, match="does not exist") as caught:
        gjson_get(WEBHOOK | GUIDE, path)
    assert repr(path)[1:-1] in str(caught.value)


def test_json_null_exists_while_a_missing_key_does_not() -> None:
    assert gjson_exists({"a": None}, "a")
    assert not gjson_exists({"a": None}, "b")


def test_wildcard_key_names_the_first_match_in_document_order() -> None:
    assert gjson_get({"zeta": 1, "alpha": 2, "alps": 3}, "al*") == 2
    assert gjson_get({"a*b": 1, "axb": 2}, "a\\*b") == 1


def test_wildcards_do_not_backtrack_exponentially() -> None:
    key = "a" * 5000 + "b"
    assert gjson_get({key: 1}, "*a*a*a*a*a*a*a*a*a*a*a*a*b") == 1
    assert not gjson_exists({key: 1}, "*a*a*a*a*a*a*a*a*a*a*a*a*c")


def test_unbracketed_multipath_reads_like_the_bracketed_one() -> None:
    # Argo's data-filter documentation writes multipaths without brackets; its values are regexes
    # matched unanchored against the result's text.
    path = 'body.action,body.labels.#(name=="Webhook").name,body.labels.#(name=="Approved").name'
    assert gjson_get(WEBHOOK, path) == ["opened", "Webhook", "Approved"]
    assert '"opened","Webhook"' in gjson_text(gjson_get(WEBHOOK, path))


def test_a_key_containing_a_comma_is_still_read_as_that_key() -> None:
    assert gjson_get({"a,b": 1, "a": 2, "b": 3}, "a,b") == 1


def test_multipath_as_argo_events_tests_write_it() -> None:
    data = {"k": "v", "k1": {"a": [{"k2": "v2"}, {"k2": "v3"}]}}
    found = gjson_get(data, '[k,k1.a.#(k2=="v2").k2,,k1.a.#(k2=="v3").k2]')
    assert gjson_text(found) == '["v","v2","v3"]'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("raw string", "raw string"),
        ("", ""),
        (3, "3"),
        (3.0, "3"),
        (-0.5, "-0.5"),
        (1e21, "1000000000000000000000"),
        (1.5e-7, "0.00000015"),
        (2**53 + 1, "9007199254740993"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        ({"b": 1, "a": [1, "x", None]}, '{"b":1,"a":[1,"x",null]}'),
        (["é", "<>"], '["é","<>"]'),
        ([], "[]"),
    ],
)
def test_to_text_gives_gjson_string_form(value: Any, text: str) -> None:
    assert gjson_text(value) == text


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        ("text", '"text"'),
        (3, "3"),
        (2.5, "2.5"),
        (None, "null"),
        (True, "true"),
        ({"b": [1, None], "a": "é"}, '{"b":[1,null],"a":"é"}'),
    ],
)
def test_to_raw_gives_the_value_as_compact_json(value: Any, raw: str) -> None:
    assert gjson_raw(value) == raw


def test_non_json_values_cannot_be_written_as_json() -> None:
    with pytest.raises(ExprError, match="cannot write the value as JSON"):
        gjson_text({"a": object()})
    with pytest.raises(ExprError):
        gjson_text(float("nan"))


@pytest.mark.parametrize(
    "path",
    [
        "a.#(b==1",
        '[a,"b',
        "{a,b",
        "items.#(x==1)junk",
        "items.#(x ! 1)",
        "[a]junk",
    ],
)
def test_malformed_path_is_an_expr_error(path: str) -> None:
    with pytest.raises(ExprError):
        gjson_exists({"a": 1, "items": [{"x": 1}]}, path)


def test_path_length_and_nesting_are_bounded() -> None:
    with pytest.raises(ExprError, match="longer than"):
        gjson_get({}, "a" * (MAX_SOURCE + 1))
    deep: Any = 1
    for _ in range(MAX_NESTING + 5):
        deep = {"a": deep}
    with pytest.raises(ExprError, match="nested too deeply"):
        gjson_get(deep, ".".join(["a"] * (MAX_NESTING + 5)))
    assert gjson_get(deep, ".".join(["a"] * 10)) is not None


def test_mapping_over_large_arrays_is_bounded_by_the_work_budget() -> None:
    row = list(range(2000))
    wide = {"x": [row] * 2000}  # four million elements, one list shared by every row
    with pytest.raises(ExprError, match="budget"):
        gjson_get(wide, "x.#.#.a")


def test_values_are_only_read_never_called() -> None:
    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError("attribute access on event data")

    assert not gjson_exists({"a": Hostile()}, "a.b")
    assert not gjson_exists({"a": Hostile()}, "a.#")


def _sensor_paths() -> list[tuple[str, str]]:
    """Every gjson path the Argo Events sensor corpus writes (dataKey, data filter and field paths)."""
    root = events_sensors_dir()
    found: list[tuple[str, str]] = []

    def walk(node: Any, where: str, in_filters: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and (key == "dataKey" or (key == "path" and in_filters)):
                    found.append((where, value))
                walk(value, where, in_filters or key == "filters")
        elif isinstance(node, list):
            for item in node:
                walk(item, where, in_filters)

    for file in sorted(root.glob("*.y*ml")) if root.is_dir() else []:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Sensor":
                walk(doc.get("spec", {}), file.name, False)
    return found


SENSOR_PATHS = _sensor_paths()


def _event_holding(path: str, leaf: Any) -> Any:
    """An event in which the plain dotted ``path`` (keys and indexes) leads to ``leaf``."""
    value = leaf
    for part in reversed(path.split(".")):
        value = [None] * int(part) + [value] if part.isdigit() else {part: value}
    return value


@pytest.mark.skipif(not SENSOR_PATHS, reason=EVENTS_CORPUS_MISSING)
def test_every_corpus_path_reads_the_value_it_names() -> None:
    for where, path in SENSOR_PATHS:
        assert gjson_exists({}, path) is False, (where, path)
        assert gjson_get(_event_holding(path, "leaf"), path) == "leaf", (where, path)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATH_TEXT = st.text(alphabet=st.sampled_from(list('ab1#.|*?\\()[]{}",:=!<>%@ ')), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "1"]), inner),
    max_leaves=20,
)


@FUZZ
@given(JSON, PATH_TEXT)
def test_any_path_on_any_data_raises_nothing_but_expr_error(data: Any, path: str) -> None:
    with contextlib.suppress(ExprError):
        gjson_text(gjson_get(data, path))
