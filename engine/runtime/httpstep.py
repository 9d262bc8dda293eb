"""HTTP templates for both runtimes: one request, judged by ``successCondition``.

In Argo an agent pod performs ``http`` templates. The embedded runtime's step executor
(``engine.runtime.local.executor``) awaits :func:`perform` on the engine loop instead of starting a
process; on Kubernetes the step's pod runs ``sluice executor http``
(``engine.runtime.kubernetes.executor``), which calls it inside the pod. One copy of the request and
its judgement keeps the two runtimes' phase, message and result identical.

The response body becomes ``outputs.result`` (when non-empty); without ``successCondition`` a 2xx
status succeeds. The condition is an expr-lang expression over ``request`` (method, url, body,
headers) and ``response`` (statusCode, body, headers -- a map of header name to list of values, as
Go's ``http.Header``), evaluated by ``engine.expr``. Header values from Secrets come through the
caller's ``secret`` function: the embedded runtime reads its object store, the pod its environment.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import SluiceError

DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class HttpResult:
    phase: Literal["Succeeded", "Failed", "Error"]
    message: str = ""
    result: str | None = None
    status: int | None = None


SecretGetter = Callable[[str, str], str | None]


def _headers(spec: Mapping[str, Any], secret: SecretGetter) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in spec.get("headers") or []:
        name = str(h.get("name", ""))
        if not name:
            continue
        if "value" in h:
            out[name] = str(h["value"])
            continue
        ref = (h.get("valueFrom") or {}).get("secretKeyRef")
        if isinstance(ref, Mapping):
            value = secret(str(ref.get("name", "")), str(ref.get("key", "")))
            if value is None:
                raise _RequestError(f"header {name}: secret {ref.get('name')}/{ref.get('key')} not found")
            out[name] = value
    return out


class _RequestError(Exception):
    pass


async def perform(spec: Mapping[str, Any], *, secret: SecretGetter) -> HttpResult:
    """Send the request ``spec`` (an Argo ``http`` template body) and judge the response."""
    import aiohttp  # the engine's start-up should not pay for aiohttp unless a step needs it

    url = str(spec.get("url") or "")
    if not url:
        return HttpResult("Error", "http template without url")
    method = str(spec.get("method") or "GET").upper()
    try:
        headers = _headers(spec, secret)
    except _RequestError as exc:
        return HttpResult("Error", str(exc))
    body: bytes | None = None
    if spec.get("body") is not None:
        body = str(spec["body"]).encode()
    elif isinstance(spec.get("bodyFrom"), Mapping) and spec["bodyFrom"].get("bytes") is not None:
        try:
            body = base64.b64decode(spec["bodyFrom"]["bytes"])
        except (ValueError, TypeError) as exc:
            return HttpResult("Error", f"bodyFrom.bytes is not base64: {exc}")
    timeout = float(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
    ssl = not spec.get("insecureSkipVerify")  # True: aiohttp's default verification
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(method, url, headers=headers, data=body, ssl=ssl) as resp,
        ):
            raw = await resp.read()
            status = resp.status
            resp_headers: dict[str, list[str]] = {}
            for k, v in resp.headers.items():
                resp_headers.setdefault(k, []).append(v)
    except TimeoutError:
        return HttpResult("Failed", f"{method} {url}: timed out after {timeout:g}s")
    except aiohttp.ClientError as exc:
        return HttpResult("Failed", f"{method} {url}: {exc}")
    text = raw.decode(errors="replace")
    result = text or None
    condition = spec.get("successCondition")
    if not condition:
        if 200 <= status < 300:
            return HttpResult("Succeeded", result=result, status=status)
        return HttpResult("Failed", f"received non-2xx response code: {status}", result, status)
    env = {
        "request": {
            "method": method,
            "url": url,
            "body": body.decode(errors="replace") if body is not None else "",
            "headers": {k: [v] for k, v in headers.items()},
        },
        "response": {"statusCode": status, "body": text, "headers": resp_headers},
    }
    try:
        from engine.expr import evaluate

        ok = evaluate(str(condition), env)
    except ImportError as exc:
        return HttpResult("Error", f"successCondition needs engine.expr.evaluate: {exc}", result, status)
    except SluiceError as exc:
        return HttpResult("Error", f"successCondition {condition!r}: {exc}", result, status)
    if ok is True:
        return HttpResult("Succeeded", result=result, status=status)
    return HttpResult(
        "Failed", f"successCondition {condition!r} was false (response code {status})", result, status
    )
