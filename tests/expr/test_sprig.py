"""``sprig.<fn>(...)``: Sprig v3 functions with Go semantics (zero values instead of errors)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ExprError
from engine.expr import evaluate

ENV: dict[str, Any] = {
    "workflow": {"creationTimestamp": "2024-05-06T07:08:09Z"},
    "items": [1, 2, 3],
    "m": {"a": 1, "b": 2},
    "__now__": 1_700_000_000.0,
}

CASES = [
    # math: integer functions convert with cast.ToInt64
    ("sprig.add(1, 2, 3)", 6),
    ("sprig.add('2', 3.9)", 5),
    ("sprig.add(34, 27, 15, 57, 46) / 5", 35.8),
    ("sprig.add1(41)", 42),
    ("sprig.sub(10, 3)", 7),
    ("sprig.mul(2, 3, 4)", 24),
    ("sprig.div(7, 2)", 3),
    ("sprig.div(-7, 2)", -3),
    ("sprig.mod(-7, 3)", -1),
    ("sprig.max(1, 9, 3)", 9),
    ("sprig.min(4, 2, 8)", 2),
    ("sprig.addf(0.1, 0.2)", 0.3),
    ("sprig.subf(1.5, 0.25)", 1.25),
    ("sprig.mulf(1.5, 2)", 3.0),
    ("sprig.divf(1, 4)", 0.25),
    ("sprig.maxf(1.5, 2.5)", 2.5),
    ("sprig.floor(1.7)", 1.0),
    ("sprig.ceil(1.2)", 2.0),
    ("sprig.round(3.14159, 2)", 3.14),
    # conversions
    ("sprig.int('42')", 42),
    ("sprig.int('0x1A')", 26),
    ("sprig.int('10.0')", 10),
    ("sprig.int('nope')", 0),
    ("sprig.int(3.99)", 3),
    ("sprig.int64(true)", 1),
    ("sprig.float64('1.5')", 1.5),
    ("sprig.float64('x')", 0.0),
    ("sprig.atoi('12')", 12),
    ("sprig.atoi('12.5')", 0),
    ("sprig.toString(12)", "12"),
    ("sprig.toString(1.5)", "1.5"),
    ("sprig.toString(nil)", "<nil>"),
    ("sprig.toStrings([1, 'a', nil])", ["1", "a"]),
    ("sprig.toDecimal('0777')", 511),
    # strings
    ("sprig.upper('abc')", "ABC"),
    ("sprig.lower('ABC')", "abc"),
    ("sprig.title('hello wide-world')", "Hello Wide-World"),
    ("sprig.untitle('Hello World')", "hello world"),
    ("sprig.trim('  x  ')", "x"),
    ("sprig.trimAll('$', '$5.00$')", "5.00"),
    ("sprig.trimPrefix('v', 'v1.2.3')", "1.2.3"),
    ("sprig.trimSuffix('.txt', 'a.txt')", "a"),
    ("sprig.replace('a', 'b', 'banana')", "bbnbnb"),
    ("sprig.contains('ell', 'hello')", True),
    ("sprig.hasPrefix('he', 'hello')", True),
    ("sprig.hasSuffix('lo', 'hello')", True),
    ("sprig.split('$', 'a$b')", {"_0": "a", "_1": "b"}),
    ("sprig.splitList(',', 'a,b,c')", ["a", "b", "c"]),
    ("sprig.splitn(',', 2, 'a,b,c')", {"_0": "a", "_1": "b,c"}),
    ("sprig.join('-', ['a', 1, nil])", "a-1"),
    ("sprig.join('-', 'solo')", "solo"),
    ("sprig.repeat(3, 'ab')", "ababab"),
    ("sprig.substr(1, 3, 'hello')", "el"),
    ("sprig.substr(-1, 3, 'hello')", "hel"),
    ("sprig.substr(2, 99, 'hello')", "llo"),
    ("sprig.trunc(3, 'hello')", "hel"),
    ("sprig.trunc(-3, 'hello')", "llo"),
    ("sprig.trunc(10, 'hi')", "hi"),
    ("sprig.abbrev(5, 'hello world')", "he..."),
    ("sprig.nospace('a b\\tc')", "abc"),
    ("sprig.cat('a', 1, nil, true)", "a 1 true"),
    ("sprig.indent(2, 'a\\nb')", "  a\n  b"),
    ("sprig.nindent(2, 'a')", "\n  a"),
    ("sprig.quote('a\"b', 1)", '"a\\"b" "1"'),
    ("sprig.quote('tab\\there')", '"tab\\there"'),
    ("sprig.squote('x', nil)", "'x'"),
    ("sprig.plural('one', 'many', 2)", "many"),
    # encodings and hashes
    ("sprig.b64enc('hello')", "aGVsbG8="),
    ("sprig.b64dec('aGVsbG8=')", "hello"),
    ("sprig.b64dec('eyJ0ZW1wcyI6IFszNCwgMjcsIDE1LCA1NywgNDZdfQo=')", '{"temps": [34, 27, 15, 57, 46]}\n'),
    ("sprig.b32enc('hi')", "NBUQ===="),
    ("sprig.sha256sum('hello world')", "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
    ("sprig.sha1sum('abc')", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("sprig.adler32sum('abc')", "38600999"),
    ("sprig.toJson({b: 1, a: '<'})", '{"a":"\\u003c","b":1}'),
    ("sprig.toRawJson({a: '<'})", '{"a":"<"}'),
    ("sprig.toPrettyJson({a: [1]})", '{\n  "a": [\n    1\n  ]\n}'),
    ("sprig.fromJson('{\"a\": 1}').a", 1),
    ("sprig.fromJson('{broken')", None),
    # defaults and flow
    ("sprig.default('d', '')", "d"),
    ("sprig.default('d', 0)", "d"),
    ("sprig.default('d', 'given')", "given"),
    ("sprig.default('d', nil)", "d"),
    ("sprig.empty('')", True),
    ("sprig.empty([])", True),
    ("sprig.empty({})", True),
    ("sprig.empty(0)", True),
    ("sprig.empty(false)", True),
    ("sprig.empty('x')", False),
    ("sprig.coalesce(nil, '', 0, 'first', 'second')", "first"),
    ("sprig.coalesce(nil, '')", None),
    ("sprig.ternary('yes', 'no', true)", "yes"),
    ("sprig.ternary('yes', 'no', 1 > 2)", "no"),
    # lists
    ("sprig.list(1, 'a')", [1, "a"]),
    ("sprig.first([1, 2])", 1),
    ("sprig.first([])", None),
    ("sprig.last(items)", 3),
    ("sprig.rest(items)", [2, 3]),
    ("sprig.initial(items)", [1, 2]),
    ("sprig.append(items, 4)", [1, 2, 3, 4]),
    ("sprig.prepend(items, 0)", [0, 1, 2, 3]),
    ("sprig.concat([1], [2], [3])", [1, 2, 3]),
    ("sprig.reverse(items)", [3, 2, 1]),
    ("sprig.uniq([1, 1, 2, 1])", [1, 2]),
    ("sprig.without(items, 2)", [1, 3]),
    ("sprig.has(2, items)", True),
    ("sprig.has(9, items)", False),
    ("sprig.has(1, nil)", False),
    ("sprig.compact(['a', '', nil, 0, 'b'])", ["a", "b"]),
    ("sprig.slice(items, 1)", [2, 3]),
    ("sprig.slice(items, 0, 2)", [1, 2]),
    ("sprig.sortAlpha(['b', 'a', 'c'])", ["a", "b", "c"]),
    ("sprig.until(3)", [0, 1, 2]),
    ("sprig.untilStep(0, 10, 4)", [0, 4, 8]),
    # dicts
    ("sprig.dict('a', 1, 'b')", {"a": 1, "b": ""}),
    ("sprig.get(m, 'a')", 1),
    ("sprig.get(m, 'zz')", ""),
    ("sprig.set(m, 'c', 3)", {"a": 1, "b": 2, "c": 3}),
    ("sprig.unset(m, 'a')", {"b": 2}),
    ("sprig.hasKey(m, 'b')", True),
    ("sprig.keys(m)", ["a", "b"]),
    ("sprig.values(m)", [1, 2]),
    ("sprig.pick(m, 'a')", {"a": 1}),
    ("sprig.omit(m, 'a')", {"b": 2}),
    ("sprig.pluck('a', m, {a: 5})", [1, 5]),
    ("sprig.merge({a: 0}, m)", {"a": 0, "b": 2}),
    # dates
    ("sprig.date('2006', workflow.creationTimestamp)", "2024"),
    ("sprig.date('2006-01-02T15:04:05Z07:00', workflow.creationTimestamp)", "2024-05-06T07:08:09Z"),
    ("sprig.date('Mon Jan _2 3:04PM', 0)", "Thu Jan  1 12:00AM"),
    ("sprig.date('2006-01-02', 86400.5)", "1970-01-02"),
    ("sprig.date('2006-01-02', 'not a date')", "2023-11-14"),
    ("sprig.dateInZone('2006-01-02 15:04 MST', 0, 'UTC')", "1970-01-01 00:00 UTC"),
    ("sprig.dateInZone('15:04 -07:00', 0, 'No/SuchZone')", "00:00 +00:00"),
    ("sprig.htmlDate(0)", "1970-01-01"),
    ("sprig.unixEpoch(workflow.creationTimestamp)", "1714979289"),
    ("sprig.now().Unix()", 1_700_000_000),
    ("sprig.toDate('2006-01-02', '2024-02-03').Year()", 2024),
    ("sprig.toDate('2006-01-02', 'bad').Year()", 1),
    ("sprig.dateModify('-1h', 3600).Unix()", 0),
    ("sprig.duration(95)", "1m35s"),
    ("sprig.duration('3600')", "1h0m0s"),
    ("sprig.ago(1_699_999_000)", "16m40s"),
    # regular expressions
    ("sprig.regexMatch('^[a-z]+$', 'abc')", True),
    ("sprig.regexMatch('(', 'abc')", False),
    ("sprig.regexFind('[0-9]+', 'ab123cd45')", "123"),
    ("sprig.regexFind('z', 'abc')", ""),
    ("sprig.regexFindAll('[0-9]+', 'a1b22c333', -1)", ["1", "22", "333"]),
    ("sprig.regexFindAll('[0-9]+', 'a1b22c333', 2)", ["1", "22"]),
    ("sprig.regexReplaceAll('a(x*)b', '-ab-axxb-', '${1}W')", "-W-xxW-"),
    ("sprig.regexReplaceAll('(?P<w>\\\\w+)@', 'me@x', '<$w>')", "<me>x"),
    ("sprig.regexReplaceAll('a*', 'baaac', 'X')", "XbXcX"),
    ("sprig.regexReplaceAllLiteral('a(x*)b', '-ab-axxb-', '${1}')", "-${1}-${1}-"),
    ("sprig.regexSplit('z+', 'pizza', -1)", ["pi", "a"]),
    ("sprig.regexSplit('', 'abc', 2)", ["a", "bc"]),
    ("sprig.regexQuoteMeta('1.2+3')", "1\\.2\\+3"),
    # reflection and versions
    ("sprig.typeOf(1.5)", "float64"),
    ("sprig.typeOf([])", "[]interface {}"),
    ("sprig.kindOf({})", "map"),
    ("sprig.kindIs('string', 'x')", True),
    ("sprig.typeIs('int', 1)", True),
    ("sprig.deepEqual([1, {a: 2}], [1, {a: 2}])", True),
    ("sprig.semverCompare('>=1.2.0', '1.3.0')", True),
    ("sprig.semverCompare('^1.2.0', '2.0.0')", False),
    ("sprig.semverCompare('~1.2.0', '1.2.9')", True),
    ("sprig.semverCompare('>1.0.0 <2.0.0 || =3.0.0', 'v3.0.0')", True),
    ("sprig.semverCompare('>=1.0.0', '1.0.0-rc.1')", False),
    ("sprig.semver('v1.2.3-beta').Minor", 2),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_sprig_functions(source: str, expected: Any) -> None:
    assert evaluate(source, ENV) == expected


def test_weather_example_from_argo_examples() -> None:
    env = {
        "workflow": {
            "parameters": {"weather": '{"weekWeather": "eyJ0ZW1wcyI6IFszNCwgMjcsIDE1LCA1NywgNDZdfQo="}'}
        }
    }
    source = """
      map([
          jsonpath(sprig.b64dec(jsonpath(workflow.parameters.weather, '$.weekWeather')), '$.temps')
        ], {
          toJson({
            avg: sprig.add(#[0], #[1], #[2], #[3], #[4]) / 5,
            min: sprig.min(#[0], #[1], #[2], #[3], #[4]),
            max: sprig.max(#[0], #[1], #[2], #[3], #[4])
          })
      })[0]
    """
    assert evaluate(source, env) == '{"avg":35.8,"max":57,"min":15}'


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("sprig.div(1, 0)", "divide by zero"),
        ("sprig.mod(1, 0)", "divide by zero"),
        ("sprig.env('HOME')", "unknown sprig function"),
        ("sprig.expandenv('$HOME')", "unknown sprig function"),
        ("sprig.uuidv4()", "unknown sprig function"),
        ("sprig.upper()", "wrong number of arguments"),
        ("sprig.upper(1)", "expected a string"),
        ("sprig.repeat(-1, 'x')", "negative"),
        ("sprig.substr(4, 2, 'hello')", "out of range"),
        ("sprig.ternary(1, 2, 'yes')", "must be a bool"),
        ("sprig.regexFind('(', 'x')", "error parsing regexp"),
        ("sprig.fail('stop here')", "stop here"),
        ("sprig.mustFromJson('{')", "invalid JSON"),
        ("sprig.semverCompare('>=1', 'banana')", "invalid semantic version"),
        ("sprig.now()", "current time"),
    ],
)
def test_sprig_errors(source: str, fragment: str) -> None:
    with pytest.raises(ExprError, match=fragment):
        evaluate(source, {"m": {}})


def test_sprig_repeat_is_bounded() -> None:
    with pytest.raises(ExprError, match="too large"):
        evaluate("sprig.repeat(100000000, 'xxxxxxxxxx')", {})
