"""RE2-compatible regular expressions (``matches``, ``=~``, ``sprig.regex*``) that cannot hang."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ExprError
from engine.expr.regex import compile_regex

MATCHES = [
    ("^[0-9]+$", "12345", True),
    ("^[0-9]+$", "12a45", False),
    ("^[0-9]+$", "123\n", False),  # Go's $ is end of text, unlike Python's
    ("(?m)^b$", "a\nb\nc", True),
    ("a.c", "a\nc", False),
    ("(?s)a.c", "a\nc", True),
    ("(?i)hello", "HeLLo", True),
    ("(?i:a)b", "Ab", True),
    ("(?i:a)b", "AB", False),
    (r"\bfoo\b", "a foo b", True),
    (r"\bfoo\b", "afoob", False),
    (r"\d{3}-\d{2}", "tel 123-45", True),
    (r"^\w+@\w+\.com$", "me@site.com", True),
    (r"[[:alpha:]]+", "123", False),
    (r"[^[:digit:]]", "12a", True),
    (r"\pL+", "héllo", True),
    (r"\p{Greek}|x", "x", True),
    (r"^\Qa.b\E$", "a.b", True),
    (r"^\Qa.b\E$", "axb", False),
    (r"\x41\x{42}", "AB", True),
    (r"^(\d+\.)+\d+$", "1.2.3", True),
    (r"^(?P<major>\d+)\.(?P<minor>\d+)$", "10.2", True),
    ("a{2,3}", "caab", True),
    ("a{2,}", "a", False),
    ("x{", "x{", True),
    ("", "anything", True),
    ("a|b|c", "zzc", True),
    (r"\Aab\z", "ab", True),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), MATCHES)
def test_re2_matching(pattern: str, text: str, expected: bool) -> None:
    try:
        assert compile_regex(pattern).matches(text) is expected
    except ExprError:
        # \p{Greek} (scripts) is outside the supported subset; everything else must compile.
        assert "Greek" in pattern


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("a+", "baaac", "aaa"),
        ("a*?", "aaa", ""),
        ("a+?", "aaa", "a"),
        ("(a|ab)(c|bcd)", "abcd", "abcd"),
        ("a|ab", "ab", "a"),
        ("x*", "yyy", ""),
        ("[0-9]+", "abc", None),
    ],
)
def test_leftmost_first_match_like_go(pattern: str, text: str, found: str | None) -> None:
    assert compile_regex(pattern).find(text) == found


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("(", "missing closing )"),
        (")", "unexpected )"),
        ("[a", "missing closing ]"),
        ("a**", "invalid nested repetition operator"),
        ("*a", "missing argument to repetition operator"),
        (r"(a)\1", "invalid escape sequence"),
        ("(?=a)", "invalid or unsupported Perl syntax"),
        ("(?<!a)b", "invalid or unsupported Perl syntax"),
        ("a{1001}", "invalid repeat count"),
        ("[z-a]", "invalid character class range"),
        (r"\8", "invalid escape sequence"),
        ("x\\", "trailing backslash"),
        ("(?P<n>a)(?P<n>b)", "duplicate capture group name"),
    ],
)
def test_invalid_patterns_are_rejected_like_re2(pattern: str, fragment: str) -> None:
    with pytest.raises(ExprError, match="error parsing regexp") as info:
        compile_regex(pattern)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("(a+)+$", "a" * 30_000 + "b"),
        ("(a|aa)+$", "a" * 30_000 + "b"),
        ("(x+x+)+y", "x" * 20_000),
        ("(.*a){12}", "a" * 5_000),
        (".*.*.*.*=", "x" * 30_000),
        ("^(([a-z])+.)+[A-Z]([a-z])+$", "a" * 20_000 + "!"),
    ],
)
def test_catastrophic_patterns_finish_quickly(pattern: str, text: str) -> None:
    started = time.perf_counter()
    try:
        compile_regex(pattern).matches(text)
    except ExprError as exc:
        # Allowed: the linear-time engine refusing input beyond its step budget.
        assert "too costly" in str(exc)
    assert time.perf_counter() - started < 3.0


def test_replace_all_expands_go_templates() -> None:
    r = compile_regex(r"(?P<user>\w+)@(\w+)")
    text = "bob@x and al@y"
    assert r.replace_all(text, lambda spans: r.expand("$2:${user}$$", text, spans)) == "x:bob$ and y:al$"
    assert r.replace_all(text, lambda spans: r.expand("$1x", text, spans)) == " and "


def test_find_all_skips_empty_match_after_a_match() -> None:
    r = compile_regex("a*")
    spans = r.find_all("baaac")
    assert [(s[0], s[1]) for s in spans] == [(0, 0), (1, 4), (5, 5)]


def test_compiled_patterns_are_cached() -> None:
    assert compile_regex("^x+$") is compile_regex("^x+$")


_ATOMS = ["a", "b", ".", "[ab]", "[^a]", "(a|b)", "(ab|a)", "(?:a|)", "\\b", "^", "$", "x"]
_QUANTIFIERS = ["", "", "*", "+", "?", "{1,2}", "*?", "+?"]
_PIECES = st.tuples(st.sampled_from(_ATOMS), st.sampled_from(_QUANTIFIERS)).map(
    lambda p: p[0] if p[0] in ("\\b", "^", "$") else p[0] + p[1]
)


@settings(max_examples=400, deadline=timedelta(seconds=2))
@given(st.lists(_PIECES, min_size=1, max_size=5).map("".join), st.text(alphabet="abc", max_size=8))
def test_linear_engine_agrees_with_backtracking_engine(pattern: str, subject: str) -> None:
    fast = compile_regex.__wrapped__(pattern)
    if not fast._safe:
        return
    assert fast._python_pattern() is not None
    python = fast.search(subject)
    linear = compile_regex.__wrapped__(pattern)
    linear._safe = False
    vm = linear.search(subject)
    assert (python[:2] if python else None) == (vm[:2] if vm else None)
