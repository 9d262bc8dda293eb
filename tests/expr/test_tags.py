"""Template tags: finding ``{{...}}`` / ``{{= }}`` and substituting them."""

from __future__ import annotations

import time

import pytest

from engine.errors import ExprError
from engine.expr import Tag, check_syntax, find_tags, has_tags, substitute

VALUES = {
    "inputs.parameters.message": "hello world",
    "tasks.gen-data.outputs.result": "42",
    "workflow.name": "wf-abc",
    "item": "x",
}
ENV = {
    "inputs": {"parameters": {"message": "hello world", "my-param": "7", "count": "3"}},
    "tasks": {"gen-data": {"outputs": {"result": "42"}}},
    "workflow": {"name": "wf-abc", "status": "Succeeded"},
}


def resolve(name: str) -> str:
    return VALUES[name]


# --- find_tags --------------------------------------------------------------------------------------


def test_text_without_braces_has_no_tags() -> None:
    assert find_tags("plain text") == []
    assert find_tags("") == []
    assert not has_tags("no tags here")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{workflow.name}}", [("simple", "workflow.name", 0, 17)]),
        ("a {{ inputs.parameters.message }} b", [("simple", "inputs.parameters.message", 2, 33)]),
        ("{{tasks.gen-data.outputs.result}}", [("simple", "tasks.gen-data.outputs.result", 0, 33)]),
        ("{{=1 + 1}}", [("expr", "1 + 1", 0, 10)]),
        ("{{= asInt(x) }}", [("expr", "asInt(x)", 0, 15)]),
        ("{{ =x }}", [("simple", "=x", 0, 8)]),
        ("{{a}}{{b}}", [("simple", "a", 0, 5), ("simple", "b", 5, 10)]),
        ("{{}}", [("simple", "", 0, 4)]),
    ],
)
def test_tags_are_found_with_kind_body_and_span(text: str, expected: list[tuple[str, str, int, int]]) -> None:
    assert [(t.kind, t.body, t.start, t.end) for t in find_tags(text)] == expected


def test_expression_tag_does_not_end_inside_a_quoted_string() -> None:
    text = "{{= \"a}}b\" + '}}' }} tail"
    (tag,) = find_tags(text)
    assert tag.body == "\"a}}b\" + '}}'"
    assert text[tag.end :] == " tail"


def test_expression_tag_does_not_end_at_braces_closing_a_map_literal() -> None:
    text = "{{= toJson({a: {b: 1}}) }}!"
    (tag,) = find_tags(text)
    assert tag.body == "toJson({a: {b: 1}})"
    assert tag.raw(text) == "{{= toJson({a: {b: 1}}) }}"


def test_multiline_expression_tag_from_argo_examples_is_one_tag() -> None:
    text = """{{=
        map([1, 2], {
          toJson({
            avg: #
          })
      })[0]
    }}"""
    (tag,) = find_tags(text)
    assert tag.kind == "expr"
    assert tag.body.startswith("map(")
    assert tag.end == len(text)


def test_unclosed_tag_is_plain_text() -> None:
    assert find_tags("{{ never closed") == []
    assert not has_tags("{{ never closed")
    assert find_tags("{{= 'unterminated") == []


def test_unbalanced_braces_fall_back_to_first_closing_pair() -> None:
    text = "{{= {a: 1 }} and {{b}}"
    tags = find_tags(text)
    assert [t.body for t in tags] == ["{a: 1", "b"]


def test_tag_raw_returns_the_tag_as_written() -> None:
    text = "x {{ a }} y"
    (tag,) = find_tags(text)
    assert isinstance(tag, Tag)
    assert tag.raw(text) == "{{ a }}"


def test_find_tags_is_linear_on_hostile_brace_soup() -> None:
    text = "{{= { }}" * 20_000 + "{{= ' }}" * 20_000
    started = time.perf_counter()
    tags = find_tags(text)
    assert time.perf_counter() - started < 2.0
    assert len(tags) >= 20_000


# --- substitute -------------------------------------------------------------------------------------


def test_text_without_tags_is_returned_unchanged_and_fast() -> None:
    text = "no tags in this rather long line of text " * 50
    assert substitute(text, resolve) is text
    started = time.perf_counter()
    for _ in range(10_000):
        substitute(text, resolve)
    assert time.perf_counter() - started < 0.5


def test_simple_tags_are_replaced_by_resolved_values() -> None:
    text = "say {{inputs.parameters.message}} from {{ workflow.name }} ({{tasks.gen-data.outputs.result}})"
    assert substitute(text, resolve) == "say hello world from wf-abc (42)"


def test_unresolved_simple_tag_raises_naming_the_tag() -> None:
    with pytest.raises(ExprError, match=r"\{\{steps\.missing\.outputs\.result\}\}"):
        substitute("x {{steps.missing.outputs.result}}", resolve)


def test_unresolved_simple_tag_is_kept_when_asked() -> None:
    text = "a {{ steps.later.outputs.result }} b {{workflow.name}}"
    assert substitute(text, resolve, keep_unresolved=True) == "a {{ steps.later.outputs.result }} b wf-abc"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{=inputs.parameters.message}}", "hello world"),
        ("{{= asInt(inputs.parameters.count) * 10 }}", "30"),
        ("{{= inputs.parameters['my-param'] }}", "7"),
        ("{{= tasks['gen-data'].outputs.result }}", "42"),
        ("{{= 10 / 4 }}", "2.5"),
        ("{{= 10 / 5 }}", "2"),
        ("{{= 1 == 1 }}", "true"),
        ("{{= [1, 'a', true] }}", '[1,"a",true]'),
        ("{{= {b: 1, a: [2.5, nil]} }}", '{"a":[2.5,null],"b":1}'),
        ("{{= toJson(filter([1, 3], {# > 1})) }}", "[3]"),
        ("n={{= 1 + 1 }}, m={{=2*3}}", "n=2, m=6"),
        ("{{= 1e21 }} {{= 1e-7 }} {{= 123456789.0 }}", "1e+21 1e-7 123456789"),
        ("{{= '<a & b>' }}", "<a & b>"),
    ],
)
def test_expression_tags_are_evaluated_and_rendered_like_argo(text: str, expected: str) -> None:
    assert substitute(text, resolve, env=ENV) == expected


def test_expression_yielding_nil_is_an_error() -> None:
    with pytest.raises(ExprError, match="nil"):
        substitute("{{= tasks['gen-data'].outputs.missing }}", resolve, env=ENV)


def test_expression_yielding_nil_is_kept_when_unresolved_allowed() -> None:
    text = "{{= tasks['gen-data'].outputs.missing }}"
    assert substitute(text, resolve, env=ENV, keep_unresolved=True) == text


def test_expression_failure_raises_naming_the_tag() -> None:
    with pytest.raises(ExprError, match=r"\{\{= 1 \+ 'a' \}\}"):
        substitute("{{= 1 + 'a' }}", resolve, env=ENV)


def test_expression_failure_is_kept_when_unresolved_allowed() -> None:
    assert substitute("{{= 1 + 'a' }}", resolve, env=ENV, keep_unresolved=True) == "{{= 1 + 'a' }}"


def test_expression_tags_without_env_are_unresolved() -> None:
    assert substitute("{{=1+1}} {{workflow.name}}", resolve, keep_unresolved=True) == "{{=1+1}} wf-abc"
    with pytest.raises(ExprError):
        substitute("{{=1+1}}", resolve)


def test_expression_reading_an_absent_top_level_name_waits_when_unresolved_allowed() -> None:
    # Argo keeps e.g. `sprig.int(retries)` for later instead of turning a missing `retries` into 0.
    text = "{{= sprig.int(retries) }}"
    assert substitute(text, resolve, env=ENV, keep_unresolved=True) == text
    assert substitute(text, resolve, env={**ENV, "retries": "2"}, keep_unresolved=True) == "2"


def test_nil_coalescing_supplies_fallback_for_absent_outputs() -> None:
    env = {"tasks": {"skipped": {"outputs": {}}}}
    assert substitute("{{= tasks.skipped.outputs.result ?? 'none' }}", resolve, env=env) == "none"
    assert substitute("{{= tasks.gone.outputs.result ?? 'none' }}", resolve, env=env) == "none"


@pytest.mark.parametrize(
    "payload",
    [
        "{{workflow.name}}",
        "{{= 1 + 1 }}",
        "$(rm -rf /)",
        "; rm -rf /",
        "`id`",
        "__import__('os').system('id')",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{= sprig.env('HOME') }}",
        "{% for x in y %}{{x}}{% endfor %}",
    ],
)
def test_substituted_values_stay_inert_data(payload: str) -> None:
    values = {"inputs.parameters.evil": payload}
    env = {"inputs": {"parameters": {"evil": payload}}}
    out = substitute("[{{inputs.parameters.evil}}]", values.__getitem__, env=env)
    assert out == f"[{payload}]"
    out = substitute("[{{= inputs.parameters.evil }}]", values.__getitem__, env=env)
    assert out == f"[{payload}]"


def test_substitution_is_a_single_pass() -> None:
    values = {"a": "{{b}}", "b": "SECRET"}
    assert substitute("{{a}}", values.__getitem__) == "{{b}}"


# --- check_syntax -----------------------------------------------------------------------------------


def test_check_syntax_accepts_valid_expression_tags_and_ignores_simple_ones() -> None:
    check_syntax("{{= inputs.parameters['x'] == 'y' }} {{ anything-goes.here }}")


@pytest.mark.parametrize("text", ["{{= 1 + }}", "{{= foo( }}", "{{= nosuchfn(1) }}", "{{= sprig.nosuch() }}"])
def test_check_syntax_rejects_invalid_expression_tags(text: str) -> None:
    with pytest.raises(ExprError, match="invalid expression tag"):
        check_syntax(text)


def test_exit_handler_values_wait_until_they_exist_when_unresolved_allowed() -> None:
    text = "{{= workflow['status'] == 'Succeeded' }}"
    early = {"workflow": {"name": "wf"}}
    assert substitute(text, resolve, env=early, keep_unresolved=True) == text
    late = {"workflow": {"name": "wf", "status": "Succeeded"}}
    assert substitute(text, resolve, env=late, keep_unresolved=True) == "true"
    assert substitute("{{= workflow.failures ?? '[]' }}", resolve, env=early) == "[]"
