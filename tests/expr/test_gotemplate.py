"""Go text/template + Sprig as Argo Events renders dataTemplate, contextTemplate and filter templates."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ExprError
from engine.expr import render_template
from engine.expr.gotemplate import MAX_OUTPUT
from engine.expr.limits import MAX_NESTING, MAX_SOURCE
from tests.conformance.run import EVENTS_CORPUS_MISSING, events_sensors_dir

# A webhook event's data, JSON-decoded: what ``.Input`` is for a dataTemplate.
EVENT: dict[str, Any] = {
    "header": {"X-Id": ["abc"]},
    "body": {
        "name": " Jane Doe ",
        "message": "hello there",
        "pull_request": {"number": 21500, "head": {"sha": "2c065a1234abcd"}},
        "count": 3,
        "ratio": 2.5,
        "big": 1234567,
        "huge": 1e21,
        "tiny": 0.000001,
        "done": False,
        "nothing": None,
        "list": [1, "two", None, {"x": 3}],
        "map": {"b": 1, "a": [1, 2]},
        "template": "{{ .Input }}",
    },
}


def render(template: str, data: Any = None) -> str:
    return render_template(template, {"Input": EVENT if data is None else data})


# --- the corpus -------------------------------------------------------------------------------------

CORPUS_RESULTS = {
    "{{ .Input.body.pull_request.head.sha | substr 0 7 }}": "2c065a1",
    "{{ .Input.body.pull_request.number }}-{{ .Input.body.pull_request.head.sha | substr 0 7 }}": (
        "21500-2c065a1"
    ),
    "Hi {{.Input.body.name}},\n\n\tHello There.\n\nThanks,\nObi": (
        "Hi  Jane Doe ,\n\n\tHello There.\n\nThanks,\nObi"
    ),
    "{{ .Input.body.message | title }}": "Hello There",
    "{{ .Input.subject | title }}": "My Subject",
    "{{ .Input.body.name | nospace | lower }}-": "janedoe-",
}
# A contextTemplate's .Input is the event context as JSON.
CONTEXT = {"id": "1", "source": "webhook", "subject": "my subject", "type": "webhook"}


def _corpus_templates() -> list[tuple[str, str, str]]:
    root = events_sensors_dir()
    found: list[tuple[str, str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                templated = key in ("dataTemplate", "contextTemplate") or (
                    key == "template" and "{{" in str(value)
                )
                if templated and isinstance(value, str):
                    found.append((where, key, value))
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for file in sorted(root.glob("*.y*ml")) if root.is_dir() else []:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Sensor":
                walk(doc.get("spec", {}).get("dependencies", []), file.name)
                walk(doc.get("spec", {}).get("triggers", []), file.name)
    return found


CORPUS = _corpus_templates()


@pytest.mark.skipif(not CORPUS, reason=EVENTS_CORPUS_MISSING)
@pytest.mark.parametrize(("file", "key", "template"), CORPUS)
def test_corpus_template_renders_as_argo_events_would(file: str, key: str, template: str) -> None:
    data = CONTEXT if key == "contextTemplate" else EVENT
    assert render(template, data) == CORPUS_RESULTS[template]


def test_data_filter_template_decodes_the_filtered_string() -> None:
    # A data filter's .Input is the path's value as text (Argo's own test case).
    assert render("{{ b64dec .Input | upper }}", "aGVsbG8gd29ybGQ=") == "HELLO WORLD"
    assert render("{{ b64dec .Input }}", "My4xNA==") == "3.14"


# --- printing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ .Input.body.count }}", "3"),
        ("{{ .Input.body.ratio }}", "2.5"),
        ("{{ .Input.body.big }}", "1.234567e+06"),  # JSON numbers are float64
        ("{{ .Input.body.huge }}", "1e+21"),
        ("{{ .Input.body.tiny }}", "1e-06"),
        ("{{ .Input.body.pull_request.number }}", "21500"),
        ("{{ .Input.body.done }}", "false"),
        ("{{ .Input.body.list }}", "[1 two <nil> map[x:3]]"),
        ("{{ .Input.body.map }}", "map[a:[1 2] b:1]"),
        ("{{ .Input.body.missing }}", "<no value>"),
        ("{{ .Input.body.missing.deeper }}", "<no value>"),
        ("{{ .Input.body.nothing }}", "<no value>"),
        ('{{ index .Input.body.map "zz" }}', "<no value>"),
        ("{{ .Input.header }}", "map[X-Id:[abc]]"),
        (
            "{{ 3 }} {{ 3.0 }} {{ 1e6 }} {{ -5 }} {{ 0x1F }} {{ 017 }} {{ 1_000 }} {{ 'a' }}",
            "3 3 1e+06 -5 31 15 1000 97",
        ),
        ('{{ true }} {{ "q\\t\\"\\u00e9" }} {{ `raw\\n` }}', 'true q\t"é raw\\n'),
        ("{{ print nil }} {{ print .Input.body.missing }}", "<nil> <nil>"),
        ("{{ . }}", "map[Input:x]"),
        ("{{ $ }}", "map[Input:x]"),
        ("{{ .Input.body.template }}", "{{ .Input }}"),
    ],
)
def test_values_print_with_go_fmt_v(template: str, expected: str) -> None:
    data = "x" if "{{ . }}" in template or "{{ $ }}" in template else None
    assert render(template, data) == expected


# --- text, trimming and comments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a  {{- 1 -}}  b", "a1b"),
        ("a \n\t{{- 1 }} \n b", "a1 \n b"),
        ("a {{ 1 -}} \n\t b", "a 1b"),
        ("{{-3}}", "-3"),
        ("{{ 3 -}}  x", "3x"),
        ("a{{/* a comment */}}b", "ab"),
        ("a  {{- /* trimmed comment */ -}}  b", "ab"),
        ('{{ "a" }}{{/* c */}}{{ "b" }}', "ab"),
        ("no actions at all", "no actions at all"),
        ("", ""),
        ("}} stray closer", "}} stray closer"),
        ('{{ "}}" }}', "}}"),
        ("{{\n.Input.body.count\n}}", "3"),
    ],
)
def test_text_trimming_and_comments(template: str, expected: str) -> None:
    assert render(template) == expected


# --- control structures and variables --------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ if .Input.body.done }}a{{ else if .Input.body.count }}b{{ else }}c{{ end }}", "b"),
        ("{{ if .Input.body.missing }}a{{ else }}b{{ end }}", "b"),
        ("{{ if .Input.body.list }}non-empty{{ end }}", "non-empty"),
        ('{{ if "" }}a{{ else if 0 }}b{{ else if 0.0 }}c{{ else }}d{{ end }}', "d"),
        ("{{ with .Input.body.pull_request }}{{ .head.sha }}{{ end }}", "2c065a1234abcd"),
        ("{{ with .Input.body.missing }}a{{ else with .Input.body.count }}{{ . }}{{ end }}", "3"),
        ("{{ with $pr := .Input.body.pull_request }}{{ $pr.number }}{{ end }}", "21500"),
        ("{{ range .Input.body.list }}[{{ . }}]{{ end }}", "[1][two][<no value>][map[x:3]]"),
        (
            "{{ range $i, $v := .Input.body.list }}{{ $i }}={{ $v }};{{ end }}",
            "0=1;1=two;2=<no value>;3=map[x:3];",
        ),
        ("{{ range $k, $v := .Input.body.map }}{{ $k }}:{{ $v }};{{ end }}", "a:[1 2];b:1;"),
        ("{{ range .Input.body.missing }}x{{ else }}none{{ end }}", "none"),
        ("{{ range .Input.body.nothing }}x{{ else }}none{{ end }}", "none"),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        (
            "{{ range until 6 }}{{ if eq . 2 }}{{ continue }}{{ end }}"
            "{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            "013",
        ),
        ('{{ $x := .Input.body.message }}{{ $x | upper }}{{ $x = "B" }}{{ $x }}', "HELLO THEREB"),
        ("{{ $i := 9 }}{{ $v := 9 }}{{ range $i, $v = list 7 8 }}{{ end }}{{ $i }}{{ $v }}", "18"),
        ("{{ range $i, $v := list 7 8 }}{{ range $v := list 1 }}{{ $v }}{{ end }}{{ $v }}{{ end }}", "1718"),
        ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", "21"),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
        ("{{ range .Input.body.list }}{{ $.Input.body.count }}{{ end }}", "3333"),
    ],
)
def test_control_structures_and_variables(template: str, expected: str) -> None:
    assert render(template) == expected


# --- functions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ and 1 0 2 }} {{ and 1 2 }} {{ or 0 "" "z" }} {{ or 0 false }}', "0 2 z false"),
        ('{{ and 0 (fail "not evaluated") }}{{ or 1 (fail "not evaluated") }}', "01"),
        ("{{ not 0 }} {{ not .Input.body.list }} {{ not .Input.body.missing }}", "true false true"),
        ('{{ len .Input.body.list }} {{ len "é" }} {{ len .Input.body.map }}', "4 2 2"),
        (
            '{{ index .Input.body.list 3 "x" }} {{ index "abc" 1 }} {{ index .Input.body.list }}',
            "3 98 [1 two <nil> map[x:3]]",
        ),
        ('{{ print 1 2 "a" 3 nil }}', "1 2a3 <nil>"),
        ('{{ println 1 "a" }}', "1 a\n"),
        (
            '{{ eq 1 1 }} {{ eq "a" "b" "a" }} {{ eq .Input.body.ratio 2.5 }} {{ eq .Input.body.missing 1 }}',
            "true true true false",
        ),
        (
            '{{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }}',
            "true true true true false",
        ),
        ('{{ html "<a href=\'x\'>\\"&\\"</a>" }}', "&lt;a href=&#39;x&#39;&gt;&#34;&amp;&#34;&lt;/a&gt;"),
        ('{{ js "a\'b\\"<>=&\\n" }}', "a\\'b\\\"\\u003C\\u003E\\u003D\\u0026\\u000A"),
        ('{{ urlquery "a b&c/d~é" }}', "a+b%26c%2Fd~%C3%A9"),
        ("{{ html .Input.body.missing }}", "&lt;no value&gt;"),
        ('{{ .Input.body.message | default "d" }} {{ .Input.body.missing | default "d" }}', "hello there d"),
        ("{{ .Input.body.map | toJson }} {{ toJson .Input.body.count }}", '{"a":[1,2],"b":1} 3'),
        ('{{ (.Input.body).message }} {{ (dict "a" 1).a }} {{ (list 1 2) }}', "hello there 1 [1 2]"),
        ('{{ .Input.body.message | replace "there" "you" | upper | printf "%s!" }}', "HELLO YOU!"),
        ('{{ "a,b,c" | splitList "," | join "-" }}', "a-b-c"),
        ("{{ add 1 2 | add1 }} {{ .Input.body.count | int | add 1 }}", "4 4"),
    ],
)
def test_go_and_sprig_functions(template: str, expected: str) -> None:
    assert render(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ printf "%5s|%-5s|" "ab" "cd" }}', "   ab|cd   |"),
        ('{{ printf "%05d %+d %x %X %o %b %#x" 42 5 255 255 8 5 255 }}', "00042 +5 ff FF 10 101 0xff"),
        ('{{ printf "%.3d|%-4d|%c|%q|%U" 7 7 65 65 65 }}', "007|7   |A|'A'|U+0041"),
        (
            '{{ printf "%.2f %8.3f %e %g %g %.3g" 3.14159 3.14159 1234.5678 1234567.0 100000.0 1234.5 }}',
            "3.14    3.142 1.234568e+03 1.234567e+06 100000 1.23e+03",
        ),
        (
            '{{ printf "%v %v %v" .Input.body.list .Input.body.map .Input.body.missing }}',
            "[1 two <nil> map[x:3]] map[a:[1 2] b:1] <nil>",
        ),
        ('{{ printf "%q %t %s" "a\\"b" true .Input.body.message }}', '"a\\"b" true hello there'),
        (
            '{{ printf "%T %T %T %T %T" 1 1.5 "s" .Input.body.map .Input.body.list }}',
            "int float64 string map[string]interface {} []interface {}",
        ),
        ('{{ printf "%d%%" 50 }}', "50%"),
        ('{{ printf "%d" .Input.body.count }}', "%!d(float64=3)"),  # JSON numbers are float64
        ('{{ printf "%s" 5 }} {{ printf "%d" "x" }}', "%!s(int=5) %!d(string=x)"),
        ('{{ printf "%s" }}', "%!s(MISSING)"),
        ('{{ printf "a" 1 "x" }}', "a%!(EXTRA int=1, string=x)"),
        ('{{ printf "%" }}', "%!(NOVERB)"),
        ('{{ printf "%*d|%-*d|" 5 1 3 2 }}', "    1|2  |"),
        ('{{ printf "%s" .Input.body.list }}', "[%!s(float64=1) two %!s(<nil>) map[x:%!s(float64=3)]]"),
        ('{{ printf "%x" "hi" }} {{ printf "%.1s" "hey" }}', "6869 h"),
        ('{{ printf "%f %v" .Input.body.huge .Input.body.tiny }}', "1000000000000000000000.000000 1e-06"),
    ],
)
def test_printf_follows_go_fmt(template: str, expected: str) -> None:
    assert render(template) == expected


# --- Go's typing rules users meet -----------------------------------------------------------------


def test_a_json_number_does_not_compare_with_an_int_literal() -> None:
    with pytest.raises(ExprError, match="incompatible types for comparison"):
        render("{{ eq .Input.body.count 3 }}")
    assert render("{{ eq .Input.body.count 3.0 }}") == "true"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ .Input.body.name.x }}", "can't evaluate field x in type string"),
        ("{{ .Input.body.nothing.x }}", "nil pointer evaluating interface {}.x"),
        ("{{ .Input.body.missing | lower }}", "error calling lower"),
        ('{{ lt 1 "a" }}', "incompatible types for comparison"),
        ("{{ lt true false }}", "invalid type for comparison"),
        ("{{ eq .Input.body.map .Input.body.map }}", "non-comparable type"),
        ("{{ eq 1 }}", "missing argument for comparison"),
        ("{{ len 3 }}", "len of type int"),
        ("{{ len .Input.body.missing }}", "len of nil pointer"),
        ("{{ index .Input.body.list 9 }}", "index out of range: 9"),
        ("{{ index .Input.body.list 1.0 }}", "cannot index slice/array with type float64"),
        ("{{ index .Input.body.missing 1 }}", "index of untyped nil"),
        ("{{ index 3 1 }}", "can't index item of type int"),
        ("{{ not 1 2 }}", "wrong number of args for not: want 1 got 2"),
        ('{{ "a" 1 }}', 'can\'t give argument to non-function "a"'),
        ("{{ .Input 1 }}", "Input is not a method but has arguments"),
        ("{{ .Input | 1 }}", "non executable command in pipeline stage 2"),
        ("{{ 1 | .Input }}", "Input is not a method but has arguments"),
        ("{{ nil }}", "nil is not a command"),
        ('{{ range "abc" }}{{ end }}', "range can't iterate over abc"),
        ("{{ range 2.5 }}{{ end }}", "range can't iterate over 2.5"),
        ("{{ call 1 }}", "non-function"),
        ("{{ now }}", "needs the current time"),
        ('{{ fail "boom" }}', "boom"),
    ],
)
def test_execution_errors_name_the_problem(template: str, message: str) -> None:
    with pytest.raises(ExprError, match=message.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        render(template)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{", "1:1: unclosed action"),
        ("ab\n{{ .x", "2:1: unclosed action"),
        ("{{ if 1 }}", "has no {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ else }}", "unexpected {{else}}"),
        ("{{ if 1 }}{{ else }}{{ else }}{{ end }}", "expected {{end}}; found {{else}}"),
        ("{{ range .x }}{{ else if 1 }}{{ end }}", "unexpected if in else"),
        ("{{ nope 1 }}", 'function "nope" not defined'),
        ("{{ $y }}", 'undefined variable "$y"'),
        ("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}", 'undefined variable "$x"'),
        ("{{ $y = 1 }}", 'undefined variable "$y"'),
        ("{{ }}", "missing value for command"),
        ("{{ ( ) }}", "missing value for parenthesized pipeline"),
        ("{{ (1 }}", "unexpected end of action"),
        ("{{ 1) }}", "unexpected ) in operand"),
        ('{{ "abc }}', "unterminated quoted string"),
        ("{{ `abc }}", "unterminated raw quoted string"),
        ("{{ 'ab' }}", "malformed character constant"),
        ('{{ "\\q" }}', "invalid escape"),
        ("{{ 1abc }}", "bad number syntax"),
        ("{{ 99999999999999999999 }}", "overflows int"),
        ("{{ 1e999 }}", "out of range"),
        ("{{ # }}", "unrecognized character"),
        ('{{ .a"b" }}', "bad character"),
        ("{{ .Input.header.X-Id }}", "bad character"),
        ('{{ print"x" }}', "bad character"),
        ('{{ "x".y }}', "unexpected . after term"),
        ("{{ $x, $y := 1 }}", "too many declarations"),
        ("{{ range $x, 1 }}{{ end }}", "range can only initialize variables"),
        ("{{/* unclosed", "unclosed comment"),
        ("{{/* x */ }}", "comment ends before closing delimiter"),
        ('{{ define "x" }}{{ end }}', "{{define}} is not supported"),
        ('{{ template "x" }}', "{{template}} is not supported"),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ("{{ range 1 }}{{ else }}{{ continue }}{{ end }}", "{{continue}} outside {{range}}"),
        ("{{ end 1 }}", "unexpected 1 in end"),
    ],
)
def test_parse_errors_give_the_line_and_column(template: str, message: str) -> None:
    with pytest.raises(ExprError) as caught:
        render(template)
    assert message in str(caught.value)
    assert str(caught.value).startswith("template: ")


# --- hostile input --------------------------------------------------------------------------------


def test_data_is_printed_never_run_as_a_template() -> None:
    assert render("{{ .Input.body.template }}") == "{{ .Input }}"
    assert render("{{ .Input }}", '{{ fail "x" }}') == '{{ fail "x" }}'


def test_no_attribute_access_on_python_objects() -> None:
    assert render("{{ .Input.__class__ }}", {}) == "<no value>"
    with pytest.raises(ExprError, match="can't evaluate field upper"):
        render("{{ .Input.upper }}", "text")
    with pytest.raises(ExprError, match="cannot hold a value of type object"):
        render("{{ .Input }}", {"a": object()})


def test_output_size_is_capped() -> None:
    with pytest.raises(ExprError, match="output larger than"):
        render('{{ range until 2000 }}{{ printf "%1000d" 1 }}{{ end }}')
    assert len(render('{{ printf "%1000d" 1 }}')) == 1000
    assert MAX_OUTPUT >= 1000


def test_loops_are_bounded_by_the_work_budget() -> None:
    started = time.monotonic()
    with pytest.raises(ExprError, match=r"^template: .*budget"):
        render("{{ range until 1000 }}{{ range until 1000 }}{{ end }}{{ end }}")
    assert time.monotonic() - started < 10


def test_string_building_is_bounded() -> None:
    with pytest.raises(ExprError, match="too large"):
        render('{{ repeat 10000000 "abc" }}')


def test_nesting_and_size_are_bounded() -> None:
    deep_parens = "{{ " + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1) + " }}"
    with pytest.raises(ExprError, match="nested too deeply"):
        render(deep_parens)
    deep_ifs = "{{ if 1 }}" * (MAX_NESTING + 1) + "x" + "{{ end }}" * (MAX_NESTING + 1)
    with pytest.raises(ExprError, match="nested too deeply"):
        render(deep_ifs)
    assert render("{{ if 1 }}" * 20 + "x" + "{{ end }}" * 20) == "x"
    with pytest.raises(ExprError, match="longer than"):
        render("x" * (MAX_SOURCE + 1))


def test_deep_data_is_refused_not_crashed_on() -> None:
    deep: Any = "leaf"
    for _ in range(2000):
        deep = {"a": deep}
    with pytest.raises(ExprError, match="nested too deeply"):
        render("{{ .Input.a.a }}", deep)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PIECES = [
    "{{", "}}", "{{- ", " -}}", " ", "\n", "text", ".Input", ".Input.a", ".Input.b.c", ".", "$", "$x",
    "$x :=", "$i, $v :=", "=", "|", "(", ")", "if", "else", "end", "range", "with", "break", "continue",
    '"s"', "`r`", "1", "2.5", "-3", "'c'", "true", "nil", "and", "or", "not", "len", "index", "print",
    "printf", '"%d %s %v"',
    "eq", "lt", "upper", "default", "substr", "until", "repeat", "toJson", "/*", "*/", ",", "html", "js",
    "urlquery", "dict", "list", "fail",
]  # fmt: skip
SOUP = st.lists(st.sampled_from(PIECES), max_size=30).map(" ".join)
DATA = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner),
    max_leaves=12,
)


@FUZZ
@given(st.one_of(SOUP, st.text(max_size=60)), DATA)
def test_random_templates_raise_nothing_but_expr_error_and_finish(template: str, data: Any) -> None:
    started = time.monotonic()
    try:
        out = render_template(template, {"Input": data})
    except ExprError:
        pass
    else:
        assert isinstance(out, str)
    assert time.monotonic() - started < 5
