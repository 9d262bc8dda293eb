"""Both runtimes give every example the same final node tree: names, types, phases and outputs.

Each workflow in ``examples/workflows/`` runs twice: with ``sluice run`` on the embedded runtime, and
on the test cluster (``sluice operator``, the test kubelet running the pods, artifacts in moto's S3).
The examples go to the cluster a few at a time (every pod runs on this machine) while the embedded runs
proceed.
The trees are compared after the workflow's own name is replaced by ``WF`` (generated names differ);
timestamps, messages and artifact locations are runtime-specific and not compared.
"""

from __future__ import annotations

import socket
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from tests.examples.test_examples import EXAMPLES, Run, run_example, sluice
from tests.kubernetes.cluster import FINISHED, Cluster

TOOLBOX = EXAMPLES / "workflow-template-toolbox.yaml"
SHOP_SETTINGS = {"currency": "EUR", "vat": "21"}
# Examples whose trees are compared without output values (names, types and phases still must match),
# and why. Each entry is a known gap or an output that differs from run to run on one runtime alone.
STRUCTURE_ONLY = {
    "memoization.yaml": "its digest includes the time of the run",
    "parallelism.yaml": "its results are the steps' start and end times",
    "step-timeouts.yaml": "steps killed at their deadline: the embedded runtime reports SIGKILL's exit code "
    "137 and the output so far; on Kubernetes the killed pod's outputs are not collected yet",
    "workflow-deadline.yaml": "as step-timeouts.yaml: a step killed at the workflow's deadline",
    "workflow-deadline-exit-handler.yaml": "as step-timeouts.yaml: a step killed at the workflow's deadline",
}
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


def tree(status: dict[str, Any], workflow: str, *, values: bool = True) -> dict[str, tuple[Any, ...]]:
    """name (without the workflow's) -> type, phase, result, exit code, parameters, artifact names
    (with ``values=False``: type and phase only)."""

    def norm(value: Any) -> Any:
        return value.replace(workflow, "WF") if isinstance(value, str) else value

    out: dict[str, tuple[Any, ...]] = {}
    for node in (status.get("nodes") or {}).values():
        outputs = node.get("outputs") or {}
        if not values:
            out[norm(node["name"])] = (node["type"], node["phase"])
            continue
        out[norm(node["name"])] = (
            node["type"],
            node["phase"],
            norm(outputs.get("result")),
            outputs.get("exitCode"),
            tuple(sorted((p["name"], norm(p.get("value"))) for p in outputs.get("parameters") or ())),
            tuple(sorted(a["name"] for a in outputs.get("artifacts") or ())),
        )
    return out


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
        names = list(runs)
        for start in range(0, len(names), IN_FLIGHT):
            batch = names[start : start + IN_FLIGHT]
            for name in batch:
                submitted[name] = _on_cluster(cluster, name, runs[name])
            for name in batch:
                finished[name] = cluster.wait_finished(submitted[name], timeout=180)
        embedded = {name: future.result() for name, future in local.items()}

    differences: list[str] = []
    for name, status in sorted(finished.items()):
        mine = embedded[name]
        assert mine.status.get("phase") in FINISHED, f"{name}: embedded run did not finish: {mine.stderr}"
        values = name not in STRUCTURE_ONLY
        want, got = tree(mine.status, mine.name, values=values), tree(status, submitted[name], values=values)
        if want == got:
            continue
        lines = [f"{name}: embedded {mine.phase} vs cluster {status.get('phase')} ({status.get('message')})"]
        for node in sorted(set(want) | set(got)):
            if want.get(node) != got.get(node):
                lines.append(f"    {node}\n      embedded: {want.get(node)}\n      cluster:  {got.get(node)}")
        differences.append("\n".join(lines))
    for name, why in sorted(STRUCTURE_ONLY.items()):
        print(f"{name}: compared without output values: {why}")
    print(f"compared {len(finished)} examples; {len(differences)} differ")
    assert not differences, "\n".join(differences)
