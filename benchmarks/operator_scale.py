"""How the Kubernetes operator scales: API requests and reconcile CPU per step, and stored status size.

What runs: the tests' API server (kmock plus the compatibility layer, ``tests/kubernetes/apiserver.py``)
as a subprocess; ``sluice operator`` as in production (kopf, the official client), as a subprocess;
and in this process a *synthetic kubelet*: a watch on pods that answers every new step pod at once
with a finished status and the ``wait`` container's outputs line, as the real executor would print it.
No container runs, so the figures are the operator's own: what it asks of the API server and what it
spends deciding.

Scenario: one workflow, a ``withItems`` fan-out of N steps (``--steps``, default 1,000), no parallelism
limit. Reported:

* ``requests/step``: every request the operator made (from its ``/metrics``), divided by N. The floor is
  2 per step (create the pod, read its outputs); ``x floor`` is the figure in units of it. Watches are
  long requests counted once each.
* ``reconcile CPU/step``: the operator's own histogram sum (CPU time inside ``reconcile``) per step, and
  the operator process's whole CPU time per step (kopf, JSON, HTTP included), both against a floor
  measured in the same run: the CPU this process spends to make the floor's 2 requests per step with
  the same client library (``x floor``).
* ``status``: the workflow object as stored (bytes of its JSON, with ``compressedNodes`` once large),
  for N and for ``--status-steps`` (default 10,000): the target is <= 1 MB (etcd's object limit is 1.5).

Targets (PASS/MISS printed, exit code 0 either way): requests/step <= 4 at 1,000 steps; stored status of
the 10,000-step workflow <= 1 MB. ``--quick`` runs 200 and 2,000 steps.

Run: ``.venv/bin/python benchmarks/operator_scale.py [--quick] [--steps N] [--status-steps M]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kubernetes.apiserver import ApiServer, container_status
from tests.kubernetes.operator_process import OperatorProcess

WORKFLOWS = "/apis/sluice.dev/v1alpha1/namespaces/default/workflows"
OUTPUTS = (
    'SLUICE-OUTPUTS {"v":1,"result":"","parameters":[],"artifacts":[],"problems":[],"exitCodes":{"main":0}}\n'
)


class SyntheticKubelet(threading.Thread):
    """Finishes every new pod at once: wait container log first, then the Succeeded status."""

    def __init__(self, api: ApiServer) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.done = 0
        self.stopping = False
        self.seen: set[str] = set()

    def run(self) -> None:
        url = urllib.parse.urlparse(self.api.url)
        rv = self.api.request("GET", "/api/v1/pods")["metadata"]["resourceVersion"]
        while not self.stopping:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            conn.request("GET", f"/api/v1/pods?watch=true&resourceVersion={rv}&timeoutSeconds=20")
            resp = conn.getresponse()
            for raw in resp:
                if self.stopping:
                    break
                event = json.loads(raw)
                pod = event.get("object")
                if event.get("type") == "ERROR" or not isinstance(pod, dict):
                    # Expired resourceVersion or a server-side error: start again from a fresh list.
                    rv = self.api.request("GET", "/api/v1/pods")["metadata"]["resourceVersion"]
                    break
                rv = pod["metadata"].get("resourceVersion", rv)
                name = pod["metadata"]["name"]
                if event["type"] != "ADDED" or name in self.seen:
                    continue
                self.seen.add(name)
                self.api.set_pod_log("default", name, OUTPUTS, container="wait")
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self.api.set_pod_status(
                    "default",
                    name,
                    {
                        "phase": "Succeeded",
                        "startTime": stamp,
                        "containerStatuses": [
                            container_status("main", exit_code=0),
                            container_status("wait", exit_code=0),
                        ],
                    },
                )
                self.done += 1
            conn.close()


def fan_out(n: int) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "fan-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [[{"name": "s", "template": "t", "withSequence": {"count": str(n)}}]],
                },
                {"name": "t", "container": {"image": "busybox", "command": ["true"]}},
            ],
        },
    }


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor_cpu_per_step(api: ApiServer, n: int) -> float:
    """CPU of this process to create a pod and read a log, n times, with the official client's raw calls
    (the floor of what any operator must do per step)."""
    from engine.runtime.kubernetes.api import Api, load_client

    client = Api(load_client(str(api.kubeconfig)))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    started = time.process_time()
    for i in range(n):
        pod["metadata"]["name"] = f"floor-{i}"
        client.call("POST", "/api/v1/namespaces/default/pods", body=pod)
        client.call("GET", f"/api/v1/namespaces/default/pods/floor-{i}/log", raw=True)
    return (time.process_time() - started) / n


def run(api: ApiServer, workdir: Path, steps: int, timeout: float) -> dict[str, Any]:
    api.reset()
    api.apply_crds()
    kubelet = SyntheticKubelet(api)
    kubelet.start()
    operator = OperatorProcess(api, workdir, env={"SLUICE_WORKERS": "8"}).start()
    try:
        assert operator.process is not None
        cpu0 = process_cpu(operator.process.pid)
        before = operator.metrics()
        started = time.monotonic()
        name = api.create(
            WORKFLOWS, {**fan_out(steps), "metadata": {"generateName": "fan-", "namespace": "default"}}
        )["metadata"]["name"]
        phase = ""
        while time.monotonic() - started < timeout:
            obj = api.request("GET", f"{WORKFLOWS}/{name}")
            phase = (obj.get("status") or {}).get("phase") or ""
            if phase in ("Succeeded", "Failed", "Error"):
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # the last status write's watch echo
        after = operator.metrics()
        cpu = process_cpu(operator.process.pid) - cpu0
        obj = api.request("GET", f"{WORKFLOWS}/{name}")
        return {
            "steps": steps,
            "phase": phase,
            "seconds": elapsed,
            "requests": metric_sum(after, "sluice_api_requests_total")
            - metric_sum(before, "sluice_api_requests_total"),
            "reconcile_cpu": metric_sum(after, "sluice_reconcile_duration_seconds_sum")
            - metric_sum(before, "sluice_reconcile_duration_seconds_sum"),
            "process_cpu": cpu,
            "stored_bytes": len(json.dumps(obj, separators=(",", ":"))),
            "compressed": bool((obj.get("status") or {}).get("compressedNodes")),
        }
    finally:
        kubelet.stopping = True
        operator.kill()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--status-steps", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.status_steps = 200, 2000
    with tempfile.TemporaryDirectory() as tmp:
        api = ApiServer(Path(tmp) / "kmock").start()
        try:
            floor = floor_cpu_per_step(api, 300)
            print(f"floor: {floor * 1000:.2f} ms CPU per step (create a pod + read a log, official client)")
            print(
                f"{'steps':>7} {'phase':>9} {'wall s':>7} {'req/step':>9} {'x floor':>8} "
                f"{'reconcile ms/step':>18} {'operator ms/step':>16} {'x floor':>8} {'stored kB':>10}"
            )
            results = []
            for n in dict.fromkeys([args.steps, args.status_steps]):
                r = run(api, Path(tmp) / f"op-{n}", n, timeout=max(120.0, n / 5))
                results.append(r)
                per = r["requests"] / n
                cpu = r["process_cpu"] / n
                print(
                    f"{n:>7} {r['phase']:>9} {r['seconds']:>7.1f} {per:>9.2f} {per / 2:>8.2f} "
                    f"{r['reconcile_cpu'] / n * 1000:>18.3f} {cpu * 1000:>16.2f} {cpu / floor:>8.2f} "
                    f"{r['stored_bytes'] / 1000:>10.0f}{' (compressed)' if r['compressed'] else ''}"
                )
        finally:
            api.stop()
    small, large = results[0], results[-1]
    req = small["requests"] / small["steps"]
    print(f"target requests/step <= 4 at {small['steps']} steps: {req:.2f} {'PASS' if req <= 4 else 'MISS'}")
    size = large["stored_bytes"]
    print(
        f"target stored status <= 1 MB at {large['steps']} steps: {size / 1e6:.2f} MB "
        f"{'PASS' if size <= 1_000_000 and large['phase'] == 'Succeeded' else 'MISS'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
