"""DAG templates: tasks start when their ``depends`` (or ``dependencies``) hold; the phase comes from targets.

Readiness is incremental: when a task finishes (with its hooks), only its dependents are examined, so a
DAG of 10,000 tasks costs each reconcile time in proportion to what changed. A task whose ``depends``
is false becomes an Omitted node; one whose ``when`` is false, Skipped; a looped task becomes a
TaskGroup. The DAG's phase follows Argo's ``assessDAGPhase``: a breadth-first walk over the node links
in which omitted and unfinished nodes inherit their parents' branch phase (Failed/Error preferred), then
the target tasks (by default the leaves) decide. Called by the reconciler for every DAG node.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.errors import ExprError
from engine.expr import Depends, parse_depends
from engine.spec.workflow import DAGTask
from engine.workflows import nodes as N
from engine.workflows.frames import Launch, exit_hook, holder_of, prepare_launches
from engine.workflows.nodes import Node
from engine.workflows.outputs import NAMESPACE_SUFFIXES, aggregate_variable, node_variable, node_variables
from engine.workflows.scope import MISSING, Scope

if TYPE_CHECKING:
    from engine.workflows.invocation import Invocation
    from engine.workflows.reconciler import Opts, Reconciler

_RESULTS: dict[str, Callable[[Node, list[Node]], bool]] = {
    "Succeeded": lambda n, kids: n.phase == N.SUCCEEDED,
    "Failed": lambda n, kids: n.phase == N.FAILED,
    "Errored": lambda n, kids: n.phase == N.ERROR,
    "Skipped": lambda n, kids: n.phase == N.SKIPPED,
    "Omitted": lambda n, kids: n.phase == N.OMITTED,
    "Daemoned": lambda n, kids: bool(n.daemoned) and n.phase != N.PENDING,
    "AnySucceeded": lambda n, kids: any(k.phase == N.SUCCEEDED for k in kids),
    "AllFailed": lambda n, kids: bool(kids) and all(k.phase == N.FAILED for k in kids),
}


class DagGraph:
    """The static shape of a DAG template: dependencies, dependents, depends logic and targets."""

    def __init__(self, tasks: tuple[DAGTask, ...], target: str | None) -> None:
        self.tasks: dict[str, DAGTask] = {t.name: t for t in tasks}
        self.order: dict[str, int] = {t.name: i for i, t in enumerate(tasks)}
        self.deps: dict[str, list[str]] = {}
        self.logic: dict[str, Depends | None] = {}
        self.errors: dict[str, str] = {}
        for t in tasks:
            if t.depends:
                try:
                    d = parse_depends(t.depends)
                except ExprError as exc:
                    self.errors[t.name] = str(exc)
                    self.deps[t.name] = []
                    self.logic[t.name] = None
                    continue
                self.logic[t.name] = d
                self.deps[t.name] = sorted(d.task_names(), key=lambda n: self.order.get(n, 1 << 30))
            elif t.dependencies:
                self.deps[t.name] = list(dict.fromkeys(t.dependencies))
                self.logic[t.name] = None
            else:
                self.deps[t.name] = []
                self.logic[t.name] = None
        self.dependents: dict[str, list[str]] = {name: [] for name in self.tasks}
        for name, ds in self.deps.items():
            for dep in ds:
                if dep in self.dependents:
                    self.dependents[dep].append(name)
        if target:
            self.targets = target.split()
        else:
            has_dependents = {d for ds in self.deps.values() for d in ds}
            self.targets = sorted(n for n in self.tasks if n not in has_dependents)


def graph_of(rec: Reconciler, tmpl_dag: Any, target: str | None) -> DagGraph:
    """The template's graph, computed once per DAG template (and target) for this workflow."""
    key = (id(tmpl_dag), target)
    hit = rec.graph_cache.get(key)
    # The cache holds the template too, so an id is never reused while its entry exists.
    if hit is not None and hit[0] is tmpl_dag:
        return hit[1]
    g = DagGraph(tmpl_dag.tasks, target)
    rec.graph_cache[key] = (tmpl_dag, g)
    return g


class DagSiblings:
    prefix = "tasks."

    def __init__(self, frame: DagFrame) -> None:
        self.frame = frame
        self._agg: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        rest = key[len(self.prefix) :]
        name, _, sub = rest.partition(".")
        if not sub:
            return MISSING
        f = self.frame
        node = f.rec.node(f"{f.node.name}.{name}")
        if node is None:
            return MISSING
        if node.type == N.TASK_GROUP:
            cached = self._agg.get(key)
            if cached is None:
                kids = [f.rec.status.nodes[c] for c in node.children if c in f.rec.status.nodes]
                if sub in ("id", "status", "startedAt", "finishedAt"):
                    return node_variable(node, sub)
                cached = aggregate_variable(kids, sub)
                if node.fulfilled():
                    self._agg[key] = cached
            return cached
        if node.type == N.RETRY and node.outputs is None and node.children and sub.startswith("outputs"):
            last = f.rec.status.nodes.get(node.children[-1])
            if last is not None:
                return node_variable(last, sub)
        return node_variable(node, sub, skipped_default=f.skipped_defaults(name))

    def is_namespace(self, key: str) -> bool:
        if key == "tasks":
            return True
        name, _, sub = key[len(self.prefix) :].partition(".")
        if sub not in NAMESPACE_SUFFIXES:
            return False
        f = self.frame
        return f.rec.node(f"{f.node.name}.{name}") is not None


class DagFrame:
    def __init__(self, rec: Reconciler, node: Node, inv: Invocation, opts: Opts) -> None:
        from engine.workflows.reconciler import Opts

        self.rec = rec
        self.node = node
        self.inv = inv
        self.opts = opts
        self.tmpl = inv.template
        dag = self.tmpl.dag
        assert dag is not None
        target = inv.scope.substitute(dag.target) if dag.target and "{{" in dag.target else dag.target
        self.graph = graph_of(rec, dag, target)
        self.fail_fast = dag.fail_fast is None or bool(dag.fail_fast)
        self.siblings = DagSiblings(self)
        self.scope = Scope({}, parent=inv.scope, siblings=self.siblings)
        self.child_opts = Opts(boundary_id=node.id, on_exit=opts.on_exit, boundary_template=self.tmpl)
        self._skipped_defaults: dict[str, dict[str, str]] = {}
        # Task name -> its launches (one, or one per loop item) once created.
        self.launched: dict[str, list[Launch]] = {}
        # Task names that are done: node fulfilled and hooks and exit handlers fulfilled.
        self.done: set[str] = set()
        # Node id -> (task name, launch) for started nodes not done yet.
        self.waiting: dict[str, tuple[str, Launch]] = {}
        # Tasks that may be ready to start.
        # An insertion-ordered set: roots in definition order, then tasks as they become ready.
        self.candidates: dict[str, None] = {}
        self._built = False
        # Children that failed or errored (template-level failFast counts them).
        self.bad: set[str] = set()
        # Loop children held back by parallelism, by task name.
        self.pending_children: dict[str, list[Launch]] = {}
        # How many of each task's dependencies are not done yet: a task is ready at zero.
        self.missing: dict[str, int] = {
            name: sum(1 for d in deps if d in self.graph.tasks) for name, deps in self.graph.deps.items()
        }

    def close(self) -> None:
        self.waiting.clear()

    def skipped_defaults(self, task_name: str) -> dict[str, str]:
        cached = self._skipped_defaults.get(task_name)
        if cached is not None:
            return cached
        out: dict[str, str] = {}
        task = self.graph.tasks.get(task_name)
        if task is not None:
            try:
                tmpl, _ = self.inv.tctx.resolve(
                    template=task.template, template_ref=task.template_ref, inline=task.inline
                )
                for p in tmpl.outputs.parameters:
                    if p.value_from is not None and p.value_from.default is not None:
                        out[p.name] = p.value_from.default
            except Exception:
                pass
        self._skipped_defaults[task_name] = out
        return out

    # --- parallelism hooks ---------------------------------------------------------------------------

    def fail_fast_stop(self) -> bool:
        return bool(self.tmpl.fail_fast) and bool(self.bad)

    def parallelism_limit(self) -> int | None:
        p = self.tmpl.parallelism
        if p is None:
            return None
        return int(self.inv.scope.substitute(p)) if isinstance(p, str) else p

    def active_children(self) -> int:
        n = 0
        for nid in self.waiting:
            node = self.rec.status.nodes.get(nid)
            if node is not None and node.active() and node.type != N.TASK_GROUP:
                n += 1
        return n

    # --- build from status ---------------------------------------------------------------------------

    def _task_node(self, name: str) -> Node | None:
        return self.rec.node(f"{self.node.name}.{name}")

    def _build(self) -> None:
        self._built = True
        for name in self.graph.tasks:
            node = self._task_node(name)
            if node is None:
                # Only tasks with no dependencies can be ready now; the others become candidates when
                # a dependency finishes (in _advance).
                if not self.graph.deps.get(name):
                    self.candidates[name] = None
                continue
            # Re-derive launches (deterministic from scope) so children can be advanced after a restart,
            # and re-link the node (a DAG rebuilt by retry starts without children).
            self._connect(name, node)
            self._relaunch(name, node)

    def _relaunch(self, name: str, node: Node) -> None:
        task = self.graph.tasks[name]
        base = f"{self.node.name}.{name}"
        if node.type == N.TASK_GROUP:
            launches, _ = prepare_launches(task, base, self.scope, prefix_var="tasks.name")
        else:
            launches = [Launch(base, task, holder_of(task), task.arguments, local={"tasks.name": name})]
            if node.active() or node.daemoned:
                launches, _ = prepare_launches(task, base, self.scope, prefix_var="tasks.name")
        self.launched[name] = launches
        if node.unsuccessful():
            self.bad.add(node.id)
        if node.type == N.TASK_GROUP:
            for launch in launches:
                child = self.rec.node(launch.name)
                if child is not None:
                    self.rec._add_child(node, child)
                    self.waiting[child.id] = (name, launch)
                elif not node.fulfilled():
                    # Held back by parallelism before a restart.
                    self.pending_children.setdefault(name, []).append(launch)
        self.waiting[node.id] = (name, launches[0] if launches else Launch(base, task, holder_of(task)))

    # --- execution -----------------------------------------------------------------------------------

    def execute(self) -> Node:
        rec = self.rec
        node = self.node
        if node.fulfilled():
            return node
        if not self._built:
            self._build()
        for _ in range(len(self.graph.tasks) + 2):
            before = rec._mutations
            self._advance()
            if not node.fulfilled():
                self._schedule()
            if node.fulfilled() or rec._mutations == before:
                break
        if node.fulfilled():
            return node
        if self.waiting:
            return node
        return self._assess()

    def _advance(self) -> None:
        rec = self.rec
        if self.pending_children:
            self._start_pending_children()
        # Loop children first, so a TaskGroup sees its last child finish in the same pass.
        nodes = rec.status.nodes
        first = [kv for kv in self.waiting.items() if kv[0] not in nodes or nodes[kv[0]].type != N.TASK_GROUP]
        groups = [kv for kv in self.waiting.items() if kv[0] in nodes and nodes[kv[0]].type == N.TASK_GROUP]
        for nid, (name, launch) in first + groups:
            node = rec.status.nodes.get(nid)
            if node is None:
                continue
            if node.type == N.TASK_GROUP:
                self._advance_group(name, node)
            elif not node.fulfilled() or node.daemoned:
                advanced = rec.execute_template(
                    launch.name,
                    launch.holder,
                    self.inv.tctx,
                    launch.args,
                    self.child_opts,
                    local=launch.local,
                    resolved_artifacts=launch.resolved_artifacts,
                    display_name=launch.display,
                )
                if advanced is not None:
                    node = advanced
            elif nid in rec.pending_finalize:
                rec._finalize_leaf(node)
            if node.unsuccessful():
                self.bad.add(nid)
            if not node.fulfilled():
                self._hooks(name, launch, node)
                continue
            if not self._hooks(name, launch, node):
                continue
            del self.waiting[nid]
            task_node = self._task_node(name)
            if task_node is not None and task_node.id == nid and name not in self.done:
                self.done.add(name)
                for dependent in self.graph.dependents.get(name, ()):
                    self.missing[dependent] -= 1
                    if self.missing[dependent] == 0:
                        self.candidates[dependent] = None

    def _advance_group(self, name: str, group: Node) -> None:
        """A TaskGroup is fulfilled when all its children are; its phase is the last failure's."""
        rec = self.rec
        if group.fulfilled():
            return
        phase = N.SUCCEEDED
        for launch in self.launched.get(name, ()):
            child = rec.node(launch.name)
            if child is None or not child.fulfilled() or child.id in self.waiting:
                return
            if child.unsuccessful():
                phase = child.phase
        rec._mark(group, phase)

    def _hooks(self, name: str, launch: Launch, node: Node) -> bool:
        task = launch.step
        rec = self.rec
        if not task.hooks and not task.on_exit:
            return True
        scope = self.scope.child(node_variables(f"tasks.{name}", node, rec.status.nodes))
        done = True
        if any(k != "exit" for k in task.hooks):
            done = rec.run_lifecycle_hooks(
                task.hooks, node, boundary_id=self.node.id, tctx=self.inv.tctx, scope=scope
            )
        if node.completed() and node.type != N.TASK_GROUP:
            has, exit_node = rec.run_on_exit_node(
                exit_hook(task), node, boundary_id=self.node.id, tctx=self.inv.tctx, scope=scope
            )
            if has and (exit_node is None or not exit_node.fulfilled()):
                return False
        return done

    def _schedule(self) -> None:
        if not self.candidates:
            return
        pending = list(self.candidates)
        held: list[str] = []
        for name in pending:
            if name in self.launched or self.missing.get(name, 0) > 0:
                continue
            if self.rec.pods_saturated():
                # No pod can start now: keep the rest for a later reconcile instead of binding inputs
                # for tasks that would be refused anyway.
                held.append(name)
                continue
            if not self._start_task(name):
                held.append(name)
            if self.node.fulfilled():
                break
        self.candidates = dict.fromkeys(held)

    def _depends_holds(self, name: str) -> bool | str:
        """True/False from the depends logic, or an error message."""
        graph = self.graph
        if name in graph.errors:
            return graph.errors[name]
        rec = self.rec
        cache: dict[str, tuple[Node, list[Node]]] = {}

        def facts(dep: str) -> tuple[Node, list[Node]]:
            if dep not in cache:
                dn = self._task_node(dep)
                assert dn is not None
                kids = (
                    [rec.status.nodes[c] for c in dn.children if c in rec.status.nodes]
                    if dn.type == N.TASK_GROUP
                    else []
                )
                cache[dep] = (dn, kids)
            return cache[dep]

        def bare(dep: str) -> bool:
            dn, _ = facts(dep)
            if dn.phase in (N.SUCCEEDED, N.SKIPPED) or (dn.daemoned and dn.phase != N.PENDING):
                return True
            task = graph.tasks.get(dep)
            co = task.continue_on if task is not None else None
            if co is not None:
                if co.failed and dn.phase == N.FAILED:
                    return True
                if co.error and dn.phase == N.ERROR:
                    return True
            return False

        def status_of(dep: str, result: str | None) -> bool:
            if dep not in graph.tasks:
                raise ExprError(f"depends refers to unknown task {dep!r}")
            if result is None:
                return bare(dep)
            fn = _RESULTS.get(result)
            if fn is None:
                raise ExprError(f"unknown task result {result!r}")
            dn, kids = facts(dep)
            return bool(fn(dn, kids))

        logic = graph.logic.get(name)
        try:
            if logic is not None:
                return logic.evaluate(status_of)
            return all(bare(d) for d in graph.deps.get(name, ()))
        except ExprError as exc:
            return str(exc)

    def _connect(self, name: str, child: Node, group: Node | None = None) -> None:
        rec = self.rec
        if group is not None:
            rec._add_child(group, child)
            return
        deps = [d for d in self.graph.deps.get(name, ()) if d in self.graph.tasks]
        if not deps:
            rec._add_child(self.node, child)
            return
        for d in deps:
            dn = self._task_node(d)
            if dn is None:
                continue
            for out in rec.outbound(dn.id):
                on = rec.status.nodes.get(out)
                if on is not None:
                    rec._add_child(on, child)

    def _start_task(self, name: str) -> bool:
        """Create the task's node(s); False when parallelism holds it back."""
        rec = self.rec
        task = self.graph.tasks[name]
        base = f"{self.node.name}.{name}"
        holder = holder_of(task)
        tctx = self.inv.tctx
        opts = self.child_opts
        if self.graph.deps.get(name):
            holds = self._depends_holds(name)
            if isinstance(holds, str):
                n = rec._init_node(
                    base, N.SKIPPED_TYPE, N.ERROR, holder=holder, tctx=tctx, opts=opts, message=holds
                )
                self._connect(name, n)
                self._created(name, [Launch(base, task, holder)], n)
                return True
            if not holds:
                n = rec._init_node(
                    base,
                    N.SKIPPED_TYPE,
                    N.OMITTED,
                    holder=holder,
                    tctx=tctx,
                    opts=opts,
                    message="omitted: depends condition not met",
                )
                self._connect(name, n)
                self._created(name, [Launch(base, task, holder)], n)
                return True
        launches, expanded = prepare_launches(task, base, self.scope, prefix_var="tasks.name")
        if expanded:
            first = launches[0] if launches else None
            if first is not None and first.name == base:
                # Empty list, or an error before expansion: one node for the task itself.
                return self._start_single(name, first)
            group = rec._init_node(base, N.TASK_GROUP, N.RUNNING, holder=holder, tctx=tctx, opts=opts)
            self._connect(name, group)
            self.launched[name] = launches
            self.waiting[group.id] = (name, Launch(base, task, holder))
            for i, launch in enumerate(launches):
                if not self._start_child(name, launch, group):
                    self.pending_children[name].extend(launches[i + 1 :])
                    break
            self._advance_group(name, group)
            return True
        return self._start_single(name, launches[0])

    def _created(self, name: str, launches: list[Launch], node: Node) -> None:
        self.launched[name] = launches
        self.waiting[node.id] = (name, launches[0])
        if node.unsuccessful():
            self.bad.add(node.id)

    def _start_single(self, name: str, launch: Launch) -> bool:
        rec = self.rec
        tctx = self.inv.tctx
        opts = self.child_opts
        if launch.error is not None:
            n = rec._init_node(
                launch.name,
                N.SKIPPED_TYPE,
                N.ERROR,
                holder=launch.holder,
                tctx=tctx,
                opts=opts,
                message=launch.error,
            )
            self._connect(name, n)
            self._created(name, [launch], n)
            return True
        if launch.skip is not None:
            n = rec._init_node(
                launch.name,
                N.SKIPPED_TYPE,
                N.SKIPPED,
                holder=launch.holder,
                tctx=tctx,
                opts=opts,
                message=launch.skip,
            )
            self._connect(name, n)
            self._created(name, [launch], n)
            return True
        node = rec.execute_template(
            launch.name,
            launch.holder,
            tctx,
            launch.args,
            opts,
            local=launch.local,
            resolved_artifacts=launch.resolved_artifacts,
        )
        if node is None:
            return False
        self._connect(name, node)
        self._created(name, [launch], node)
        return True

    def _start_child(self, name: str, launch: Launch, group: Node) -> bool:
        """Create one loop child; False when parallelism holds it back (it is queued)."""
        rec = self.rec
        tctx = self.inv.tctx
        opts = self.child_opts
        if launch.error is not None:
            n = rec._init_node(
                launch.name,
                N.SKIPPED_TYPE,
                N.ERROR,
                holder=launch.holder,
                tctx=tctx,
                opts=opts,
                message=launch.error,
                display_name=launch.display,
            )
        elif launch.skip is not None:
            n = rec._init_node(
                launch.name,
                N.SKIPPED_TYPE,
                N.SKIPPED,
                holder=launch.holder,
                tctx=tctx,
                opts=opts,
                message=launch.skip,
                display_name=launch.display,
            )
        else:
            created = rec.execute_template(
                launch.name,
                launch.holder,
                tctx,
                launch.args,
                opts,
                local=launch.local,
                resolved_artifacts=launch.resolved_artifacts,
                display_name=launch.display,
            )
            if created is None:
                # Held back by parallelism: retried when the group advances.
                self.pending_children.setdefault(name, []).append(launch)
                return False
            n = created
        self._connect(name, n, group)
        self.waiting[n.id] = (name, launch)
        if n.unsuccessful():
            self.bad.add(n.id)
        return True

    # --- phase -------------------------------------------------------------------------------------

    def _assess(self) -> Node:
        rec = self.rec
        node = self.node
        phase = self.assess_phase()
        if phase == N.RUNNING:
            return node
        self._update_outbound()
        rec._kill_daemons(node.id)
        if phase in (N.FAILED, N.ERROR):
            return rec._mark(node, phase)
        if not rec.template_outputs(node, self.inv, self.scope):
            return node
        return rec._mark(node, N.SUCCEEDED)

    def _start_pending_children(self) -> None:
        """Start loop children that parallelism held back (their group waits for them)."""
        pc = self.pending_children
        for name, launches in list(pc.items()):
            group = self._task_node(name)
            if group is None:
                continue
            del pc[name]
            for i, launch in enumerate(launches):
                if not self._start_child(name, launch, group):
                    # Parallelism is used up: the rest wait too, in order.
                    pc[name].extend(launches[i + 1 :])
                    break

    def assess_phase(self) -> str:
        rec = self.rec
        if rec.control.shutdown:
            return N.FAILED
        nodes = rec.status.nodes
        target_ids = {rec.id_for(f"{self.node.name}.{t}"): t for t in self.graph.targets}
        target_phase: dict[str, str] = dict.fromkeys(target_ids, "")
        queue: deque[tuple[str, str]] = deque((c, N.SUCCEEDED) for c in self.node.children)
        seen: set[tuple[str, str]] = set(queue)
        while queue:
            nid, branch = queue.popleft()
            n = nodes.get(nid)
            if n is None or not n.fulfilled():
                return N.RUNNING
            if n.completed():
                branch = n.phase
            if nid in target_phase and target_phase[nid] not in (N.FAILED, N.ERROR):
                target_phase[nid] = branch
            for c in n.children:
                item = (c, branch)
                if item not in seen:
                    seen.add(item)
                    queue.append(item)
        result = N.SUCCEEDED
        for tid, tname in target_ids.items():
            branch = target_phase[tid]
            if branch == "":
                result = N.RUNNING
                if not self.fail_fast:
                    break
            elif branch in (N.FAILED, N.ERROR):
                task = self.graph.tasks.get(tname)
                co = task.continue_on if task is not None else None
                if co is not None and (
                    (branch == N.FAILED and co.failed) or (branch == N.ERROR and co.error)
                ):
                    continue
                result = branch
                if self.fail_fast:
                    break
        return result

    def _update_outbound(self) -> None:
        outbound: list[str] = []
        for t in self.graph.targets:
            tn = self._task_node(t)
            if tn is not None:
                outbound.extend(self.rec.outbound(tn.id))
        if outbound != self.node.outbound_nodes:
            self.node.outbound_nodes = outbound
            self.rec._touch(self.node)
