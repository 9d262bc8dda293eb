"""Argo template tags: finding ``{{ name }}`` and ``{{= expression }}`` in text and substituting them.

The workflow core calls :func:`substitute` on every templated field (arguments, commands, env values,
``when`` before govaluate runs...). Simple tags are looked up through the core's ``resolve`` callback,
because Argo names such as ``tasks.gen-data.outputs.result`` contain hyphens and are plain keys, not
expressions. Expression tags are evaluated with the expr-lang subset.

Substitution is a single pass over the original text: a substituted value is never scanned again, so a
parameter whose value is ``{{workflow.name}}`` or ``$(rm -rf /)`` stays inert data.

A tag ends at the first ``}}``; for expression tags, ``}}`` inside a quoted string or closing an open
``{`` (a map literal or predicate) does not end the tag, so ``{{= toJson({a: {b: 1}}) }}`` works. To keep
scanning linear on hostile input, that awareness is dropped after a work budget proportional to the
text, falling back to Argo's plain "first ``}}``" rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import ExprError

from .encoding import substitution_text
from .evaluator import Program, compile_expr


@dataclass(frozen=True, slots=True)
class Tag:
    """One ``{{...}}`` occurrence: ``text[start:end]`` is the whole tag including the braces."""

    kind: Literal["simple", "expr"]
    body: str
    start: int
    end: int

    def raw(self, text: str) -> str:
        """The tag exactly as written in ``text``."""
        return text[self.start : self.end]


def has_tags(text: str) -> bool:
    """Whether ``text`` contains at least one complete tag."""
    if "{{" not in text:
        return False
    start = text.find("{{")
    return text.find("}}", start + 2) >= 0


def find_tags(text: str) -> list[Tag]:
    """All tags in ``text``, left to right; an opening ``{{`` with no closing ``}}`` is plain text."""
    if "{{" not in text:
        return []
    tags: list[Tag] = []
    # Character steps the quote/brace-aware scan may take in total before degrading to plain search.
    allowance = [4 * len(text) + 4096]
    i = text.find("{{")
    while i >= 0:
        body_start = i + 2
        if text.startswith("=", body_start):
            end = _expression_end(text, body_start + 1, allowance)
        else:
            end = text.find("}}", body_start)
        if end < 0:
            break
        inner = text[body_start:end]
        if inner.startswith("="):
            tags.append(Tag("expr", inner[1:].strip(), i, end + 2))
        else:
            tags.append(Tag("simple", inner.strip(), i, end + 2))
        i = text.find("{{", end + 2)
    return tags


def _expression_end(text: str, start: int, allowance: list[int]) -> int:
    """Index of the ``}}`` closing an expression tag whose body starts at ``start``, or -1."""
    if allowance[0] <= 0:
        return text.find("}}", start)
    n = len(text)
    depth = 0
    quote = ""
    first_outside = -1
    i = start
    while i < n:
        allowance[0] -= 1
        if allowance[0] <= 0:
            break
        c = text[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c == "{":
            if first_outside >= 0 and text.startswith("{{", i):
                # Another tag starts before our braces balanced: they never will.
                return first_outside
            depth += 1
        elif c == "}":
            if text.startswith("}}", i):
                if depth <= 0:
                    return i
                if first_outside < 0:
                    first_outside = i
            depth -= 1
        i += 1
    if first_outside >= 0:
        return first_outside
    return text.find("}}", start)


def substitute(
    text: str,
    resolve: Callable[[str], str],
    *,
    env: Mapping[str, Any] | None = None,
    keep_unresolved: bool = False,
) -> str:
    """Replace every tag in ``text``.

    Simple tags: ``resolve(name)`` returns the value or raises KeyError. Expression tags: evaluated
    against ``env``; the result is used as is when it is a string and as compact JSON otherwise. With
    ``keep_unresolved``, a tag that cannot be resolved yet (unknown name, an expression that fails,
    reads a top-level name absent from ``env`` or yields nil, or no ``env`` at all) is left as written;
    otherwise it raises ExprError naming the tag.
    """
    if "{{" not in text:
        return text
    tags = find_tags(text)
    if not tags:
        return text
    out: list[str] = []
    last = 0
    for tag in tags:
        out.append(text[last : tag.start])
        if tag.kind == "simple":
            out.append(_simple(tag, text, resolve, keep_unresolved))
        else:
            out.append(_expression(tag, text, env, keep_unresolved))
        last = tag.end
    out.append(text[last:])
    return "".join(out)


def _simple(tag: Tag, text: str, resolve: Callable[[str], str], keep_unresolved: bool) -> str:
    try:
        value = resolve(tag.body)
    except KeyError:
        if keep_unresolved:
            return tag.raw(text)
        raise ExprError(f"failed to resolve {tag.raw(text)}") from None
    return value if isinstance(value, str) else substitution_text(value)


def _expression(tag: Tag, text: str, env: Mapping[str, Any] | None, keep_unresolved: bool) -> str:
    raw = tag.raw(text)
    if env is None:
        if keep_unresolved:
            return raw
        raise ExprError(f"failed to resolve {raw}: expressions are not available here")
    try:
        program = compile_expr(tag.body)
        if keep_unresolved and _not_ready(program, env):
            return raw
        result = program.run(env)
        rendered = None if result is None else substitution_text(result)
    except ExprError as exc:
        if keep_unresolved:
            return raw
        raise ExprError(f"failed to evaluate {raw}: {exc}") from exc
    if rendered is None:
        if keep_unresolved:
            return raw
        raise ExprError(f"failed to evaluate {raw}: the expression evaluated to nil")
    return rendered


# Values Argo only provides once exit handlers run; tags reading them wait until then.
_LATE_PATHS = ("workflow.status", "workflow.failures")


def _not_ready(program: Program, env: Mapping[str, Any]) -> bool:
    """Whether an early pass should leave this expression for later, as Argo does.

    Argo defers expressions that read ``retries`` before a retry exists, and ``workflow.status`` or
    ``workflow.failures`` before exit handlers run. We generalize the first rule to any top-level
    name absent from the environment.
    """
    if any(name not in env for name in program.names):
        return True
    for path in _LATE_PATHS:
        if path in program.paths:
            root, key = path.split(".")
            scope = env.get(root)
            if not isinstance(scope, Mapping) or key not in scope:
                return True
    return False


def check_syntax(text: str) -> None:
    """Raise ExprError if any ``{{= }}`` tag in ``text`` does not compile."""
    for tag in find_tags(text):
        if tag.kind == "expr":
            try:
                compile_expr(tag.body)
            except ExprError as exc:
                raise ExprError(f"invalid expression tag {tag.raw(text)}: {exc}") from exc
