"""Webhook to workflow submitted, embedded runtime or JetStream pipeline, against a bare aiohttp floor.

What is measured: ``sluice server`` as a process on a fresh ``SLUICE_HOME`` (a temporary directory in
``--state-dir``, by default the home directory, on the filesystem ``~/.sluice`` uses), serving one
webhook EventSource (spec port 12000 bound to a free loopback port) and one Sensor whose single
trigger submits, for each event, a Workflow parameterised with the event's ``body.n``. That Workflow is
one ``suspend: {duration: "0"}`` template, the cheapest workflow the engine completes without starting
a process, so what is measured is the events path and the submission, not steps.

The load is C concurrent HTTP clients (coroutines in this process, each with a keep-alive connection
of its own, ``--concurrency``, default 16) posting ``{"n": i}`` with a fresh ``i`` per request, each
waiting for its answer before sending the next (fixed concurrency, closed loop), for ``--duration``
seconds (default 20; ``--quick`` 5). A 2xx answer means the event is durably on the bus. A request
that fails is not retried: its ``n`` is simply not acknowledged. After the load the script waits until
the sensor has drained (its bus consumer has fetched and acknowledged every event, and stays so), then
reads every workflow from the store and maps it back to its ``n`` through
``spec.arguments.parameters``, and every event from the bus.

Scenarios (``--scenarios``), each server on its own fresh home:

* ``floor``  the same clients against a bare aiohttp server (``web.Server``, as the webhook source
             uses) in a child process that answers 200 ``success`` after reading the body: what the
             clients and HTTP cost on this machine with nothing behind them;
* ``intake`` the server with the EventSource and no Sensor: the webhook and the bus alone;
* ``steady`` the server with the EventSource and the Sensor;
* ``crash``  as ``steady``, with the server SIGKILLed at the middle of the load and restarted at once
             (same home, same port); requests failing while it is down are not acknowledged.

How to read it:

* ``ev/s``        2xx answers / duration (accepted events per second); ``x floor`` is its share of the
                  floor's rate, ``x Argo`` its ratio to Argo Events' published stress-test rate
                  (~56 events/s; quoted, not measured here);
* ``wf/s``        workflows created while the load ran / duration, and ``drain s`` how long after the
                  load the sensor needed to catch up: whether it kept up with what was accepted. The
                  targets block also prints the rate through to the workflow: acknowledged events /
                  (load start to the last of their workflows);
* ``server CPU``  CPU time (user + sys, every thread) of the server process and its intake process
                  per accepted event;
                  ``client CPU`` this process's per request (the machine is shared by both);
* latencies, p50 / p99 in ms: ``answer`` send to 2xx (the event is on the bus); ``to bus`` send to the
  bus's commit timestamp of that event; ``bus->wf`` that timestamp to the workflow's ``created_at``;
  ``event->wf`` send to ``created_at`` (end to end; Argo's ~8.5 ms "processing" is compared with its
  p50). All are wall clocks of the same machine;
* ``lost``        acknowledged events with no workflow; ``dup`` events with more than one workflow;
  ``unacked+wf``  events whose request failed (in flight at the kill) but that were stored and ran:
  not an error, the client never learnt it; ``trigger failures`` the failures the server logged, and
  how many were a workflow name already taken by another firing.

The server paces its sources (``sluice server --intake-limit``, 16 by default): a webhook request
whose event a trigger with that many unfinished events listens to waits before the event goes on the
bus, so the closed loop runs at what the sensor sustains instead of piling events up on the bus.
``--intake-limit`` here passes another limit (0: none) to compare. The server serves its webhooks
from an intake process of its own, on another core than the sensor and the engine;
``--no-intake-process`` runs them in the server's process to compare.

Targets (the embedded bus): >= 1,000 accepted events/s with p99 <= 25 ms (printed for end to end and
for the answer), lost = duplicated = 0 in both the steady and the crash run. A closed loop keeps C
requests in flight, so its mean answer time is C / rate (Little's law) and the end-to-end time adds the
events waiting on the bus (up to the pacing limit) / rate: at C=16 and 1,000 events/s the answer alone
averages 16 ms. The rate a p99 allows therefore depends on C, and ``--sweep`` (by default 2,4,8)
runs the steady scenario again at those client counts (10 s each at most) to print the highest
accepted rate whose p99 event -> workflow is within the target, and at which C. A missed target is a
finding, not a failure: the exit code is 0 either way. ``--profile`` runs the steady scenario's server
under cProfile (its main thread: the sensor, the engine and the bus's writes, and the webhook with
``--no-intake-process``) and prints on stderr a
per-event breakdown by stage, then the top functions. ``--keep`` keeps the homes (server logs,
``state.db``, ``events.db``).

The bus is a :class:`Bus` behind ``--bus``. ``embedded`` is the above. ``jetstream`` runs the cluster's
pipeline on this machine (:class:`JetStreamBusRun`): ``nats-server -js`` and the tests' API server
(kmock, with the CRDs) as processes, the same EventSource and Sensor created in it as custom
resources, and ``sluice eventsource run`` (the webhook spec port on a free port) and ``sluice sensor
run`` as processes, as their Deployments run them. No Workflow controller runs: a workflow is
"submitted" once its custom resource exists. ``intake`` runs the eventsource process alone; ``crash``
SIGKILLs both event processes and restarts them. Workflows are listed from the API server and mapped
to their ``n``; their time is when the sensor logged the API server's answer to the create
(milliseconds), ``to bus`` uses the JetStream message timestamp; ``server CPU`` and ``RSS`` are the
two event processes', and a line per scenario adds nats-server's and the API server's CPU and the API
server's requests. Drained means the sensor's durable consumer has nothing pending or unacknowledged
(asked of nats-server). An "API server floor" (raw POSTs of the same Workflow to a fresh API server,
at C clients and at 1, since a trigger creates its workflows one after another) shows whether the
API server is the limit. The sensor's API client is rate-limited (``eventrun.CLIENT_QPS``, one request
per workflow); ``--sensor-qps`` runs it with another limit, which the header then says is not the
production setting. Targets: >= 500 accepted events/s, lost = duplicated = 0.

Run: ``.venv/bin/python benchmarks/events.py [--bus embedded|jetstream] [--quick] [--duration S]
[--concurrency C] [--no-crash] [--scenarios floor,intake,steady,crash] [--profile] [--keep]
[--state-dir DIR] [--intake-limit N] [--no-intake-process] [--sensor-qps Q] [--drain-timeout S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import copy
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Measure the checkout this file is in, whatever tree the venv's editable install points at (the
# server runs `python -m engine` with this directory first on its path, and says where it came from).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import nats  # noqa: E402
import nats.js.errors  # noqa: E402
import yaml  # noqa: E402
from aiohttp import web  # noqa: E402

import engine  # noqa: E402
from engine.cli.client import Client  # noqa: E402
from engine.runtime.jetstream import DEFAULT_STREAM, JetStreamBus, consumer_id  # noqa: E402
from engine.runtime.kubernetes.eventrun import CLIENT_BURST, CLIENT_QPS  # noqa: E402
from engine.runtime.local.eventbus import EventLogReader, events_path  # noqa: E402
from engine.runtime.local.events import PACE_LIMIT  # noqa: E402
from engine.runtime.local.store import Store  # noqa: E402
from engine.runtime.sensors import consumer_name  # noqa: E402
from tests import natsserver  # noqa: E402
from tests.kubernetes.apiserver import ApiServer  # noqa: E402

SPEC_PORT = "12000"
ENDPOINT = "/hook"
SOURCE = "bench"
SENSOR = "bench"
WORKFLOW_PREFIX = "ev-"
TRIGGER = "submit"
# The cluster pipeline (--bus jetstream): objects in the API server under the CRDs' group.
NAMESPACE = "default"
CRD_API_VERSION = "sluice.dev/v1alpha1"
OURS = f"/apis/{CRD_API_VERSION}/namespaces/{NAMESPACE}"
# `sluice sensor run` with its API client's rate limit set to argv[1] (--sensor-qps), burst 1.5 x.
RAISE_QPS = (
    "import sys; from engine.runtime.kubernetes import eventrun as e; "
    "e.CLIENT_QPS = float(sys.argv[1]); e.CLIENT_BURST = max(1, int(1.5 * e.CLIENT_QPS)); "
    "from engine.cli.main import main; sys.exit(main(sys.argv[2:]))"
)

# Argo Events' published stress-test figures (quoted in the project's issue, not measured here).
ARGO_EVENTS_PER_S = 56.0
ARGO_PROCESSING_MS = 8.5


@dataclass(frozen=True)
class Target:
    events_per_s: float
    p99_ms: float | None


TARGETS = {"embedded": Target(1_000.0, 25.0), "jetstream": Target(500.0, None)}
SCENARIOS = ("floor", "intake", "steady", "crash")

EVENT_SOURCE = f"""
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {{name: {SOURCE}}}
spec:
  webhook:
    hook: {{port: "{SPEC_PORT}", endpoint: {ENDPOINT}, method: POST}}
"""

# One suspend template of duration 0: the engine finishes it in its own loop, no process is started.
SENSOR_YAML = f"""
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: {SENSOR}}}
spec:
  dependencies:
  - {{name: ev, eventSourceName: {SOURCE}, eventName: hook}}
  triggers:
  - template:
      name: submit
      argoWorkflow:
        operation: submit
        source:
          resource:
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata: {{generateName: {WORKFLOW_PREFIX}}}
            spec:
              entrypoint: main
              arguments: {{parameters: [{{name: n}}]}}
              templates:
              - name: main
                suspend: {{duration: "0"}}
        parameters:
        - src: {{dependencyName: ev, dataKey: body.n}}
          dest: spec.arguments.parameters.0.value
"""

# ============================================================================================ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its threads (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's intake process, say), as far as they are alive."""
    out = [pid]
    for child in out:
        try:
            with open(f"/proc/{child}/task/{child}/children", encoding="ascii") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def tree_cpu(pid: int) -> float:
    """:func:`proc_cpu` summed over ``pid`` and its descendants."""
    return sum(proc_cpu(p) for p in proc_tree(pid))


def tree_peak_rss_mb(pid: int) -> float:
    """The peak RSS of ``pid`` and of each descendant, summed (the most they could have held at once)."""
    return sum(proc_peak_rss_mb(p) for p in proc_tree(pid))


def proc_peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sqlite_commit_us(directory: str, count: int = 300) -> float:
    """Mean microseconds of one small committed insert in WAL mode with synchronous=NORMAL (what the bus
    and the state store use) in ``directory``: both commit at least once per event."""
    base = tempfile.mkdtemp(prefix=".sluice-fs-", dir=directory)
    try:
        db = sqlite3.connect(f"{base}/t.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        t0 = time.perf_counter()
        for i in range(count):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 200))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        db.close()
        return elapsed / count * 1e6
    finally:
        shutil.rmtree(base, ignore_errors=True)


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_port(port: int, timeout: float, path: str = "/health") -> bool:
    """True once http://127.0.0.1:port``path`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


# ============================================================================================ buses


class Bus:
    """One way of running the server and its bus for a scenario: start, kill, restart, drained, stop.

    ``home`` is a fresh SLUICE_HOME, ``port`` the loopback port the webhook spec port is bound to.
    """

    name = ""

    def __init__(self, home: Path, port: int, *, profile: Path | None = None) -> None:
        self.home = home
        self.port = port
        self.profile = profile
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cpu_of_dead = 0.0
        self.rss_mb = 0.0
        # embedded: `sluice server --intake-limit` (None: the server's default), --no-intake-process
        self.intake_limit: int | None = None
        self.intake_process = True

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.procs[-1]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLUICE_HOME"] = str(self.home)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env

    def server_args(self) -> list[str]:
        pace = [] if self.intake_limit is None else ["--intake-limit", str(self.intake_limit)]
        own = [] if self.intake_process else ["--no-intake-process"]
        return ["server", "--no-cron", "--webhook-port", f"{SPEC_PORT}={self.port}", *pace, *own]

    def start(self, timeout: float = 30) -> float:
        """Start the server; return once its webhook port answers (seconds it took)."""
        t0 = time.perf_counter()
        log = self.home / f"server-{len(self.procs)}.log"
        prefix = [sys.executable]
        if self.profile is not None:
            prefix += ["-m", "cProfile", "-o", str(self.profile)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*prefix, "-m", "engine", *self.server_args()],
                env=self.env(),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        client = Client(self.home)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')}")
            with contextlib.suppress(Exception):
                if client.call("GET", "/api/v1/health", timeout=2).get("pid") == proc.pid:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer within {timeout}s")
            time.sleep(0.02)
        return time.perf_counter() - t0

    def configure(self, *, sensor: bool = True) -> None:
        """Store the EventSource (and the Sensor) and wait until the webhook port serves."""
        objects = [("source.yaml", EVENT_SOURCE)] + ([("sensor.yaml", SENSOR_YAML)] if sensor else [])
        for name, text in objects:
            path = self.home / name
            path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
            res = subprocess.run(
                [sys.executable, "-m", "engine", "apply", str(path)],
                env=self.env(),
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode != 0:
                raise RuntimeError(f"sluice apply {name} failed: {res.stderr.strip()}")
        if not wait_port(self.port, 30):
            raise RuntimeError("the webhook port did not open")

    def wait_webhook(self, timeout: float = 30) -> bool:
        return wait_port(self.port, timeout)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        proc = self.proc
        self.rss_mb = max(self.rss_mb, tree_peak_rss_mb(proc.pid))
        self.cpu_of_dead += tree_cpu(proc.pid)
        proc.kill()
        proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (orderly shutdown, so a profile is written), SIGKILL if it hangs."""
        proc = self.proc
        if proc.poll() is not None:
            return
        self.rss_mb = max(self.rss_mb, tree_peak_rss_mb(proc.pid))
        self.cpu_of_dead += tree_cpu(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    def cpu(self) -> float:
        live = self.proc.pid if self.procs and self.proc.poll() is None else None
        return self.cpu_of_dead + (tree_cpu(live) if live else 0.0)

    def close(self) -> None:
        """Stop what the bus runs besides the server (nothing for the embedded bus)."""

    def notes(self, events: int) -> list[str]:
        """Lines about the bus's own servers for the report, per accepted event."""
        return []

    def backlog(self) -> int:
        """Events on the bus the sensor's consumers have not fetched and acknowledged yet."""
        path = events_path(self.home)
        if not path.exists():
            return -1
        with EventLogReader(path) as reader:
            last = reader.last_seq()
            consumers = [c for c in reader.consumers() if c.name.startswith("sensor/")]
            if not consumers:
                return -1
            return max(max(0, last - c.delivered_seq) + c.ack_pending for c in consumers)

    def published(self) -> dict[int, float]:
        """body.n -> the bus's commit timestamp of that event (epoch seconds)."""
        out: dict[int, float] = {}
        with EventLogReader(events_path(self.home)) as reader:
            seq = 1
            while True:
                records = reader.read(seq, 10_000)
                if not records:
                    return out
                for r in records:
                    body = (r.event.get("data") or {}).get("body")
                    if isinstance(body, dict) and isinstance(body.get("n"), int):
                        out[body["n"]] = r.published_at
                seq = records[-1].seq + 1

    def trigger_failures(self) -> tuple[int, int]:
        """Trigger failures the server logged, and how many of them were workflow name collisions."""
        failed = collided = 0
        for log in self.home.glob("server-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if "trigger submit failed" in line:
                    failed += 1
                    collided += "already exists" in line
        return failed, collided

    def workflows(self) -> list[tuple[int | None, float, str]]:
        """(n, created_at, phase) of every workflow the sensor created."""
        store = Store(self.home)
        try:
            rows = [r for r in store.list_workflows() if r.name.startswith(WORKFLOW_PREFIX)]
        finally:
            store.close()
        out: list[tuple[int | None, float, str]] = []
        for r in rows:
            params = ((r.manifest.get("spec") or {}).get("arguments") or {}).get("parameters") or []
            value = next((p.get("value") for p in params if p.get("name") == "n"), None)
            try:
                n = int(value) if value is not None else None
            except (TypeError, ValueError):
                n = None
            out.append((n, r.created_at, r.phase))
        return out


class EmbeddedBus(Bus):
    """The embedded SQLite bus inside ``sluice server`` ($SLUICE_HOME/events.db)."""

    name = "embedded"


def _log_time(line: str) -> float | None:
    """Epoch seconds of a line the event processes log (``%(asctime)s``: local time, milliseconds)."""
    try:
        stamp, ms = line[:23].split(",")
        return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
    except ValueError:
        return None


def _epoch_of_rfc3339(text: str) -> float:
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return 0.0


class JetStreamBusRun(Bus):
    """The cluster's pipeline on one machine: ``nats-server -js`` and the tests' API server (kmock, with
    the CRDs) as processes, the EventSource and the Sensor as custom resources in it, and ``sluice
    eventsource run`` and ``sluice sensor run`` as the processes their Deployments would run.

    ``start`` brings up NATS and the API server the first time, and (re)starts the two event processes
    once ``configure`` has created the objects; ``kill`` SIGKILLs both event processes. ``procs`` holds
    every event process started, for the CPU and the final cleanup; ``close`` stops NATS and the API
    server. No Workflow controller runs: a workflow is "submitted" once its custom resource exists.
    """

    name = "jetstream"
    sensor_qps: float | None = None  # --sensor-qps: the sensor's API client limit, raised by hand

    def __init__(self, home: Path, port: int, *, profile: Path | None = None) -> None:
        super().__init__(home, port, profile=profile)
        self.nats: natsserver.NatsServer | None = None
        self.api: ApiServer | None = None
        self.roles: list[str] = []  # what configure asked for: "sensor" and/or "eventsource"
        self.live: dict[str, subprocess.Popen[bytes]] = {}
        self.health: dict[str, int] = {}
        self.infra_cpu0: dict[str, float] = {}
        self.roles_started: list[str] = []

    # -- lifecycle --

    def start(self, timeout: float = 60) -> float:
        t0 = time.perf_counter()
        if self.nats is None:
            self.nats = natsserver.start(self.home / "nats")
            self.api = ApiServer(self.home / "api").start()
            self.api.apply_crds()
            return time.perf_counter() - t0
        for role in self.roles:
            self._launch(role)
        for role in self.roles:
            self._wait_ready(role, timeout)
        return time.perf_counter() - t0

    def _argv(self, role: str) -> list[str]:
        assert self.api is not None
        name = SENSOR if role == "sensor" else SOURCE
        argv = [role, "run", name, "-n", NAMESPACE, "--kubeconfig", str(self.api.kubeconfig)]
        if role == "eventsource":
            argv += ["--webhook-port", f"{SPEC_PORT}={self.port}"]
        if role == "sensor" and self.sensor_qps is not None:
            return [sys.executable, "-c", RAISE_QPS, str(self.sensor_qps), *argv]
        return [sys.executable, "-m", "engine", *argv]

    def _launch(self, role: str) -> None:
        assert self.nats is not None
        self.health[role] = free_port()
        env = self.env()
        env.pop("KUBECONFIG", None)
        env.update(
            SLUICE_EVENTBUS_URL=self.nats.url,
            SLUICE_HEALTH_PORT=str(self.health[role]),
            PYTHONUNBUFFERED="1",
        )
        log = self.home / f"{role}-{self.roles_started.count(role)}.log"
        self.roles_started.append(role)
        with log.open("wb") as out:
            # Not tied to this process with PR_SET_PDEATHSIG: that follows the starting *thread*, and
            # the crash scenario restarts from a worker thread that ends with the load. SIGTERM and
            # errors stop them in run_engine's cleanup.
            proc = subprocess.Popen(
                self._argv(role),
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        self.live[role] = proc

    def _wait_ready(self, role: str, timeout: float) -> None:
        proc = self.live[role]
        deadline = time.monotonic() + timeout
        while not wait_port(self.health[role], 0.05, "/readyz"):
            if proc.poll() is not None:
                logs = sorted(self.home.glob(f"{role}-*.log"))
                raise RuntimeError(f"{role} exited with {proc.returncode}: {logs[-1].read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{role} was not ready within {timeout}s")

    def configure(self, *, sensor: bool = True) -> None:
        """Create the EventSource (and the Sensor) in the API server, start their processes (the
        sensor first: its consumer starts after the last event on the stream) and wait until ready."""
        assert self.api is not None and self.nats is not None
        for pid in (self.nats.process.pid, self._api_pid()):
            self.infra_cpu0[str(pid)] = proc_cpu(pid)
        objects = [("eventsources", EVENT_SOURCE)] + ([("sensors", SENSOR_YAML)] if sensor else [])
        for plural, text in objects:
            body = yaml.safe_load(text)
            body["apiVersion"] = CRD_API_VERSION
            self.api.create(f"{OURS}/{plural}", body)
        self.roles = (["sensor"] if sensor else []) + ["eventsource"]
        for role in self.roles:
            self._launch(role)
            self._wait_ready(role, 60)
        if not wait_port(self.port, 30):
            raise RuntimeError("the webhook port did not open")

    def kill(self) -> None:
        """SIGKILL the eventsource and the sensor process at once, as a node failure would."""
        live = [p for p in self.live.values() if p.poll() is None]
        for proc in live:
            self.rss_mb = max(self.rss_mb, proc_peak_rss_mb(proc.pid))
            self.cpu_of_dead += proc_cpu(proc.pid)
        for proc in live:
            proc.kill()
        for proc in live:
            proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.live.values():
            if proc.poll() is not None:
                continue
            self.rss_mb = max(self.rss_mb, proc_peak_rss_mb(proc.pid))
            self.cpu_of_dead += proc_cpu(proc.pid)
            proc.send_signal(signal.SIGTERM)
        for proc in self.live.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.nats is not None:
            natsserver.stop(self.nats)

    def cpu(self) -> float:
        return self.cpu_of_dead + sum(proc_cpu(p.pid) for p in self.live.values() if p.poll() is None)

    def _api_pid(self) -> int:
        # ApiServer keeps its process private; the benchmark only reads its CPU time.
        proc = getattr(self.api, "_process", None)
        return int(proc.pid) if proc is not None else 0

    def notes(self, events: int) -> list[str]:
        """NATS' and the API server's CPU per accepted event, and the API server's requests."""
        if self.nats is None or self.api is None:
            return []
        out = []
        for what, pid in (("nats-server", self.nats.process.pid), ("API server (kmock)", self._api_pid())):
            used = proc_cpu(pid) - self.infra_cpu0.get(str(pid), 0.0)
            out.append(f"{what} CPU {used / max(1, events) * 1e3:.3f} ms/event")
        # kmock logs "METHOD /path?query -> status" per request: those on workflows, by kind.
        kinds: Counter[str] = Counter()
        for line in self.api.log_path.open(errors="replace"):
            method, _, rest = line.partition(" ")
            path, _, status = rest.partition(" -> ")
            if not status:
                continue
            kinds["all"] += 1
            if f"{OURS}/workflows" in path:
                one = path.split("?", 1)[0].rstrip("/") != f"{OURS}/workflows"
                kinds[f"{method} {'one ' if one else ''}{status.strip()}"] += 1
        split = ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()) if k != "all") or "none"
        per = kinds["all"] / max(1, events)
        out.append(f"API server requests {kinds['all']:,} ({per:.2f}/event; on workflows: {split})")
        return out

    # -- reading the results --

    async def _consumer_backlog(self) -> int:
        assert self.nats is not None
        nc = await nats.connect(self.nats.url, connect_timeout=2, allow_reconnect=False)
        try:
            durable = consumer_id(consumer_name(NAMESPACE, SENSOR, TRIGGER))
            try:
                info = await nc.jetstream().consumer_info(DEFAULT_STREAM, durable)
            except nats.js.errors.NotFoundError:
                return -1
            return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        finally:
            await nc.close()

    def backlog(self) -> int:
        """Events the sensor's durable consumer has not had acknowledged: not yet delivered, plus
        delivered and not acknowledged (those a killed sensor held come back after its ack_wait)."""
        try:
            return asyncio.run(self._consumer_backlog())
        except Exception:  # NATS not answering: not drained
            return -1

    def published(self) -> dict[int, float]:
        assert self.nats is not None
        url = self.nats.url

        async def read() -> dict[int, float]:
            out: dict[int, float] = {}
            bus = await JetStreamBus(url).open()
            try:
                seq = 1
                while records := await bus.read(seq, 2_000):
                    for r in records:
                        body = (r.event.get("data") or {}).get("body")
                        if isinstance(body, dict) and isinstance(body.get("n"), int):
                            out[body["n"]] = r.published_at
                    seq = records[-1].seq + 1
            finally:
                await bus.close()
            return out

        return asyncio.run(read())

    def _sensor_lines(self) -> list[str]:
        lines: list[str] = []
        for log in sorted(self.home.glob("sensor-*.log")):
            lines += log.read_text(errors="replace").splitlines()
        return lines

    def trigger_failures(self) -> tuple[int, int]:
        failed = collided = 0
        for line in self._sensor_lines():
            if f"trigger {TRIGGER} failed for events" in line:
                failed += 1
                collided += "already exists" in line
        return failed, collided

    def workflows(self) -> list[tuple[int | None, float, str]]:
        """(n, created, "") of every Workflow custom resource: created is when the sensor logged the
        API server's answer to its create (ms), else the object's creationTimestamp (whole seconds)."""
        assert self.api is not None
        logged: dict[str, float] = {}
        for line in self._sensor_lines():
            if line.endswith(" submitted") and f"trigger {TRIGGER}: workflow/" in line:
                at = _log_time(line)
                name = line.rsplit("workflow/", 1)[1].split(" ", 1)[0]
                if at is not None:
                    logged.setdefault(name, at)
        out: list[tuple[int | None, float, str]] = []
        token = ""
        while True:
            query = f"?limit=5000&continue={token}" if token else "?limit=5000"
            page = self.api.request("GET", f"{OURS}/workflows{query}", timeout=120)
            for wf in page.get("items") or []:
                meta = wf.get("metadata") or {}
                name = str(meta.get("name") or "")
                if not name.startswith(WORKFLOW_PREFIX):
                    continue
                params = ((wf.get("spec") or {}).get("arguments") or {}).get("parameters") or []
                value = next((p.get("value") for p in params if p.get("name") == "n"), None)
                try:
                    n = int(value) if value is not None else None
                except (TypeError, ValueError):
                    n = None
                created = logged.get(name) or _epoch_of_rfc3339(str(meta.get("creationTimestamp")))
                out.append((n, created, ""))
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return out


BUSES: dict[str, type[Bus]] = {"embedded": EmbeddedBus, "jetstream": JetStreamBusRun}


# ============================================================================================ API floor


def workflow_body(name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Workflow custom resource the sensor creates for one event, under ``name`` (from
    ``template``, an earlier result, to spare the YAML parse)."""
    if template is None:
        sensor = yaml.safe_load(SENSOR_YAML)
        template = sensor["spec"]["triggers"][0]["template"]["argoWorkflow"]["source"]["resource"]
    body = copy.deepcopy(template)
    body["apiVersion"] = CRD_API_VERSION
    body["metadata"] = {"name": name, "namespace": NAMESPACE}
    body["spec"]["arguments"]["parameters"][0]["value"] = name
    return body


@dataclass
class ApiFloor:
    concurrency: int
    created: int
    seconds: float
    latency: list[float]  # ms
    cpu: float  # the API server's CPU seconds

    @property
    def rate(self) -> float:
        return self.created / self.seconds


async def _post_workflows(
    url: str, concurrency: int, duration: float, prefix: str
) -> tuple[int, list[float]]:
    counter = iter(range(1 << 62))
    template = workflow_body("x")
    latency: list[float] = []
    created = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        end = time.perf_counter() + duration

        async def client() -> None:
            nonlocal created
            while time.perf_counter() < end:
                body = workflow_body(f"{prefix}{next(counter)}", template)
                t0 = time.perf_counter()
                async with session.post(f"{url}{OURS}/workflows", json=body) as resp:
                    await resp.read()
                    if resp.status == 201 or resp.status == 200:
                        created += 1
                latency.append((time.perf_counter() - t0) * 1e3)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return created, latency


def run_api_floor(args: argparse.Namespace) -> list[ApiFloor]:
    """Raw POSTs of the sensor's Workflow custom resource to a fresh API server (the tests' kmock), at
    the load's concurrency and at 1 (a trigger creates its workflows one after another)."""
    home = Path(tempfile.mkdtemp(prefix=".sluice-bench-api-", dir=args.state_dir))
    api = ApiServer(home / "api").start()
    try:
        api.apply_crds()
        pid = int(getattr(api, "_process").pid)  # noqa: B009 - private to the tests' class
        out = []
        for c in sorted({args.concurrency, 1}, reverse=True):
            cpu0, t0 = proc_cpu(pid), time.perf_counter()
            made, lat = asyncio.run(
                _post_workflows(api.url, c, min(args.duration, 5.0), f"{WORKFLOW_PREFIX}c{c}-")
            )
            out.append(ApiFloor(c, made, time.perf_counter() - t0, lat, proc_cpu(pid) - cpu0))
        return out
    finally:
        api.stop()
        shutil.rmtree(home, ignore_errors=True)


# ============================================================================================ the floor


def floor_child(port: int) -> int:
    """A bare aiohttp server: read the body, answer 200 ``success``. Runs until SIGTERM."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        return web.Response(status=200, text="success")

    async def serve() -> None:
        runner = web.ServerRunner(web.Server(handle))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())
    return 0


# ============================================================================================ the load


@dataclass
class Load:
    """What the clients saw: one record per request."""

    start: float = 0.0  # epoch seconds
    end: float = 0.0
    n: list[int] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)  # epoch seconds
    status: list[int] = field(default_factory=list)  # 0: no answer (connection refused, reset, timeout)
    latency: list[float] = field(default_factory=list)  # seconds
    client_cpu: float = 0.0
    down_s: float = 0.0  # crash: kill to the webhook port answering again

    @property
    def duration(self) -> float:
        return self.end - self.start

    def acked(self) -> dict[int, tuple[float, float]]:
        """n -> (send time, answer latency) of every 2xx-answered request."""
        return {
            n: (t, lat)
            for n, t, s, lat in zip(self.n, self.sent, self.status, self.latency, strict=True)
            if 200 <= s < 300
        }


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection to the webhook, reopened after any failure.

    The load generator shares the machine's cores with the server it measures, so it is kept lean: a
    request is bytes written to a stream and an answer is a status line, headers and a body read by
    ``Content-Length`` (or chunks, or to the close), about a fifth of an aiohttp client session's CPU
    per request. A request that fails in any way (refused, reset, closed early, timed out) answers
    status 0 and closes the connection; the next request opens a new one.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(path, body)
        except (
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            IndexError,
        ):
            self.close()
            return 0

    async def _post(self, path: str, body: bytes) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if b"content-length" in headers:
            await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding") == b"chunked":
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        else:
            await reader.read()
            self.close()
        if headers.get(b"connection") == b"close":
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def run_load(port: int, *, concurrency: int, duration: float, crash: Bus | None = None) -> Load:
    load = Load()
    counter = iter(range(1, 1 << 62))
    connections = [KeepAliveClient(port) for _ in range(concurrency)]
    cpu0 = time.process_time()
    load.start = time.time()
    end = time.perf_counter() + duration

    async def client(conn: KeepAliveClient) -> None:
        while time.perf_counter() < end:
            n = next(counter)
            sent, t0 = time.time(), time.perf_counter()
            status = await conn.post(ENDPOINT, b'{"n": %d}' % n)
            load.n.append(n)
            load.sent.append(sent)
            load.status.append(status)
            load.latency.append(time.perf_counter() - t0)
            if status == 0:
                await asyncio.sleep(0.005)  # the server is down: do not spin on refused connections

    async def crasher(bus: Bus) -> None:
        await asyncio.sleep(duration / 2)
        t0 = time.perf_counter()
        await asyncio.to_thread(bus.kill)
        await asyncio.to_thread(bus.start)
        await asyncio.to_thread(bus.wait_webhook)
        load.down_s = time.perf_counter() - t0

    tasks = [asyncio.create_task(client(conn)) for conn in connections]
    if crash is not None:
        tasks.append(asyncio.create_task(crasher(crash)))
    await asyncio.gather(*tasks)
    load.end = time.time()
    for conn in connections:
        conn.close()
    load.client_cpu = time.process_time() - cpu0
    return load


# ============================================================================================ scenarios


@dataclass
class Result:
    label: str
    load: Load
    server_cpu: float
    rss_mb: float = 0.0
    drain_s: float | None = None
    drained: bool = True
    workflows: list[tuple[int | None, float, str]] = field(default_factory=list)
    published: dict[int, float] = field(default_factory=dict)
    failures: tuple[int, int] = (0, 0)  # trigger failures logged, of which name collisions
    notes: list[str] = field(default_factory=list)  # the bus's own servers (JetStream: NATS, API)

    @property
    def runs_sensor(self) -> bool:
        return self.label in ("steady", "crash")

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.load.status if 200 <= s < 300)

    @property
    def rate(self) -> float:
        return self.accepted / self.load.duration

    def accounting(self) -> dict[str, list[int | None]]:
        """The n of each kind of event: acked, lost, dup, unacked+wf, foreign (see the docstring)."""
        acked = self.load.acked()
        sent = set(self.load.n)
        per_n = Counter(n for n, _, _ in self.workflows)
        return {
            "acked": list(acked),
            "lost": [n for n in acked if per_n[n] == 0],
            "dup": [n for n, c in per_n.items() if c > 1],
            "unacked+wf": [n for n in per_n if n is not None and n in sent and n not in acked],
            "foreign": [n for n, c in per_n.items() for _ in range(c) if n is None or n not in sent],
        }

    @property
    def cpu_ms_per_event(self) -> float:
        """Server CPU per accepted event, in ms."""
        return self.server_cpu / max(1, self.accepted) * 1e3

    def latencies_ms(self) -> dict[str, list[float]]:
        acked = self.load.acked()
        created: dict[int, float] = {}
        for n, at, _ in self.workflows:
            if n is not None and n not in created:
                created[n] = at
        out: dict[str, list[float]] = {"answer": [], "to bus": [], "bus->wf": [], "event->wf": []}
        for n, (sent, lat) in acked.items():
            out["answer"].append(lat * 1e3)
            if n in self.published:
                out["to bus"].append((self.published[n] - sent) * 1e3)
                if n in created:
                    out["bus->wf"].append((created[n] - self.published[n]) * 1e3)
            if n in created:
                out["event->wf"].append((created[n] - sent) * 1e3)
        return out

    def through_rate(self) -> float:
        """Acknowledged events per second from the start of the load to the last of their workflows:
        the rate the whole path sustained, drain included."""
        acked = self.load.acked()
        last = max((at for n, at, _ in self.workflows if n in acked), default=self.load.end)
        done = len({n for n, _, _ in self.workflows if n in acked})
        return done / max(self.load.duration, last - self.load.start)

    def wf_rate(self) -> float:
        during = sum(1 for _, at, _ in self.workflows if self.load.start <= at <= self.load.end)
        return during / self.load.duration


def run_floor(args: argparse.Namespace) -> Result:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child-floor", str(port)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        load = asyncio.run(run_load(port, concurrency=args.concurrency, duration=args.duration))
        cpu = proc_cpu(proc.pid)
        rss = proc_peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return Result("floor", load, cpu, rss)


def drain(bus: Bus, timeout: float, *, stall: float | None = None) -> tuple[float, bool]:
    """Wait until the sensor's consumer has acknowledged everything on the bus, twice 0.5 s apart.
    Gives up after ``timeout`` s, or after ``stall`` s in which the backlog did not shrink."""
    t0 = time.perf_counter()
    streak = 0
    best, progress_at = -1, t0
    while time.perf_counter() - t0 < timeout:
        left = bus.backlog()
        streak = streak + 1 if left == 0 else 0
        if streak >= 2:
            return time.perf_counter() - t0 - 0.5, True
        if left >= 0 and (best < 0 or left < best):
            best, progress_at = left, time.perf_counter()
        if stall is not None and time.perf_counter() - progress_at > stall:
            break
        time.sleep(0.5 if streak else 0.1 if stall is None else 0.25)
    return time.perf_counter() - t0, False


def run_engine(args: argparse.Namespace, label: str, *, profile: Path | None = None) -> Result:
    """One scenario on the server: ``intake`` (no Sensor), ``steady`` or ``crash``."""
    crash = label == "crash"
    home = Path(tempfile.mkdtemp(prefix=".sluice-bench-events-", dir=args.state_dir))
    bus = BUSES[args.bus](home, free_port(), profile=profile)
    if isinstance(bus, JetStreamBusRun):
        bus.sensor_qps = args.sensor_qps
    bus.intake_limit = args.intake_limit
    bus.intake_process = not args.no_intake_process
    try:
        bus.start()
        bus.configure(sensor=label != "intake")
        cpu0 = bus.cpu()
        load = asyncio.run(
            run_load(
                bus.port,
                concurrency=args.concurrency,
                duration=args.duration,
                crash=bus if crash else None,
            )
        )
        drain_s, drained = (None, True)
        if label != "intake" and args.bus == "jetstream":
            # A killed sensor's unacknowledged deliveries come back after its ack_wait (60 s): a
            # stall shorter than that is not the end.
            drain_s, drained = drain(bus, timeout=args.drain_timeout, stall=120.0)
        elif label != "intake":
            drain_s, drained = drain(bus, timeout=max(60.0, 10 * args.duration))
        cpu = bus.cpu() - cpu0
        notes = bus.notes(sum(1 for s in load.status if 200 <= s < 300))
        bus.stop()
        result = Result(
            label,
            load,
            cpu,
            bus.rss_mb,
            drain_s=drain_s,
            drained=drained,
            workflows=bus.workflows(),
            published=bus.published(),
            failures=bus.trigger_failures(),
            notes=notes,
        )
    finally:
        for proc in bus.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        bus.close()
        if args.keep:
            print(f"(kept {home})", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    if not drained:
        print(f"WARNING {label}: the sensor had not drained after {drain_s:.0f} s", flush=True)
    return result


# Where the server's main thread spends its time, per event: (label, file suffix, function). The
# times are cumulative (callees included) and only while the function runs, not while it awaits.
BREAKDOWN = (
    ("webhook request (parse, CloudEvent, publish)", "events/sources/webhook.py", "_handle"),
    ("sensor trigger loop, all of it", "engine/runtime/sensors.py", "_loop"),
    ("  bus fetch", "runtime/local/eventbus.py", "fetch"),
    ("  bus ack_batch", "runtime/local/eventbus.py", "ack_batch"),
    ("  on_event (filters, conditions)", "engine/events/sensor.py", "on_event"),
    ("  plan_action (parameters, object)", "engine/events/actions.py", "plan_action"),
    ("  trigger submit (parse, name check, submit)", "runtime/local/triggers.py", "_submit"),
    ("    LocalEngine.prepare (validate, prepare)", "runtime/local/engine.py", "prepare"),
    ("    LocalEngine._new_run (Reconciler())", "runtime/local/engine.py", "_new_run"),
    ("    Store.insert_workflow", "runtime/local/store.py", "insert_workflow"),
    ("workflow driver (LocalEngine._drive)", "runtime/local/engine.py", "_drive"),
    ("  LocalEngine._apply", "runtime/local/engine.py", "_apply"),
    ("reconciles (the first, in submit, and any later)", "runtime/local/engine.py", "_reconcile"),
    ("build_globals (inside the above)", "engine/workflows/globals.py", "build_globals"),
    ("state.db transactions (Store.tx, Store.flush)", "runtime/local/store.py", "tx"),
    ("  commits of batches (Store.flush)", "runtime/local/store.py", "flush"),
    ("events.db transactions (the bus's writer)", "runtime/local/eventbus.py", "_run_batch"),
    ("event loop idle (epoll)", "~", "<method 'poll' of 'select.epoll' objects>"),
)


def print_profile(path: Path, events: int) -> None:
    import pstats

    out = sys.stderr
    stats = pstats.Stats(str(path), stream=out)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = max(1e-9, float(stats.total_tt))  # type: ignore[attr-defined]
    print(
        f"\ncProfile of the server's main thread, steady scenario: {total:.1f} s for {events:,} events"
        " (the profiler slows Python code down, so read the shares more than the times)",
        file=out,
    )
    print(
        f"  {'(a coroutine call counts each resumption)':<48}{'ms/event':>10}{'share':>8}{'calls/event':>13}",
        file=out,
    )
    for label, suffix, func in BREAKDOWN:
        hits = [v for (f, _, fn), v in raw.items() if fn == func and f.endswith(suffix)]
        calls = sum(h[1] for h in hits)
        cum = sum(h[3] for h in hits)
        print(
            f"  {label:<48}{cum / events * 1e3:>10.3f}{cum / total:>8.0%}{calls / events:>13.2f}",
            file=out,
        )
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


# ============================================================================================ report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _p(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{pct(values, 0.5):,.1f} / {pct(values, 0.99):,.1f}"


def report(
    args: argparse.Namespace,
    floor: Result | None,
    runs: list[Result],
    api_floor: list[ApiFloor],
    sweep: list[tuple[int, Result]] | None = None,
) -> None:
    target = TARGETS[args.bus]
    head = (
        f"{'scenario':<9}{'sent':>8}{'2xx':>8}{'failed':>7}{'ev/s':>8}{'x floor':>9}{'x Argo':>8}"
        f"{'wf/s':>8}{'drain s':>9}{'server CPU':>13}{'client CPU':>13}{'RSS':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in [*([floor] if floor else []), *runs]:
        sent = len(r.load.n)
        failed = sent - r.accepted
        ratio = f"{r.rate / floor.rate:.2f}" if floor is not None else "-"
        wf = f"{r.wf_rate():,.0f}" if r.runs_sensor else "-"
        drain_s = f"{r.drain_s:.1f}" if r.drain_s is not None else "-"
        server = f"{r.cpu_ms_per_event:.3f} ms"
        client = f"{r.load.client_cpu / max(1, sent) * 1e3:.3f} ms"
        print(
            f"{r.label:<9}{sent:>8,}{r.accepted:>8,}{failed:>7,}{r.rate:>8,.0f}{ratio:>9}"
            f"{r.rate / ARGO_EVENTS_PER_S:>8.1f}{wf:>8}{drain_s:>9}{server:>13}{client:>13}"
            f"{r.rss_mb:>5.0f} MB"
        )
    server = "event process" if args.bus == "jetstream" else "server"
    print(f"  ({server} CPU per accepted event, client CPU per request; RSS: the largest {server} peak)")
    for r in runs:
        if r.notes:
            print(f"  {r.label}: " + "; ".join(r.notes))
    if api_floor:
        print(
            "\nAPI server floor: raw POSTs of the sensor's Workflow custom resource to a fresh API server"
            " (the tests' kmock, Python), no event path"
        )
        head = f"{'clients':>9}{'created/s':>11}{'p50 / p99 ms':>16}{'API CPU':>14}"
        print(head)
        print("-" * len(head))
        for af in api_floor:
            print(
                f"{af.concurrency:>9}{af.rate:>11,.0f}{_p(af.latency):>16}"
                f"{af.cpu / max(1, af.created) * 1e3:>11.3f} ms"
            )
        print(
            "  (a sensor trigger creates its workflows one after another: the 1-client row is its ceiling"
            " here, before its own API client limit)"
        )

    print("\nlatency, ms p50 / p99:")
    head = f"{'scenario':<9}{'answer':>16}{'to bus':>16}{'bus->wf':>22}{'event->wf':>22}{'x Argo p50':>12}"
    print(head)
    print("-" * len(head))
    if floor is not None:
        print(f"{'floor':<9}{_p([x * 1e3 for x in floor.load.latency]):>16}")
    for r in runs:
        lat = r.latencies_ms()
        e2e = lat["event->wf"]
        argo = f"{pct(e2e, 0.5) / ARGO_PROCESSING_MS:.2f}" if e2e else "-"
        print(
            f"{r.label:<9}{_p(lat['answer']):>16}{_p(lat['to bus']):>16}{_p(lat['bus->wf']):>22}"
            f"{_p(e2e):>22}{argo:>12}"
        )

    sensed = [r for r in runs if r.runs_sensor]
    books: dict[str, dict[str, int]] = {}
    if sensed:
        print("\nevery acknowledged event, one workflow:")
        head = (
            f"{'scenario':<9}{'acked':>8}{'workflows':>11}{'lost':>7}{'dup':>6}{'unacked+wf':>12}"
            f"{'foreign':>9}{'down s':>8}{'trigger failures (name collisions)':>37}"
        )
        print(head)
        print("-" * len(head))
    for r in sensed:
        a = {k: len(v) for k, v in r.accounting().items()}
        books[r.label] = a
        down = f"{r.load.down_s:.2f}" if r.label == "crash" else "-"
        failures = f"{r.failures[0]:,} ({r.failures[1]:,})"
        print(
            f"{r.label:<9}{a['acked']:>8,}{len(r.workflows):>11,}{a['lost']:>7,}{a['dup']:>6,}"
            f"{a['unacked+wf']:>12,}{a['foreign']:>9,}{down:>8}{failures:>37}"
        )
    for r in sensed:
        for key, ns in r.accounting().items():
            if key in ("lost", "dup") and ns:
                shown = ", ".join(str(n) for n in sorted(ns, key=lambda n: n or 0)[:10])
                print(f"  {r.label} {key}: n = {shown}{' ...' if len(ns) > 10 else ''}")

    if sweep:
        print(
            f"\nsteady at each client count (--sweep, {args.sweep_duration:g} s of load each;"
            f" C={args.concurrency} is the steady run above):"
        )
        head = (
            f"{'clients':>8}{'ev/s':>8}{'wf/s':>8}{'server CPU':>13}{'answer p50/p99':>18}"
            f"{'event->wf p50/p99':>21}{'lost':>6}{'dup':>5}"
        )
        print(head)
        print("-" * len(head))
        for c, r in sweep:
            lat = r.latencies_ms()
            a = r.accounting()
            print(
                f"{c:>8}{r.rate:>8,.0f}{r.wf_rate():>8,.0f}"
                f"{r.cpu_ms_per_event:>10.3f} ms{_p(lat['answer']):>18}"
                f"{_p(lat['event->wf']):>21}{len(a['lost']):>6}{len(a['dup']):>5}"
            )

    print(f"\ntargets ({args.bus} bus, C={args.concurrency}, {args.duration:g} s of load):")
    steady = next((r for r in runs if r.label == "steady"), None)
    if steady is not None:
        lat = steady.latencies_ms()
        ratio = f"{steady.rate / floor.rate:.2f} x floor, " if floor is not None else ""
        print(
            f"  accepted events/s           {steady.rate:>8,.0f}   >= {target.events_per_s:,.0f}   "
            f"{_verdict(steady.rate >= target.events_per_s)}   ({ratio}"
            f"{steady.rate / ARGO_EVENTS_PER_S:.0f} x Argo's {ARGO_EVENTS_PER_S:g}/s)"
        )
        through = steady.through_rate()
        print(
            f"  events/s through to workflow {through:>7,.0f}   >= {target.events_per_s:,.0f}   "
            f"{_verdict(through >= target.events_per_s)}   (acknowledged events / load start to their"
            " last workflow)"
        )
        if target.p99_ms is not None:
            for key, what in (("event->wf", "p99 event -> workflow"), ("answer", "p99 webhook answer")):
                p99 = pct(lat[key], 0.99)
                print(
                    f"  {what:<27} {p99:>8.1f}   <= {target.p99_ms:g} ms   "
                    f"{_verdict(bool(lat[key]) and p99 <= target.p99_ms)}"
                )
        if target.p99_ms is not None and sweep:
            p99s = [(r.rate, c, pct(r.latencies_ms()["event->wf"], 0.99)) for c, r in sweep]
            # pct gives NaN for a run without workflows, which no comparison keeps.
            ok = [(rate, c, p99) for rate, c, p99 in p99s if p99 <= target.p99_ms]
            if ok:
                rate, c, p99 = max(ok)
                where = f"(at C={c}, p99 event -> workflow {p99:.1f} ms)"
            else:
                rate, where = 0.0, f"(no concurrency of {','.join(str(c) for c, _ in sweep)} kept it)"
            print(
                f"  events/s at p99 <= {target.p99_ms:g} ms     {rate:>8,.0f}"
                f"   >= {target.events_per_s:,.0f}   "
                f"{_verdict(rate >= target.events_per_s)}   {where}"
            )
        print(
            f"  sensor keeps up (drain)     {steady.drain_s or 0:>8.1f}   <= 1 s   "
            f"{_verdict(steady.drained and (steady.drain_s or 0) <= 1.0)}   (workflows/s during the load:"
            f" {steady.wf_rate():,.0f})"
        )
    for label, a in books.items():
        for key in ("lost", "dup"):
            print(f"  {label + ' ' + key:<27} {a[key]:>8,}   == 0       {_verdict(a[key] == 0)}")
    for name, t in TARGETS.items():
        if name != args.bus:
            print(f"  {name}: >= {t.events_per_s:,.0f} events/s - not measured in this run (`--bus {name}`)")
    print(
        f"\nArgo Events' published stress test (quoted, NOT measured in this run): ~{ARGO_EVENTS_PER_S:g}"
        f" events/s, ~{ARGO_PROCESSING_MS:g} ms processing per event."
    )


# ============================================================================================ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="5 s of load per scenario instead of 20")
    ap.add_argument("--duration", type=float, default=None, help="seconds of load per scenario (20)")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients (16)")
    ap.add_argument("--bus", choices=sorted(BUSES), default="embedded")
    ap.add_argument(
        "--sensor-qps",
        type=float,
        default=None,
        help=f"jetstream: run the sensor with its API client limit at this rate (production: {CLIENT_QPS:g})",
    )
    ap.add_argument(
        "--drain-timeout",
        type=float,
        default=1800.0,
        help="jetstream: give the sensor at most this long to drain after the load (1800 s)",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from {','.join(SCENARIOS)} (default: all)",
    )
    ap.add_argument(
        "--intake-limit",
        type=int,
        default=None,
        help="embedded: run the server with this --intake-limit (0: no pacing; default: the server's own)",
    )
    ap.add_argument(
        "--no-intake-process",
        action="store_true",
        help="embedded: serve the webhooks from the server's own process (sluice server --no-intake-process)",
    )
    ap.add_argument(
        "--sweep",
        default="2,4,8",
        help="embedded: also run steady at these client counts, for the rate its latency target allows"
        " (default 2,4,8; '' for none)",
    )
    ap.add_argument("--no-crash", action="store_true", help="skip the SIGKILL-and-restart scenario")
    ap.add_argument("--profile", action="store_true", help="cProfile the server in the steady scenario")
    ap.add_argument("--keep", action="store_true", help="keep each scenario's SLUICE_HOME")
    ap.add_argument(
        "--state-dir",
        default=str(Path.home()),
        help="where each run's temporary SLUICE_HOME goes (default: the home directory, as ~/.sluice)",
    )
    ap.add_argument("--child-floor", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_floor is not None:
        return floor_child(args.child_floor)
    args.duration = args.duration or (5.0 if args.quick else 20.0)
    args.sweep_duration = min(args.duration, 10.0)
    try:
        args.sweep_counts = sorted({int(c) for c in args.sweep.split(",") if c.strip()})
    except ValueError:
        ap.error(f"--sweep: not a comma-separated list of client counts: {args.sweep!r}")
    if any(c < 1 for c in args.sweep_counts):
        ap.error("--sweep: client counts start at 1")
    # SIGTERM unwinds like an error, so the scenario's cleanup stops the processes it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scenarios = [x for x in args.scenarios.split(",") if x and not (args.no_crash and x == "crash")]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.profile and "steady" not in scenarios:
        ap.error("--profile profiles the steady scenario")

    if args.bus == "jetstream" and natsserver.find_binary() is None:
        ap.error("--bus jetstream needs nats-server (scripts/install-sysdeps.sh installs it)")
    if args.bus != "jetstream" and args.sensor_qps is not None:
        ap.error("--sensor-qps is for --bus jetstream")
    if args.bus == "jetstream" and args.intake_limit is not None:
        ap.error("--intake-limit is for --bus embedded (the cluster's event processes do not pace)")
    if args.bus == "jetstream" and args.no_intake_process:
        ap.error("--no-intake-process is for --bus embedded")
    if args.bus == "jetstream" and args.profile:
        ap.error("--profile profiles `sluice server`: it is for --bus embedded")

    load1, load5, _ = os.getloadavg()
    print(
        f"events: webhook -> workflow submitted, {args.bus} bus, {args.concurrency} concurrent clients,"
        f" {args.duration:g} s of load per scenario; engine from {Path(engine.__file__).parent}"
    )
    if args.bus == "jetstream":
        limit = (
            f"raised to {args.sensor_qps:g} by --sensor-qps (NOT the production setting)"
            if args.sensor_qps is not None
            else f"{CLIENT_QPS:g} requests/s, burst {CLIENT_BURST} (production, eventrun.CLIENT_QPS)"
        )
        print(
            "cluster pipeline on this machine: `sluice eventsource run` -> nats-server -js -> `sluice sensor"
            ' run` -> the tests\' API server (kmock);\n"workflow submitted" = the Workflow custom resource'
            " exists (no Workflow controller runs); the sensor's API client limit: " + limit
        )
    if args.bus == "embedded":
        pace = f"the server's default ({PACE_LIMIT})" if args.intake_limit is None else str(args.intake_limit)
        print(f"intake pacing (sluice server --intake-limit): {pace}; 0 means none")
        where = "the server's own process" if args.no_intake_process else "an intake process of their own"
        print(f"webhooks served from {where} (sluice server --[no-]intake-process)")
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, aiohttp {aiohttp.__version__},"
        f" {os.cpu_count()} CPU(s), load {load1:.2f} / {load5:.2f} (1 / 5 min)"
    )
    print(
        f"homes under {args.state_dir}: a committed SQLite insert (WAL, synchronous=NORMAL) takes"
        f" {sqlite_commit_us(args.state_dir):.0f} us there; clients, server and floor share this machine\n"
    )

    floor = run_floor(args) if "floor" in scenarios else None
    sensed = any(x in scenarios for x in ("steady", "crash"))
    api_floor = run_api_floor(args) if args.bus == "jetstream" and sensed else []
    runs = []
    profile = Path(tempfile.mkdtemp(prefix="sluice-events-prof-")) / "server.prof" if args.profile else None
    for label in ("intake", "steady", "crash"):
        if label in scenarios:
            runs.append(run_engine(args, label, profile=profile if label == "steady" else None))
    sweep: list[tuple[int, Result]] = []
    steady = next((r for r in runs if r.label == "steady"), None)
    if steady is not None and args.bus == "embedded" and args.sweep_counts:
        for c in sorted({*args.sweep_counts, args.concurrency}):
            if c == args.concurrency:
                sweep.append((c, steady))
            else:
                one = argparse.Namespace(**{**vars(args), "concurrency": c, "duration": args.sweep_duration})
                sweep.append((c, run_engine(one, "steady")))
    report(args, floor, runs, api_floor, sweep)
    if profile is not None and profile.exists():
        steady = next(r for r in runs if r.label == "steady")
        print_profile(profile, steady.accepted)
        if args.keep:
            print(f"(kept {profile})", file=sys.stderr)
        else:
            shutil.rmtree(profile.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
