"""How the workflow planner alone scales: CPU time of ``Reconciler.reconcile`` to completion.

What is measured: the pure core (``engine.workflows.reconciler``) with no runtime at all. Every RunStep
of a Plan is answered at once with a ``Succeeded`` StepOutcome in the next reconcile, so the figures are
the planner's own cost: no processes, no SQLite, no waiting. Scenarios, each at 1,000 and 10,000 steps:

* ``layered``  a DAG of barrier layers 10 tasks wide, each task depending on all 10 tasks of the layer
               before (N/10 rounds; the shape of ``benchmarks/local_dag.py``);
* ``flat``     a DAG of N independent tasks (everything starts in the first reconcile);
* ``items``    a steps template with one step fanned out by ``withItems`` over N items.

For each scenario and size it reports, as the median of ``--repeat`` runs (CPU time from
``time.process_time``, so a busy shared machine matters less than for wall time):

* ``submit``    parse + validate + prepare + build the Reconciler (what ``sluice submit`` pays once);
* ``reconcile`` the sum of all reconcile calls until the workflow finished — the first target;
* ``gc %``      the share of that CPU time spent in Python's cyclic garbage collector;
* ``us/step``   reconcile CPU per step, and ``floor``: the same per step for a minimal Python DAG
                scheduler run in the same process over the same dependency structure (Kahn's algorithm,
                one dict per node record and per action). ``x floor`` is the planner's cost in units of
                that floor, comparable between machines;
* ``longest``   the longest single reconcile: how long a runtime's loop is blocked at once;
* ``json``/``gzip`` the final ``status.to_dict()`` as compact JSON, and gzip'ed at level 6 (Argo's
                ``compressedNodes`` level); the Kubernetes runtime stores it base64-encoded (x 4/3).

The planner runs with the garbage-collector settings every runtime applies at start-up
(``engine.runtime.gctune.tune_gc``: long-lived node graphs would otherwise be rescanned over and over);
``--default-gc`` measures with Python's defaults instead, for comparison.

Targets (printed next to the figures with PASS/MISS, judged at 10,000 only): reconcile CPU <= 2 s,
time(10k)/time(1k) <= 12 (linear is 10), gzip'ed status <= 1 MB (etcd's object limit). Missing a target
is a finding, not a failure: the exit code is 0 either way. ``--quick`` runs 100 and 1,000 once.

Run: ``.venv/bin/python benchmarks/core_scale.py [--quick] [--repeat N] [--profile SCENARIO]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import gzip
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Measure the checkout this file is in, whatever tree the venv's editable install points at.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine
from engine.spec.workflow import Workflow
from engine.workflows.plan import RunStep, StepOutcome
from engine.workflows.reconciler import Reconciler
from engine.workflows.submit import prepare_workflow
from engine.workflows.validate import validate_workflow

WIDTH = 10
START = 1_700_000_000.0
# Node ids are Argo's <workflow>-<fnv32a(node name)>: among 10,000 names a 32-bit collision is a ~1 %
# event, and a colliding step is silently never run (with suffix "bench", items 6058 and 6496 collide).
# This suffix gives no collision in any scenario here; ``measure`` reports lost steps if one ever appears.
NAME_SUFFIX = "abcde"

TARGET_SECONDS = 2.0
TARGET_SCALING = 12.0
TARGET_GZIP_BYTES = 1_000_000

# ============================================================================================ manifests


def _workflow(templates: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "bench-"},
        "spec": {"entrypoint": "main", "templates": templates},
    }


NOOP = {"name": "noop", "container": {"image": "alpine:3", "command": ["true"]}}


def layered_dag(n: int, width: int = WIDTH) -> dict[str, Any]:
    """Barrier layers ``width`` wide: every task depends on every task of the previous layer."""
    tasks: list[dict[str, Any]] = []
    for layer in range(n // width):
        for i in range(width):
            task: dict[str, Any] = {"name": f"t{layer}-{i}", "template": "noop"}
            if layer:
                task["dependencies"] = [f"t{layer - 1}-{j}" for j in range(width)]
            tasks.append(task)
    return _workflow([{"name": "main", "dag": {"tasks": tasks}}, NOOP])


def flat_dag(n: int) -> dict[str, Any]:
    return _workflow(
        [{"name": "main", "dag": {"tasks": [{"name": f"t{i}", "template": "noop"} for i in range(n)]}}, NOOP]
    )


def with_items(n: int) -> dict[str, Any]:
    step = {
        "name": "each",
        "template": "echo",
        "arguments": {"parameters": [{"name": "x", "value": "{{item}}"}]},
        "withItems": list(range(n)),
    }
    echo = {
        "name": "echo",
        "inputs": {"parameters": [{"name": "x"}]},
        "container": {"image": "alpine:3", "command": ["true"], "args": ["{{inputs.parameters.x}}"]},
    }
    return _workflow([{"name": "main", "steps": [[step]]}, echo])


def layered_deps(n: int, width: int = WIDTH) -> dict[str, list[str]]:
    return {
        f"t{layer}-{i}": [f"t{layer - 1}-{j}" for j in range(width)] if layer else []
        for layer in range(n // width)
        for i in range(width)
    }


def flat_deps(n: int) -> dict[str, list[str]]:
    return {f"t{i}": [] for i in range(n)}


def items_deps(n: int) -> dict[str, list[str]]:
    return {f"each({i}:{i})": [] for i in range(n)}


@dataclass(frozen=True)
class Scenario:
    name: str
    describe: str
    manifest: Callable[[int], dict[str, Any]]
    deps: Callable[[int], dict[str, list[str]]]


SCENARIOS = (
    Scenario("layered", f"DAG, barrier layers {WIDTH} wide", layered_dag, layered_deps),
    Scenario("flat", "DAG, N independent tasks", flat_dag, flat_deps),
    Scenario("items", "steps, withItems over N items", with_items, items_deps),
)

# ============================================================================================ measuring


@dataclass
class Figures:
    parse: float
    validate: float
    prepare: float
    construct: float
    reconcile: float
    longest: float
    rounds: int
    steps: int
    nodes: int
    json_bytes: int
    gzip_bytes: int
    phase: str
    floor: float
    gc: float = 0.0

    @property
    def submit(self) -> float:
        return self.parse + self.validate + self.prepare + self.construct


class _GcClock:
    """CPU time the cyclic garbage collector spends while a reconcile runs (part of its time)."""

    def __init__(self) -> None:
        self.active = False
        self.spent = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.process_time()
        elif self.active:
            self.spent += time.process_time() - self._start


_GC = _GcClock()
gc.callbacks.append(_GC)


def run_planner(manifest: dict[str, Any], profile: cProfile.Profile | None = None) -> Figures:
    """Submit ``manifest`` and reconcile it to the end, answering every RunStep with Succeeded."""
    clock = time.process_time
    t0 = clock()
    wf = Workflow.parse(manifest)
    t1 = clock()
    validate_workflow(wf)
    t2 = clock()
    wf, status = prepare_workflow(wf, name_suffix=NAME_SUFFIX, uid="uid-bench", now=START)
    t3 = clock()
    rec = Reconciler(wf, status)
    t4 = clock()

    now = START
    pending: list[StepOutcome] = []
    total = longest = 0.0
    _GC.spent = 0.0
    rounds = steps = 0
    while True:
        rounds += 1
        if profile is not None:
            profile.enable()
        _GC.active = True
        a = clock()
        plan = rec.reconcile(pending, now)
        spent = clock() - a
        _GC.active = False
        if profile is not None:
            profile.disable()
        total += spent
        longest = max(longest, spent)
        now += 1.0
        pending = []
        for action in plan.actions:
            if isinstance(action, RunStep):
                steps += 1
                pending.append(
                    StepOutcome(
                        node_id=action.step.node_id,
                        phase="Succeeded",
                        exit_code=0,
                        started_at=now - 1.0,
                        finished_at=now,
                    )
                )
        if plan.finished:
            break
        if not pending:
            raise RuntimeError(f"{rec.name}: no progress in round {rounds} (phase {rec.status.phase!r})")
    raw = json.dumps(rec.status.to_dict(), separators=(",", ":")).encode()
    return Figures(
        parse=t1 - t0,
        validate=t2 - t1,
        prepare=t3 - t2,
        construct=t4 - t3,
        reconcile=total,
        longest=longest,
        rounds=rounds,
        steps=steps,
        nodes=len(rec.status.nodes),
        json_bytes=len(raw),
        gzip_bytes=len(gzip.compress(raw, compresslevel=6)),
        phase=rec.status.phase,
        floor=0.0,
        gc=_GC.spent,
    )


def run_floor(deps: dict[str, list[str]]) -> float:
    """CPU seconds of a minimal DAG scheduler over ``deps``, driven round by round like the planner.

    Per node it keeps a status record (a dict, as a planner must) and emits one action per start; each
    round starts every ready node and the next round marks them Succeeded and releases their dependents.
    """
    clock = time.process_time
    t0 = clock()
    waiting = {name: len(d) for name, d in deps.items()}
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, d in deps.items():
        for parent in d:
            dependents[parent].append(name)
    records: dict[str, dict[str, Any]] = {}
    ready = [name for name, count in waiting.items() if count == 0]
    now = START
    while ready:
        actions = []
        for name in ready:
            records[name] = {
                "id": f"bench-{len(records)}",
                "name": name,
                "phase": "Running",
                "startedAt": now,
            }
            actions.append(("run", name))
        now += 1.0
        ready = []
        for _, name in actions:
            rec = records[name]
            rec["phase"] = "Succeeded"
            rec["finishedAt"] = now
            for child in dependents[name]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
    if len(records) != len(deps):
        raise RuntimeError("floor scheduler did not finish")
    return clock() - t0


def measure(scenario: Scenario, n: int, repeat: int) -> Figures:
    manifest = scenario.manifest(n)
    deps = scenario.deps(n)
    runs: list[Figures] = []
    floors: list[float] = []
    for _ in range(repeat):
        gc.collect()
        floors.append(run_floor(deps))
        gc.collect()
        runs.append(run_planner(manifest))
    last = runs[-1]
    if last.phase != "Succeeded" or last.steps != n:
        print(
            f"WARNING {scenario.name} N={n:,}: workflow {last.phase} after {last.steps:,} RunSteps for"
            f" {n:,} steps (a node-id collision runs fewer; the figures below are for what ran)",
            flush=True,
        )

    def med(attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    return Figures(
        parse=med("parse"),
        validate=med("validate"),
        prepare=med("prepare"),
        construct=med("construct"),
        reconcile=med("reconcile"),
        longest=med("longest"),
        rounds=last.rounds,
        steps=last.steps,
        nodes=last.nodes,
        json_bytes=last.json_bytes,
        gzip_bytes=last.gzip_bytes,
        phase=last.phase,
        floor=statistics.median(floors),
        gc=med("gc"),
    )


# ============================================================================================ report


def _verdict(ok: bool, judged: bool) -> str:
    if not judged:
        return "(not judged: --quick)"
    return "PASS" if ok else "MISS"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def profile_scenario(scenario: Scenario, n: int, top: int) -> None:
    prof = cProfile.Profile()
    run_planner(scenario.manifest(n), profile=prof)
    print(f"\ncProfile of the reconcile calls only: {scenario.name}, N={n:,} (top {top} by own time)")
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: N = 100 and 1,000, once")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure, median reported (default 3)")
    ap.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS], help="only these")
    ap.add_argument("--profile", choices=[s.name for s in SCENARIOS], help="cProfile one scenario, large N")
    ap.add_argument("--top", type=int, default=30, help="rows of --profile output")
    ap.add_argument("--default-gc", action="store_true", help="Python's GC thresholds, not the runtimes'")
    args = ap.parse_args(argv)
    if not args.default_gc:
        from engine.runtime.gctune import tune_gc

        tune_gc()

    small, large = (100, 1_000) if args.quick else (1_000, 10_000)
    repeat = args.repeat or (1 if args.quick else 3)
    judged = not args.quick
    if args.profile:
        profile_scenario(next(s for s in SCENARIOS if s.name == args.profile), large, args.top)
        return 0
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]

    print(
        f"core_scale: planner CPU time, steps succeed instantly; median of {repeat} run(s); "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f};"
        f" GC {'Python defaults' if args.default_gc else 'as the runtimes set it'};"
        f" engine from {Path(engine.__file__).parent}"
    )
    head = (
        f"{'scenario':<9}{'N':>8}{'rounds':>8}{'submit s':>10}{'(parse/valid/prep)':>20}"
        f"{'reconcile s':>13}{'gc %':>6}{'us/step':>9}{'floor':>7}{'x floor':>9}{'longest s':>11}"
        f"{'json':>10}{'gzip':>10}"
    )
    results: dict[tuple[str, int], Figures] = {}
    print(head)
    print("-" * len(head))
    for sc in chosen:
        for n in (small, large):
            f = measure(sc, n, repeat)
            results[(sc.name, n)] = f
            per = f.reconcile / n * 1e6
            floor_per = f.floor / n * 1e6
            split = f"{f.parse:.2f}/{f.validate:.2f}/{f.prepare:.2f}"
            print(
                f"{sc.name:<9}{n:>8,}{f.rounds:>8,}{f.submit:>10.3f}{split:>20}"
                f"{f.reconcile:>13.3f}{f.gc / f.reconcile * 100:>6.0f}"
                f"{per:>9.0f}{floor_per:>7.1f}{per / floor_per:>9.0f}"
                f"{f.longest:>11.3f}{_mb(f.json_bytes):>10}{_mb(f.gzip_bytes):>10}",
                flush=True,
            )

    print(f"\ntargets (judged at N={large:,}):")
    for sc in chosen:
        big, little = results[(sc.name, large)], results[(sc.name, small)]
        ratio = big.reconcile / little.reconcile
        rows = [
            (
                f"reconcile CPU, N={large:,}",
                f"{big.reconcile:.2f} s",
                f"<= {TARGET_SECONDS:g} s",
                big.reconcile <= TARGET_SECONDS,
            ),
            (
                f"scaling time({large:,})/time({small:,})",
                f"{ratio:.1f}",
                f"<= {TARGET_SCALING:g}",
                ratio <= TARGET_SCALING,
            ),
            (
                "final status gzip'ed",
                f"{_mb(big.gzip_bytes)} (json {_mb(big.json_bytes)})",
                "<= 1 MB",
                big.gzip_bytes <= TARGET_GZIP_BYTES,
            ),
        ]
        print(f"  {sc.name} ({sc.describe}), submit {big.submit:.2f} s CPU, not in the target")
        for label, figure, target, ok in rows:
            print(f"    {label:<36}{figure:<28}{target:<10}{_verdict(ok, judged)}")
    print(
        "\nus/step = reconcile CPU / steps; floor = a minimal Python DAG scheduler over the same"
        " dependencies, same process; x floor = us/step / floor."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
