"""Regular expressions with Go's RE2 syntax and a guaranteed time bound.

Argo evaluates ``matches``, govaluate's ``=~`` and sprig's ``regex*`` functions with Go's ``regexp``,
which runs in linear time. Python's ``re`` backtracks, so a pattern such as ``(a+)+$`` from an untrusted
manifest could stall the controller. Patterns are therefore parsed here (which also rejects what RE2
rejects: backreferences, lookarounds), and then run one of two ways:

* translated to Python ``re`` when the pattern's shape bounds backtracking for the input at hand
  (no repetition nested inside repetition or around an alternation, and few enough quantifiers for
  the input length), which keeps common cases fast;
* otherwise on a small Pike VM (Thompson NFA simulation with captures) whose work is linear in the
  input and capped by a step budget.

Both give Go's leftmost-first match positions. Used by the evaluator, sprig, govaluate and JSONPath.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ExprError

MAX_PATTERN = 4096
MAX_PROGRAM = 20_000
MAX_REPEAT = 1000
MAX_GROUP_DEPTH = 100
VM_STEP_BUDGET = 1_000_000
BACKTRACK_BUDGET = 10_000_000
_MAX_RUNE = 0x10FFFF

Ranges = tuple[tuple[int, int], ...]


# --- syntax tree ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Class:
    ranges: Ranges
    categories: frozenset[str] = frozenset()
    negated: bool = False

    def test(self, ch: str) -> bool:
        code = ord(ch)
        i = bisect.bisect_right(self.ranges, (code, _MAX_RUNE + 1)) - 1
        hit = i >= 0 and self.ranges[i][0] <= code <= self.ranges[i][1]
        if not hit and self.categories:
            cat = unicodedata.category(ch)
            hit = cat in self.categories or cat[0] in self.categories
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class _Node:
    kind: str  # lit-class | any | assert | cat | alt | rep | group | empty
    cls: _Class | None = None
    dotall: bool = False
    assertion: str = ""
    children: tuple[_Node, ...] = ()
    lo: int = 0
    hi: int | None = None
    greedy: bool = True
    index: int = 0  # capture index for groups, 0 for non-capturing
    name: str = ""


def _normalize(ranges: list[tuple[int, int]]) -> Ranges:
    ranges.sort()
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return tuple(out)


def _fold(ranges: Ranges) -> Ranges:
    """Add the other-case forms of every letter in ``ranges`` (for the ``i`` flag)."""
    extra: list[tuple[int, int]] = list(ranges)
    for lo, hi in ranges:
        if hi - lo > 5000:
            continue
        for code in range(lo, hi + 1):
            ch = chr(code)
            for other in {ch.lower(), ch.upper(), ch.swapcase()}:
                if len(other) == 1 and other != ch:
                    extra.append((ord(other), ord(other)))
            if ch in "kK":
                extra.append((0x212A, 0x212A))
            if ch in "sS":
                extra.append((0x17F, 0x17F))
    return _normalize(extra)


_DIGIT: Ranges = ((48, 57),)
_SPACE: Ranges = _normalize([(9, 10), (12, 13), (32, 32)])
_WORD: Ranges = _normalize([(48, 57), (65, 90), (95, 95), (97, 122)])
_PERL = {"d": _DIGIT, "s": _SPACE, "w": _WORD}
_POSIX: dict[str, Ranges] = {
    "alnum": _normalize([(48, 57), (65, 90), (97, 122)]),
    "alpha": _normalize([(65, 90), (97, 122)]),
    "ascii": ((0, 127),),
    "blank": _normalize([(9, 9), (32, 32)]),
    "cntrl": _normalize([(0, 31), (127, 127)]),
    "digit": _DIGIT,
    "graph": ((33, 126),),
    "lower": ((97, 122),),
    "print": ((32, 126),),
    "punct": _normalize([(33, 47), (58, 64), (91, 96), (123, 126)]),
    "space": _normalize([(9, 13), (32, 32)]),
    "upper": ((65, 90),),
    "word": _WORD,
    "xdigit": _normalize([(48, 57), (65, 70), (97, 102)]),
}
_CATEGORIES = {
    "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc", "Pd",
    "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf",
    "Co", "Cs",
}  # fmt: skip


_BRACES = re.compile(r"\{(\d+)(,(\d*))?\}")
_NAMED_GROUP = re.compile(r"\?P?<([A-Za-z0-9_]+)>")
_FLAG_GROUP = re.compile(r"\?([imsU]*)(?:-([imsU]*))?([:)])")
_HEX_BRACED = re.compile(r"[0-9A-Fa-f]{1,8}")
_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.ncap = 0
        self.names: dict[str, int] = {}
        self.depth = 0

    def error(self, what: str) -> ExprError:
        return ExprError(f"error parsing regexp: {what}: `{self.p}`")

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def parse(self) -> _Node:
        flags = {"i": False, "m": False, "s": False, "U": False}
        node = self.alternation(flags)
        if self.i < len(self.p):
            raise self.error("unexpected )")
        return node

    def alternation(self, flags: dict[str, bool]) -> _Node:
        self.depth += 1
        if self.depth > MAX_GROUP_DEPTH:
            raise self.error("expression nests too deeply")
        branches = [self.concatenation(flags)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.concatenation(flags))
        self.depth -= 1
        return branches[0] if len(branches) == 1 else _Node("alt", children=tuple(branches))

    def concatenation(self, flags: dict[str, bool]) -> _Node:
        items: list[_Node] = []
        while self.i < len(self.p) and self.peek() not in "|)":
            atom = self.atom(flags)
            if atom is None:
                continue
            items.append(self.repetition(atom, flags))
        if not items:
            return _Node("empty")
        return items[0] if len(items) == 1 else _Node("cat", children=tuple(items))

    def repetition(self, atom: _Node, flags: dict[str, bool]) -> _Node:
        applied = False
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                start = self.i
                self.i += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{":
                start = self.i
                bounds = self.braces()
                if bounds is None:
                    return atom
                lo, hi = bounds
            else:
                return atom
            if applied:
                raise self.error(f"invalid nested repetition operator: {self.p[start - 1 : self.i]}")
            greedy = True
            if self.peek() == "?":
                self.i += 1
                greedy = False
            if flags["U"]:
                greedy = not greedy
            atom = _Node("rep", children=(atom,), lo=lo, hi=hi, greedy=greedy)
            applied = True

    def braces(self) -> tuple[int, int | None] | None:
        m = _BRACES.match(self.p, self.i)
        if m is None:
            return None  # a literal '{', as in Go
        lo = int(m.group(1))
        hi: int | None = lo
        if m.group(2):
            hi = int(m.group(3)) if m.group(3) else None
        if lo > MAX_REPEAT or (hi is not None and (hi > MAX_REPEAT or hi < lo)):
            raise self.error(f"invalid repeat count {m.group(0)}")
        self.i = m.end()
        return lo, hi

    def atom(self, flags: dict[str, bool]) -> _Node | None:
        c = self.p[self.i]
        if c in "*+?":
            raise self.error(f"missing argument to repetition operator: {c}")
        if c == "{" and _BRACES.match(self.p, self.i):
            raise self.error("missing argument to repetition operator")
        self.i += 1
        if c == "(":
            return self.group(flags)
        if c == "[":
            return self.char_class(flags)
        if c == ".":
            return _Node("any", dotall=flags["s"])
        if c == "^":
            return _Node("assert", assertion="bol" if flags["m"] else "bot")
        if c == "$":
            return _Node("assert", assertion="eol" if flags["m"] else "eot")
        if c == "\\":
            return self.escape(flags)
        return self.literal(ord(c), flags)

    def literal(self, code: int, flags: dict[str, bool]) -> _Node:
        ranges: Ranges = ((code, code),)
        if flags["i"]:
            ranges = _fold(ranges)
        return _Node("class", cls=_Class(ranges))

    def group(self, flags: dict[str, bool]) -> _Node | None:
        name = ""
        capture = True
        inner_flags = dict(flags)
        if self.peek() == "?":
            m = _NAMED_GROUP.match(self.p, self.i)
            if m:
                name = m.group(1)
                if name in self.names:
                    raise self.error(f"duplicate capture group name {name}")
                self.i = m.end()
            else:
                m = _FLAG_GROUP.match(self.p, self.i)
                if m is None or (m.group(2) is not None and not m.group(2)):
                    raise self.error("invalid or unsupported Perl syntax")
                if not m.group(1) and m.group(2) is None and m.group(3) == ")":
                    raise self.error("invalid or unsupported Perl syntax")
                self.i = m.end()
                for f in m.group(1):
                    inner_flags[f] = True
                for f in m.group(2) or "":
                    inner_flags[f] = False
                if m.group(3) == ")":
                    # (?flags) changes the flags of the rest of the enclosing group.
                    flags.update(inner_flags)
                    return None
                capture = False
        index = 0
        if capture:
            self.ncap += 1
            index = self.ncap
            if name:
                self.names[name] = index
        body = self.alternation(inner_flags)
        if self.peek() != ")":
            raise self.error("missing closing )")
        self.i += 1
        return _Node("group", children=(body,), index=index, name=name)

    def escape(self, flags: dict[str, bool]) -> _Node:
        if self.i >= len(self.p):
            raise self.error("trailing backslash at end of expression")
        c = self.p[self.i]
        self.i += 1
        if c in "AzbB":
            return _Node("assert", assertion={"A": "bot", "z": "eot", "b": "word", "B": "nonword"}[c])
        if c == "Q":
            end = self.p.find("\\E", self.i)
            text = self.p[self.i :] if end < 0 else self.p[self.i : end]
            self.i = len(self.p) if end < 0 else end + 2
            if not text:
                return _Node("empty")
            lits = tuple(self.literal(ord(ch), flags) for ch in text)
            return lits[0] if len(lits) == 1 else _Node("cat", children=lits)
        cls = self.class_escape(c, flags)
        if cls is not None:
            return _Node("class", cls=cls)
        return self.literal(self.single_escape(c), flags)

    def class_escape(self, c: str, flags: dict[str, bool]) -> _Class | None:
        if c.lower() in _PERL:
            return _Class(_PERL[c.lower()], negated=c.isupper())
        if c in "pP":
            if self.peek() == "{":
                end = self.p.find("}", self.i)
                if end < 0:
                    raise self.error("invalid character class range")
                name = self.p[self.i + 1 : end]
                self.i = end + 1
            else:
                name = self.p[self.i : self.i + 1]
                self.i += 1
            negated = c == "P"
            if name.startswith("^"):
                name, negated = name[1:], not negated
            if name == "Any":
                return _Class(((0, _MAX_RUNE),), negated=negated)
            if name not in _CATEGORIES:
                raise self.error(f"invalid character class range: \\{c}{{{name}}}")
            return _Class((), frozenset({name}), negated)
        return None

    def single_escape(self, c: str) -> int:
        simple = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
        if c in simple:
            return simple[c]
        if c in "01234567":
            rest = self.p[self.i : self.i + 2]
            if c != "0" and not (rest[:1] and rest[0] in "01234567"):
                raise self.error(f"invalid escape sequence: \\{c}")
            digits = c
            while len(digits) < 3 and self.peek() and self.peek() in "01234567":
                digits += self.peek()
                self.i += 1
            return int(digits, 8)
        if c == "x":
            if self.peek() == "{":
                end = self.p.find("}", self.i)
                hexdigits = self.p[self.i + 1 : end] if end > 0 else ""
                if not _HEX_BRACED.fullmatch(hexdigits):
                    raise self.error("invalid escape sequence: \\x")
                self.i = end + 1
            else:
                hexdigits = self.p[self.i : self.i + 2]
                if not _HEX_PAIR.fullmatch(hexdigits):
                    raise self.error("invalid escape sequence: \\x")
                self.i += 2
            code = int(hexdigits, 16)
            if code > _MAX_RUNE:
                raise self.error("invalid escape sequence: \\x")
            return code
        if ord(c) < 128 and not c.isalnum():
            return ord(c)
        raise self.error(f"invalid escape sequence: \\{c}")

    def char_class(self, flags: dict[str, bool]) -> _Node:
        negated = False
        if self.peek() == "^":
            negated = True
            self.i += 1
        ranges: list[tuple[int, int]] = []
        categories: set[str] = set()
        first = True
        while True:
            if self.i >= len(self.p):
                raise self.error("missing closing ]")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and self.p.startswith("[:", self.i):
                end = self.p.find(":]", self.i + 2)
                if end > 0:
                    name = self.p[self.i + 2 : end]
                    neg = name.startswith("^")
                    posix = _POSIX.get(name.lstrip("^"))
                    if posix is None:
                        raise self.error(f"invalid character class range: [:{name}:]")
                    ranges.extend(_complement(posix) if neg else posix)
                    self.i = end + 2
                    continue
            lo = self.class_char(ranges, categories, flags)
            if lo is None:
                continue
            if self.peek() == "-" and self.p[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self.class_char(ranges, categories, flags)
                if hi is None or hi < lo:
                    raise self.error("invalid character class range")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        result = _normalize(ranges)
        if flags["i"]:
            result = _fold(result)
        return _Node("class", cls=_Class(result, frozenset(categories), negated))

    def class_char(
        self, ranges: list[tuple[int, int]], categories: set[str], flags: dict[str, bool]
    ) -> int | None:
        """One class member: returns its code point, or None when it was a whole class (\\d, \\pL)."""
        c = self.p[self.i]
        self.i += 1
        if c != "\\":
            return ord(c)
        if self.i >= len(self.p):
            raise self.error("trailing backslash at end of expression")
        e = self.p[self.i]
        self.i += 1
        cls = self.class_escape(e, flags)
        if cls is None:
            return self.single_escape(e)
        if cls.categories:
            if cls.negated:
                raise self.error("negated Unicode classes inside [] are not supported")
            categories.update(cls.categories)
        else:
            ranges.extend(_complement(cls.ranges) if cls.negated else cls.ranges)
        return None


# --- analysis and translation to Python re ----------------------------------------------------------


def _walk(node: _Node) -> Iterator[_Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(n.children)


def _backtracking_shape(root: _Node) -> tuple[bool, int, bool]:
    """(safe shape, number of variable repetitions, anchored at the start of text)."""
    safe = True
    variable = 0
    for n in _walk(root):
        if n.kind == "class" and n.cls is not None and n.cls.categories:
            safe = False  # Python re has no \p classes
        if n.kind != "rep":
            continue
        if n.hi is None or n.hi != n.lo:
            variable += 1
        for inner in _walk(n.children[0]):
            if inner.kind in ("rep", "alt"):
                safe = False
    first = root
    while first.kind in ("cat", "group") and first.children:
        first = first.children[0]
    anchored = first.kind == "assert" and first.assertion == "bot"
    return safe, variable, anchored


def _py_char(code: int) -> str:
    return f"\\U{code:08x}"


def _to_python(n: _Node) -> str:
    k = n.kind
    if k == "class":
        assert n.cls is not None
        rs = n.cls.ranges
        if len(rs) == 1 and rs[0][0] == rs[0][1] and not n.cls.negated:
            return _py_char(rs[0][0])
        if not rs:
            return "[\\s\\S]" if n.cls.negated else "(?!)"
        body = "".join(_py_char(lo) if lo == hi else f"{_py_char(lo)}-{_py_char(hi)}" for lo, hi in rs)
        return f"[{'^' if n.cls.negated else ''}{body}]"
    if k == "any":
        return "[\\s\\S]" if n.dotall else "[^\\n]"
    if k == "assert":
        return {
            "bot": "\\A",
            "eot": "\\Z",
            "bol": "(?:(?<=\\n)|\\A)",
            "eol": "(?=\\n|\\Z)",
            "word": "\\b",
            "nonword": "\\B",
        }[n.assertion]
    if k == "cat":
        return "".join(_to_python(c) for c in n.children)
    if k == "alt":
        return "(?:" + "|".join(_to_python(c) for c in n.children) + ")"
    if k == "group":
        inner = _to_python(n.children[0])
        if n.index == 0:
            return f"(?:{inner})"
        return f"(?P<{n.name}>{inner})" if n.name else f"({inner})"
    if k == "rep":
        inner = f"(?:{_to_python(n.children[0])})"
        if (n.lo, n.hi) == (0, None):
            q = "*"
        elif (n.lo, n.hi) == (1, None):
            q = "+"
        elif (n.lo, n.hi) == (0, 1):
            q = "?"
        elif n.hi is None:
            q = f"{{{n.lo},}}"
        else:
            q = f"{{{n.lo},{n.hi}}}"
        return inner + q + ("" if n.greedy else "?")
    return ""


# --- Pike VM ----------------------------------------------------------------------------------------

_CHAR, _MATCH, _JMP, _SPLIT, _SAVE, _ASSERT = range(6)
_Inst = tuple[int, Any, Any]


def _is_word(s: str, i: int) -> bool:
    if 0 <= i < len(s):
        c = s[i]
        return c == "_" or ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z")
    return False


def _check(assertion: str, s: str, i: int) -> bool:
    if assertion == "bot":
        return i == 0
    if assertion == "eot":
        return i == len(s)
    if assertion == "bol":
        return i == 0 or s[i - 1] == "\n"
    if assertion == "eol":
        return i == len(s) or s[i] == "\n"
    boundary = _is_word(s, i - 1) != _is_word(s, i)
    return boundary if assertion == "word" else not boundary


class _Compiler:
    def __init__(self) -> None:
        self.prog: list[_Inst] = []

    def emit(self, op: int, a: Any = None, b: Any = None) -> int:
        if len(self.prog) >= MAX_PROGRAM:
            raise ExprError("regular expression too large")
        self.prog.append((op, a, b))
        return len(self.prog) - 1

    def patch(self, pc: int, a: Any, b: Any = None) -> None:
        op = self.prog[pc][0]
        self.prog[pc] = (op, a, b)

    def node(self, n: _Node) -> None:
        k = n.kind
        if k == "class":
            assert n.cls is not None
            self.emit(_CHAR, n.cls.test)
        elif k == "any":
            self.emit(_CHAR, (lambda ch: True) if n.dotall else (lambda ch: ch != "\n"))
        elif k == "assert":
            self.emit(_ASSERT, n.assertion)
        elif k == "cat":
            for c in n.children:
                self.node(c)
        elif k == "alt":
            jumps: list[int] = []
            for c in n.children[:-1]:
                split = self.emit(_SPLIT)
                self.node(c)
                jumps.append(self.emit(_JMP))
                self.patch(split, split + 1, len(self.prog))
            self.node(n.children[-1])
            for j in jumps:
                self.patch(j, len(self.prog))
        elif k == "group":
            if n.index:
                self.emit(_SAVE, 2 * n.index)
            self.node(n.children[0])
            if n.index:
                self.emit(_SAVE, 2 * n.index + 1)
        elif k == "rep":
            self.repeat(n)

    def repeat(self, n: _Node) -> None:
        body = n.children[0]
        for _ in range(n.lo):
            self.node(body)
        if n.hi is None:
            loop = self.emit(_SPLIT)
            self.node(body)
            self.emit(_JMP, loop)
            after = len(self.prog)
            self.patch(loop, *((loop + 1, after) if n.greedy else (after, loop + 1)))
            return
        splits: list[int] = []
        for _ in range(n.hi - n.lo):
            splits.append(self.emit(_SPLIT))
            self.node(body)
        after = len(self.prog)
        for s in splits:
            self.patch(s, *((s + 1, after) if n.greedy else (after, s + 1)))


def _pike(prog: list[_Inst], ncap: int, s: str, pos: int, budget: list[int]) -> list[int | None] | None:
    """Leftmost-first match starting at or after ``pos``: the capture positions, or None."""
    n = len(s)
    init: tuple[int | None, ...] = (None,) * (2 * ncap + 2)
    matched: tuple[int | None, ...] | None = None

    def add(
        lst: list[tuple[int, tuple[int | None, ...]]],
        seen: set[int],
        pc: int,
        caps: tuple[int | None, ...],
        i: int,
    ) -> None:
        stack = [(pc, caps)]
        while stack:
            pc, caps = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op, a, b = prog[pc]
            if op == _JMP:
                stack.append((a, caps))
            elif op == _SPLIT:
                stack.append((b, caps))
                stack.append((a, caps))
            elif op == _SAVE:
                stack.append((pc + 1, (*caps[:a], i, *caps[a + 1 :])))
            elif op == _ASSERT:
                if _check(a, s, i):
                    stack.append((pc + 1, caps))
            else:
                lst.append((pc, caps))

    clist: list[tuple[int, tuple[int | None, ...]]] = []
    add(clist, set(), 0, init, pos)
    i = pos
    while True:
        budget[0] -= len(clist) + 1
        if budget[0] < 0:
            raise ExprError("regular expression too costly for this input")
        nlist: list[tuple[int, tuple[int | None, ...]]] = []
        nseen: set[int] = set()
        ch = s[i] if i < n else None
        for pc, caps in clist:
            op, test, _ = prog[pc]
            if op == _MATCH:
                matched = caps
                break
            if ch is not None and test(ch):
                add(nlist, nseen, pc + 1, caps, i + 1)
        if i >= n:
            break
        i += 1
        if matched is None:
            # Unanchored search: a new thread starts at every position, below all existing ones.
            add(nlist, nseen, 0, init, i)
        elif not nlist:
            break
        clist = nlist
    return list(matched) if matched is not None else None


# --- public -----------------------------------------------------------------------------------------


@dataclass(eq=False)
class Regex:
    """A compiled RE2 pattern. ``search`` returns capture spans as ``[start0, end0, start1, ...]``."""

    pattern: str
    ncap: int
    names: dict[str, int]
    _root: _Node
    _safe: bool
    _variable: int
    _anchored: bool
    _python: re.Pattern[str] | None = None
    _prog: list[_Inst] = field(default_factory=list)

    def _use_python(self, text_length: int) -> bool:
        if not self._safe:
            return False
        exponent = self._variable + (0 if self._anchored else 1)
        return bool((text_length + 1) ** exponent <= BACKTRACK_BUDGET)

    def _python_pattern(self) -> re.Pattern[str] | None:
        if self._python is None and self._safe:
            try:
                self._python = re.compile(_to_python(self._root), re.ASCII)
            except (re.error, RecursionError, OverflowError):
                # Python rejects a few shapes RE2 accepts; the VM handles those.
                self._safe = False
        return self._python

    def search(self, s: str, pos: int = 0, budget: list[int] | None = None) -> list[int | None] | None:
        if self._use_python(len(s) - pos) and self._python_pattern() is not None:
            assert self._python is not None
            m = self._python.search(s, pos)
            if m is None:
                return None
            spans: list[int | None] = []
            for g in range(self.ncap + 1):
                a, b = m.span(g)
                spans.extend((None, None) if a < 0 else (a, b))
            return spans
        if not self._prog:
            c = _Compiler()
            c.emit(_SAVE, 0)
            c.node(self._root)
            c.emit(_SAVE, 1)
            c.emit(_MATCH)
            self._prog = c.prog
        return _pike(self._prog, self.ncap, s, pos, budget if budget is not None else _vm_budget(s))

    def matches(self, s: str) -> bool:
        return self.search(s) is not None

    def find(self, s: str) -> str | None:
        spans = self.search(s)
        if spans is None or spans[0] is None or spans[1] is None:
            return None
        return s[spans[0] : spans[1]]

    def find_all(self, s: str, limit: int = -1) -> list[list[int | None]]:
        """Go's ``FindAll*``: successive non-overlapping matches, skipping empty ones that touch a match."""
        out: list[list[int | None]] = []
        pos, prev_end = 0, -1
        budget = _vm_budget(s)
        while (limit < 0 or len(out) < limit) and pos <= len(s):
            spans = self.search(s, pos, budget)
            if spans is None:
                break
            start, end = spans[0], spans[1]
            assert start is not None and end is not None
            accept = True
            if end == pos:
                if start == prev_end:
                    accept = False
                pos += 1
            else:
                pos = end
            prev_end = end
            if accept:
                out.append(spans)
        return out

    def replace_all(self, s: str, repl: Callable[[list[int | None]], str]) -> str:
        """Go's ``ReplaceAll*`` loop (no replacement for an empty match right after a match)."""
        parts: list[str] = []
        last_end = 0
        pos = 0
        budget = _vm_budget(s)
        while pos <= len(s):
            spans = self.search(s, pos, budget)
            if spans is None:
                break
            start, end = spans[0], spans[1]
            assert start is not None and end is not None
            parts.append(s[last_end:start])
            if end > last_end or start == 0:
                parts.append(repl(spans))
            last_end = end
            pos = pos + 1 if pos + 1 > end else end
        parts.append(s[last_end:])
        return "".join(parts)

    def expand(self, template: str, s: str, spans: list[int | None]) -> str:
        """Go's ``Expand``: ``$1``, ``${1}``, ``$name``, ``${name}`` and ``$$`` in a replacement."""
        out: list[str] = []
        i = 0
        while i < len(template):
            c = template[i]
            if c != "$" or i + 1 >= len(template):
                out.append(c)
                i += 1
                continue
            if template[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            m = _TEMPLATE_NAME.match(template, i + 1)
            if m is None:
                out.append(c)
                i += 1
                continue
            name = m.group(1) or m.group(2)
            i = m.end()
            index = int(name) if name.isdigit() else self.names.get(name, -1)
            if 0 <= index <= self.ncap:
                a, b = spans[2 * index], spans[2 * index + 1]
                if a is not None and b is not None:
                    out.append(s[a:b])
        return "".join(out)


def _vm_budget(s: str) -> list[int]:
    """Steps the Pike VM may take: a fixed allowance plus a few threads per input character."""
    return [VM_STEP_BUDGET + 8 * len(s)]


_TEMPLATE_NAME = re.compile(r"\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+)")


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: str) -> Regex:
    """Parse an RE2 pattern (cached); raises ExprError with Go's wording for invalid patterns."""
    if not isinstance(pattern, str):
        raise ExprError("regular expression must be a string")
    if len(pattern) > MAX_PATTERN:
        raise ExprError(f"regular expression too long ({len(pattern)} characters)")
    parser = _Parser(pattern)
    root = parser.parse()
    safe, variable, anchored = _backtracking_shape(root)
    return Regex(pattern, parser.ncap, dict(parser.names), root, safe, variable, anchored)
