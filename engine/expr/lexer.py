"""Tokenizer for the expr-lang subset used in ``{{= }}`` tags and Argo's expression fields.

Produces the token list :mod:`engine.expr.parser` consumes. Follows expr-lang's lexical rules: ``'..'``,
``".."`` and backtick strings, decimal/hex/octal/binary integers with ``_`` separators, floats such as
``.5`` and ``1e3``, ``//`` and ``/* */`` comments, ``#`` pointers inside predicates. Identifiers never
contain ``-``: Argo users write ``inputs.parameters['my-param']``.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ExprError

from .limits import MAX_SOURCE

# Word operators: the parser gives them operator meaning, but after '.' they are ordinary names.
WORD_OPERATORS = frozenset({"and", "or", "not", "in", "matches", "contains", "startsWith", "endsWith"})

_SYMBOLS = (
    "?.", "??", "..", "==", "!=", "<=", ">=", "&&", "||", "**",
    "<", ">", "+", "-", "*", "/", "%", "^", "!", "?", ":", ".", ",", "|",
    "(", ")", "[", "]", "{", "}", "#", ";",
)  # fmt: skip

_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "str", "ident", "op", "eof"
    value: object
    text: str
    pos: int

    def is_op(self, value: str) -> bool:
        return self.kind == "op" and self.text == value


def _error(message: str, source: str, pos: int) -> ExprError:
    return ExprError(f"{message} (at column {pos + 1})", expression=source)


def _is_ident_start(c: str) -> bool:
    return c in "_$" or c.isalpha()


def _is_ident_char(c: str) -> bool:
    return c in "_$" or c.isalnum()


def tokenize(source: str) -> list[Token]:
    if len(source) > MAX_SOURCE:
        raise ExprError(f"expression too long ({len(source)} characters, limit {MAX_SOURCE})")
    tokens: list[Token] = []
    i = 0
    n = len(source)
    while i < n:
        c = source[i]
        if c.isspace():
            i += 1
            continue
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise _error("unclosed comment", source, i)
            i = end + 2
            continue
        start = i
        if c.isdigit() or (c == "." and i + 1 < n and source[i + 1].isdigit() and not _ends_operand(tokens)):
            tok, i = _number(source, i)
            tokens.append(tok)
            continue
        if c in "'\"":
            value, i = _quoted(source, i)
            tokens.append(Token("str", value, source[start:i], start))
            continue
        if c == "`":
            end = source.find("`", i + 1)
            if end < 0:
                raise _error("unclosed raw string", source, i)
            tokens.append(Token("str", source[i + 1 : end], source[start : end + 1], start))
            i = end + 1
            continue
        if _is_ident_start(c):
            while i < n and _is_ident_char(source[i]):
                i += 1
            word = source[start:i]
            if word in WORD_OPERATORS:
                tokens.append(Token("op", word, word, start))
            else:
                tokens.append(Token("ident", word, word, start))
            continue
        for sym in _SYMBOLS:
            if source.startswith(sym, i):
                # "?." followed by a digit is a ternary on a float (a ?.5 : 1), not optional chaining.
                if sym == "?." and i + 2 < n and source[i + 2].isdigit():
                    continue
                tokens.append(Token("op", sym, sym, start))
                i += len(sym)
                break
        else:
            raise _error(f"unrecognized character {c!r}", source, i)
    tokens.append(Token("eof", None, "", n))
    return tokens


def _ends_operand(tokens: list[Token]) -> bool:
    """Whether '.' here must be member access (after a name, literal or closing bracket)."""
    if not tokens:
        return False
    last = tokens[-1]
    return last.kind in ("ident", "num", "str") or (last.kind == "op" and last.text in (")", "]", "}"))


def _number(source: str, i: int) -> tuple[Token, int]:
    n = len(source)
    start = i
    if source[i] == "0" and i + 1 < n and source[i + 1] in "xXoObB":
        base = {"x": 16, "o": 8, "b": 2}[source[i + 1].lower()]
        i += 2
        while i < n and (source[i].isalnum() or source[i] == "_"):
            i += 1
        text = source[start:i]
        try:
            value = int(text.replace("_", ""), base)
        except ValueError:
            raise _error(f"invalid number {text!r}", source, start) from None
        return Token("num", value, text, start), i
    is_float = False
    while i < n and (source[i].isdigit() or source[i] == "_"):
        i += 1
    # A '.' begins a fraction unless it starts the range operator '..' or a member name.
    fraction = i < n and source[i] == "." and not source.startswith("..", i)
    if fraction and (i + 1 >= n or not _is_ident_start(source[i + 1])):
        is_float = True
        i += 1
        while i < n and (source[i].isdigit() or source[i] == "_"):
            i += 1
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j < n and source[j].isdigit():
            is_float = True
            i = j
            while i < n and source[i].isdigit():
                i += 1
    text = source[start:i]
    if i < n and _is_ident_char(source[i]):
        raise _error(f"invalid number {source[start : i + 1]!r}", source, start)
    clean = text.replace("_", "")
    if clean.endswith("_") or "__" in text:
        raise _error(f"invalid number {text!r}", source, start)
    try:
        if is_float:
            return Token("num", float(clean), text, start), i
        if len(clean) > 1 and clean.startswith("0") and clean.isdigit():
            # A leading zero means octal in Go literals.
            return Token("num", int(clean, 8), text, start), i
        return Token("num", int(clean), text, start), i
    except ValueError:
        raise _error(f"invalid number {text!r}", source, start) from None


def _quoted(source: str, i: int) -> tuple[str, int]:
    quote = source[i]
    start = i
    i += 1
    n = len(source)
    out: list[str] = []
    while i < n:
        c = source[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\n":
            break
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = source[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = source[i + 2 : i + 2 + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise _error("invalid escape in string literal", source, i)
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise _error("invalid Unicode code point in string literal", source, i)
            out.append(chr(code))
            i += 2 + width
        elif e in "01234567":
            digits = source[i + 1 : i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise _error("invalid octal escape in string literal", source, i)
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise _error(f"invalid escape \\{e} in string literal", source, i)
    raise _error("literal not terminated", source, start)
