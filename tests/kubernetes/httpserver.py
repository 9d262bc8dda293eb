"""A real HTTP server on 127.0.0.1 for the http step tests, in a thread of its own.

Used by ``tests/kubernetes/test_http_step.py`` (the ``sluice executor http`` command) and
``tests/kubernetes/test_operator_http.py`` (http steps on the test cluster and the embedded runtime).
Its own event loop in its own thread lets sync tests, the command's ``asyncio.run`` and step processes
all reach it alike. Every request it answers is recorded, so a test can see what arrived.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

TOKEN = "t0k-from-a-secret"
TOKEN_HEADER = "X-Token"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    token: str | None
    body: str


class HttpServer:
    """Routes: ``/ok`` (200, a greeting), ``/missing`` (404), ``/echo`` (method, token header and body),
    ``/token`` (200 only with the right token header, else 401), ``/empty`` (200, no body),
    ``/newline`` (a body ending in a newline), ``/slow`` (answers after 5 s)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-server", daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def start(self) -> HttpServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._begin(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _begin(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        token = request.headers.get(TOKEN_HEADER)
        with self._lock:
            self.received.append(Received(request.method, request.path, token, body))
        if request.path == "/ok":
            return web.Response(text="hello from http")
        if request.path == "/echo":
            return web.Response(text=f"{request.method} {token} {body}")
        if request.path == "/token":
            if token == TOKEN:
                return web.Response(text="token accepted")
            return web.Response(status=401, text="wrong token")
        if request.path == "/empty":
            return web.Response(text="")
        if request.path == "/newline":
            return web.Response(text="two lines\nend\n")
        if request.path == "/slow":
            await asyncio.sleep(5)
            return web.Response(text="late")
        return web.Response(status=404, text="missing")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer().start()
    try:
        yield server
    finally:
        server.stop()
