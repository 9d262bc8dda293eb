"""A small synchronous client for the local server's HTTP API over its Unix socket.

Used by the CLI commands that need the running engine (``submit``, ``stop``, ``resume``...). Server
errors come back as the project's exceptions with the server's one-line message.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from engine.errors import Problem, SluiceError, SpecError, StateError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class NoServer(SluiceError):
    """No server is listening on the socket."""


class Client:
    def __init__(self, home: Path) -> None:
        self.sock = home / "server.sock"

    def available(self) -> bool:
        try:
            self.call("GET", "/api/v1/health", timeout=2)
        except NoServer:
            return False
        return True

    def call(self, method: str, path: str, body: Any = None, *, timeout: float | None = 60) -> Any:
        if not self.sock.exists():
            raise NoServer(
                f"no sluice server is running for {self.sock.parent} (start one with `sluice server`)"
            )
        conn = _UnixConnection(str(self.sock), timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise NoServer(
                f"no sluice server is running for {self.sock.parent} (start one with `sluice server`)"
            ) from exc
        except OSError as exc:
            raise SluiceError(f"cannot reach the sluice server: {exc}") from exc
        finally:
            conn.close()
        try:
            result = json.loads(data) if data else {}
        except ValueError as exc:
            raise SluiceError(f"unexpected answer from the sluice server: {data[:200]!r}") from exc
        if resp.status >= 400:
            message = result.get("error", f"HTTP {resp.status}")
            if result.get("type") == "SpecError":
                raise SpecError([Problem("", line) for line in result.get("lines", [message])])
            raise StateError(message)
        return result
