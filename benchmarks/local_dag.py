"""What the embedded runtime costs per step, against an asyncio floor measured in the same run.

What is measured: a DAG of N steps, each running the container command ``[true]``, in barrier layers 10
wide (every task depends on all 10 tasks of the layer before), with ``parallelism: 2``, run through the
normal local path: ``LocalEngine.submit`` (validate, prepare, insert into SQLite), the shared core, the
process executor, every reconcile's changes committed to SQLite (WAL) under a temporary ``SLUICE_HOME``
(made in ``--state-dir``, by default the home directory, on the filesystem ``~/.sluice`` uses; the header
prints what a mkdir plus a file creation costs there, since the engine does a few of each per step).

The floor is the least any Python scheduler can do for the same work: an asyncio scheduler over the same
dependency structure, at most 2 steps at a time, each step ``asyncio.create_subprocess_exec('true')``;
no persistence, no logs, no isolation. Engine and floor each run in a fresh child process (so the engine's
peak RSS is its own, read from ``VmHWM`` in /proc/self/status), alternately, ``--repeat`` times per N
(default 5); medians are reported because the machine is shared and noisy.

How to read it:

* ``run s``      wall time from submit to the workflow's end (engine) / from first spawn to last exit
                 (floor); the spread is min-max over the repeats;
* ``overhead``   (engine run - floor run) / N in ms per step: what the engine adds to each step — the
                 target is <= 2 ms;
* ``x floor``    engine run / floor run;
* ``cpu ms/step`` CPU time (user+sys) of the engine process itself per step (the steps' own CPU is not
                 in it);
* ``start s``    fixed cost before the first submit: importing ``engine`` plus ``LocalEngine.start``;
* ``peak RSS``   VmHWM of the engine process at the largest N — the target is <= 80 MB; the floor's
                 is printed beside it (a bare Python with asyncio).

Peers' figures (dagster, prefect, luigi) are printed for context only: they come from
/work/shared/notes/real-components.md, measured on a machine of this kind, not in this run. A missed
target is a finding, not a failure: the exit code is 0 either way. ``--quick``: N = 50, once.

Run: ``.venv/bin/python benchmarks/local_dag.py [--quick] [--repeat N] [--sizes 200,1000] [--profile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Measure the checkout this file is in, whatever tree the venv's editable install points at (the
# children run this same file, so they get the same path).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH = 10
PARALLELISM = 2
TARGET_OVERHEAD_MS = 2.0
TARGET_RSS_MB = 80.0

# Published figures from the project's notes (same DAG shape, measured there, not in this run):
# name, per-task overhead over the floor, fixed start, memory.
PEERS = (
    ("their floor: spawning `true` from Python", "0.6-0.8 ms (absolute)", "-", "-"),
    ("asyncio barrier-DAG scheduler", "0.5 ms", "-", "-"),
    ("dagster (in-process)", "~9 ms", "~6 s", "~110 MB"),
    ("prefect 3", "~11 ms", "~26 s", "~400 MB"),
    ("luigi", "~18 ms", "0.1-0.4 s", "33 MB"),
)

# ============================================================================================ the DAG


def task_name(layer: int, i: int) -> str:
    return f"t{layer}-{i}"


def dependencies(n: int) -> dict[str, list[str]]:
    """Barrier layers WIDTH wide: every task depends on every task of the previous layer."""
    return {
        task_name(layer, i): [task_name(layer - 1, j) for j in range(WIDTH)] if layer else []
        for layer in range(n // WIDTH)
        for i in range(WIDTH)
    }


def manifest(n: int) -> dict[str, Any]:
    tasks = []
    for name, deps in dependencies(n).items():
        task: dict[str, Any] = {"name": name, "template": "true"}
        if deps:
            task["dependencies"] = deps
        tasks.append(task)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "bench-dag-"},
        "spec": {
            "entrypoint": "main",
            "parallelism": PARALLELISM,
            "templates": [
                {"name": "main", "dag": {"tasks": tasks}},
                {"name": "true", "container": {"image": "busybox", "command": ["true"]}},
            ],
        },
    }


# ============================================================================================ children


def _peak_rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _cpu() -> float:
    return time.process_time()  # user + sys of this process, not of the steps it waited for


async def floor_run(n: int) -> dict[str, Any]:
    """Ready-queue scheduler: start what is ready while fewer than PARALLELISM run; release dependents."""
    deps = dependencies(n)
    waiting = {name: len(d) for name, d in deps.items()}
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, ds in deps.items():
        for d in ds:
            dependents[d].append(name)
    ready = deque(name for name, count in waiting.items() if count == 0)
    failures = 0

    async def step(name: str) -> str:
        nonlocal failures
        proc = await asyncio.create_subprocess_exec(
            "true",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            failures += 1
        return name

    cpu0, t0 = _cpu(), time.perf_counter()
    running: set[asyncio.Task[str]] = set()
    done_count = 0
    while ready or running:
        while ready and len(running) < PARALLELISM:
            running.add(asyncio.create_task(step(ready.popleft())))
        finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            done_count += 1
            for child in dependents[task.result()]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
    wall = time.perf_counter() - t0
    return {
        "run": wall,
        "cpu": _cpu() - cpu0,
        "start": 0.0,
        "steps": done_count - failures,
        "phase": "Succeeded" if done_count == n and not failures else "Failed",
    }


async def engine_run(n: int, profile: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    import engine as engine_package
    from engine.runtime.local.engine import LocalEngine
    from engine.spec.workflow import Workflow
    from engine.workflows import nodes as N

    engine = LocalEngine()  # the store lives in $SLUICE_HOME, set by the parent
    await engine.start(adopt=False)
    start = time.perf_counter() - t0
    wf = Workflow.parse(manifest(n))
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    cpu0, t1 = _cpu(), time.perf_counter()
    run = await engine.submit(wf)
    await run.done.wait()
    wall = time.perf_counter() - t1
    cpu = _cpu() - cpu0
    if prof is not None:
        prof.disable()
    steps = sum(1 for node in run.status.nodes.values() if node.type == N.POD and node.phase == "Succeeded")
    await engine.close()
    if prof is not None:
        import pstats

        out = sys.stderr
        print(f"cProfile of submit..done, engine process, N={n:,}", file=out)
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(45)
    return {
        "run": wall,
        "cpu": cpu,
        "start": start,
        "steps": steps,
        "phase": run.status.phase,
        "engine": str(Path(engine_package.__file__).parent),
    }


def child_main(kind: str, n: int, profile: bool) -> int:
    result = asyncio.run(floor_run(n) if kind == "floor" else engine_run(n, profile))
    result["rss_kb"] = _peak_rss_kb()
    print(json.dumps(result), flush=True)
    return 0


# ============================================================================================ parent


@dataclass
class Sample:
    run: float
    cpu: float
    start: float
    rss_kb: int
    steps: int
    phase: str


def fs_latency_us(directory: str, count: int = 200) -> float:
    """Mean microseconds of one mkdir plus one file creation in ``directory``: the engine does a few of
    each per step, so a slow filesystem shows in the overhead and not in the floor."""
    base = tempfile.mkdtemp(prefix=".sluice-fs-", dir=directory)
    try:
        t0 = time.perf_counter()
        for i in range(count):
            os.mkdir(f"{base}/{i}")
            with open(f"{base}/{i}/f", "wb"):
                pass
        return (time.perf_counter() - t0) / count * 1e6
    finally:
        shutil.rmtree(base, ignore_errors=True)


def spawn_child(kind: str, n: int, *, state_dir: str, profile: bool = False) -> Sample:
    home = tempfile.mkdtemp(prefix=".sluice-bench-", dir=state_dir)
    try:
        env = {**os.environ, "SLUICE_HOME": home}
        args = [sys.executable, os.path.abspath(__file__), "--child", kind, "--n", str(n)]
        if profile:
            args.append("--profile")
        proc = subprocess.run(
            args, env=env, stdout=subprocess.PIPE, stderr=None, text=True, check=False, timeout=3600
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} child for N={n} exited {proc.returncode}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        if kind == "engine" and Path(data["engine"]) != ROOT / "engine":
            raise RuntimeError(f"the child imported engine from {data['engine']}, not {ROOT / 'engine'}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return Sample(
        run=data["run"],
        cpu=data["cpu"],
        start=data["start"],
        rss_kb=data["rss_kb"],
        steps=data["steps"],
        phase=data["phase"],
    )


def _verdict(ok: bool, judged: bool) -> str:
    if not judged:
        return "(not judged: --quick)"
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: N = 50, once")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each side per N (default 5)")
    ap.add_argument("--sizes", default=None, help="comma-separated N (multiples of 10), default 200,1000")
    ap.add_argument("--profile", action="store_true", help="cProfile one engine run at the largest N")
    ap.add_argument(
        "--state-dir",
        default=str(Path.home()),
        help="where each run's temporary SLUICE_HOME goes (default: the home directory, as ~/.sluice)",
    )
    ap.add_argument("--child", choices=["engine", "floor"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.child, args.n, args.profile)

    sizes = [int(s) for s in (args.sizes or ("50" if args.quick else "200,1000")).split(",")]
    repeat = args.repeat or (1 if args.quick else 5)
    judged = not args.quick
    if args.profile:
        spawn_child("engine", max(sizes), state_dir=args.state_dir, profile=True)
        return 0

    print(
        f"local_dag: barrier DAG {WIDTH} wide, parallelism {PARALLELISM}, each step `true`; engine vs"
        f" asyncio floor, each in a fresh process, median of {repeat}; Python {platform.python_version()},"
        f" {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}; engine from {ROOT / 'engine'}"
    )
    print(
        f"state under {args.state_dir}: mkdir + file creation there takes"
        f" {fs_latency_us(args.state_dir):.0f} us (the engine does a few per step; the floor none)"
    )
    head = (
        f"{'N':>6}{'side':>8}{'run s (min-max)':>24}{'overhead ms/step':>18}{'x floor':>9}"
        f"{'cpu ms/step':>13}{'start s':>9}{'peak RSS':>10}"
    )
    print(head)
    print("-" * len(head))
    summary: dict[int, tuple[float, float, float, float]] = {}
    for n in sizes:
        floors: list[Sample] = []
        engines: list[Sample] = []
        for r in range(repeat):
            # Alternate which side goes first so drifting load hits both alike.
            order = ("floor", "engine") if r % 2 == 0 else ("engine", "floor")
            for kind in order:
                s = spawn_child(kind, n, state_dir=args.state_dir)
                if s.phase != "Succeeded" or s.steps != n:
                    print(f"WARNING {kind} N={n}: {s.phase}, {s.steps} of {n} steps succeeded", flush=True)
                (floors if kind == "floor" else engines).append(s)
        f_run = statistics.median(s.run for s in floors)
        e_run = statistics.median(s.run for s in engines)
        overhead = (e_run - f_run) / n * 1e3
        e_rss = statistics.median(s.rss_kb for s in engines) / 1024
        f_rss = statistics.median(s.rss_kb for s in floors) / 1024
        cpu_overhead = (
            (statistics.median(s.cpu for s in engines) - statistics.median(s.cpu for s in floors)) / n * 1e3
        )
        summary[n] = (overhead, e_rss, f_rss, cpu_overhead)
        for label, samples, ov, ratio in (
            ("floor", floors, "", ""),
            ("engine", engines, f"{overhead:.2f}", f"{e_run / f_run:.2f}"),
        ):
            runs = [s.run for s in samples]
            spread = f"{statistics.median(runs):.2f} ({min(runs):.2f}-{max(runs):.2f})"
            cpu = statistics.median(s.cpu for s in samples) / n * 1e3
            start = f"{statistics.median(s.start for s in samples):.2f}" if label == "engine" else "-"
            rss = statistics.median(s.rss_kb for s in samples) / 1024
            print(
                f"{n:>6}{label:>8}{spread:>24}{ov:>18}{ratio:>9}{cpu:>13.2f}{start:>9}{rss:>7.0f} MB",
                flush=True,
            )
        floor_per = f_run / n * 1e3
        print(f"{'':>14}floor per step: {floor_per:.2f} ms (spawn + wait of `true`, 2 at a time)")

    big = max(sizes)
    print(f"\ntargets (judged at N={', '.join(f'{n:,}' for n in sizes)}; RSS at N={big:,}):")
    for n in sizes:
        ov, cpu_ov = summary[n][0], summary[n][3]
        print(
            f"  per-step overhead, N={n:<6,} {ov:>6.2f} ms   <= {TARGET_OVERHEAD_MS:g} ms   "
            f"{_verdict(ov <= TARGET_OVERHEAD_MS, judged)}   (engine CPU beyond the floor's:"
            f" {cpu_ov:.2f} ms/step)"
        )
    _, e_rss, f_rss, _ = summary[big]
    print(
        f"  engine peak RSS, N={big:<8,} {e_rss:>6.0f} MB   <= {TARGET_RSS_MB:g} MB   "
        f"{_verdict(e_rss <= TARGET_RSS_MB, judged)}   (floor process: {f_rss:.0f} MB)"
    )
    print("\npeers on the same DAG shape (published in the project's notes, NOT measured in this run):")
    print(f"  {'':<42}{'per-task overhead':>22}{'fixed start':>13}{'memory':>10}")
    for name, per_task, start, memory in PEERS:
        print(f"  {name:<42}{per_task:>22}{start:>13}{memory:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
