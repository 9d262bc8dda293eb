"""Semantic validation of workflow specs: what parsing cannot see.

Reports every problem with its field path: unknown template references, duplicate names, a template
with no or several types, steps/tasks that name no template, ``dependencies`` mixed with ``depends``,
unknown or cyclic dependencies, bad durations, retry policies and limits, expressions that do not
parse, references to undeclared inputs or unknown steps/tasks, and required inputs no one supplies.
Called by ``sluice lint``/``run``/``submit`` and by the runtimes before a workflow starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import networkx as nx

from engine import expr
from engine.errors import ExprError, Problem, ReferenceError_, SpecError
from engine.expr.cron import CronSchedule
from engine.spec.duration import parse_duration
from engine.spec.workflow import (
    Arguments,
    CronWorkflow,
    DAGTask,
    LifecycleHook,
    RetryStrategy,
    Template,
    Workflow,
    WorkflowSpec,
    WorkflowStep,
)
from engine.workflows.templates import TemplateSource

NAME_RE = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
RETRY_POLICIES = ("Always", "OnFailure", "OnError", "OnTransientError")


class _Checker:
    def __init__(self, spec: WorkflowSpec, source: TemplateSource | None, *, base: str) -> None:
        self.spec = spec
        self.source = source
        self.base = base
        self.problems: list[Problem] = []
        self.by_name: dict[str, Template] = {t.name: t for t in spec.templates if t.name}

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(f"{self.base}.{path}" if self.base else path, message))

    # --- references ----------------------------------------------------------------------------------

    def resolve(self, holder: Any, path: str) -> Template | None:
        ref = getattr(holder, "template_ref", None)
        inline = getattr(holder, "inline", None)
        name = getattr(holder, "template", None)
        set_count = sum(x is not None and x != "" for x in (ref, inline, name))
        if set_count == 0:
            self.add(path, "must set one of template, templateRef or inline")
            return None
        if set_count > 1:
            self.add(path, "set only one of template, templateRef and inline")
            return None
        if inline is not None:
            return inline  # type: ignore[no-any-return]
        if ref is not None:
            if self.source is None:
                return None
            spec = self.source(bool(ref.cluster_scope), ref.name)
            kind = "ClusterWorkflowTemplate" if ref.cluster_scope else "WorkflowTemplate"
            if spec is None:
                self.add(f"{path}.templateRef.name", f"{kind} {ref.name!r} not found")
                return None
            t = spec.template(ref.template)
            if t is None:
                self.add(
                    f"{path}.templateRef.template",
                    f"template {ref.template!r} not found in {kind} {ref.name!r}",
                )
            return t
        if "{{" in str(name):
            return None
        t = self.by_name.get(str(name))
        if t is None:
            self.add(f"{path}.template", f"template {name!r} not found")
        return t

    def check_inputs_supplied(self, tmpl: Template | None, args: Arguments | None, path: str) -> None:
        if tmpl is None:
            return
        supplied = {p.name for p in (args.parameters if args else ())}
        for p in tmpl.inputs.parameters:
            vf = p.value_from
            if p.name in supplied or p.value is not None or p.default is not None:
                continue
            if vf is not None and (vf.config_map_key_ref is not None or vf.default is not None):
                continue
            self.add(path, f"inputs.parameters.{p.name} was not supplied")
        supplied_arts = {a.name for a in (args.artifacts if args else ())}
        for a in tmpl.inputs.artifacts:
            if a.name in supplied_arts or a.has_location() or a.optional:
                continue
            self.add(path, f"inputs.artifacts.{a.name} was not supplied")

    # --- values --------------------------------------------------------------------------------------

    def duration(self, value: Any, path: str) -> None:
        if value is None or "{{" in str(value):
            return
        try:
            parse_duration(value)
        except ValueError as exc:
            self.add(path, str(exc))

    def expressions_in(self, value: Any, path: str) -> None:
        """Every ``{{= }}`` tag inside ``value`` must parse."""
        if isinstance(value, str):
            if "{{=" in value:
                try:
                    expr.check_syntax(value)
                except ExprError as exc:
                    self.add(path, str(exc))
        elif isinstance(value, dict):
            for k, v in value.items():
                self.expressions_in(v, f"{path}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                self.expressions_in(v, f"{path}[{i}]")

    def expression(self, source: str | None, path: str) -> None:
        if not source or "{{" in source:
            return
        try:
            expr.compile_expr(source)
        except ExprError as exc:
            self.add(path, str(exc))

    def retry(self, rs: RetryStrategy | None, path: str) -> None:
        if rs is None:
            return
        if rs.retry_policy is not None and rs.retry_policy not in RETRY_POLICIES:
            self.add(
                f"{path}.retryPolicy", f"must be one of {', '.join(RETRY_POLICIES)}, not {rs.retry_policy!r}"
            )
        if isinstance(rs.limit, str) and "{{" not in rs.limit:
            try:
                if int(rs.limit) < 0:
                    raise ValueError
            except ValueError:
                self.add(f"{path}.limit", f"must be a non-negative integer, not {rs.limit!r}")
        elif isinstance(rs.limit, int) and rs.limit < 0:
            self.add(f"{path}.limit", "must not be negative")
        if rs.backoff is not None:
            b = rs.backoff
            self.duration(b.duration, f"{path}.backoff.duration")
            self.duration(b.cap, f"{path}.backoff.cap")
            self.duration(b.max_duration, f"{path}.backoff.maxDuration")
        self.expression(rs.expression, f"{path}.expression")

    def hooks(self, hooks: dict[str, LifecycleHook], path: str) -> None:
        for name, hook in hooks.items():
            hp = f"{path}.hooks.{name}"
            self.resolve(hook, hp)
            if name != "exit" and not hook.expression:
                self.add(f"{hp}.expression", "is required for hooks other than exit")
            self.expression(hook.expression, f"{hp}.expression")

    # --- templates -----------------------------------------------------------------------------------

    def template(self, t: Template, path: str) -> None:
        kinds = t.kinds()
        if not kinds:
            self.add(path, "template has no template type (container, script, steps, dag, suspend, ...)")
        elif len(kinds) > 1:
            self.add(path, f"template must have exactly one template type, has {', '.join(kinds)}")
        if t.timeout is not None and t.kind in ("steps", "dag"):
            self.add(f"{path}.timeout", "timeout cannot be applied to steps or dag templates")
        self.duration(t.timeout, f"{path}.timeout")
        if t.suspend is not None:
            self.duration(t.suspend.duration, f"{path}.suspend.duration")
        if t.memoize is not None and t.memoize.max_age:
            self.duration(t.memoize.max_age, f"{path}.memoize.maxAge")
        self.retry(t.retry_strategy, f"{path}.retryStrategy")
        self.images(t, path)
        for i, p in enumerate(t.outputs.parameters):
            if p.value_from is not None:
                self.expression(
                    p.value_from.expression, f"{path}.outputs.parameters[{i}].valueFrom.expression"
                )
        seen: set[str] = set()
        for i, p in enumerate(t.inputs.parameters):
            if p.name in seen:
                self.add(f"{path}.inputs.parameters[{i}].name", f"duplicate input parameter {p.name!r}")
            seen.add(p.name)
        body = t.dump()
        self.expressions_in(body, path)
        self.input_references(t, path, body)
        if t.steps is not None:
            self.steps(t, path)
        if t.dag is not None:
            self.dag(t, path)
        if t.http is not None:
            self.expression(t.http.success_condition, f"{path}.http.successCondition")

    def images(self, t: Template, path: str) -> None:
        """Every container names its image, itself or through templateDefaults."""
        d = self.spec.template_defaults
        if d is not None and any(c is not None and c.image for c in (d.container, d.script)):
            return
        if t.container is not None and not t.container.image:
            self.add(f"{path}.container.image", "is required")
        if t.script is not None and not t.script.image:
            self.add(f"{path}.script.image", "is required")
        if t.container_set is not None:
            for i, c in enumerate(t.container_set.containers):
                if not c.image:
                    self.add(f"{path}.containerSet.containers[{i}].image", "is required")

    def input_references(self, t: Template, path: str, dumped: dict[str, Any]) -> None:
        """``{{inputs.parameters.x}}`` must name a declared input of the same template."""
        declared = {p.name for p in t.inputs.parameters}
        arts = {a.name for a in t.inputs.artifacts}
        body = {k: v for k, v in dumped.items() if k != "inputs"}
        for key in _tag_keys(body):
            if key.startswith("inputs.parameters.") and key[len("inputs.parameters.") :] not in declared:
                self.add(path, f"failed to resolve {{{{{key}}}}}: no input parameter of that name")
            elif key.startswith("inputs.artifacts."):
                name = key[len("inputs.artifacts.") :].split(".")[0]
                if name not in arts:
                    self.add(path, f"failed to resolve {{{{{key}}}}}: no input artifact of that name")

    def steps(self, t: Template, path: str) -> None:
        assert t.steps is not None
        names: dict[str, int] = {}
        for gi, group in enumerate(t.steps):
            for si, step in enumerate(group):
                sp = f"{path}.steps[{gi}][{si}]"
                if not step.name:
                    self.add(f"{sp}.name", "is required")
                elif not NAME_RE.match(step.name):
                    self.add(f"{sp}.name", f"{step.name!r} must consist of alphanumerics and '-'")
                elif step.name in names:
                    self.add(f"{sp}.name", f"duplicate step name {step.name!r}")
                else:
                    names[step.name] = gi
                self.step_common(step, sp)
        for gi, group in enumerate(t.steps):
            for si, step in enumerate(group):
                sp = f"{path}.steps[{gi}][{si}]"
                body = step.dump()
                # Hooks run after (or alongside) their step and may read its outputs and status.
                body.pop("hooks", None)
                body.pop("onExit", None)
                for key in _tag_keys(body):
                    if key.startswith("steps.") and key != "steps.name":
                        ref = key.split(".")[1]
                        if ref not in names:
                            self.add(sp, f"failed to resolve {{{{{key}}}}}: no step named {ref!r}")
                        elif names[ref] >= gi:
                            self.add(
                                sp,
                                f"failed to resolve {{{{{key}}}}}: step {ref!r} is not in an earlier group",
                            )

    def step_common(self, step: WorkflowStep | DAGTask, sp: str) -> None:
        called = self.resolve(step, sp)
        loops = [x for x in (step.with_items, step.with_param, step.with_sequence) if x is not None]
        if len(loops) > 1:
            self.add(sp, "only one of withItems, withParam and withSequence can be set")
        if step.with_sequence is not None:
            seq = step.with_sequence
            if seq.count is not None and seq.end is not None:
                self.add(f"{sp}.withSequence", "only one of count or end can be defined")
            if seq.count is None and seq.end is None:
                self.add(f"{sp}.withSequence", "one of count or end must be defined")
        self.check_inputs_supplied(called, step.arguments, f"{sp}.arguments")
        if step.arguments is not None:
            seen: set[str] = set()
            for i, p in enumerate(step.arguments.parameters):
                if p.name in seen:
                    self.add(f"{sp}.arguments.parameters[{i}].name", f"duplicate argument {p.name!r}")
                seen.add(p.name)
        if step.on_exit:
            self.resolve(_Named(step.on_exit), f"{sp}.onExit")
        self.hooks(step.hooks, sp)

    def dag(self, t: Template, path: str) -> None:
        assert t.dag is not None
        tasks = t.dag.tasks
        names: dict[str, int] = {}
        uses_deps = uses_depends = False
        for i, task in enumerate(tasks):
            tp = f"{path}.dag.tasks[{i}]"
            if not NAME_RE.match(task.name):
                self.add(f"{tp}.name", f"{task.name!r} must consist of alphanumerics and '-'")
            if task.name in names:
                self.add(f"{tp}.name", f"duplicate task name {task.name!r}")
            names[task.name] = i
            uses_deps = uses_deps or bool(task.dependencies)
            uses_depends = uses_depends or bool(task.depends)
            if task.dependencies and task.depends:
                self.add(tp, "cannot set both dependencies and depends")
            self.step_common(task, tp)
        if uses_deps and uses_depends:
            self.add(f"{path}.dag", "cannot use both 'depends' and 'dependencies' in the same DAG template")
        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(names)
        for i, task in enumerate(tasks):
            tp = f"{path}.dag.tasks[{i}]"
            deps: Iterable[str] = ()
            if task.depends:
                try:
                    deps = expr.parse_depends(task.depends).task_names()
                except ExprError as exc:
                    self.add(f"{tp}.depends", str(exc))
                    continue
                field = "depends"
            else:
                deps = task.dependencies or ()
                field = "dependencies"
            for d in deps:
                if d not in names:
                    self.add(f"{tp}.{field}", f"task {task.name!r} depends on unknown task {d!r}")
                else:
                    graph.add_edge(d, task.name)
            for key in _tag_keys(task.dump()):
                if key.startswith("tasks.") and key != "tasks.name":
                    ref = key.split(".")[1]
                    if ref not in names:
                        self.add(tp, f"failed to resolve {{{{{key}}}}}: no task named {ref!r}")
        cycle = None
        # find_cycle walks slowly on big acyclic graphs; the acyclicity test is linear and cheap.
        if not nx.is_directed_acyclic_graph(graph):
            try:
                cycle = nx.find_cycle(graph)
            except nx.NetworkXNoCycle:
                cycle = None
        if cycle:
            route = " -> ".join([cycle[0][0], *(e[1] for e in cycle)])
            self.add(f"{path}.dag", f"dependency cycle: {route}")
        if t.dag.target and "{{" not in t.dag.target:
            for name in t.dag.target.split():
                if name not in names:
                    self.add(f"{path}.dag.target", f"target {name!r} is not a task")

    def workflow_spec(
        self, *, require_entrypoint: bool, is_workflow: bool = True, allow_empty_arguments: bool = False
    ) -> None:
        spec = self.spec
        seen: dict[str, int] = {}
        for i, t in enumerate(spec.templates):
            tp = f"templates[{i}]"
            if not t.name:
                self.add(f"{tp}.name", "is required")
            elif not NAME_RE.match(t.name) or len(t.name) > 128:
                self.add(f"{tp}.name", f"{t.name!r} must be at most 128 alphanumerics and '-'")
            elif t.name in seen:
                self.add(f"{tp}.name", f"duplicate template name {t.name!r}")
            else:
                seen[t.name] = i
            self.template(t, tp)
        if spec.template_defaults is not None:
            self.retry(spec.template_defaults.retry_strategy, "templateDefaults.retryStrategy")
        if spec.entrypoint:
            if "{{" not in spec.entrypoint and spec.entrypoint not in self.by_name:
                self.add("entrypoint", f"template {spec.entrypoint!r} not found")
            elif is_workflow:
                # A WorkflowTemplate's entrypoint inputs come from whoever submits it.
                entry = self.by_name.get(spec.entrypoint)
                self.check_inputs_supplied(entry, spec.arguments, "arguments")
        elif require_entrypoint and spec.workflow_template_ref is None:
            self.add("entrypoint", "is required")
        if spec.on_exit and spec.on_exit not in self.by_name:
            self.add("onExit", f"template {spec.on_exit!r} not found")
        self.hooks(spec.hooks, "")
        self.retry(spec.retry_strategy, "retryStrategy")
        if spec.pod_gc is not None:
            self.duration(spec.pod_gc.delete_delay_duration, "podGC.deleteDelayDuration")
            if spec.pod_gc.strategy and spec.pod_gc.strategy not in (
                "OnPodCompletion",
                "OnPodSuccess",
                "OnWorkflowCompletion",
                "OnWorkflowSuccess",
            ):
                self.add("podGC.strategy", f"unknown strategy {spec.pod_gc.strategy!r}")
        if spec.shutdown and spec.shutdown not in ("Stop", "Terminate"):
            self.add("shutdown", "must be Stop or Terminate")
        names: set[str] = set()
        for i, p in enumerate(spec.arguments.parameters):
            if p.name in names:
                self.add(f"arguments.parameters[{i}].name", f"duplicate parameter {p.name!r}")
            names.add(p.name)
            if p.enum and p.value is not None and p.value not in p.enum:
                self.add(f"arguments.parameters[{i}].value", f"{p.value!r} is not one of {', '.join(p.enum)}")
            # A Workflow must say what each argument is; a WorkflowTemplate leaves it to its submitter.
            if (
                is_workflow
                and not allow_empty_arguments
                and p.value is None
                and p.value_from is None
                and p.default is None
            ):
                self.add(f"arguments.parameters[{i}].value", "is required")


class _Named:
    def __init__(self, name: str) -> None:
        self.template = name
        self.template_ref = None
        self.inline = None


def _tag_keys(value: Any) -> list[str]:
    out: list[str] = []
    if isinstance(value, str):
        if "{{" in value:
            out.extend(t.body for t in expr.find_tags(value) if t.kind == "simple")
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(_tag_keys(v))
    elif isinstance(value, list | tuple):
        for v in value:
            out.extend(_tag_keys(v))
    return out


def workflow_problems(
    spec: WorkflowSpec,
    *,
    source: TemplateSource | None = None,
    base: str = "spec",
    require_entrypoint: bool = True,
    allow_empty_arguments: bool = False,
) -> list[Problem]:
    checker = _Checker(spec, source, base=base)
    try:
        checker.workflow_spec(
            require_entrypoint=require_entrypoint,
            is_workflow=require_entrypoint,
            allow_empty_arguments=allow_empty_arguments,
        )
    except RecursionError:  # only a spec built in code can get here: the loader bounds nesting
        checker.problems.append(Problem(base, "nested too deeply to check"))
    return checker.problems


def validate_workflow(
    wf: Workflow, *, source: TemplateSource | None = None, allow_empty_arguments: bool = False
) -> None:
    """Raise SpecError listing every problem of ``wf`` (a Workflow or WorkflowTemplate).

    ``allow_empty_arguments`` is for a check made before ``-p`` values are applied.
    """
    spec = wf.spec
    if spec.workflow_template_ref is not None:
        if source is None:
            return
        ref = spec.workflow_template_ref
        base = source(bool(ref.cluster_scope), ref.name)
        if base is None:
            kind = "ClusterWorkflowTemplate" if ref.cluster_scope else "WorkflowTemplate"
            raise SpecError([Problem("spec.workflowTemplateRef.name", f"{kind} {ref.name!r} not found")])
        from engine.workflows.submit import merge_workflow_template

        spec = merge_workflow_template(base, spec)
    kind = getattr(wf, "kind", "Workflow")
    problems = workflow_problems(
        spec,
        source=source,
        require_entrypoint=(kind == "Workflow"),
        allow_empty_arguments=allow_empty_arguments,
    )
    if problems:
        raise SpecError(problems)


def validate_cron(cron: CronWorkflow, *, source: TemplateSource | None = None) -> None:
    problems: list[Problem] = []
    spec = cron.spec
    if spec is None:
        raise SpecError([Problem("spec", "is required")])
    if not spec.all_schedules():
        problems.append(Problem("spec.schedules", "at least one schedule is required"))
    if spec.concurrency_policy and spec.concurrency_policy not in ("Allow", "Forbid", "Replace"):
        problems.append(Problem("spec.concurrencyPolicy", "must be Allow, Forbid or Replace"))
    for i, s in enumerate(spec.all_schedules()):
        try:
            CronSchedule.parse(s)
        except SpecError as exc:
            problems.extend(Problem(f"spec.schedules[{i}]", p.message) for p in exc.problems)
    if spec.timezone:
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(spec.timezone)
        except Exception:
            problems.append(Problem("spec.timezone", f"unknown time zone {spec.timezone!r}"))
    problems.extend(workflow_problems(spec.workflow_spec, source=source, base="spec.workflowSpec"))
    if problems:
        raise SpecError(problems)


__all__ = ["ReferenceError_", "validate_cron", "validate_workflow", "workflow_problems"]
