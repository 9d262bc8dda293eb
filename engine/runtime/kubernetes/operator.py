"""``sluice operator``: the kopf operator that runs workflows and the event kinds' workloads on Kubernetes.

kopf owns the watches (Workflows, CronWorkflows, pods labelled as workflow steps, EventBuses,
EventSources and Sensors), reconnection, the liveness endpoint and logging; every watch event goes, as
it is, to a controller that keeps its own state and writes its own status: workflow, cron and pod
events to the :class:`~engine.runtime.kubernetes.controller.Controller`, event-kind events to the
:class:`~engine.runtime.kubernetes.eventcontroller.EventController`, which keeps their workloads in
place. Only kopf's raw-event handlers are used: they store nothing on the objects (no finalizers, no
progress annotations), so the operator can be stopped, upgraded or killed at any time, and a new one
continues from the objects alone. Runs standalone (one replica; the Deployment says so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from engine.errors import SluiceError
from engine.runtime.images import ImageTable
from engine.runtime.kubernetes.api import Api, ApiError, AsyncApi, TokenBucket, load_client, path_of
from engine.runtime.kubernetes.controller import Controller
from engine.runtime.kubernetes.eventcontroller import EventController
from engine.runtime.kubernetes.pods import LABEL_WORKFLOW, PodSettings
from engine.runtime.kubernetes.settings import OperatorSettings
from engine.spec.crd import GROUP, VERSION

log = logging.getLogger(__name__)


async def repository_env(api: AsyncApi, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The executor containers' environment for the default artifact repository (none when the
    ConfigMap is absent: steps then cannot pass artifacts, and say so when they try)."""
    from engine.runtime.s3 import executor_env, parse_repository_configmap

    cm = await api.get_or_none(
        path_of("configmaps", settings.namespace, settings.artifact_repository_configmap, group="")
    )
    if cm is None:
        log.warning(
            "no ConfigMap %s/%s: steps have no artifact repository",
            settings.namespace,
            settings.artifact_repository_configmap,
        )
        return []
    config = parse_repository_configmap(cm)
    return executor_env(config)


def connection_info(cfg: Any) -> Any:
    """kopf's credentials from an official-client ``Configuration``."""
    import kopf

    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").partition(" ")
    if header and not token:
        scheme, token = "", header
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def build_controller(api_client: Any, settings: OperatorSettings, env: list[dict[str, Any]]) -> Controller:
    api = AsyncApi(
        Api(api_client, limiter=TokenBucket(settings.api_qps, settings.api_burst)), workers=settings.workers
    )
    executor_env = [*env, *({"name": k, "value": v} for k, v in settings.executor_extra_env)]
    pods = PodSettings(
        executor_image=settings.executor_image,
        executor_image_pull_policy=settings.executor_image_pull_policy or None,
        executor_env=tuple(executor_env),
        instance_id=settings.instance_id or None,
        images=ImageTable(),
    )
    return Controller(api, settings, pods)


async def run_operator(
    settings: OperatorSettings,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    import kopf

    api_client = load_client(kubeconfig, context)
    holder: dict[str, Controller] = {}
    events: dict[str, EventController] = {}
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf's own client login reads the default kubeconfig location only; ours honours --kubeconfig
        # and --context, and reloads the file each time kopf asks (expired tokens are refreshed).
        return connection_info(load_client(kubeconfig, context).configuration)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.scanning.disabled = True

    @kopf.on.event(GROUP, VERSION, "workflows", registry=registry)
    async def workflow_event(event: kopf.RawEvent, **_: Any) -> None:
        await holder["controller"].on_workflow(event["type"], event["object"])

    @kopf.on.event("", "v1", "pods", labels={LABEL_WORKFLOW: kopf.PRESENT}, registry=registry)
    async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
        await holder["controller"].on_pod(event["type"], event["object"])

    @kopf.on.event(GROUP, VERSION, "cronworkflows", registry=registry)
    async def cron_event(event: kopf.RawEvent, **_: Any) -> None:
        await holder["controller"].on_cron(event["type"], event["object"])

    @kopf.on.event(GROUP, VERSION, "eventbus", registry=registry)
    async def event_bus_event(event: kopf.RawEvent, **_: Any) -> None:
        await events["controller"].on_event_bus(event["type"], event["object"])

    @kopf.on.event(GROUP, VERSION, "eventsources", registry=registry)
    async def event_source_event(event: kopf.RawEvent, **_: Any) -> None:
        await events["controller"].on_event_source(event["type"], event["object"])

    @kopf.on.event(GROUP, VERSION, "sensors", registry=registry)
    async def sensor_event(event: kopf.RawEvent, **_: Any) -> None:
        await events["controller"].on_sensor(event["type"], event["object"])

    @kopf.on.probe(id="workflows", registry=registry)
    def workflows_probe(**_: Any) -> int:
        return len(holder["controller"].drivers)

    controller = None
    try:
        env = await _repository_env_with(api_client, settings)
        controller = build_controller(api_client, settings, env)
        holder["controller"] = controller
        events["controller"] = EventController(controller.api, settings)
        controller.start()
        metrics_runner = (
            await controller.metrics.serve(settings.metrics_port) if settings.metrics_port else None
        )
        liveness = f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
        await kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=liveness,
            stop_flag=stop,
        )
        if metrics_runner is not None:
            await metrics_runner.cleanup()
    finally:
        if "controller" in events:
            await events["controller"].close()
        if controller is not None:
            await controller.close()
            controller.api.close()


async def _repository_env_with(api_client: Any, settings: OperatorSettings) -> list[dict[str, Any]]:
    api = AsyncApi(Api(api_client), workers=1)
    try:
        return await repository_env(api, settings)
    except ApiError as exc:
        raise SluiceError(f"cannot read the artifact repository ConfigMap: {exc}") from None
    finally:
        api.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice operator", description="Run workflows on Kubernetes.")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = OperatorSettings.from_env()
    stop = asyncio.Event()

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await run_operator(settings, kubeconfig=args.kubeconfig, context=args.context, stop=stop)

    try:
        asyncio.run(go())
    except SluiceError as exc:
        print(f"sluice operator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - ``sluice operator`` is the entry point
    raise SystemExit(main())
