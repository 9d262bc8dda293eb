"""HTTP templates run by the local executor against a real loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from .conftest import Harness, Objects, make_step


async def _serve(handler: Callable[[web.Request], Awaitable[web.Response]]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _handler(request: web.Request) -> web.Response:
    if request.path == "/ok":
        return web.Response(text="hello from http")
    if request.path == "/echo":
        body = await request.text()
        return web.Response(text=f"{request.method} {request.headers.get('X-Token')} {body}")
    if request.path == "/slow":
        await asyncio.sleep(5)
        return web.Response(text="late")
    return web.Response(status=404, text="missing")


def _run(
    home: Any, scenario: Callable[[Harness, str], Awaitable[Any]], objects: Objects | None = None
) -> Any:
    async def main() -> Any:
        runner, base = await _serve(_handler)
        try:
            return await scenario(Harness(home, "auto", objects), base)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_http_step_result_is_the_body(home):
    async def scenario(h: Harness, base: str) -> Any:
        return await h.run(make_step(kind="http", http={"url": f"{base}/ok"}))

    out = _run(home, scenario)
    assert out.phase == "Succeeded"
    assert out.result == "hello from http"


def test_http_step_sends_method_headers_and_body(home):
    objects = Objects(secrets={("default", "api"): {"token": "t0k"}})

    async def scenario(h: Harness, base: str) -> Any:
        spec = {
            "url": f"{base}/echo",
            "method": "POST",
            "headers": [{"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}],
            "body": "payload",
        }
        return await h.run(make_step(kind="http", http=spec))

    out = _run(home, scenario, objects)
    assert out.result == "POST t0k payload"


def test_http_non_2xx_is_failed_naming_the_status(home):
    async def scenario(h: Harness, base: str) -> Any:
        return await h.run(make_step(kind="http", http={"url": f"{base}/nope"}))

    out = _run(home, scenario)
    assert out.phase == "Failed"
    assert "404" in out.message
    assert out.result == "missing"


def test_http_timeout_fails(home):
    async def scenario(h: Harness, base: str) -> Any:
        return await h.run(make_step(kind="http", http={"url": f"{base}/slow", "timeoutSeconds": 0.3}))

    out = _run(home, scenario)
    assert out.phase == "Failed"
    assert "timed out" in out.message


def test_http_kill_cancels_the_request(home):
    async def scenario(h: Harness, base: str) -> Any:
        step = make_step(kind="http", http={"url": f"{base}/slow"})
        await h.executor.start(step)
        await h.wait_running(step.node_id)
        await h.executor.kill(step.node_id, "terminated")
        return await h.final(step.node_id, timeout=2)

    out = _run(home, scenario)
    assert out.phase == "Failed"
    assert out.message == "terminated"


def _expr_available() -> bool:
    try:
        from engine.expr import evaluate  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _expr_available(), reason="engine.expr.evaluate is not written yet")
def test_http_success_condition_decides(home):
    async def scenario(h: Harness, base: str) -> Any:
        ok = await h.run(
            make_step(
                kind="http", http={"url": f"{base}/nope", "successCondition": "response.statusCode == 404"}
            )
        )
        bad = await h.run(
            make_step(
                kind="http", http={"url": f"{base}/ok", "successCondition": "response.statusCode == 201"}
            )
        )
        return ok, bad

    ok, bad = _run(home, scenario)
    assert ok.phase == "Succeeded"
    assert bad.phase == "Failed"
    assert "200" in bad.message
