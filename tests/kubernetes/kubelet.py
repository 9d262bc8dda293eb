"""The tests' kubelet: runs the pods created in the tests' API server for real, as local processes.

No cluster exists in the test suite, so nothing would ever run the pods the operator creates in the
kmock API server (``tests/kubernetes/apiserver.py``). :class:`TestKubelet` does: it watches pods in all
namespaces and runs each new one once, the way a node with ``restartPolicy: Never`` would, reporting
through ``pods/{name}/status`` and the log side channel. The ``kubelet`` fixture
(``tests/kubernetes/conftest.py``) gives a started one per test; the Kubernetes runtime's tests use it.

What a pod gets
    Init containers one after another (a non-zero exit fails the pod), then every regular container at
    once; phase ``Pending`` → ``Running`` → ``Succeeded`` / ``Failed``, complete container statuses,
    ``startTime``, ``podIP``/``hostIP`` 127.0.0.1 and the usual conditions. Each container's stdout and
    stderr, interleaved, are its log (``GET pods/{name}/log?container=X``), uploaded while it runs and
    in full before its terminated state is reported. Past ``activeDeadlineSeconds`` (counted from
    ``startTime``, and re-armed when the field is lowered on a running pod) and when it is deleted,
    the pod is stopped with SIGTERM, then SIGKILL after ``terminationGracePeriodSeconds`` (10 s when
    unset); past its deadline it ends ``Failed`` with reason ``DeadlineExceeded``.

How a container runs
    As a host process under bubblewrap: the host's root (images are not pulled; commands run with the
    host's tools, as in the embedded runtime), a private ``/tmp`` (with the repository, the Python
    prefix, the PATH prefix and :meth:`TestKubelet.share`'d paths bound back when they live there),
    its own PID namespace, and each volume mount bound at its ``mountPath`` (``subPath``, ``readOnly``).
    ``emptyDir`` is a directory per pod, ``persistentVolumeClaim`` one per namespace/claim shared by
    pods, ``configMap`` / ``secret`` files written from the API objects, ``hostPath`` the host path.
    The environment is the container's ``env`` / ``envFrom`` (downward API, config map and secret
    keys), ``HOSTNAME``, ``HOME``, a PATH of the configured prefix plus the standard directories, and
    ``extra_env`` (what an image's own ``ENV`` would give). The command is ``command + args``; without
    ``command`` the image table supplies the entrypoint, and when it cannot, the container fails to
    start (exit code 128, reason ``StartError``), as when its program cannot be executed. A file of
    its own is bound at its ``terminationMessagePath`` (``/dev/termination-log`` when unset); what the
    container wrote there (up to 4 kB) is its terminated state's ``message``.

Where it differs from a node
    Every pod is run as ``restartPolicy: Never`` (the operator creates no other); nothing is scheduled
    (``spec.nodeName`` stays as created); resources and probes are not enforced; a missing config map
    or secret keeps the container waiting and is retried every second. Mount points that do not exist
    on the host are created there by bubblewrap (its root is the host's) and removed by
    :meth:`TestKubelet.stop`, except the termination message's mount point (``/dev/termination-log``),
    which stays for the other kubelets of this machine.

Failure injection (:meth:`TestKubelet.fail_next`): ``OOMKilled`` (main's sandbox is killed as a
container-wide OOM kill on cgroup v2 does: every process of the container, ``sluice-run`` included, so
it records no exit code; exit 137 reason ``OOMKilled``; the other containers run on), ``ImagePullBackOff``
(init containers run, then main waits with that reason and nothing else starts), ``Evicted`` (once
running, every container is killed; phase ``Failed``, reason ``Evicted``), ``hold`` (the pod stays
Pending, nothing runs, until :meth:`TestKubelet.release`).

Runs in a thread of its own with its own event loop, so sync and async tests use it alike; its public
methods may be called from any thread.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import os
import posixpath
import pwd
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from engine.runtime.images import ImageTable
from engine.runtime.local import isolation
from engine.runtime.local.executor import expand_vars
from engine.workflows.nodes import rfc3339
from tests.kubernetes.apiserver import REPO, ApiError, ApiServer, container_status

Failure = Literal["OOMKilled", "ImagePullBackOff", "Evicted", "hold"]
FAILURES: tuple[Failure, ...] = ("OOMKilled", "ImagePullBackOff", "Evicted", "hold")

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POD_IP = "127.0.0.1"
NODE_NAME = "sluice-test-node"
# Kubernetes' default is 30 s. Shorter here, but long enough for a stopped step's wait container to
# start Python and report on a busy machine.
DEFAULT_GRACE_SECONDS = 10.0
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
EVICTED_MESSAGE = "The node was low on resource: memory."
RETRY_SECONDS = 1.0  # how often a container waiting for a config map or secret tries again
LOG_UPLOAD_SECONDS = 1.0  # how often the logs of running containers are uploaded
KILLED = 128 + signal.SIGKILL
TERMINATION_MESSAGE_PATH = "/dev/termination-log"  # Kubernetes' default terminationMessagePath
TERMINATION_MESSAGE_LIMIT = 4096  # bytes of it a kubelet reports

Body = dict[str, Any]


def kubelet_unavailable_reason() -> str | None:
    """Why pods cannot run here (no usable bubblewrap), or None when they can."""
    if "bwrap" in isolation.available_modes():
        return None
    why = isolation.unavailable_reasons().get("bwrap", "bwrap is not usable")
    return f"the test kubelet runs containers under bubblewrap: {why}"


class KubeletUnavailable(RuntimeError):
    """This machine cannot run the test kubelet; the message says why."""


def wait_for_pod(
    api: ApiServer,
    namespace: str,
    name: str,
    condition: Callable[[Body], bool],
    *,
    timeout: float = 30,
    what: str = "the expected state",
) -> Body:
    """Poll the pod until ``condition(pod)`` holds; its last state is in the assertion message if not."""
    deadline = time.monotonic() + timeout
    pod: Body | None = None
    while True:
        with contextlib.suppress(ApiError):
            pod = api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
            if pod is not None and condition(pod):
                return pod
        if time.monotonic() > deadline:
            status = json.dumps((pod or {}).get("status"), indent=1)
            raise AssertionError(f"pod {namespace}/{name} did not reach {what} in {timeout}s: {status}")
        time.sleep(0.05)


def pod_phase_is(*phases: str) -> Callable[[Body], bool]:
    return lambda pod: (pod.get("status") or {}).get("phase") in phases


# --------------------------------------------------------------------------------------------- records


class _NotReady(Exception):
    """What a container needs from the API (a config map, a secret key) is not there yet."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _StartError(Exception):
    """The container cannot be started at all (no command known, a bad subPath)."""


class _PodGone(Exception):
    """The pod was deleted while the kubelet was writing to it."""


@dataclass(eq=False)
class _Container:
    spec: Mapping[str, Any]
    init: bool
    log_path: Path
    state: Literal["waiting", "running", "terminated"] = "waiting"
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    process: asyncio.subprocess.Process | None = None
    oom: bool = False
    log_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    log_size: int = -1

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or "")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def status(self, uid: str) -> Body:
        started = rfc3339(self.started_at)
        return container_status(
            self.name,
            image=str(self.spec.get("image") or ""),
            running=self.state == "running",
            exit_code=self.exit_code if self.state == "terminated" else None,
            reason=self.reason,
            message=self.message,
            started_at=started,
            finished_at=rfc3339(self.finished_at),
            container_id=f"containerd://{uid[:8]}-{self.name}",
        )


@dataclass(eq=False)
class _PodRun:
    pod: Body
    dir: Path
    inits: list[_Container]
    mains: list[_Container]
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    report_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    held: asyncio.Event | None = None
    start_time: float | None = None
    phase: str = "Pending"
    reason: str | None = None  # status.reason / status.message when the kubelet ended the pod itself
    message: str | None = None
    stopping: bool = False
    gone: bool = False  # deleted from the API: nothing more is written
    finished: bool = False
    conditions: dict[str, tuple[str, float]] = field(default_factory=dict)
    volumes: dict[str, Path] = field(default_factory=dict)
    deadline_timer: asyncio.TimerHandle | None = None
    kill_timer: asyncio.TimerHandle | None = None

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def spec(self) -> Mapping[str, Any]:
        spec: Mapping[str, Any] = self.pod.get("spec") or {}
        return spec

    def containers(self) -> list[_Container]:
        return [*self.inits, *self.mains]

    def target(self) -> _Container | None:
        """The container a failure injection hits: ``main``, else the first regular one."""
        named = [c for c in self.mains if c.name == "main"] or self.mains
        return named[0] if named else None

    def waiting_reason(self, c: _Container) -> str:
        return "PodInitializing" if c.init or self.inits else "ContainerCreating"


# ------------------------------------------------------------------------------------------ the kubelet


def _child_watcher_for_any_loop() -> None:
    """On Python 3.11 subprocesses of every loop share one child watcher. An embedded engine that ran in
    this process earlier leaves a pidfd watcher bound to its own, now closed, loop; this thread's loop
    could then start no process. A threaded watcher serves any loop."""
    if sys.version_info >= (3, 12):
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        current = policy.get_child_watcher()
        if not isinstance(current, asyncio.ThreadedChildWatcher):
            policy.set_child_watcher(asyncio.ThreadedChildWatcher())


class TestKubelet:
    """Runs the pods of ``api`` under ``workdir`` (pod directories, claims, logs).

    ``path_prefix`` goes in front of the standard PATH of every container (the venv's bin so ``sluice``
    resolves, a shims directory); ``extra_env`` is added to every container's environment and may be
    changed between pods (read when each container starts); ``images`` supplies entrypoints; ``shared``
    host paths under ``/tmp`` stay visible in containers (see :meth:`share`). Each watch request lasts
    ``watch_seconds``; the next one resumes from the last resourceVersion seen.
    """

    __test__ = False  # a helper, not a test class, despite its name

    def __init__(
        self,
        api: ApiServer,
        workdir: Path,
        *,
        path_prefix: Sequence[str | os.PathLike[str]] = (),
        extra_env: Mapping[str, str] | None = None,
        images: ImageTable | None = None,
        shared: Iterable[str | os.PathLike[str]] = (),
        watch_seconds: int = 60,
    ) -> None:
        self.api = api
        self.workdir = Path(workdir)
        self.path_prefix = [os.fspath(p) for p in path_prefix]
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.images = images or ImageTable()
        self.started: list[str] = []  # pod names, in the order the kubelet started running them
        self.errors: list[str] = []  # the kubelet's own failures (tracebacks): a test should see none
        self.watch_streams = 0  # watch requests made: each after the first resumes from a resourceVersion
        self._shared = [os.fspath(p) for p in shared]
        self._watch_seconds = watch_seconds
        self._failures: list[tuple[re.Pattern[str], Failure]] = []
        self._lock = threading.Lock()
        self._runs: dict[str, _PodRun] = {}  # by pod uid
        self._made: set[str] = set()  # host paths that bwrap creates as mount points
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._calls: concurrent.futures.ThreadPoolExecutor | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        self._bwrap = shutil.which("bwrap") or "bwrap"

    # -- the test's side ------------------------------------------------------------------------

    def start(self, timeout: float = 15) -> TestKubelet:
        """Start the kubelet; returns once it has listed the pods (so it sees every pod created after)."""
        reason = kubelet_unavailable_reason()
        if reason:
            raise KubeletUnavailable(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._calls = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="kubelet-api")
        _child_watcher_for_any_loop()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-kubelet", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._begin(), self._loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15) -> None:
        """Kill every process of every pod, stop watching, and remove the mount points it created."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._end(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None
            if self._calls is not None:
                self._calls.shutdown(wait=False, cancel_futures=True)
            self._remove_mount_points()

    async def aclose(self) -> None:
        """:meth:`stop` for async tests, without blocking their event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def __enter__(self) -> TestKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, pod_name_regex: str, how: Failure) -> None:
        """Make the next new pod whose name matches (``re.search``) fail as ``how`` says (see the module)."""
        if how not in FAILURES:
            raise ValueError(f"unknown failure {how!r}: one of {', '.join(FAILURES)}")
        with self._lock:
            self._failures.append((re.compile(pod_name_regex), how))

    @property
    def held(self) -> list[str]:
        """Names of the pods kept Pending by a ``hold`` injection."""
        with self._lock:
            runs = list(self._runs.values())
        return sorted(r.name for r in runs if r.held is not None and not r.held.is_set())

    def release(self, pod_name_regex: str = "") -> list[str]:
        """Let the held pods whose names match run now; returns their names."""
        pattern = re.compile(pod_name_regex)
        names = [n for n in self.held if pattern.search(n)]
        loop = self._loop
        with self._lock:
            runs = list(self._runs.values())
        if loop is not None:
            for run in runs:
                if run.held is not None and run.name in names:
                    loop.call_soon_threadsafe(run.held.set)
        return names

    def share(self, path: str | os.PathLike[str]) -> None:
        """Make a host path under ``/tmp`` visible to containers started from now on (at the same path)."""
        self._shared.append(os.fspath(path))

    # -- watching -------------------------------------------------------------------------------

    async def _begin(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        rv = await self._relist()
        self._watch = asyncio.get_running_loop().create_task(self._watch_pods(rv))

    async def _end(self) -> None:
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        runs = list(self._runs.values())
        for run in runs:
            run.gone = True  # the test is over: report nothing more
            self._abort(run, grace=0)
        tasks = [r.task for r in runs if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for run in runs:
            self._kill_all(run)
        if self._session is not None:
            await self._session.close()

    async def _relist(self) -> str:
        assert self._session is not None
        async with self._session.get(f"{self.api.url}/api/v1/pods") as response:
            response.raise_for_status()
            listing = await response.json()
        seen = set()
        for pod in listing.get("items") or ():
            seen.add(pod["metadata"]["uid"])
            self._observe(pod)
        for uid, run in list(self._runs.items()):
            if uid not in seen:
                self._deleted(run)
        return str(listing["metadata"]["resourceVersion"])

    async def _watch_pods(self, rv: str) -> None:
        """Follow pod events from ``rv`` for ever: resume where a stream ended, re-list when told 410."""
        assert self._session is not None
        while True:
            try:
                params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": str(self._watch_seconds)}
                async with self._session.get(f"{self.api.url}/api/v1/pods", params=params) as response:
                    self.watch_streams += 1
                    if response.status == 410:
                        rv = await self._relist()
                        continue
                    response.raise_for_status()
                    buffer = b""
                    # Lines are read by hand: aiohttp's line reader caps a line at 64 kB, a pod may be more.
                    async for chunk in response.content.iter_any():
                        buffer += chunk
                        while b"\n" in buffer:
                            line, buffer = buffer.split(b"\n", 1)
                            if line.strip():
                                rv = await self._on_event(json.loads(line), rv)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError):
                await asyncio.sleep(0.2)  # the server restarts or resets: resume (or re-list on 410)
            except Exception:
                self.errors.append(f"watching pods: {traceback.format_exc()}")
                await asyncio.sleep(0.2)

    async def _on_event(self, event: Body, rv: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            return await self._relist() if obj.get("code") == 410 else rv
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
        if kind in ("ADDED", "MODIFIED"):
            self._observe(obj)
        elif kind == "DELETED":
            run = self._runs.get(obj["metadata"]["uid"])
            if run is not None:
                self._deleted(run)
        return new_rv

    def _observe(self, pod: Body) -> None:
        meta = pod["metadata"]
        run = self._runs.get(meta["uid"])
        if run is not None:
            deadline = run.spec.get("activeDeadlineSeconds")
            run.pod = pod
            if meta.get("deletionTimestamp") and not run.stopping:
                self._abort(run, grace=self._grace(run))
            elif run.spec.get("activeDeadlineSeconds") != deadline and run.start_time is not None:
                self._arm_deadline(run)
            return
        if self._closing or meta.get("deletionTimestamp"):
            return
        if (pod.get("status") or {}).get("phase") not in (None, "", "Pending"):
            return  # run by a kubelet before this one
        run = self._new_run(pod)
        with self._lock:
            self._runs[run.uid] = run
        run.task = asyncio.get_running_loop().create_task(self._run(run), name=f"pod {run.name}")

    def _deleted(self, run: _PodRun) -> None:
        run.gone = True
        if not run.stopping:
            self._abort(run, grace=self._grace(run))
        if run.task is None or run.task.done():
            self._forget(run)

    def _forget(self, run: _PodRun) -> None:
        """The pod is gone and nothing of it runs: its volumes go, as a kubelet cleans up (logs stay)."""
        with self._lock:
            self._runs.pop(run.uid, None)
        shutil.rmtree(run.dir / "volumes", ignore_errors=True)

    @staticmethod
    def _grace(run: _PodRun) -> float:
        value = run.spec.get("terminationGracePeriodSeconds")
        return float(value) if isinstance(value, int | float) else DEFAULT_GRACE_SECONDS

    def _new_run(self, pod: Body) -> _PodRun:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        directory = self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        (directory / "logs").mkdir(parents=True, exist_ok=True)

        def records(group: str, init: bool) -> list[_Container]:
            return [
                _Container(spec=c, init=init, log_path=directory / "logs" / f"{c.get('name')}.log")
                for c in spec.get(group) or ()
            ]

        run = _PodRun(
            pod=pod, dir=directory, inits=records("initContainers", True), mains=records("containers", False)
        )
        for c in run.containers():
            c.reason = run.waiting_reason(c)
        return run

    def _take_failure(self, name: str) -> Failure | None:
        with self._lock:
            for i, (pattern, how) in enumerate(self._failures):
                if pattern.search(name):
                    del self._failures[i]
                    return how
        return None

    # -- one pod --------------------------------------------------------------------------------

    async def _run(self, run: _PodRun) -> None:
        uploader = asyncio.get_running_loop().create_task(self._upload_logs_while_running(run))
        try:
            await self._lifecycle(run)
        except _PodGone:
            run.gone = True
        except asyncio.CancelledError:
            raise
        except Exception:
            self.errors.append(f"pod {run.namespace}/{run.name}: {traceback.format_exc()}")
        finally:
            uploader.cancel()
            self._kill_all(run)
            for c in run.containers():
                if c.process is not None and c.process.returncode is None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(c.process.wait(), 5)
            for timer in (run.deadline_timer, run.kill_timer):
                if timer is not None:
                    timer.cancel()
            run.finished = True
            if run.gone:
                self._forget(run)

    async def _lifecycle(self, run: _PodRun) -> None:
        how = self._take_failure(run.name)
        if how == "hold":
            run.held = asyncio.Event()
            await self._until(run, run.held)
            if run.stopping:
                return
        self.started.append(run.name)
        run.start_time = time.time()
        self._arm_deadline(run)
        await self._report(run)
        await self._prepare_volumes(run)
        for c in run.inits:
            if run.stopping:
                break
            await self._start(run, c)
            await self._finish(run, c)
            if c.exit_code != 0:
                run.stopping = True  # restartPolicy Never: a failed init container fails the pod
                break
        if not run.stopping:
            await self._run_mains(run, how)
        if run.gone:
            return
        # Stopped (deleted, past its deadline) before every container ran is a failure too.
        run.phase = _settled_phase(run) or "Failed"
        await self._report(run)

    async def _run_mains(self, run: _PodRun, how: Failure | None) -> None:
        target = run.target()
        if how == "ImagePullBackOff" and target is not None:
            image = str(target.spec.get("image") or "")
            target.reason, target.message = "ImagePullBackOff", f'Back-off pulling image "{image}"'
            await self._report(run)
            await self._until(run, run.stop_event)
            return
        # Started one after another as a kubelet does, reported once; one that waits for a config map
        # or secret does not hold up the others.
        waiting = [c for c in run.mains if not await self._try_start(run, c)]
        await self._report(run)
        if how == "OOMKilled" and target is not None and target.alive:
            target.oom = True
            self._kill_container(target)
        elif how == "Evicted":
            self._expire(run, "Evicted", EVICTED_MESSAGE)
        await asyncio.gather(
            *(self._start_and_finish(run, c) if c in waiting else self._finish(run, c) for c in run.mains)
        )

    async def _start_and_finish(self, run: _PodRun, c: _Container) -> None:
        await self._start(run, c)
        await self._finish(run, c)

    async def _until(self, run: _PodRun, event: asyncio.Event, *, timeout: float | None = None) -> None:
        """Wait for ``event``, or until the pod is stopped (deleted, past its deadline, evicted)."""
        waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(run.stop_event.wait())}
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _arm_deadline(self, run: _PodRun) -> None:
        """Stop the pod ``activeDeadlineSeconds`` after its start, gracefully, as the kubelet does."""
        if run.deadline_timer is not None:
            run.deadline_timer.cancel()
            run.deadline_timer = None
        deadline = run.spec.get("activeDeadlineSeconds")
        if run.start_time is None or not isinstance(deadline, int | float) or deadline <= 0:
            return
        delay = max(0.0, run.start_time + float(deadline) - time.time())
        assert self._loop is not None
        run.deadline_timer = self._loop.call_later(
            delay, self._expire, run, "DeadlineExceeded", DEADLINE_MESSAGE, self._grace(run)
        )

    def _expire(self, run: _PodRun, reason: str, message: str, grace: float = 0.0) -> None:
        """End the pod for ``reason`` (its status's reason and message once every container is dead)."""
        if run.finished or run.stopping:
            return
        run.reason, run.message = reason, message
        self._abort(run, grace=grace)
        if grace > 0:
            # A kubelet reports the pod Failed at once; its containers' ends follow as they stop.
            run.phase = "Failed"
            task = asyncio.get_running_loop().create_task(self._report_quietly(run))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def _report_quietly(self, run: _PodRun) -> None:
        with contextlib.suppress(_PodGone, ApiError):
            await self._report(run)

    def _abort(self, run: _PodRun, *, grace: float) -> None:
        """Stop the pod: nothing more starts; SIGTERM to the containers, SIGKILL after ``grace``."""
        run.stopping = True
        run.stop_event.set()
        if run.held is not None:
            run.held.set()
        if grace <= 0:
            self._kill_all(run)
            return
        for c in run.containers():
            if c.alive:
                assert c.process is not None
                for pid in _sandboxed_processes(c.process.pid):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGTERM)
        assert self._loop is not None
        run.kill_timer = self._loop.call_later(grace, self._kill_all, run)

    def _kill_all(self, run: _PodRun) -> None:
        for c in run.containers():
            self._kill_container(c)

    @staticmethod
    def _kill_container(c: _Container) -> None:
        """SIGKILL the sandbox first (so the exit code is 137, as for a killed container), then the rest."""
        if not c.alive:
            return
        assert c.process is not None
        inside = _descendants(c.process.pid)
        for pid in (c.process.pid, *inside):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    # -- status and logs ------------------------------------------------------------------------

    async def _report(self, run: _PodRun) -> None:
        """Write the pod's whole status (lists are replaced whole by the merge patch)."""
        if run.gone:
            return
        async with run.report_lock:
            status = self._status(run)
            try:
                await self._call(self.api.set_pod_status, run.namespace, run.name, status)
            except ApiError as exc:
                if exc.status == 404:
                    raise _PodGone from None
                raise

    def _status(self, run: _PodRun) -> Body:
        now = time.time()
        inits_done = all(c.state == "terminated" and c.exit_code == 0 for c in run.inits)
        running = bool(run.mains) and all(c.state == "running" for c in run.mains)
        if run.phase in ("Pending", "Running"):
            # The phase moves on in the same write as the last container's end, as a kubelet reports it.
            run.phase = _settled_phase(run) or (
                "Running" if inits_done and any(c.state != "waiting" for c in run.mains) else "Pending"
            )
        ended = run.phase in ("Succeeded", "Failed")
        wanted = {
            "PodScheduled": ("True", None),
            "Initialized": ("True", None) if inits_done else ("False", "ContainersNotInitialized"),
            "ContainersReady": ("True", None)
            if running
            else ("False", "PodCompleted" if ended else "ContainersNotReady"),
        }
        wanted["Ready"] = wanted["ContainersReady"]
        conditions = []
        for kind, (value, reason) in wanted.items():
            if run.conditions.get(kind, ("", 0.0))[0] != value:
                run.conditions[kind] = (value, now)
            condition = {
                "type": kind,
                "status": value,
                "lastTransitionTime": rfc3339(run.conditions[kind][1]),
            }
            if reason:
                condition["reason"] = reason
            conditions.append(condition)
        status: Body = {
            "phase": run.phase,
            "conditions": conditions,
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": rfc3339(run.start_time),
            "qosClass": "BestEffort",
            "initContainerStatuses": [c.status(run.uid) for c in run.inits],
            "containerStatuses": [c.status(run.uid) for c in run.mains],
        }
        if run.reason is not None and ended:
            status["reason"] = run.reason
            status["message"] = run.message
        return status

    async def _upload_log(self, run: _PodRun, c: _Container, *, final: bool = False) -> None:
        if run.gone:
            return
        async with c.log_lock:  # one upload at a time, each of the whole file: the last one is complete
            try:
                size = c.log_path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size == c.log_size and not final:
                return
            text = c.log_path.read_text(encoding="utf-8", errors="replace") if size else ""
            c.log_size = size
            try:
                await self._call(self.api.set_pod_log, run.namespace, run.name, text, container=c.name)
            except ApiError as exc:
                if exc.status == 404:
                    raise _PodGone from None
                raise

    async def _upload_logs_while_running(self, run: _PodRun) -> None:
        while True:
            await asyncio.sleep(LOG_UPLOAD_SECONDS)
            for c in run.containers():
                if c.state != "running":
                    continue
                try:
                    await self._upload_log(run, c)
                except _PodGone:
                    return
                except Exception:
                    self.errors.append(f"pod {run.namespace}/{run.name}: {traceback.format_exc()}")
                    return

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A blocking ``ApiServer`` call, off this loop (the server is another process)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._calls, lambda: fn(*args, **kwargs))

    # -- containers -----------------------------------------------------------------------------

    async def _start(self, run: _PodRun, c: _Container) -> None:
        """Start ``c`` and report it; while a config map or secret it needs is missing, it waits."""
        while not run.stopping:
            before = (c.reason, c.message)
            if await self._try_start(run, c):
                if c.state == "running":
                    await self._report(run)
                return
            if (c.reason, c.message) != before:
                await self._report(run)
            await self._until(run, asyncio.Event(), timeout=RETRY_SECONDS)

    async def _try_start(self, run: _PodRun, c: _Container) -> bool:
        """Spawn ``c``; False when it has to wait (its waiting reason says why). A spec that cannot
        start (no command known, a bad subPath) terminates it with StartError instead."""
        if run.stopping:
            return True
        try:
            argv, env, declared = await self._command(run, c)
            bwrap_args = self._sandbox(run, c, declared)
        except _NotReady as exc:
            c.reason, c.message = exc.reason, exc.message
            return False
        except _StartError as exc:
            self._terminate_record(c, 128, "StartError", str(exc), started=False)
            return True
        with open(c.log_path, "ab") as log:
            c.process = await asyncio.create_subprocess_exec(
                *bwrap_args,
                "--",
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        c.state, c.reason, c.message, c.started_at = "running", None, None, time.time()
        if run.stopping:
            self._kill_container(c)  # stopped while it was being spawned
        return True

    async def _finish(self, run: _PodRun, c: _Container) -> None:
        """Wait for ``c`` to exit, upload its whole log, then report it terminated (in that order: a
        reader that sees it terminated finds the complete log)."""
        if c.process is not None:
            code = await c.process.wait()
            # The whole log goes up before the terminated state is even recorded: another container's
            # report may be written meanwhile, and must not show this one ended with a partial log.
            with contextlib.suppress(_PodGone):
                await self._upload_log(run, c, final=True)
            exit_code = 128 - code if code < 0 else code
            reason, message = ("Completed" if exit_code == 0 else "Error"), _termination_message(run, c)
            if c.oom:
                reason = "OOMKilled"
            elif exit_code == 1:
                failed = _bwrap_failure(c.log_path)
                if failed is not None:
                    exit_code, reason, message = 128, "StartError", failed
            self._terminate_record(c, exit_code, reason, message)
        if c.state != "terminated":
            return  # never started: the pod was stopped first
        with contextlib.suppress(_PodGone):
            await self._upload_log(run, c, final=True)
        await self._report(run)

    @staticmethod
    def _terminate_record(
        c: _Container, code: int, reason: str, message: str | None, *, started: bool = True
    ) -> None:
        now = time.time()
        c.state, c.exit_code, c.reason, c.message = "terminated", code, reason, message
        if not started or c.started_at is None:
            c.started_at = now
        c.finished_at = now

    async def _command(self, run: _PodRun, c: _Container) -> tuple[list[str], dict[str, str], dict[str, str]]:
        """argv (Kubernetes' rule, ``$(VAR)`` expanded), the process environment, and the declared
        variables (what ``$(VAR)`` may name)."""
        env, declared = await self._environment(run, c)
        command = c.spec.get("command")
        args = c.spec.get("args")
        if command:
            argv = [str(a) for a in (*command, *(args or ()))]
        else:
            image = str(c.spec.get("image") or "")
            found = self.images.argv(image, [str(a) for a in args] if args is not None else None)
            if not found:
                raise _StartError(
                    f'image "{image}" has no entrypoint known to the test kubelet (no command given, and'
                    " the image table does not list it)"
                )
            argv = found
        return [expand_vars(a, declared) for a in argv], env, declared

    async def _environment(self, run: _PodRun, c: _Container) -> tuple[dict[str, str], dict[str, str]]:
        home = pwd.getpwuid(os.getuid()).pw_dir
        env = {"PATH": ":".join([*self.path_prefix, STANDARD_PATH]), "HOSTNAME": run.name, "HOME": home}
        env.update(self.extra_env)  # what an image's own ENV would set: the container's env wins
        declared: dict[str, str] = {}
        for source in c.spec.get("envFrom") or ():
            prefix = str(source.get("prefix") or "")
            for kind, ref in (
                ("configmaps", source.get("configMapRef")),
                ("secrets", source.get("secretRef")),
            ):
                if not isinstance(ref, Mapping):
                    continue
                data = await self._data(
                    run.namespace, kind, str(ref.get("name") or ""), bool(ref.get("optional"))
                )
                for key, raw in (data or {}).items():
                    declared[prefix + key] = raw.decode(errors="replace")
        for item in c.spec.get("env") or ():
            name = str(item.get("name") or "")
            source = item.get("valueFrom")
            if not source:
                declared[name] = expand_vars(str(item.get("value") or ""), declared)
                continue
            value = await self._value_from(run, c, name, source)
            if value is not None:
                declared[name] = value
        env.update(declared)
        return env, declared

    async def _value_from(
        self, run: _PodRun, c: _Container, var: str, source: Mapping[str, Any]
    ) -> str | None:
        for kind, ref_kind in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
            ref = source.get(ref_kind)
            if not isinstance(ref, Mapping):
                continue
            optional = bool(ref.get("optional"))
            obj, key = str(ref.get("name") or ""), str(ref.get("key") or "")
            data = await self._data(run.namespace, kind, obj, optional)
            if data is None:
                return None
            if key not in data:
                if optional:
                    return None
                raise _NotReady(
                    "CreateContainerConfigError",
                    f"couldn't find key {key} in {kind[:-1]} {run.namespace}/{obj}",
                )
            return data[key].decode(errors="replace")
        field_ref = source.get("fieldRef")
        if isinstance(field_ref, Mapping):
            return self._field(run, str(field_ref.get("fieldPath") or ""), var)
        # resourceFieldRef: no requests or limits are enforced here, so any number would be made up;
        # the variable is left unset rather than given a value no node would report.
        return None

    @staticmethod
    def _field(run: _PodRun, path: str, var: str) -> str:
        meta, spec = run.pod["metadata"], run.spec
        simple = {
            "metadata.name": run.name,
            "metadata.namespace": run.namespace,
            "metadata.uid": run.uid,
            "spec.nodeName": str(spec.get("nodeName") or NODE_NAME),
            "spec.serviceAccountName": str(spec.get("serviceAccountName") or "default"),
            "status.podIP": POD_IP,
            "status.podIPs": POD_IP,
            "status.hostIP": POD_IP,
            "status.hostIPs": POD_IP,
        }
        if path in simple:
            return simple[path]
        for kind in ("labels", "annotations"):
            values = meta.get(kind) or {}
            if path == f"metadata.{kind}":
                return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
            m = re.fullmatch(rf"metadata\.{kind}\['(.*)'\]", path)
            if m:
                return str(values.get(m.group(1), ""))
        raise _NotReady("CreateContainerConfigError", f"env {var}: unsupported fieldRef {path!r}")

    async def _data(self, namespace: str, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        """A config map's or secret's keys as bytes; None when it is absent and optional."""
        try:
            obj = await self._call(self.api.request, "GET", f"/api/v1/namespaces/{namespace}/{kind}/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            if optional:
                return None
            raise _NotReady("CreateContainerConfigError", f'{kind[:-1]} "{name}" not found') from None
        out: dict[str, bytes] = {}
        if kind == "secrets":
            out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
            # The API server turns stringData into data on write; this one stores it as given.
            out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        else:
            out.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
            out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    # -- volumes and the sandbox ----------------------------------------------------------------

    async def _prepare_volumes(self, run: _PodRun) -> None:
        """Each volume's host directory; a missing config map or secret keeps every container waiting."""
        while not run.stopping:
            try:
                for volume in run.spec.get("volumes") or ():
                    run.volumes[str(volume.get("name"))] = await self._volume(run, volume)
            except _NotReady as exc:
                for c in run.containers():
                    c.reason, c.message = "ContainerCreating", exc.message
                await self._report(run)
                await self._until(run, asyncio.Event(), timeout=RETRY_SECONDS)
                continue
            for c in run.containers():
                c.reason, c.message = run.waiting_reason(c), None
            return

    async def _volume(self, run: _PodRun, volume: Mapping[str, Any]) -> Path:
        name = str(volume.get("name") or "")
        own = run.dir / "volumes" / name
        if "emptyDir" in volume:
            own.mkdir(parents=True, exist_ok=True)
            return own
        if "persistentVolumeClaim" in volume:
            claim = str(volume["persistentVolumeClaim"].get("claimName") or "")
            shared = self.workdir / "claims" / run.namespace / claim
            shared.mkdir(parents=True, exist_ok=True)
            return shared
        if "hostPath" in volume:
            host = Path(str(volume["hostPath"].get("path") or ""))
            kind = volume["hostPath"].get("type") or ""
            if kind == "DirectoryOrCreate":
                host.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                host.parent.mkdir(parents=True, exist_ok=True)
                host.touch()
            return host
        for kind, key in (("configmaps", "configMap"), ("secrets", "secret")):
            source = volume.get(key)
            if not isinstance(source, Mapping):
                continue
            obj = str(source.get("name") or source.get("secretName") or "")
            data = await self._data(run.namespace, kind, obj, bool(source.get("optional")))
            own.mkdir(parents=True, exist_ok=True)
            mode = int(source.get("defaultMode") or 0o644)
            items = source.get("items") or [{"key": k, "path": k} for k in sorted(data or {})]
            for item in items:
                key = str(item.get("key"))
                if data is None:
                    break
                if key not in data:
                    if source.get("optional"):
                        continue
                    raise _NotReady("ContainerCreating", f'{kind[:-1]} "{obj}" has no key {key!r}')
                target = own / _relative(str(item.get("path") or key))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data[key])
                target.chmod(int(item.get("mode") or mode))
            return own
        raise _NotReady(
            "ContainerCreating", f"volume {name!r}: its kind is not supported by the test kubelet"
        )

    def _sandbox(self, run: _PodRun, c: _Container, declared: Mapping[str, str]) -> list[str]:
        """The bwrap options that give ``c`` its view: host root, private /tmp, its volume mounts."""
        args = [self._bwrap, "--dev-bind", "/", "/", "--tmpfs", "/tmp"]
        keep = {
            REPO,
            Path(sys.prefix),
            Path(sys.base_prefix),
            *map(Path, self.path_prefix),
            *map(Path, self._shared),
        }
        for path in sorted(str(p) for p in keep):
            if _under(path, "/tmp") and os.path.exists(path):
                args += ["--bind", path, path]
        args += ["--proc", "/proc", "--unshare-pid", "--die-with-parent"]
        mounted: list[str] = []
        message = _termination_file(run, c)
        message.parent.mkdir(parents=True, exist_ok=True)
        message.write_bytes(b"")
        path = posixpath.normpath(str(c.spec.get("terminationMessagePath") or TERMINATION_MESSAGE_PATH))
        args += ["--bind", str(message), _message_mount_point(path)]
        mounts = sorted(
            c.spec.get("volumeMounts") or (),
            key=lambda m: posixpath.normpath(str(m.get("mountPath"))).count("/"),
        )
        for mount in mounts:
            name = str(mount.get("name") or "")
            if name not in run.volumes:
                raise _StartError(f"volume mount {name!r}: the pod has no volume of that name")
            source = run.volumes[name]
            sub = str(mount.get("subPath") or "") or expand_vars(
                str(mount.get("subPathExpr") or ""), declared
            )
            if sub:
                source = source / _relative(sub)
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)  # as the kubelet does for a subPath
            dest = self._mount_point(posixpath.normpath(str(mount.get("mountPath") or "")), mounted)
            args += ["--ro-bind" if mount.get("readOnly") else "--bind", str(source), dest]
            mounted.append(dest)
        workdir = posixpath.normpath(str(c.spec.get("workingDir") or "/"))
        if workdir != "/":
            workdir = self._mount_point(workdir, mounted)
            args += ["--dir", workdir]  # a runtime creates a missing working directory
        args += ["--chdir", workdir]
        return args

    def _mount_point(self, path: str, mounted: Sequence[str]) -> str:
        """Where bwrap will find or create ``path``; a host directory it has to create is noted for
        removal. Symlinks on the host are resolved (bwrap refuses to create below one, as /var/run)."""
        if not path.startswith("/"):
            raise _StartError(f"{path!r} is not an absolute path")
        if _under(path, "/tmp") or any(_under(path, m) for m in mounted):
            return path  # inside the private /tmp or a volume: nothing on the host is touched
        resolved = os.path.realpath(path)
        missing = None
        probe = resolved
        while not os.path.lexists(probe):
            missing, probe = probe, posixpath.dirname(probe)
        if missing is not None:
            with self._lock:
                self._made.add(missing)
        return resolved

    def _remove_mount_points(self) -> None:
        """Remove what bwrap created on the host as mount points: empty directories and empty files."""
        with self._lock:
            made, self._made = sorted(self._made, key=len, reverse=True), set()
        for top in made:
            if os.path.isfile(top) and os.path.getsize(top) == 0:
                os.unlink(top)
                continue
            for root, _dirs, files in os.walk(top, topdown=False):
                for name in files:
                    path = os.path.join(root, name)
                    if os.path.getsize(path) == 0:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                with contextlib.suppress(OSError):
                    os.rmdir(root)


# ------------------------------------------------------------------------------------------- helpers


def _settled_phase(run: _PodRun) -> str | None:
    """Succeeded or Failed once nothing more will run (restartPolicy Never), else None."""
    if any(c.state == "terminated" and c.exit_code != 0 for c in run.inits):
        return "Failed"
    if not run.mains or any(c.state != "terminated" for c in run.mains):
        return None
    failed = run.reason is not None or any(c.exit_code != 0 for c in run.mains)
    return "Failed" if failed else "Succeeded"


def _termination_file(run: _PodRun, c: _Container) -> Path:
    """The host file bound at the container's terminationMessagePath."""
    return run.dir / "termination" / c.name


def _message_mount_point(path: str) -> str:
    """Where the termination message file is bound: on the host (outside the private /tmp) an empty
    file made here once and left in place. Every container, of every test kubelet on this machine,
    binds over the same ``/dev/termination-log``; removing it while another sandbox is being set up
    would keep that container from starting."""
    if not path.startswith("/"):
        raise _StartError(f"terminationMessagePath {path!r} is not an absolute path")
    if _under(path, "/tmp"):
        return path
    resolved = os.path.realpath(path)
    if not os.path.lexists(resolved):
        os.makedirs(os.path.dirname(resolved), exist_ok=True)
        with open(resolved, "ab"):
            pass
    return resolved


def _termination_message(run: _PodRun, c: _Container) -> str | None:
    try:
        with open(_termination_file(run, c), "rb") as f:
            data = f.read(TERMINATION_MESSAGE_LIMIT)
    except OSError:
        return None
    return data.decode(errors="replace") or None


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _relative(path: str) -> str:
    """A subPath or key path inside a volume: relative and never leaving it."""
    norm = posixpath.normpath(path)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise _StartError(f"{path!r} must be a relative path inside its volume")
    return norm


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        with contextlib.suppress(IndexError, ValueError):
            out.setdefault(int(fields[1]), []).append(int(entry))
    return out


def _descendants(pid: int) -> list[int]:
    children = _children()
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _sandboxed_processes(pid: int) -> list[int]:
    """The processes a container's stop signal goes to: the children of the sandbox's PID 1 (bwrap's
    init, itself the child of the outer bwrap ``pid``), i.e. the container's main process and any
    orphan it left, as a runtime signals the container's main process."""
    children = _children()
    return [p for init in children.get(pid, []) for p in children.get(init, [])]


def _bwrap_failure(log_path: Path) -> str | None:
    """The start failure bwrap reported (exit 1 and a ``bwrap: `` first line), in runc's words."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
    except OSError:
        return None
    if not first.startswith("bwrap: "):
        return None
    m = re.fullmatch(r"bwrap: execvp (.*): (.*)", first)
    if m is None:
        return first[len("bwrap: ") :]
    program, why = m.groups()
    if why == "No such file or directory" and "/" not in program:
        why = "executable file not found in $PATH"
    return f'exec: "{program}": {why[:1].lower()}{why[1:]}'


__all__ = [
    "DEADLINE_MESSAGE",
    "EVICTED_MESSAGE",
    "FAILURES",
    "KubeletUnavailable",
    "TestKubelet",
    "kubelet_unavailable_reason",
    "pod_phase_is",
    "wait_for_pod",
]
