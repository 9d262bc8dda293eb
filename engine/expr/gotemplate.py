"""Go ``text/template`` with the Sprig functions: how Argo Events shapes event values into parameters.

A trigger parameter's ``dataTemplate`` / ``contextTemplate`` and a data filter's ``template`` are Go
templates run with ``.Input`` bound to the event data (JSON-decoded), the event context or the filtered
value. The events core calls :func:`render`; templates are compiled once and cached.

Language, as Go reads it:

* text with ``{{ }}`` actions; ``{{- `` and `` -}}`` trim the white space before / after; comments
  ``{{/* ... */}}``;
* operands: ``.`` and field chains ``.Input.body.name``, variables ``$`` and ``$x.a``, ``"..."`` and
  `````raw````` strings, ``'c'`` characters, numbers, ``true``/``false``/``nil``, ``(pipelines)``
  with fields after them;
* pipelines ``x | f a b`` (the piped value is the *last* argument of ``f``), function calls ``f a b``;
* ``if``/``else if``/``else``, ``with``/``else with``, ``range`` over lists, maps (sorted keys) and
  integers with ``$i, $v :=``, ``break``, ``continue``; ``$x := ...`` and ``$x = ...``;
* Go's functions ``and or not len index print printf println eq ne lt le gt ge html js urlquery call``
  and Sprig's, from :mod:`engine.expr.sprig` (Sprig's win when a name is in both, as in Go).

Go's rules kept because Argo users see them: a missing map key is ``<no value>`` when printed (so is a
JSON null); values print with ``fmt``'s ``%v`` (``map[a:1 b:2]``, ``[1 2]``, ``1e+06``); JSON numbers
are float64, so ``eq .Input.n 5`` compares a float with an int and fails, while ``eq .Input.n 5.0``
works; ``len`` of a string counts UTF-8 bytes. ``define``/``template``/``block`` are not supported.

Sandboxed and bounded: values are only mappings, lists and scalars (no attribute access on Python
objects); data is printed, never parsed as a template; a work budget bounds loops and calls, output has
a size cap, and nesting is limited. Every failure is an :class:`ExprError`.
"""

from __future__ import annotations

import functools
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from engine.errors import ExprError

from . import sprig
from .encoding import go_float, go_sprint
from .limits import INT_MAX, INT_MIN, MAX_DATA_DEPTH, MAX_NESTING, MAX_SOURCE, Budget
from .scope import Scope
from .sprig import go_quote
from .times import Duration, Time

__all__ = ["MAX_OUTPUT", "NO_VALUE", "WORK", "render"]

# Work units one rendering may spend (each command, loop iteration and value visited costs one; string
# building costs one per 16 characters). About a second of work at most.
WORK = 1_000_000
# Largest output one rendering may produce.
MAX_OUTPUT = 1 << 20
# Go's fmt refuses widths and precisions above this.
_MAX_WIDTH = 1_000_000

_SPACE = " \t\r\n"
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_GO_FUNCTIONS = frozenset(
    {
        "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt",
        "le", "gt", "ge", "html", "js", "urlquery", "call",
    }
)  # fmt: skip


class _NoValue:
    """Go's invalid ``reflect.Value``: what a missing map key yields. Printed as ``<no value>``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Final = _NoValue()
# The "no piped value" marker of a command that is first in its pipeline.
_NO_FINAL: Final = object()


def render(template: str, data: Mapping[str, Any]) -> str:
    """Execute ``template`` with ``data`` as dot (``.Input`` is ``data["Input"]``); ExprError on failure."""
    if not isinstance(template, str):
        raise ExprError(f"a template must be a string, not {type(template).__name__}")
    compiled = _compile(template)
    budget = Budget(WORK)
    root = _plain(data, budget, 0)
    machine = _Machine(template, budget, root)
    try:
        machine.walk(root, compiled)
    except RecursionError:
        raise ExprError("template: execution nested too deeply") from None
    except ExprError as exc:
        # Budget and size errors come from shared helpers; say where they happened.
        if str(exc).startswith("template: "):
            raise
        raise machine.error(str(exc)) from None
    return "".join(machine.out)


def _plain(value: Any, budget: Budget, depth: int) -> Any:
    """``value`` as Go's JSON decoding holds it: maps, lists, strings, float64 numbers, bools, nil."""
    if depth > MAX_DATA_DEPTH:
        raise ExprError("template data is nested too deeply")
    budget.spend(1)
    if value is None or isinstance(value, str | bool | float | Time | Duration):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise ExprError("template data holds a number too large for float64") from None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExprError(f"template data keys must be strings, not {type(key).__name__}")
            out[key] = _plain(item, budget, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, budget, depth + 1) for item in value]
    raise ExprError(f"template data cannot hold a value of type {type(value).__name__}")


# --- lexing -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    # ident | keyword | field | dot | var | string | number | bool | nil | pipe | ( | ) | := | = | , | end
    kind: str
    value: Any
    pos: int
    spaced: bool  # white space came before it

    def show(self) -> str:
        if self.kind == "end":
            return "end of action"
        if self.kind == "field":
            return "." + ".".join(self.value)
        if self.kind == "var":
            return f"${self.value}"
        if self.kind == "string":
            return go_quote(self.value)
        return str(self.value)


@dataclass(frozen=True, slots=True)
class _Piece:
    """The template as the lexer cuts it: a run of text, or one action's tokens."""

    text: str | None
    tokens: tuple[_Tok, ...]
    pos: int


_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]+)?)"
)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _line_col(source: str, pos: int) -> str:
    line = source.count("\n", 0, pos) + 1
    col = pos - (source.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{col}"


class _Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.pieces: list[_Piece] = []

    def error(self, pos: int, message: str) -> ExprError:
        return ExprError(f"template: {_line_col(self.src, pos)}: {message}")

    def run(self) -> list[_Piece]:
        src = self.src
        i = 0
        trim_next = False
        while i <= len(src):
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            if trim_next:
                text = text.lstrip(_SPACE)
            if j < 0:
                if text:
                    self.pieces.append(_Piece(text, (), i))
                break
            k = j + 2
            if src[k : k + 1] == "-" and src[k + 1 : k + 2] != "" and src[k + 1] in _SPACE:
                text = text.rstrip(_SPACE)
                k += 2
            if text:
                self.pieces.append(_Piece(text, (), i))
            if src.startswith("/*", k):
                i, trim_next = self.comment(j, k)
                continue
            tokens, i, trim_next = self.action(j, k)
            self.pieces.append(_Piece(None, tuple(tokens), j))
        return self.pieces

    def right_delim(self, i: int) -> tuple[int, bool] | None:
        """(index after the closing delimiter, trims) when one starts at ``i``."""
        src = self.src
        if i < len(src) and src[i] in _SPACE and src.startswith("-}}", i + 1):
            return i + 4, True
        if src.startswith("}}", i):
            return i + 2, False
        return None

    def comment(self, start: int, k: int) -> tuple[int, bool]:
        close = self.src.find("*/", k + 2)
        if close < 0:
            raise self.error(start, "unclosed comment")
        found = self.right_delim(close + 2)
        if found is None:
            raise self.error(start, "comment ends before closing delimiter")
        return found

    def action(self, start: int, i: int) -> tuple[list[_Tok], int, bool]:
        src = self.src
        n = len(src)
        tokens: list[_Tok] = []
        spaced = True
        while True:
            found = self.right_delim(i)
            if found is not None:
                tokens.append(_Tok("end", None, i, spaced))
                return tokens, found[0], found[1]
            if i >= n:
                raise self.error(start, "unclosed action")
            c = src[i]
            if c in _SPACE:
                spaced = True
                i += 1
                continue
            tok, i = self.token(i, spaced)
            tokens.append(tok)
            spaced = False

    def token(self, i: int, spaced: bool) -> tuple[_Tok, int]:
        src = self.src
        c = src[i]
        nxt = src[i + 1 : i + 2]
        if c in "()|,":
            return _Tok({"|": "pipe"}.get(c, c), c, i, spaced), i + 1
        if c == ":":
            if nxt != "=":
                raise self.error(i, "expected :=")
            return _Tok(":=", ":=", i, spaced), i + 2
        if c == "=":
            return _Tok("=", "=", i, spaced), i + 1
        if c == '"':
            value, end = self.quoted(i)
            return _Tok("string", value, i, spaced), end
        if c == "`":
            end = src.find("`", i + 1)
            if end < 0:
                raise self.error(i, "unterminated raw quoted string")
            return _Tok("string", src[i + 1 : end].replace("\r", ""), i, spaced), end + 1
        if c == "'":
            code, end = self.char(i)
            return _Tok("number", code, i, spaced), end
        if c.isdigit() or (c in "+-" and nxt != "") or (c == "." and nxt.isdigit()):
            return self.number(i, spaced)
        if c in ".$":
            j = i + 1
            while j < len(src) and _is_word(src[j]):
                j += 1
            name = src[i + 1 : j]
            self.check_terminator(j)
            if c == "$":
                return _Tok("var", name, i, spaced), j
            if not name:
                return _Tok("dot", ".", i, spaced), j
            names = [name]
            # Fold ".a.b.c" into one field token.
            while src[j : j + 1] == "." and j + 1 < len(src) and _is_word(src[j + 1]):
                k = j + 1
                while k < len(src) and _is_word(src[k]):
                    k += 1
                names.append(src[j + 1 : k])
                j = k
                self.check_terminator(j)
            return _Tok("field", tuple(names), i, spaced), j
        if _is_word(c):
            j = i
            while j < len(src) and _is_word(src[j]):
                j += 1
            word = src[i:j]
            self.check_terminator(j)
            if word in ("true", "false"):
                return _Tok("bool", word == "true", i, spaced), j
            if word == "nil":
                return _Tok("nil", None, i, spaced), j
            return _Tok("keyword" if word in _KEYWORDS else "ident", word, i, spaced), j
        raise self.error(i, f"unrecognized character in action: {c!r}")

    def check_terminator(self, j: int) -> None:
        src = self.src
        if j >= len(src) or src[j] in _SPACE or src[j] in ".,|:()" or src.startswith("}}", j):
            return
        raise self.error(j, f"bad character {src[j]!r}")

    def number(self, i: int, spaced: bool) -> tuple[_Tok, int]:
        match = _NUMBER.match(self.src, i)
        end = match.end() if match else i
        if match is None or end == i or (end < len(self.src) and _is_word(self.src[end])):
            raise self.error(i, f"bad number syntax: {self.src[i : max(end, i + 1)]!r}")
        text = match.group(0)
        return _Tok("number", _number_value(text, lambda m: self.error(i, m)), i, spaced), end

    def quoted(self, i: int) -> tuple[str, int]:
        src = self.src
        out: list[str] = []
        j = i + 1
        while True:
            if j >= len(src) or src[j] == "\n":
                raise self.error(i, "unterminated quoted string")
            c = src[j]
            if c == '"':
                return "".join(out), j + 1
            if c == "\\":
                text, j = self.escape(j, '"')
                out.append(text)
                continue
            out.append(c)
            j += 1

    def char(self, i: int) -> tuple[int, int]:
        src = self.src
        j = i + 1
        if j >= len(src) or src[j] in "\n'":
            raise self.error(i, "malformed character constant")
        if src[j] == "\\":
            text, j = self.escape(j, "'")
        else:
            text, j = src[j], j + 1
        if src[j : j + 1] != "'" or len(text) != 1:
            raise self.error(i, "malformed character constant")
        return ord(text), j + 1

    def escape(self, j: int, quote: str) -> tuple[str, int]:
        """The character a backslash escape at ``src[j]`` stands for, and the index after it."""
        src = self.src
        c = src[j + 1 : j + 2]
        if c in _ESCAPES:
            return _ESCAPES[c], j + 2
        if c == quote:
            return c, j + 2
        widths = {"x": 2, "u": 4, "U": 8}
        if c in widths:
            digits = src[j + 2 : j + 2 + widths[c]]
            if len(digits) == widths[c] and all(d in "0123456789abcdefABCDEF" for d in digits):
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    return chr(code), j + 2 + widths[c]
        elif c and c in "01234567":
            digits = src[j + 1 : j + 4]
            if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
                return chr(int(digits, 8)), j + 4
        raise self.error(j, "invalid escape in quoted string")


def _is_word(c: str) -> bool:
    return c == "_" or c.isalnum()


def _number_value(text: str, error: Callable[[str], ExprError]) -> int | float:
    """A number constant as Go's template engine types it: an int unless written with . e or E."""
    plain = text.replace("_", "")
    body = plain.lstrip("+-")
    lowered = body.lower()
    try:
        if lowered.startswith(("0x", "0b", "0o")) or not any(ch in lowered for ch in ".e"):
            if len(body) > 1 and body[0] == "0" and body[1].isdigit():
                value = int(plain[: len(plain) - len(body)] + "0o" + body[1:], 0)
            else:
                value = int(plain, 0)
            if not INT_MIN <= value <= INT_MAX:
                raise error(f"{text} overflows int")
            return value
        number = float(plain)
    except ValueError:
        raise error(f"bad number syntax: {text!r}") from None
    if math.isinf(number):
        raise error(f"number {text} out of range")
    return number


# --- syntax tree ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Dot:
    pass


@dataclass(frozen=True, slots=True)
class _Nil:
    pass


@dataclass(frozen=True, slots=True)
class _Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class _Ident:
    name: str


@dataclass(frozen=True, slots=True)
class _Chain:
    node: _Operand
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Sub:
    pipe: _Pipe


_Operand = _Field | _Var | _Dot | _Nil | _Lit | _Ident | _Chain | _Sub


@dataclass(frozen=True, slots=True)
class _Cmd:
    args: tuple[_Operand, ...]
    pos: int
    source: str


@dataclass(frozen=True, slots=True)
class _Pipe:
    decl: tuple[str, ...]
    assign: bool
    cmds: tuple[_Cmd, ...]


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Action:
    pipe: _Pipe


@dataclass(frozen=True, slots=True)
class _If:
    kind: str  # if | with
    pipe: _Pipe
    body: tuple[_Node, ...]
    orelse: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Range:
    pipe: _Pipe
    body: tuple[_Node, ...]
    orelse: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Jump:
    kind: str  # break | continue


_Node = _Text | _Action | _If | _Range | _Jump


# --- parsing ----------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str, pieces: list[_Piece]) -> None:
        self.src = source
        self.pieces = pieces
        self.at = 0
        self.vars: list[str] = [""]  # "$" is the root, named by the empty string
        self.range_depth = 0
        self.depth = 0
        self.toks: tuple[_Tok, ...] = ()
        self.i = 0

    def error(self, pos: int, message: str) -> ExprError:
        return ExprError(f"template: {_line_col(self.src, pos)}: {message}")

    def parse(self) -> tuple[_Node, ...]:
        nodes, stop, piece = self.items()
        if stop != "eof":
            assert piece is not None
            raise self.error(piece.pos, f"unexpected {{{{{stop}}}}}")
        return nodes

    def items(self) -> tuple[tuple[_Node, ...], str, _Piece | None]:
        """Nodes up to an ``{{end}}`` or ``{{else}}`` (returned with its piece) or the end of input."""
        nodes: list[_Node] = []
        while self.at < len(self.pieces):
            piece = self.pieces[self.at]
            self.at += 1
            if piece.text is not None:
                nodes.append(_Text(piece.text))
                continue
            self.toks, self.i = piece.tokens, 0
            first = self.toks[0]
            if first.kind != "keyword":
                pipe = self.pipeline("command", "end")
                nodes.append(_Action(pipe))
                continue
            word = first.value
            if word in ("end", "else"):
                if word == "end" and self.toks[1].kind != "end":
                    raise self.error(self.toks[1].pos, f"unexpected {self.toks[1].show()} in end")
                return tuple(nodes), word, piece
            self.i = 1
            if word in ("if", "with", "range"):
                nodes.append(self.control(word, piece))
            elif word in ("break", "continue"):
                if not self.range_depth:
                    raise self.error(first.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                if self.toks[1].kind != "end":
                    raise self.error(self.toks[1].pos, f"unexpected {self.toks[1].show()} in {word}")
                nodes.append(_Jump(word))
            else:
                raise self.error(first.pos, f"{{{{{word}}}}} is not supported here")
        return tuple(nodes), "eof", None

    def control(self, kind: str, piece: _Piece) -> _If | _Range:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(piece.pos, "template nested too deeply")
        mark = len(self.vars)
        pipe = self.pipeline(kind, "end")
        if kind == "range":
            self.range_depth += 1
        body, stop, stop_piece = self.items()
        if kind == "range":
            self.range_depth -= 1
        orelse: tuple[_Node, ...] = ()
        if stop == "eof":
            raise self.error(piece.pos, f"unexpected EOF: {{{{{kind}}}}} has no {{{{end}}}}")
        if stop == "else":
            assert stop_piece is not None
            self.toks, self.i = stop_piece.tokens, 1
            nxt = self.toks[1]
            if nxt.kind == "keyword" and nxt.value in ("if", "with") and nxt.value == kind:
                # {{else if x}} is {{else}}{{if x}}...{{end}} sharing the outer {{end}}.
                self.i = 2
                orelse = (self.control(kind, stop_piece),)
            elif nxt.kind != "end":
                raise self.error(nxt.pos, f"unexpected {nxt.show()} in else")
            else:
                orelse, stop, end_piece = self.items()
                if stop != "end":
                    where = end_piece.pos if end_piece is not None else stop_piece.pos
                    raise self.error(where, f"expected {{{{end}}}}; found {{{{{stop}}}}}")
        del self.vars[mark:]
        self.depth -= 1
        if kind == "range":
            return _Range(pipe, body, orelse)
        return _If(kind, pipe, body, orelse)

    # --- inside one action ---

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def pipeline(self, context: str, end: str) -> _Pipe:
        decl: list[str] = []
        assign = False
        start = self.peek()
        while self.peek().kind == "var" and self.toks[self.i + 1].kind in (":=", "=", ","):
            var = self.take()
            op = self.take()
            decl.append(var.value)
            if op.kind == ",":
                if context != "range" or len(decl) > 1:
                    raise self.error(op.pos, f"too many declarations in {context}")
                if self.peek().kind != "var":
                    raise self.error(self.peek().pos, "range can only initialize variables")
                continue
            assign = op.kind == "="
            if assign:
                for name in decl:
                    if name not in self.vars:
                        raise self.error(var.pos, f'undefined variable "${name}"')
            else:
                self.vars.extend(decl)
            break
        else:
            if decl:  # "$i," with nothing after it
                raise self.error(self.peek().pos, "range can only initialize variables")
        cmds: list[_Cmd] = []
        while True:
            tok = self.peek()
            if tok.kind == end:
                self.take()
                break
            if tok.kind in ("end", ")"):
                raise self.error(tok.pos, f"unexpected {tok.show()} in {context}")
            cmds.append(self.command(end))
        if not cmds:
            raise self.error(start.pos, f"missing value for {context}")
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], _Lit | _Dot | _Nil):
                raise self.error(cmd.pos, f"non executable command in pipeline stage {stage}")
        return _Pipe(tuple(decl), assign, tuple(cmds))

    def command(self, end: str) -> _Cmd:
        start = self.peek()
        args: list[_Operand] = []
        while True:
            operand = self.operand()
            if operand is None:
                tok = self.peek()
                raise self.error(tok.pos, f"unexpected {tok.show()} in operand")
            args.append(operand)
            tok = self.peek()
            if tok.kind == end:
                break
            if tok.kind == "pipe":
                self.take()
                break
            if not tok.spaced:
                raise self.error(tok.pos, f"unexpected {tok.show()} in operand")
        return _Cmd(tuple(args), start.pos, self.src[start.pos : tok.pos].strip())

    def operand(self) -> _Operand | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind == "field" and not self.peek().spaced:
            names: tuple[str, ...] = ()
            while self.peek().kind == "field" and not self.peek().spaced:
                names += self.take().value
            if isinstance(node, _Field):
                return _Field(node.names + names)
            if isinstance(node, _Var):
                return _Var(node.name, node.names + names)
            if isinstance(node, _Lit | _Nil | _Dot):
                raise self.error(self.toks[self.i - 1].pos, "unexpected . after term")
            return _Chain(node, names)
        return node

    def term(self) -> _Operand | None:
        tok = self.peek()
        kind = tok.kind
        if kind == "ident":
            self.take()
            if tok.value not in sprig.FUNCTIONS and tok.value not in _GO_FUNCTIONS:
                raise self.error(tok.pos, f'function "{tok.value}" not defined')
            return _Ident(tok.value)
        if kind == "dot":
            self.take()
            return _Dot()
        if kind == "nil":
            self.take()
            return _Nil()
        if kind == "var":
            self.take()
            if tok.value not in self.vars:
                raise self.error(tok.pos, f'undefined variable "${tok.value}"')
            return _Var(tok.value)
        if kind == "field":
            self.take()
            return _Field(tok.value)
        if kind in ("bool", "number", "string"):
            self.take()
            return _Lit(tok.value)
        if kind == "(":
            self.take()
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.error(tok.pos, "template nested too deeply")
            pipe = self.pipeline("parenthesized pipeline", ")")
            self.depth -= 1
            return _Sub(pipe)
        return None


@functools.lru_cache(maxsize=512)
def _compile(template: str) -> tuple[_Node, ...]:
    if len(template) > MAX_SOURCE:
        raise ExprError(f"template longer than {MAX_SOURCE} characters")
    try:
        return _Parser(template, _Lexer(template).run()).parse()
    except RecursionError:
        raise ExprError("template: nested too deeply") from None


# --- execution --------------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Machine:
    """One execution: the output, the variable stack and the work budget."""

    def __init__(self, source: str, budget: Budget, root: Any) -> None:
        self.src = source
        self.budget = budget
        self.out: list[str] = []
        self.size = 0
        self.vars: list[tuple[str, Any]] = [("", root)]
        self.scope = Scope({}, budget)
        self.cmd: _Cmd | None = None

    def error(self, message: str) -> ExprError:
        if self.cmd is None:
            return ExprError(f"template: {message}")
        where = _line_col(self.src, self.cmd.pos)
        return ExprError(f"template: {where}: executing at <{self.cmd.source}>: {message}")

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise ExprError(f"template: output larger than {MAX_OUTPUT} characters")
        self.budget.spend_string(len(text))
        self.out.append(text)

    # --- statements ---

    def walk(self, dot: Any, nodes: Sequence[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.emit(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.emit(_printed(value))
            elif isinstance(node, _If):
                self.branch(dot, node)
            elif isinstance(node, _Range):
                self.range(dot, node)
            else:
                raise _Break() if node.kind == "break" else _Continue()

    def branch(self, dot: Any, node: _If) -> None:
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        if _truth(value):
            self.walk(value if node.kind == "with" else dot, node.body)
        elif node.orelse:
            self.walk(dot, node.orelse)
        del self.vars[mark:]

    def range(self, dot: Any, node: _Range) -> None:
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        decl = node.pipe.decl
        if isinstance(value, list | tuple):
            pairs: Sequence[tuple[Any, Any]] | range = list(enumerate(value))
        elif isinstance(value, Mapping):
            pairs = [(key, value[key]) for key in sorted(value)]
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = range(value) if value > 0 else ()
        elif value is NO_VALUE or value is None:
            pairs = ()
        else:
            self.cmd = node.pipe.cmds[-1]
            raise self.error(f"range can't iterate over {_go_sprint_safe(value)}")
        ran = False
        for pair in pairs:
            key, item = (pair, pair) if isinstance(pair, int) else pair
            self.budget.spend(1)
            ran = True
            if decl:
                self.set_range_vars(mark, decl, node.pipe.assign, key, item)
            inner = len(self.vars)
            try:
                self.walk(item, node.body)
            except _Break:
                del self.vars[inner:]
                break
            except _Continue:
                pass
            del self.vars[inner:]
        if not ran and node.orelse:
            self.walk(dot, node.orelse)
        del self.vars[mark:]

    def set_range_vars(self, mark: int, decl: tuple[str, ...], assign: bool, key: Any, item: Any) -> None:
        values = (key, item) if len(decl) == 2 else (item,)
        for name, value in zip(decl, values, strict=True):
            if assign:
                self.assign(name, value)
            else:
                # The declarations were pushed when the pipeline ran; overwrite them in place.
                for index in range(len(self.vars) - 1, mark - 1, -1):
                    if self.vars[index][0] == name:
                        self.vars[index] = (name, value)
                        break

    def assign(self, name: str, value: Any) -> None:
        for index in range(len(self.vars) - 1, -1, -1):
            if self.vars[index][0] == name:
                self.vars[index] = (name, value)
                return
        raise self.error(f"undefined variable: ${name}")

    def variable(self, name: str) -> Any:
        for var_name, value in reversed(self.vars):
            if var_name == name:
                return value
        raise self.error(f"undefined variable: ${name}")

    # --- expressions ---

    def pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
            # Go digs a nil out of its interface: a nil result is "no value" from here on.
            if value is None:
                value = NO_VALUE
        for name in pipe.decl:
            if pipe.assign:
                self.assign(name, value)
            else:
                self.vars.append((name, value))
        return value

    def command(self, dot: Any, cmd: _Cmd, final: Any) -> Any:
        self.budget.spend(1)
        outer, self.cmd = self.cmd, cmd
        try:
            first = cmd.args[0]
            if isinstance(first, _Ident):
                return self.call(dot, first.name, cmd.args[1:], final)
            if len(cmd.args) > 1 or final is not _NO_FINAL:
                if isinstance(first, _Field):
                    raise self.error(f"{first.names[-1]} is not a method but has arguments")
                raise self.error(f"can't give argument to non-function {_show(first)}")
            if isinstance(first, _Nil):
                raise self.error("nil is not a command")
            return self.operand(dot, first)
        finally:
            self.cmd = outer

    def operand(self, dot: Any, node: _Operand) -> Any:
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Lit):
            return node.value
        if isinstance(node, _Field):
            return self.fields(dot, node.names)
        if isinstance(node, _Var):
            return self.fields(self.variable(node.name), node.names)
        if isinstance(node, _Sub):
            return self.pipeline(dot, node.pipe)
        if isinstance(node, _Ident):
            return self.call(dot, node.name, (), _NO_FINAL)
        value = self.operand(dot, node.node)
        if value is None:
            value = NO_VALUE
        return self.fields(value, node.names)

    def fields(self, receiver: Any, names: tuple[str, ...]) -> Any:
        for name in names:
            if receiver is NO_VALUE:
                return NO_VALUE
            if receiver is None:
                raise self.error(f"nil pointer evaluating interface {{}}.{name}")
            if not isinstance(receiver, Mapping):
                raise self.error(f"can't evaluate field {name} in type {_go_type(receiver)}")
            receiver = receiver.get(name, NO_VALUE)
        return receiver

    def call(self, dot: Any, name: str, arg_nodes: Sequence[_Operand], final: Any) -> Any:
        if name in ("and", "or"):
            return self.and_or(dot, name, arg_nodes, final)
        args = [self.operand(dot, node) for node in arg_nodes]
        if final is not _NO_FINAL:
            args.append(final)
        if name in sprig.FUNCTIONS:
            impl = sprig.call(name)
            try:
                return impl(self.scope, [None if a is NO_VALUE else a for a in args])
            except ExprError as exc:
                raise self.error(f"error calling {name}: {exc}") from None
            except Exception as exc:  # a Sprig function rejecting odd input is the template's error
                raise self.error(f"error calling {name}: {exc}") from None
        builtin = _BUILTINS[name]
        try:
            return builtin(self, args)
        except _CallError as exc:
            raise self.error(f"error calling {name}: {exc}") from None

    def and_or(self, dot: Any, name: str, arg_nodes: Sequence[_Operand], final: Any) -> Any:
        if not arg_nodes and final is _NO_FINAL:
            raise self.error(f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = NO_VALUE
        for node in arg_nodes:
            value = self.operand(dot, node)
            if _truth(value) == (name == "or"):
                return value
        if final is not _NO_FINAL:
            value = final
        return value


# --- values -----------------------------------------------------------------------------------------


def _show(node: _Operand) -> str:
    if isinstance(node, _Dot):
        return "."
    if isinstance(node, _Lit):
        return go_quote(node.value) if isinstance(node.value, str) else _go_sprint_safe(node.value)
    if isinstance(node, _Field):
        return "." + ".".join(node.names)
    if isinstance(node, _Var):
        return "$" + "".join("." + n for n in (node.name, *node.names))[1:]
    return "pipeline"


def _printed(value: Any) -> str:
    if value is NO_VALUE or value is None:
        return "<no value>"
    if isinstance(value, str):
        return value
    return _go_sprint_safe(value)


def _go_sprint_safe(value: Any) -> str:
    if value is NO_VALUE:
        return "<no value>"
    return go_sprint(value)


def _truth(value: Any) -> bool:
    """Go's ``isTrue``: zero values, empty collections and nil are false."""
    if value is NO_VALUE or value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    if isinstance(value, Duration):
        return value.nanos != 0
    return True


def _go_type(value: Any) -> str:
    """``%T`` of the Go value."""
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    if isinstance(value, Time):
        return "time.Time"
    if isinstance(value, Duration):
        return "time.Duration"
    return type(value).__name__


class _CallError(Exception):
    """A Go builtin function's error, reported as ``error calling f: ...``."""


def _arity(args: list[Any], name: str, want: int) -> None:
    if len(args) != want:
        raise _CallError(f"wrong number of args for {name}: want {want} got {len(args)}")


# --- Go's comparison functions ---


def _kind(value: Any) -> str:
    if value is NO_VALUE or value is None:
        return "invalid"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(args: list[Any]) -> bool:
    if not args:
        raise _CallError("wrong number of args for eq: want at least 1 got 0")
    first, rest = args[0], args[1:]
    if not rest:
        raise _CallError("missing argument for comparison")
    k1 = _kind(first)
    for other in rest:
        k2 = _kind(other)
        if k1 != k2:
            if k1 != "invalid" and k2 != "invalid":
                raise _CallError("incompatible types for comparison")
            continue
        if k1 == "invalid":
            return True
        if k1 == "other":
            if isinstance(first, Mapping | list | tuple) or isinstance(other, Mapping | list | tuple):
                raise _CallError(f"non-comparable type {_go_sprint_safe(first)}: {_go_type(first)}")
            if type(first) is type(other) and first == other:
                return True
            continue
        if first == other:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    k1, k2 = _kind(a), _kind(b)
    if k1 in ("invalid", "other") or k2 in ("invalid", "other"):
        raise _CallError("invalid type for comparison")
    if k1 != k2:
        raise _CallError("incompatible types for comparison")
    if k1 == "bool":
        raise _CallError("invalid type for comparison")
    return bool(a < b)


def _compare(name: str) -> Callable[[_Machine, list[Any]], Any]:
    def run(machine: _Machine, args: list[Any]) -> Any:
        if name == "eq":
            return _eq(args)
        _arity(args, name, 2)
        a, b = args
        if name == "ne":
            return not _eq([a, b])
        if name == "lt":
            return _lt(a, b)
        if name == "ge":
            return not _lt(a, b)
        less_or_equal = _lt(a, b) or _eq([a, b])
        return less_or_equal if name == "le" else not less_or_equal

    return run


# --- Go's other builtins ---


def _not(machine: _Machine, args: list[Any]) -> bool:
    _arity(args, "not", 1)
    return not _truth(args[0])


def _len(machine: _Machine, args: list[Any]) -> int:
    _arity(args, "len", 1)
    value = args[0]
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list | tuple | Mapping):
        return len(value)
    if value is None or value is NO_VALUE:
        raise _CallError("len of nil pointer")
    raise _CallError(f"len of type {_go_type(value)}")


def _index(machine: _Machine, args: list[Any]) -> Any:
    if not args:
        raise _CallError("wrong number of args for index: want at least 1 got 0")
    item = args[0]
    if item is NO_VALUE or item is None:
        raise _CallError("index of untyped nil")
    for key in args[1:]:
        if item is None:
            raise _CallError("index of nil pointer")
        if isinstance(item, list | tuple | str):
            if key is None or key is NO_VALUE:
                raise _CallError("cannot index slice/array with nil")
            if not isinstance(key, int) or isinstance(key, bool):
                raise _CallError(f"cannot index slice/array with type {_go_type(key)}")
            sequence = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
            if not 0 <= key < len(sequence):
                raise _CallError(f"index out of range: {key}")
            item = sequence[key]
        elif isinstance(item, Mapping):
            if not isinstance(key, str):
                raise _CallError(f"value has type {_go_type(key)}; should be string")
            item = item.get(key)
        else:
            raise _CallError(f"can't index item of type {_go_type(item)}")
    return item


def _print_args(args: list[Any]) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out: list[str] = []
    previous_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i and not is_string and not previous_string:
            out.append(" ")
        out.append(_go_sprint_safe(None if arg is NO_VALUE else arg))
        previous_string = is_string
    return "".join(out)


def _print(machine: _Machine, args: list[Any]) -> str:
    text = _print_args(args)
    machine.budget.spend_string(len(text))
    return text


def _println(machine: _Machine, args: list[Any]) -> str:
    text = " ".join(_go_sprint_safe(None if a is NO_VALUE else a) for a in args) + "\n"
    machine.budget.spend_string(len(text))
    return text


def _escaper_input(args: list[Any]) -> str:
    # Go's evalArgs: one string is used as it is; otherwise nil prints as <no value>, then fmt.Sprint.
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    printable: list[Any] = ["<no value>" if a is NO_VALUE or a is None else a for a in args]
    return _print_args(printable)


_HTML = str.maketrans({"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"})
_JS = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _html(machine: _Machine, args: list[Any]) -> str:
    return _escaper_input(args).translate(_HTML)


def _js(machine: _Machine, args: list[Any]) -> str:
    out: list[str] = []
    for ch in _escaper_input(args):
        if ch in _JS:
            out.append(_JS[ch])
        elif ch < " " or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(machine: _Machine, args: list[Any]) -> str:
    return urllib.parse.quote_plus(_escaper_input(args), safe="", errors="surrogatepass")


def _call(machine: _Machine, args: list[Any]) -> Any:
    if not args:
        raise _CallError("wrong number of args for call: want at least 1 got 0")
    raise _CallError(f"non-function of type {_go_type(args[0])}")


def _printf(machine: _Machine, args: list[Any]) -> str:
    if not args:
        raise _CallError("wrong number of args for printf: want at least 1 got 0")
    layout = args[0]
    if not isinstance(layout, str):
        raise _CallError(f"wrong type for value; expected string; got {_go_type(layout)}")
    text = _sprintf(layout, [None if a is NO_VALUE else a for a in args[1:]])
    machine.budget.spend_string(len(text))
    return text


_BUILTINS: dict[str, Callable[[_Machine, list[Any]], Any]] = {
    "not": _not,
    "len": _len,
    "index": _index,
    "print": _print,
    "printf": _printf,
    "println": _println,
    "html": _html,
    "js": _js,
    "urlquery": _urlquery,
    "call": _call,
    **{name: _compare(name) for name in ("eq", "ne", "lt", "le", "gt", "ge")},
}


# --- fmt.Sprintf ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    flags: str
    width: int | None
    precision: int | None


def _sprintf(layout: str, args: list[Any]) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use: v s d q f F e E g G x X o b c U t T and %%."""
    out: list[str] = []
    used = 0
    i = 0
    n = len(layout)
    while i < n:
        percent = layout.find("%", i)
        if percent < 0:
            out.append(layout[i:])
            break
        out.append(layout[i:percent])
        i = percent + 1
        flags = ""
        while i < n and layout[i] in "+-# 0":
            flags += layout[i]
            i += 1
        width: int | None = None
        precision: int | None = None
        bad = ""
        if i < n and layout[i] == "*":
            i += 1
            width, used, bad = _star(args, used, "BADWIDTH")
            if width is not None and width < 0:
                flags, width = flags + "-", -width
        else:
            width, i = _digits(layout, i)
            if width is not None and width > _MAX_WIDTH:
                width, bad = None, "BADWIDTH"
        if i < n and layout[i] == ".":
            i += 1
            if i < n and layout[i] == "*":
                i += 1
                precision, used, bad_precision = _star(args, used, "BADPREC")
                bad = bad or bad_precision
                if precision is not None and precision < 0:
                    precision = None
            else:
                precision, i = _digits(layout, i)
                precision = precision or 0
                if precision > _MAX_WIDTH:
                    precision, bad = None, "BADPREC"
        if bad:
            out.append(f"%!({bad})")
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = layout[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format(args[used], verb, _Spec(flags, width, precision), 0))
        used += 1
    if used < len(args):
        extra = ", ".join(
            "<nil>" if a is None else f"{_go_type(a)}={_go_sprint_safe(a)}" for a in args[used:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _digits(layout: str, i: int) -> tuple[int | None, int]:
    start = i
    while i < len(layout) and layout[i].isdigit():
        i += 1
    if i == start:
        return None, i
    # Anything longer than eight digits is over the limit anyway; do not build a huge int.
    return (int(layout[start:i]) if i - start <= 8 else _MAX_WIDTH + 1), i


def _star(args: list[Any], used: int, bad: str) -> tuple[int | None, int, str]:
    if used >= len(args):
        return None, used, bad
    value = args[used]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _MAX_WIDTH:
        return value, used + 1, ""
    return None, used + 1, bad


def _format(value: Any, verb: str, spec: _Spec, depth: int) -> str:
    if depth > MAX_DATA_DEPTH:
        raise ExprError("value nested too deeply to format")
    if verb == "T":
        return _pad(_go_type(value), spec, numeric=False)
    if value is None:
        return _pad("<nil>", spec, numeric=False) if verb == "v" else f"%!{verb}(<nil>)"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_format(item, verb, spec, depth + 1) for item in value) + "]"
    if isinstance(value, Mapping):
        keys = sorted(value, key=str)
        return (
            "map["
            + " ".join(
                f"{_format(k, verb, spec, depth + 1)}:{_format(value[k], verb, spec, depth + 1)}"
                for k in keys
            )
            + "]"
        )
    if isinstance(value, bool):
        if verb in "tv":
            return _pad("true" if value else "false", spec, numeric=False)
        return _bad_verb(verb, value)
    if isinstance(value, int):
        return _format_int(value, verb, spec)
    if isinstance(value, float):
        return _format_float(value, verb, spec)
    if isinstance(value, str):
        return _format_str(value, verb, spec)
    if verb in "vs":
        return _pad(str(value), spec, numeric=False)
    return _bad_verb(verb, value)


def _bad_verb(verb: str, value: Any) -> str:
    return f"%!{verb}({_go_type(value)}={_go_sprint_safe(value)})"


def _pad(text: str, spec: _Spec, *, numeric: bool) -> str:
    width = spec.width
    if width is None or len(text) >= width:
        return text
    fill = width - len(text)
    if "-" in spec.flags:
        return text + " " * fill
    if numeric and "0" in spec.flags:
        sign = text[0] if text and text[0] in "+- " else ""
        body = text[len(sign) :]
        prefix = body[:2] if body[:2].lower() in ("0x", "0b", "0o") else ""
        return sign + prefix + "0" * fill + body[len(prefix) :]
    return " " * fill + text


def _sign(negative: bool, flags: str) -> str:
    if negative:
        return "-"
    if "+" in flags:
        return "+"
    if " " in flags:
        return " "
    return ""


def _format_int(value: int, verb: str, spec: _Spec) -> str:
    flags = spec.flags
    magnitude = abs(value)
    prefix = ""
    if verb in "dv":
        digits = str(magnitude)
    elif verb == "b":
        digits = format(magnitude, "b")
        prefix = "0b" if "#" in flags else ""
    elif verb == "o":
        digits = format(magnitude, "o")
        prefix = "0" if "#" in flags else ""
    elif verb == "O":
        digits, prefix = format(magnitude, "o"), "0o"
    elif verb in "xX":
        digits = format(magnitude, verb)
        prefix = ("0" + verb) if "#" in flags else ""
    elif verb == "c":
        return _pad(_rune(value), spec, numeric=False)
    elif verb == "q":
        return _pad("'" + go_quote(_rune(value))[1:-1].replace("'", "\\'") + "'", spec, numeric=False)
    elif verb == "U":
        return _pad(f"U+{value:04X}" if value >= 0 else _bad_verb(verb, value), spec, numeric=False)
    else:
        return _bad_verb(verb, value)
    if spec.precision is not None:
        digits = digits.zfill(spec.precision) if spec.precision or value else ""
        # An explicit precision turns zero padding off, as in Go.
        spec = _Spec(spec.flags.replace("0", ""), spec.width, spec.precision)
    return _pad(_sign(value < 0, flags) + prefix + digits, spec, numeric=True)


def _rune(value: int) -> str:
    if 0 <= value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
        return chr(value)
    return "\ufffd"


def _format_float(value: float, verb: str, spec: _Spec) -> str:
    if verb not in "vfFeEgG":
        return _bad_verb(verb, value)
    if math.isnan(value) or math.isinf(value):
        # Go keeps the sign of an infinity, drops NaN's unless asked, and never zero-pads either.
        if math.isnan(value):
            text = ("+" if "+" in spec.flags else " " if " " in spec.flags else "") + "NaN"
        else:
            plus = " " if " " in spec.flags and "+" not in spec.flags else "+"
            text = ("-" if value < 0 else plus) + "Inf"
        return _pad(text, _Spec(spec.flags.replace("0", ""), spec.width, None), numeric=False)
    negative = math.copysign(1.0, value) < 0
    magnitude = abs(value)
    precision = spec.precision
    if verb in "vgG" and precision is None:
        body = go_float(magnitude)
        if verb == "G":
            body = body.upper()
    elif verb in "vgG":
        body = f"%.{max(precision or 0, 1)}{'G' if verb == 'G' else 'g'}" % magnitude
    else:
        letter = "f" if verb in "fF" else verb
        body = f"%.{6 if precision is None else precision}{letter}" % magnitude
    return _pad(_sign(negative, spec.flags) + body, spec, numeric=True)


def _format_str(value: str, verb: str, spec: _Spec) -> str:
    if verb in "vs":
        text = value if spec.precision is None else value[: spec.precision]
        return _pad(text, spec, numeric=False)
    if verb == "q":
        text = value if spec.precision is None else value[: spec.precision]
        return _pad(go_quote(text), spec, numeric=False)
    if verb in "xX":
        data = value.encode("utf-8", "surrogatepass")
        if spec.precision is not None:
            data = data[: spec.precision]
        text = data.hex() if verb == "x" else data.hex().upper()
        if "#" in spec.flags and text:
            text = "0" + verb + text
        return _pad(text, spec, numeric=False)
    return _bad_verb(verb, value)
