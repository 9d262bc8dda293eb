"""The workflow reconciler: ``reconcile(observations, now) -> Plan`` over a workflow's spec and status.

This is the functional core both runtimes share. It never does I/O, reads no clock and uses no
randomness: time comes in as ``now``, step results as :class:`StepOutcome` observations, and decisions
go out as a :class:`Plan` (start/kill steps, save memo entries, when to call again). Running the same
reconcile twice does not start anything twice: nodes, ids and pod names are deterministic.

It follows Argo's controller (``executeTemplate``, steps, DAG, retries, exit handlers, hooks) closely
enough that node trees, names and phases match Argo's. Unlike Argo's controller it keeps per-node
*frames* in memory (the expansion of a step group, the readiness of a DAG's tasks) so that a reconcile
costs time proportional to the active part of the tree, not its size; frames are rebuilt from
``status.nodes`` alone, so a restarted runtime picks up exactly where the persisted status left off.

Callers: the local runtime's engine loop and the Kubernetes operator (one Reconciler per workflow,
kept between reconciles), and table tests.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import expr
from engine.errors import ExprError, ReferenceError_, SluiceError
from engine.spec.duration import format_duration, parse_duration
from engine.spec.workflow import (
    Arguments,
    LifecycleHook,
    Parameter,
    RetryStrategy,
    Template,
    TemplateRef,
    Workflow,
)
from engine.workflows import nodes as N
from engine.workflows.globals import build_globals
from engine.workflows.invocation import InputError, Invocation, bind_inputs
from engine.workflows.leaf import build_step_run
from engine.workflows.nodes import Node, NodeOutputs, node_id, pod_name
from engine.workflows.outputs import OutputError, template_outputs
from engine.workflows.plan import (
    DEADLINE_MESSAGE,
    KillStep,
    Plan,
    RunStep,
    SaveMemo,
    StepOutcome,
)
from engine.workflows.scope import Scope, evaluate_bool, has_json_tags
from engine.workflows.status import (
    WF_ERROR,
    WF_FAILED,
    WF_PENDING,
    WF_RUNNING,
    WF_SUCCEEDED,
    WORKFLOW_PHASE_OF_NODE,
    WorkflowStatus,
)
from engine.workflows.sync import LockManager, LockRequest, mutex_key, semaphore_key
from engine.workflows.templates import LOCAL, StoredTemplates, TemplateContext

if TYPE_CHECKING:
    from engine.workflows.dag import DagGraph

_SEPARATOR = re.compile(r"^(\[\d+\])?\.")
STOP = "Stop"
TERMINATE = "Terminate"
FAIL_FAST_MESSAGE = "template has failed or errored children and failFast enabled"
_MAX_PASSES = 50


class ParallelismReached(Exception):
    """Internal signal: a new node may not start now (workflow/template parallelism, failFast)."""


@dataclass(slots=True)
class Opts:
    """How a node is being executed: its boundary, whether inside an exit handler, its flags."""

    boundary_id: str | None = None
    on_exit: bool = False
    node_flag: dict[str, bool] | None = None
    # The template whose parallelism/failFast governs starting this node (its boundary's template).
    boundary_template: Template | None = None


@dataclass(slots=True)
class Holder:
    """What a step, task or hook points at."""

    template: str | None = None
    template_ref: TemplateRef | None = None
    inline: Template | None = None

    @property
    def template_ref_json(self) -> dict[str, Any] | None:
        return self.template_ref.dump() if self.template_ref is not None else None


@dataclass(slots=True)
class Settings:
    """Runtime-independent knobs of the core."""

    # Applied when the workflow sets none (Argo's controller-level workflowDefaults).
    default_active_deadline_seconds: int | None = None
    # Capture stdout as outputs.result for every pod; otherwise only when the spec mentions outputs.result.
    always_capture_result: bool = False


@dataclass(slots=True)
class Control:
    """The mutable part of a spec that operations change while the workflow runs."""

    suspend: bool = False
    shutdown: str | None = None
    active_deadline_seconds: int | None = None


@dataclass(slots=True)
class _Timer:
    at: float
    node_id: str = field(compare=False)


class Reconciler:
    """Owns one workflow's status and decides what happens next."""

    def __init__(
        self,
        workflow: Workflow,
        status: WorkflowStatus | None = None,
        *,
        configmaps: Mapping[str, Mapping[str, str]] | None = None,
        memo: Mapping[str, Mapping[str, Any]] | None = None,
        settings: Settings | None = None,
        locks: LockManager | None = None,
    ) -> None:
        meta = workflow.metadata
        if not meta.name:
            raise SluiceError("workflow has no metadata.name (the runtime names it before reconciling)")
        self.workflow = workflow
        self.spec = workflow.spec
        self.name: str = meta.name
        self.namespace: str = meta.namespace or "default"
        self.uid: str = meta.uid or ""
        self.status = status or WorkflowStatus()
        self.configmaps: Mapping[str, Mapping[str, str]] = configmaps or {}
        self.memo: Mapping[str, Mapping[str, Any]] = memo or {}
        self.settings = settings or Settings()
        deadline = self.spec.active_deadline_seconds
        if deadline is None:
            deadline = self.settings.default_active_deadline_seconds
        self.control = Control(
            suspend=bool(self.spec.suspend), shutdown=self.spec.shutdown, active_deadline_seconds=deadline
        )
        self._stored = StoredTemplates(
            self.status.stored_templates, workflow_name=self.name, defaults=self.spec.template_defaults
        )
        self.root_ctx = TemplateContext(
            kind=LOCAL,
            name=self.name,
            workflow_name=self.name,
            templates={t.name: t for t in self.spec.templates if t.name},
            stored=self._stored,
            defaults=self.spec.template_defaults,
        )
        self.capture_result = self.settings.always_capture_result or self._mentions_result()
        self.globals: Scope = build_globals(workflow, self.status, self.configmaps, self.control)
        # In-memory, derived state (rebuilt from status.nodes after a restart).
        self.frames: dict[str, Any] = {}
        self.leaf_inv: dict[str, Invocation] = {}
        self.pending_finalize: set[str] = set()
        self.active_pods: set[str] = {
            n.id for n in self.status.nodes.values() if n.type == N.POD and n.active()
        }
        # Pod counts for status.progress, kept as nodes change instead of recounted per save.
        self._pods_total = sum(1 for n in self.status.nodes.values() if n.type == N.POD)
        self._pods_done = sum(1 for n in self.status.nodes.values() if n.type == N.POD and not n.active())
        self._timers: list[tuple[float, str]] = []
        # Leaves whose RunStep was issued by this Reconciler instance, and kills already requested.
        self._started: set[str] = set()
        self._killed: set[str] = set()
        # Derived from templates, keyed by the template object's id (the entry keeps the object alive).
        self.dump_cache: dict[int, tuple[Any, dict[str, Any], bool]] = {}
        self._child_sets: dict[str, set[str]] = {}
        self._memo_pending: dict[str, dict[str, Any]] = {}
        # Names whose node id is not the plain hash (a collision was resolved with a suffix).
        self._ids: dict[str, str] = {
            n.name: nid for nid, n in self.status.nodes.items() if nid != node_id(self.name, n.name)
        }
        self._spec_volumes: list[dict[str, Any]] | None = None
        self.graph_cache: dict[tuple[int, str | None], tuple[Any, DagGraph]] = {}
        self._mutations = 0
        # Counts nodes reaching a fulfilled phase: when one does during a walk, its parent may be able to
        # move on, so the walk repeats; otherwise one walk per reconcile is enough.
        self._settled = 0
        # Synchronization: the runtime's shared lock manager; what this workflow holds, by holder name.
        self.locks = locks if locks is not None else LockManager()
        self._held: dict[str, list[str]] = {}
        self.lock_waiting: set[str] = set()
        self._restore_locks()
        self._plan = Plan()
        self.now = 0.0
        self._requeue: float | None = None
        self._deadline_exceeded = False

    # ================================================================ public API

    def reconcile(self, observations: Iterable[StepOutcome] = (), now: float = 0.0) -> Plan:
        """Apply observations, advance the workflow, and return what the runtime must do."""
        self.now = now
        # self._plan already holds what operations (resume, suspend, stop) changed since the last plan.
        self._requeue = None
        for obs in observations:
            self._observe(obs)
        st = self.status
        if st.fulfilled():
            self._plan.finished = True
            return self._finish_plan()
        if st.phase in ("", WF_PENDING):
            if not self._workflow_lock():
                self._plan.finished = st.fulfilled()
                return self._finish_plan()
            self._start_workflow()
        self.globals.local["workflow.duration"] = f"{max(0.0, now - (st.started_at or now)):f}"
        # Expression functions that need the time (now(), sprig.date of a string) read it from here.
        self.globals.local[expr.NOW_KEY] = now
        self._deadline_exceeded = self._workflow_deadline_passed()
        if self._deadline_exceeded or self.control.shutdown:
            self._apply_execution_control()
        if not self.control.suspend or self.control.shutdown:
            # Nodes that finish while their parent is being walked (skips, cache hits, errors) can make
            # more progress possible in the same reconcile: walk again until nothing changes.
            for _ in range(_MAX_PASSES):
                before = self._settled
                try:
                    self._operate()
                except SluiceError as exc:
                    self._mark_workflow(WF_ERROR, str(exc))
                if self._settled == before or st.fulfilled():
                    break
        self._plan.finished = st.fulfilled()
        return self._finish_plan()

    def pending_changes(self) -> set[str]:
        """Node ids that operations changed since the last reconcile (the next plan reports them too)."""
        return set(self._plan.changed_nodes)

    def fail(self, message: str) -> None:
        """End the workflow in Error (the runtime could not go on with it)."""
        self._mark_workflow(WF_ERROR, message)

    def discard(self) -> None:
        """The runtime will not run this workflow after all (it could not be stored): give back the
        locks and lock queue places its reconciles took, as if it had never been submitted."""
        self.locks.forget(self._wf_holder() + "/")
        self.locks.forget(self._wf_holder())

    def suspend(self) -> None:
        self.control.suspend = True
        self._plan.workflow_changed = True

    def resume(self, node_name: str | None = None, *, outputs: Mapping[str, str] | None = None) -> int:
        """Clear suspend and mark active Suspend nodes Succeeded (optionally one node); returns how many."""
        if node_name is None:
            self.control.suspend = False
        count = 0
        for node in list(self.status.nodes.values()):
            if node.type != N.SUSPEND or node.fulfilled():
                continue
            if node_name is not None and node_name not in (node.name, node.display_name, node.id):
                continue
            self._apply_suspend_outputs(node, outputs or {}, supplied=True)
            self._mark(node, N.SUCCEEDED)
            count += 1
        self._plan.workflow_changed = True
        return count

    def set_shutdown(self, strategy: str) -> None:
        """``Stop`` (exit handlers still run) or ``Terminate`` (they do not)."""
        if strategy not in (STOP, TERMINATE):
            raise SluiceError(f"unknown shutdown strategy {strategy!r}")
        self.control.shutdown = strategy
        self._plan.workflow_changed = True

    def set_active_deadline(self, seconds: int | None) -> None:
        self.control.active_deadline_seconds = seconds

    # ================================================================ plan helpers

    def _finish_plan(self) -> Plan:
        plan = self._plan
        if self._timers:
            while self._timers and self._timers[0][0] <= self.now:
                heapq.heappop(self._timers)
            if self._timers:
                self._want_requeue(self._timers[0][0])
        plan.requeue_at = self._requeue
        progress = f"{self._pods_done}/{self._pods_total}"
        if progress != self.status.progress:
            self.status.progress = progress
            plan.workflow_changed = True
        self._plan = Plan()
        return plan

    def _want_requeue(self, at: float) -> None:
        at = max(self.now, at)
        if self._requeue is None or at < self._requeue:
            self._requeue = at

    def _touch(self, node: Node) -> None:
        self._plan.changed_nodes.add(node.id)
        self._mutations += 1

    def id_for(self, name: str) -> str:
        """The id of the node called ``name``: Argo's hash, or the hash plus ``-k`` after a collision.

        Two names can hash alike (32 bits; a 10,000-node workflow meets a collision about once in a
        hundred). The first node keeps the plain id; a later one gets the next free suffix, which its
        stored status keeps, so lookups by name never return another node.
        """
        known = self._ids.get(name)
        if known is not None:
            return known
        base = node_id(self.name, name)
        existing = self.status.nodes.get(base)
        if existing is None or existing.name == name:
            return base
        k = 1
        while True:
            candidate = f"{base}-{k}"
            other = self.status.nodes.get(candidate)
            if other is None or other.name == name:
                self._ids[name] = candidate
                return candidate
            k += 1

    def spec_volumes(self) -> list[dict[str, Any]]:
        """Workflow-level volumes, with volumeClaimTemplates as claims named ``<workflow>-<claim>``."""
        if self._spec_volumes is not None:
            return self._spec_volumes
        # Only workflow-level variables reach here (a volume is shared by every step), as in Argo.
        out = [self.globals.substitute_json(v) if has_json_tags(v) else dict(v) for v in self.spec.volumes]
        for claim in self.spec.volume_claim_templates:
            cname = (claim.get("metadata") or {}).get("name")
            if cname:
                out.append({"name": cname, "persistentVolumeClaim": {"claimName": f"{self.name}-{cname}"}})
        self._spec_volumes = out
        return out

    # ================================================================ nodes

    def node(self, name: str) -> Node | None:
        return self.status.nodes.get(self.id_for(name))

    def _init_node(
        self,
        name: str,
        type_: str,
        phase: str,
        *,
        holder: Holder | None,
        tctx: TemplateContext | None,
        opts: Opts,
        message: str | None = None,
        display_name: str | None = None,
    ) -> Node:
        nid = self.id_for(name)
        existing = self.status.nodes.get(nid)
        if existing is not None:
            return existing
        node = Node(
            id=nid,
            name=name,
            display_name=display_name or self._display_name(name, opts.boundary_id),
            type=type_,
            phase=phase,
            boundary_id=opts.boundary_id,
            message=message,
            started_at=self.now,
        )
        if holder is not None:
            node.template_name = holder.template or None
            node.template_ref = holder.template_ref_json
        if tctx is not None:
            node.template_scope = tctx.scope
        if opts.node_flag:
            node.node_flag = dict(opts.node_flag)
        memo = self._memo_pending.pop(nid, None)
        if memo is not None:
            node.memoization_status = memo
        if phase in N.FULFILLED_PHASES:
            node.finished_at = self.now
            self._settled += 1
        self.status.nodes[nid] = node
        if type_ == N.POD:
            self._pods_total += 1
            if node.active():
                self.active_pods.add(nid)
            else:
                self._pods_done += 1
        self._touch(node)
        return node

    def _display_name(self, name: str, boundary_id: str | None) -> str:
        """Argo's rule: the name without its boundary's name and a leading ``[i].`` or ``.``."""
        boundary = self.status.nodes.get(boundary_id) if boundary_id else None
        if boundary is None:
            return name
        shown = name[len(boundary.name) :] if name.startswith(boundary.name) else name
        return _SEPARATOR.sub("", shown, count=1) or name

    def _mark(self, node: Node, phase: str, message: str | None = None) -> Node:
        changed = False
        if node.phase != phase:
            if node.type == N.POD and node.active() and phase not in (N.PENDING, N.RUNNING):
                self._pods_done += 1
            node.phase = phase
            changed = True
            if node.type == N.POD:
                if node.active():
                    self.active_pods.add(node.id)
                else:
                    self.active_pods.discard(node.id)
        if message is not None and node.message != message:
            node.message = message
            changed = True
        if node.phase in N.FULFILLED_PHASES and node.finished_at is None:
            node.finished_at = self.now
            changed = True
        if changed:
            self._touch(node)
            if node.fulfilled():
                self._settled += 1
                ms = node.memoization_status
                if phase == N.SUCCEEDED and ms and not ms.get("hit"):
                    # Argo saves a memoized node's outputs when it succeeds (leaves and steps/DAGs alike).
                    self._plan.actions.append(
                        SaveMemo(
                            cache=ms["cacheName"],
                            key=ms["key"],
                            outputs=node.outputs.to_dict() if node.outputs else {},
                            node_id=node.id,
                        )
                    )
            if node.fulfilled() and self._held:
                self._release_locks(self._node_holder(node.id))
        return node

    def _mark_error(self, node: Node, message: str) -> Node:
        return self._mark(node, N.ERROR, message)

    def _add_child(self, parent: Node | str, child: Node | str) -> None:
        p = parent if isinstance(parent, Node) else self.node(parent)
        c_id = child.id if isinstance(child, Node) else self.id_for(child)
        if p is None:
            return
        # A set beside the ordered list keeps this O(1) for parents with thousands of children.
        known = self._child_sets.get(p.id)
        if known is None or len(known) != len(p.children):
            known = set(p.children)
            self._child_sets[p.id] = known
        if c_id not in known:
            known.add(c_id)
            p.children.append(c_id)
            self._touch(p)

    def _error_node(
        self,
        node: Node | None,
        name: str,
        holder: Holder | None,
        tctx: TemplateContext | None,
        opts: Opts,
        msg: str,
    ) -> Node:
        """Argo's initializeNodeOrMarkError: a Skipped-type node in Error, or mark the existing one."""
        if node is not None:
            return self._mark_error(node, msg)
        return self._init_node(
            name, N.SKIPPED_TYPE, N.ERROR, holder=holder, tctx=tctx, opts=opts, message=msg
        )

    def outbound(self, nid: str) -> list[str]:
        """Argo's getOutboundNodes: the leaf nodes through which dependents attach."""
        node = self.status.nodes.get(nid)
        if node is None:
            return []
        t = node.type
        if t in (N.POD, N.SKIPPED_TYPE, N.SUSPEND, N.HTTP, N.PLUGIN, N.CONTAINER):
            return [nid]
        if t == N.TASK_GROUP:
            if not node.children:
                return [nid]
            out: list[str] = []
            for c in node.children:
                out.extend(self.outbound(c))
            return out
        if t == N.RETRY:
            return [node.children[-1]] if node.children else [nid]
        result: list[str] = []
        for o in node.outbound_nodes:
            on = self.status.nodes.get(o)
            if on is not None and on.type == N.POD:
                result.append(o)
            else:
                result.extend(self.outbound(o))
        return result

    # ================================================================ observations

    def _observe(self, obs: StepOutcome) -> None:
        node = self.status.nodes.get(obs.node_id)
        if node is None or (node.fulfilled() and not node.daemoned):
            return
        if obs.phase in (N.PENDING, N.RUNNING):
            if obs.started_at is not None and node.phase == N.PENDING:
                node.started_at = obs.started_at
            if obs.host_node_name:
                node.host_node_name = obs.host_node_name
            if obs.pod_ip:
                node.pod_ip = obs.pod_ip
            inv = self.leaf_inv.get(node.id)
            if obs.phase == N.RUNNING and inv is not None and inv.template.daemon:
                node.daemoned = True
            self._mark(node, obs.phase)
            self._observe_containers(node, obs)
            return
        # Final outcome.
        if node.daemoned:
            node.daemoned = None
        outputs = node.outputs or NodeOutputs()
        if obs.exit_code is not None:
            outputs.exit_code = str(obs.exit_code)
        if obs.result is not None:
            outputs.result = obs.result
        for name, value in obs.parameters:
            existing = outputs.parameter(name)
            if existing is None:
                outputs.parameters.append({"name": name, "value": value})
            else:
                existing["value"] = value
        for art in obs.artifacts:
            outputs.artifacts = [a for a in outputs.artifacts if a.get("name") != art.get("name")]
            outputs.artifacts.append(dict(art))
        node.outputs = outputs
        if obs.host_node_name:
            node.host_node_name = obs.host_node_name
        if obs.finished_at is not None:
            node.finished_at = obs.finished_at
        if obs.started_at is not None and node.started_at is None:
            node.started_at = obs.started_at
        message = obs.message or None
        if obs.phase == N.SUCCEEDED:
            message = None
        self._mark(node, obs.phase, message)
        self._observe_containers(node, obs)
        # Containers the runtime did not report end with their pod (a deleted pod takes them all).
        for cid in node.children:
            child = self.status.nodes.get(cid)
            if child is not None and child.type == N.CONTAINER and not child.fulfilled():
                self._mark(child, obs.phase, None if obs.phase == N.SUCCEEDED else message)
        self.pending_finalize.add(node.id)

    def _observe_containers(self, node: Node, obs: StepOutcome) -> None:
        for c in obs.containers:
            child = self.node(f"{node.name}.{c.name}")
            if child is None:
                continue
            if c.started_at is not None and child.phase == N.PENDING:
                child.started_at = c.started_at
            if c.exit_code is not None:
                child.outputs = child.outputs or NodeOutputs()
                child.outputs.exit_code = str(c.exit_code)
            if c.finished_at is not None:
                child.finished_at = c.finished_at
            self._mark(child, c.phase, c.message or None)

    # ================================================================ workflow level

    def _mentions_result(self) -> bool:
        text = json.dumps(self.spec.dump()) + json.dumps(self.status.stored_templates)
        return "outputs.result" in text or ".exitCode" in text

    def _start_workflow(self) -> None:
        st = self.status
        st.phase = WF_RUNNING
        if st.started_at is None:
            st.started_at = self.now
            if not self.workflow.metadata.creation_timestamp:
                # The creation-time globals fall back to the start time, known only now.
                self.globals = build_globals(self.workflow, st, self.configmaps, self.control)
        self._plan.workflow_changed = True

    def _workflow_deadline(self) -> float | None:
        secs = self.control.active_deadline_seconds
        if secs is None or self.status.started_at is None:
            return None
        return float(int(self.status.started_at)) + secs

    def _workflow_deadline_passed(self) -> bool:
        d = self._workflow_deadline()
        if d is None:
            return False
        if self.now >= d:
            return True
        self._want_requeue(d)
        return False

    def _mark_workflow(self, phase: str, message: str | None = None) -> None:
        st = self.status
        if st.fulfilled():
            return
        if phase != st.phase or message != st.message:
            self._plan.workflow_changed = True
        st.phase = phase
        st.message = message or None
        if phase in (WF_SUCCEEDED, WF_FAILED, WF_ERROR):
            st.finished_at = self.now
            self._kill_daemons(None)
            for holder in list(self._held):
                self._release_locks(holder)
            self.locks.forget(self._wf_holder() + "/")
            self.locks.forget(self._wf_holder())
            if phase == WF_ERROR:
                root = self.status.nodes.get(self.name)
                if root is not None and root.phase == N.RUNNING:
                    self._mark(root, N.ERROR, "Workflow operation error")
            self._set_condition("Completed", "True")

    def _set_condition(self, type_: str, status: str, message: str | None = None) -> None:
        conds = [c for c in self.status.conditions if c.get("type") != type_]
        c = {"type": type_, "status": status}
        if message:
            c["message"] = message
        conds.append(c)
        self.status.conditions = conds

    def _apply_execution_control(self) -> None:
        """Stop, terminate or deadline: kill running pods, fail pending and suspended nodes.

        Nodes of exit handlers are spared, except by Terminate.
        """
        shutdown = self.control.shutdown
        for node in list(self.status.nodes.values()):
            if node.fulfilled() and not node.daemoned:
                continue
            in_exit = self._part_of_exit_handler(node)
            if shutdown:
                if shutdown == STOP and in_exit:
                    continue
                message = f"Stopped with strategy '{shutdown}'"
            elif self._deadline_exceeded and not in_exit:
                message = DEADLINE_MESSAGE
            else:
                continue
            if node.type in (N.POD, N.HTTP, N.PLUGIN):
                if node.phase == N.PENDING and node.id not in self._started:
                    self._mark(node, N.FAILED, message)
                else:
                    self._kill(node, message)
            elif node.type == N.SUSPEND and not node.fulfilled():
                self._mark(node, N.FAILED, message)

    def _kill(self, node: Node, message: str) -> None:
        # Asked once per node; the runtime acknowledges by reporting the node Failed with the message.
        if node.id in self._killed:
            return
        self._killed.add(node.id)
        self._plan.actions.append(KillStep(node_id=node.id, pod_name=self.pod_name_of(node), message=message))

    def pod_name_of(self, node: Node) -> str:
        return pod_name(self.name, node.id, node.template_name or _template_of_ref(node))

    def _part_of_exit_handler(self, node: Node) -> bool:
        seen = 0
        cur: Node | None = node
        while cur is not None and seen < 10_000:
            if cur.name.endswith(".onExit") or cur.hooked():
                return True
            if not cur.boundary_id:
                return False
            cur = self.status.nodes.get(cur.boundary_id)
            seen += 1
        return False

    def _kill_daemons(self, boundary_id: str | None) -> None:
        for node in self.status.nodes.values():
            if not node.daemoned or node.type != N.POD:
                continue
            if boundary_id is not None and not self._within(node, boundary_id):
                continue
            node.daemoned = None
            self._mark(node, N.SUCCEEDED if node.phase == N.RUNNING else node.phase)
            self._plan.actions.append(
                KillStep(
                    node_id=node.id,
                    pod_name=self.pod_name_of(node),
                    message="daemon step ended with its scope",
                    already_final=True,
                )
            )

    def _within(self, node: Node, boundary_id: str) -> bool:
        cur: Node | None = node
        hops = 0
        while cur is not None and hops < 10_000:
            if cur.boundary_id == boundary_id:
                return True
            cur = self.status.nodes.get(cur.boundary_id) if cur.boundary_id else None
            hops += 1
        return False

    def _operate(self) -> None:
        spec = self.spec
        entry = Holder(template=spec.entrypoint)
        node = self.execute_template(self.name, entry, self.root_ctx, spec.arguments, Opts())
        if node is None:
            return
        wf_status = WORKFLOW_PHASE_OF_NODE.get(node.phase, WF_RUNNING)
        self.globals.local["workflow.status"] = wf_status
        # The failures list walks every node: build it when exit handlers can see it, not every pass.
        if node.fulfilled() and "workflow.failures" not in self.globals.local:
            self.globals.local["workflow.failures"] = self._failures_json()
        hooks_done = self._workflow_hooks()
        if not hooks_done or not node.fulfilled():
            return
        exit_hook = self._workflow_exit_hook()
        exit_node: Node | None = None
        if exit_hook is not None:
            exit_name = f"{self.name}.onExit"
            exit_node = self.node(exit_name)
            if exit_node is not None or self.control.shutdown != TERMINATE:
                exit_node = self.execute_template(
                    exit_name,
                    Holder(template=exit_hook.template, template_ref=exit_hook.template_ref),
                    self.root_ctx,
                    exit_hook.arguments,
                    Opts(on_exit=True, node_flag={"hooked": True}),
                )
                if exit_node is None or not exit_node.fulfilled():
                    return
        message = node.message
        if node.unsuccessful() and self.control.shutdown:
            message = f"Stopped with strategy '{self.control.shutdown}'"
        if wf_status == WF_SUCCEEDED:
            if exit_node is not None and exit_node.unsuccessful():
                self._mark_workflow(WF_FAILED if exit_node.phase == N.FAILED else WF_ERROR, exit_node.message)
            else:
                self._mark_workflow(WF_SUCCEEDED)
        elif wf_status in (WF_FAILED, WF_ERROR):
            self._mark_workflow(wf_status, message)
        else:
            self._mark_workflow(WF_ERROR, f"unexpected node phase {node.phase}")

    def _workflow_exit_hook(self) -> LifecycleHook | None:
        spec = self.spec
        if "exit" in spec.hooks:
            return spec.hooks["exit"]
        if spec.on_exit:
            return LifecycleHook(template=spec.on_exit, arguments=spec.arguments)
        return None

    def _workflow_hooks(self) -> bool:
        nodes_: list[Node] = []
        for name, hook in self.spec.hooks.items():
            if name == "exit":
                continue
            hook_name = f"{self.name}.hooks.{name}"
            existing = self.node(hook_name)
            if not hook.expression:
                raise SluiceError(f"expression required for hook {hook_name}")
            run = existing is not None
            if not run:
                try:
                    run = evaluate_bool(self.globals, hook.expression)
                except ExprError as exc:
                    raise SluiceError(f"hook {name}: {exc}") from None
            if run:
                n = self.execute_template(
                    hook_name,
                    Holder(template=hook.template, template_ref=hook.template_ref),
                    self.root_ctx,
                    hook.arguments,
                    Opts(node_flag={"hooked": True}),
                )
                if n is not None:
                    nodes_.append(n)
        return all(n.fulfilled() for n in nodes_)

    def _failures_json(self) -> str:
        failures = []
        for n in self.status.nodes.values():
            if n.phase in (N.FAILED, N.ERROR):
                failures.append(
                    {
                        "displayName": n.display_name,
                        "message": n.message or "",
                        "templateName": n.template_name or "",
                        "phase": n.phase,
                        "podName": pod_name(self.name, n.id, n.template_name),
                        "finishedAt": N.rfc3339(n.finished_at),
                    }
                )
        # Argo quotes the JSON so that it survives being substituted into a YAML/JSON string; with no
        # failures it marshals a nil list, "null".
        return json.dumps(json.dumps(failures or None, separators=(",", ":")))

    # ================================================================ executeTemplate

    def execute_template(
        self,
        name: str,
        holder: Holder,
        tctx: TemplateContext,
        args: Arguments | None,
        opts: Opts,
        *,
        local: dict[str, Any] | None = None,
        resolved_artifacts: Mapping[str, dict[str, Any]] | None = None,
        display_name: str | None = None,
    ) -> Node | None:
        """Create or advance the node called ``name``; None when it may not start yet (parallelism)."""
        nid = self.id_for(name)
        node = self.status.nodes.get(nid)
        if node is not None:
            if node.fulfilled() and not node.daemoned:
                if nid in self.pending_finalize:
                    self._finalize_leaf(node)
                frame = self.frames.pop(nid, None)
                if frame is not None:
                    frame.close()
                return node
            frame = self.frames.get(nid)
            if frame is not None:
                return frame.execute()  # type: ignore[no-any-return]
            inv = self.leaf_inv.get(nid)
            if inv is not None:
                return self._advance_leaf(node, inv)

        # Resolve the template and bind its inputs.
        try:
            tmpl, ctx = tctx.resolve(
                template=holder.template, template_ref=holder.template_ref, inline=holder.inline
            )
        except (ReferenceError_, SluiceError) as exc:
            return self._error_node(node, name, holder, tctx, opts, str(exc))
        local_vars = dict(local or {})
        local_vars["node.name"] = name
        retry = self._retry_strategy(tmpl)
        if _is_pod_type(tmpl) and retry is None:
            local_vars["pod.name"] = pod_name(self.name, self.id_for(name), tmpl.name)
        try:
            inv = bind_inputs(
                tmpl,
                ctx,
                args,
                resolved=resolved_artifacts,
                parent=self.globals,
                local=local_vars,
                configmaps=self.configmaps,
            )
        except (InputError, ExprError) as exc:
            return self._error_node(node, name, holder, tctx, opts, str(exc))

        # A Pending node past its template timeout fails (it counts Pending time).
        if node is not None and node.phase == N.PENDING:
            timeout = self._template_timeout(inv)
            if timeout is not None and node.started_at is not None and self.now >= node.started_at + timeout:
                return self._mark(node, N.FAILED, f"{name} exceeded its deadline")

        if node is None:
            try:
                self._check_parallelism(tmpl, opts)
            except ParallelismReached:
                return None

        if tmpl.synchronization is not None:
            waiting = self._template_lock(name, holder, ctx, opts, inv, node)
            if waiting is not None:
                return waiting
            node = self.status.nodes.get(nid)

        memo_miss: dict[str, Any] | None = None
        if tmpl.memoize is not None and node is None:
            hit = self._memo_lookup(inv)
            if hit is not None:
                return self._memo_hit_node(name, holder, ctx, opts, inv, hit)
            ck = self._memo_key(inv)
            assert ck is not None
            memo_miss = {"hit": False, "key": ck[1], "cacheName": ck[0]}

        if retry is not None:
            from engine.workflows.retry import RetryFrame

            rnode = node
            if rnode is None:
                rnode = self._init_node(name, N.RETRY, N.RUNNING, holder=holder, tctx=ctx, opts=opts)
                rnode.inputs = inv.inputs_json
            if memo_miss is not None and rnode.memoization_status is None:
                rnode.memoization_status = memo_miss
            rframe = RetryFrame(
                self, rnode, holder, ctx, args, opts, inv, retry, local or {}, resolved_artifacts
            )
            self.frames[rnode.id] = rframe
            return rframe.execute()

        if memo_miss is not None:
            # The node does not exist yet: remember the key so a success fills the cache.
            self._memo_pending[self.id_for(name)] = memo_miss
        return self._dispatch(name, holder, ctx, inv, opts, node, display_name=display_name)

    def _dispatch(
        self,
        name: str,
        holder: Holder,
        ctx: TemplateContext,
        inv: Invocation,
        opts: Opts,
        node: Node | None,
        *,
        display_name: str | None = None,
    ) -> Node:
        tmpl = inv.template
        kind = tmpl.kind
        if node is not None and node.phase == N.PENDING and kind in ("steps", "dag"):
            self._mark(node, N.RUNNING)
        if kind == "steps":
            from engine.workflows.steps import StepsFrame

            if node is None:
                node = self._init_node(name, N.STEPS, N.RUNNING, holder=holder, tctx=ctx, opts=opts)
                node.inputs = inv.inputs_json
            frame = StepsFrame(self, node, inv, opts)
            self.frames[node.id] = frame
            return frame.execute()
        if kind == "dag":
            from engine.workflows.dag import DagFrame

            if node is None:
                node = self._init_node(name, N.DAG, N.RUNNING, holder=holder, tctx=ctx, opts=opts)
                node.inputs = inv.inputs_json
            dframe = DagFrame(self, node, inv, opts)
            self.frames[node.id] = dframe
            return dframe.execute()
        if kind == "suspend":
            if node is None:
                node = self._init_node(name, N.SUSPEND, N.PENDING, holder=holder, tctx=ctx, opts=opts)
                node.inputs = inv.inputs_json
                outs = [
                    {k: v for k, v in p.dump().items() if k in ("name", "valueFrom", "globalName")}
                    for p in tmpl.outputs.parameters
                ]
                if outs:
                    node.outputs = NodeOutputs(parameters=outs)
            self.leaf_inv[node.id] = inv
            return self._advance_leaf(node, inv)
        if kind in ("container", "script", "http", "container_set", "resource", "plugin", "data"):
            if node is None:
                type_ = N.HTTP if kind == "http" else N.PLUGIN if kind == "plugin" else N.POD
                node = self._init_node(
                    name, type_, N.PENDING, holder=holder, tctx=ctx, opts=opts, display_name=display_name
                )
                node.inputs = inv.inputs_json
                if kind == "container_set" and tmpl.container_set is not None:
                    for c in tmpl.container_set.containers:
                        cname = f"{name}.{c.name}"
                        self._init_node(
                            cname,
                            N.CONTAINER,
                            N.PENDING,
                            holder=None,
                            tctx=None,
                            opts=Opts(boundary_id=node.id),
                        )
                        # Containers without dependencies hang off the pod; others off what they wait for.
                        parents = [f"{name}.{d}" for d in c.dependencies] or [name]
                        for p in parents:
                            self._add_child(p, cname)
            self.leaf_inv[node.id] = inv
            if node.phase in (N.PENDING, N.RUNNING):
                self._launch(node, inv, opts)
            return node
        return self._error_node(node, name, holder, ctx, opts, f"template {tmpl.name!r} has no template type")

    # ================================================================ leaves

    def _launch(self, node: Node, inv: Invocation, opts: Opts) -> None:
        if node.id in self._started:
            return
        shutdown = self.control.shutdown
        if (shutdown or self._deadline_exceeded) and node.phase == N.PENDING:
            # No new pod once the workflow is shutting down or past its deadline; an exit handler's
            # pods still start, except under Terminate.
            in_exit = self._part_of_exit_handler(node)
            if shutdown and not (shutdown == STOP and in_exit):
                self._mark(node, N.FAILED, f"workflow shutdown with strategy: {shutdown}")
                return
            if not shutdown and not in_exit:
                self._mark(node, N.FAILED, DEADLINE_MESSAGE)
                return
        self._started.add(node.id)
        try:
            run = build_step_run(self, node, inv)
        except (ExprError, SluiceError) as exc:
            self._mark_error(node, str(exc))
            return
        self._plan.actions.append(RunStep(run))

    def step_deadline(self, node: Node, inv: Invocation) -> float | None:
        """The earliest of the workflow deadline, template activeDeadlineSeconds and timeout."""
        candidates: list[float] = []
        wd = self._workflow_deadline()
        # Exit handlers run after the deadline has passed; it must not kill them (as in Argo).
        if wd is not None and not self._part_of_exit_handler(node):
            candidates.append(wd)
        tmpl = inv.template
        start = node.started_at if node.started_at is not None else self.now
        if tmpl.active_deadline_seconds is not None:
            raw = tmpl.active_deadline_seconds
            val = inv.scope.substitute(raw) if isinstance(raw, str) else raw
            try:
                candidates.append(start + float(val))
            except ValueError as exc:
                raise SluiceError(f"activeDeadlineSeconds: invalid value {val!r}") from exc
        timeout = self._template_timeout(inv)
        if timeout is not None:
            candidates.append(start + timeout)
        retry_deadline = inv.cache.get("retry_deadline")
        if retry_deadline is not None:
            candidates.append(retry_deadline)
        return min(candidates) if candidates else None

    def _template_timeout(self, inv: Invocation) -> float | None:
        raw = inv.template.timeout
        if raw is None:
            return None
        try:
            return parse_duration(inv.scope.substitute(raw))
        except (ValueError, ExprError):
            return None

    def _advance_leaf(self, node: Node, inv: Invocation) -> Node:
        if node.fulfilled():
            if node.id in self.pending_finalize:
                self._finalize_leaf(node)
            return node
        if node.type == N.SUSPEND:
            return self._advance_suspend(node, inv)
        if node.id not in self._started and node.active():
            # First visit after a restart: ask the runtime to (re)start it; it ignores pods already running.
            self._launch(node, inv, Opts())
        if node.phase == N.PENDING:
            timeout = self._template_timeout(inv)
            if timeout is not None and node.started_at is not None:
                if self.now >= node.started_at + timeout:
                    self._kill(node, f"{node.name} exceeded its deadline")
                else:
                    self._want_requeue(node.started_at + timeout)
        return node

    def _advance_suspend(self, node: Node, inv: Invocation) -> Node:
        raw = inv.template.suspend.duration if inv.template.suspend else None
        if raw is not None and raw != "":
            try:
                secs = parse_duration(inv.scope.substitute(str(raw)))
            except (ValueError, ExprError) as exc:
                return self._mark_error(node, f"invalid suspend duration: {exc}")
            start = node.started_at if node.started_at is not None else self.now
            if self.now >= start + secs:
                self._apply_suspend_outputs(node, {}, supplied=False)
                return self._mark(node, N.SUCCEEDED)
            self._want_requeue(start + secs)
        if node.phase == N.PENDING:
            self._mark(node, N.RUNNING)
        return node

    def _apply_suspend_outputs(self, node: Node, values: Mapping[str, str], *, supplied: bool) -> None:
        if node.outputs is None:
            return
        for p in node.outputs.parameters:
            vf = p.get("valueFrom") or {}
            if p["name"] in values:
                p["value"] = values[p["name"]]
            elif "value" not in p and "default" in vf:
                p["value"] = vf["default"]
            p.pop("valueFrom", None)
        self._export_globals(node.outputs)
        self._touch(node)

    def _finalize_leaf(self, node: Node) -> None:
        """Attach output declarations (globalName, expression/default outputs), export globals, memoize."""
        self.pending_finalize.discard(node.id)
        inv = self.leaf_inv.get(node.id)
        if inv is None:
            return
        tmpl = inv.template
        outs = node.outputs
        if tmpl.outputs.parameters:
            outs = outs or NodeOutputs()
            for p in tmpl.outputs.parameters:
                entry = outs.parameter(p.name)
                if entry is None:
                    value = self._leaf_output_value(node, inv, p)
                    if value is None:
                        continue
                    entry = {"name": p.name, "value": value}
                    outs.parameters.append(entry)
                if p.global_name:
                    entry["globalName"] = p.global_name
            node.outputs = outs
        if tmpl.outputs.artifacts and outs is not None:
            for a in tmpl.outputs.artifacts:
                art = outs.artifact(a.name)
                if art is not None and a.global_name:
                    art["globalName"] = a.global_name
        if outs is not None and node.phase == N.SUCCEEDED:
            self._export_globals(outs)
        self._touch(node)

    def _leaf_output_value(self, node: Node, inv: Invocation, p: Parameter) -> str | None:
        vf = p.value_from
        if vf is None:
            return inv.scope.substitute(p.value) if p.value is not None else None
        if vf.expression:
            scope = inv.scope.child(
                {
                    "outputs.result": (node.outputs.result if node.outputs and node.outputs.result else ""),
                    "exitCode": node.outputs.exit_code if node.outputs and node.outputs.exit_code else "",
                }
            )
            try:
                v = scope.evaluate(vf.expression)
            except ExprError:
                v = None
            if v is None:
                return vf.default
            return v if isinstance(v, str) else json.dumps(v)
        if vf.default is not None and not vf.path:
            return vf.default
        return None

    def _export_globals(self, outputs: NodeOutputs) -> None:
        """globalName outputs become workflow.outputs.* and status.outputs."""
        changed = False
        for p in outputs.parameters:
            g = p.get("globalName")
            if not g or "value" not in p:
                continue
            self.globals.local[f"workflow.outputs.parameters.{g}"] = p["value"]
            plist = self.status.outputs.setdefault("parameters", [])
            plist[:] = [x for x in plist if x.get("name") != g]
            plist.append({"name": g, "value": p["value"]})
            changed = True
        for a in outputs.artifacts:
            g = a.get("globalName")
            if not g:
                continue
            entry = {k: v for k, v in a.items() if k != "globalName"}
            entry["name"] = g
            self.globals.local[f"workflow.outputs.artifacts.{g}"] = entry
            alist = self.status.outputs.setdefault("artifacts", [])
            alist[:] = [x for x in alist if x.get("name") != g]
            alist.append(entry)
            changed = True
        if changed:
            self._plan.workflow_changed = True

    # ================================================================ memoization

    def _memo_key(self, inv: Invocation) -> tuple[str, str] | None:
        m = inv.template.memoize
        if m is None:
            return None
        cache = (m.cache or {}).get("configMap", {}).get("name", "")
        return cache, inv.scope.substitute(m.key)

    def _memo_lookup(self, inv: Invocation) -> Mapping[str, Any] | None:
        ck = self._memo_key(inv)
        if ck is None:
            return None
        cache, key = ck
        entry = self.memo.get(cache, {}).get(key)
        if not isinstance(entry, Mapping):
            return None
        m = inv.template.memoize
        assert m is not None
        if m.max_age:
            try:
                age = parse_duration(m.max_age, default_unit_seconds=False)
            except ValueError:
                age = None
            created = entry.get("creationTimestamp")
            ts = N.parse_time(created) if created else None
            if age is not None and (ts is None or self.now - ts > age):
                return None
        return entry

    def _memo_hit_node(
        self,
        name: str,
        holder: Holder,
        ctx: TemplateContext,
        opts: Opts,
        inv: Invocation,
        hit: Mapping[str, Any],
    ) -> Node:
        type_ = N.POD if _is_pod_type(inv.template) else N.STEPS if inv.template.steps is not None else N.DAG
        if inv.template.dag is None and inv.template.steps is None and not _is_pod_type(inv.template):
            type_ = N.SUSPEND
        node = self._init_node(name, type_, N.SUCCEEDED, holder=holder, tctx=ctx, opts=opts)
        node.inputs = inv.inputs_json
        node.outputs = NodeOutputs.from_dict(dict(hit.get("outputs") or {}))
        ck = self._memo_key(inv)
        assert ck is not None
        node.memoization_status = {"hit": True, "key": ck[1], "cacheName": ck[0]}
        if type_ == N.POD:
            self.active_pods.discard(node.id)
        if node.outputs is not None:
            self._export_globals(node.outputs)
        return node

    # ================================================================ synchronization

    def _wf_holder(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _node_holder(self, nid: str) -> str:
        return f"{self.namespace}/{self.name}/{nid}"

    def _lock_requests(self, sync: Any) -> list[LockRequest]:
        reqs = []
        for m in sync.all_mutexes():
            if m.database:
                raise SluiceError(f"mutex {m.name!r}: database locks are not available in this runtime")
            reqs.append(LockRequest(mutex_key(m.namespace or self.namespace, m.name), 1))
        for s in sync.all_semaphores():
            ref = s.config_map_key_ref
            if ref is None:
                raise SluiceError("semaphore: only configMapKeyRef semaphores are available in this runtime")
            cm = self.configmaps.get(ref.name)
            raw = cm.get(ref.key) if cm is not None else None
            if raw is None:
                raise SluiceError(f"semaphore: ConfigMap {ref.name!r} has no key {ref.key!r}")
            try:
                limit = int(str(raw).strip())
            except ValueError:
                raise SluiceError(
                    f"semaphore: ConfigMap {ref.name!r} key {ref.key!r} is not a number"
                ) from None
            reqs.append(LockRequest(semaphore_key(s.namespace or self.namespace, ref.name, ref.key), limit))
        return reqs

    def _created_ts(self) -> float:
        created = self.workflow.metadata.creation_timestamp
        ts = N.parse_time(created) if created else None
        return ts if ts is not None else 0.0

    def _acquire(self, holder: str, reqs: list[LockRequest]) -> bool:
        ok = self.locks.acquire(reqs, holder, priority=self.spec.priority or 0, created=self._created_ts())
        if ok and holder not in self._held:
            self._held[holder] = [r.key for r in reqs]
            self._sync_status()
        return ok

    def _release_locks(self, holder: str) -> None:
        keys = self._held.pop(holder, None)
        if keys is None:
            return
        for key in keys:
            self.locks.release(key, holder)
        self._sync_status()

    def _sync_status(self) -> None:
        mutexes = []
        semaphores = []
        for holder, keys in self._held.items():
            for key in keys:
                if "/Mutex/" in key:
                    mutexes.append({"mutex": key, "holder": holder})
                else:
                    semaphores.append({"semaphore": key, "holders": [holder]})
        sync: dict[str, Any] = {}
        if mutexes:
            sync["mutex"] = {"holding": mutexes}
        if semaphores:
            sync["semaphore"] = {"holding": semaphores}
        self.status.synchronization = sync or None
        self._plan.workflow_changed = True

    def _restore_locks(self) -> None:
        sync = self.status.synchronization or {}
        for h in (sync.get("mutex") or {}).get("holding", []):
            self._held.setdefault(h["holder"], []).append(h["mutex"])
            self.locks.restore(h["mutex"], h["holder"])
        for h in (sync.get("semaphore") or {}).get("holding", []):
            for holder in h.get("holders", []):
                self._held.setdefault(holder, []).append(h["semaphore"])
                self.locks.restore(h["semaphore"], holder)

    def _workflow_lock(self) -> bool:
        """Take the workflow-level locks; False (workflow Pending, waiting) when they are held elsewhere."""
        sync = self.spec.synchronization
        if sync is None:
            return True
        holder = self._wf_holder()
        if holder in self._held:
            return True
        try:
            reqs = self._lock_requests(sync)
        except SluiceError as exc:
            self._mark_workflow(WF_FAILED, f"Failed to acquire the synchronization lock. {exc}")
            return False
        if self._acquire(holder, reqs):
            self.lock_waiting.discard(holder)
            return True
        first = reqs[0]
        message = f"Waiting for {first.key} lock. {self.locks.describe(first.key, first.limit)}"
        if self.status.phase != WF_PENDING or self.status.message != message:
            self.status.phase = WF_PENDING
            self.status.message = message
            self._plan.workflow_changed = True
        self.lock_waiting.add(holder)
        return False

    def _template_lock(
        self, name: str, holder: Holder, ctx: TemplateContext, opts: Opts, inv: Invocation, node: Node | None
    ) -> Node | None:
        """None when the template's locks are held (or taken now); else the node left Pending to wait."""
        nid = self.id_for(name)
        lock_holder = self._node_holder(nid)
        if lock_holder in self._held:
            return None
        sync = inv.template.synchronization
        assert sync is not None
        try:
            reqs = self._lock_requests(sync)
        except SluiceError as exc:
            return self._error_node(node, name, holder, ctx, opts, str(exc))
        if self._acquire(lock_holder, reqs):
            self.lock_waiting.discard(lock_holder)
            if node is not None and node.synchronization_status:
                node.synchronization_status = None
                node.message = None
                if node.type == N.POD and node.active():
                    self.active_pods.add(node.id)
                self._touch(node)
            return None
        first = reqs[0]
        message = f"Waiting for {first.key} lock. {self.locks.describe(first.key, first.limit)}"
        if node is None:
            node = self._init_node(
                name, _node_type(inv.template), N.PENDING, holder=holder, tctx=ctx, opts=opts
            )
            node.inputs = inv.inputs_json
        # A node waiting for a lock has no process: it does not count toward parallelism.
        self.active_pods.discard(node.id)
        if node.message != message or not node.synchronization_status:
            node.message = message
            node.synchronization_status = {"waiting": first.key}
            self._touch(node)
        self.lock_waiting.add(lock_holder)
        return node

    # ================================================================ parallelism

    def pods_saturated(self) -> bool:
        """True when workflow parallelism allows no new pod now."""
        par = self.spec.parallelism
        return par is not None and len(self.active_pods) >= par

    def _check_parallelism(self, tmpl: Template, opts: Opts) -> None:
        par = self.spec.parallelism
        if par is not None and _is_pod_type(tmpl) and len(self.active_pods) >= par:
            raise ParallelismReached
        bt = opts.boundary_template
        if bt is not None and opts.boundary_id:
            frame = self.frames.get(opts.boundary_id)
            if frame is None:
                return
            if frame.fail_fast_stop():
                raise ParallelismReached
            limit = frame.parallelism_limit()
            if limit is not None and frame.active_children() >= limit:
                raise ParallelismReached

    # ================================================================ retries

    def _retry_strategy(self, tmpl: Template) -> RetryStrategy | None:
        if tmpl.retry_strategy is not None:
            return tmpl.retry_strategy
        if self.spec.retry_strategy is not None and _is_pod_type(tmpl):
            return self.spec.retry_strategy
        return None

    # ================================================================ hooks and exit handlers

    def run_on_exit_node(
        self,
        hook: LifecycleHook | None,
        parent: Node,
        *,
        boundary_id: str | None,
        tctx: TemplateContext,
        scope: Scope,
    ) -> tuple[bool, Node | None]:
        """Run a step's or task's exit hook after it completes; returns (has hook, its node)."""
        if hook is None or self.control.shutdown == TERMINATE:
            return False, None
        if hook.expression:
            try:
                if not evaluate_bool(scope, hook.expression):
                    return False, None
            except ExprError as exc:
                n = self._init_node(
                    f"{parent.name}.onExit",
                    N.SKIPPED_TYPE,
                    N.ERROR,
                    holder=None,
                    tctx=tctx,
                    opts=Opts(boundary_id=boundary_id),
                    message=str(exc),
                )
                return True, n
        name = f"{parent.name}.onExit"
        args = substitute_arguments(hook.arguments, scope) if hook.arguments else None
        node = self.execute_template(
            name,
            Holder(template=hook.template, template_ref=hook.template_ref),
            tctx,
            args,
            Opts(boundary_id=boundary_id, on_exit=True, node_flag={"hooked": True}),
        )
        self._add_child(parent, name)
        return True, node

    def run_lifecycle_hooks(
        self,
        hooks: Mapping[str, LifecycleHook],
        parent: Node,
        *,
        boundary_id: str | None,
        tctx: TemplateContext,
        scope: Scope,
    ) -> bool:
        """Fire a step's/task's hooks once their expression holds; True when the fired ones are done."""
        fired: list[Node] = []
        for hname, hook in hooks.items():
            if hname == "exit":
                continue
            name = f"{parent.name}.hooks.{hname}"
            existing = self.node(name)
            if not hook.expression:
                self._mark_error(parent, f"expression required for hook {name}")
                continue
            run = existing is not None
            if not run:
                try:
                    run = evaluate_bool(scope, hook.expression)
                except ExprError as exc:
                    self._mark_error(parent, f"hook {hname}: {exc}")
                    continue
            if run:
                args = substitute_arguments(hook.arguments, scope) if hook.arguments else None
                n = self.execute_template(
                    name,
                    Holder(template=hook.template, template_ref=hook.template_ref),
                    tctx,
                    args,
                    Opts(boundary_id=boundary_id, node_flag={"hooked": True}),
                )
                self._add_child(parent, name)
                if n is not None:
                    fired.append(n)
        return all(n.fulfilled() for n in fired)

    def template_outputs(self, node: Node, inv: Invocation, scope: Scope) -> bool:
        """Set a steps/DAG node's outputs from its scope; False (node in Error) when they cannot be built."""
        try:
            outs = template_outputs(inv.template, scope)
        except OutputError as exc:
            self._mark_error(node, str(exc))
            return False
        if outs is not None:
            node.outputs = outs
            self._export_globals(outs)
            self._touch(node)
        return True

    def add_timer(self, at: float, nid: str) -> None:
        heapq.heappush(self._timers, (at, nid))
        self._want_requeue(at)


# ==================================================================== helpers


def _is_pod_type(tmpl: Template) -> bool:
    return any(
        getattr(tmpl, k) is not None for k in ("container", "script", "resource", "container_set", "data")
    )


def _node_type(tmpl: Template) -> str:
    kind = tmpl.kind
    return {
        "steps": N.STEPS,
        "dag": N.DAG,
        "suspend": N.SUSPEND,
        "http": N.HTTP,
        "plugin": N.PLUGIN,
    }.get(kind or "", N.POD)


def _template_of_ref(node: Node) -> str | None:
    if node.template_ref:
        t = node.template_ref.get("template")
        return str(t) if t else None
    return None


def substitute_arguments(args: Arguments | None, scope: Scope) -> Arguments | None:
    """Arguments with every parameter value substituted (artifacts keep their ``from`` for the caller)."""
    if args is None:
        return None
    params = []
    for p in args.parameters:
        if p.value is not None and "{{" in p.value:
            params.append(Parameter(name=p.name, value=scope.substitute(p.value), value_from=p.value_from))
        else:
            params.append(p)
    return Arguments(parameters=tuple(params), artifacts=args.artifacts)


__all__ = [
    "Holder",
    "Opts",
    "Reconciler",
    "Settings",
    "format_duration",
]
