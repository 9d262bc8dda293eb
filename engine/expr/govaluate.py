"""``when`` conditions, evaluated the way Argo does it with Knetic/govaluate.

The workflow core first substitutes the tags in a ``when`` string (``{{steps.flip.outputs.result}} ==
heads`` becomes ``heads == heads``) and then calls :func:`evaluate_when`. Argo parses that text with
govaluate and turns every bare variable into a string literal, so unquoted words compare as text.

Language, as govaluate reads it:

* numbers are float64 (``3``, ``2.5``, ``.5``); ``'...'`` and ``"..."`` are strings (a string either
  quote ends it); quoted text that parses as a date/time becomes its Unix time, so dates compare;
  ``true``/``false``; ``[any text]`` and bare words (``heads``, ``Succeeded``) are strings. Dotted words
  (``v1.beta``), which govaluate would reject as struct accessors, are strings here too.
* operators, loosest first: ``,`` (builds a list, for ``in``); ``? :`` and ``??``; ``||``; ``&&``;
  ``== != < <= > >= =~ !~ in``; ``& | ^``; ``<< >>``; ``+ -``; ``* / %``; ``**``; prefix ``- ! ~``.
* ``==`` is deep equality without conversion (``1 == '1'`` is false); ``<`` and friends take two
  numbers or two strings; ``+`` adds numbers or concatenates when either side is a string; ``=~``
  is an RE2 search; ``in`` needs a parenthesised list on the right.

The result must be a bool. Errors raise ExprError with Argo's wording and, for syntax errors, its hint
to wrap values in quotes.

Argo Events' expression filters (``filters.exprs[].expr``) use govaluate as it is, with variables: the
events core calls :func:`evaluate_govaluate` (or :func:`evaluate_govaluate_bool`) with the names its
``fields`` bind, and :func:`check_govaluate` to validate a Sensor. There a bare word or a
``[bracketed name]`` is a variable, a dotted word is an accessor (which JSON values cannot satisfy), and
every bound number is a float64. Everything else is the language above.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import ExprError

from .encoding import go_float, go_sprint
from .limits import MAX_DATA_DEPTH, MAX_NESTING, MAX_SOURCE, MAX_TREE_HEIGHT
from .regex import compile_regex
from .times import parse_time

_PREFIX = frozenset({"-", "!", "~"})
_MODIFIERS = frozenset({"+", "-", "*", "/", "%", "**", "&", "|", "^", ">>", "<<"})
_LOGICAL = frozenset({"&&", "||"})
_COMPARATORS = frozenset({"==", "!=", ">", ">=", "<", "<=", "=~", "!~", "in"})
_TERNARY = frozenset({"?", ":", "??"})

# Binary precedence levels, loosest first (the separator ',' is handled on its own).
_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"?", ":", "??"}),
    frozenset({"||"}),
    frozenset({"&&"}),
    _COMPARATORS,
    frozenset({"&", "|", "^"}),
    frozenset({">>", "<<"}),
    frozenset({"+", "-"}),
    frozenset({"*", "/", "%"}),
    frozenset({"**"}),
)

# The date layouts govaluate tries on every quoted string.
_TIME_LAYOUTS = (
    "Mon Jan _2 15:04:05 2006",
    "Mon Jan _2 15:04:05 MST 2006",
    "Mon Jan 02 15:04:05 -0700 2006",
    "3:04PM",
    "2006-01-02T15:04:05Z07:00",
    "2006-01-02",
    "2006-01-02 15:04",
    "2006-01-02 15:04:05",
    "2006-01-02 15:04:05-07:00",
    "2006-01-02T15Z0700",
    "2006-01-02T15:04Z0700",
    "2006-01-02T15:04:05Z0700",
)

_HINT = ' (hint: try wrapping the affected expression in quotes ("))'


def _clip(text: str) -> str:
    """The condition as shown in error messages; long ones are shortened."""
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # value | op | prefix | ( | ) | ,
    value: Any
    text: str


def _is_letter(c: str) -> bool:
    return c.isalpha()


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _is_symbol_char(c: str) -> bool:
    return not (c.isalpha() or c.isdigit() or c in "()[]'\"" or c.isspace())


def _as_time(text: str) -> float | None:
    if not text or not (text[0].isdigit() or text[0].isalpha()):
        return None
    for layout in _TIME_LAYOUTS:
        try:
            return float(parse_time(layout, text).unix())
        except ExprError:
            continue
    return None


def _tokenize(text: str, *, variables: bool = False) -> list[_Tok]:
    """Tokens of ``text``. With ``variables``, bare words and ``[bracketed names]`` are variables (as
    in govaluate itself) instead of the string literals Argo's ``when`` turns them into."""
    tokens: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        start = i
        if _is_digit(c) or c == ".":
            while i < n and (_is_digit(text[i]) or text[i] == "."):
                i += 1
            literal = text[start:i]
            try:
                number = float(literal)
            except ValueError:
                raise ExprError(f"Unable to parse numeric value '{literal}' to float64") from None
            tokens.append(_Tok("value", number, literal))
            continue
        if c == ",":
            tokens.append(_Tok(",", ",", ","))
            i += 1
            continue
        if c == "[":
            value, i, closed = _read_until(text, i + 1, "]")
            if not closed:
                raise ExprError("Unclosed parameter bracket")
            if variables:
                tokens.append(_Tok("var", (value,), text[start:i]))
            else:
                tokens.append(_Tok("value", value, text[start:i]))
            continue
        if _is_letter(c):
            while i < n and (text[i].isalnum() or text[i] in "_."):
                i += 1
            word = text[start:i]
            if word in ("true", "false"):
                tokens.append(_Tok("value", word == "true", word))
            elif word in ("in", "IN"):
                tokens.append(_Tok("op", "in", word))
            else:
                if word.endswith("."):
                    raise ExprError(f"Hanging accessor on token '{word}'")
                if variables:
                    # A dotted word is govaluate's accessor: a field of the first name's value.
                    tokens.append(_Tok("var", tuple(word.split(".")), word))
                else:
                    # Argo turns govaluate's variables into string literals.
                    tokens.append(_Tok("value", word, word))
            continue
        if c in "'\"":
            value, i, closed = _read_until(text, i + 1, "'\"")
            if not closed:
                raise ExprError("Unclosed string literal")
            when = _as_time(value)
            tokens.append(_Tok("value", when if when is not None else value, text[start:i]))
            continue
        if c in "()":
            tokens.append(_Tok(c, c, c))
            i += 1
            continue
        while i < n and _is_symbol_char(text[i]):
            i += 1
        symbol = text[start:i]
        prefix_allowed = not tokens or tokens[-1].kind in ("op", "prefix", "(", ",")
        if prefix_allowed and symbol in _PREFIX:
            tokens.append(_Tok("prefix", symbol, symbol))
        elif symbol in _MODIFIERS or symbol in _LOGICAL or symbol in _COMPARATORS or symbol in _TERNARY:
            tokens.append(_Tok("op", symbol, symbol))
        else:
            raise ExprError(f"Invalid token: '{symbol}'")
    return tokens


def _read_until(text: str, i: int, closers: str) -> tuple[str, int, bool]:
    """Read up to one of ``closers`` (backslash escapes anything); returns (text, index after, closed)."""
    out: list[str] = []
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if c in closers:
            return "".join(out), i + 1, True
        out.append(c)
        i += 1
    return "".join(out), i, False


# --- parsing ----------------------------------------------------------------------------------------

_Node = tuple[Any, ...]  # ("lit", v) | ("list", [nodes]) | ("prefix", op, node) | ("bin", op, l, r)


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> _Node:
        if not self.tokens:
            raise ExprError("Unexpected end of expression")
        node = self.separator()
        tok = self.peek()
        if tok is not None:
            if tok.kind == ")":
                raise ExprError("Unbalanced parenthesis")
            previous = self.tokens[self.pos - 1]
            raise ExprError(f"Cannot transition token types from {previous.text!r} to {tok.text!r}")
        return node

    def separator(self) -> _Node:
        first = self.binary(0)
        tok = self.peek()
        if tok is None or tok.kind != ",":
            return first
        items = [first]
        while (tok := self.peek()) is not None and tok.kind == ",":
            self.pos += 1
            items.append(self.binary(0))
        return ("list", items)

    def binary(self, level: int) -> _Node:
        if level == len(_LEVELS):
            return self.prefix()
        left = self.binary(level + 1)
        ops = _LEVELS[level]
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.value in ops:
            self.pos += 1
            right = self.binary(level + 1)
            left = ("bin", tok.value, left, right)
        return left

    def prefix(self) -> _Node:
        tok = self.peek()
        if tok is not None and tok.kind == "prefix":
            self.pos += 1
            self.enter()
            operand = self.prefix()
            self.depth -= 1
            return ("prefix", tok.value, operand)
        return self.value()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError("expression too deeply nested")

    def value(self) -> _Node:
        tok = self.peek()
        if tok is None:
            raise ExprError("Unexpected end of expression")
        self.pos += 1
        if tok.kind == "value":
            return ("lit", tok.value)
        if tok.kind == "var":
            return ("var", tok.value)
        if tok.kind == "(":
            self.enter()
            inner = self.separator()
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise ExprError("Unbalanced parenthesis")
            self.pos += 1
            self.depth -= 1
            return inner
        if tok.kind == ")":
            raise ExprError("Unbalanced parenthesis")
        raise ExprError(f"Unexpected token {tok.text!r}")


def _height(node: _Node) -> int:
    best = 0
    stack: list[tuple[_Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        best = max(best, depth)
        kind = current[0]
        if kind == "list":
            stack.extend((child, depth + 1) for child in current[1])
        elif kind == "prefix":
            stack.append((current[2], depth + 1))
        elif kind == "bin":
            stack.extend(((current[2], depth + 1), (current[3], depth + 1)))
    return best


@functools.lru_cache(maxsize=1024)
def _parse_with_variables(text: str) -> _Node:
    try:
        tree = _Parser(_tokenize(text, variables=True)).parse()
    except ExprError as exc:
        raise ExprError(f"Invalid expression '{_clip(text)}': {exc}") from None
    except RecursionError:
        raise ExprError(f"Invalid expression '{_clip(text)}': expression too deeply nested") from None
    if _height(tree) > MAX_TREE_HEIGHT:
        raise ExprError(f"Invalid expression '{_clip(text)}': expression too deeply nested")
    return tree


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> _Node:
    try:
        tree = _Parser(_tokenize(text)).parse()
    except ExprError as exc:
        raise ExprError(f"Invalid 'when' expression '{_clip(text)}': {exc}{_HINT}") from None
    except RecursionError:
        raise ExprError(f"Invalid 'when' expression '{_clip(text)}': expression too deeply nested") from None
    if _height(tree) > MAX_TREE_HEIGHT:
        raise ExprError(f"Invalid 'when' expression '{_clip(text)}': expression too deeply nested")
    return tree


# --- evaluation -------------------------------------------------------------------------------------


def _show(v: Any) -> str:
    if isinstance(v, Mapping):
        return go_sprint(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, list):
        return "[" + " ".join(_show(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, float)


def _int64(v: float) -> int:
    if math.isnan(v) or math.isinf(v):
        return 0
    return max(-(2**63), min(2**63 - 1, int(v)))


def _deep_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _modifier(op: str, a: Any, b: Any) -> Any:
    if op == "+":
        if _is_num(a) and _is_num(b):
            return a + b
        if isinstance(a, str) or isinstance(b, str):
            text = _show(a) + _show(b)
            if len(text) > MAX_SOURCE * 4:
                raise ExprError("string result too large")
            return text
        raise ExprError(f"Value '{_show(a)}' cannot be used with the modifier '+', it is not a number")
    for v in (a, b):
        if not _is_num(v):
            raise ExprError(f"Value '{_show(v)}' cannot be used with the modifier '{op}', it is not a number")
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
        return a / b
    if op == "%":
        return math.nan if b == 0 else math.fmod(a, b)
    if op == "**":
        try:
            return math.pow(a, b)
        except OverflowError:
            return math.inf
        except (ValueError, ZeroDivisionError):
            return math.inf if a == 0 else math.nan
    x, y = _int64(a), _int64(b)
    if op == "&":
        return float(x & y)
    if op == "|":
        return float(x | y)
    if op == "^":
        return float(x ^ y)
    shift = min(max(y, 0), 64)
    unsigned = x & 0xFFFFFFFFFFFFFFFF
    if op == "<<":
        return float((unsigned << shift) & 0xFFFFFFFFFFFFFFFF)
    return float(unsigned >> shift)


def _comparator(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _deep_equal(a, b)
    if op == "!=":
        return not _deep_equal(a, b)
    if op in ("=~", "!~"):
        if not isinstance(a, str):
            raise ExprError(
                f"Value '{_show(a)}' cannot be used with the comparator '{op}', it is not a string"
            )
        if not isinstance(b, str):
            raise ExprError(
                f"Value '{_show(b)}' cannot be used with the comparator '{op}', it is not a pattern"
            )
        try:
            found = compile_regex(b).matches(a)
        except ExprError as exc:
            raise ExprError(f"Unable to compile regexp pattern '{b}': {exc}") from None
        return found if op == "=~" else not found
    if op == "in":
        if not isinstance(b, list):
            raise ExprError(f"Value '{_show(b)}' cannot be used with the comparator 'in', it is not an array")
        return any(_deep_equal(a, x) for x in b)
    if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise ExprError(f"Value '{_show(a)}' cannot be used with the comparator '{op}', it is not a number")
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _bool(op: str, v: Any, kind: str = "logical operator") -> bool:
    if isinstance(v, bool):
        return v
    raise ExprError(f"Value '{_show(v)}' cannot be used with the {kind} '{op}', it is not a bool")


def _eval(node: _Node, params: Mapping[str, Any] | None = None) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "var":
        return _variable(node[1], params or {})
    if kind == "list":
        return [_eval(child, params) for child in node[1]]
    if kind == "prefix":
        op, value = node[1], _eval(node[2], params)
        if op == "!":
            if not isinstance(value, bool):
                raise ExprError(f"Value '{_show(value)}' cannot be used with the prefix '!'")
            return not value
        if not _is_num(value):
            raise ExprError(f"Value '{_show(value)}' cannot be used with the prefix '{op}'")
        return -value if op == "-" else float(~_int64(value))
    op = node[1]
    if op == "&&":
        return _bool(op, _eval(node[2], params)) and _bool(op, _eval(node[3], params))
    if op == "||":
        return _bool(op, _eval(node[2], params)) or _bool(op, _eval(node[3], params))
    if op == "?":
        return _eval(node[3], params) if _bool(op, _eval(node[2], params), "ternary operator") else None
    if op in (":", "??"):
        left = _eval(node[2], params)
        return left if left is not None else _eval(node[3], params)
    left, right = _eval(node[2], params), _eval(node[3], params)
    if op in _COMPARATORS:
        return _comparator(op, left, right)
    return _modifier(op, left, right)


def evaluate_when(text: str) -> bool:
    """Evaluate an already-substituted ``when`` condition; a blank condition is true."""
    if not isinstance(text, str):
        raise ExprError(f"when expression must be a string, not {type(text).__name__}")
    if not text.strip():
        return True
    if len(text) > MAX_SOURCE:
        raise ExprError(f"Invalid 'when' expression: longer than {MAX_SOURCE} characters")
    tree = _parse(text)
    try:
        result = _eval(tree)
    except ExprError as exc:
        raise ExprError(f"Failed to evaluate 'when' expression '{_clip(text)}': {exc}") from None
    except RecursionError:
        raise ExprError(
            f"Failed to evaluate 'when' expression '{_clip(text)}': expression too deeply nested"
        ) from None
    if not isinstance(result, bool):
        raise ExprError(f"when expression '{_clip(text)}' must evaluate to a boolean, got {_show(result)}")
    return result


# --- variables (Argo Events expression filters) -------------------------------------------------------


def _variable(path: tuple[str, ...], params: Mapping[str, Any]) -> Any:
    name = path[0]
    if name not in params:
        raise ExprError(f"No parameter '{name}' found.")
    value = params[name]
    if len(path) > 1:
        # govaluate reads a dotted name as struct field access; JSON values are never structs.
        raise ExprError(f"Unable to access '{path[1]}', '{name}' is not a struct")
    return value


def _json_value(value: Any, depth: int = 0) -> Any:
    """A parameter as govaluate holds it: every number a float64, lists and maps copied as plain data."""
    if depth > MAX_DATA_DEPTH:
        raise ExprError("parameter value nested too deeply")
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise ExprError("parameter number too large for float64") from None
    if isinstance(value, Mapping):
        return {str(k): _json_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, depth + 1) for v in value]
    raise ExprError(f"parameter of unsupported type {type(value).__name__}")


def check_govaluate(text: str) -> None:
    """Raise ExprError when ``text`` is not a valid govaluate expression (the parse alone, for
    validating a Sensor's expression filters before any event arrives)."""
    if not isinstance(text, str):
        raise ExprError(f"expression must be a string, not {type(text).__name__}")
    if len(text) > MAX_SOURCE:
        raise ExprError(f"Invalid expression: longer than {MAX_SOURCE} characters")
    if not text.strip():
        raise ExprError("Invalid expression '': Unexpected end of expression")
    _parse_with_variables(text)


def evaluate_govaluate(text: str, parameters: Mapping[str, Any]) -> Any:
    """Evaluate a govaluate expression whose bare words are variables bound in ``parameters``.

    This is Argo Events' expression filter (``filters.exprs[].expr``): ``fields`` bind names to values
    read from the event, so ``a == "b" && c != 10`` compares the value bound to ``a`` with a string and
    the one bound to ``c`` with a number. Values are JSON data; numbers compare as float64, whatever
    Python type they arrive as. A dotted name is govaluate's struct accessor, which JSON values do not
    support. An unbound name raises ExprError (``No parameter 'x' found.``). Returns the raw result,
    which need not be a bool.
    """
    check_govaluate(text)
    tree = _parse_with_variables(text)
    bound = {str(name): _json_value(value) for name, value in parameters.items()}
    try:
        return _eval(tree, bound)
    except ExprError as exc:
        raise ExprError(f"Failed to evaluate expression '{_clip(text)}': {exc}") from None
    except RecursionError:
        message = f"Failed to evaluate expression '{_clip(text)}': expression too deeply nested"
        raise ExprError(message) from None


def evaluate_govaluate_bool(text: str, parameters: Mapping[str, Any]) -> bool:
    """:func:`evaluate_govaluate` as Argo Events reads a filter: true only when the result is ``true``.

    A result of another type (a number, a string) is false, not an error, as in Argo Events.
    """
    return evaluate_govaluate(text, parameters) is True
