"""Reflective parsing and dumping of manifest models.

Every manifest kind in ``engine.spec`` is a frozen dataclass deriving from :class:`Model`. This module
turns YAML/JSON dicts into those dataclasses and back: snake_case attributes map to Argo's camelCase
keys, every problem is collected with its field path (``spec.templates[2].dag.tasks[1].depends``) rather
than stopping at the first, and unknown keys are reported as kubectl's strict field validation does.
The same field tables generate the CRD schemas. Called by ``engine.spec.loader`` and by tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar, Union, dataclass_transform, get_args, get_origin

from engine.errors import Problem, SpecError

M = TypeVar("M", bound="Model")

# A JSON-like value passed through untouched (Kubernetes sub-objects we do not interpret, free-form items).
JSON = Any


class _Marker:
    """Annotation metadata that changes how a field parses (see AnyStr, IntOrStr)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_ANYSTR = _Marker("AnyStr")
_INTORSTR = _Marker("IntOrStr")

# Argo's AnyString: numbers and booleans are accepted and kept as their string form.
AnyStr = Annotated[str, _ANYSTR]
# Kubernetes IntOrString: the value is kept as given (int or str).
IntOrStr = Annotated[int | str, _INTORSTR]


def camel(name: str) -> str:
    """``value_from`` -> ``valueFrom``; a trailing underscore (``from_``) is dropped."""
    name = name.rstrip("_")
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def scalar_str(value: Any) -> str:
    """The string form Argo gives a YAML scalar: ``true``/``false`` for booleans, no ``.0`` for ints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    key: str
    kind: Any
    required: bool


class Model:
    """Base of every manifest dataclass. Subclasses are ``@model`` frozen dataclasses."""

    __slots__ = ()
    # Keys that differ from the camelCase of the attribute name.
    KEYS: ClassVar[Mapping[str, str]] = {}
    _fields_cache: ClassVar[tuple[_Field, ...] | None] = None
    _field_names: ClassVar[frozenset[str] | None] = None

    @classmethod
    def fields(cls) -> tuple[_Field, ...]:
        cached = cls.__dict__.get("_fields_cache")
        if cached is not None:
            return typing.cast(tuple[_Field, ...], cached)
        hints = typing.get_type_hints(cls, include_extras=True)
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name.startswith("_"):
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            out.append(_Field(f.name, cls.KEYS.get(f.name, camel(f.name)), hints[f.name], required))
        table = tuple(out)
        cls._fields_cache = table
        return table

    @classmethod
    def parse(cls: type[M], data: Any, path: str = "") -> M:
        """Parse ``data`` or raise :class:`SpecError` listing every problem."""
        problems: list[Problem] = []
        value = parse_into(cls, data, path, problems)
        if problems or value is None:
            raise SpecError(problems)
        return typing.cast(M, value)

    def evolve(self: M, **changes: Any) -> M:
        """This model with ``changes``, as ``dataclasses.replace`` gives it, without a second ``__init__``
        (which only assigns the fields, from keywords: twice this loop's cost for a 45-field spec,
        copied for every workflow a trigger submits)."""
        cls = type(self)
        names = cls.__dict__.get("_field_names")
        if names is None:
            names = frozenset(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
            cls._field_names = names
        if not changes.keys() <= names:
            unknown = ", ".join(sorted(changes.keys() - names))
            raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
        new = object.__new__(cls)
        for name in names:
            object.__setattr__(new, name, changes[name] if name in changes else getattr(self, name))
        return new

    def dump(self) -> dict[str, Any]:
        """The manifest form: camelCase keys, unset (None/empty) fields omitted."""
        out: dict[str, Any] = {}
        for f in type(self).fields():
            v = getattr(self, f.attr)
            if v is None or (isinstance(v, tuple | dict) and not v and not f.required):
                continue
            out[f.key] = dump_value(v)
        return out


@dataclass_transform(kw_only_default=True, frozen_default=True)
def model(cls: type[M]) -> type[M]:
    """Decorator: a frozen, slotted, keyword-only dataclass deriving from Model."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


def dump_value(v: Any) -> Any:
    if isinstance(v, Model):
        return v.dump()
    if isinstance(v, tuple | list):
        return [dump_value(x) for x in v]
    if isinstance(v, dict):
        return {k: dump_value(x) for k, x in v.items()}
    return v


def _marker(kind: Any) -> _Marker | None:
    if get_origin(kind) is Annotated:
        for meta in kind.__metadata__:
            if isinstance(meta, _Marker):
                return meta
    return None


def _type_name(kind: Any) -> str:
    m = _marker(kind)
    if m is _INTORSTR:
        return "an integer or a string"
    if m is _ANYSTR:
        return "a string"
    if kind is str:
        return "a string"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is bool:
        return "a boolean"
    origin = get_origin(kind)
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(kind, type) and issubclass(kind, Model):
        return "a mapping"
    return "a value"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def parse_into(kind: Any, data: Any, path: str, problems: list[Problem]) -> Any:
    """Convert ``data`` to ``kind``; on a problem, record it and return None."""
    parser = _parser_for(kind)
    return parser(data, path, problems)


_Parser = Callable[[Any, str, list[Problem]], Any]
_parsers: dict[Any, _Parser] = {}


def _parser_for(kind: Any) -> _Parser:
    try:
        return _parsers[kind]
    except (KeyError, TypeError):
        pass
    parser = _build_parser(kind)
    with contextlib.suppress(TypeError):  # unhashable kinds are simply not cached
        _parsers[kind] = parser
    return parser


def _wrong(kind: Any, data: Any, path: str, problems: list[Problem]) -> None:
    problems.append(Problem(path, f"must be {_type_name(kind)}, not {_describe(data)}"))


def _build_parser(kind: Any) -> _Parser:
    marker = _marker(kind)
    if marker is _ANYSTR:
        return _parser_for(str)
    if marker is _INTORSTR:

        def p_ios(data: Any, path: str, problems: list[Problem]) -> Any:
            if isinstance(data, int) and not isinstance(data, bool):
                return data
            if isinstance(data, str):
                return data
            if isinstance(data, float) and data.is_integer():
                return int(data)
            _wrong(kind, data, path, problems)
            return None

        return p_ios
    if get_origin(kind) is Annotated:
        return _parser_for(get_args(kind)[0])
    if kind is Any:
        return lambda data, path, problems: data
    origin = get_origin(kind)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(kind) if a is not type(None)]
        inner = _parser_for(args[0]) if len(args) == 1 else _parser_for(Any)
        return lambda data, path, problems: None if data is None else inner(data, path, problems)
    if kind is str:

        def p_str(data: Any, path: str, problems: list[Problem]) -> Any:
            if isinstance(data, str):
                return data
            if isinstance(data, bool | int | float):
                return scalar_str(data)
            _wrong(kind, data, path, problems)
            return None

        return p_str
    if kind is bool:

        def p_bool(data: Any, path: str, problems: list[Problem]) -> Any:
            if isinstance(data, bool):
                return data
            if isinstance(data, str) and data.lower() in ("true", "false"):
                return data.lower() == "true"
            _wrong(kind, data, path, problems)
            return None

        return p_bool
    if kind is int:

        def p_int(data: Any, path: str, problems: list[Problem]) -> Any:
            if isinstance(data, int) and not isinstance(data, bool):
                return data
            if isinstance(data, float) and data.is_integer():
                return int(data)
            if isinstance(data, str) and data.strip().lstrip("-").isdigit():
                return int(data)
            _wrong(kind, data, path, problems)
            return None

        return p_int
    if kind is float:

        def p_float(data: Any, path: str, problems: list[Problem]) -> Any:
            if isinstance(data, int | float) and not isinstance(data, bool):
                return float(data)
            if isinstance(data, str):
                try:
                    return float(data)
                except ValueError:
                    pass
            _wrong(kind, data, path, problems)
            return None

        return p_float
    if origin in (tuple, list):
        (item_kind, *_) = get_args(kind)
        item = _parser_for(item_kind)

        def p_list(data: Any, path: str, problems: list[Problem]) -> Any:
            if not isinstance(data, list):
                _wrong(kind, data, path, problems)
                return None
            return tuple(item(x, f"{path}[{i}]", problems) for i, x in enumerate(data))

        return p_list
    if origin is dict:
        _, value_kind = get_args(kind)
        val = _parser_for(value_kind)

        def p_dict(data: Any, path: str, problems: list[Problem]) -> Any:
            if not isinstance(data, dict):
                _wrong(kind, data, path, problems)
                return None
            return {str(k): val(v, f"{path}.{k}" if path else str(k), problems) for k, v in data.items()}

        return p_dict
    if isinstance(kind, type) and issubclass(kind, Model):
        return _model_parser(kind)
    raise TypeError(f"no parser for {kind!r}")


def _model_parser(cls: type[Model]) -> _Parser:
    table: list[tuple[_Field, _Parser]] | None = None
    keys: frozenset[str] = frozenset()

    def p_model(data: Any, path: str, problems: list[Problem]) -> Any:
        nonlocal table, keys
        if table is None:
            table = [(f, _parser_for(f.kind)) for f in cls.fields()]
            keys = frozenset(f.key for f, _ in table)
        if not isinstance(data, dict):
            problems.append(Problem(path, f"must be a mapping, not {_describe(data)}"))
            return None
        kwargs: dict[str, Any] = {}
        before = len(problems)
        for f, parse in table:
            sub = f"{path}.{f.key}" if path else f.key
            if f.key in data and data[f.key] is not None:
                kwargs[f.attr] = parse(data[f.key], sub, problems)
            elif f.required:
                problems.append(Problem(sub, "is required"))
        for key in data:
            if key not in keys:
                sub = f"{path}.{key}" if path else str(key)
                problems.append(Problem(sub, "unknown field"))
        if len(problems) != before:
            return None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            problems.append(Problem(path, str(exc)))
            return None

    return p_model


def json_schema(kind: Any) -> dict[str, Any]:
    """A structural OpenAPI v3 schema for ``kind``; recursive models are cut with preserve-unknown-fields."""
    return _schema(kind, ())


def _schema(kind: Any, seen: tuple[type, ...]) -> dict[str, Any]:
    marker = _marker(kind)
    if marker is _INTORSTR:
        return {"x-kubernetes-int-or-string": True}
    if marker is _ANYSTR:
        # Argo's AnyString takes any scalar (true, 1.5, "x"); int-or-string would refuse booleans and
        # floats, so the node is left open and the parser checks it is a scalar.
        return {"x-kubernetes-preserve-unknown-fields": True}
    if get_origin(kind) is Annotated:
        return _schema(get_args(kind)[0], seen)
    origin = get_origin(kind)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(kind) if a is not type(None)]
        return _schema(args[0], seen) if len(args) == 1 else {"x-kubernetes-preserve-unknown-fields": True}
    if kind is str:
        return {"type": "string"}
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is float:
        return {"type": "number"}
    if kind is Any:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if origin in (tuple, list):
        return {"type": "array", "items": _schema(get_args(kind)[0], seen)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(get_args(kind)[1], seen)}
    if isinstance(kind, type) and issubclass(kind, Model):
        if kind in seen:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        props = {f.key: _schema(f.kind, (*seen, kind)) for f in kind.fields()}
        out: dict[str, Any] = {"type": "object", "properties": props}
        req = [f.key for f in kind.fields() if f.required]
        if req:
            out["required"] = req
        return out
    raise TypeError(f"no schema for {kind!r}")
