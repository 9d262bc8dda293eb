"""Precedence-climbing parser for the expr-lang subset; turns tokens into :mod:`engine.expr.nodes`.

Operator precedences, chained comparisons (``a < b < c`` means ``a < b && b < c``), ``not in`` and
friends, the ``?:`` ternary and its ``?:`` short form, ``??`` (which may not be mixed with other
operators without parentheses), pipes (``x | f(y)`` is ``f(x, y)``) and predicate arguments
(``filter(xs, {# > 1})`` or without braces) follow expr-lang. Called by :mod:`engine.expr.evaluator`.
"""

from __future__ import annotations

from engine.errors import ExprError

from . import nodes as n
from .lexer import WORD_OPERATORS, Token, tokenize
from .limits import INT_MAX, MAX_NESTING, MAX_TREE_HEIGHT

# (precedence, right associative)
BINARY: dict[str, tuple[int, bool]] = {
    "|": (0, False),
    "or": (10, False),
    "||": (10, False),
    "and": (15, False),
    "&&": (15, False),
    "==": (20, False),
    "!=": (20, False),
    "<": (20, False),
    ">": (20, False),
    ">=": (20, False),
    "<=": (20, False),
    "in": (20, False),
    "matches": (20, False),
    "contains": (20, False),
    "startsWith": (20, False),
    "endsWith": (20, False),
    "..": (25, False),
    "+": (30, False),
    "-": (30, False),
    "*": (60, False),
    "/": (60, False),
    "%": (60, False),
    "**": (100, True),
    "^": (100, True),
    "??": (500, False),
}
UNARY = {"not": 50, "!": 50, "-": 90, "+": 90}
_COMPARISON = 20
_NEGATABLE = frozenset({"in", "matches", "contains", "startsWith", "endsWith"})

# Builtins whose argument at the given position is a predicate, and how many arguments they take.
PREDICATE_BUILTINS: dict[str, tuple[int, int, int]] = {
    # name: (predicate position, min args, max args)
    "all": (1, 2, 2),
    "none": (1, 2, 2),
    "any": (1, 2, 2),
    "one": (1, 2, 2),
    "filter": (1, 2, 2),
    "map": (1, 2, 2),
    "count": (1, 1, 2),
    "sum": (1, 1, 2),
    "find": (1, 2, 2),
    "findIndex": (1, 2, 2),
    "findLast": (1, 2, 2),
    "findLastIndex": (1, 2, 2),
    "groupBy": (1, 2, 2),
    "sortBy": (1, 2, 3),
    "reduce": (1, 2, 3),
}


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.pos = 0
        self.nesting = 0
        self.predicates = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def error(self, message: str, tok: Token | None = None) -> ExprError:
        at = (tok or self.current).pos
        return ExprError(f"{message} (at column {at + 1})", expression=self.source)

    def unexpected(self, tok: Token | None = None) -> ExprError:
        tok = tok or self.current
        if tok.kind == "eof":
            return self.error("unexpected end of expression", tok)
        return self.error(f"unexpected token {tok.text!r}", tok)

    def expect_op(self, value: str, message: str | None = None) -> Token:
        if not self.current.is_op(value):
            if message:
                raise self.error(message)
            raise self.unexpected()
        return self.advance()

    # --- expressions --------------------------------------------------------------------------------

    def expression(self, precedence: int = 0) -> n.Node:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ExprError("expression too deeply nested", expression=self.source)
        left = self.primary()
        prev = ""
        while True:
            tok = self.current
            if tok.kind != "op":
                break
            negate = tok.text == "not"
            op_tok = tok
            if negate:
                following = self.tokens[self.pos + 1]
                if following.kind == "op" and following.text in _NEGATABLE:
                    if BINARY[following.text][0] < precedence:
                        break
                    self.advance()
                    op_tok = following
                else:
                    raise self.unexpected(following)
            spec = BINARY.get(op_tok.text)
            if spec is None or spec[0] < precedence:
                break
            prec, right_assoc = spec
            self.advance()
            if prev == "??" and op_tok.text != "??":
                raise self.error(
                    f"operator ({op_tok.text}) and coalesce expressions (??) cannot be mixed; "
                    "wrap either in parentheses",
                    op_tok,
                )
            if op_tok.text == "|":
                name = self.current
                if name.kind != "ident":
                    raise self.error("expected a function call after the pipe operator |")
                self.advance()
                left = self.call(name, [left])
            elif prec == _COMPARISON:
                left = self.comparison(left, op_tok.text, prec)
            else:
                right = self.expression(prec if right_assoc else prec + 1)
                left = n.Binary(op_tok.text, left, right)
            if negate:
                left = n.Unary("!", left)
            prev = op_tok.text
        if precedence == 0:
            left = self.conditional(left)
        self.nesting -= 1
        return left

    def comparison(self, left: n.Node, op: str, prec: int) -> n.Node:
        root: n.Node | None = None
        while True:
            right = self.expression(prec + 1)
            node = n.Binary(op, left, right)
            root = node if root is None else n.Binary("&&", root, node)
            left = right
            tok = self.current
            if tok.kind == "op" and tok.text != "not" and BINARY.get(tok.text, (-1,))[0] == _COMPARISON:
                self.advance()
                op = tok.text
                continue
            return root

    def conditional(self, node: n.Node) -> n.Node:
        while self.current.is_op("?"):
            self.advance()
            if self.current.is_op(":"):
                self.advance()
                node = n.Binary("?:", node, self.expression(0))
            else:
                yes = self.expression(0)
                self.expect_op(":", "expected ':' in conditional expression")
                node = n.Conditional(node, yes, self.expression(0))
        return node

    def primary(self) -> n.Node:
        tok = self.current
        if tok.kind == "op" and tok.text in UNARY:
            self.advance()
            operand = self.expression(UNARY[tok.text])
            op = "!" if tok.text == "not" else tok.text
            if op == "-" and isinstance(operand, n.Literal) and type(operand.value) in (int, float):
                return self.postfix(n.Literal(-operand.value))
            if isinstance(operand, n.Literal) and type(operand.value) is int and operand.value > INT_MAX:
                raise self.error("integer literal out of range", tok)
            return self.postfix(n.Unary(op, operand))
        if tok.is_op("("):
            self.advance()
            inner = self.expression(0)
            self.expect_op(")", "an opened parenthesis is not balanced")
            return self.postfix(inner)
        if tok.is_op("#") or tok.is_op("."):
            if not self.predicates:
                raise self.error("cannot use pointer accessor outside predicate", tok)
            name = ""
            if tok.is_op("#"):
                self.advance()
                if self.current.kind == "ident" and self.current.text in ("index", "acc"):
                    name = self.advance().text
            return self.postfix(n.Pointer(name))
        return self.postfix(self.secondary())

    def secondary(self) -> n.Node:
        tok = self.advance()
        if tok.kind == "ident":
            if tok.text == "true":
                return n.Literal(True)
            if tok.text == "false":
                return n.Literal(False)
            if tok.text == "nil":
                return n.Literal(None)
            if self.current.is_op("("):
                return self.call(tok, [])
            return n.Ident(tok.text)
        if tok.kind == "num":
            # INT_MAX + 1 is allowed only as the operand of unary minus (-9223372036854775808).
            negated = self.pos >= 2 and self.tokens[self.pos - 2].is_op("-") and tok.value == INT_MAX + 1
            if type(tok.value) is int and tok.value > INT_MAX and not negated:
                raise self.error("integer literal out of range", tok)
            return n.Literal(tok.value)
        if tok.kind == "str":
            return n.Literal(tok.value)
        if tok.is_op("["):
            return self.array()
        if tok.is_op("{"):
            return self.map_literal()
        raise self.unexpected(tok)

    def array(self) -> n.Node:
        items: list[n.Node] = []
        while not self.current.is_op("]"):
            if items:
                self.expect_op(",")
                if self.current.is_op("]"):
                    break
            items.append(self.expression(0))
        self.advance()
        return n.ArrayLit(tuple(items))

    def map_literal(self) -> n.Node:
        pairs: list[tuple[n.Node, n.Node]] = []
        while not self.current.is_op("}"):
            if pairs:
                self.expect_op(",")
                if self.current.is_op("}"):
                    break
            tok = self.current
            key: n.Node
            if tok.kind in ("num", "ident") or (tok.kind == "op" and tok.text in WORD_OPERATORS):
                key = n.Literal(tok.text)
                self.advance()
            elif tok.kind == "str":
                key = n.Literal(tok.value)
                self.advance()
            elif tok.is_op("("):
                key = self.expression(0)
            else:
                raise self.error(
                    "a map key must be a quoted string, a number, an identifier, "
                    "or an expression in parentheses"
                )
            self.expect_op(":", "expected ':' after a map key")
            pairs.append((key, self.expression(0)))
        self.advance()
        return n.MapLit(tuple(pairs))

    def call(self, name_tok: Token, prefix: list[n.Node]) -> n.Node:
        name = name_tok.text
        self.expect_op("(")
        args = list(prefix)
        spec = PREDICATE_BUILTINS.get(name)
        while not self.current.is_op(")"):
            if len(args) > len(prefix):
                self.expect_op(",")
                if self.current.is_op(")"):
                    break
            if spec is not None and len(args) == spec[0]:
                args.append(self.predicate())
            else:
                args.append(self.expression(0))
        self.advance()
        if spec is not None and not spec[1] <= len(args) <= spec[2]:
            raise self.error(f"{name}() takes {spec[1]} to {spec[2]} arguments, got {len(args)}", name_tok)
        return n.Call(name, tuple(args))

    def predicate(self) -> n.Node:
        braces = self.current.is_op("{")
        if braces:
            self.advance()
        self.predicates += 1
        body = self.expression(0)
        self.predicates -= 1
        if braces:
            self.expect_op("}", "expected '}' to close the predicate")
        return n.Predicate(body)

    def arguments(self) -> tuple[n.Node, ...]:
        self.expect_op("(")
        args: list[n.Node] = []
        while not self.current.is_op(")"):
            if args:
                self.expect_op(",")
                if self.current.is_op(")"):
                    break
            args.append(self.expression(0))
        self.advance()
        return tuple(args)

    def postfix(self, node: n.Node) -> n.Node:
        while True:
            tok = self.current
            if tok.is_op(".") or tok.is_op("?."):
                optional = tok.text == "?."
                self.advance()
                if optional and self.current.is_op("["):
                    node = self.index(node, optional=True)
                    continue
                prop = self.advance()
                if prop.kind != "ident" and not (prop.kind == "op" and prop.text in WORD_OPERATORS):
                    raise self.error("expected name", prop)
                chained = isinstance(node, n.Chain)
                inner = node.node if isinstance(node, n.Chain) else node
                if self.current.is_op("("):
                    node = n.MethodCall(inner, prop.text, self.arguments(), optional)
                else:
                    node = n.Member(inner, n.Literal(prop.text), optional)
                if chained or optional:
                    node = n.Chain(node)
            elif tok.is_op("["):
                node = self.index(node, optional=False)
            else:
                return node

    def index(self, node: n.Node, *, optional: bool) -> n.Node:
        self.expect_op("[")
        chained = isinstance(node, n.Chain)
        inner = node.node if isinstance(node, n.Chain) else node
        result: n.Node
        if self.current.is_op(":"):
            self.advance()
            hi = None if self.current.is_op("]") else self.expression(0)
            result = n.Slice(inner, None, hi)
        else:
            lo = self.expression(0)
            if self.current.is_op(":"):
                self.advance()
                hi = None if self.current.is_op("]") else self.expression(0)
                result = n.Slice(inner, lo, hi)
            else:
                result = n.Member(inner, lo, optional)
        self.expect_op("]", "expected ']'")
        return n.Chain(result) if chained or optional else result


def parse(source: str) -> n.Node:
    """Parse one expression; raises ExprError for syntax errors and for over-deep nesting."""
    p = _Parser(source)
    if p.current.kind == "eof":
        raise ExprError("empty expression", expression=source)
    try:
        tree = p.expression(0)
    except RecursionError:
        raise ExprError("expression too deeply nested", expression=source) from None
    if p.current.kind != "eof":
        raise p.unexpected()
    if n.height(tree) > MAX_TREE_HEIGHT:
        raise ExprError("expression too deeply nested", expression=source)
    return tree
