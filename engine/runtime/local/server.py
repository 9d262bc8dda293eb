"""``sluice server``: a long-running local engine with an HTTP API on a Unix socket, and the cron loop.

The CLI's ``submit``, ``stop``, ``suspend``, ``resume``, ``terminate``, ``retry``, ``resubmit``,
``delete`` and ``wait`` talk to it; ``get``, ``list`` and ``logs`` read the state directly. The socket
lives at ``$SLUICE_HOME/server.sock`` (only this user can reach it). On start it adopts every
unfinished workflow whose previous engine is gone. It also hosts the events (webhook, calendar and S3
sources, the embedded bus, sensors: :mod:`engine.runtime.local.events`); ``webhook_ports`` maps spec
ports to the ports bound (tests bind free ports). The cron loop runs ``plan_cron`` for each stored
CronWorkflow and submits, terminates and deletes children as planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.errors import SluiceError, SpecError, StateError
from engine.runtime.local.engine import LocalEngine
from engine.runtime.local.events import EventsHost
from engine.spec.workflow import CronWorkflow, Workflow
from engine.workflows import cron as cronlib

log = logging.getLogger(__name__)

CRON_LABEL = "workflows.argoproj.io/cron-workflow"


def socket_path(home: Path) -> Path:
    return home / "server.sock"


def _error(exc: Exception) -> web.Response:
    status = 400 if isinstance(exc, SpecError) else 404 if "not found" in str(exc) else 409
    body: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
    if isinstance(exc, SpecError):
        body["lines"] = exc.lines()
    return web.json_response(body, status=status)


class Server:
    def __init__(
        self,
        engine: LocalEngine,
        *,
        cron_interval: float = 10.0,
        webhook_host: str = "127.0.0.1",
        webhook_ports: Mapping[str, int] | None = None,
        s3_poll_interval: float = 5.0,
        pace_limit: int | None = None,
        intake_process: bool = False,
    ) -> None:
        self.engine = engine
        self.cron_interval = cron_interval
        self.webhook_host = webhook_host
        self.webhook_ports = webhook_ports
        self.s3_poll_interval = s3_poll_interval
        self.pace_limit = pace_limit
        self.intake_process = intake_process
        self.events: EventsHost | None = None
        self._cron_wake = asyncio.Event()
        self._stop = asyncio.Event()

    # --- HTTP API ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        r = app.router
        r.add_get("/api/v1/health", self.health)
        r.add_post("/api/v1/workflows", self.submit)
        r.add_post("/api/v1/workflows/{ns}/{name}/{op}", self.operate)
        r.add_delete("/api/v1/workflows/{ns}/{name}", self.delete)
        r.add_get("/api/v1/workflows/{ns}/{name}/wait", self.wait)
        r.add_post("/api/v1/cron/wake", self.cron_wake)
        r.add_post("/api/v1/events/reload", self.events_reload)
        r.add_get("/api/v1/events/status", self.events_status)
        return app

    async def health(self, _req: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pid": os.getpid(), "workflows": len(self.engine.runs)})

    async def submit(self, req: web.Request) -> web.Response:
        try:
            body = await req.json()
            wf = Workflow.parse(body["manifest"])
            run = await self.engine.submit(
                wf,
                namespace=body.get("namespace"),
                parameters=[tuple(p) for p in body.get("parameters", [])],
                entrypoint=body.get("entrypoint"),
            )
        except (SluiceError, KeyError, ValueError) as exc:
            return _error(exc)
        return web.json_response({"name": run.name, "namespace": run.namespace, "uid": run.uid})

    async def operate(self, req: web.Request) -> web.Response:
        ns, name, op = req.match_info["ns"], req.match_info["name"], req.match_info["op"]
        try:
            body = await req.json() if req.can_read_body else {}
            eng = self.engine
            result: dict[str, Any] = {"name": name, "namespace": ns}
            if op == "suspend":
                eng.suspend(name, ns)
            elif op == "resume":
                result["resumed"] = eng.resume(name, ns, node=body.get("node"), outputs=body.get("outputs"))
            elif op == "stop":
                eng.stop(name, ns)
            elif op == "terminate":
                eng.terminate(name, ns)
            elif op == "retry":
                run = await eng.retry(
                    name,
                    ns,
                    restart_successful=bool(body.get("restartSuccessful")),
                    node_selector=body.get("nodeFieldSelector"),
                    parameters=[tuple(p) for p in body.get("parameters", [])],
                )
                result["name"] = run.name
            elif op == "resubmit":
                run = await eng.resubmit(name, ns, parameters=[tuple(p) for p in body.get("parameters", [])])
                result["name"] = run.name
            else:
                return web.json_response({"error": f"unknown operation {op!r}"}, status=404)
        except (SluiceError, ValueError) as exc:
            return _error(exc)
        return web.json_response(result)

    async def delete(self, req: web.Request) -> web.Response:
        try:
            await self.engine.delete(req.match_info["name"], req.match_info["ns"])
        except SluiceError as exc:
            return _error(exc)
        return web.json_response({"deleted": req.match_info["name"]})

    async def wait(self, req: web.Request) -> web.Response:
        try:
            phase = await self.engine.wait(req.match_info["name"], req.match_info["ns"])
        except SluiceError as exc:
            return _error(exc)
        return web.json_response({"phase": phase})

    async def cron_wake(self, _req: web.Request) -> web.Response:
        self._cron_wake.set()
        return web.json_response({"ok": True})

    async def events_reload(self, _req: web.Request) -> web.Response:
        if self.events is None:
            return web.json_response({"error": "this server runs no events"}, status=409)
        await self.events.reload()
        return web.json_response(self.events.status())

    async def events_status(self, _req: web.Request) -> web.Response:
        if self.events is None:
            return web.json_response({"error": "this server runs no events"}, status=409)
        return web.json_response(self.events.status())

    # --- cron ----------------------------------------------------------------------------------------

    async def cron_loop(self) -> None:
        while not self._stop.is_set():
            next_at: float | None = None
            try:
                next_at = await self.cron_pass()
            except Exception:
                log.exception("cron pass failed")
            now = self.engine.clock()
            timeout = (
                self.cron_interval if next_at is None else min(self.cron_interval, max(0.0, next_at - now))
            )
            self._cron_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cron_wake.wait(), timeout)

    async def cron_pass(self) -> float | None:
        eng = self.engine
        store = eng.store
        runtime = _LocalCronRuntime(eng)
        earliest: float | None = None
        for obj in store.list_objects("CronWorkflow"):
            cron = CronWorkflow.parse(obj)
            ns, name = cronlib.cron_key(cron)
            children = [
                cronlib.ChildRun(name=row.name, phase=row.phase, finished_at=row.finished_at)
                for row in store.list_workflows(ns)
                if (row.manifest.get("metadata", {}).get("labels") or {}).get(CRON_LABEL) == name
            ]
            requeue_at = await cronlib.run_cron(
                cron,
                status=cronlib.CronState.from_json(store.cron_state(ns, name)),
                children=children,
                now=eng.clock(),
                runtime=runtime,
            )
            earliest = cronlib.earlier(earliest, requeue_at)
        return earliest

    # --- running -------------------------------------------------------------------------------------

    async def serve(self, *, cron: bool = True, events: bool = True) -> None:
        eng = self.engine
        home = eng.home
        sock = socket_path(home)
        adopted = await eng.start(adopt=True)
        eng.expire_finished()
        if adopted:
            log.info("continuing %d unfinished workflow(s): %s", len(adopted), ", ".join(adopted))
        if events:
            # Before the API answers: whoever waits for the server can send to its webhooks at once.
            self.events = EventsHost(
                eng,
                host=self.webhook_host,
                ports=self.webhook_ports,
                s3_poll_interval=self.s3_poll_interval,
                pace_limit=self.pace_limit,
                intake_process=self.intake_process,
            )
            await self.events.start()
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.UnixSite(runner, str(sock))
        await site.start()
        os.chmod(sock, 0o600)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        cron_task = loop.create_task(self.cron_loop()) if cron else None
        print(f"sluice server: listening on {sock} (SLUICE_HOME={home})", flush=True)
        try:
            await self._stop.wait()
        finally:
            if cron_task is not None:
                cron_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cron_task
            if self.events is not None:
                await self.events.close()
            await runner.cleanup()
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
            await eng.close()

    def stop(self) -> None:
        self._stop.set()


class _LocalCronRuntime:
    """The local engine's side of :func:`engine.workflows.cron.run_cron`: children are local workflows."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine

    async def terminate_child(self, namespace: str, name: str) -> None:
        with contextlib.suppress(StateError):
            self.engine.terminate(name, namespace)

    async def submit_child(self, start: cronlib.StartChild, manifest: dict[str, Any]) -> str | None:
        # A child of this name is this fire time's run, submitted by an earlier pass.
        if self.engine.store.get_workflow(start.namespace, start.name) is not None:
            return None
        try:
            await self.engine.submit(Workflow.parse(manifest), namespace=start.namespace)
        except SluiceError as exc:
            return str(exc)
        return None

    async def delete_child(self, namespace: str, name: str) -> None:
        with contextlib.suppress(StateError):
            await self.engine.delete(name, namespace)

    async def save_status(self, namespace: str, name: str, status: cronlib.CronState) -> None:
        self.engine.store.put_cron_state(namespace, name, status.to_json(namespace=namespace))
