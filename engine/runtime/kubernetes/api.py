"""The operator's and the CLI's door to the API server: the official client, raw JSON, rate-limited.

The official ``kubernetes`` client carries the connection: kubeconfig or in-cluster credentials, TLS,
token refresh. Its generated models are skipped on purpose (``param_serialize`` + ``call_api``, bodies
as plain dicts): building a model of every pod and workflow costs more CPU than the rest of a
reconcile, and the engine works on manifests anyway. Calls block, so ``AsyncApi`` runs them on a
bounded thread pool behind a token bucket (``qps``/``burst``, as client-go's limiter), and counts
requests and errors for the operator's metrics and the scale benchmark.

Used by the operator (``engine.runtime.kubernetes.controller``) and ``sluice --kube``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.errors import SluiceError
from engine.spec.crd import GROUP, VERSION

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(SluiceError):
    """A non-2xx answer: ``status`` (0 when the server could not be reached) and its ``reason``."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}".rstrip(": "))
        self.status = status
        self.reason = reason
        self.api_message = message


def load_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster credentials when running in a pod and no kubeconfig is given,
    otherwise the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), optionally one of its contexts.
    Also makes it the client library's default, which kopf's login reads."""
    import os

    from kubernetes import client, config

    cfg = client.Configuration()
    in_cluster = (
        kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and not os.environ.get("KUBECONFIG")
    )
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            # The library reads $KUBECONFIG only at import time; pass the file explicitly.
            path = (
                kubeconfig
                or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                or str(Path.home() / ".kube" / "config")
            )
            config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
    except (config.ConfigException, OSError) as exc:
        raise SluiceError(f"cannot load Kubernetes credentials: {exc}") from None
    client.Configuration.set_default(cfg)
    return client.ApiClient(cfg)


def path_of(
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
    *,
    group: str = GROUP,
    version: str = VERSION,
    sub: str | None = None,
) -> str:
    """The URL path of a resource: core ("" group) or a named group."""
    base = "/api/v1" if not group else f"/apis/{group}/{version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(resource)
    if name:
        parts.append(quote(name, safe=""))
    if sub:
        parts.append(sub)
    return "/".join(parts)


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, ``burst`` at once. Thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self._tokens = self.capacity
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Take a token; return how long to wait before using it."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Api:
    """Blocking JSON calls through an ``ApiClient`` (thread-safe; one per process)."""

    def __init__(self, api_client: Any, *, limiter: TokenBucket | None = None) -> None:
        self.client = api_client
        self.limiter = limiter
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str | None = None,
        raw: bool = False,
        timeout: float | None = 60,
    ) -> Any:
        if self.limiter is not None:
            pause = self.limiter.delay()
            if pause > 0:
                time.sleep(pause)
        headers = {"Accept": "application/json" if not raw else "*/*"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        m, url, hdrs, data, _post = self.client.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        with self._count_lock:
            self.requests[method] += 1
        try:
            resp = self.client.call_api(m, url, header_params=hdrs, body=data, _request_timeout=timeout)
            payload = resp.read()
            status = resp.status
        except Exception as exc:  # connection refused, TLS, timeouts: the client raises many kinds
            status_code = int(getattr(exc, "status", 0) or 0)
            self._count_error(status_code)
            text = getattr(exc, "body", None) or str(exc)
            raise ApiError(
                method, path, status_code, getattr(exc, "reason", "") or "", _message(text)
            ) from None
        if status >= 300:
            self._count_error(status)
            decoded = _decode(payload)
            reason = decoded.get("reason", "") if isinstance(decoded, dict) else ""
            raise ApiError(method, path, status, str(reason), _message(decoded))
        if raw:
            return payload.decode("utf-8", errors="replace")
        return _decode(payload)

    def _count_error(self, status: int) -> None:
        with self._count_lock:
            self.errors[str(status)] += 1

    def total_requests(self) -> int:
        with self._count_lock:
            return sum(self.requests.values())


def _decode(payload: bytes) -> Any:
    if not payload:
        return {}
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace")


def _message(body: Any) -> str:
    if isinstance(body, (bytes, bytearray)):
        body = _decode(bytes(body))
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body.strip().splitlines()[0] if body.strip() else ""
    if isinstance(body, Mapping):
        return str(body.get("message") or "")
    return str(body)


class AsyncApi:
    """``Api`` for coroutines: each call runs on a bounded thread pool."""

    def __init__(self, api: Api, *, workers: int = 8) -> None:
        self.sync = api
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sluice-api")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.sync.call(method, path, **kwargs))

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.call("GET", path, **kwargs)

    async def get_or_none(self, path: str) -> JSON | None:
        try:
            found: JSON = await self.call("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def create(self, path: str, body: JSON) -> JSON | None:
        """POST ``body``; None when an object of that name exists already (a retried create)."""
        try:
            made: JSON = await self.call("POST", path, body=body)
        except ApiError as exc:
            if exc.status == 409 and exc.reason == "AlreadyExists":
                return None
            raise
        return made

    async def merge_patch(self, path: str, patch: JSON) -> JSON:
        out: JSON = await self.call("PATCH", path, body=patch, content_type=MERGE_PATCH)
        return out

    async def delete(self, path: str, *, grace_seconds: int | None = None) -> bool:
        """DELETE; False when it was gone already."""
        query = [("gracePeriodSeconds", grace_seconds)] if grace_seconds is not None else []
        try:
            await self.call("DELETE", path, query=query)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
