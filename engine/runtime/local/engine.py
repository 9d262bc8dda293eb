"""The local engine: drives workflows on one machine with the shared core, SQLite and local processes.

One :class:`LocalEngine` hosts many workflows. Each running workflow has a driver task that loops:
take the step outcomes that arrived, ``reconcile`` (the pure core), write the changed nodes in one
transaction, carry out the plan (start/kill processes, save cache entries), then sleep until an
outcome arrives or the core's requeue time. Outcomes are batched, so a burst of finished steps costs
one reconcile and one commit. A new workflow's first reconcile runs as it is submitted, so it is
stored once, with its first nodes, before the driver carries out that first plan.

Crash safety: a workflow row names its owner (``pid:start-time``). On start the engine adopts the
unfinished workflows whose owner is gone, kills the process trees their in-flight steps left behind,
and continues from the persisted nodes: a node that succeeded is never run again; steps that were in
flight run again. Used by ``sluice run`` (one workflow, in process) and ``sluice server``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import SluiceError, StateError
from engine.runtime.gctune import tune_gc, tune_switching
from engine.runtime.local.artifacts import LocalDirRepository
from engine.runtime.local.executor import LocalExecutor
from engine.runtime.local.isolation import proc_start_time
from engine.runtime.local.store import CLUSTER, Store, WorkflowRow
from engine.spec.duration import duration_or
from engine.spec.workflow import Workflow, WorkflowSpec, WorkflowTemplate
from engine.workflows import nodes as N
from engine.workflows.operations import pods_to_collect
from engine.workflows.plan import KillStep, Plan, RunStep, SaveMemo, StepOutcome
from engine.workflows.reconciler import Reconciler, Settings
from engine.workflows.status import WorkflowStatus
from engine.workflows.submit import prepare_workflow
from engine.workflows.sync import LockManager
from engine.workflows.validate import validate_workflow

log = logging.getLogger(__name__)

_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"
# How long a "step is Running" report may wait to share a reconcile with whatever comes next.
RUNNING_BATCH_SECONDS = 0.05


def time_ordered_uid(now: float) -> str:
    """A new workflow's uid: a UUID in version 7's layout (RFC 9562), milliseconds first, then random.

    Every table of the state database is keyed by uid. Keys drawn at random land all over each
    B-tree, so a batch of new workflows dirties a page per workflow per table; keys that grow with
    time land on the last pages, which halves what a commit writes.
    """
    value = (int(now * 1000) & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the RFC's variant
    return str(uuid.UUID(int=value))


def name_suffix() -> str:
    """Argo-style random suffix for generateName (5 characters)."""
    return "".join(secrets.choice(_SUFFIX_CHARS) for _ in range(5))


def _use_pidfd_child_watcher() -> None:
    """On Python 3.11, wait for step processes with pidfds instead of a thread per child.

    3.12 does this by default; on 3.11 the default watcher starts and joins a thread for every step,
    which costs more than a millisecond per step on a busy host.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return  # kernel without pidfds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.get_event_loop_policy().set_child_watcher(watcher)


def _remover(path: Path) -> Callable[[], None]:
    def remove() -> None:
        shutil.rmtree(path, ignore_errors=True)

    return remove


def owner_id() -> str:
    pid = os.getpid()
    return f"{pid}:{proc_start_time(pid) or 0}"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    pid_s, _, start = owner.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    started = proc_start_time(pid)
    return started is not None and str(started) == start


class StoreObjects:
    """ConfigMaps and Secrets from the store, for the executor's env/volume lookups."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._store.get_object("ConfigMap", namespace, name)
        return None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._store.get_object("Secret", namespace, name)
        if obj is None:
            return None
        out = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        out.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return out


@dataclass
class EngineSettings:
    isolation: str = "auto"
    extra_path: tuple[str, ...] = ()
    default_active_deadline_seconds: int | None = None
    # Smallest pause between two reconciles of a workflow: bursts of outcomes share one reconcile.
    batch_seconds: float = 0.0


Listener = Callable[["WorkflowRun"], None]


@dataclass
class WorkflowRun:
    """One workflow this engine drives."""

    uid: str
    namespace: str
    name: str
    workflow: Workflow
    reconciler: Reconciler
    outcomes: list[StepOutcome] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    listeners: list[Listener] = field(default_factory=list)
    control_dirty: bool = False
    # Pending wake-up for outcomes that may wait (steps reporting Running).
    delayed: asyncio.TimerHandle | None = None

    @property
    def status(self) -> WorkflowStatus:
        return self.reconciler.status


class LocalEngine:
    def __init__(
        self,
        *,
        home: Path | None = None,
        store: Store | None = None,
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store or Store(home)
        self.home = self.store.home
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.owner = owner_id()
        self.runs: dict[str, WorkflowRun] = {}
        self._node_run: dict[str, WorkflowRun] = {}
        self.executor: LocalExecutor | None = None
        self._memo: dict[str, dict[str, Any]] = {}
        self._closed = False
        self._configmaps: dict[str, dict[str, dict[str, str]]] = {}
        self._configmaps_stamp: tuple[int, int] | None = None
        # Mutexes and semaphores are shared by every workflow this engine runs.
        self.locks = LockManager(on_release=self._on_lock_release)

    # ================================================================ lifecycle

    async def start(self, *, adopt: bool = True) -> list[str]:
        """Start the executor; with ``adopt``, continue unfinished workflows whose owner is gone."""
        tune_gc()
        tune_switching()
        _use_pidfd_child_watcher()
        self.store.run_checkpoints()
        self.executor = LocalExecutor(
            home=self.home,
            sink=self._on_outcome,
            repository=LocalDirRepository(self.home / "artifacts"),
            objects=StoreObjects(self.store),
            isolation=self.settings.isolation,
            extra_path=self.settings.extra_path,
        )
        self._memo = self.store.memo_all()
        adopted: list[str] = []
        if adopt:
            for row in self.store.list_workflows(unfinished=True):
                if row.owner == self.owner or owner_alive(row.owner):
                    continue
                self._adopt(row)
                adopted.append(row.name)
        return adopted

    async def close(self) -> None:
        self._closed = True
        self.store.stop_checkpoints()
        for run in list(self.runs.values()):
            if run.task is not None:
                run.task.cancel()
        for run in list(self.runs.values()):
            if run.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run.task
        if self.executor is not None:
            await self.executor.close()
        for run in self.runs.values():
            if not run.status.fulfilled():
                with contextlib.suppress(SluiceError):
                    self.store.set_owner(run.uid, None)

    async def __aenter__(self) -> LocalEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ================================================================ templates and objects

    def template_source(self, namespace: str) -> Callable[[bool, str], WorkflowSpec | None]:
        def source(cluster: bool, name: str) -> WorkflowSpec | None:
            kind = "ClusterWorkflowTemplate" if cluster else "WorkflowTemplate"
            obj = self.store.get_object(kind, CLUSTER if cluster else namespace, name)
            if obj is None:
                return None
            return WorkflowTemplate.parse(obj).spec

        return source

    def configmaps(self, namespace: str) -> dict[str, dict[str, str]]:
        """The namespace's ConfigMaps (name -> data), read again only after an object changed.

        Every workflow's reconciler gets them; reading them all per workflow would cost a query and
        a parse of every ConfigMap for each submission. The returned mapping is shared: read only.
        """
        stamp = self.store.objects_stamp()
        if stamp != self._configmaps_stamp:
            self._configmaps.clear()
            self._configmaps_stamp = stamp
        cached = self._configmaps.get(namespace)
        if cached is None:
            cached = {
                o["metadata"]["name"]: {k: str(v) for k, v in (o.get("data") or {}).items()}
                for o in self.store.list_objects("ConfigMap", namespace)
            }
            self._configmaps[namespace] = cached
        return cached

    # ================================================================ submission

    def prepare(
        self,
        wf: Workflow,
        *,
        namespace: str | None = None,
        parameters: Iterable[tuple[str, Any]] = (),
        entrypoint: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        validated: bool = False,
    ) -> tuple[Workflow, WorkflowStatus]:
        """The workflow to run and its first status; ``validated``: ``wf`` is known to pass validation."""
        ns = namespace or wf.metadata.namespace or "default"
        parameters = list(parameters)
        source = self.template_source(ns)
        if not validated:
            validate_workflow(wf, source=source, allow_empty_arguments=bool(parameters))
        for _ in range(20):
            prepared, status = prepare_workflow(
                wf,
                # A named workflow keeps its name: no random suffix to draw.
                name_suffix="" if wf.metadata.name else name_suffix(),
                uid=time_ordered_uid(time.time()),
                now=self.clock(),
                namespace=ns,
                parameters=parameters,
                entrypoint=entrypoint,
                source=source,
                labels=labels,
                annotations=annotations,
            )
            if wf.metadata.name or self.store.get_workflow(ns, prepared.metadata.name or "") is None:
                break
        # A spec merged from a workflowTemplateRef, or given new parameters, must be valid too.
        if wf.spec.workflow_template_ref is not None or parameters or entrypoint:
            merged = Workflow(
                api_version=prepared.api_version,
                kind="Workflow",
                metadata=prepared.metadata,
                spec=prepared.spec,
            )
            validate_workflow(merged, source=source)
        return prepared, status

    async def submit(
        self,
        wf: Workflow,
        *,
        namespace: str | None = None,
        parameters: Iterable[tuple[str, Any]] = (),
        entrypoint: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        validated: bool = False,
        spec_manifest: dict[str, Any] | None = None,
    ) -> WorkflowRun:
        """Store ``wf`` and start driving it. ``spec_manifest``: ``wf.spec.dump()``, when the caller has
        it already (stored as the spec unless preparing the workflow changed the spec)."""
        prepared, status = self.prepare(
            wf,
            namespace=namespace,
            parameters=parameters,
            entrypoint=entrypoint,
            labels=labels,
            annotations=annotations,
            validated=validated,
        )
        meta = prepared.metadata
        assert meta.name and meta.uid and meta.namespace
        # The first reconcile happens before the insert, so a new workflow is stored once, with its
        # first nodes (a workflow that completes at once, finished and released), before any of its
        # plan is carried out.
        run = self._new_run(prepared, status)
        plan = self._reconcile(run)
        try:
            self.store.insert_workflow(
                uid=meta.uid,
                namespace=meta.namespace,
                name=meta.name,
                manifest=self._manifest(prepared, wf, spec_manifest),
                status=run.status,
                owner=None if plan.finished else self.owner,
                now=self.clock(),
            )
        except BaseException:
            run.reconciler.discard()
            raise
        self.runs[run.uid] = run
        self.store.on_rollback(lambda: self._abandon(run))
        self._start_driver(run, first=plan)
        return run

    def _abandon(self, run: WorkflowRun) -> None:
        """``run`` was never stored after all (its batch's commit failed): forget it, unstarted."""
        if run.task is not None:
            run.task.cancel()
        run.reconciler.discard()
        if self.runs.get(run.uid) is run:
            del self.runs[run.uid]
        run.done.set()

    @staticmethod
    def _manifest(
        prepared: Workflow, given: Workflow, spec_manifest: dict[str, Any] | None
    ) -> dict[str, Any]:
        if spec_manifest is None or prepared.spec is not given.spec:
            return prepared.dump()
        return {
            "apiVersion": prepared.api_version,
            "kind": prepared.kind,
            "metadata": prepared.metadata.dump(),
            "spec": spec_manifest,
        }

    def _adopt(self, row: WorkflowRow) -> WorkflowRun:
        self.store.set_owner(row.uid, self.owner)
        wf = Workflow.parse(row.manifest)
        status = self.store.load_status(row)
        inflight = [
            N.pod_name(row.name, n.name, n.template_name or (n.template_ref or {}).get("template"))
            for n in status.nodes.values()
            if n.type in (N.POD, N.HTTP) and n.active()
        ]
        if inflight:
            LocalExecutor.reap(self.home, inflight)
        run = self._launch(wf, status)
        ctl = row.control
        rec = run.reconciler
        if "suspend" in ctl:
            rec.control.suspend = bool(ctl["suspend"])
        if ctl.get("shutdown"):
            rec.control.shutdown = ctl["shutdown"]
        if "activeDeadlineSeconds" in ctl:
            rec.control.active_deadline_seconds = ctl["activeDeadlineSeconds"]
        return run

    def _launch(self, wf: Workflow, status: WorkflowStatus) -> WorkflowRun:
        """Drive a stored workflow from ``status`` (adopted, retried) in a task of its own."""
        run = self._new_run(wf, status)
        self.runs[run.uid] = run
        self._start_driver(run)
        return run

    def _start_driver(self, run: WorkflowRun, *, first: Plan | None = None) -> None:
        run.task = asyncio.get_running_loop().create_task(
            self._drive(run, first), name=f"workflow {run.name}"
        )

    def _new_run(self, wf: Workflow, status: WorkflowStatus) -> WorkflowRun:
        meta = wf.metadata
        assert meta.name and meta.uid and meta.namespace
        rec = Reconciler(
            wf,
            status,
            configmaps=self.configmaps(meta.namespace),
            memo=self._memo,
            locks=self.locks,
            settings=Settings(
                default_active_deadline_seconds=self.settings.default_active_deadline_seconds,
                always_capture_result=True,
            ),
        )
        return WorkflowRun(
            uid=meta.uid, namespace=meta.namespace, name=meta.name, workflow=wf, reconciler=rec
        )

    # ================================================================ the driver loop

    def _on_lock_release(self, _key: str) -> None:
        for run in self.runs.values():
            if run.reconciler.lock_waiting and not run.done.is_set():
                run.wake.set()

    def _on_outcome(self, outcome: StepOutcome) -> None:
        run = self._node_run.get(outcome.node_id)
        if run is None:
            return
        run.outcomes.append(outcome)
        if outcome.phase in ("Pending", "Running"):
            # A step starting changes little; fold it into the next reconcile (most steps of a fast
            # workflow finish first) instead of paying a reconcile and a commit for it alone.
            if run.delayed is None and not run.wake.is_set():
                run.delayed = asyncio.get_running_loop().call_later(RUNNING_BATCH_SECONDS, run.wake.set)
            return
        run.wake.set()

    def _reconcile(self, run: WorkflowRun) -> Plan:
        """Reconcile ``run`` with the outcomes that arrived; a failure of the core ends it in Error."""
        outcomes, run.outcomes = run.outcomes, []
        run.wake.clear()
        if run.delayed is not None:
            run.delayed.cancel()
            run.delayed = None
        try:
            return run.reconciler.reconcile(outcomes, self.clock())
        except Exception as exc:
            log.exception("workflow %s: engine error", run.name)
            run.reconciler.fail(f"engine error: {exc}")
            return Plan(workflow_changed=True, finished=True)

    async def _drive(self, run: WorkflowRun, first: Plan | None = None) -> None:
        """Reconcile and carry out plans until the workflow finishes; ``first``: a stored first plan."""
        try:
            if first is not None:
                # The submission may be in a store batch still open: commit it before acting on it.
                self.store.flush()
                await self._apply(run, first, stored=True)
            plan = first
            while True:
                if plan is None:
                    plan = self._reconcile(run)
                    await self._apply(run, plan)  # stores the plan, the final one included
                if plan.finished:
                    break
                timeout = None if plan.requeue_at is None else max(0.0, plan.requeue_at - self.clock())
                plan = None
                if run.outcomes and not run.control_dirty:
                    if self.settings.batch_seconds:
                        await asyncio.sleep(self.settings.batch_seconds)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.wake.wait(), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("workflow %s: engine error", run.name)
            run.reconciler.fail(f"engine error: {exc}")
            self._persist(run, Plan(workflow_changed=True, finished=True))
        finally:
            self._finish(run)

    def _finish(self, run: WorkflowRun) -> None:
        run.done.set()
        for nid in [k for k, v in self._node_run.items() if v is run]:
            del self._node_run[nid]
        # A finished run lives on in the store (find/wait/retry read it there); keeping it here would
        # grow a long-lived server by every workflow it ever ran. A retry may already have put a new
        # run under this uid.
        if self.runs.get(run.uid) is run:
            del self.runs[run.uid]
        self._notify(run)

    async def _apply(self, run: WorkflowRun, plan: Plan, *, stored: bool = False) -> None:
        # Persist first (unless the caller just stored it): what the runtime does next must never be
        # ahead of what is stored.
        if not stored:
            self._persist(run, plan)
        self._collect_garbage(run, plan)
        executor = self.executor
        assert executor is not None
        for action in plan.actions:
            if isinstance(action, RunStep):
                self._node_run[action.step.node_id] = run
                try:
                    await executor.start(action.step)
                except SluiceError as exc:
                    run.outcomes.append(
                        StepOutcome(
                            node_id=action.step.node_id,
                            phase="Error",
                            message=str(exc),
                            finished_at=self.clock(),
                        )
                    )
            elif isinstance(action, KillStep):
                if action.node_id in executor.running():
                    asyncio.get_running_loop().create_task(executor.kill(action.node_id, action.message))
                elif not action.already_final:
                    run.outcomes.append(
                        StepOutcome(
                            node_id=action.node_id,
                            phase="Failed",
                            message=action.message,
                            finished_at=self.clock(),
                        )
                    )
            elif isinstance(action, SaveMemo):
                self.store.memo_put(action.cache, action.key, action.outputs, self.clock())
                from engine.workflows.nodes import rfc3339

                self._memo.setdefault(action.cache, {})[action.key] = {
                    "outputs": action.outputs,
                    "creationTimestamp": rfc3339(self.clock()),
                }
        if run.outcomes:
            run.wake.set()
        self._notify(run)

    def _persist(self, run: WorkflowRun, plan: Plan) -> None:
        if not (plan.changed_nodes or plan.workflow_changed or run.control_dirty or plan.finished):
            return
        control = None
        if run.control_dirty:
            c = run.reconciler.control
            control = {
                "suspend": c.suspend,
                "shutdown": c.shutdown,
                "activeDeadlineSeconds": c.active_deadline_seconds,
            }
            run.control_dirty = False
        # A finished workflow is released (no owner) in the same transaction as its last status.
        self.store.save_progress(
            run.uid, run.status, plan.changed_nodes, control=control, release=plan.finished
        )

    # ================================================================ garbage collection

    def _collect_garbage(self, run: WorkflowRun, plan: Plan) -> None:
        """podGC (a local pod is its directory: logs and private root) and ttlStrategy."""
        spec = run.workflow.spec
        gc = spec.pod_gc
        if gc is not None and gc.strategy:
            delay = duration_or(gc.delete_delay_duration, 5.0)
            for n in pods_to_collect(run.status, gc.strategy, plan.changed_nodes, finished=plan.finished):
                self._later(delay, _remover(self.home / "pods" / run.reconciler.pod_name_of(n)))
        if plan.finished and spec.volume_claim_templates:
            # volumeClaimGC: claims made for this workflow go when it ends (by default only on success).
            claim_gc = (spec.volume_claim_gc or {}).get("strategy") or "OnWorkflowSuccess"
            if claim_gc == "OnWorkflowCompletion" or run.status.phase == "Succeeded":
                for claim in spec.volume_claim_templates:
                    cname = (claim.get("metadata") or {}).get("name")
                    if cname:
                        shutil.rmtree(self.home / "volumes" / f"{run.name}-{cname}", ignore_errors=True)
        ttl = spec.ttl_strategy
        if ttl is not None and plan.finished:
            secs = ttl.seconds_after_success if run.status.phase == "Succeeded" else ttl.seconds_after_failure
            if secs is None:
                secs = ttl.seconds_after_completion
            if secs is not None:
                self._later(float(secs), lambda: self._expire(run.uid))

    def _later(self, delay: float, fn: Callable[[], object]) -> None:
        if self._closed:
            return
        asyncio.get_running_loop().call_later(max(0.0, delay), fn)

    def _expire(self, uid: str) -> None:
        row = self.store.get_workflow_by_uid(uid)
        if row is None or row.phase not in ("Succeeded", "Failed", "Error"):
            return
        self.runs.pop(uid, None)
        self.store.delete_workflow(uid)

    def expire_finished(self) -> int:
        """Delete finished workflows whose ttlStrategy has run out (e.g. while no engine was up)."""
        now = self.clock()
        count = 0
        for row in self.store.list_workflows():
            if row.phase not in ("Succeeded", "Failed", "Error") or row.finished_at is None:
                continue
            ttl = (row.manifest.get("spec") or {}).get("ttlStrategy") or {}
            key = "secondsAfterSuccess" if row.phase == "Succeeded" else "secondsAfterFailure"
            secs = ttl.get(key, ttl.get("secondsAfterCompletion"))
            if secs is not None and now >= row.finished_at + float(secs):
                self.store.delete_workflow(row.uid)
                count += 1
        return count

    def _notify(self, run: WorkflowRun) -> None:
        for listener in list(run.listeners):
            try:
                listener(run)
            except Exception:
                log.exception("listener failed")

    # ================================================================ queries and operations

    def find(self, name: str, namespace: str = "default") -> WorkflowRun | None:
        for run in self.runs.values():
            if run.name == name and run.namespace == namespace:
                return run
        return None

    def _run_or_fail(self, name: str, namespace: str) -> WorkflowRun:
        run = self.find(name, namespace)
        if run is None or run.done.is_set():
            row = self.store.get_workflow(namespace, name)
            if row is None:
                raise StateError(f"workflow {name!r} not found in namespace {namespace!r}")
            if row.phase in ("Succeeded", "Failed", "Error"):
                raise StateError(f"workflow {name!r} has already completed ({row.phase})")
            raise StateError(f"workflow {name!r} is not run by this engine")
        return run

    def _poke(self, run: WorkflowRun) -> None:
        run.control_dirty = True
        run.wake.set()

    async def wait(self, name: str, namespace: str = "default") -> str:
        run = self.find(name, namespace)
        if run is not None:
            await run.done.wait()
            return run.status.phase
        row = self.store.get_workflow(namespace, name)
        if row is None:
            raise StateError(f"workflow {name!r} not found in namespace {namespace!r}")
        return row.phase

    def suspend(self, name: str, namespace: str = "default") -> None:
        run = self._run_or_fail(name, namespace)
        run.reconciler.suspend()
        self._poke(run)

    def resume(
        self,
        name: str,
        namespace: str = "default",
        *,
        node: str | None = None,
        outputs: Mapping[str, str] | None = None,
    ) -> int:
        run = self._run_or_fail(name, namespace)
        count = run.reconciler.resume(node, outputs=outputs)
        # Stored before answering, so an acknowledged resume survives a crash.
        self.store.save_progress(run.uid, run.status, run.reconciler.pending_changes())
        self._poke(run)
        return count

    def stop(self, name: str, namespace: str = "default") -> None:
        run = self._run_or_fail(name, namespace)
        run.reconciler.set_shutdown("Stop")
        self._poke(run)

    def terminate(self, name: str, namespace: str = "default") -> None:
        run = self._run_or_fail(name, namespace)
        run.reconciler.set_shutdown("Terminate")
        self._poke(run)

    async def retry(
        self,
        name: str,
        namespace: str = "default",
        *,
        restart_successful: bool = False,
        node_selector: str | None = None,
        parameters: Iterable[tuple[str, Any]] = (),
    ) -> WorkflowRun:
        """Rerun a finished Failed/Error workflow in place: reset failed nodes and their ancestors."""
        from engine.workflows.operations import reset_for_retry

        row = self.store.get_workflow(namespace, name)
        if row is None:
            raise StateError(f"workflow {name!r} not found in namespace {namespace!r}")
        if row.phase not in ("Failed", "Error"):
            raise StateError(
                f"workflow {name!r} is {row.phase or 'running'}: only a Failed or Error one can be retried"
            )
        existing = self.runs.pop(row.uid, None)
        if existing is not None and existing.task is not None and not existing.done.is_set():
            raise StateError(f"workflow {name!r} is still being driven")
        wf = Workflow.parse(row.manifest)
        if parameters:
            from engine.workflows.submit import apply_parameters

            wf = Workflow(
                api_version=wf.api_version,
                kind=wf.kind,
                metadata=wf.metadata,
                spec=apply_parameters(wf.spec, parameters),
            )
            self.store.update_manifest(row.uid, wf.dump())
        status = self.store.load_status(row)
        reset_for_retry(status, restart_successful=restart_successful, node_selector=node_selector)
        self.store.replace_nodes(row.uid, status)
        self.store.set_control(row.uid, {})
        self.store.set_owner(row.uid, self.owner)
        return self._launch(wf, status)

    async def resubmit(
        self,
        name: str,
        namespace: str = "default",
        *,
        parameters: Iterable[tuple[str, Any]] = (),
        memoized: bool = False,
    ) -> WorkflowRun:
        row = self.store.get_workflow(namespace, name)
        if row is None:
            raise StateError(f"workflow {name!r} not found in namespace {namespace!r}")
        manifest = json.loads(json.dumps(row.manifest))
        meta = manifest.setdefault("metadata", {})
        base = meta.get("generateName") or f"{row.name}-"
        for k in ("name", "uid", "creationTimestamp", "resourceVersion"):
            meta.pop(k, None)
        meta["generateName"] = base
        labels = meta.setdefault("labels", {})
        labels["workflows.argoproj.io/resubmitted-from-workflow"] = row.name
        wf = Workflow.parse(manifest)
        return await self.submit(wf, namespace=namespace, parameters=parameters)

    async def delete(self, name: str, namespace: str = "default") -> None:
        row = self.store.get_workflow(namespace, name)
        if row is None:
            raise StateError(f"workflow {name!r} not found in namespace {namespace!r}")
        run = self.runs.pop(row.uid, None)
        if run is not None and run.task is not None and not run.done.is_set():
            run.reconciler.set_shutdown("Terminate")
            self._poke(run)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.done.wait(), 30)
            run.task.cancel()
        self.store.delete_workflow(row.uid)
