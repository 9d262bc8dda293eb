"""Resource bounds shared by every evaluator in ``engine.expr``.

Manifests and event payloads are untrusted, so each language here (template tags, the expr-lang subset,
govaluate ``when``, ``depends``, JSONPath, regular expressions) refuses input that could take unbounded
time or memory. The numbers live in one module so the bounds are reviewed together and the tests can
name them instead of repeating magic values.
"""

from __future__ import annotations

from engine.errors import ExprError

# Longest expression source we agree to parse. Argo has no such limit, but no real manifest gets close.
MAX_SOURCE = 64 * 1024

# Parser recursion: brackets, calls, unary chains, ternaries and right-associative operators.
MAX_NESTING = 64

# Height of the syntax tree after parsing. Long left-associative chains (a && b && c ...) do not
# recurse in the parser but do recurse in the evaluator, so they are bounded separately.
MAX_TREE_HEIGHT = 200

# Longest list the range operator ``a..b`` may build.
MAX_RANGE = 1_000_000

# Largest string any operation may produce (concatenation, repeat, join, replace, toJson...).
MAX_STRING = 4 * 1024 * 1024

# Work units one evaluation may spend. Every element an operation creates or visits (range items,
# predicate calls, list copies) costs one unit, and every 16 characters of string built cost one
# unit, so nested maps over ranges or repeated string building end with an error instead of a hang
# or a memory blow-up (at most about 48 million characters per evaluation).
MAX_WORK = 3_000_000

# Integers follow Go's int64. Go wraps on overflow; we refuse instead of producing a surprising value.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

# Nesting depth of data we walk recursively (JSON encoding, deep equality, %v formatting). Lazy
# mappings from the core could in principle refer back to themselves.
MAX_DATA_DEPTH = 256


class Budget:
    """The work allowance of one evaluation; shared by nested predicate frames."""

    __slots__ = ("left",)

    def __init__(self, units: int = MAX_WORK) -> None:
        self.left = units

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise ExprError("expression evaluation exceeded its work budget")

    def spend_string(self, length: int) -> None:
        if length > MAX_STRING:
            raise ExprError(f"string result too large ({length} characters, limit {MAX_STRING})")
        self.spend(1 + (length >> 4))


def check_int(value: int) -> int:
    """Keep integer results inside Go's int64 range."""
    if INT_MIN <= value <= INT_MAX:
        return value
    raise ExprError("integer overflow (results must fit in a 64-bit signed integer)")
