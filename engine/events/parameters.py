"""Trigger parameters: values taken from the events that fired a trigger and written into a JSON object.

:mod:`engine.events.actions` calls :func:`apply_all` with the trigger template (trigger-level
``parameters``), with the fetched resource (``k8s.parameters``, ``argoWorkflow.parameters``) and with an
empty object (``http.payload``). The semantics are Argo Events' ``TriggerParameter``:

Resolving a parameter (:func:`resolve`) against ``events``, the events of this firing by dependency:

* the dependency fired: ``dataTemplate`` / ``dataKey`` read the event's data, ``contextTemplate`` /
  ``contextKey`` its CloudEvents context (``id``, ``source``, ``specversion``, ``type``, ``subject``,
  ``time`` as RFC 3339 UTC seconds, ``datacontenttype``); when both data and context are named, data
  wins. The template is tried first; when it fails or renders nothing, the key; when that names
  nothing, the default ``value``; without one the parameter fails with an ExprError that names it.
  With neither key nor template the default ``value`` is used, or else the whole event as JSON text
  (``{"context": {...}, "data": ...}``, the data as JSON where Argo writes its bytes in base64).
* the dependency did not fire (a trigger whose conditions use ``||``): the default ``value``, or else
  :data:`SKIP` and the parameter leaves the object unchanged. Argo treats this case as normal, not as
  an error, so that one parameter list can serve every branch of the condition.
* the result is a string (template output; the key's value in gjson's text form, objects and arrays as
  compact JSON, null as ``null``); with ``useRawData: true`` a key's non-string value is kept as JSON
  (number, bool, null, object, array).

Writing it (:func:`apply`): ``dest`` is a tidwall/sjson path. Keys are separated by dots, ``\\`` makes
the next character literal, a leading ``:`` makes a key an object key even when it is all digits. On an
array a number is an index (past the end pads with nulls) and ``-1`` appends; a missing key is created,
as an array when the next key is a number or ``-1``, an object otherwise; a scalar in the way is
replaced. ``operation`` ``append`` / ``prepend`` concatenate with the current value's text when there is
one (the result is then a string); ``overwrite`` (the default) replaces it. The input object is never
modified: only the containers along ``dest`` are copied. Paths with gjson queries or wildcards
(``#``, ``*``, ``?``, ``|``, ``@``) are refused.

Templates: ``dataTemplate`` and ``contextTemplate`` see the data (or context) as ``Input``. Two
languages are accepted, told apart by the template's text:

* Go text/template with sprig (Argo's language, used by every published example):
  ``{{ .Input.body.name | lower }}``. A template is Go when one of its ``{{ }}`` actions refers to
  ``.`` or ``$`` (``.Input``, ``$``, ``$x``) or starts with a Go keyword (``if``, ``range``,
  ``with``, ``end``...), or when it has no action at all (plain text).
* jinja2, in an immutable sandbox with strict undefined names, otherwise:
  ``{{ Input.body.name | lower }}``, ``{% if Input.x %}...{% endif %}``. Any ``{%`` or ``{#`` tag
  makes a template jinja2. A dotted name reads a key of the data before an attribute, so
  ``Input.body.items`` is the payload's ``items``, not the dict method.

Go templates see JSON numbers as float64, as in Argo (``{{ .Input.n }}`` prints 1234567 as
``1.234567e+06``); jinja2 templates see them as they were decoded.

Both are bounded: templates longer than :data:`MAX_TEMPLATE` are refused and a rendering may not
produce more than :data:`MAX_OUTPUT` characters. In jinja2, loop items and calls spend from a work
allowance, comparisons, tests, filters and calls charge the size of what they read or build to a scan
allowance (so a loop whose body reads a large payload value stops early), and string repetition,
concatenation, joins and replacements are size-checked before they run. Filters and globals that could
produce unbounded text or randomness (``format``, ``center``, ``wordwrap``, ``random``, ``lipsum``) are
not available, nor are string methods such as ``ljust`` or ``format``.

Event data is only ever data: a payload string such as ``{{ 7*7 }}`` or ``$(id)`` is inserted as it
is, never rendered, parsed or evaluated.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from engine.errors import ExprError
from engine.events.model import Event
from engine.expr import gjson
from engine.expr.encoding import from_json, to_json
from engine.expr.gotemplate import render as render_go
from engine.expr.times import format_time, parse_rfc3339
from engine.spec.events import TriggerParameter

__all__ = [
    "MAX_OUTPUT",
    "MAX_TEMPLATE",
    "SKIP",
    "apply",
    "apply_all",
    "render_template",
    "resolve",
    "template_language",
]

MAX_TEMPLATE: Final = 64 * 1024
MAX_OUTPUT: Final = 1024 * 1024
# Work one jinja2 rendering may spend: a loop item costs one unit, a call (function, method, macro)
# several, since a macro call costs jinja2 about as much as ten loop items.
MAX_JINJA_WORK: Final = 100_000
CALL_COST: Final = 5
# Characters and items one jinja2 rendering may read through comparisons, tests, filters and calls, so
# that a loop body working on a large payload value cannot run for long.
MAX_JINJA_SCAN: Final = 20_000_000
# Nulls an array may be padded with to reach an index in ``dest``.
MAX_PAD: Final = 10_000
MAX_DEST: Final = 4096
MAX_DEST_KEYS: Final = 128

OPERATIONS: Final = ("overwrite", "append", "prepend")
# Errors other than ExprError that hostile data could still provoke in an evaluator.
_UNEXPECTED: Final = (RecursionError, ValueError, TypeError, ArithmeticError, LookupError)


class _Skip:
    """The value of a parameter whose dependency did not fire and that has no default."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"


SKIP: Final = _Skip()


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- resolving ----------------------------------------------------------------------------------------


def _data_of(event: Event) -> Any:
    data = event.data
    if isinstance(data, bytes | bytearray):
        try:
            return from_json(data.decode("utf-8"))
        except (ExprError, UnicodeDecodeError):
            raise ExprError("event data is not valid JSON") from None
    return data


def _context_of(event: Event) -> dict[str, str]:
    context = event.context()
    # Argo serialises the context with Kubernetes' time type: RFC 3339 in UTC, whole seconds.
    instant = parse_rfc3339(event.time) if isinstance(event.time, str) else None
    if instant is not None:
        context["time"] = format_time(instant.utc(), "2006-01-02T15:04:05Z07:00")
    return context


def _key_value(found: Any, raw: bool) -> Any:
    if raw and not isinstance(found, str):
        return found
    if found is None:
        return "null"
    return gjson.to_text(found)


def resolve(param: TriggerParameter, events: Mapping[str, Event]) -> Any:
    """The value ``param`` takes for this firing: a string, a JSON value (``useRawData``), or SKIP."""
    src = param.src
    event = events.get(src.dependency_name)
    if event is None:
        return src.value if src.value is not None else SKIP
    if not (src.data_key or src.data_template or src.context_key or src.context_template):
        if src.value is not None:
            return src.value
        try:
            return to_json({"context": _context_of(event), "data": _data_of(event)})
        except ExprError as exc:
            raise _unresolved(param, str(exc)) from None
    key, template, use_data = src.context_key or "", src.context_template or "", False
    if src.data_key or src.data_template:
        key, template, use_data = src.data_key or "", src.data_template or "", True
    failure = ""
    try:
        payload = _data_of(event) if use_data else _context_of(event)
    except ExprError as exc:
        if src.value is not None:
            return src.value
        raise _unresolved(param, str(exc)) from None
    if template:
        try:
            return render_template(template, payload)
        except ExprError as exc:
            failure = f"template: {exc}"
    if key:
        try:
            return _key_value(gjson.get(payload, key), bool(src.use_raw_data))
        except ExprError as exc:
            failure = f"key {_clip(key)!r}: {exc}"
    if src.value is not None:
        return src.value
    raise _unresolved(param, failure)


def _unresolved(param: TriggerParameter, why: str) -> ExprError:
    return ExprError(
        f"unable to resolve the trigger parameter for {_clip(param.dest)!r} "
        f"from dependency {param.src.dependency_name!r}: {why}"
    )


# --- writing ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    text: str
    force: bool  # written ":key": always an object key

    @property
    def numeric(self) -> bool:
        # sjson reads an empty key as the number 0, too.
        return not self.force and (not self.text or (self.text.isascii() and self.text.isdigit()))

    @property
    def appends(self) -> bool:
        return not self.force and self.text == "-1"


_COMPLEX: Final = frozenset("|#@*?")


@functools.lru_cache(maxsize=1024)
def _dest_keys(dest: str) -> tuple[_Key, ...]:
    """``dest`` split the way sjson reads a path."""
    if not isinstance(dest, str) or not dest:
        raise ExprError("a parameter dest cannot be empty")
    if len(dest) > MAX_DEST:
        raise ExprError(f"a parameter dest may not be longer than {MAX_DEST} characters")
    keys: list[_Key] = []
    i = 0
    while True:
        force = dest.startswith(":", i)
        if force:
            i += 1
        text: list[str] = []
        more = False
        while i < len(dest):
            c = dest[i]
            if c == "\\":
                if i + 1 < len(dest):
                    text.append(dest[i + 1])
                i += 2
                continue
            if c == ".":
                more = True
                i += 1
                break
            if c in _COMPLEX:
                raise ExprError(f"dest {_clip(dest)!r}: queries and wildcards ({c!r}) are not supported")
            text.append(c)
            i += 1
        keys.append(_Key("".join(text), force))
        if len(keys) > MAX_DEST_KEYS:
            raise ExprError(f"dest {_clip(dest)!r} has more than {MAX_DEST_KEYS} keys")
        if not more:
            return tuple(keys)


def _index(key: _Key, items: Sequence[Any]) -> int | None:
    if key.text and key.text.isascii() and key.text.isdigit() and len(key.text) < 19:
        n = int(key.text)
        return n if n < len(items) else None
    return None


def _padding(key: _Key, have: int) -> list[None]:
    want = int(key.text or "0") if len(key.text) < 19 else MAX_PAD + have + 1
    if want - have > MAX_PAD:
        raise ExprError(f"index {_clip(key.text, 40)} is more than {MAX_PAD} past the end of the array")
    return [None] * (want - have)


def _build(keys: tuple[_Key, ...], i: int, value: Any) -> Any:
    """A new value holding ``value`` at ``keys[i:]``."""
    if i == len(keys):
        return value
    key = keys[i]
    if key.numeric:
        return [*_padding(key, 0), _build(keys, i + 1, value)]
    if key.appends:
        return [_build(keys, i + 1, value)]
    return {key.text: _build(keys, i + 1, value)}


def _set(node: Any, keys: tuple[_Key, ...], i: int, value: Any) -> Any:
    """A copy of ``node`` with ``value`` at ``keys[i:]``; only containers on the path are copied."""
    key = keys[i]
    last = i + 1 == len(keys)
    if isinstance(node, Mapping):
        out = dict(node)
        if key.text in node:
            out[key.text] = value if last else _set(node[key.text], keys, i + 1, value)
        else:
            out[key.text] = _build(keys, i + 1, value)
        return out
    if isinstance(node, list | tuple):
        index = _index(key, node)
        if index is not None:
            items = list(node)
            items[index] = value if last else _set(node[index], keys, i + 1, value)
            return items
        if key.numeric:
            return [*node, *_padding(key, len(node)), _build(keys, i + 1, value)]
        if key.appends:
            return [*node, _build(keys, i + 1, value)]
        raise ExprError(f"cannot set array element for non-numeric key {_clip(key.text, 60)!r}")
    # A scalar (or nothing) where a container is needed is replaced by a new one.
    return _set([] if key.numeric else {}, keys, i, value)


_MISSING: Final = object()


def _current(node: Any, keys: tuple[_Key, ...]) -> Any:
    for key in keys:
        if isinstance(node, Mapping):
            node = node.get(key.text, _MISSING)
        elif isinstance(node, list | tuple):
            index = _index(key, node)
            node = node[index] if index is not None else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _text(value: Any) -> str:
    return "null" if value is None else gjson.to_text(value)


def apply(obj: Any, dest: str, value: Any, operation: str | None = None) -> Any:
    """A copy of ``obj`` with ``value`` written at the sjson path ``dest``; ``obj`` is not modified."""
    op = operation or "overwrite"
    if op not in OPERATIONS:
        raise ExprError(f"unsupported trigger parameter operation: {_clip(str(operation), 40)!r}")
    keys = _dest_keys(dest)
    if op != "overwrite":
        current = _current(obj, keys)
        if current is not _MISSING:
            before, added = gjson.to_text(current), _text(value)
            if len(before) + len(added) > MAX_OUTPUT:
                raise ExprError(f"{op} at {_clip(dest)!r} would exceed {MAX_OUTPUT} characters")
            value = before + added if op == "append" else added + before
    return _set(obj, keys, 0, value)


def apply_all(obj: Any, params: Iterable[TriggerParameter], events: Mapping[str, Event]) -> Any:
    """``obj`` with every parameter resolved against ``events`` and applied in order."""
    for param in params:
        try:
            value = resolve(param, events)  # its errors already name the parameter
            if value is SKIP:
                continue
            try:
                obj = apply(obj, param.dest, value, param.operation)
            except ExprError as exc:
                raise ExprError(f"trigger parameter for {_clip(param.dest)!r}: {exc}") from None
        except _UNEXPECTED as exc:
            # Hostile data an evaluator did not foresee fails the trigger like any other bad value.
            message = f"trigger parameter for {_clip(param.dest)!r} failed: {type(exc).__name__}: {exc}"
            raise ExprError(_clip(message, 300)) from exc
    return obj


# --- templates ------------------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_QUOTED = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
# ``.Input``, a lone ``.``, ``$`` or ``$x``, where an operand starts (jinja2 has no such operand).
_GO_REFERENCE = re.compile(r"(?:^|[\s(|,=])(?:\.(?:[A-Za-z_]|[\s)]|$)|\$)")
_GO_KEYWORD = re.compile(r"-?\s*(?:if|else|end|range|with|define|template|block|break|continue)\b")


@functools.lru_cache(maxsize=512)
def template_language(text: str) -> str:
    """``"go"`` or ``"jinja2"``: which language a parameter template is written in (module docstring)."""
    if "{%" in text or "{#" in text:
        return "jinja2"
    actions = _ACTION.findall(text)
    if not actions:
        return "go"
    for action in actions:
        body = _QUOTED.sub('""', action[1:] if action.startswith("-") else action)
        if _GO_REFERENCE.search(body) or _GO_KEYWORD.match(action):
            return "go"
    return "jinja2"


def render_template(template: str, data: Any) -> str:
    """Render a parameter template with ``Input`` bound to ``data``; ExprError when it fails or when
    the output is empty or ``<no value>`` (Argo then falls back to the key)."""
    if not isinstance(template, str):
        raise ExprError("a template must be a string")
    if len(template) > MAX_TEMPLATE:
        raise ExprError(f"template longer than {MAX_TEMPLATE} characters")
    if template_language(template) == "go":
        out = render_go(template, {"Input": data})
    else:
        out = _render_jinja(template, data)
    if len(out) > MAX_OUTPUT:
        raise ExprError(f"template output longer than {MAX_OUTPUT} characters")
    if out in ("", "<no value>"):
        raise ExprError(f"template {_clip(template)!r} evaluated to empty string or no value")
    return out


# --- the jinja2 sandbox ---------------------------------------------------------------------------------

# The allowance of the rendering under way: [work units left, characters and items left to scan].
_allowance: contextvars.ContextVar[list[int]] = contextvars.ContextVar("sluice_jinja_allowance")


def _spend(units: int) -> None:
    left = _allowance.get(None)
    if left is None:
        return
    left[0] -= units
    if left[0] < 0:
        raise SecurityError("template exceeded its work allowance (loops and calls)")


def _scan(value: Any) -> Any:
    """Charge the size of a value an operation is about to read, or has just built; return it."""
    if isinstance(value, str | list | tuple | dict):
        left = _allowance.get(None)
        if left is not None:
            left[1] -= len(value)
            if left[1] < 0:
                raise SecurityError("template exceeded its allowance of data to scan")
    return value


def _check_size(length: int) -> None:
    if length > MAX_OUTPUT:
        raise SecurityError(f"template would build a value longer than {MAX_OUTPUT}")


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _bounded_iter(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        _spend(1)
        yield item


def _bounded_concat(*parts: Any) -> str:
    texts = [str(p) for p in parts]
    _check_size(sum(len(t) for t in texts))
    return "".join(texts)


def _bounded_join(value: Iterable[Any], d: str = "", attribute: str | None = None) -> str:
    texts: list[str] = []
    total = 0
    for item in value:
        _spend(1)
        if attribute is not None:
            item = item.get(attribute) if isinstance(item, Mapping) else None
        text = str(item)
        total += len(text) + len(d)
        _check_size(total)
        texts.append(text)
    return str(d).join(texts)


def _bounded_replace(s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = str(s), str(old), str(new)
    hits = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _check_size(len(text) + hits * max(0, len(new_text) - len(old_text)))
    return text.replace(old_text, new_text, -1 if count is None else count)


def _bounded_sum(iterable: Iterable[Any], attribute: str | None = None, start: Any = 0) -> Any:
    total = start
    for item in iterable:
        _spend(1)
        if attribute is not None:
            item = item.get(attribute) if isinstance(item, Mapping) else None
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise SecurityError("sum adds numbers only")
        total = total + item
    return total


def _bounded_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> list[list[Any]]:
    if not isinstance(linecount, int) or not 0 < linecount <= MAX_OUTPUT:
        raise SecurityError("batch size out of range")
    out: list[list[Any]] = []
    row: list[Any] = []
    for item in value:
        _spend(1)
        row.append(item)
        if len(row) == linecount:
            out.append(row)
            row = []
    if row:
        if fill_with is not None:
            _spend(linecount - len(row))
            row.extend([fill_with] * (linecount - len(row)))
        out.append(row)
    return out


def _bounded_indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = width if isinstance(width, str) else " " * min(int(width), MAX_OUTPUT + 1)
    _check_size(len(text) + (text.count("\n") + 1) * len(pad))
    lines = text.split("\n")
    head = [pad + lines[0] if first and (blank or lines[0].strip()) else lines[0]]
    rest = [pad + line if blank or line.strip() else line for line in lines[1:]]
    return "\n".join(head + rest)


def _refuse(name: str) -> Callable[..., Any]:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise SecurityError(f"the {name!r} filter is not available in parameter templates")

    return refused


# Methods of str that build text of a size chosen by their arguments; the filters above replace them.
_UNSAFE_STR_METHODS: Final = frozenset(
    {"center", "expandtabs", "format", "format_map", "join", "ljust", "replace", "rjust", "zfill"}
)


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with sizes and work bounded (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Event data is JSON: ``Input.body.items`` is the key "items", not the dict method.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(times, int):
                    _check_size(size * max(times, 0))
        elif operator == "+":
            a, b = _sized(left), _sized(right)
            if a is not None and b is not None:
                _check_size(a + b)
        elif operator == "**":
            big = isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
            if big and right * math.log2(abs(left)) > 4096:
                raise SecurityError("power result too large")
        elif operator == "%" and isinstance(left, str):
            raise SecurityError("printf-style string formatting is not available")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj in _HELPERS:  # our own bookkeeping, called where _Bound put it
            return __obj(*args)
        _spend(CALL_COST)
        return _scan(super().call(__context, __obj, *args, **kwargs))


_HELPERS: Final[tuple[Callable[..., Any], ...]] = (_bounded_iter, _bounded_concat, _scan)


def _helper(name: str, *args: nodes.Node) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load"), list(args), [], None, None)


class _Bound(NodeTransformer):
    """Routes loops, ``~``, filters, tests and comparisons through the budgeted helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _helper("__sluice_iter", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _helper("__sluice_concat", *node.nodes)

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        self.generic_visit(node)
        if node.node is None:  # the filter of a {% filter %} block: applied to the block's output
            return node
        return _helper("__sluice_scan", node)

    def visit_Test(self, node: nodes.Test) -> nodes.Node:
        self.generic_visit(node)
        node.node = _helper("__sluice_scan", node.node)
        node.args = [_helper("__sluice_scan", arg) for arg in node.args]
        return node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _helper("__sluice_scan", node.expr)
        for operand in node.ops:
            operand.expr = _helper("__sluice_scan", operand.expr)
        return node


@functools.lru_cache(maxsize=1)
def _environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False)
    env.filters.update(
        join=_bounded_join,
        replace=_bounded_replace,
        sum=_bounded_sum,
        batch=_bounded_batch,
        indent=_bounded_indent,
        center=_refuse("center"),
        format=_refuse("format"),
        random=_refuse("random"),
        wordwrap=_refuse("wordwrap"),
    )
    env.globals.pop("lipsum", None)
    env.globals.update(__sluice_iter=_bounded_iter, __sluice_concat=_bounded_concat, __sluice_scan=_scan)
    return env


@functools.lru_cache(maxsize=256)
def _compile_jinja(text: str) -> Any:
    env = _environment()
    tree = _Bound().visit(env.parse(text))
    return env.template_class.from_code(env, env.compile(tree), env.make_globals(None), None)


def _render_jinja(text: str, data: Any) -> str:
    token = _allowance.set([MAX_JINJA_WORK, MAX_JINJA_SCAN])
    try:
        template = _compile_jinja(text)
        out: list[str] = []
        size = 0
        for chunk in template.generate(Input=data):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise ExprError(f"template output longer than {MAX_OUTPUT} characters")
            out.append(chunk)
        return "".join(out)
    except ExprError:
        raise
    except RecursionError:
        raise ExprError("template nested or recursed too deeply") from None
    except Exception as exc:  # jinja2 and the sandboxed Python operations raise many types
        raise ExprError(f"template failed: {type(exc).__name__}: {_clip(str(exc), 200)}") from None
    finally:
        _allowance.reset(token)
