"""The operator's Prometheus metrics, in the text exposition format, served on ``/metrics``.

Counters and the reconcile-duration histogram are updated by the controller as it works; workflows by
phase are counted from the controller's view of the cluster when scraped. The format is small enough
to write by hand, which keeps the operator image free of another client library.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from engine.runtime.kubernetes.controller import Controller

# Reconcile CPU seconds: a small workflow takes well under a millisecond, a 10,000-node one ~0.1 s.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.pods_created = 0
        self.reconciles = 0
        self.reconcile_seconds = 0.0
        self._buckets = [0] * len(BUCKETS)

    def observe_reconcile(self, seconds: float) -> None:
        self.reconciles += 1
        self.reconcile_seconds += seconds
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(self._buckets):
            self._buckets[i] += 1

    def render(self) -> str:
        ctl = self.controller
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        phases: Counter[str] = Counter(str(w.get("phase") or "Pending") for w in ctl.workflows.values())
        family("sluice_workflows", "gauge", "Workflows this operator knows, by phase.")
        for phase in sorted({"Pending", "Running", "Succeeded", "Failed", "Error", *phases}):
            lines.append(f'sluice_workflows{{phase="{phase}"}} {phases.get(phase, 0)}')
        family("sluice_workflows_driven", "gauge", "Workflows being driven right now.")
        lines.append(f"sluice_workflows_driven {len(ctl.drivers)}")
        family("sluice_reconcile_duration_seconds", "histogram", "CPU time of one reconcile of one workflow.")
        cumulative = 0
        for bound, count in zip(BUCKETS, self._buckets, strict=True):
            cumulative += count
            lines.append(f'sluice_reconcile_duration_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'sluice_reconcile_duration_seconds_bucket{{le="+Inf"}} {self.reconciles}')
        lines.append(f"sluice_reconcile_duration_seconds_sum {self.reconcile_seconds:.6f}")
        lines.append(f"sluice_reconcile_duration_seconds_count {self.reconciles}")
        family("sluice_pods_created_total", "counter", "Step pods created.")
        lines.append(f"sluice_pods_created_total {self.pods_created}")
        api = ctl.api.sync
        family("sluice_api_requests_total", "counter", "Requests to the API server, by method.")
        for method, count in sorted(api.requests.items()):
            lines.append(f'sluice_api_requests_total{{method="{method}"}} {count}')
        family("sluice_api_errors_total", "counter", "Failed API requests, by HTTP status (0: no answer).")
        for status, count in sorted(api.errors.items()):
            lines.append(f'sluice_api_errors_total{{status="{status}"}} {count}')
        return "\n".join(lines) + "\n"

    async def serve(self, port: int, host: str = "0.0.0.0") -> web.AppRunner:
        async def handle(_request: web.Request) -> web.Response:
            return web.Response(text=self.render(), content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

    def snapshot(self) -> dict[str, Any]:
        """The figures the scale benchmark reports."""
        return {
            "pods_created": self.pods_created,
            "reconciles": self.reconciles,
            "reconcile_seconds": self.reconcile_seconds,
            "requests": dict(self.controller.api.sync.requests),
            "errors": dict(self.controller.api.sync.errors),
        }
