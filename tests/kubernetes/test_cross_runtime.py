"""Both runtimes give every example the same final node tree: names, types, phases and outputs.

Each workflow in ``examples/workflows/`` runs twice: with ``sluice run`` on the embedded runtime, and
on the test cluster (``sluice operator``, the test kubelet running the pods, artifacts in moto's S3).
The examples go to the cluster a few at a time (every pod runs on this machine) while the embedded runs
proceed.
The trees are compared after the workflow's own name is replaced by ``WF`` (generated names differ) and
clock readings that examples print are replaced by ``<time>``; timestamps, messages and artifact
locations are runtime-specific and not compared. Steps stopped at a deadline are compared too: both
runtimes stop them with SIGTERM and keep what they printed and their exit code.
"""

from __future__ import annotations

import re
import socket
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from engine.runtime.kubernetes.pods import ANNOTATION_NODE_NAME
from tests.examples.test_examples import EXAMPLES, Run, run_example, sluice
from tests.kubernetes.cluster import FINISHED, Cluster

TOOLBOX = EXAMPLES / "workflow-template-toolbox.yaml"
SHOP_SETTINGS = {"currency": "EUR", "vat": "21"}
# Examples whose outputs hold clock readings, the pattern of those readings (replaced by <time> on
# both sides before comparing), and why.
CLOCK_READINGS: dict[str, tuple[str, str]] = {
    "memoization.yaml": (r"@\d+", "its digest ends with the time of the run that computed it"),
    "parallelism.yaml": (r"\d+\.\d+", "its items' results are their start and end times"),
}
# Examples whose steps are stopped a few seconds after they start. On the test cluster every pod starts
# on this machine, slowly while it is busy: these go to the cluster last, once the other examples and
# the embedded runs are done, and a step stopped before its main container started there (so it
# reports nothing) is compared on type and phase, with a line saying so.
DEADLINES = frozenset({"step-timeouts.yaml", "workflow-deadline.yaml", "workflow-deadline-exit-handler.yaml"})
# Workflows in flight on the test cluster at once: its pods all run on this machine.
IN_FLIGHT = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def examples() -> dict[str, tuple[str, ...]]:
    """Every runnable example (WorkflowTemplates are stored, not run) with the parameters it gets."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if yaml.safe_load(path.read_text()).get("kind") != "Workflow":
            continue
        params: tuple[str, ...] = ()
        if path.name == "daemon-step.yaml":
            params = (f"port={_free_port()}",)  # the two runs' daemons must not share a port
        found[path.name] = params
    return found


def tree(status: dict[str, Any], workflow: str, *, clock: str | None = None) -> dict[str, tuple[Any, ...]]:
    """name (without the workflow's) -> type, phase, result, exit code, parameters, artifact names;
    text matching ``clock`` becomes ``<time>``."""

    def norm(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.replace(workflow, "WF")
        return re.sub(clock, "<time>", value) if clock else value

    out: dict[str, tuple[Any, ...]] = {}
    for node in (status.get("nodes") or {}).values():
        outputs = node.get("outputs") or {}
        out[norm(node["name"])] = (
            node["type"],
            node["phase"],
            norm(outputs.get("result")),
            outputs.get("exitCode"),
            tuple(sorted((p["name"], norm(p.get("value"))) for p in outputs.get("parameters") or ())),
            tuple(sorted(a["name"] for a in outputs.get("artifacts") or ())),
        )
    return out


def _stopped_before_reporting(cluster: Cluster, workflow: str) -> dict[str, str]:
    """Nodes (named as ``tree`` names them) whose pod was stopped before it could report, and why.

    A pod stopped before its main container started ran nothing. One stopped before its wait container
    ran (a loaded machine starts the pod's containers seconds apart) loses what main wrote: the wait
    container never starts, or is killed with the pod, and reports nothing, as on a real cluster.
    """
    out = {}
    for pod in cluster.pods():
        meta = pod["metadata"]
        node = (meta.get("annotations") or {}).get(ANNOTATION_NODE_NAME)
        if not node or not meta["name"].startswith(workflow):
            continue
        states = {
            c["name"]: c.get("state") or {} for c in (pod.get("status") or {}).get("containerStatuses") or ()
        }
        main, wait = states.get("main"), states.get("wait")
        if not main or "waiting" in main:
            out[str(node).replace(workflow, "WF")] = "was stopped before its main container started"
        elif wait is not None and (wait.get("terminated") or {}).get("exitCode") != 0:
            out[str(node).replace(workflow, "WF")] = "was stopped before its wait container could report"
    return out


def _pod_states(cluster: Cluster, workflow: str) -> list[str]:
    """What the cluster's pods of ``workflow`` went through, for the report of a difference."""
    lines = []
    for pod in cluster.pods():
        meta, status = pod["metadata"], pod.get("status") or {}
        if not meta["name"].startswith(workflow):
            continue
        phase = f"{status.get('phase')} {status.get('reason') or ''}".strip()
        lines.append(f"    pod {meta['name']}: {phase} from {status.get('startTime')}")
        for c in [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]:
            lines.append(f"      {c['name']}: {c.get('state')}")
    return lines


def _embedded(home: Path, name: str, params: tuple[str, ...]) -> Run:
    home.mkdir(parents=True)
    if name == "configmap-parameters.yaml":
        literals = [arg for k, v in SHOP_SETTINGS.items() for arg in ("--from-literal", f"{k}={v}")]
        sluice(home, "configmap", "create", "shop-settings", *literals)
    if name in ("template-ref.yaml", "workflow-template-ref.yaml"):
        sluice(home, "template", "create", str(TOOLBOX))
    if name == "daemon-step.yaml":
        params = (f"port={_free_port()}",)  # not the cluster run's: both daemons listen on this host
    return run_example(home, name, *params)


def _on_cluster(cluster: Cluster, name: str, params: tuple[str, ...]) -> str:
    manifest = yaml.safe_load((EXAMPLES / name).read_text())
    given = dict(p.split("=", 1) for p in params)
    for p in (manifest["spec"].get("arguments") or {}).get("parameters") or ():
        if p["name"] in given:
            p["value"] = given[p["name"]]
    return cluster.submit(manifest)


def _run_batch(
    cluster: Cluster,
    batch: list[str],
    runs: dict[str, tuple[str, ...]],
    submitted: dict[str, str],
    finished: dict[str, dict[str, Any]],
) -> None:
    for name in batch:
        submitted[name] = _on_cluster(cluster, name, runs[name])
    for name in batch:
        finished[name] = cluster.wait_finished(submitted[name], timeout=180)


def test_every_example_ends_with_the_same_node_tree_on_both_runtimes(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.api.create(
        "/api/v1/namespaces/default/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "shop-settings"},
            "data": SHOP_SETTINGS,
        },
    )
    toolbox = yaml.safe_load(TOOLBOX.read_text())
    toolbox["metadata"]["namespace"] = "default"
    cluster.api.create("/apis/sluice.dev/v1alpha1/namespaces/default/workflowtemplates", toolbox)

    runs = examples()
    submitted: dict[str, str] = {}
    finished: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        local: dict[str, Future[Run]] = {
            name: pool.submit(_embedded, tmp_path / name.removesuffix(".yaml"), name, params)
            for name, params in runs.items()
        }
        names = [n for n in runs if n not in DEADLINES]
        for start in range(0, len(names), IN_FLIGHT):
            _run_batch(cluster, names[start : start + IN_FLIGHT], runs, submitted, finished)
        embedded = {name: future.result() for name, future in local.items()}
        _run_batch(cluster, sorted(DEADLINES), runs, submitted, finished)

    differences: list[str] = []
    for name, status in sorted(finished.items()):
        mine = embedded[name]
        assert mine.status.get("phase") in FINISHED, f"{name}: embedded run did not finish: {mine.stderr}"
        clock = CLOCK_READINGS[name][0] if name in CLOCK_READINGS else None
        want, got = tree(mine.status, mine.name, clock=clock), tree(status, submitted[name], clock=clock)
        if name in DEADLINES:
            for node, why in sorted(_stopped_before_reporting(cluster, submitted[name]).items()):
                # Nothing was reported, so only the node's type and phase can agree.
                print(f"{name}: {node} {why} on the cluster")
                if node in want and node in got:
                    want[node], got[node] = want[node][:2], got[node][:2]
        if want == got:
            continue
        lines = [f"{name}: embedded {mine.phase} vs cluster {status.get('phase')} ({status.get('message')})"]
        for node in sorted(set(want) | set(got)):
            if want.get(node) != got.get(node):
                lines.append(f"    {node}\n      embedded: {want.get(node)}\n      cluster:  {got.get(node)}")
        lines += _pod_states(cluster, submitted[name])
        differences.append("\n".join(lines))
    for name, (pattern, why) in sorted(CLOCK_READINGS.items()):
        print(f"{name}: outputs compared with {pattern!r} read as <time>: {why}")
    print(f"compared {len(finished)} examples; {len(differences)} differ")
    assert not differences, "\n".join(differences)
