"""What steps and DAG frames share: preparing a step/task for launch and tracking its children.

A *launch* is one child of a step group or DAG after substitution and loop expansion: its node name,
the template it runs, its arguments (values substituted, ``from`` artifacts resolved), whether ``when``
lets it run, or the error that makes it an Error node. Used by ``engine.workflows.steps`` and
``engine.workflows.dag``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import expr
from engine.errors import ExprError
from engine.spec.workflow import Arguments, Artifact, DAGTask, Parameter, WorkflowStep
from engine.workflows.loops import LoopError, child_name, expand_sequence, item_variables, parse_with_param
from engine.workflows.outputs import resolve_artifact_ref, single_tag
from engine.workflows.scope import ABSENT, MISSING, Scope, has_json_tags

if TYPE_CHECKING:
    from engine.workflows.reconciler import Holder

Step = WorkflowStep | DAGTask


@dataclass(slots=True)
class Launch:
    name: str
    step: Step
    holder: Holder
    args: Arguments | None = None
    resolved_artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # None: run; otherwise the node is created Skipped with this message.
    skip: str | None = None
    # When set the node is created in Error with this message.
    error: str | None = None
    local: dict[str, Any] = field(default_factory=dict)
    # Set for loop children: the display name.
    display: str | None = None


def holder_of(step: Step) -> Holder:
    from engine.workflows.reconciler import Holder

    return Holder(template=step.template, template_ref=step.template_ref, inline=step.inline)


def _substitute_params(params: tuple[Parameter, ...], scope: Scope, *, keep: bool) -> tuple[Parameter, ...]:
    out = []
    for p in params:
        if p.value is None:
            out.append(p)
            continue
        key = single_tag(p.value)
        if key is not None:
            v = scope.get(key)
            if v is ABSENT:
                # An argument that is only a reference to a skipped producer's output is dropped, so the
                # consumer's own default applies.
                continue
        value = scope.substitute(p.value, keep_unresolved=keep) if "{{" in p.value else p.value
        out.append(Parameter(name=p.name, value=value, value_from=p.value_from))
    return tuple(out)


def _resolve_artifacts(
    arts: tuple[Artifact, ...], scope: Scope
) -> tuple[tuple[Artifact, ...], dict[str, dict[str, Any]]]:
    plain: list[Artifact] = []
    resolved: dict[str, dict[str, Any]] = {}
    for a in arts:
        if not a.from_ and not a.from_expression:
            body = a.dump()
            # Explicit locations (raw data, s3 keys) may use tags, including {{item}}.
            plain.append(Artifact.parse(scope.substitute_json(body)) if has_json_tags(body) else a)
            continue
        if a.from_:
            v = resolve_artifact_ref(scope, a.from_)
        else:
            assert a.from_expression is not None
            v = scope.evaluate(a.from_expression)
            if v is None:
                v = MISSING
        if v is MISSING or v is ABSENT or not isinstance(v, dict):
            if a.optional:
                continue
            ref = a.from_ or a.from_expression
            raise ExprError(f"unable to resolve artifact {a.name!r} from {ref!r}")
        entry = dict(v)
        if a.sub_path:
            entry["subPath"] = scope.substitute(a.sub_path)
        resolved[a.name] = entry
    return tuple(plain), resolved


def _items(step: Step, scope: Scope) -> list[Any] | None:
    if step.with_items is not None:
        out = []
        for it in step.with_items:
            if isinstance(it, str) and "{{" in it:
                out.append(scope.substitute(it))
            else:
                out.append(it)
        return out
    if step.with_param is not None:
        text = scope.substitute(step.with_param) if "{{" in step.with_param else step.with_param
        return parse_with_param(text)
    if step.with_sequence is not None:
        return list(expand_sequence(step.with_sequence, scope.substitute))
    return None


def _when_false(when: str | None) -> tuple[bool, str | None]:
    """(proceed, error)."""
    if not when:
        return True, None
    try:
        return expr.evaluate_when(when), None
    except ExprError as exc:
        return False, str(exc)


def prepare_launches(
    step: Step, base_name: str, scope: Scope, *, prefix_var: str
) -> tuple[list[Launch], bool]:
    """The launches of one step or task, and whether it was expanded from a loop.

    ``base_name`` is the child node name without a loop suffix; ``scope`` resolves the parent's inputs,
    sibling outputs and globals. Errors become Launches with ``error`` set rather than exceptions.
    """
    holder = holder_of(step)
    local = {prefix_var: step.name}
    # The step's own name is visible in its fields ({{steps.name}} / {{tasks.name}}), as Argo resolves it
    # when it substitutes the called template.
    scope = scope.child(dict(local))
    expanded = step.with_items is not None or step.with_param is not None or step.with_sequence is not None
    try:
        args = step.arguments
        params: tuple[Parameter, ...] = ()
        arts: tuple[Artifact, ...] = ()
        if args is not None:
            params = _substitute_params(args.parameters, scope, keep=expanded)
            arts = args.artifacts
        when = step.when
        if when and "{{" in when:
            when = scope.substitute(when, keep_unresolved=expanded)
        if not expanded:
            proceed, err = _when_false(when)
            if err is not None:
                return [Launch(base_name, step, holder, error=err, local=local)], False
            if not proceed:
                return [
                    Launch(base_name, step, holder, skip=f"when '{when}' evaluated false", local=local)
                ], False
            plain, resolved = _resolve_artifacts(arts, scope)
            return [
                Launch(
                    base_name,
                    step,
                    holder,
                    Arguments(parameters=params, artifacts=plain),
                    resolved,
                    local=local,
                )
            ], False
        items = _items(step, scope)
    except (ExprError, LoopError) as exc:
        return [Launch(base_name, step, holder, error=str(exc), local=local)], expanded
    assert items is not None
    if not items:
        return [Launch(base_name, step, holder, skip="Skipped, empty params", local=local)], True
    launches = []
    for i, item in enumerate(items):
        try:
            variables, summary = item_variables(item)
        except LoopError as exc:
            return [Launch(base_name, step, holder, error=str(exc), local=local)], True
        iscope = scope.child(variables)
        name = child_name(base_name, i, summary)
        display = child_name(step.name or "", i, summary)
        try:
            ip = tuple(
                Parameter(
                    name=p.name,
                    value=iscope.substitute(p.value) if p.value and "{{" in p.value else p.value,
                    value_from=p.value_from,
                )
                for p in params
            )
            iwhen = iscope.substitute(when) if when and "{{" in when else when
            proceed, err = _when_false(iwhen)
            if err is not None:
                launches.append(Launch(name, step, holder, error=err, local=local, display=display))
                continue
            if not proceed:
                launches.append(
                    Launch(
                        name,
                        step,
                        holder,
                        skip=f"when '{iwhen}' evaluated false",
                        local=local,
                        display=display,
                    )
                )
                continue
            plain, resolved = _resolve_artifacts(arts, iscope)
        except (ExprError, LoopError) as exc:
            launches.append(Launch(name, step, holder, error=str(exc), local=local, display=display))
            continue
        launches.append(
            Launch(
                name,
                step,
                holder,
                Arguments(parameters=ip, artifacts=plain),
                resolved,
                local=local,
                display=display,
            )
        )
    return launches, True


def continues_on(step: Step, phase: str) -> bool:
    co = step.continue_on
    if co is None:
        return False
    return (phase == "Failed" and bool(co.failed)) or (phase == "Error" and bool(co.error))


def exit_hook(step: Step) -> Any:
    from engine.spec.workflow import LifecycleHook

    if "exit" in step.hooks:
        return step.hooks["exit"]
    if step.on_exit:
        return LifecycleHook(template=step.on_exit)
    return None
