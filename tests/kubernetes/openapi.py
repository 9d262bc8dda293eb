"""What the Kubernetes API server does with a CRD's OpenAPI v3 schema, for tests that run without one.

``structural_problems`` applies the rules of a *structural* schema (Kubernetes' "Specifying a structural
schema"): every field and array item has a type unless it is int-or-string or preserves unknown fields;
``properties`` and ``additionalProperties`` never together; no logical junctors carrying types; only
name and generateName may be restricted under ``metadata``. ``check`` validates an object against the
schema as the API server would before storing it, and also lists what it would *prune* (fields the
schema does not know), so a test can insist that nothing a user wrote is silently dropped.

Used by ``tests/kubernetes/test_crds.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TYPES = ("object", "array", "string", "integer", "number", "boolean")
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def structural_problems(schema: Any, path: str = "") -> list[str]:
    """Why ``schema`` is not structural (empty when it is)."""
    out: list[str] = []
    _structural(schema, path or "<root>", out, root=True)
    return out


def _structural(s: Any, path: str, out: list[str], *, root: bool = False) -> None:
    if not isinstance(s, dict):
        out.append(f"{path}: a schema must be a mapping")
        return
    if "$ref" in s:
        out.append(f"{path}: $ref is not allowed")
    t = s.get("type")
    if t is None and not s.get(INT_OR_STRING) and not s.get(PRESERVE):
        out.append(f"{path}: type is required")
    if t is not None and t not in TYPES:
        out.append(f"{path}: unknown type {t!r}")
    if s.get(INT_OR_STRING) and t is not None:
        out.append(f"{path}: int-or-string must not set a type")
    if root and t != "object":
        out.append(f"{path}: the root must be an object")
    if "properties" in s and "additionalProperties" in s:
        out.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if ("properties" in s or "additionalProperties" in s) and t not in (None, "object"):
        out.append(f"{path}: properties on a {t}")
    if "items" in s and t != "array":
        out.append(f"{path}: items on a {t}")
    if t == "array" and "items" not in s:
        out.append(f"{path}: an array must give items")
    for j in JUNCTORS:
        if j in s:
            out.append(f"{path}: {j} is not used by these schemas")
    for name, sub in (s.get("properties") or {}).items():
        if root and name == "metadata":
            extra = set(sub) - {"type"}
            if extra:
                out.append(f"{path}.metadata: only name and generateName may be restricted, not {extra}")
        _structural(sub, f"{path}.{name}", out)
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        _structural(ap, f"{path}.*", out)
    if "items" in s:
        _structural(s["items"], f"{path}[]", out)


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    nulls: list[str] = field(default_factory=list)


def check(value: Any, schema: dict[str, Any]) -> Verdict:
    """What the API server would reject (errors) and silently drop (pruned fields, null values)."""
    v = Verdict()
    _check(value, schema, "", v)
    return v


def _check(value: Any, s: dict[str, Any], path: str, v: Verdict) -> None:
    if value is None:
        if not s.get("nullable"):
            v.nulls.append(path or "<root>")
        return
    if s.get(INT_OR_STRING):
        if isinstance(value, bool) or not isinstance(value, int | str):
            v.errors.append(f"{path}: must be an integer or a string, not {type(value).__name__}")
        return
    t = s.get("type")
    ok = {
        None: True,
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[t]
    if not ok:
        v.errors.append(f"{path}: must be {t}, not {type(value).__name__}")
        return
    if isinstance(value, dict):
        props = s.get("properties")
        extra = s.get("additionalProperties")
        for req in s.get("required") or ():
            if req not in value:
                v.errors.append(f"{path}.{req}: required")
        for k, sub in value.items():
            p = f"{path}.{k}" if path else str(k)
            if not path and k == "metadata":
                continue  # the API server's own schema, never the CRD's
            if props is not None and k in props:
                _check(sub, props[k], p, v)
            elif isinstance(extra, dict):
                _check(sub, extra, p, v)
            elif not s.get(PRESERVE):
                v.pruned.append(p)
    elif isinstance(value, list) and "items" in s:
        for i, item in enumerate(value):
            _check(item, s["items"], f"{path}[{i}]", v)
