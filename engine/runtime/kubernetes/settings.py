"""The operator's settings: environment variables (a ConfigMap reaches them through ``envFrom``).

Read once by ``sluice operator`` at start-up (``OperatorSettings.from_env``); every value has a default
that suits a small cluster. Bad values stop the operator with a one-line error naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import SluiceError

DEFAULT_IMAGE = "ghcr.io/sluicegate/sluicegate:0.1.0"
DEFAULT_JETSTREAM_IMAGE = "nats:2.10-alpine"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    # Namespaces whose workflows this operator runs; empty means every namespace.
    namespaces: tuple[str, ...] = ()
    # Client-side limits on the operator's own API requests (as client-go's QPS and burst).
    api_qps: float = 20.0
    api_burst: int = 30
    # Pod creations per second, on top of the API limits (a 10,000-step fan-out must not flood the
    # scheduler).
    pod_creates_per_second: float = 20.0
    # Threads that carry out blocking API calls.
    workers: int = 8
    # Only workflows labelled workflows.sluice.dev/controller-instanceid=ID are ours when set.
    instance_id: str = ""
    # The image of the init and wait containers of every step pod (the operator's own).
    executor_image: str = DEFAULT_IMAGE
    executor_image_pull_policy: str = ""
    # The ConfigMap (in the operator's namespace) naming the default artifact repository.
    namespace: str = "sluicegate"
    artifact_repository_configmap: str = "artifact-repositories"
    metrics_port: int = 9090
    liveness_port: int = 8080
    # Applied to workflows that set no activeDeadlineSeconds; 0 means none.
    default_active_deadline_seconds: int = 0
    # Extra environment for the executor containers (tests point SLUICE_RUN_BINARY elsewhere).
    executor_extra_env: tuple[tuple[str, str], ...] = field(default=())
    # The NATS server image of the JetStream servers an EventBus runs (its spec.jetstream.version, when
    # set, picks another tag of the same repository).
    jetstream_image: str = DEFAULT_JETSTREAM_IMAGE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        d = cls()

        def text(name: str, default: str) -> str:
            return env.get(name, default).strip()

        def number(name: str, default: float, *, minimum: float) -> float:
            raw = text(name, "")
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SluiceError(f"{name}={raw!r}: expected a number") from None
            if value < minimum:
                raise SluiceError(f"{name}={raw!r}: must be at least {minimum:g}")
            return value

        namespaces = tuple(n.strip() for n in text("SLUICE_NAMESPACES", "").split(",") if n.strip())
        extra = tuple(
            (k[len("SLUICE_EXECUTOR_ENV_") :], v)
            for k, v in sorted(env.items())
            if k.startswith("SLUICE_EXECUTOR_ENV_")
        )
        return cls(
            namespaces=namespaces,
            api_qps=number("SLUICE_API_QPS", d.api_qps, minimum=0.1),
            api_burst=int(number("SLUICE_API_BURST", d.api_burst, minimum=1)),
            pod_creates_per_second=number(
                "SLUICE_POD_CREATES_PER_SECOND", d.pod_creates_per_second, minimum=0.1
            ),
            workers=int(number("SLUICE_WORKERS", d.workers, minimum=1)),
            instance_id=text("SLUICE_INSTANCE_ID", ""),
            executor_image=text("SLUICE_EXECUTOR_IMAGE", DEFAULT_IMAGE) or DEFAULT_IMAGE,
            executor_image_pull_policy=text("SLUICE_EXECUTOR_IMAGE_PULL_POLICY", ""),
            namespace=text("SLUICE_NAMESPACE", "") or text("POD_NAMESPACE", "") or d.namespace,
            artifact_repository_configmap=text(
                "SLUICE_ARTIFACT_REPOSITORY_CONFIGMAP", d.artifact_repository_configmap
            ),
            metrics_port=int(number("SLUICE_METRICS_PORT", d.metrics_port, minimum=0)),
            liveness_port=int(number("SLUICE_LIVENESS_PORT", d.liveness_port, minimum=0)),
            default_active_deadline_seconds=int(
                number("SLUICE_DEFAULT_ACTIVE_DEADLINE_SECONDS", 0, minimum=0)
            ),
            executor_extra_env=extra,
            jetstream_image=text("SLUICE_JETSTREAM_IMAGE", "") or DEFAULT_JETSTREAM_IMAGE,
        )
