"""The Argo Workflows conformance run: the corpus's CI-checked examples through the local runtime.

``make conformance`` runs this module (``python -m tests.conformance.run``);
``tests/conformance/test_conformance.py`` calls :func:`run_corpus` and compares the pass count with
``recorded.json``, so the count only goes up.

It does what Argo's CI job ``test-examples`` does (``test/e2e/examples_test.go``, described in the
corpus README): apply every ConfigMap, PersistentVolumeClaim, WorkflowTemplate and
ClusterWorkflowTemplate of ``examples/``, then submit every Workflow without a ``no-test`` label
with ``activeDeadlineSeconds: 300`` as the workflow default, and expect ``Succeeded``. It also runs
the five examples Argo designs to fail (``intended_phase == "Failed"``) and expects ``Failed``.

Everything happens in a fresh temporary SLUICE_HOME that is removed afterwards. Examples run
concurrently (bounded) in one engine; an overall timeout bounds the run and the examples still
running at its end are reported as such. The corpus is found through ``SLUICE_CONFORMANCE_DIR``
(default ``../shared/conformance`` beside the repository); without it the run says why and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.cli.main import _apply_objects
from engine.errors import SluiceError
from engine.runtime.local.engine import EngineSettings, LocalEngine, WorkflowRun
from engine.runtime.local.store import Store
from engine.spec.loader import Document, parse_document, parse_yaml
from engine.workflows import nodes as N

REPO = Path(__file__).resolve().parents[2]
SHIMS = REPO / "tests" / "shims"
RECORDED = Path(__file__).with_name("recorded.json")
CORPUS_ENV = "SLUICE_CONFORMANCE_DIR"
ARGO_CORPUS = "argo-workflows"

# Argo's e2e controller config: workflowDefaults.spec.activeDeadlineSeconds.
CI_DEADLINE_SECONDS = 300
# examples_test.go submits into the e2e namespace; `{{workflow.namespace}}` shows it.
NAMESPACE = "argo"
DEFAULT_CONCURRENCY = 8
# The CI deadline plus time for a workflow that hit it to kill its steps and record the outcome.
DEFAULT_OVERALL_TIMEOUT = CI_DEADLINE_SECONDS + 30
_STORED_KINDS = ("ConfigMap", "WorkflowTemplate", "ClusterWorkflowTemplate")
_LEAF_TYPES = (N.POD, N.CONTAINER, N.HTTP, N.PLUGIN, N.SUSPEND)
_REASON_CHARS = 400

# Phases of an outcome that never reached a workflow phase.
SUBMIT_ERROR = "SubmitError"
STILL_RUNNING = "StillRunning"
NOT_STARTED = "NotStarted"


def conformance_base() -> Path:
    """Where the conformance corpora are: $SLUICE_CONFORMANCE_DIR, or ../shared/conformance beside the
    checkout (where the project's machines and CI keep them)."""
    setting = os.environ.get(CORPUS_ENV)
    return Path(setting) if setting else REPO.parent / "shared" / "conformance"


def events_sensors_dir() -> Path:
    """The Argo Events example sensors (test data, read in place)."""
    return conformance_base() / "argo-events" / "sensors"


EVENTS_CORPUS_MISSING = (
    f"Argo Events sensor corpus not found: no argo-events/sensors under {CORPUS_ENV} or ../shared/conformance"
)


def locate_corpus() -> tuple[Path | None, str]:
    """The Argo corpus directory, or None and the reason it is not usable."""
    setting = os.environ.get(CORPUS_ENV)
    base = conformance_base()
    corpus = base / ARGO_CORPUS
    where = f"{CORPUS_ENV}={setting}" if setting else f"default {base}"
    if not (corpus / "manifest.json").is_file():
        return None, f"conformance corpus not found: no {ARGO_CORPUS}/manifest.json under {where}"
    return corpus, ""


@dataclass(frozen=True, slots=True)
class Example:
    """One Workflow document of the corpus and the phase it must end in."""

    path: str
    doc_index: int
    name: str
    expected: str
    # True for the examples Argo's CI submits (no `no-test` label); False for intended failures.
    ci_checked: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    example: Example
    phase: str
    reason: str
    seconds: float

    @property
    def reached(self) -> bool:
        return self.phase == self.example.expected


@dataclass(frozen=True, slots=True)
class Report:
    outcomes: tuple[Outcome, ...]
    setup_problems: tuple[str, ...]
    seconds: float

    @property
    def checked(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.example.ci_checked]

    @property
    def intended_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.example.ci_checked]

    @property
    def passed(self) -> int:
        return sum(o.reached for o in self.checked)

    @property
    def failed_as_intended(self) -> int:
        return sum(o.reached for o in self.intended_failures)

    def lines(self) -> list[str]:
        out = [f"setup: {p}" for p in self.setup_problems]
        slowest = sorted(self.outcomes, key=lambda o: -o.seconds)[:3]
        out.append(
            f"ran {len(self.outcomes)} examples in {self.seconds:.1f}s; slowest: "
            + ", ".join(f"{o.example.path} {o.seconds:.1f}s" for o in slowest)
        )
        checked = self.checked
        out.append(
            f"conformance: {self.passed}/{len(checked)} CI-checked examples reach their expected phase"
        )
        out += [_describe(o) for o in checked if not o.reached]
        intended = self.intended_failures
        out.append(f"intended failures: {self.failed_as_intended}/{len(intended)} end Failed")
        out += [_describe(o) for o in intended if not o.reached]
        return out


def _describe(o: Outcome) -> str:
    return f"  {o.example.path}: {o.phase}: {o.reason}"


def select_examples(manifest: dict[str, Any]) -> list[Example]:
    """CI-checked examples (expected Succeeded), then the ones Argo designs to fail."""
    out = []
    for w in manifest["workflows"]:
        if w["expected_phase"] == "Succeeded":
            expected, ci_checked = "Succeeded", True
        elif w.get("intended_phase") == "Failed":
            expected, ci_checked = "Failed", False
        else:
            continue
        out.append(Example(w["path"], int(w["doc_index"]), w["name"], expected, ci_checked))
    return out


def _raw_documents(path: Path) -> list[Any]:
    return parse_yaml(path.read_text(encoding="utf-8"), source=str(path))


def apply_corpus(store: Store, home: Path, corpus: Path) -> list[str]:
    """Store the corpus's ConfigMaps and (Cluster)WorkflowTemplates and make its PVCs; the problems."""
    problems: list[str] = []
    pending: list[Document] = []
    for path in sorted((corpus / "examples").rglob("*.yaml")):
        try:
            raws = _raw_documents(path)
        except (OSError, SluiceError) as exc:
            problems.append(f"{path.relative_to(corpus)}: {exc}")
            continue
        for i, raw in enumerate(raws):
            kind = raw.get("kind") if isinstance(raw, dict) else None
            if kind == "PersistentVolumeClaim":
                # The executor mounts claimName from home/volumes/<claim>: an existing claim is a directory.
                (home / "volumes" / str(raw["metadata"]["name"])).mkdir(parents=True, exist_ok=True)
            elif kind in _STORED_KINDS:
                try:
                    pending.append(parse_document(raw, source=str(path), index=i, multi=len(raws) > 1))
                except SluiceError as exc:
                    problems.append(str(exc))
    # ConfigMaps first; a template whose validation needs another template is retried once that one
    # is stored, as kubectl apply's order does not matter to Argo.
    pending.sort(key=lambda d: d.kind != "ConfigMap")
    while pending:
        failed: list[tuple[Document, SluiceError]] = []
        for doc in pending:
            try:
                _apply_objects(store, [doc], namespace=NAMESPACE)
            except SluiceError as exc:
                failed.append((doc, exc))
        if len(failed) == len(pending):
            problems += [f"cannot apply {d.kind} {d.name}: {exc}" for d, exc in failed]
            break
        pending = [d for d, _ in failed]
    return problems


_NC_WRAPPER = """#!/bin/sh
# Generated by tests/conformance/run.py. Alpine's busybox nc keeps a listener open with -k
# (`nc -lk -p PORT -e PROG`); Debian's busybox build spells that -ll.
for arg in "$@"; do
  shift
  case "$arg" in
    -[!-]*k*) arg=$(printf '%s' "$arg" | tr k l) ;;
  esac
  set -- "$@" "$arg"
done
exec busybox nc "$@"
"""


def make_applet_dir(target: Path) -> tuple[Path | None, str]:
    """A PATH directory of busybox applets the host lacks, as the examples' alpine images have them.

    Only missing commands are added, so host tools keep precedence. ``nc`` is always the busybox
    one (through a wrapper for ``-k``): host netcats differ in their options (no ``-e`` in OpenBSD's).
    """
    busybox = shutil.which("busybox")
    if busybox is None:
        return None, "busybox not found: examples needing alpine applets (nc) cannot run"
    try:
        listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"busybox --list failed: {exc}"
    target.mkdir(parents=True, exist_ok=True)
    for applet in listed.stdout.split():
        if applet in ("busybox", "nc") or "/" in applet or shutil.which(applet) is not None:
            continue
        (target / applet).symlink_to(busybox)
    nc = target / "nc"
    nc.write_text(_NC_WRAPPER, encoding="utf-8")
    nc.chmod(0o755)
    return target, ""


def _reason(run: WorkflowRun) -> str:
    st = run.status
    text = st.message or ""
    leaves = sorted(
        (n for n in st.nodes.values() if n.type in _LEAF_TYPES and n.phase in (N.FAILED, N.ERROR)),
        key=lambda n: n.started_at or 0.0,
    )
    if leaves:
        n = leaves[0]
        text += f" [node {n.display_name}: {n.phase}: {n.message or ''}]"
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _load_workflow(corpus: Path, ex: Example) -> Document:
    path = corpus / ex.path
    raws = _raw_documents(path)
    docs = [(i, r) for i, r in enumerate(raws) if isinstance(r, dict) and r.get("kind") == "Workflow"]
    # doc_index counts documents in the file; fall back to the name if an empty document shifts it.
    for i, raw in docs:
        meta = raw.get("metadata") or {}
        if i == ex.doc_index and ex.name in (meta.get("name"), meta.get("generateName")):
            return parse_document(raw, source=str(path), index=i, multi=len(raws) > 1)
    for i, raw in docs:
        meta = raw.get("metadata") or {}
        if ex.name in (meta.get("name"), meta.get("generateName")):
            return parse_document(raw, source=str(path), index=i, multi=len(raws) > 1)
    raise LookupError(f"no Workflow {ex.name!r} in {ex.path}")


async def run_corpus(
    corpus: Path,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    overall_timeout: float = DEFAULT_OVERALL_TIMEOUT,
) -> Report:
    """Run the selected examples of ``corpus`` in a fresh SLUICE_HOME; never longer than the timeout."""
    started = time.monotonic()
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    examples = select_examples(manifest)
    tmp = Path(tempfile.mkdtemp(prefix="sluice-conformance-"))
    problems: list[str] = []
    outcomes: dict[Example, Outcome] = {}
    runs: dict[Example, tuple[WorkflowRun, float]] = {}
    try:
        home = tmp / "home"
        applets, why = make_applet_dir(tmp / "applets")
        if why:
            problems.append(why)
        path = (str(SHIMS), *([str(applets)] if applets else []))
        engine = LocalEngine(
            home=home,
            settings=EngineSettings(extra_path=path, default_active_deadline_seconds=CI_DEADLINE_SECONDS),
        )
        try:
            await engine.start(adopt=False)
            problems += apply_corpus(engine.store, home, corpus)
            sem = asyncio.Semaphore(concurrency)

            async def one(ex: Example) -> None:
                async with sem:
                    t0 = time.monotonic()
                    try:
                        doc = _load_workflow(corpus, ex)
                        run = await engine.submit(doc.obj, namespace=NAMESPACE)
                    except (OSError, LookupError, SluiceError) as exc:
                        reason = " ".join(str(exc).split())
                        outcomes[ex] = Outcome(ex, SUBMIT_ERROR, reason, time.monotonic() - t0)
                        return
                    runs[ex] = (run, t0)
                    await run.done.wait()
                    outcomes[ex] = Outcome(ex, run.status.phase, _reason(run), time.monotonic() - t0)

            # The intended failures wait out timeouts (up to 30 s): started first, they overlap the rest.
            ordered = sorted(examples, key=lambda ex: ex.ci_checked)
            tasks = [asyncio.create_task(one(ex), name=ex.path) for ex in ordered]
            remaining = overall_timeout - (time.monotonic() - started)
            _, late = await asyncio.wait(tasks, timeout=max(remaining, 0.0))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            now = time.monotonic()
            for ex in examples:
                if ex in outcomes:
                    continue
                if ex in runs:
                    run, t0 = runs[ex]
                    running = [
                        n.display_name
                        for n in run.status.nodes.values()
                        if n.active() and n.type in _LEAF_TYPES
                    ][:3]
                    reason = (
                        f"still running at the overall timeout ({overall_timeout:.0f}s); active: {running}"
                    )
                    outcomes[ex] = Outcome(ex, STILL_RUNNING, reason, now - t0)
                else:
                    reason = f"not started before the overall timeout ({overall_timeout:.0f}s)"
                    outcomes[ex] = Outcome(ex, NOT_STARTED, reason, 0.0)
        finally:
            await engine.close()
            engine.store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Report(
        outcomes=tuple(outcomes[ex] for ex in examples),
        setup_problems=tuple(problems),
        seconds=time.monotonic() - started,
    )


def recorded_count() -> int:
    """The pass count this repository has reached before: the floor a run must not fall below."""
    return int(json.loads(RECORDED.read_text(encoding="utf-8"))["ci_checked_passing"])


def record(report: Report) -> None:
    data = {
        "ci_checked_passing": report.passed,
        "ci_checked_total": len(report.checked),
        "intended_failures_failed": report.failed_as_intended,
    }
    RECORDED.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--timeout", type=float, default=DEFAULT_OVERALL_TIMEOUT, help="overall seconds")
    parser.add_argument("--record", action="store_true", help=f"write a higher pass count to {RECORDED.name}")
    args = parser.parse_args(argv)
    corpus, reason = locate_corpus()
    if corpus is None:
        print(f"conformance: skipped, {reason}")
        return 0
    report = asyncio.run(run_corpus(corpus, concurrency=args.concurrency, overall_timeout=args.timeout))
    print("\n".join(report.lines()))
    floor = 0
    with contextlib.suppress(FileNotFoundError):
        floor = recorded_count()
    if args.record and report.passed > floor:
        record(report)
        print(f"recorded {report.passed} in {RECORDED.relative_to(REPO)}")
    worse = report.passed < floor or report.failed_as_intended < len(report.intended_failures)
    if report.passed < floor:
        print(f"regression: {report.passed} passing, {floor} recorded in {RECORDED.relative_to(REPO)}")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
