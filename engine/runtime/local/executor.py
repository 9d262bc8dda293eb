"""The local runtime's step executor: every workflow step (an Argo "pod") is a real local process.

The local runtime's engine loop owns one :class:`LocalExecutor`; it calls ``start`` for each RunStep
action of a Plan, ``kill`` for each KillStep, ``close`` at shutdown and ``reap`` once at start-up
(for the process trees a SIGKILLed predecessor left behind). Observations flow back through the
``sink`` callable, on the loop thread: one ``Running`` outcome when the main process starts and
exactly one final outcome (``Succeeded``, ``Failed`` or ``Error``).

A pod becomes, under ``home/pods/<pod_name>/``::

    main.log, main.err        stdout / stderr of the main container (stdout is ``outputs.result``)
    <name>.log, <name>.err    the same for init containers, sidecars and containerSet containers
    pid                       one line per launched process: ``pid start-time marker container``
    root/                     the pod's private root: container ``/tmp`` and declared paths live
                              here; the default working directory
    volumes/<name>/           emptyDir, configMap and secret volumes (shared by the pod's containers)
    staging/                  input downloads and output archives while they are made

``persistentVolumeClaim`` volumes live in ``home/volumes/<claimName>/``; ``home/bin/`` holds
host stand-ins (``python`` <-> ``python3``, ``argosay``, ``cowsay``) that go last on a step's PATH.

Semantics are Argo's, in local form: ``command + args`` run without a shell (``$(VAR)`` expanded
from the container environment as Kubernetes does); a container without ``command`` runs its
image's entrypoint from :class:`~engine.runtime.images.ImageTable`; scripts run as
``command + args + [/argo/staging/script]``; exit 0 is Succeeded, non-zero Failed ("Error (exit
code N)"), anything that prevents running or collecting outputs is Error. How a step's processes
and paths are fenced in (bwrap, unshare, or a session with path rewriting) is
:mod:`engine.runtime.local.isolation`'s business; this module picks a mode per pod: the cheapest
(its own session, no wrapper process, no private paths) for a step that declares no paths and
mentions none outside the host's system directories, the strongest available otherwise.
``isolation="bwrap"|"unshare"|"session"`` forces one mode for every pod instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from engine.errors import ExecutorError, SluiceError, UnsupportedError
from engine.runtime.artifacts import load_input, pack_output
from engine.runtime.base import ArtifactRepository, ObjectLookup, StepExecutor
from engine.runtime.images import ImageTable
from engine.runtime.local import isolation as iso
from engine.runtime.local.isolation import MARKER_ENV, MODES, Mode, PathPlan
from engine.runtime.local.shims import install_shims
from engine.runtime.outputs import read_result
from engine.runtime.outputs import trim_one_newline as _trim_one_newline
from engine.workflows.plan import (
    DEADLINE_MESSAGE,
    ContainerOutcome,
    ContainerPhase,
    JSONDict,
    StepOutcome,
    StepRun,
)

log = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "Stopped: the local executor shut down"
# A stopped step's processes get SIGTERM and this long before SIGKILL, as a pod does by default.
DEFAULT_GRACE_SECONDS = 30.0
POD_IP = "127.0.0.1"  # local steps share the host's network: a daemon step is reached on loopback

_T = TypeVar("_T")


class _Stopped(Exception):
    """The pod was killed (``kill``/deadline/``close``) before its main container finished."""


@dataclass(slots=True)
class _Proc:
    name: str
    process: asyncio.subprocess.Process
    mode: Mode
    marker: str
    started_at: float
    killed: bool = False
    exit_code: int | None = None


@dataclass(slots=True)
class _Layout:
    """Where a pod lives and how its containers see paths (see iso.PathPlan)."""

    mode: Mode
    private: bool
    pod_dir: Path
    root: Path
    private_tops: frozenset[str] = frozenset()
    plans: dict[str, PathPlan] = field(default_factory=dict)
    binds: dict[str, list[tuple[str, str, bool]]] = field(default_factory=dict)

    def plan(self, name: str) -> PathPlan:
        return self.plans.get(name) or self.plans["main"]


class _Pod:
    __slots__ = (
        "argo_env",
        "final_sent",
        "inner",
        "procs",
        "started_at",
        "step",
        "stop_event",
        "stop_message",
        "task",
        "timer",
    )

    def __init__(self, step: StepRun) -> None:
        self.step = step
        self.task: asyncio.Task[None] | None = None
        self.stop_message: str | None = None
        self.stop_event: asyncio.Event | None = None  # created lazily: the fast path never waits on it
        self.procs: dict[str, _Proc] = {}
        self.started_at: float | None = None
        self.final_sent = False
        self.timer: asyncio.TimerHandle | None = None
        self.inner: asyncio.Future[Any] | None = None
        self.argo_env: dict[str, str] = {}


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a literal ``$``,
    undefined references and anything else stay as written."""
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end == -1:
                    out.append(text[i:])
                    break
                name = text[i + 2 : end]
                out.append(env[name] if name in env else text[i : end + 1])
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _exit_code(returncode: int) -> int:
    # A signal death is reported the way a container runtime does: 128 + signal number.
    return 128 - returncode if returncode < 0 else returncode


def _container_name(c: Mapping[str, Any], default: str) -> str:
    name = c.get("name")
    return str(name) if name else default


def _rfc3339(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalExecutor:
    """Runs leaf nodes as local process trees; implements ``engine.runtime.base.StepExecutor``."""

    def __init__(
        self,
        *,
        home: Path,
        sink: Callable[[StepOutcome], None],
        repository: ArtifactRepository,
        objects: ObjectLookup,
        images: ImageTable | None = None,
        isolation: str = "auto",
        extra_path: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._home = Path(home).absolute()
        self._pods_dir = self._home / "pods"
        self._pods_dir.mkdir(parents=True, exist_ok=True)
        self._bin = self._home / "bin"
        self._sink = sink
        self._repo = repository
        self._objects = objects
        self._clock = clock
        host_path = os.pathsep.join([*extra_path, os.environ.get("PATH") or os.defpath])
        install_shims(self._bin, host_path)
        self._path = f"{host_path}{os.pathsep}{self._bin}"
        self._images = images if images is not None else ImageTable.load(self._home / "images.yaml")

        available = iso.available_modes()
        self._forced: Mode | None = None
        if isolation != "auto":
            if isolation not in MODES:
                raise UnsupportedError(f"unknown isolation mode {isolation!r} (auto, {', '.join(MODES)})")
            forced: Mode = isolation  # narrowed by the MODES check
            if forced not in available:
                why = iso.unavailable_reasons().get(forced, "not available")
                raise UnsupportedError(f"isolation mode {forced!r} is not available here: {why}")
            self._forced = forced
        # The strongest mode for pods that need private paths; "session" is always last.
        self._private_mode: Mode = available[0]
        self._bwrap = shutil.which("bwrap") or "bwrap"
        self._unshare = shutil.which("unshare") or "unshare"
        self._shell = shutil.which("sh") or "/bin/sh"

        host_home = os.environ.get("HOME") or "/root"
        path_dirs = [p for p in self._path.split(os.pathsep) if p]
        self._system_tops = iso.host_system_tops(
            [self._home, sys.prefix, sys.base_prefix, sys.executable, host_home, *path_dirs]
        )
        # Host paths a step must still reach when they lie under a private top (a checkout, a home
        # or a PATH entry under /tmp): a sandbox binds them back, rewriting leaves them alone.
        self._reexpose = list(
            dict.fromkeys(
                [
                    str(self._bin),
                    *path_dirs,
                    host_home,
                    sys.prefix,
                    sys.base_prefix,
                    os.path.dirname(sys.executable),
                ]
            )
        )
        # Rewriting also leaves the engine's home alone: pod roots under it are already host paths.
        self._host_paths = tuple(
            sorted(
                {os.path.normpath(p) for p in (str(self._home), *self._reexpose) if iso.below_top(p)},
                key=len,
                reverse=True,
            )
        )
        base = {"PATH": self._path, "HOME": host_home}
        for key in ("LANG", "LC_ALL", "TZ"):
            if key in os.environ:
                base[key] = os.environ[key]
        self._base_env = base
        self._hostname = socket.gethostname()
        self._home_tag = iso.home_id(self._home)
        self._pods: dict[str, _Pod] = {}
        self._by_node: dict[str, _Pod] = {}
        self._sweep: list[tuple[str, int]] = []
        self._sweep_scheduled = False

    # ---------------------------------------------------------------------------------------------
    # StepExecutor

    @property
    def isolation(self) -> str:
        """``auto`` or the forced mode."""
        return self._forced or "auto"

    async def start(self, step: StepRun) -> None:
        """Launch ``step`` in the background; a pod name already running is a no-op."""
        if step.pod_name in self._pods:
            return
        pod = _Pod(step)
        self._pods[step.pod_name] = pod
        self._by_node[step.node_id] = pod
        pod.task = asyncio.get_running_loop().create_task(self._run(pod), name=f"step {step.pod_name}")

    async def kill(self, node_id: str, message: str) -> None:
        """Kill the node's whole process tree; its final outcome is Failed with ``message``."""
        pod = self._by_node.get(node_id)
        if pod is None:
            return
        self._stop(pod, message)
        if pod.task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(pod.task)

    async def close(self) -> None:
        """Kill every running step (each reports Failed) and wait for them to finish."""
        pods = list(self._pods.values())
        for pod in pods:
            self._stop(pod, SHUTDOWN_MESSAGE, graceful=False)
        tasks = [p.task for p in pods if p.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def running(self) -> set[str]:
        """Node ids of the steps that have not reported their final outcome yet."""
        return set(self._by_node)

    @staticmethod
    def reap(home: Path, pod_names: Iterable[str]) -> None:
        """Kill process trees left by a previous engine process of this ``home`` that was SIGKILLed."""
        killed = iso.reap(Path(home), pod_names)
        if killed:
            log.info("reaped %d orphaned step process(es)", killed)

    # ---------------------------------------------------------------------------------------------
    # pod lifecycle

    def _stop(self, pod: _Pod, message: str, *, graceful: bool = True) -> None:
        if pod.stop_message is not None or pod.final_sent:
            return
        pod.stop_message = message
        if pod.stop_event is not None:
            pod.stop_event.set()
        for proc in pod.procs.values():
            if graceful:
                self._terminate_tree(proc, _grace_seconds(pod.step))
            else:
                self._kill_tree(proc)
        if pod.inner is not None and not pod.inner.done():
            pod.inner.cancel()

    def _emit(self, outcome: StepOutcome) -> None:
        try:
            self._sink(outcome)
        except Exception:
            log.exception("outcome sink failed for node %s", outcome.node_id)

    def _running(self, pod: _Pod, started_at: float) -> None:
        if pod.started_at is None:
            pod.started_at = started_at
            self._emit(
                StepOutcome(
                    node_id=pod.step.node_id,
                    phase="Running",
                    started_at=started_at,
                    host_node_name=self._hostname,
                    pod_ip=POD_IP,
                )
            )

    def _outcome(
        self,
        pod: _Pod,
        phase: ContainerPhase,
        message: str = "",
        *,
        exit_code: int | None = None,
        result: str | None = None,
        parameters: tuple[tuple[str, str], ...] = (),
        artifacts: tuple[JSONDict, ...] = (),
        containers: tuple[ContainerOutcome, ...] = (),
    ) -> StepOutcome:
        return StepOutcome(
            node_id=pod.step.node_id,
            phase=phase,
            message=message,
            exit_code=exit_code,
            result=result,
            parameters=parameters,
            artifacts=artifacts,
            started_at=pod.started_at,
            finished_at=self._clock(),
            host_node_name=self._hostname,
            pod_ip=POD_IP,
            containers=containers,
        )

    async def _run(self, pod: _Pod) -> None:
        step = pod.step
        outcome: StepOutcome | None = None
        cancelled = False
        try:
            if step.deadline is not None:
                delay = step.deadline - self._clock()
                if delay <= 0:
                    self._stop(pod, DEADLINE_MESSAGE)
                else:
                    pod.timer = asyncio.get_running_loop().call_later(
                        delay, self._stop, pod, DEADLINE_MESSAGE
                    )
            if pod.stop_message is not None:
                raise _Stopped
            if step.kind in ("container", "script"):
                outcome = await self._run_pod(pod)
            elif step.kind == "containerSet":
                outcome = await self._run_container_set(pod)
            elif step.kind == "http":
                outcome = await self._run_http(pod)
            else:
                outcome = self._outcome(
                    pod, "Error", f"{step.kind} templates are not supported by the local runtime"
                )
        except _Stopped:
            outcome = None
        except asyncio.CancelledError:
            # The engine loop is going away under us: still report, then let the cancel through.
            cancelled = True
        except SluiceError as exc:
            outcome = self._outcome(pod, "Error", str(exc))
        except Exception as exc:
            log.exception("step %s failed inside the executor", step.pod_name)
            outcome = self._outcome(pod, "Error", f"executor error: {exc}")
        finally:
            if pod.timer is not None:
                pod.timer.cancel()
            for proc in pod.procs.values():
                if proc.exit_code is None:
                    self._kill_tree(proc)
            self._pods.pop(step.pod_name, None)
            self._by_node.pop(step.node_id, None)
        self._finish(pod, outcome)
        if cancelled:
            raise asyncio.CancelledError

    def _finish(self, pod: _Pod, outcome: StepOutcome | None) -> None:
        if pod.final_sent:
            return
        if outcome is None:
            outcome = self._outcome(pod, "Failed", pod.stop_message or SHUTDOWN_MESSAGE)
        pod.final_sent = True
        self._emit(outcome)

    async def _race(self, pod: _Pod, work: Awaitable[_T]) -> _T:
        """Await ``work`` unless the pod is stopped first (then raise _Stopped)."""
        fut = asyncio.ensure_future(work)
        if pod.stop_event is None:
            pod.stop_event = asyncio.Event()
            if pod.stop_message is not None:
                pod.stop_event.set()
        stopped = asyncio.ensure_future(pod.stop_event.wait())
        try:
            done, _ = await asyncio.wait({fut, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if fut in done:
            if fut.cancelled() and pod.stop_message is not None:
                raise _Stopped  # _stop cancelled the request itself
            return fut.result()
        fut.cancel()  # a thread keeps running to its end; its result is dropped
        raise _Stopped

    # ---------------------------------------------------------------------------------------------
    # layout

    def _layout(self, pod: _Pod, containers: Sequence[tuple[str, Mapping[str, Any]]]) -> _Layout:
        """Pick the isolation mode and compute private paths; creates the pod directory."""
        step = pod.step
        name = step.pod_name
        if not name or "/" in name or name in (".", ".."):
            raise ExecutorError(f"invalid pod name {name!r}")
        pod_dir = self._pods_dir / name
        root = pod_dir / "root"
        try:
            os.mkdir(pod_dir)
        except FileExistsError:
            self._clear_previous(pod_dir)
        os.mkdir(root)

        declared: list[str] = [str(a["path"]) for a in step.input_artifacts if a.get("path")]
        declared += [o.path for o in step.output_parameters]
        declared += [o.path for o in step.output_artifacts]
        mentioned: set[str] = set()
        kept = self._host_paths
        for _, c in containers:
            if c.get("workingDir"):
                declared.append(str(c["workingDir"]))
            for m in c.get("volumeMounts") or ():
                if m.get("mountPath"):
                    declared.append(str(m["mountPath"]))
            for s in (*(c.get("command") or ()), *(c.get("args") or ())):
                mentioned |= iso.mentioned_tops(str(s), kept)
            for e in c.get("env") or ():
                if "value" in e:
                    mentioned |= iso.mentioned_tops(str(e["value"]), kept)
        if step.script_source:
            mentioned |= iso.mentioned_tops(step.script_source, kept)
        system = self._system_tops
        strange = {t for t in mentioned if t not in system}
        private = bool(declared or step.volumes or strange or self._forced == "bwrap")
        mode: Mode = self._forced or (self._private_mode if private else "session")
        layout = _Layout(mode=mode, private=private, pod_dir=pod_dir, root=root)
        if not private:
            plan = PathPlan(root=root)
            layout.plans = {"main": plan}
            return layout

        declared_tops = {t for p in declared if p.startswith("/") and (t := iso.top_of(p))}
        if mode == "bwrap":
            tops = {"tmp"} | {t for t in declared_tops | strange if t not in system}
        else:
            # Rewriting mentioned-but-undeclared paths would corrupt text that merely looks like
            # a path (a sed address, a URL path); only /tmp and declared tops are rewritten.
            tops = {"tmp"} | {t for t in declared_tops if t not in system}
        layout.private_tops = frozenset(tops)
        return layout

    def _clear_previous(self, pod_dir: Path) -> None:
        """A pod name reused after an engine restart starts from an empty pod directory."""
        for child in ("root", "volumes", "staging"):
            shutil.rmtree(pod_dir / child, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (pod_dir / iso.PID_FILE).unlink()

    def _prepare(
        self,
        pod: _Pod,
        layout: _Layout,
        containers: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> None:
        """Volumes, private directories, per-container path plans, input artifacts (blocking I/O)."""
        step = pod.step
        root = layout.root
        mounted = layout.mode == "bwrap"
        system = self._system_tops
        volumes = {str(v.get("name")): v for v in step.volumes}
        made: dict[str, str] = {}

        for t in layout.private_tops:
            host = Path("/") / t
            if t == "tmp" or (host.is_dir() and not host.is_symlink()):
                # A container has /tmp, /mnt, /srv...: give the private root the same directories.
                (root / t).mkdir(exist_ok=True)
        (root / "tmp").chmod(0o1777)

        mounts_of: dict[str, dict[str, str]] = {}
        exact: set[str] = set()
        for name, c in containers:
            mounts: dict[str, str] = {}
            binds: list[tuple[str, str, bool]] = []
            for m in c.get("volumeMounts") or ():
                vname = str(m.get("name"))
                if vname not in volumes:
                    raise ExecutorError(f"container {name}: volumeMount {vname!r} names no volume")
                if vname not in made:
                    made[vname] = self._volume_dir(pod, layout, volumes[vname])
                host_dir = made[vname]
                if m.get("subPath"):
                    sub = os.path.normpath(str(m["subPath"]))
                    if sub.startswith(("/", "..")):
                        raise ExecutorError(f"container {name}: subPath {sub!r} must be relative")
                    host_dir = os.path.join(host_dir, sub)
                    os.makedirs(host_dir, exist_ok=True)
                mount_path = os.path.normpath(str(m["mountPath"]))
                mounts[mount_path] = host_dir
                if mounted and iso.bindable(mount_path, system):
                    binds.append((host_dir, mount_path, bool(m.get("readOnly"))))
            mounts_of[name] = mounts
            layout.binds[name] = binds
            # Declared paths under the host's system directories cannot get a private top-level
            # directory; they are rewritten one by one (unless a volume provides them).
            for p in self._declared_paths(step, c, name):
                under_mount = any(p == mp or p.startswith(mp.rstrip("/") + "/") for mp in mounts)
                if iso.top_of(p) in system and not under_mount:
                    exact.add(p)
        for name, _ in containers:
            layout.plans[name] = PathPlan.build(
                root,
                private_tops=layout.private_tops,
                exact=exact,
                mounts=mounts_of[name],
                mounted=mounted,
                system_tops=system,
                host_paths=self._host_paths,
            )

        if mounted:
            iso.ensure_root_links(root, layout.private_tops)
            back = [*self._reexpose, str(layout.pod_dir)]
            for name, _ in containers:
                unbound = [hd for mp, hd in layout.plans[name].mounts if not iso.bindable(mp, system)]
                for p in (*back, *unbound):
                    if iso.top_of(p) in layout.private_tops and iso.below_top(p) and os.path.exists(p):
                        layout.binds[name].append((p, p, False))
        else:
            # Let `ls /mnt` show a volume mounted at /mnt/vol: link it into the private root.
            for name, _ in containers:
                for mp, hd in layout.plans[name].mounts:
                    if iso.top_of(mp) in layout.private_tops:
                        link = Path(str(root) + mp)
                        link.parent.mkdir(parents=True, exist_ok=True)
                        with contextlib.suppress(FileExistsError):
                            link.symlink_to(hd)

        for name, c in containers:
            if c.get("workingDir"):
                layout.plans[name].host_path(str(c["workingDir"])).mkdir(parents=True, exist_ok=True)

        main_plan = layout.plan("main")
        ns = step.namespace
        for i, art in enumerate(step.input_artifacts):
            if not art.get("path"):
                continue
            load_input(
                art,
                main_plan.host_path(str(art["path"])),
                staging=layout.pod_dir / "staging" / f"in-{i}",
                repository_get=self._repo.get,
                secret=lambda n, k: (self._objects.secret(ns, n) or {}).get(k),
            )

    @staticmethod
    def _declared_paths(step: StepRun, c: Mapping[str, Any], name: str) -> list[str]:
        out = [os.path.normpath(str(c["workingDir"]))] if c.get("workingDir") else []
        if name == "main":
            out += [os.path.normpath(str(a["path"])) for a in step.input_artifacts if a.get("path")]
            out += [os.path.normpath(o.path) for o in step.output_parameters]
            out += [os.path.normpath(o.path) for o in step.output_artifacts]
        return [p for p in out if p.startswith("/")]

    def _volume_dir(self, pod: _Pod, layout: _Layout, volume: Mapping[str, Any]) -> str:
        step = pod.step
        name = str(volume.get("name"))
        if "emptyDir" in volume:
            d = layout.pod_dir / "volumes" / name
            d.mkdir(parents=True, exist_ok=True)
            return str(d)
        if "persistentVolumeClaim" in volume:
            claim = str((volume["persistentVolumeClaim"] or {}).get("claimName") or "")
            if not claim or "/" in claim or claim in (".", ".."):
                raise ExecutorError(f"volume {name}: invalid claimName {claim!r}")
            d = self._home / "volumes" / claim
            d.mkdir(parents=True, exist_ok=True)
            return str(d)
        if "hostPath" in volume:
            spec = volume["hostPath"] or {}
            path = str(spec.get("path") or "")
            if not path.startswith("/"):
                raise ExecutorError(f"volume {name}: hostPath.path must be absolute")
            if spec.get("type") == "DirectoryOrCreate":
                os.makedirs(path, exist_ok=True)
            return path
        for kind, ref_key, getter in (
            ("configMap", "name", self._objects.configmap),
            ("secret", "secretName", self._objects.secret),
        ):
            if kind not in volume:
                continue
            spec = volume[kind] or {}
            obj_name = str(spec.get(ref_key) or "")
            data = getter(step.namespace, obj_name)
            d = layout.pod_dir / "volumes" / name
            d.mkdir(parents=True, exist_ok=True)
            if data is None:
                if spec.get("optional"):
                    return str(d)
                raise ExecutorError(f'{kind} "{obj_name}" not found (volume {name})')
            default_mode = int(spec.get("defaultMode", 0o644))
            items = spec.get("items")
            pairs = (
                [(str(i["key"]), str(i.get("path") or i["key"]), i.get("mode")) for i in items]
                if items
                else [(k, k, None) for k in data]
            )
            for key, rel, mode in pairs:
                if key not in data:
                    if spec.get("optional"):
                        continue
                    raise ExecutorError(f'{kind} "{obj_name}" has no key {key!r} (volume {name})')
                rel = os.path.normpath(rel)
                if rel.startswith(("/", "..")):
                    raise ExecutorError(f"volume {name}: item path {rel!r} must be relative")
                f = d / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(data[key], encoding="utf-8")
                f.chmod(int(mode) if mode is not None else default_mode)
            return str(d)
        kinds = sorted(k for k in volume if k != "name")
        raise UnsupportedError(
            f"volume {name}: {', '.join(kinds) or 'this'} volumes are not supported locally"
        )

    # ---------------------------------------------------------------------------------------------
    # environment and command

    def _argo_env(self, step: StepRun) -> dict[str, str]:
        env = {
            "ARGO_POD_NAME": step.pod_name,
            "ARGO_NODE_ID": step.node_id,
            "ARGO_WORKFLOW_NAME": step.workflow_name,
            "ARGO_WORKFLOW_UID": step.workflow_uid,
            # Argo passes the template as JSON; the local runtime only has its name.
            "ARGO_TEMPLATE": json.dumps({"name": step.template_name}, separators=(",", ":")),
            "ARGO_INCLUDE_SCRIPT_OUTPUT": "true" if step.capture_result else "false",
        }
        if step.deadline is not None:
            env["ARGO_DEADLINE"] = _rfc3339(step.deadline)
        return env

    def _env(
        self, pod: _Pod, c: Mapping[str, Any], name: str, marker: str, plan: PathPlan
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The process environment, and the variables ``$(VAR)`` may name.

        As on Kubernetes, ``$(VAR)`` sees only what the container declares (env, envFrom) and what the
        engine injects into every step (``ARGO_*``), never the host's own variables.
        """
        step = pod.step
        if not pod.argo_env:
            pod.argo_env = self._argo_env(step)
        declared = dict(pod.argo_env)
        declared["ARGO_CONTAINER_NAME"] = name
        env = dict(self._base_env)
        env.update(declared)
        env[MARKER_ENV] = marker
        env_from = c.get("envFrom")
        env_list = c.get("env")
        if not env_from and not env_list:
            return env, declared
        user: dict[str, str] = {}
        ns = step.namespace
        for src in env_from or ():
            prefix = str(src.get("prefix") or "")
            for kind, ref in (("configmap", src.get("configMapRef")), ("secret", src.get("secretRef"))):
                if not isinstance(ref, Mapping):
                    continue
                ref_name = str(ref.get("name") or "")
                data = (self._objects.configmap if kind == "configmap" else self._objects.secret)(
                    ns, ref_name
                )
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise ExecutorError(f'{kind} "{ref_name}" not found (envFrom of container {name})')
                for k, v in data.items():
                    user[prefix + k] = str(v)
        for item in env_list or ():
            var = str(item.get("name") or "")
            if not var:
                continue
            source = item.get("valueFrom")
            if not source:
                user[var] = expand_vars(str(item.get("value") or ""), {**declared, **user})
                continue
            value = self._value_from(pod, c, name, var, source)
            if value is not None:
                user[var] = value
        if plan.rewrites:
            user = {k: plan.rewrite(v) for k, v in user.items()}
        env.update(user)
        declared.update(user)
        return env, declared

    def _value_from(
        self, pod: _Pod, c: Mapping[str, Any], name: str, var: str, source: Mapping[str, Any]
    ) -> str | None:
        step = pod.step
        for kind, key in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
            ref = source.get(kind)
            if not isinstance(ref, Mapping):
                continue
            obj = str(ref.get("name") or "")
            data = (self._objects.configmap if key == "configmap" else self._objects.secret)(
                step.namespace, obj
            )
            k = str(ref.get("key") or "")
            if data is None or k not in data:
                if ref.get("optional"):
                    return None
                what = f'{key} "{obj}" not found' if data is None else f'{key} "{obj}" has no key {k!r}'
                raise ExecutorError(f"env {var} of container {name}: {what}")
            return str(data[k])
        field_ref = source.get("fieldRef")
        if isinstance(field_ref, Mapping):
            return self._field(step, str(field_ref.get("fieldPath") or ""), var)
        res = source.get("resourceFieldRef")
        if isinstance(res, Mapping):
            resource = str(res.get("resource") or "")
            kind_, _, what_ = resource.partition(".")
            value = ((c.get("resources") or {}).get(kind_) or {}).get(what_)
            if value is None and what_ == "cpu":
                value = os.cpu_count() or 1
            return str(value if value is not None else 0)
        raise ExecutorError(f"env {var} of container {name}: unsupported valueFrom {sorted(source)}")

    def _field(self, step: StepRun, path: str, var: str) -> str:
        meta = step.pod_metadata or {}
        simple = {
            "metadata.name": step.pod_name,
            "metadata.namespace": step.namespace,
            "metadata.uid": step.node_id,
            "spec.nodeName": self._hostname,
            "spec.serviceAccountName": str(step.pod_spec.get("serviceAccountName") or "default"),
            "status.podIP": POD_IP,
            "status.podIPs": POD_IP,
            "status.hostIP": POD_IP,
        }
        if path in simple:
            return simple[path]
        for kind in ("labels", "annotations"):
            prefix = f"metadata.{kind}['"
            if path.startswith(prefix) and path.endswith("']"):
                return str((meta.get(kind) or {}).get(path[len(prefix) : -2], ""))
        raise ExecutorError(f"env {var}: unsupported fieldRef {path!r}")

    def _argv(self, c: Mapping[str, Any], name: str) -> list[str]:
        command = c.get("command")
        args = c.get("args")
        if command:
            return [str(a) for a in (*command, *(args or ()))]
        image = str(c.get("image") or "")
        argv = self._images.argv(image, [str(a) for a in args] if args is not None else None)
        if not argv:
            raise ExecutorError(f"no command and no known entrypoint for image {image!r} (container {name})")
        return argv

    @staticmethod
    def _resolve(argv0: str, path: str, cwd: str, plan: PathPlan, mode: Mode, *, shown: str) -> str:
        """The host file ``argv0`` runs, or ExecutorError saying why it cannot start.

        ``shown`` is the command as the manifest wrote it (before any path rewriting).
        """
        if "/" in argv0:
            container_path = argv0 if argv0.startswith("/") else os.path.join(cwd, argv0)
            host = str(plan.host_path(container_path)) if mode == "bwrap" else container_path
            if not os.path.exists(host):
                raise ExecutorError(f'failed to start: exec: "{shown}": no such file or directory')
            if os.path.isdir(host) or not os.access(host, os.X_OK):
                raise ExecutorError(f'failed to start: exec: "{shown}": permission denied')
            return host
        found = _which(argv0, path)
        if found is None:
            raise ExecutorError(f'failed to start: exec: "{shown}": executable file not found in $PATH')
        return found

    # ---------------------------------------------------------------------------------------------
    # processes

    async def _spawn(
        self,
        pod: _Pod,
        layout: _Layout,
        c: Mapping[str, Any],
        name: str,
        *,
        script: str | None = None,
    ) -> _Proc:
        if pod.stop_message is not None:
            raise _Stopped
        plan = layout.plan(name)
        mode = layout.mode
        marker = iso.make_marker(self._home_tag, pod.step.pod_name, name)
        env, declared = self._env(pod, c, name, marker, plan)
        argv = [expand_vars(a, declared) for a in self._argv(c, name)]
        shown = argv[0]
        if plan.rewrites:
            argv = [plan.rewrite(a) for a in argv]
        if script is not None:
            argv.append(script)
        wd = c.get("workingDir")
        default_cwd = "/" if mode == "bwrap" else str(layout.root)
        cwd = plan.rewrite(os.path.normpath(str(wd))) if wd else default_cwd
        # Resolve before launching: inside a wrapper a missing program would look like exit 1/127.
        exe = self._resolve(argv[0], env.get("PATH", ""), cwd, plan, mode, shown=shown)

        executable: str | None = None
        if mode == "session":
            args, executable, run_cwd = argv, exe, cwd
        elif mode == "unshare":
            args, run_cwd = iso.unshare_argv(self._unshare, self._shell, argv), cwd
        else:
            # A probe runs in the main container's view of the pod.
            args = self._bwrap_argv(layout, layout.binds.get(name, layout.binds.get("main", [])), cwd, argv)
            run_cwd = str(layout.pod_dir)

        out = open(layout.pod_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            err = open(layout.pod_dir / f"{name}.err", "wb")  # noqa: SIM115
            try:
                process = await asyncio.create_subprocess_exec(
                    *args,
                    executable=executable,  # argv[0] stays as the manifest wrote it
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=run_cwd,
                    env=env,
                    start_new_session=True,
                )
            finally:
                err.close()
        except OSError as exc:
            why = (exc.strerror or str(exc)).lower()
            raise ExecutorError(f'failed to start: exec: "{shown}": {why} (container {name})') from exc
        finally:
            out.close()
        proc = _Proc(name=name, process=process, mode=mode, marker=marker, started_at=self._clock())
        pod.procs[name] = proc
        try:
            iso.record_launch(layout.pod_dir / iso.PID_FILE, pid=process.pid, marker=marker, container=name)
        except OSError:
            log.warning("could not record pid of %s/%s", pod.step.pod_name, name, exc_info=True)
        if pod.stop_message is not None:  # stopped while we were launching
            self._terminate_tree(proc, _grace_seconds(pod.step))
        return proc

    def _bwrap_argv(
        self, layout: _Layout, binds: Sequence[tuple[str, str, bool]], cwd: str, argv: Sequence[str]
    ) -> list[str]:
        out = iso.bwrap_argv(
            self._bwrap,
            root=layout.root,
            private_tops=layout.private_tops,
            binds=[(s, d) for s, d, ro in binds if not ro],
            chdir=cwd,
            argv=argv,
        )
        ro = [("--ro-bind", s, d) for s, d, r in binds if r]
        if ro:
            at = out.index("--chdir")
            out[at:at] = [x for triple in ro for x in triple]
        return out

    async def _wait(self, proc: _Proc) -> int:
        rc = await proc.process.wait()
        proc.exit_code = _exit_code(rc)
        self._end_tree(proc)
        return proc.exit_code

    def _end_tree(self, proc: _Proc) -> None:
        """The container's first process has exited: whatever it started goes with it.

        In a PID namespace the kernel already did this; in a session the group and the marker scan
        find the rest (``setsid`` escapees included).
        """
        if proc.mode == "session":
            iso.kill_group(proc.process.pid)
            # The /proc scan for escapees costs a few hundred microseconds: batch the scans of all
            # containers that ended in this loop turn, after their outcomes have been reported.
            self._sweep.append((proc.marker, proc.process.pid))
            if not self._sweep_scheduled:
                self._sweep_scheduled = True
                asyncio.get_running_loop().call_soon(self._sweep_escapees)

    def _sweep_escapees(self) -> None:
        self._sweep_scheduled = False
        batch, self._sweep = self._sweep, []
        if batch:
            iso.kill_marked([m for m, _ in batch], after_pid=min(pid for _, pid in batch))

    def _terminate_tree(self, proc: _Proc, grace: float) -> None:
        """Stop a container as the kubelet does: SIGTERM, then SIGKILL once ``grace`` seconds pass.

        What the command writes and prints until it ends is kept, and its exit code is its own (143
        for one that dies of the signal), so a stopped step reports what it would on Kubernetes."""
        proc.killed = True
        if proc.exit_code is not None:
            return
        iso.terminate_group(proc.process.pid, spare_leader=proc.mode != "session")
        asyncio.get_running_loop().call_later(grace, self._kill_tree, proc)

    def _kill_tree(self, proc: _Proc) -> None:
        proc.killed = True
        if proc.exit_code is not None:
            return  # already ended, and _end_tree took the rest
        # The process is our child and its exit has not been processed: its pid (and so its
        # process group id) is not free for reuse. It leads its own session, so it cannot have
        # left that group. (Not Process.kill(): Popen polls first, and a poll that reaps the child
        # races asyncio's child watcher, which then reports exit status 255.)
        iso.kill_group(proc.process.pid)
        if proc.mode == "session":
            iso.kill_marked([proc.marker], after_pid=proc.process.pid)

    # ---------------------------------------------------------------------------------------------
    # container and script pods

    def _write_script(self, layout: _Layout, source: str) -> str:
        path = layout.root / "argo" / "staging" / "script"
        path.parent.mkdir(parents=True, exist_ok=True)
        plan = layout.plan("main")
        path.write_text(plan.rewrite(source) if plan.rewrites else source, encoding="utf-8")
        path.chmod(0o755)
        return "/argo/staging/script" if layout.mode == "bwrap" else str(path)

    async def _run_pod(self, pod: _Pod) -> StepOutcome:
        step = pod.step
        main_mounts = list(step.container.get("volumeMounts") or ())
        # mirrorVolumeMounts: init containers and sidecars get the main container's mounts too (Argo).
        inits = [
            (
                _container_name(c, f"init-{i}"),
                _with_mounts(c, main_mounts) if c.get("mirrorVolumeMounts") else c,
            )
            for i, c in enumerate(step.init_containers)
        ]
        sides = [
            # mirrorVolumeMounts: the sidecar gets the main container's mounts too (Argo).
            (
                _container_name(c, f"sidecar-{i}"),
                _with_mounts(c, main_mounts) if c.get("mirrorVolumeMounts") else c,
            )
            for i, c in enumerate(step.sidecars)
        ]
        containers = [*inits, *sides, ("main", step.container)]
        layout = self._layout(pod, containers)
        if layout.private or step.input_artifacts:
            await self._race(pod, asyncio.to_thread(self._prepare, pod, layout, containers))
        script = None
        if step.kind == "script":
            script = self._write_script(layout, step.script_source or "")

        for name, c in inits:
            proc = await self._spawn(pod, layout, c, name)
            code = await self._wait(proc)
            if pod.stop_message is not None:
                raise _Stopped
            if code != 0:
                return self._outcome(pod, "Error", f"init container {name} failed with exit code {code}")

        sidecars: list[_Proc] = []
        for name, c in sides:
            sidecars.append(await self._spawn(pod, layout, c, name))
        watchers = [asyncio.ensure_future(self._wait(p)) for p in sidecars]

        main = await self._spawn(pod, layout, step.container, "main", script=script)
        ready: asyncio.Future[None] | None = None
        if step.daemon and step.container.get("readinessProbe"):
            # A daemon counts as up (and its dependents start) only once its probe passes, as in Argo.
            ready = asyncio.ensure_future(self._await_ready(pod, layout, main))
        else:
            self._running(pod, main.started_at)
        code = await self._wait(main)
        if ready is not None:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ready
        stopped = pod.stop_message

        sidecar_failure = ""
        for proc in sidecars:
            # Argo ignores a sidecar killed with 137/143; any other non-zero exit fails the pod.
            if proc.exit_code not in (None, 0, 137, 143) and not proc.killed:
                sidecar_failure = (
                    sidecar_failure or f"sidecar {proc.name} failed with exit code {proc.exit_code}"
                )
            if proc.exit_code is None:
                self._kill_tree(proc)
        if watchers:
            await asyncio.gather(*watchers, return_exceptions=True)

        if stopped is not None:
            phase: ContainerPhase = "Failed"
            message = stopped
        elif code == 0 and not sidecar_failure:
            phase, message = "Succeeded", ""
        else:
            phase = "Failed"
            message = f"Error (exit code {code})" if code != 0 else sidecar_failure
        return await self._collect(pod, layout, phase, message, code, stopped=stopped is not None)

    async def _await_ready(self, pod: _Pod, layout: _Layout, main: _Proc) -> None:
        probe = pod.step.container.get("readinessProbe") or {}
        # Kubernetes defaults to a 10 s period; local steps start in milliseconds, so poll each second.
        period = float(probe.get("periodSeconds") or 1)
        timeout = float(probe.get("timeoutSeconds") or 1)
        await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
        while main.process.returncode is None and pod.stop_message is None:
            try:
                ok = await asyncio.wait_for(self._probe_once(pod, layout, probe), timeout)
            except (TimeoutError, OSError, ExecutorError):
                ok = False
            if ok:
                self._running(pod, main.started_at)
                return
            await asyncio.sleep(period)

    async def _probe_once(self, pod: _Pod, layout: _Layout, probe: Mapping[str, Any]) -> bool:
        main = pod.step.container
        if "exec" in probe:
            c = {
                "name": "readiness",
                "image": main.get("image"),
                "command": list((probe.get("exec") or {}).get("command") or []),
                "env": list(main.get("env") or []),
                "volumeMounts": list(main.get("volumeMounts") or []),
            }
            proc = await self._spawn(pod, layout, c, "readiness")
            try:
                return await self._wait(proc) == 0
            finally:
                pod.procs.pop("readiness", None)
        for kind in ("tcpSocket", "httpGet"):
            if kind not in probe:
                continue
            spec = probe.get(kind) or {}
            port = _probe_port(spec.get("port"), main)
            host = str(spec.get("host") or POD_IP)
            reader, writer = await asyncio.open_connection(host, port)
            try:
                if kind == "tcpSocket":
                    return True
                path = str(spec.get("path") or "/")
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                status = (await reader.readline()).split()
                return len(status) >= 2 and status[1][:1] in (b"2", b"3")
            finally:
                writer.close()
        return True

    async def _collect(
        self,
        pod: _Pod,
        layout: _Layout,
        phase: ContainerPhase,
        message: str,
        exit_code: int | None,
        *,
        stopped: bool,
        containers: tuple[ContainerOutcome, ...] = (),
    ) -> StepOutcome:
        """Outputs of the main container. Errors only turn a Succeeded pod into Error; after a
        failure Argo still saves what it can, so do we."""
        step = pod.step
        plan = layout.plan("main")
        result = read_result(layout.pod_dir / "main.log") if step.capture_result else None
        params: list[tuple[str, str]] = []
        problems: list[str] = []
        for spec in step.output_parameters:
            path = plan.host_path(spec.path)
            try:
                with open(path, "rb") as f:
                    value = f.read().decode("utf-8", errors="replace")
                params.append((spec.name, _trim_one_newline(value)))
            except OSError as exc:
                if spec.default is not None:
                    params.append((spec.name, spec.default))
                else:
                    why = exc.strerror.lower() if exc.strerror else str(exc)
                    problems.append(f"output parameter {spec.name!r}: {spec.path}: {why}")
        artifacts: tuple[JSONDict, ...] = ()
        if (step.output_artifacts and not stopped) or step.archive_logs:
            try:
                artifacts = await asyncio.to_thread(self._save_artifacts, pod, layout, problems, stopped)
            except SluiceError as exc:
                problems.append(str(exc))
        if problems and phase == "Succeeded":
            phase, message = "Error", problems[0]
        return self._outcome(
            pod,
            phase,
            message,
            exit_code=exit_code,
            result=result,
            parameters=tuple(params),
            artifacts=artifacts,
            containers=containers,
        )

    def _save_artifacts(
        self, pod: _Pod, layout: _Layout, problems: list[str], stopped: bool
    ) -> tuple[JSONDict, ...]:
        step = pod.step
        plan = layout.plan("main")
        saved: list[JSONDict] = []
        work = layout.pod_dir / "staging" / "out"
        for spec in () if stopped else step.output_artifacts:
            source = plan.host_path(spec.path)
            if not source.exists():
                if not spec.optional:
                    problems.append(f"output artifact {spec.name!r}: {spec.path}: no such file or directory")
                continue
            key = spec.key
            if spec.location:
                loc_kind, loc = next(iter(spec.location.items()))
                if not isinstance(loc, Mapping) or not loc.get("key"):
                    problems.append(f"output artifact {spec.name!r}: {loc_kind} location without a key")
                    continue
                key = str(loc["key"])
            try:
                packed = pack_output(source, work, spec.name, spec.archive)
                location = self._repo.put(key, packed)
            except (OSError, SluiceError) as exc:
                problems.append(f"output artifact {spec.name!r}: {exc}")
                continue
            art: JSONDict = {"name": spec.name, "path": spec.path, **location}
            if spec.archive is not None:
                art["archive"] = spec.archive
            saved.append(art)
        if step.archive_logs:
            logs = self._archive_logs(pod, layout, work)
            if logs is not None:
                saved.append(logs)
        shutil.rmtree(work, ignore_errors=True)
        return tuple(saved)

    def _archive_logs(self, pod: _Pod, layout: _Layout, work: Path) -> JSONDict | None:
        """Argo's ``archiveLogs``: the main container's log as the ``main-logs`` artifact.

        Argo's log interleaves stdout and stderr; ours are separate files, stored one after the
        other. A failure here never changes the pod's phase.
        """
        step = pod.step
        work.mkdir(parents=True, exist_ok=True)
        combined = work / "main.log"
        try:
            with open(combined, "wb") as out:
                for part in ("main.log", "main.err"):
                    with contextlib.suppress(FileNotFoundError), open(layout.pod_dir / part, "rb") as f:
                        shutil.copyfileobj(f, out)
            location = self._repo.put(f"{step.workflow_name}/{step.pod_name}/main.log", combined)
        except (OSError, SluiceError):
            log.warning("could not archive the logs of %s", step.pod_name, exc_info=True)
            return None
        return {"name": "main-logs", **location}

    # ---------------------------------------------------------------------------------------------
    # containerSet

    async def _run_container_set(self, pod: _Pod) -> StepOutcome:
        step = pod.step
        containers = [(_container_name(c, f"container-{i}"), c) for i, c in enumerate(step.containers)]
        names = [n for n, _ in containers]
        if not containers:
            return self._outcome(pod, "Error", "containerSet without containers")
        if len(set(names)) != len(names):
            return self._outcome(pod, "Error", "containerSet container names must be unique")
        deps = {n: [str(d) for d in (c.get("dependencies") or ())] for n, c in containers}
        for n, ds in deps.items():
            unknown = [d for d in ds if d not in deps]
            if unknown:
                return self._outcome(pod, "Error", f"container {n} depends on unknown container {unknown[0]}")
        if _has_cycle(deps):
            return self._outcome(pod, "Error", "containerSet dependencies form a cycle")

        layout = self._layout(pod, containers)
        if layout.private or step.input_artifacts:
            await self._race(pod, asyncio.to_thread(self._prepare, pod, layout, containers))

        states: dict[str, ContainerOutcome] = {n: ContainerOutcome(name=n, phase="Pending") for n in names}
        done = {n: asyncio.Event() for n in names}

        async def run_one(name: str, c: Mapping[str, Any]) -> None:
            try:
                for d in deps[name]:
                    await done[d].wait()
                blocked = [d for d in deps[name] if states[d].phase != "Succeeded"]
                if pod.stop_message is not None:
                    states[name] = ContainerOutcome(name, "Failed", message=pod.stop_message)
                    return
                if blocked:
                    states[name] = ContainerOutcome(
                        name, "Failed", message=f"not run: dependency {blocked[0]} did not succeed"
                    )
                    return
                try:
                    proc = await self._spawn(pod, layout, c, name)
                except _Stopped:
                    states[name] = ContainerOutcome(name, "Failed", message=pod.stop_message or "")
                    return
                except SluiceError as exc:
                    states[name] = ContainerOutcome(name, "Error", message=str(exc))
                    return
                self._running(pod, proc.started_at)
                states[name] = ContainerOutcome(name, "Running", started_at=proc.started_at)
                code = await self._wait(proc)
                stopped = pod.stop_message
                phase: ContainerPhase = "Succeeded" if code == 0 and stopped is None else "Failed"
                message = stopped or ("" if code == 0 else f"Error (exit code {code})")
                states[name] = ContainerOutcome(
                    name, phase, code, message, started_at=proc.started_at, finished_at=self._clock()
                )
            finally:
                done[name].set()

        await asyncio.gather(*(run_one(n, c) for n, c in containers))
        outcomes = tuple(states[n] for n in names)
        stopped = pod.stop_message
        lead = states.get("main")
        if lead is None:
            bad = [s for s in outcomes if s.phase != "Succeeded"]
            lead = bad[0] if bad else outcomes[-1]
        phase = lead.phase if lead.phase in ("Succeeded", "Failed", "Error") else "Failed"
        message = stopped or lead.message
        if stopped is not None:
            phase = "Failed"
        if phase == "Error":
            return self._outcome(pod, "Error", message, exit_code=lead.exit_code, containers=outcomes)
        return await self._collect(
            pod, layout, phase, message, lead.exit_code, stopped=stopped is not None, containers=outcomes
        )

    # ---------------------------------------------------------------------------------------------
    # http

    async def _run_http(self, pod: _Pod) -> StepOutcome:
        from engine.runtime.httpstep import perform

        step = pod.step
        ns = step.namespace
        self._running(pod, self._clock())
        task = asyncio.ensure_future(
            perform(step.http or {}, secret=lambda n, k: (self._objects.secret(ns, n) or {}).get(k))
        )
        pod.inner = task
        res = await self._race(pod, task)
        return self._outcome(pod, res.phase, res.message, result=res.result)


def _grace_seconds(step: StepRun) -> float:
    """The pod's ``terminationGracePeriodSeconds``, which a ``podSpecPatch`` may set (else 30 s, as
    Kubernetes)."""
    value: Any = None
    patch = step.pod_spec.get("podSpecPatch")
    if isinstance(patch, str):
        with contextlib.suppress(yaml.YAMLError):
            parsed = yaml.safe_load(patch)
            if isinstance(parsed, dict):
                value = parsed.get("terminationGracePeriodSeconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return DEFAULT_GRACE_SECONDS


_WHICH: dict[tuple[str, str], str] = {}


def _which(command: str, path: str) -> str | None:
    """``shutil.which`` remembered for commands found (a command installed later is still found)."""
    # Looking a command up walks PATH with a stat per entry; steps run the same few commands.
    key = (command, path)
    found = _WHICH.get(key)
    if found is not None and os.access(found, os.X_OK):
        return found
    found = shutil.which(command, path=path)
    if found is not None and len(_WHICH) < 4096:
        _WHICH[key] = found
    return found


def _probe_port(port: Any, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or ():
        if p.get("name") == text and p.get("containerPort"):
            return int(p["containerPort"])
    raise ExecutorError(f"readiness probe: unknown port {port!r}")


def _with_mounts(c: Mapping[str, Any], extra: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    own = list(c.get("volumeMounts") or ())
    paths = {m.get("mountPath") for m in own}
    return {**c, "volumeMounts": own + [m for m in extra if m.get("mountPath") not in paths]}


def _has_cycle(deps: Mapping[str, Sequence[str]]) -> bool:
    indegree = {n: len(ds) for n, ds in deps.items()}
    users: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            users[d].append(n)
    ready = [n for n, k in indegree.items() if k == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for u in users[n]:
            indegree[u] -= 1
            if indegree[u] == 0:
                ready.append(u)
    return seen != len(deps)


if TYPE_CHECKING:

    def _implements_step_executor(e: LocalExecutor) -> StepExecutor:
        return e
