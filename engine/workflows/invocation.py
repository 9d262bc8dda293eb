"""Invocations: a template bound to its inputs, ready to run as one node.

``bind_inputs`` applies Argo's precedence for input parameters (argument, then the template's ``value``,
then ``default``, then ``valueFrom.configMapKeyRef``; ``enum`` checked) and input artifacts (argument,
then the template's own location; ``optional`` may be missing). The result carries the scope the
template's own fields are substituted in. Used by the reconciler for every node it creates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import SluiceError
from engine.spec.fields import scalar_str
from engine.spec.workflow import Arguments, Artifact, Template
from engine.workflows.scope import Scope
from engine.workflows.templates import TemplateContext


class InputError(SluiceError):
    """An input could not be bound (not supplied, not in enum, configmap missing)."""


@dataclass(slots=True)
class Invocation:
    """One template with its bound inputs; ``scope`` sees the inputs, node-local values and globals."""

    template: Template
    tctx: TemplateContext
    parameters: dict[str, str]
    artifacts: list[dict[str, Any]]
    scope: Scope
    # For node.inputs (Argo's shape), computed once.
    inputs_json: dict[str, Any] | None = None
    # Reused by leaves: the container/script dump, cached before substitution.
    cache: dict[str, Any] = field(default_factory=dict)


def artifact_location(art: Artifact) -> dict[str, Any]:
    """An Artifact's location keys (raw, s3, http, git...) as an Argo artifact dict without the name."""
    d = art.dump()
    return {k: v for k, v in d.items() if k in Artifact.LOCATION_KEYS or k == "local"}


def bind_inputs(
    tmpl: Template,
    tctx: TemplateContext,
    args: Arguments | None,
    *,
    resolved: Mapping[str, dict[str, Any]] | None = None,
    parent: Scope,
    local: dict[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
) -> Invocation:
    args_params = {p.name: p for p in (args.parameters if args else ())}
    args_arts = {a.name: a for a in (args.artifacts if args else ())}
    params: dict[str, str] = {}
    for p in tmpl.inputs.parameters:
        value: str | None = None
        arg = args_params.get(p.name)
        vf = arg.value_from if arg is not None and arg.value is None else p.value_from
        if arg is not None and arg.value is not None:
            value = arg.value
        elif p.value is not None:
            value = p.value
        elif p.default is not None:
            value = p.default
        if value is None and vf is not None and vf.config_map_key_ref is not None:
            ref = vf.config_map_key_ref
            cm = configmaps.get(ref.name)
            if cm is not None and ref.key in cm:
                value = cm[ref.key]
            elif vf.default is not None:
                value = vf.default
            else:
                raise InputError(
                    f"unable to retrieve inputs.parameters.{p.name} from ConfigMap {ref.name!r}"
                    f" key {ref.key!r}"
                )
        if value is None and vf is not None and vf.default is not None:
            value = vf.default
        if value is None:
            raise InputError(f"inputs.parameters.{p.name} was not supplied")
        if p.enum and value not in p.enum:
            allowed = ", ".join(p.enum)
            raise InputError(
                f"inputs.parameters.{p.name}: value {value!r} is not one of the allowed values: {allowed}"
            )
        params[p.name] = value
    param_scope = Scope({f"inputs.parameters.{n}": v for n, v in params.items()} | dict(local), parent=parent)
    arts: list[dict[str, Any]] = []
    for a in tmpl.inputs.artifacts:
        supplied = args_arts.get(a.name)
        loc: dict[str, Any] = {}
        if resolved is not None and a.name in resolved:
            loc = {k: v for k, v in resolved[a.name].items() if k not in ("name", "path", "globalName")}
        elif supplied is not None and supplied.has_location():
            loc = artifact_location(supplied)
        elif a.has_location():
            # The template's own location may use its inputs and the globals ({{inputs.parameters.x}}).
            loc = param_scope.substitute_json(artifact_location(a))
        if not loc:
            if a.optional:
                continue
            raise InputError(f"inputs.artifacts.{a.name} was not supplied")
        entry: dict[str, Any] = {"name": a.name}
        if a.path:
            entry["path"] = a.path
        if a.mode is not None:
            entry["mode"] = a.mode
        if a.recurse_mode:
            entry["recurseMode"] = True
        if a.optional:
            entry["optional"] = True
        sub = (supplied.sub_path if supplied is not None else None) or a.sub_path
        if sub:
            entry["subPath"] = sub
        entry.update(loc)
        arts.append(entry)

    scope_vars = dict(local)
    for name, value in params.items():
        scope_vars[f"inputs.parameters.{name}"] = value
    if tmpl.inputs.parameters:
        scope_vars["inputs.parameters"] = json.dumps(
            [{"name": n, "value": v} for n, v in params.items()], separators=(",", ":")
        )
    for art in arts:
        scope_vars[f"inputs.artifacts.{art['name']}"] = art
        if "path" in art:
            scope_vars[f"inputs.artifacts.{art['name']}.path"] = art["path"]
    for op in tmpl.outputs.parameters:
        if op.value_from is not None and op.value_from.path:
            scope_vars[f"outputs.parameters.{op.name}.path"] = op.value_from.path
    for oa in tmpl.outputs.artifacts:
        if oa.path:
            scope_vars[f"outputs.artifacts.{oa.name}.path"] = oa.path
    scope = Scope(scope_vars, parent=parent)
    inputs_json: dict[str, Any] | None = None
    if params or arts:
        inputs_json = {}
        if params:
            inputs_json["parameters"] = [{"name": n, "value": v} for n, v in params.items()]
        if arts:
            inputs_json["artifacts"] = arts
    # Input parameter values may themselves contain tags only when they came from a template default
    # referencing other inputs (Argo substitutes defaults like "{{inputs.parameters.x}}" once).
    for name, value in list(params.items()):
        if "{{" in value and tmpl.inputs.parameters and (args_params.get(name) is None):
            text_value = scope.substitute(value, keep_unresolved=True)
            params[name] = text_value
            scope_vars[f"inputs.parameters.{name}"] = text_value
    return Invocation(tmpl, tctx, params, arts, scope, inputs_json)


def text(value: Any) -> str:
    return value if isinstance(value, str) else scalar_str(value)
