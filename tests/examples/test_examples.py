"""Every example in ``examples/workflows/`` runs through the real CLI and ends as its comment says.

Each scenario gets a fresh ``SLUICE_HOME`` and runs ``python -m engine run FILE -o json`` (after
storing whatever the example needs with ``sluice configmap create`` / ``sluice template create``)
as a subprocess; the tests assert the final phase and the outputs that make the example worth
reading: exact results, aggregated lists, global outputs, skipped and omitted branches, retry
attempts.

Scenarios are independent processes, so the ``scenarios`` fixture starts all the ones the
selected tests need on a small thread pool as soon as the first test asks, and each test waits
only for its own. ``SLUICE_EXAMPLES_WORKERS`` sets the pool size.

Examples whose test is blocked by an engine bug are listed in ``BLOCKED`` with the reason; the
inventory test makes sure every other example has a scenario here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "workflows"
RUN_TIMEOUT = 60

# Examples kept as they should work (Argo's documented behaviour) whose tests wait for an engine
# fix. Remove an entry and add its test once the engine handles it.
BLOCKED: dict[str, str] = {}


# =================================================================================== running


@dataclass
class Run:
    """One ``sluice run`` of an example: exit code, the final workflow object, stderr."""

    rc: int
    wf: dict[str, Any]
    stderr: str

    @property
    def phase(self) -> str:
        return str(self.status.get("phase"))

    @property
    def status(self) -> dict[str, Any]:
        return self.wf.get("status") or {}

    @property
    def name(self) -> str:
        return str(self.wf["metadata"]["name"])

    def node(self, suffix: str) -> dict[str, Any]:
        """The node whose full name is the workflow name followed by ``suffix`` ("" is the root)."""
        wanted = self.name + suffix
        for n in self.status.get("nodes", {}).values():
            if n["name"] == wanted:
                return dict(n)
        raise AssertionError(f"no node {wanted!r}; nodes: {sorted(self.node_names())}")

    def has_node(self, suffix: str) -> bool:
        return (self.name + suffix) in self.node_names()

    def node_names(self) -> set[str]:
        return {n["name"] for n in self.status.get("nodes", {}).values()}

    def nodes_under(self, prefix: str) -> list[dict[str, Any]]:
        """Nodes whose name starts with the workflow name + ``prefix``, in name order."""
        start = self.name + prefix
        found = [n for n in self.status.get("nodes", {}).values() if n["name"].startswith(start)]
        return sorted(found, key=lambda n: n["name"])

    def result(self, suffix: str) -> str | None:
        return (self.node(suffix).get("outputs") or {}).get("result")

    def param(self, suffix: str, name: str) -> str | None:
        for p in (self.node(suffix).get("outputs") or {}).get("parameters") or []:
            if p["name"] == name:
                return p.get("value")
        raise AssertionError(f"node {suffix!r} has no output parameter {name!r}")

    def phases(self, *suffixes: str) -> dict[str, str]:
        return {s: self.node(s)["phase"] for s in suffixes}


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SLUICE_HOME": str(home)}


def sluice(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``sluice`` management command (configmap/template create...) and insist it works."""
    proc = subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, f"sluice {' '.join(args)} failed: {proc.stderr}"
    return proc


def run_example(home: Path, example: str, *params: str) -> Run:
    """``sluice run examples/workflows/<example> -o json [-p k=v ...]`` in ``home``."""
    argv = [sys.executable, "-m", "engine", "run", str(EXAMPLES / example), "-o", "json"]
    for p in params:
        argv += ["-p", p]
    proc = subprocess.run(
        argv, env=_env(home), capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT, check=False
    )
    wf = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return Run(rc=proc.returncode, wf=wf, stderr=proc.stderr)


# =================================================================================== scenarios

Scenario = Callable[[Path], Any]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


def uses(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare the scenarios a test reads, so the pool can start them before the test runs."""
    for n in names:
        assert n in SCENARIOS, n

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        fn.scenarios = names  # type: ignore[attr-defined]
        return fn

    return mark


@scenario
def enum_default(home: Path) -> Run:
    return run_example(home, "parameters-enum-and-defaults.yaml")


@scenario
def enum_override(home: Path) -> Run:
    return run_example(home, "parameters-enum-and-defaults.yaml", "region=eu-west")


@scenario
def enum_rejected(home: Path) -> Run:
    return run_example(home, "parameters-enum-and-defaults.yaml", "region=mars")


@scenario
def global_outputs(home: Path) -> Run:
    return run_example(home, "global-outputs.yaml")


@scenario
def configmap_present(home: Path) -> Run:
    sluice(
        home,
        "configmap",
        "create",
        "shop-settings",
        "--from-literal",
        "currency=EUR",
        "--from-literal",
        "vat=21",
    )
    return run_example(home, "configmap-parameters.yaml")


@scenario
def configmap_missing(home: Path) -> Run:
    return run_example(home, "configmap-parameters.yaml")


@scenario
def outputs(home: Path) -> Run:
    return run_example(home, "outputs-result-and-files.yaml")


@scenario
def artifacts(home: Path) -> tuple[Run, Path]:
    return run_example(home, "artifacts-passing.yaml"), home


@scenario
def loops_items(home: Path) -> Run:
    return run_example(home, "loops-with-items.yaml")


@scenario
def loops_param_sequence(home: Path) -> Run:
    return run_example(home, "loops-with-param-and-sequence.yaml")


@scenario
def when_default(home: Path) -> Run:
    return run_example(home, "when-conditions.yaml")


@scenario
def when_low_coverage(home: Path) -> Run:
    return run_example(home, "when-conditions.yaml", "coverage=55")


@scenario
def dag_depends(home: Path) -> Run:
    return run_example(home, "dag-depends-logic.yaml")


@scenario
def continue_on(home: Path) -> Run:
    return run_example(home, "continue-on.yaml")


@scenario
def fail_fast(home: Path) -> Run:
    return run_example(home, "fail-fast.yaml")


@scenario
def retries(home: Path) -> Run:
    return run_example(home, "retries.yaml")


@scenario
def step_timeouts(home: Path) -> Run:
    return run_example(home, "step-timeouts.yaml")


@scenario
def workflow_deadline(home: Path) -> Run:
    return run_example(home, "workflow-deadline.yaml")


@scenario
def exit_handlers_with_failure(home: Path) -> Run:
    return run_example(home, "exit-handlers.yaml")


@scenario
def exit_handlers_clean(home: Path) -> Run:
    return run_example(home, "exit-handlers.yaml", "smoke-code=0")


@scenario
def exit_hook_outputs(home: Path) -> Run:
    return run_example(home, "exit-hook-with-outputs.yaml")


@scenario
def lifecycle_hooks(home: Path) -> Run:
    return run_example(home, "lifecycle-hooks.yaml")


@scenario
def suspend(home: Path) -> Run:
    return run_example(home, "suspend-with-duration.yaml")


@scenario
def parallelism(home: Path) -> Run:
    return run_example(home, "parallelism.yaml")


@scenario
def scripts(home: Path) -> Run:
    return run_example(home, "scripts.yaml")


@scenario
def expressions(home: Path) -> Run:
    return run_example(home, "expressions.yaml")


@scenario
def template_ref(home: Path) -> Run:
    sluice(home, "template", "create", str(EXAMPLES / "workflow-template-toolbox.yaml"))
    return run_example(home, "template-ref.yaml")


@scenario
def template_ref_unstored(home: Path) -> Run:
    return run_example(home, "template-ref.yaml")


@scenario
def workflow_template_ref(home: Path) -> tuple[Run, Run]:
    sluice(home, "template", "create", str(EXAMPLES / "workflow-template-toolbox.yaml"))
    return (
        run_example(home, "workflow-template-ref.yaml"),
        run_example(home, "workflow-template-ref.yaml", "version=3.0"),
    )


@scenario
def emptydir_sidecar(home: Path) -> Run:
    return run_example(home, "volumes-emptydir-sidecar.yaml")


@scenario
def volume_claims(home: Path) -> Run:
    return run_example(home, "volume-claim-templates.yaml")


@scenario
def container_set(home: Path) -> Run:
    return run_example(home, "container-set.yaml")


@scenario
def hello_world(home: Path) -> Run:
    return run_example(home, "hello-world.yaml", "who=examples")


@scenario
def dag_diamond(home: Path) -> Run:
    return run_example(home, "dag-diamond.yaml")


# Which example files the scenarios above exercise (the inventory test checks it is complete).
COVERED = {
    "memoization.yaml",
    "daemon-step.yaml",
    "init-container-mirror-mounts.yaml",
    "workflow-deadline-exit-handler.yaml",
    "parameters-enum-and-defaults.yaml",
    "global-outputs.yaml",
    "configmap-parameters.yaml",
    "outputs-result-and-files.yaml",
    "artifacts-passing.yaml",
    "loops-with-items.yaml",
    "loops-with-param-and-sequence.yaml",
    "when-conditions.yaml",
    "dag-depends-logic.yaml",
    "continue-on.yaml",
    "fail-fast.yaml",
    "retries.yaml",
    "step-timeouts.yaml",
    "workflow-deadline.yaml",
    "exit-handlers.yaml",
    "exit-hook-with-outputs.yaml",
    "lifecycle-hooks.yaml",
    "suspend-with-duration.yaml",
    "parallelism.yaml",
    "scripts.yaml",
    "expressions.yaml",
    "workflow-template-toolbox.yaml",
    "template-ref.yaml",
    "workflow-template-ref.yaml",
    "volumes-emptydir-sidecar.yaml",
    "volume-claim-templates.yaml",
    "container-set.yaml",
    "hello-world.yaml",
    "dag-diamond.yaml",
}


class Scenarios:
    """Runs scenarios on a thread pool, each in its own temporary SLUICE_HOME, once."""

    def __init__(self, wanted: list[str], workers: int) -> None:
        self._wanted = wanted
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="example")
        self._futures: dict[str, Future[Any]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="sluice-examples-")

    def _start(self, name: str) -> None:
        if name not in self._futures:
            home = Path(self._tmp.name) / name
            home.mkdir()
            self._futures[name] = self._pool.submit(SCENARIOS[name], home)

    def __getitem__(self, name: str) -> Any:
        for n in self._wanted:  # first access: queue everything the session will need
            self._start(n)
        self._start(name)
        return self._futures[name].result()  # each run is bounded by RUN_TIMEOUT

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._tmp.cleanup()


@pytest.fixture(scope="session")
def scenarios(request: pytest.FixtureRequest) -> Iterator[Scenarios]:
    wanted: list[str] = []
    for item in request.session.items:
        for name in getattr(getattr(item, "function", None), "scenarios", ()):
            if name not in wanted:
                wanted.append(name)
    workers = int(os.environ.get("SLUICE_EXAMPLES_WORKERS", "6"))
    s = Scenarios(wanted, workers)
    yield s
    s.close()


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# =================================================================================== inventory


def test_every_example_starts_with_a_comment_and_uses_the_sluice_api() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# "), f"{path.name}: should start with a comment saying what it shows"
        for doc in yaml.safe_load_all(text):
            assert doc["apiVersion"] == "sluice.dev/v1alpha1", path.name


def test_every_example_is_run_by_a_test_or_listed_as_blocked() -> None:
    present = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert present - COVERED - set(BLOCKED) == set(), "examples without a test"
    assert COVERED | set(BLOCKED) <= present, "tests or BLOCKED entries for missing examples"
    assert not COVERED & set(BLOCKED)


def test_at_least_one_example_is_designed_to_fail() -> None:
    designed = [p.name for p in EXAMPLES.glob("*.yaml") if "DESIGNED TO END Failed" in p.read_text()]
    assert set(designed) & COVERED


def test_all_examples_pass_lint(tmp_path: Path) -> None:
    proc = sluice(tmp_path, "lint", str(EXAMPLES))
    assert "no linting errors" in proc.stdout


# =================================================================================== parameters


@uses("enum_default", "enum_override")
def test_arguments_defaults_and_p_override(scenarios: Scenarios) -> None:
    default, override = scenarios["enum_default"], scenarios["enum_override"]
    assert (default.rc, default.phase) == (0, "Succeeded")
    assert default.result("[0].announce") == "rolling out v1.4.2 to us-east with 3 replicas"
    assert (override.rc, override.phase) == (0, "Succeeded")
    assert override.result("[0].announce") == "rolling out v1.4.2 to eu-west with 3 replicas"
    inputs = {p["name"]: p["value"] for p in override.node("[0].announce")["inputs"]["parameters"]}
    assert inputs == {"target": "eu-west", "replicas": "3"}


@uses("enum_rejected")
def test_a_value_outside_the_enum_is_refused_before_running(scenarios: Scenarios) -> None:
    run = scenarios["enum_rejected"]
    assert run.rc == 2
    assert run.wf == {}
    assert "mars" in run.stderr and "us-east, eu-west, ap-south" in run.stderr


@uses("global_outputs")
def test_global_outputs_are_exported_and_readable_by_later_steps(scenarios: Scenarios) -> None:
    run = scenarios["global_outputs"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    outputs = run.status["outputs"]
    assert outputs["parameters"] == [{"name": "release-tag", "value": "rel-2024.07"}]
    assert [a["name"] for a in outputs["artifacts"]] == ["changelog"]
    assert run.result("[1].publish") == "publishing rel-2024.07 (3 changes)"


@uses("configmap_present", "configmap_missing")
def test_parameters_come_from_a_configmap(scenarios: Scenarios) -> None:
    run = scenarios["configmap_present"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("") == "100 EUR + 21% VAT = 121 EUR"
    missing = scenarios["configmap_missing"]
    assert missing.rc == 1
    assert "shop-settings" in missing.stderr


# =================================================================================== outputs


@uses("outputs")
def test_result_file_parameters_default_and_exit_code(scenarios: Scenarios) -> None:
    run = scenarios["outputs"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result(".inspect") == "disk usage is fine"
    assert run.param(".inspect", "free-gb") == "42"  # one trailing newline trimmed
    assert run.param(".inspect", "owner") == "storage-team"
    assert run.param(".inspect", "warning") == "none"  # file never written: valueFrom.default
    assert run.node(".inspect")["outputs"]["exitCode"] == "0"
    assert run.result(".summarize") == "fine|42|storage-team|none|exit=0"
    assert run.param("", "summary") == "fine|42|storage-team|none|exit=0"


@uses("artifacts")
def test_artifacts_raw_none_and_tgz_directory_are_passed_between_steps(scenarios: Scenarios) -> None:
    run, home = scenarios["artifacts"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    arts = {a["name"]: a for a in run.node("[0].build")["outputs"]["artifacts"]}
    report_key, site_key = arts["report"]["local"]["key"], arts["site"]["local"]["key"]
    assert not report_key.endswith(".tgz") and site_key.endswith(".tgz")
    assert (home / "artifacts" / report_key).read_text() == "build ok: 2 pages\n"
    assert (home / "artifacts" / site_key).read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert run.result("[1].check") == (
        "pages=about.html,index.html | report=build ok: 2 pages | style=compact"
    )
    inputs = {a["name"]: a for a in run.node("[1].check")["inputs"]["artifacts"]}
    assert inputs["settings"]["raw"]["data"] == "style=compact\n"
    assert [a["name"] for a in run.node("[1].check")["outputs"]["artifacts"]] == ["checked-report"]


# =================================================================================== loops


@uses("loops_items")
def test_with_items_strings_and_maps_aggregate_in_item_order(scenarios: Scenarios) -> None:
    run = scenarios["loops_items"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    greets = run.nodes_under("[0].greet(")
    assert [n["displayName"] for n in greets] == ["greet(0:ana)", "greet(1:bo)", "greet(2:cy)"]
    assert len(run.nodes_under("[0].size(")) == 3
    assert run.result("[1].report") == (
        'greetings=["hello ana","hello bo","hello cy"]\nsizes=["small:1","medium:2","large:4"] total=7'
    )


@uses("loops_param_sequence")
def test_with_param_and_with_sequence_fan_out_and_aggregate(scenarios: Scenarios) -> None:
    run = scenarios["loops_param_sequence"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    shards = json.loads(run.result("[0].discover") or "")
    assert [s["name"] for s in shards] == ["shard-0", "shard-1", "shard-2"]
    assert len(run.nodes_under("[1].scan(")) == 3
    labels = run.nodes_under("[1].label(")
    assert [n["outputs"]["parameters"][0]["value"] for n in labels] == [
        "part-01",
        "part-02",
        "part-03",
        "part-04",
    ]
    assert run.result("[2].tally") == "rows=60 parts=part-01,part-02,part-03,part-04"


# =================================================================================== conditions


@uses("when_default", "when_low_coverage")
def test_when_runs_or_skips_steps(scenarios: Scenarios) -> None:
    run = scenarios["when_default"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("[1].ship") == "shipping release-7 (coverage 87%)"
    for skipped in ("[1].alert", "[1].block"):
        node = run.node(skipped)
        assert (node["type"], node["phase"]) == ("Skipped", "Skipped")
    assert run.phases("[1].badge", "[1].nightly") == {"[1].badge": "Succeeded", "[1].nightly": "Succeeded"}

    low = scenarios["when_low_coverage"]
    assert (low.rc, low.phase) == (0, "Succeeded")
    assert low.result("[1].block") == "coverage 55% is below 80%"
    assert low.node("[1].badge")["phase"] == "Skipped"


@uses("dag_depends")
def test_depends_on_task_results_and_loop_outcomes(scenarios: Scenarios) -> None:
    run = scenarios["dag_depends"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.phases(".smoke-test", ".rollback", ".promote") == {
        ".smoke-test": "Failed",
        ".rollback": "Succeeded",
        ".promote": "Omitted",
    }
    assert run.node(".promote")["type"] == "Skipped"
    assert run.node(".migrate")["phase"] == "Skipped"
    assert run.node(".after-migrate")["phase"] == "Succeeded"
    assert run.node(".probe")["type"] == "TaskGroup"
    assert [n["phase"] for n in run.nodes_under(".probe(")] == ["Succeeded", "Failed", "Succeeded"]
    assert run.phases(".any-mirror", ".no-mirror") == {".any-mirror": "Succeeded", ".no-mirror": "Omitted"}
    assert run.result(".report") == "rollback=done mirror=ok migrate=skipped"


@uses("continue_on")
def test_continue_on_failed_and_error(scenarios: Scenarios) -> None:
    run = scenarios["continue_on"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.phases("[0].lint", "[0].docs", "[0].unit") == {
        "[0].lint": "Failed",
        "[0].docs": "Error",
        "[0].unit": "Succeeded",
    }
    assert run.result("[1].package") == "packaged with lint=Failed docs=Error unit=Succeeded"


@uses("fail_fast")
def test_fail_fast_stops_new_children_but_independent_branch_finishes(scenarios: Scenarios) -> None:
    run = scenarios["fail_fast"]
    assert (run.rc, run.phase) == (1, "Failed")
    uploads = run.nodes_under(".upload-all[0].upload(")
    assert [(n["displayName"], n["phase"]) for n in uploads] == [
        ("upload(0:a.csv)", "Succeeded"),
        ("upload(1:b.csv)", "Succeeded"),
        ("upload(2:broken.csv)", "Failed"),
    ]
    steps = run.node(".upload-all")
    assert steps["phase"] == "Failed"
    assert steps["message"] == "template has failed or errored children and failFast enabled"
    assert run.result(".notify") == "told the team: index rebuilt"


# =================================================================================== retries and time


@uses("retries")
def test_retry_limit_backoff_expression_and_policy(scenarios: Scenarios) -> None:
    run = scenarios["retries"]
    assert (run.rc, run.phase) == (0, "Succeeded")

    flaky = run.node("[0].flaky")
    assert (flaky["type"], flaky["phase"]) == ("Retry", "Succeeded")
    attempts = [run.node(f"[0].flaky({i})") for i in range(3)]
    assert [a["phase"] for a in attempts] == ["Failed", "Failed", "Succeeded"]
    assert len(flaky["children"]) == 3
    assert flaky["outputs"]["result"] == "worked on attempt 2"
    # Backoff 1s then 2s, measured from the previous attempt's end (timestamps are whole seconds).
    gap1 = ts(attempts[1]["startedAt"]) - ts(attempts[0]["finishedAt"])
    gap2 = ts(attempts[2]["startedAt"]) - ts(attempts[1]["finishedAt"])
    assert gap1.total_seconds() >= 1 and gap2.total_seconds() >= 2

    picky = run.node("[0].picky")
    assert picky["phase"] == "Failed" and len(picky["children"]) == 2
    assert [run.node(f"[0].picky({i})")["message"] for i in range(2)] == [
        "Error (exit code 3)",
        "Error (exit code 4)",
    ]
    strict = run.node("[0].strict")
    assert strict["phase"] == "Failed" and len(strict["children"]) == 1


@uses("step_timeouts")
def test_template_deadline_and_timeout_kill_slow_steps(scenarios: Scenarios) -> None:
    run = scenarios["step_timeouts"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    for slow in ("[0].hung-download", "[0].slow-query"):
        node = run.node(slow)
        assert node["phase"] == "Failed"
        assert "deadline" in node["message"]
    assert run.node("[0].quick-check")["phase"] == "Succeeded"
    assert run.result("[1].report") == "download=Failed query=Failed check=Succeeded"
    took = ts(run.status["finishedAt"]) - ts(run.status["startedAt"])
    assert took.total_seconds() < 10


@uses("workflow_deadline")
def test_workflow_deadline_fails_running_and_suspended_nodes(scenarios: Scenarios) -> None:
    run = scenarios["workflow_deadline"]
    assert (run.rc, run.phase) == (1, "Failed")
    migrate = run.node("[0].migrate")
    assert (migrate["phase"], migrate["message"]) == ("Failed", "Step exceeded its deadline")
    assert run.node("[0].approval")["phase"] == "Failed"
    assert not run.has_node("[1].verify")
    took = ts(run.status["finishedAt"]) - ts(run.status["startedAt"])
    assert took.total_seconds() < 10


@uses("suspend")
def test_suspend_with_duration_resumes_by_itself(scenarios: Scenarios) -> None:
    run = scenarios["suspend"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    pause = run.node("[1].cool-down")
    assert (pause["type"], pause["phase"]) == ("Suspend", "Succeeded")
    assert (ts(pause["finishedAt"]) - ts(pause["startedAt"])).total_seconds() >= 2
    verify = run.node("[2].verify")
    assert ts(verify["startedAt"]) >= ts(pause["finishedAt"])
    assert verify["outputs"]["result"] == "metrics look stable after cool-down"


@uses("parallelism")
def test_workflow_and_template_parallelism_cap_concurrency(scenarios: Scenarios) -> None:
    run = scenarios["parallelism"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("[1].measure") == "one-by-one=1 overall=2"


# =================================================================================== exit handlers, hooks


@uses("exit_handlers_with_failure", "exit_handlers_clean")
def test_exit_handler_sees_status_and_failures(scenarios: Scenarios) -> None:
    run = scenarios["exit_handlers_with_failure"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.node("[0].smoke")["phase"] == "Failed"
    assert run.result("[0].smoke.onExit") == "smoke finished: Failed"
    assert run.result(".onExit") == "status=Succeeded failures=1 first=smoke"

    clean = scenarios["exit_handlers_clean"]
    assert (clean.rc, clean.phase) == (0, "Succeeded")
    assert clean.result("[0].smoke.onExit") == "smoke finished: Succeeded"
    assert clean.result(".onExit") == "status=Succeeded failures=0 first=-"


@uses("exit_hook_outputs")
def test_step_exit_hook_receives_its_steps_outputs(scenarios: Scenarios) -> None:
    run = scenarios["exit_hook_outputs"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("[0].build.onExit") == "archiving build-981 (Succeeded)"
    assert run.result("[1].deploy") == "deploying build-981"


@uses("lifecycle_hooks")
def test_lifecycle_hooks_fire_once_when_their_expression_holds(scenarios: Scenarios) -> None:
    run = scenarios["lifecycle_hooks"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result(".hooks.started") == "workflow started"
    assert run.result("[0].train.hooks.running") == "training in progress"
    assert run.result("[0].train.hooks.done") == "model ready"
    assert not run.has_node("[0].train.hooks.failed")
    for hook in (".hooks.started", "[0].train.hooks.running", "[0].train.hooks.done"):
        assert run.node(hook).get("nodeFlag", {}).get("hooked") is True


# =================================================================================== scripts, expressions


@uses("scripts")
def test_python_and_sh_scripts(scenarios: Scenarios) -> None:
    run = scenarios["scripts"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("[0].fib") == "55"
    assert run.result("[1].check") == "55 is odd; 3 lines in the report"
    assert run.result("[1].roll-up") == "fib(10)=55 by sluice"


@uses("expressions")
def test_expression_tags(scenarios: Scenarios) -> None:
    run = scenarios["expressions"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    expected = {
        "totals": "total=12.5 tags=2",
        "labels": "owner=PLATFORM-TEAM tags=alpha+beta",
        "sizing": "size=large",
        "config": 'config={"replicas":3}',
        "encoded": "encoded=cmVsZWFzZQ==",
        "fallback": "discount=none",
    }
    assert {k: run.result(f"[1].{k}") for k in expected} == expected


# =================================================================================== templates


@uses("template_ref", "template_ref_unstored")
def test_template_ref_uses_a_stored_workflow_template(scenarios: Scenarios) -> None:
    run = scenarios["template_ref"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result(".loud") == "LAUNCH DAY"
    assert run.result(".fingerprint") == hashlib.sha256(b"LAUNCH DAY").hexdigest()[:12]
    assert run.node(".fingerprint")["templateRef"] == {"name": "toolbox", "template": "checksum"}
    unstored = scenarios["template_ref_unstored"]
    assert unstored.rc == 2
    assert "toolbox" in unstored.stderr


@uses("workflow_template_ref")
def test_workflow_template_ref_merges_arguments(scenarios: Scenarios) -> None:
    run, overridden = scenarios["workflow_template_ref"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.param("", "headline") == "GIZMO 2.5"
    assert run.result("[1].digest") == hashlib.sha256(b"GIZMO 2.5").hexdigest()[:12]
    assert (overridden.rc, overridden.phase) == (0, "Succeeded")
    assert overridden.param("", "headline") == "GIZMO 3.0"


# =================================================================================== pods and volumes


@uses("emptydir_sidecar")
def test_empty_dir_is_shared_by_init_sidecar_and_main(scenarios: Scenarios) -> None:
    run = scenarios["emptydir_sidecar"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("") == "config=mode=fast sidecar=cache warmed"
    took = ts(run.status["finishedAt"]) - ts(run.status["startedAt"])
    assert took.total_seconds() < 10  # the sidecar's sleep 60 was cut short


@uses("volume_claims")
def test_volume_claim_is_shared_between_steps(scenarios: Scenarios) -> None:
    run = scenarios["volume_claims"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("[2].count") == "2 files, 5 words"


@uses("container_set")
def test_container_set_runs_containers_in_dependency_order(scenarios: Scenarios) -> None:
    run = scenarios["container_set"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    pod = run.node(".process")
    assert pod["type"] == "Pod"
    containers = {n["displayName"]: n for n in run.nodes_under(".process.")}
    assert set(containers) == {"fetch", "resize", "thumbnail", "main"}
    assert {n["type"] for n in containers.values()} == {"Container"}
    assert {n["phase"] for n in containers.values()} == {"Succeeded"}
    summary = "fetched photo.raw -> resized 1024px + thumbnail 128px"
    assert pod["outputs"]["result"] == summary
    assert run.result(".publish") == f"published: {summary}"


# =================================================================================== the first two


@uses("hello_world", "dag_diamond")
def test_hello_world_and_diamond(scenarios: Scenarios) -> None:
    hello = scenarios["hello_world"]
    assert (hello.rc, hello.phase) == (0, "Succeeded")
    assert hello.result("") == "hello examples"
    diamond = scenarios["dag_diamond"]
    assert (diamond.rc, diamond.phase) == (0, "Succeeded")
    assert diamond.param("", "combined") == "AB+AC"


# =================================================================================== formerly blocked


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@scenario
def memoization(home: Path) -> tuple[Run, Run]:
    return run_example(home, "memoization.yaml"), run_example(home, "memoization.yaml")


@scenario
def daemon_step(home: Path) -> Run:
    return run_example(home, "daemon-step.yaml", f"port={_free_port()}")


@scenario
def init_mirror_mounts(home: Path) -> Run:
    return run_example(home, "init-container-mirror-mounts.yaml")


@scenario
def deadline_exit_handler(home: Path) -> Run:
    return run_example(home, "workflow-deadline-exit-handler.yaml")


@uses("memoization")
def test_second_run_of_a_memoized_step_is_a_cache_hit_with_the_same_outputs(scenarios: Scenarios) -> None:
    first, second = scenarios["memoization"]
    assert (first.phase, second.phase) == ("Succeeded", "Succeeded")
    a, b = first.node("[0].fingerprint"), second.node("[0].fingerprint")
    assert a["memoizationStatus"]["hit"] is False and b["memoizationStatus"]["hit"] is True
    assert a["outputs"]["parameters"] == b["outputs"]["parameters"]
    assert first.result("[1].report") == second.result("[1].report")


@uses("daemon_step")
def test_daemon_is_reached_on_loopback_once_its_readiness_probe_passes(scenarios: Scenarios) -> None:
    run = scenarios["daemon_step"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("[1].count") == "inventory: 42 widgets"
    assert run.result("[1].restock") == "restock file has 3 lines"


@uses("init_mirror_mounts")
def test_init_container_with_mirror_volume_mounts_sees_the_main_volumes(scenarios: Scenarios) -> None:
    run = scenarios["init_mirror_mounts"]
    assert (run.rc, run.phase) == (0, "Succeeded")
    assert run.result("") == "seeded by init: 3 fixtures"


@uses("deadline_exit_handler")
def test_exit_handler_still_runs_after_the_workflow_deadline(scenarios: Scenarios) -> None:
    run = scenarios["deadline_exit_handler"]
    assert (run.rc, run.phase) == (1, "Failed")
    assert run.node("")["message"] == "Step exceeded its deadline"
    assert run.node(".onExit")["phase"] == "Succeeded"
    assert run.result(".onExit") == "cleanup after Failed run"
