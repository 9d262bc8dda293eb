"""The operator's brain: one driver per running Workflow, fed by watch events, deciding with the core.

``engine.runtime.kubernetes.operator`` registers kopf handlers that hand every Workflow, Pod and
CronWorkflow event to a :class:`Controller`. Nothing here polls: a driver wakes when a pod of its
workflow changes, when the workflow object changes (stop, suspend, resume, retry are patches the CLI
sends), or at the time the core asked to be called again (backoff, deadlines, suspend durations).

A driver loops like the embedded engine's: take the observed pod states, ``reconcile`` (the shared
core), write the status, carry out the plan (create pods, delete pods, save cache entries). Pods have
deterministic names, so after an operator restart the core asks again for every pod it had started,
the create answers 409 AlreadyExists, and the pod's state, from the watch, tells the rest: nothing runs
twice and the status continues from where it was.

Status writes are merge patches of the nodes that changed. Once the nodes' JSON passes
``COMPRESS_ABOVE`` they are written whole as ``compressedNodes`` (gzip + base64, as Argo), at most
every few seconds, so a 10,000-node workflow's object stays well under the API server's 1 MB limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import SluiceError, SpecError
from engine.runtime.gctune import tune_gc
from engine.runtime.kubernetes import podstate
from engine.runtime.kubernetes.api import ApiError, AsyncApi, TokenBucket, path_of
from engine.runtime.kubernetes.metrics import Metrics
from engine.runtime.kubernetes.pods import (
    ANNOTATION_STOP_MESSAGE,
    LABEL_INSTANCE,
    LABEL_WORKFLOW,
    PodSettings,
    build_pod,
)
from engine.runtime.kubernetes.settings import OperatorSettings
from engine.spec.duration import duration_or
from engine.spec.workflow import API_VERSION, CronWorkflow, Workflow, WorkflowSpec, WorkflowTemplate
from engine.workflows import cron as cronlib
from engine.workflows import nodes as N
from engine.workflows.operations import pods_to_collect, reset_for_retry
from engine.workflows.plan import KillStep, Plan, RunStep, SaveMemo, StepOutcome, StepRun
from engine.workflows.reconciler import Reconciler, Settings
from engine.workflows.status import WF_COMPLETED, WF_ERROR, WorkflowStatus, compress_nodes
from engine.workflows.submit import prepare_workflow
from engine.workflows.sync import LockManager
from engine.workflows.validate import validate_workflow

log = logging.getLogger(__name__)

JSON = dict[str, Any]
ANNOTATION_RESUME = "workflows.sluice.dev/resume"
ANNOTATION_RETRY = "workflows.sluice.dev/retry"
# Above this size the nodes are stored compressed (Argo compresses near its 1 MB object limit; staying
# well below keeps watch events and kubectl output small too).
COMPRESS_ABOVE = 256 * 1024
# A workflow's reconciles are at least this far apart, so a burst of pod events costs one status write.
BATCH_SECONDS = 0.1
# Compressed status writes rewrite every node: at most one per this many seconds (or per 5x their cost).
COMPRESSED_WRITE_SECONDS = 2.0
# How long (in one-second tries) a retried node waits for its previous pod to be gone.
RECREATE_ATTEMPTS = 120
# A pod stopped through its deadline that has not ended this long after its grace period is deleted.
DEFAULT_GRACE_SECONDS = 30
STOP_MARGIN_SECONDS = 30


def _owner_uid(obj: Mapping[str, Any], kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("kind") == kind and ref.get("uid"):
            return str(ref["uid"])
    return None


def _started(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("status") or {}).get("startTime"))


def _owner_reference(driver: Driver) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "name": driver.name,
        "uid": driver.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _workflow_path(namespace: str, name: str, sub: str | None = None) -> str:
    return path_of("workflows", namespace, name, sub=sub)


def _pod_path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    return path_of("pods", namespace, name, group="", sub=sub)


class Limiter:
    """``TokenBucket`` for coroutines: waiting for a token does not block the loop."""

    def __init__(self, rate: float, burst: int) -> None:
        self._bucket = TokenBucket(rate, burst)

    async def acquire(self) -> None:
        pause = self._bucket.delay()
        if pause > 0:
            await asyncio.sleep(pause)


@dataclass
class Driver:
    """One running workflow: its core, the pod states not yet reconciled, and what was written."""

    controller: Controller
    namespace: str
    name: str
    uid: str
    workflow: Workflow
    reconciler: Reconciler
    outcomes: list[StepOutcome] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    steps: dict[str, StepRun] = field(default_factory=dict)
    # Pods whose outputs are being fetched, and pods fully observed (their final state was sent).
    fetching: set[str] = field(default_factory=set)
    settled: set[str] = field(default_factory=set)
    node_sizes: dict[str, int] = field(default_factory=dict)
    compressed: bool = False
    last_compressed_write: float = 0.0
    compress_cost: float = 0.0
    dirty_nodes: set[str] = field(default_factory=set)
    dirty_workflow: bool = False
    extra_status: JSON = field(default_factory=dict)
    generation: Any = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    # Pods deleted by a retry whose names the rerun nodes will use again.
    recreate: set[str] = field(default_factory=set)
    # Pods being stopped through their deadline (see _kill).
    stopping: set[str] = field(default_factory=set)

    @property
    def status(self) -> WorkflowStatus:
        return self.reconciler.status

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # ------------------------------------------------------------------------------------- observations

    def observe_pod(self, pod: Mapping[str, Any], *, deleted: bool = False) -> None:
        name = str((pod.get("metadata") or {}).get("name") or "")
        node_id = podstate.node_id_of(pod)
        if node_id is None or name in self.settled:
            return
        node = self.status.nodes.get(node_id)
        if node is not None and node.fulfilled() and not node.daemoned:
            return
        step = self.steps.get(node_id)
        names = tuple(str(c.get("name") or "") for c in step.containers) if step is not None else ()
        if podstate.pod_finished(pod) and not deleted:
            if podstate.wait_finished(pod):
                if name not in self.fetching:
                    self.fetching.add(name)
                    self.spawn(self._fetch_outputs(dict(pod), names))
                return
            if podstate.wait_running(pod):
                # Failed past its deadline while the kubelet is still stopping the containers: wait's
                # outputs come with its end.
                return
        outcome = podstate.pod_outcome(pod, deleted=deleted, container_set=names)
        if outcome is None:
            return
        if outcome.phase in ("Succeeded", "Failed", "Error"):
            self.settled.add(name)
            if not podstate.pod_finished(pod) and not deleted:
                # Final while the pod still exists (its image cannot be pulled...): the pod must go.
                self.spawn(self.controller.delete_pod(self.namespace, name))
        self.push(outcome)

    async def _fetch_outputs(self, pod: JSON, names: tuple[str, ...]) -> None:
        from engine.runtime.kubernetes.executor import parse_outputs

        name = str(pod["metadata"]["name"])
        outputs: Mapping[str, Any] | None = None
        error: str | None = None
        try:
            for attempt in range(2):
                if attempt:
                    # A log can lag a moment behind the container's terminated state: look once more.
                    await asyncio.sleep(1.0)
                text = await self.controller.api.call(
                    "GET", _pod_path(self.namespace, name, "log"), query=[("container", "wait")], raw=True
                )
                outputs = parse_outputs(str(text))
                if outputs is not None:
                    break
            if outputs is None:
                error = "the step's outputs were not reported (no outputs line in the wait container's log)"
        except ApiError as exc:
            error = f"could not read the step's outputs: {exc}"
        outcome = podstate.pod_outcome(pod, outputs=outputs, outputs_error=error, container_set=names)
        self.fetching.discard(name)
        if outcome is not None:
            self.settled.add(name)
            self.push(outcome)

    def push(self, outcome: StepOutcome) -> None:
        self.outcomes.append(outcome)
        self.wake.set()

    def update_object(self, body: Mapping[str, Any]) -> None:
        """The workflow object changed: apply what operations changed in its spec and annotations."""
        spec = body.get("spec") or {}
        rec = self.reconciler
        control = rec.control
        shutdown = spec.get("shutdown") or None
        if shutdown and shutdown != control.shutdown:
            with contextlib.suppress(SluiceError):
                rec.set_shutdown(str(shutdown))
        suspend = bool(spec.get("suspend"))
        if suspend != control.suspend:
            if suspend:
                rec.suspend()
            else:
                control.suspend = False
        deadline = spec.get("activeDeadlineSeconds")
        if deadline != control.active_deadline_seconds and (
            deadline is not None or control.active_deadline_seconds
        ):
            rec.set_active_deadline(int(deadline) if deadline is not None else None)
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        request = annotations.get(ANNOTATION_RESUME)
        if request:
            try:
                parsed = json.loads(request)
            except ValueError:
                parsed = {}
            outputs = parsed.get("outputs") if isinstance(parsed, dict) else None
            node = parsed.get("node") if isinstance(parsed, dict) else None
            rec.resume(str(node) if node else None, outputs=outputs if isinstance(outputs, dict) else None)
            self.dirty_nodes |= rec.pending_changes()
            self.spawn(self.controller.clear_annotation(self.namespace, self.name, ANNOTATION_RESUME))
        self.dirty_workflow = True
        self.wake.set()

    # ------------------------------------------------------------------------------------------- loop

    async def run(self) -> None:
        rec = self.reconciler
        ctl = self.controller
        try:
            while True:
                outcomes, self.outcomes = self.outcomes, []
                self.wake.clear()
                started = time.process_time()
                plan = rec.reconcile(outcomes, ctl.clock())
                ctl.metrics.observe_reconcile(time.process_time() - started)
                await self.persist(plan, force=plan.finished)
                self.apply(plan)
                if plan.finished:
                    ctl.finished(self, plan)
                    return
                timeout = None if plan.requeue_at is None else max(0.0, plan.requeue_at - ctl.clock())
                if not self.outcomes:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), timeout)
                # Let a burst of pod events gather: one reconcile and one status write for all of them.
                await asyncio.sleep(BATCH_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("workflow %s/%s: operator error", self.namespace, self.name)
            rec.fail(f"operator error: {exc}")
            with contextlib.suppress(Exception):
                await self.persist(Plan(workflow_changed=True), force=True)

    # ---------------------------------------------------------------------------------------- status

    async def persist(self, plan: Plan, *, force: bool = False) -> None:
        self.dirty_nodes |= plan.changed_nodes
        self.dirty_workflow = self.dirty_workflow or plan.workflow_changed or plan.finished
        if not (self.dirty_nodes or self.dirty_workflow):
            return
        ctl = self.controller
        now = time.monotonic()
        if self.compressed and not force:
            wait = max(COMPRESSED_WRITE_SECONDS, 5 * self.compress_cost)
            if now - self.last_compressed_write < wait:
                # Written later: ask to be woken when the write is due.
                loop = asyncio.get_running_loop()
                loop.call_later(wait - (now - self.last_compressed_write), self.wake.set)
                return
        patch = self.status_patch()
        self.dirty_nodes = set()
        self.dirty_workflow = False
        try:
            await ctl.api.merge_patch(_workflow_path(self.namespace, self.name, "status"), {"status": patch})
        except ApiError as exc:
            if exc.status == 404:
                raise asyncio.CancelledError from None  # the workflow was deleted under us
            raise

    def status_patch(self) -> JSON:
        st = self.status
        out: JSON = st.to_dict(include_nodes=False, include_stored=bool(self.extra_status.get("first")))
        out.update({k: v for k, v in self.extra_status.items() if k != "first"})
        self.extra_status = {}
        for key in ("startedAt", "finishedAt", "message", "outputs", "conditions", "synchronization"):
            out.setdefault(key, None)
        nodes = st.nodes
        changed: JSON = {}
        for nid in self.dirty_nodes:
            n = nodes.get(nid)
            if n is None:
                changed[nid] = None
                self.node_sizes.pop(nid, None)
            else:
                d = n.to_dict()
                changed[nid] = d
                self.node_sizes[nid] = len(json.dumps(d, separators=(",", ":")))
        if not self.compressed and sum(self.node_sizes.values()) > COMPRESS_ABOVE:
            self.compressed = True
        if self.compressed:
            started = time.monotonic()
            out["nodes"] = None
            out["compressedNodes"] = compress_nodes({nid: n.to_dict() for nid, n in nodes.items()})
            self.compress_cost = time.monotonic() - started
            self.last_compressed_write = time.monotonic()
        elif changed:
            out["nodes"] = changed
        return out

    # ---------------------------------------------------------------------------------------- actions

    def apply(self, plan: Plan) -> None:
        ctl = self.controller
        for action in plan.actions:
            if isinstance(action, RunStep):
                self.steps[action.step.node_id] = action.step
                self.spawn(self._create_pod(action.step))
            elif isinstance(action, KillStep):
                self.spawn(self._kill(action))
            elif isinstance(action, SaveMemo):
                self.spawn(ctl.save_memo(self.namespace, action))
        ctl.collect_pods(self, plan)

    def _fail_step(self, step: StepRun, message: str) -> None:
        """The step ends in Error before a pod of it runs (cannot be built, created or run here)."""
        self.push(
            StepOutcome(
                node_id=step.node_id, phase="Error", message=message, finished_at=self.controller.clock()
            )
        )

    async def _create_pod(self, step: StepRun) -> None:
        ctl = self.controller
        if step.kind not in ("container", "script", "containerSet", "http"):
            self._fail_step(step, f"{step.kind} templates are not supported by the Kubernetes runtime yet")
            return
        try:
            pod = build_pod(step, ctl.pod_settings, now=ctl.clock())
        except SluiceError as exc:
            self._fail_step(step, str(exc))
            return
        await ctl.pod_limiter.acquire()
        try:
            made = await ctl.api.create(_pod_path(step.namespace), pod)
        except ApiError as exc:
            self._fail_step(step, f"could not create pod {step.pod_name}: {exc.api_message or exc}")
            return
        attempts = 0
        while made is None and step.pod_name in self.recreate and attempts < RECREATE_ATTEMPTS:
            # The pod of the attempt before a retry is still going away: create again once it is gone.
            attempts += 1
            await asyncio.sleep(1.0)
            made = await ctl.api.create(_pod_path(step.namespace), pod)
        if made is None:
            # Created before (an operator restart, a retried request): what it does now is in the cache.
            cached = ctl.pods.get(self.uid, {}).get(step.pod_name)
            if cached is not None:
                self.observe_pod(cached)
            return
        self.recreate.discard(step.pod_name)
        ctl.metrics.pods_created += 1

    async def _kill(self, action: KillStep) -> None:
        ctl = self.controller
        name = action.pod_name
        if name in self.stopping or name in self.settled:
            return
        pod = ctl.pods.get(self.uid, {}).get(name)
        if pod is not None and not action.already_final and _started(pod):
            # Cut the pod's deadline short rather than delete it: the kubelet stops its containers with
            # SIGTERM and the grace period, main's sluice-run records the exit and wait still reports
            # main's outputs, which the node keeps, as on the embedded runtime. (A pod already past
            # its own deadline is being stopped that way by the kubelet.)
            self.stopping.add(name)
            if await self._stop_by_deadline(pod, action.message):
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
                await asyncio.sleep(
                    (grace if isinstance(grace, int | float) else DEFAULT_GRACE_SECONDS) + STOP_MARGIN_SECONDS
                )
                if name in self.settled:
                    return
                log.warning("pod %s/%s outlived its stop; deleting it", self.namespace, name)
        await ctl.delete_pod(self.namespace, name)
        if name in self.settled:
            return
        self.settled.add(name)
        if not action.already_final:
            self.push(
                StepOutcome(
                    node_id=action.node_id, phase="Failed", message=action.message, finished_at=ctl.clock()
                )
            )

    async def _stop_by_deadline(self, pod: Mapping[str, Any], message: str) -> bool:
        """Set the running pod's deadline to now; False when that could not be done."""
        if podstate.pod_finished(pod):
            return True  # already stopping (past its own deadline) or stopped: its end is on its way
        patch = {
            "metadata": {"annotations": {ANNOTATION_STOP_MESSAGE: message}},
            "spec": {"activeDeadlineSeconds": 1},
        }
        name = str(pod["metadata"]["name"])
        try:
            await self.controller.api.merge_patch(_pod_path(self.namespace, name), patch)
        except ApiError as exc:
            log.warning("could not stop pod %s/%s by its deadline: %s", self.namespace, name, exc)
            return False
        return True

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        for task in list(self.background):
            task.cancel()


class Controller:
    """All workflows of this operator: drivers by workflow uid, the pod cache, cron schedules."""

    def __init__(
        self,
        api: AsyncApi,
        settings: OperatorSettings,
        pod_settings: PodSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.settings = settings
        self.pod_settings = pod_settings
        self.clock = clock
        self.drivers: dict[str, Driver] = {}
        # Latest state of every step pod, by workflow uid and pod name.
        self.pods: dict[str, dict[str, JSON]] = {}
        # Every workflow seen, for cron children: uid -> namespace, name, labels, phase, finishedAt.
        self.workflows: dict[str, JSON] = {}
        self.crons: dict[tuple[str, str], JSON] = {}
        # Workflows this operator finished: older states of them still arrive as watch events.
        self.completed: set[str] = set()
        # Uids of pods deleted by a retry (their events are ignored until they are gone).
        self.stale_pods: set[str] = set()
        self.metrics = Metrics(self)
        self.locks = LockManager(on_release=self._on_lock_release)
        self.pod_limiter = Limiter(
            settings.pod_creates_per_second, max(1, int(settings.pod_creates_per_second))
        )
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._cron_wake = asyncio.Event()
        self._cron_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Memoization caches by namespace, cache name and key.
        self._memo: dict[str, dict[str, dict[str, Any]]] = {}
        tune_gc()

    def start(self) -> None:
        self._cron_task = asyncio.get_running_loop().create_task(self.cron_loop(), name="cron")

    async def close(self) -> None:
        if self._cron_task is not None:
            self._cron_task.cancel()
        for driver in list(self.drivers.values()):
            await driver.close()
        for handle in self._timers.values():
            handle.cancel()
        for task in list(self._background):
            task.cancel()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def ours(self, body: Mapping[str, Any]) -> bool:
        labels = (body.get("metadata") or {}).get("labels") or {}
        return labels.get(LABEL_INSTANCE, "") == self.settings.instance_id

    # ------------------------------------------------------------------------------------ workflows

    async def on_workflow(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if not uid or not self.ours(body):
            return
        if event_type == "DELETED":
            self.workflows.pop(uid, None)
            self.completed.discard(uid)
            driver = self.drivers.pop(uid, None)
            if driver is not None:
                await driver.close()
            self.pods.pop(uid, None)
            self._cancel_timer(uid)
            return
        status = body.get("status") or {}
        self.workflows[uid] = {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "labels": dict(meta.get("labels") or {}),
            "phase": status.get("phase") or "",
            "finishedAt": status.get("finishedAt"),
        }
        driver = self.drivers.get(uid)
        if driver is not None:
            if meta.get("generation") != driver.generation or (meta.get("annotations") or {}).get(
                ANNOTATION_RESUME
            ):
                driver.generation = meta.get("generation")
                driver.update_object(body)
            return
        phase = status.get("phase") or ""
        annotations = meta.get("annotations") or {}
        if uid in self.completed and phase not in WF_COMPLETED:
            # The echo of a status written before this operator finished the workflow.
            return
        if phase in WF_COMPLETED:
            if annotations.get(ANNOTATION_RETRY):
                await self._retry(body)
            else:
                self.schedule_ttl(body)
            return
        await self._launch(body)

    async def _launch(self, body: Mapping[str, Any], status: WorkflowStatus | None = None) -> None:
        meta = body.get("metadata") or {}
        namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
        extra: JSON = {}
        try:
            wf = Workflow.parse(dict(body))
            raw_status = body.get("status") or {}
            if status is None and raw_status.get("phase"):
                status = WorkflowStatus.from_dict(dict(raw_status))
                stored = raw_status.get("storedWorkflowTemplateSpec")
                if stored:
                    wf = Workflow(
                        api_version=wf.api_version,
                        kind=wf.kind,
                        metadata=wf.metadata,
                        spec=WorkflowSpec.parse(stored),
                    )
            elif status is None:
                wf, status, extra = await asyncio.to_thread(self._prepare, wf, namespace)
        except SpecError as exc:
            await self._reject(namespace, name, f"invalid workflow: {exc.lines()[0] if exc.lines() else exc}")
            return
        except SluiceError as exc:
            await self._reject(namespace, name, str(exc))
            return
        configmaps = await self._configmaps(namespace)
        memo = await self._load_memo(namespace, wf)
        rec = Reconciler(
            wf,
            status,
            configmaps=configmaps,
            memo=memo,
            locks=self.locks,
            settings=Settings(
                default_active_deadline_seconds=self.settings.default_active_deadline_seconds or None,
                always_capture_result=True,
            ),
        )
        driver = Driver(self, namespace, name, uid, wf, rec, generation=meta.get("generation"))
        driver.extra_status = extra
        driver.node_sizes = dict.fromkeys(rec.status.nodes, 0)
        if raw := (body.get("status") or {}).get("compressedNodes"):
            driver.compressed = bool(raw)
        self.drivers[uid] = driver
        driver.update_object(body)
        for pod in list(self.pods.get(uid, {}).values()):
            driver.observe_pod(pod)
        problem = await self._ensure_claims(driver)
        if problem is not None:
            rec.fail(problem)
        driver.task = asyncio.get_running_loop().create_task(
            driver.run(), name=f"workflow {namespace}/{name}"
        )

    def _prepare(self, wf: Workflow, namespace: str) -> tuple[Workflow, WorkflowStatus, JSON]:
        """Validate and prepare a new workflow (in a thread: template lookups are blocking calls)."""
        source = self.template_source(namespace)
        validate_workflow(wf, source=source)
        prepared, status = prepare_workflow(
            wf,
            name_suffix="",
            uid=wf.metadata.uid or "",
            now=self.clock(),
            namespace=namespace,
            source=source,
        )
        extra: JSON = {"first": True}
        if wf.spec.workflow_template_ref is not None:
            merged = Workflow(
                api_version=API_VERSION, kind="Workflow", metadata=prepared.metadata, spec=prepared.spec
            )
            validate_workflow(merged, source=source)
            extra["storedWorkflowTemplateSpec"] = prepared.spec.dump()
        return prepared, status, extra

    def template_source(self, namespace: str) -> Callable[[bool, str], WorkflowSpec | None]:
        api = self.api.sync

        def source(cluster: bool, name: str) -> WorkflowSpec | None:
            path = (
                path_of("clusterworkflowtemplates", None, name)
                if cluster
                else path_of("workflowtemplates", namespace, name)
            )
            try:
                obj = api.call("GET", path)
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            return WorkflowTemplate.parse(obj).spec

        return source

    async def _reject(self, namespace: str, name: str, message: str) -> None:
        now = N.rfc3339(self.clock())
        status = {
            "phase": WF_ERROR,
            "message": message,
            "startedAt": now,
            "finishedAt": now,
            "progress": "0/0",
        }
        with contextlib.suppress(ApiError):
            await self.api.merge_patch(_workflow_path(namespace, name, "status"), {"status": status})

    async def _retry(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = str(meta["namespace"]), str(meta["name"])
        try:
            request = json.loads((meta.get("annotations") or {})[ANNOTATION_RETRY])
        except ValueError:
            request = {}
        self.completed.discard(str(meta["uid"]))
        status = WorkflowStatus.from_dict(dict(body.get("status") or {}))
        before = set(status.nodes)
        reset_for_retry(
            status,
            restart_successful=bool(request.get("restartSuccessful")),
            node_selector=request.get("nodeFieldSelector") or None,
        )
        # Spec changes a retry undoes (a stop that ended it), and the request itself.
        await self.api.merge_patch(
            _workflow_path(namespace, name),
            {"metadata": {"annotations": {ANNOTATION_RETRY: None}}, "spec": {"shutdown": None}},
        )
        # Pods of the nodes that run again go first (Argo does the same): their names will be reused.
        uid = str(meta["uid"])
        cached = self.pods.get(uid, {})
        stale = [name for name, pod in cached.items() if podstate.node_id_of(pod) not in status.nodes]
        for pod_name in stale:
            self.stale_pods.add(str(cached.pop(pod_name)["metadata"].get("uid") or ""))
            await self.delete_pod(namespace, pod_name)
        fresh = {**dict(body), "spec": {**(body.get("spec") or {}), "shutdown": None}}
        await self._launch(fresh, status)
        driver = self.drivers.get(uid)
        if driver is not None:
            driver.recreate |= set(stale)
            driver.dirty_nodes |= before | set(status.nodes)
            driver.dirty_workflow = True

    async def clear_annotation(self, namespace: str, name: str, key: str) -> None:
        with contextlib.suppress(ApiError):
            await self.api.merge_patch(
                _workflow_path(namespace, name), {"metadata": {"annotations": {key: None}}}
            )

    async def _configmaps(self, namespace: str) -> dict[str, dict[str, str]]:
        try:
            listed = await self.api.get(path_of("configmaps", namespace, group=""))
        except ApiError as exc:
            log.warning("cannot list configmaps in %s: %s", namespace, exc)
            return {}
        return {
            str(o["metadata"]["name"]): {k: str(v) for k, v in (o.get("data") or {}).items()}
            for o in listed.get("items") or ()
        }

    def _on_lock_release(self, _key: str) -> None:
        for driver in self.drivers.values():
            if driver.reconciler.lock_waiting:
                driver.wake.set()

    async def _ensure_claims(self, driver: Driver) -> str | None:
        """volumeClaimTemplates: one PVC per template, named ``<workflow>-<name>`` (as the core refers to
        them) and owned by the workflow. A create that finds the claim there already is fine."""
        for claim in driver.workflow.spec.volume_claim_templates:
            meta = dict(claim.get("metadata") or {})
            claim_name = f"{driver.name}-{meta.get('name', '')}"
            body: JSON = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    **meta,
                    "name": claim_name,
                    "namespace": driver.namespace,
                    "ownerReferences": [_owner_reference(driver)],
                },
                "spec": claim.get("spec") or {},
            }
            try:
                await self.api.create(path_of("persistentvolumeclaims", driver.namespace, group=""), body)
            except ApiError as exc:
                return f"could not create volume claim {claim_name}: {exc.api_message or exc}"
        return None

    def _release_claims(self, driver: Driver) -> None:
        """volumeClaimGC: claims go when the workflow ends (by default only when it succeeded)."""
        spec = driver.workflow.spec
        if not spec.volume_claim_templates:
            return
        strategy = (spec.volume_claim_gc or {}).get("strategy") or "OnWorkflowSuccess"
        if strategy != "OnWorkflowCompletion" and driver.status.phase != "Succeeded":
            return
        for claim in spec.volume_claim_templates:
            name = f"{driver.name}-{(claim.get('metadata') or {}).get('name', '')}"
            path = path_of("persistentvolumeclaims", driver.namespace, name, group="")
            self.spawn(self._delete_quietly(path))

    async def _delete_quietly(self, path: str) -> None:
        try:
            await self.api.delete(path)
        except ApiError as exc:
            log.warning("could not delete %s: %s", path, exc)

    def finished(self, driver: Driver, plan: Plan) -> None:
        self.drivers.pop(driver.uid, None)
        self.completed.add(driver.uid)
        self._release_claims(driver)
        info = self.workflows.get(driver.uid)
        if info is not None:
            info["phase"] = driver.status.phase
            info["finishedAt"] = N.rfc3339(driver.status.finished_at)
        self._cron_wake.set()
        ttl = driver.workflow.spec.ttl_strategy
        if ttl is not None:
            self.schedule_ttl(
                {
                    "metadata": {"namespace": driver.namespace, "name": driver.name, "uid": driver.uid},
                    "spec": {"ttlStrategy": ttl.dump()},
                    "status": {
                        "phase": driver.status.phase,
                        "finishedAt": N.rfc3339(driver.status.finished_at),
                    },
                }
            )

    # ------------------------------------------------------------------------------------------- pods

    async def on_pod(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        uid = _owner_uid(body, "Workflow")
        name = str((body.get("metadata") or {}).get("name") or "")
        if uid is None or not name:
            return
        deleted = event_type == "DELETED"
        pod_uid = str((body.get("metadata") or {}).get("uid") or "")
        if pod_uid in self.stale_pods:
            # A pod a retry deleted: its last states are no news for the rerun node.
            if deleted:
                self.stale_pods.discard(pod_uid)
            return
        if deleted:
            self.pods.get(uid, {}).pop(name, None)
        else:
            self.pods.setdefault(uid, {})[name] = dict(body)
        driver = self.drivers.get(uid)
        if driver is not None:
            driver.observe_pod(body, deleted=deleted)

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await self.api.delete(_pod_path(namespace, name))
        except ApiError as exc:
            log.warning("could not delete pod %s/%s: %s", namespace, name, exc)

    def collect_pods(self, driver: Driver, plan: Plan) -> None:
        """podGC: delete the pods the workflow's strategy lets go, after deleteDelayDuration."""
        gc = driver.workflow.spec.pod_gc
        if gc is None or not gc.strategy:
            return
        delay = duration_or(gc.delete_delay_duration, 0.0)
        doomed = pods_to_collect(driver.status, gc.strategy, plan.changed_nodes, finished=plan.finished)
        loop = asyncio.get_running_loop()
        for n in doomed:
            pod = driver.reconciler.pod_name_of(n)
            loop.call_later(delay, self._delete_later, driver.namespace, pod)

    def _delete_later(self, namespace: str, pod: str) -> None:
        self.spawn(self.delete_pod(namespace, pod))

    # -------------------------------------------------------------------------------------------- ttl

    def schedule_ttl(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        ttl = (body.get("spec") or {}).get("ttlStrategy") or {}
        status = body.get("status") or {}
        finished = podstate.parse_time(status.get("finishedAt"))
        if not ttl or finished is None:
            return
        key = "secondsAfterSuccess" if status.get("phase") == "Succeeded" else "secondsAfterFailure"
        secs = ttl.get(key, ttl.get("secondsAfterCompletion"))
        if secs is None:
            return
        uid = str(meta.get("uid") or "")
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        self._cancel_timer(uid)
        delay = max(0.0, finished + float(secs) - self.clock())
        self._timers[uid] = asyncio.get_running_loop().call_later(
            delay, lambda: self.spawn(self._expire(namespace, name, uid))
        )

    def _cancel_timer(self, uid: str) -> None:
        handle = self._timers.pop(uid, None)
        if handle is not None:
            handle.cancel()

    async def _expire(self, namespace: str, name: str, uid: str) -> None:
        self._timers.pop(uid, None)
        with contextlib.suppress(ApiError):
            await self.api.delete(_workflow_path(namespace, name))

    # ------------------------------------------------------------------------------------------- memo

    async def _load_memo(self, namespace: str, wf: Workflow) -> dict[str, dict[str, Any]]:
        """Memoization caches are ConfigMaps (as Argo's), each key one entry as JSON. The returned dict is
        shared by the namespace's workflows and updated as entries are saved."""
        names = {
            str(((t.memoize.cache or {}).get("configMap") or {}).get("name") or "")
            for t in wf.spec.templates
            if t.memoize is not None
        } - {""}
        memo = self._memo.setdefault(namespace, {})
        for cache in names - set(memo):
            cm = await self.api.get_or_none(path_of("configmaps", namespace, cache, group=""))
            entries: dict[str, Any] = {}
            for key, value in ((cm or {}).get("data") or {}).items():
                with contextlib.suppress(ValueError, TypeError):
                    entries[key] = json.loads(value)
            memo[cache] = entries
        return memo

    async def save_memo(self, namespace: str, action: SaveMemo) -> None:
        record = {
            "nodeID": action.node_id,
            "outputs": action.outputs,
            "creationTimestamp": N.rfc3339(self.clock()),
        }
        self._memo.setdefault(namespace, {}).setdefault(action.cache, {})[action.key] = record
        entry = json.dumps(record, separators=(",", ":"))
        path = path_of("configmaps", namespace, action.cache, group="")
        try:
            await self.api.merge_patch(path, {"data": {action.key: entry}})
        except ApiError as exc:
            if exc.status != 404:
                log.warning("could not save cache entry %s/%s: %s", action.cache, action.key, exc)
                return
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": action.cache,
                    "namespace": namespace,
                    "labels": {"workflows.argoproj.io/configmap-type": "Cache"},
                },
                "data": {action.key: entry},
            }
            with contextlib.suppress(ApiError):
                await self.api.create(path_of("configmaps", namespace, group=""), body)

    # ------------------------------------------------------------------------------------------- cron

    async def on_cron(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED":
            self.crons.pop(key, None)
        elif self.ours(body):
            self.crons[key] = dict(body)
        self._cron_wake.set()

    async def cron_loop(self) -> None:
        while True:
            self._cron_wake.clear()
            next_at: float | None = None
            try:
                next_at = await self.cron_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cron pass failed")
            timeout = 60.0 if next_at is None else min(60.0, max(0.0, next_at - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cron_wake.wait(), timeout)

    async def cron_pass(self) -> float | None:
        earliest: float | None = None
        for (namespace, name), body in list(self.crons.items()):
            try:
                cron = CronWorkflow.parse(body)
            except SluiceError as exc:
                log.warning("CronWorkflow %s/%s: %s", namespace, name, exc)
                continue
            children = [
                cronlib.ChildRun(
                    name=str(w["name"]),
                    phase=str(w["phase"]),
                    finished_at=podstate.parse_time(w.get("finishedAt")),
                )
                for w in self.workflows.values()
                if w["namespace"] == namespace and w["labels"].get(cronlib.LABEL_CRON_WORKFLOW) == name
            ]
            requeue_at = await cronlib.run_cron(
                cron,
                status=cronlib.CronState.from_json(body.get("status") or {}),
                children=children,
                now=self.clock(),
                runtime=_CronRuntime(self, body),
                own_children=True,
            )
            earliest = cronlib.earlier(earliest, requeue_at)
        return earliest


class _CronRuntime:
    """The operator's side of :func:`engine.workflows.cron.run_cron` for one CronWorkflow, whose children
    are Workflow objects in its namespace."""

    def __init__(self, controller: Controller, body: JSON) -> None:
        self.controller = controller
        # The cached CronWorkflow: its status follows each write, so the next pass plans from it.
        self.body = body

    async def terminate_child(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self.controller.api.merge_patch(
                _workflow_path(namespace, name), {"spec": {"shutdown": "Terminate"}}
            )

    async def submit_child(self, start: cronlib.StartChild, manifest: JSON) -> str | None:
        instance_id = self.controller.settings.instance_id
        if instance_id:
            manifest["metadata"]["labels"][LABEL_INSTANCE] = instance_id
        # A 409 AlreadyExists (this fire time's run, created by an earlier pass) comes back as None.
        try:
            await self.controller.api.create(path_of("workflows", start.namespace), manifest)
        except ApiError as exc:
            return str(exc)
        return None

    async def delete_child(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self.controller.api.delete(_workflow_path(namespace, name))

    async def save_status(self, namespace: str, name: str, status: cronlib.CronState) -> None:
        try:
            await self.controller.api.merge_patch(
                path_of("cronworkflows", namespace, name, sub="status"),
                {"status": status.to_json(namespace=namespace)},
            )
        except ApiError as exc:
            log.warning("CronWorkflow %s/%s: could not write its status: %s", namespace, name, exc)
            return
        self.body["status"] = status.to_json(namespace=namespace)


__all__ = ["ANNOTATION_RESUME", "ANNOTATION_RETRY", "LABEL_WORKFLOW", "Controller", "Driver"]
