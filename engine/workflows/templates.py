"""Template resolution: which Template a step, task or hook runs, and in which template scope.

A step names a template (``template: x``), refers to one in a WorkflowTemplate or ClusterWorkflowTemplate
(``templateRef``), or carries it inline. Templates reached through a ``templateRef`` resolve their own
by-name references inside that WorkflowTemplate, so each resolution returns the template *and* the
context to resolve its children in. Referenced templates live in ``status.storedTemplates`` under
``namespaced/<name>/<template>`` / ``cluster/<name>/<template>`` (filled at submission by
:func:`store_referenced_templates`), so a running workflow never depends on a template changing later.
Used by the reconciler and by validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import ReferenceError_, SpecError
from engine.spec.workflow import Template, TemplateRef, WorkflowSpec

LOCAL = "local"
NAMESPACED = "namespaced"
CLUSTER = "cluster"


def _deep_merge(base: Any, over: Any) -> Any:
    """``over`` wins; maps merge key by key, everything else is replaced (a strategic merge without lists)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _deep_merge(base[k], v) if k in base else v
        return out
    return over


def merge_template_defaults(template: Template, defaults: Template | None) -> Template:
    if defaults is None:
        return template
    merged = _deep_merge(defaults.dump(), template.dump())
    # A default of one template type must not add a second type to a template of another.
    kinds = template.kinds()
    if kinds:
        for k in defaults.kinds():
            if k not in kinds:
                merged.pop(_camel_kind(k), None)
    return Template.parse(merged)


def _camel_kind(kind: str) -> str:
    return "containerSet" if kind == "container_set" else kind


class TemplateContext:
    """Where by-name template references resolve: the workflow itself or one stored WorkflowTemplate."""

    __slots__ = ("_by_name", "_cache", "_defaults", "_stored", "kind", "name", "workflow_name")

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        workflow_name: str,
        templates: Mapping[str, Template] | None,
        stored: StoredTemplates,
        defaults: Template | None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.workflow_name = workflow_name
        self._by_name = templates
        self._stored = stored
        self._defaults = defaults
        self._cache: dict[int, tuple[Template, Template]] = {}

    @property
    def scope(self) -> str:
        """Argo's ``templateScope`` for nodes resolved here: ``local/<wf>``, ``namespaced/<wft>``..."""
        return f"{self.kind}/{self.name}"

    def template(self, name: str) -> Template:
        if self.kind == LOCAL:
            assert self._by_name is not None
            found = self._by_name.get(name)
        else:
            found = self._stored.get(self.kind, self.name, name)
        if found is None:
            where = "" if self.kind == LOCAL else f" of {self.kind} WorkflowTemplate {self.name!r}"
            raise ReferenceError_(f"templates.{name} not found{where}")
        return found

    def with_defaults(self, tmpl: Template) -> Template:
        if self._defaults is None:
            return tmpl
        hit = self._cache.get(id(tmpl))
        if hit is not None and hit[0] is tmpl:
            return hit[1]
        merged = merge_template_defaults(tmpl, self._defaults)
        self._cache[id(tmpl)] = (tmpl, merged)
        return merged

    def for_ref(self, ref: TemplateRef) -> TemplateContext:
        kind = CLUSTER if ref.cluster_scope else NAMESPACED
        return self._stored.context(kind, ref.name)

    def resolve(
        self, *, template: str | None, template_ref: TemplateRef | None, inline: Template | None
    ) -> tuple[Template, TemplateContext]:
        """The template a holder runs (defaults merged) and the context for its own references."""
        if inline is not None:
            return self.with_defaults(inline), self
        if template_ref is not None:
            ctx = self.for_ref(template_ref)
            return ctx.with_defaults(ctx.template(template_ref.template)), ctx
        if template:
            return self.with_defaults(self.template(template)), self
        raise ReferenceError_("a step, task or hook must set template, templateRef or inline")


class StoredTemplates:
    """Templates pulled in by ``templateRef``: parsed lazily from ``status.storedTemplates``."""

    def __init__(
        self,
        raw: dict[str, Any],
        *,
        workflow_name: str,
        defaults: Template | None,
    ) -> None:
        self._raw = raw
        self._parsed: dict[str, Template] = {}
        self._contexts: dict[tuple[str, str], TemplateContext] = {}
        self._workflow_name = workflow_name
        self._defaults = defaults

    def get(self, kind: str, name: str, template: str) -> Template | None:
        key = f"{kind}/{name}/{template}"
        t = self._parsed.get(key)
        if t is None:
            data = self._raw.get(key)
            if data is None:
                return None
            try:
                t = Template.parse(data)
            except SpecError as exc:
                raise ReferenceError_(f"stored template {key} is invalid: {exc}") from None
            self._parsed[key] = t
        return t

    def context(self, kind: str, name: str) -> TemplateContext:
        ctx = self._contexts.get((kind, name))
        if ctx is None:
            ctx = TemplateContext(
                kind=kind,
                name=name,
                workflow_name=self._workflow_name,
                templates=None,
                stored=self,
                defaults=self._defaults,
            )
            self._contexts[(kind, name)] = ctx
        return ctx


TemplateSource = Callable[[bool, str], WorkflowSpec | None]
"""Looks up a WorkflowTemplate (cluster_scope, name) -> its spec, or None."""


def store_referenced_templates(spec: WorkflowSpec, source: TemplateSource) -> dict[str, Any]:
    """Every template reachable through ``templateRef`` from ``spec``, keyed as in storedTemplates.

    Raises ReferenceError_ naming the first missing WorkflowTemplate or template.
    """
    stored: dict[str, Any] = {}
    specs: dict[tuple[bool, str], WorkflowSpec] = {}

    def spec_of(cluster: bool, name: str) -> WorkflowSpec:
        key = (cluster, name)
        if key not in specs:
            found = source(cluster, name)
            if found is None:
                kind = "ClusterWorkflowTemplate" if cluster else "WorkflowTemplate"
                raise ReferenceError_(f"{kind} {name!r} not found")
            specs[key] = found
        return specs[key]

    pending: list[tuple[Template, bool | None, str | None]] = [(t, None, None) for t in spec.templates]
    if spec.template_defaults is not None:
        pending.append((spec.template_defaults, None, None))
    seen: set[tuple[bool | None, str | None, str | None, int]] = set()

    def visit_ref(ref: TemplateRef) -> None:
        cluster = bool(ref.cluster_scope)
        wspec = spec_of(cluster, ref.name)
        tmpl = wspec.template(ref.template)
        kind = CLUSTER if cluster else NAMESPACED
        if tmpl is None:
            raise ReferenceError_(
                f"template {ref.template!r} not found in {kind} WorkflowTemplate {ref.name!r}"
            )
        key = f"{kind}/{ref.name}/{ref.template}"
        if key not in stored:
            stored[key] = tmpl.dump()
            pending.append((tmpl, cluster, ref.name))

    def visit_name(name: str | None, cluster: bool | None, owner: str | None) -> None:
        if not name or owner is None or cluster is None:
            return
        wspec = spec_of(cluster, owner)
        tmpl = wspec.template(name)
        kind = CLUSTER if cluster else NAMESPACED
        if tmpl is None:
            raise ReferenceError_(f"template {name!r} not found in {kind} WorkflowTemplate {owner!r}")
        key = f"{kind}/{owner}/{name}"
        if key not in stored:
            stored[key] = tmpl.dump()
            pending.append((tmpl, cluster, owner))

    def visit_holder(holder: Any, cluster: bool | None, owner: str | None) -> None:
        if holder.template_ref is not None:
            visit_ref(holder.template_ref)
        elif getattr(holder, "inline", None) is not None:
            pending.append((holder.inline, cluster, owner))
        else:
            visit_name(holder.template, cluster, owner)
        for hook in (getattr(holder, "hooks", None) or {}).values():
            if hook.template_ref is not None:
                visit_ref(hook.template_ref)
            else:
                visit_name(hook.template, cluster, owner)
        if getattr(holder, "on_exit", None):
            visit_name(holder.on_exit, cluster, owner)

    for hook in spec.hooks.values():
        if hook.template_ref is not None:
            visit_ref(hook.template_ref)
    while pending:
        tmpl, cluster, owner = pending.pop()
        mark = (cluster, owner, tmpl.name, id(tmpl))
        if mark in seen:
            continue
        seen.add(mark)
        for group in tmpl.steps or ():
            for step in group:
                visit_holder(step, cluster, owner)
        if tmpl.dag is not None:
            for task in tmpl.dag.tasks:
                visit_holder(task, cluster, owner)
    return stored
