"""How the local runtime fences in one step: process-tree ownership, private paths, orphan reaping.

The local step executor (``engine.runtime.local.executor``, driven by the local runtime's engine loop)
asks this module three things: which isolation mode a pod gets, how a container's absolute paths map
to host paths, and how to kill everything a step started -- now, or after an engine crash (``reap``).

Modes, detected once per engine process by running a probe (``available_modes``):

``bwrap``
    bubblewrap with ``--unshare-pid --die-with-parent``: a PID namespace, so ending the namespace's
    first process ends every process in it (``setsid`` escapees and daemonised grandchildren
    included), and a mount namespace whose ``/`` is the pod's private root directory
    (``home/pods/<pod>/root``) with the host's top-level directories bound back in -- except ``/tmp``
    and the top-level directory of every path the step declares or mentions, which therefore live in
    the private root. Steps write ``/tmp/x`` or ``/mnt/out/y`` and never see each other's files.
    ``--die-with-parent`` usually takes the sandbox down with a SIGKILLed engine, but not
    reliably (the namespace's init can survive its parent): ``reap`` finds it by its marker.
``unshare``
    ``unshare --pid --fork --kill-child``: the same PID-namespace guarantee without mount isolation
    (a host ``sh`` is the namespace's PID 1 and the step its child, as under Argo's emissary).
``session``
    no namespace: the step runs in its own session and process group, and every process carries a
    per-container marker variable (``SLUICE_STEP_MARKER``). Killing the tree is ``killpg`` plus a
    ``/proc`` scan for the marker among processes created after the step's first one. A process that
    clears its environment (``env -i``) and leaves the session escapes this mode.

``SLUICE_ISOLATION_MODES`` (a comma-separated subset, e.g. ``session``) limits detection, to
exercise the fallbacks on a machine that has everything.

Without ``bwrap``, private paths are the weaker fallback: ``/tmp`` and the top-level directories of
the declared absolute paths are *rewritten* (longest first, at path-component boundaries) in command,
args, script source and user-supplied environment values to their locations under the private root.
That covers what a step says literally, not paths it computes at run time, and not undeclared paths
it merely mentions (rewriting those could corrupt text that only looks like a path).

Mode choice is the executor's: a step that declares no paths and mentions none outside the host's
system directories takes ``session`` (the cheapest: no wrapper process, no private root); any other
takes the best mode available.

Paths under the host's system directories (``/usr``, ``/etc``, ``$HOME``'s top, the engine's own
directories...) cannot be hidden without hiding the host's software, so in every mode only the exact
declared paths under them are rewritten to the private root, never the whole directory. The other way
round, the host directories the engine and its steps run from (its Python, its home, ``PATH`` entries)
stay reachable when they lie under a private top such as ``/tmp``: a sandbox binds them back in and
rewriting leaves them as they are.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import posixpath
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Mode = Literal["bwrap", "unshare", "session"]
MODES: tuple[Mode, ...] = ("bwrap", "unshare", "session")

MARKER_ENV = "SLUICE_STEP_MARKER"
PID_FILE = "pid"

# Top-level host directories a step can never get a private copy of: hiding them would hide the
# host's programs, libraries and configuration. Paths under them are only rewritten exactly.
SYSTEM_TOPS = frozenset(
    {
        "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "nix", "opt",
        "proc", "root", "run", "sbin", "snap", "sys", "usr", "var",
    }
)  # fmt: skip

# An absolute path as it appears in text: starts at a component boundary (not after a name
# character, a dot, a tilde or a slash, so ``./tmp``, ``~/tmp`` and URLs do not count).
_ABS_PATH = re.compile(r"(?<![\w.~/$])/([\w.\-]+)")


# --------------------------------------------------------------------------------------------------
# detection


def _probe(argv: Sequence[str]) -> bool:
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("isolation probe %s failed: %s", argv[0], exc)
        return False
    if done.returncode != 0:
        log.info(
            "isolation probe %s failed (exit %s): %s",
            argv[0],
            done.returncode,
            done.stderr.decode(errors="replace").strip(),
        )
    return done.returncode == 0


@functools.cache
def available_modes() -> tuple[Mode, ...]:
    """The isolation modes this machine supports, best first; ``session`` is always there.

    Probed once per process: bwrap and unshare can be installed yet unusable (no user namespaces for
    a non-root user, a seccomp policy in a container), so their presence on PATH is not enough.
    """
    modes: list[Mode] = []
    allowed = {m.strip() for m in os.environ.get("SLUICE_ISOLATION_MODES", ",".join(MODES)).split(",")}
    true = shutil.which("true") or "/bin/true"
    bwrap = shutil.which("bwrap") if "bwrap" in allowed else None
    if bwrap and _probe(
        [bwrap, "--unshare-pid", "--die-with-parent", "--dev-bind", "/", "/", "--proc", "/proc", true]
    ):
        modes.append("bwrap")
    unshare = shutil.which("unshare") if "unshare" in allowed else None
    if unshare and _probe([unshare, "--pid", "--fork", "--kill-child", true]):
        modes.append("unshare")
    modes.append("session")
    return tuple(modes)


def unavailable_reasons() -> dict[Mode, str]:
    """Why each missing mode is missing, for test skips and ``sluice doctor``-style reports."""
    have = available_modes()
    reasons: dict[Mode, str] = {}
    pairs: tuple[tuple[Mode, str], ...] = (("bwrap", "bwrap"), ("unshare", "unshare"))
    allowed = os.environ.get("SLUICE_ISOLATION_MODES")
    for mode, tool in pairs:
        if mode in have:
            continue
        found = shutil.which(tool)
        if allowed is not None and mode not in allowed.split(","):
            reasons[mode] = f"excluded by SLUICE_ISOLATION_MODES={allowed}"
        elif not found:
            reasons[mode] = f"{tool} is not installed"
        else:
            reasons[mode] = f"{found} is installed but its probe failed"
    return reasons


# --------------------------------------------------------------------------------------------------
# paths


def top_of(path: str) -> str | None:
    """The first component of an absolute container path (``/mnt/out/x`` -> ``mnt``)."""
    parts = posixpath.normpath(path).split("/")
    return parts[1] if len(parts) > 1 and parts[1] else None


def below_top(path: str) -> bool:
    """True for ``/tmp/x`` but not ``/tmp``: a host path that can be kept without keeping its top."""
    return posixpath.normpath(path).count("/") >= 2


def mentioned_tops(text: str, kept: Collection[str] = ()) -> set[str]:
    """Top-level directories of the absolute paths a command, script or value mentions.

    Mentions of a ``kept`` host directory (or below it) do not count: they need nothing private.
    """
    if "/" not in text:
        return set()
    if not kept:
        return {m.group(1) for m in _ABS_PATH.finditer(text)}
    out = set()
    for m in _ABS_PATH.finditer(text):
        rest = text[m.start() :]
        if not any(rest.startswith(k) and rest[len(k) : len(k) + 1] in ("", "/") for k in kept):
            out.add(m.group(1))
    return out


def host_system_tops(extra_paths: Iterable[str | os.PathLike[str]]) -> frozenset[str]:
    """``SYSTEM_TOPS`` plus the tops of the host paths the engine and its steps run from."""
    tops = set(SYSTEM_TOPS)
    for p in extra_paths:
        p = os.fspath(p)
        if p.startswith("/"):
            t = top_of(p)
            if t:
                tops.add(t)
    tops.discard("tmp")  # /tmp is always private: paths under it are re-exposed one by one
    return frozenset(tops)


@dataclass(frozen=True, slots=True)
class PathPlan:
    """Where a pod's container paths live on the host, and how text is rewritten to match.

    ``private_tops`` come wholly from ``root``; ``exact`` paths (under system tops) are rewritten to
    ``root`` one by one; ``mounts`` maps volume mount paths to host directories (longest first).
    """

    root: Path
    private_tops: frozenset[str] = frozenset()
    exact: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()
    # True when the sandbox itself provides private_tops and the mounts (bwrap): only the exact
    # paths and the mounts that cannot be bound are rewritten then.
    mounted: bool = False
    # Host directories under a private top that stay as they are (see ``build``'s ``host_paths``).
    kept: tuple[str, ...] = ()
    _rules: dict[str, str] = field(default_factory=dict, compare=False)
    _pattern: re.Pattern[str] | None = field(default=None, compare=False)

    @staticmethod
    def build(
        root: Path,
        *,
        private_tops: Collection[str],
        exact: Collection[str],
        mounts: Mapping[str, str],
        mounted: bool,
        system_tops: Collection[str],
        host_paths: Collection[str] = (),
    ) -> PathPlan:
        """``host_paths`` are the host's own directories under a private top (the engine's Python or
        home, PATH entries): rewriting keeps them as they are (a sandbox binds them back instead)."""
        ordered_mounts = tuple(sorted(mounts.items(), key=lambda kv: len(kv[0]), reverse=True))
        rules: dict[str, str] = {}
        for mount_path, host_dir in ordered_mounts:
            if not mounted or not bindable(mount_path, system_tops):
                rules[mount_path] = host_dir
        for p in exact:
            rules.setdefault(p, str(root) + p)
        kept = tuple(
            sorted(
                {posixpath.normpath(h) for h in host_paths if top_of(h) in private_tops and below_top(h)},
                key=len,
                reverse=True,
            )
        )
        if not mounted:
            for h in kept:
                rules.setdefault(h, h)
            for t in private_tops:
                rules.setdefault("/" + t, f"{root}/{t}")
        pattern = None
        if rules:
            alternatives = "|".join(re.escape(k) for k in sorted(rules, key=len, reverse=True))
            pattern = re.compile(rf"(?<![\w.~/$])(?:{alternatives})(?![\w.\-])")
        return PathPlan(
            root=root,
            private_tops=frozenset(private_tops),
            exact=tuple(sorted(exact, key=len, reverse=True)),
            mounts=ordered_mounts,
            mounted=mounted,
            kept=kept,
            _rules=rules,
            _pattern=pattern,
        )

    def host_path(self, path: str) -> Path:
        """Where the container path ``path`` is on the host (for artifacts and output files)."""
        path = posixpath.normpath(path)
        if path in ("/", "//"):
            return self.root
        for mount_path, host_dir in self.mounts:
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return Path(host_dir + path[len(mount_path.rstrip("/")) :])
        for p in self.exact:
            if path == p or path.startswith(p + "/"):
                return Path(str(self.root) + path)
        for p in self.kept:
            if path == p or path.startswith(p + "/"):
                return Path(path)
        if top_of(path) in self.private_tops:
            return Path(str(self.root) + path)
        return Path(path)

    def rewrite(self, text: str) -> str:
        """``text`` with container paths replaced by their host locations (no-op when none apply)."""
        if self._pattern is None or "/" not in text:
            return text
        rules = self._rules
        return self._pattern.sub(lambda m: rules[m.group(0)], text)

    @property
    def rewrites(self) -> bool:
        return self._pattern is not None


def bindable(mount_path: str, system_tops: Collection[str]) -> bool:
    """Whether bwrap may bind at ``mount_path``: only inside the private root, never in a host dir."""
    top = top_of(mount_path)
    return top is not None and top not in system_tops


# --------------------------------------------------------------------------------------------------
# command lines


def bwrap_argv(
    bwrap: str,
    *,
    root: Path,
    private_tops: Collection[str],
    binds: Sequence[tuple[str, str]],
    chdir: str,
    argv: Sequence[str],
) -> list[str]:
    """The bwrap command line that runs ``argv`` with ``root`` as ``/``.

    The private root is bound at ``/`` (so files a step writes anywhere outside the host's bound
    directories land in it and stay readable after the sandbox is gone); the host's top-level
    directories are bound over it unless private. ``binds`` (volumes, then host paths to re-expose
    inside private directories) come last so they win. Mount points bwrap creates live under
    ``root``, never in the host's real root.
    """
    out = [bwrap, "--unshare-pid", "--die-with-parent", "--bind", str(root), "/"]
    try:
        names = sorted(os.listdir("/"))
    except OSError:
        names = []
    for name in names:
        if name in private_tops or name in ("tmp", "proc", "dev"):
            continue
        host = "/" + name
        if os.path.islink(host):
            # Symlinked tops (/bin -> usr/bin on merged-/usr systems) are recreated in the private
            # root by ensure_root_links; bwrap's --symlink fails when the link already exists.
            continue
        if os.path.isdir(host):
            out += ["--ro-bind" if name == "sys" else "--bind", host, host]
    out += ["--proc", "/proc", "--dev", "/dev"]
    for src, dst in binds:
        out += ["--bind", src, dst]
    out += ["--chdir", chdir, "--"]
    out += argv
    return out


def ensure_root_links(root: Path, private_tops: Collection[str]) -> None:
    """Recreate the host's symlinked top-level entries (``/bin -> usr/bin``) inside ``root``."""
    try:
        names = os.listdir("/")
    except OSError:
        return
    for name in names:
        if name in private_tops or name == "tmp":
            continue
        host = "/" + name
        if not os.path.islink(host):
            continue
        target = os.readlink(host)
        link = root / name
        with contextlib.suppress(FileExistsError):
            os.symlink(target, link)


def unshare_argv(unshare: str, shell: str, argv: Sequence[str]) -> list[str]:
    """Run ``argv`` as a child of a shell that is PID 1 of a new PID namespace.

    The step is not PID 1 itself because PID 1 ignores signals it has no handler for (a step that
    ``kill -9``s itself would carry on), and Argo's steps run under an init process too. The
    ``; exit $?`` keeps the shell from exec'ing the command, and passes on its status, 128+N for a
    signal death.
    """
    return [
        unshare,
        "--pid",
        "--fork",
        "--kill-child",
        "--",
        shell,
        "-c",
        '"$@"; exit $?',
        "sluice-init",
        *argv,
    ]


# --------------------------------------------------------------------------------------------------
# processes


def proc_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks since boot), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _proc_pgrp(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[2])
    except (IndexError, ValueError):
        return None


def _last_pid() -> int | None:
    """The most recently allocated PID in our PID namespace (last field of /proc/loadavg)."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _candidates(after_pid: int | None) -> list[int]:
    """PIDs that may belong to a step whose first process had PID ``after_pid``.

    Every descendant was created after that process, so its PID lies in (after_pid, last_pid],
    wrapping at pid_max. Restricting the scan to that window keeps it cheap on a busy machine.
    """
    last = _last_pid() if after_pid is not None else None
    if last is not None and last == after_pid:
        return []  # no process was created since the step's first one: nothing to look at
    try:
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []
    if after_pid is None or last is None:
        return pids
    if last >= after_pid:
        return [p for p in pids if after_pid < p <= last]
    return [p for p in pids if p > after_pid or p <= last]  # wrapped around pid_max


def _environ(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return None


def find_marked(markers: Collection[str], *, after_pid: int | None = None) -> list[int]:
    """PIDs whose initial environment carries one of ``markers`` (values of SLUICE_STEP_MARKER)."""
    if not markers:
        return []
    needles = [f"{MARKER_ENV}={m}\0".encode() for m in markers]
    me = os.getpid()
    found: list[int] = []
    for pid in _candidates(after_pid):
        if pid == me:
            continue
        data = _environ(pid)
        if data is not None and any(n in data for n in needles):
            found.append(pid)
    return found


def kill_marked(markers: Collection[str], *, after_pid: int | None = None, rounds: int = 20) -> int:
    """SIGKILL every process carrying a marker; repeat while new ones appear (a forking escapee)."""
    killed = 0
    for _ in range(rounds):
        pids = find_marked(markers, after_pid=after_pid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def home_id(home: Path) -> str:
    """A short tag of an executor home, so markers of two engines never match each other's pods."""
    return hashlib.sha1(str(Path(home).absolute()).encode()).hexdigest()[:12]


def make_marker(home_tag: str, pod: str, container: str) -> str:
    """``nonce/home/pod/container``: unique per launch, and parseable by ``reap`` without records."""
    return f"{secrets.token_hex(6)}/{home_tag}/{pod}/{container}"


def _marker_pod(environ: bytes) -> tuple[str, str] | None:
    key = f"{MARKER_ENV}=".encode()
    at = environ.find(key)
    while at > 0 and environ[at - 1] != 0:  # a longer variable name that ends in ours
        at = environ.find(key, at + 1)
    if at < 0:
        return None
    end = environ.find(b"\0", at)
    value = environ[at + len(key) : end if end >= 0 else None].decode(errors="replace")
    parts = value.split("/")
    return (parts[1], parts[2]) if len(parts) >= 4 else None


def terminate_group(pgid: int, *, spare_leader: bool) -> None:
    """SIGTERM a container's process group (a step being stopped gets its grace period first).

    With ``spare_leader`` the group's leader, a bwrap sandbox, is left alone: it exits with the status
    of the command inside, which may handle the signal, rather than die of the signal itself."""
    if not spare_leader:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        return
    for pid in _candidates(pgid):
        if _proc_pgrp(pid) == pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------------
# launch records and reaping


def record_launch(pid_file: Path, *, pid: int, marker: str, container: str) -> None:
    """Append ``pid start-time marker container`` so ``reap`` can find the tree after a crash."""
    start = proc_start_time(pid)
    with open(pid_file, "a", encoding="utf-8") as f:
        f.write(f"{pid} {start if start is not None else '-'} {marker} {container}\n")


def reap(home: Path, pod_names: Iterable[str]) -> int:
    """Kill what steps of a crashed engine left running; return how many processes were signalled.

    A recorded PID is only killed when ``/proc/<pid>/stat`` still shows the recorded start time, so
    a recycled PID is never hit. Everything else (a session-mode escapee, a process launched just
    before the crash and never recorded) is found by its marker, which names this home and the pod
    and which a recycled PID cannot carry.
    """
    pods = set(pod_names)
    tag = home_id(home)
    killed = 0
    files: list[Path] = []
    for pod in pods:
        pid_file = Path(home) / "pods" / pod / PID_FILE
        try:
            lines = pid_file.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        files.append(pid_file)
        for line in lines:
            parts = line.split(" ")
            if len(parts) < 2 or parts[1] == "-":
                continue
            try:
                pid = int(parts[0])
            except ValueError:
                continue
            if str(proc_start_time(pid)) != parts[1]:
                continue
            if _proc_pgrp(pid) == pid:
                kill_group(pid)  # the wrapper or session leader: its group goes with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    me = os.getpid()
    for _ in range(20):
        victims = []
        for pid in _candidates(None):
            if pid == me:
                continue
            data = _environ(pid)
            found = _marker_pod(data) if data and MARKER_ENV.encode() in data else None
            if found is not None and found[0] == tag and found[1] in pods:
                victims.append(pid)
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    for pid_file in files:
        with contextlib.suppress(OSError):
            pid_file.unlink()
    return killed
