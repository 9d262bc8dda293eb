"""``when`` conditions with govaluate semantics, after template substitution."""

from __future__ import annotations

import pytest

from engine.errors import ExprError
from engine.expr import evaluate_when, substitute

TRUE_OR_FALSE = [
    # Argo examples after substitution (coinflip, status-reference, exit-handlers, conditionals...)
    ("heads == heads", True),
    ("tails == heads", False),
    ("Failed == Failed", True),
    ("Succeeded != Succeeded", False),
    ("true == true", True),
    ("false == true", False),
    ("even == even", True),
    ("YES == YES", True),
    ("3 < 10", True),
    ("10 < 3", False),
    ("5 != 1 && 5 != 2", True),
    ("1 != 1 && 1 != 2", False),
    # quoting and literals
    ("'hello world' == \"hello world\"", True),
    ("[hello world] == 'hello world'", True),
    ("'it\\'s' == 'it\\'s'", True),
    ("1.5 >= 1.50", True),
    (".5 == 0.5", True),
    ("'10' < '9'", True),
    ("10 < 9", False),
    ("1 == '1'", False),
    ("true != 'true'", True),
    # operators
    ("(1 + 2) * 3 == 9", True),
    ("2 ** 3 == 8", True),
    ("7 % 4 == 3", True),
    ("-1 < 0", True),
    ("- 1 < 0", True),
    ("!(1 > 2)", True),
    ("!false && true", True),
    ("false || 1 < 2", True),
    ("1 < 2 || 1 / 0 > 0", True),
    ("'abc' =~ '^a.c$'", True),
    ("abc !~ 'z'", True),
    ("'v1.2.3' =~ '^v[0-9]+\\.'", True),
    ("a in (a, b, c)", True),
    ("d in (a, b, c)", False),
    ("2 in (1, 2)", True),
    ("'x' + 'y' == xy", True),
    ("'n' + 1 == n1", True),
    ("3 & 1 == 1", True),
    ("1 << 3 == 8", True),
    ("true ? true : false", True),
    ("false ? true : false", False),
    ("'2024-01-02' > '2024-01-01'", True),
    ("'2024-01-01T00:00:00Z' == '2024-01-01'", True),
    ("v1.beta == v1.beta", True),
]


@pytest.mark.parametrize(("text", "expected"), TRUE_OR_FALSE)
def test_when_conditions(text: str, expected: bool) -> None:
    assert evaluate_when(text) is expected


def test_bare_identifiers_compare_as_strings_in_when() -> None:
    assert evaluate_when("heads == heads") is True
    assert evaluate_when("heads == tails") is False


def test_blank_condition_is_true() -> None:
    assert evaluate_when("") is True
    assert evaluate_when("   ") is True


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("{{steps.flip-coin.outputs.result}} == heads", {"steps.flip-coin.outputs.result": "heads"}, True),
        ("{{steps.flip-coin.outputs.result}} == heads", {"steps.flip-coin.outputs.result": "tails"}, False),
        ("{{inputs.parameters.should-print}} == true", {"inputs.parameters.should-print": "true"}, True),
        (
            "{{steps.iterate-counter.outputs.result}} < {{inputs.parameters.limit}}",
            {"steps.iterate-counter.outputs.result": "3", "inputs.parameters.limit": "10"},
            True,
        ),
        (
            "{{inputs.parameters.num}} != 1 && {{inputs.parameters.num}} != 2",
            {"inputs.parameters.num": "2"},
            False,
        ),
        ("{{workflow.status}} != Succeeded", {"workflow.status": "Failed"}, True),
    ],
)
def test_when_after_substitution_like_argo_examples(
    template: str, values: dict[str, str], expected: bool
) -> None:
    assert evaluate_when(substitute(template, values.__getitem__)) is expected


def test_expression_tags_inside_when_work_too() -> None:
    env = {"inputs": {"parameters": {"should-print": "true"}}}
    text = substitute("{{= inputs.parameters[\"should-print\"] == 'true'}}", str, env=env)
    assert evaluate_when(text) is True


def test_non_boolean_result_is_an_error() -> None:
    with pytest.raises(ExprError, match="must evaluate to a boolean"):
        evaluate_when("1 + 1")
    with pytest.raises(ExprError, match="must evaluate to a boolean"):
        evaluate_when("heads")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hello world == hello world", "Cannot transition token types"),
        ("1 = 1", "Invalid token: '='"),
        ("true &&& false", "Invalid token"),
        ("'unclosed == x", "Unclosed string literal"),
        ("(1 == 1", "Unbalanced parenthesis"),
        ("1 == 1)", "Unbalanced parenthesis"),
        ("1.2.3 == 1.2.3", "Unable to parse numeric value"),
        ("10 > 5 +", "Unexpected end of expression"),
        ("[unclosed == x", "Unclosed parameter bracket"),
    ],
)
def test_invalid_when_mentions_quoting_hint(text: str, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        evaluate_when(text)
    message = str(info.value)
    assert fragment in message
    assert "Invalid 'when' expression" in message
    assert "hint: try wrapping the affected expression in quotes" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("my-task == my-task", "cannot be used with the modifier '-'"),
        ("1 < abc", "cannot be used with the comparator '<'"),
        ("1 && true", "cannot be used with the logical operator '&&'"),
        ("!1", "cannot be used with the prefix '!'"),
        ("1 in 1", "not an array"),
        ("'a' =~ '('", "Unable to compile regexp"),
        ("true + true == 2", "cannot be used with the modifier '+'"),
    ],
)
def test_type_errors_in_when_are_reported(text: str, fragment: str) -> None:
    with pytest.raises(ExprError, match="Failed to evaluate 'when' expression") as info:
        evaluate_when(text)
    assert fragment in str(info.value)


def test_regex_in_when_cannot_hang() -> None:
    text = "'" + "a" * 20_000 + "b' =~ '(a+)+$'"
    assert evaluate_when(text) is False


def test_deeply_nested_when_is_rejected() -> None:
    with pytest.raises(ExprError, match="too deeply nested"):
        evaluate_when("(" * 500 + "true" + ")" * 500)
    with pytest.raises(ExprError, match="too deeply nested"):
        evaluate_when("! " * 500 + "true")


def test_either_quote_ends_a_string_as_in_govaluate() -> None:
    with pytest.raises(ExprError, match="Invalid 'when' expression"):
        evaluate_when('"it\'s" == x')


def test_long_conditions_are_shortened_in_errors() -> None:
    with pytest.raises(ExprError) as info:
        evaluate_when("x " * 5000)
    assert len(str(info.value)) < 400
