"""Steps templates: groups run one after another, the steps of a group in parallel.

Node tree as Argo builds it: the Steps node's first child is ``<node>[0]`` (a StepGroup); each step of a
group is a child of the group; the next group hangs off the outbound nodes of the previous group's steps.
A group is done when all its children are fulfilled (including their exit hooks); it fails when a child
failed or errored without ``continueOn`` — a child's Error makes the Steps node Failed, as in Argo.
Called by the reconciler for every Steps node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.workflows import nodes as N
from engine.workflows.frames import Launch, continues_on, exit_hook, prepare_launches
from engine.workflows.nodes import Node
from engine.workflows.outputs import NAMESPACE_SUFFIXES, aggregate_variable, node_variable, node_variables
from engine.workflows.scope import MISSING, Scope

if TYPE_CHECKING:
    from engine.workflows.invocation import Invocation
    from engine.workflows.reconciler import Opts, Reconciler


class StepsSiblings:
    """``steps.<name>.*`` inside one Steps node: outputs of steps in groups that already finished."""

    prefix = "steps."

    def __init__(self, frame: StepsFrame) -> None:
        self.frame = frame
        self._agg: dict[str, Any] = {}

    def _nodes_of(self, name: str) -> tuple[Node | None, list[Node] | None]:
        f = self.frame
        g = f.group_of.get(name)
        if g is None or g >= f.cur:
            return None, None
        base = f"{f.node.name}[{g}].{name}"
        rec = f.rec
        node = rec.node(base)
        if node is not None:
            return node, None
        sg = rec.node(f"{f.node.name}[{g}]")
        if sg is None:
            return None, None
        prefix = base + "("
        kids = [rec.status.nodes[c] for c in sg.children if c in rec.status.nodes]
        return None, [k for k in kids if k.name.startswith(prefix) and k.type != N.SKIPPED_TYPE]

    def get(self, key: str) -> Any:
        rest = key[len(self.prefix) :]
        name, _, sub = rest.partition(".")
        if not sub:
            return MISSING
        node, kids = self._nodes_of(name)
        if node is not None:
            if node.type == N.RETRY and (node.outputs is None) and node.children:
                last = self.frame.rec.status.nodes.get(node.children[-1])
                if last is not None and sub.startswith("outputs"):
                    return node_variable(last, sub)
            return node_variable(node, sub, skipped_default=self.frame.skipped_defaults(name))
        if kids is None:
            return MISSING
        cached = self._agg.get(key)
        if cached is None:
            cached = aggregate_variable(kids, sub)
            self._agg[key] = cached
        return cached

    def is_namespace(self, key: str) -> bool:
        if key == "steps":
            return True
        rest = key[len(self.prefix) :]
        name, _, sub = rest.partition(".")
        if sub not in NAMESPACE_SUFFIXES:
            return False
        node, kids = self._nodes_of(name)
        return node is not None or bool(kids)


class StepsFrame:
    def __init__(self, rec: Reconciler, node: Node, inv: Invocation, opts: Opts) -> None:
        from engine.workflows.reconciler import Opts

        self.rec = rec
        self.node = node
        self.inv = inv
        self.opts = opts
        self.tmpl = inv.template
        assert self.tmpl.steps is not None
        self.groups = self.tmpl.steps
        self.group_of: dict[str, int] = {}
        for i, g in enumerate(self.groups):
            for s in g:
                if s.name:
                    self.group_of[s.name] = i
        self.cur = 0
        self.siblings = StepsSiblings(self)
        self.scope = Scope({}, parent=inv.scope, siblings=self.siblings)
        self.group_frames: dict[int, StepGroupFrame] = {}
        self.child_opts = Opts(boundary_id=node.id, on_exit=opts.on_exit, boundary_template=self.tmpl)
        self._skipped_defaults: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        self.group_frames.clear()

    def skipped_defaults(self, step_name: str) -> dict[str, str]:
        """Output defaults of the template a step runs (what references to it give when it was skipped)."""
        cached = self._skipped_defaults.get(step_name)
        if cached is not None:
            return cached
        out: dict[str, str] = {}
        g = self.group_of.get(step_name)
        if g is not None:
            step = next(s for s in self.groups[g] if s.name == step_name)
            try:
                tmpl, _ = self.inv.tctx.resolve(
                    template=step.template, template_ref=step.template_ref, inline=step.inline
                )
                for p in tmpl.outputs.parameters:
                    if p.value_from is not None and p.value_from.default is not None:
                        out[p.name] = p.value_from.default
            except Exception:
                pass
        self._skipped_defaults[step_name] = out
        return out

    # --- parallelism hooks used by Reconciler._check_parallelism ------------------------------------

    def _current(self) -> StepGroupFrame | None:
        return self.group_frames.get(self.cur)

    def fail_fast_stop(self) -> bool:
        gf = self._current()
        return bool(self.tmpl.fail_fast) and gf is not None and gf.unsuccessful > 0

    def parallelism_limit(self) -> int | None:
        p = self.tmpl.parallelism
        if p is None:
            return None
        return int(self.inv.scope.substitute(p)) if isinstance(p, str) else p

    def active_children(self) -> int:
        gf = self._current()
        return gf.active_count() if gf is not None else 0

    # --- execution ----------------------------------------------------------------------------------

    def execute(self) -> Node:
        rec = self.rec
        node = self.node
        if node.fulfilled():
            return node
        i = self.cur
        while i < len(self.groups):
            sg_name = f"{node.name}[{i}]"
            sg = rec.node(sg_name)
            if sg is None:
                sg = rec._init_node(
                    sg_name,
                    N.STEP_GROUP,
                    N.RUNNING,
                    holder=None,
                    tctx=self.inv.tctx,
                    opts=self.child_opts,
                    display_name=f"[{i}]",
                )
                self._link_group(i, sg)
            gf = self.group_frames.get(i)
            if gf is None:
                gf = StepGroupFrame(self, i, sg)
                self.group_frames[i] = gf
            self.cur = i
            sg = gf.execute()
            if not sg.fulfilled():
                return node
            if sg.unsuccessful():
                self._update_outbound()
                rec._kill_daemons(node.id)
                return rec._mark(node, N.FAILED, sg.message)
            i += 1
            self.cur = i
            self.group_frames.pop(i - 1, None)
        self._update_outbound()
        rec._kill_daemons(node.id)
        if not rec.template_outputs(node, self.inv, self.scope):
            return node
        return rec._mark(node, N.SUCCEEDED)

    def _link_group(self, i: int, sg: Node) -> None:
        rec = self.rec
        if i == 0:
            rec._add_child(self.node, sg)
            return
        prev = rec.node(f"{self.node.name}[{i - 1}]")
        if prev is None:
            return
        if not prev.children:
            rec._add_child(prev, sg)
            return
        for child in prev.children:
            for out in rec.outbound(child):
                on = rec.status.nodes.get(out)
                if on is not None:
                    rec._add_child(on, sg)

    def _update_outbound(self) -> None:
        rec = self.rec
        last = None
        for i in range(len(self.groups) - 1, -1, -1):
            last = rec.node(f"{self.node.name}[{i}]")
            if last is not None:
                break
        if last is None:
            return
        outbound: list[str] = []
        for child in last.children:
            outbound.extend(rec.outbound(child))
        if outbound != self.node.outbound_nodes:
            self.node.outbound_nodes = outbound
            rec._touch(self.node)


class StepGroupFrame:
    """One group: its launches (computed once, when the group starts), what is still running."""

    def __init__(self, steps: StepsFrame, index: int, sg: Node) -> None:
        self.steps = steps
        self.rec = steps.rec
        self.index = index
        self.sg = sg
        self.launches: list[Launch] | None = None
        self.todo: list[Launch] = []
        # Launches whose node (or its exit/lifecycle hooks) is not fulfilled yet, by node id.
        self.waiting: dict[str, Launch] = {}
        # Children that failed or errored (failFast counts them).
        self.bad: set[str] = set()

    @property
    def unsuccessful(self) -> int:
        return len(self.bad)

    def active_count(self) -> int:
        n = 0
        for nid in self.waiting:
            node = self.rec.status.nodes.get(nid)
            if node is not None and not node.fulfilled():
                n += 1
        return n

    def _prepare(self) -> None:
        rec = self.rec
        sf = self.steps
        launches: list[Launch] = []
        for step in sf.groups[self.index]:
            base = f"{self.sg.name}.{step.name}"
            ls, _ = prepare_launches(step, base, sf.scope, prefix_var="steps.name")
            launches.extend(ls)
        self.launches = launches
        for launch in launches:
            existing = rec.node(launch.name)
            if existing is None:
                self.todo.append(launch)
            else:
                # Rebuilt after a restart or a retry: re-link (idempotent) and follow it.
                rec._add_child(self.sg, existing)
                self.waiting[existing.id] = launch
                if existing.unsuccessful():
                    self.bad.add(existing.id)

    def execute(self) -> Node:
        rec = self.rec
        sg = self.sg
        if sg.fulfilled():
            return sg
        if self.launches is None:
            self._prepare()
        sf = self.steps
        # Advance what runs.
        for nid, launch in list(self.waiting.items()):
            node = rec.status.nodes.get(nid)
            if node is None:
                continue
            if not node.fulfilled() or node.daemoned:
                advanced = rec.execute_template(
                    launch.name,
                    launch.holder,
                    sf.inv.tctx,
                    launch.args,
                    sf.child_opts,
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
            if not self._hooks_done(launch, node):
                continue
            if node.fulfilled():
                del self.waiting[nid]
        # Start what has not started (in order; parallelism may hold some back).
        if self.todo:
            held: list[Launch] = []
            for launch in self.todo:
                if held and launch.error is None and launch.skip is None:
                    held.append(launch)
                    continue
                node = self._start(launch)
                if node is None:
                    held.append(launch)
            self.todo = held
            if sg.fulfilled():
                return sg
        # failFast: no new children once one failed; fail when nothing is active.
        if sf.tmpl.fail_fast and self.unsuccessful > 0 and self.active_count() == 0:
            rec._mark(sg, N.FAILED, "template has failed or errored children and failFast enabled")
            rec._mark(sf.node, N.FAILED, "template has failed or errored children and failFast enabled")
            return sg
        if self.todo or self.waiting:
            return sg
        # Everything is fulfilled: decide the group's phase.
        assert self.launches is not None
        for launch in self.launches:
            if launch.error is not None:
                return rec._mark(
                    sg, N.ERROR, f"step group deemed errored due to child {launch.name} error: {launch.error}"
                )
        for launch in self.launches:
            node = rec.node(launch.name)
            if node is None:
                continue
            if node.unsuccessful() and not continues_on(launch.step, node.phase):
                return rec._mark(sg, N.FAILED, f"child '{node.id}' failed")
        return rec._mark(sg, N.SUCCEEDED)

    def _start(self, launch: Launch) -> Node | None:
        rec = self.rec
        sf = self.steps
        if launch.error is not None:
            node = rec._init_node(
                launch.name,
                N.SKIPPED_TYPE,
                N.ERROR,
                holder=launch.holder,
                tctx=sf.inv.tctx,
                opts=sf.child_opts,
                message=launch.error,
                display_name=launch.display,
            )
            # The group ends Error once its other children are done (see execute); ending it now would
            # orphan siblings that are already running.
            rec._add_child(self.sg, node)
            self.bad.add(node.id)
            return node
        if launch.skip is not None:
            node = rec._init_node(
                launch.name,
                N.SKIPPED_TYPE,
                N.SKIPPED,
                holder=launch.holder,
                tctx=sf.inv.tctx,
                opts=sf.child_opts,
                message=launch.skip,
                display_name=launch.display,
            )
            rec._add_child(self.sg, node)
            return node
        started = rec.execute_template(
            launch.name,
            launch.holder,
            sf.inv.tctx,
            launch.args,
            sf.child_opts,
            local=launch.local,
            resolved_artifacts=launch.resolved_artifacts,
            display_name=launch.display,
        )
        if started is None:
            return None
        node = started
        if launch.display and node.display_name != launch.display:
            node.display_name = launch.display
        rec._add_child(self.sg, node)
        self.waiting[node.id] = launch
        if node.unsuccessful():
            self.bad.add(node.id)
        return node

    def _hooks_done(self, launch: Launch, node: Node) -> bool:
        step = launch.step
        rec = self.rec
        sf = self.steps
        hooks = step.hooks
        if not hooks and not step.on_exit:
            return True
        scope = sf.scope.child(node_variables(f"steps.{step.name}", node, rec.status.nodes))
        done = True
        if any(k != "exit" for k in hooks):
            done = rec.run_lifecycle_hooks(hooks, node, boundary_id=sf.node.id, tctx=sf.inv.tctx, scope=scope)
        if node.completed():
            has, exit_node = rec.run_on_exit_node(
                exit_hook(step), node, boundary_id=sf.node.id, tctx=sf.inv.tctx, scope=scope
            )
            if has and (exit_node is None or not exit_node.fulfilled()):
                return False
        return done
