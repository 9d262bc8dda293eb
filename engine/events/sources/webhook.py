"""The webhook event source: HTTP endpoints that turn requests into events on the bus (aiohttp).

The runtimes build one :class:`WebhookServer` from every EventSource's ``spec.webhook`` events, start
it, call :meth:`WebhookServer.update` whenever EventSources are created, changed or deleted, and
:meth:`WebhookServer.stop` it at shutdown. Each spec port is one HTTP server; the events sharing a
port are told apart by their endpoint (exact path match). Every port also answers ``/health`` with
200 ``OK``.

A request to an event's endpoint goes through these steps, answering as Argo does:

1. a path no event serves -> 404; an endpoint whose event was removed while its port stayed open
   -> 400 ``the route is not active``; another method than the event's -> 400
   ``http method does not match``;
2. ``authSecret``: no ``Authorization: Bearer <token>`` -> 401 ``Invalid Authorization Header``, another
   token -> 401 ``Invalid Auth token`` (constant-time comparison);
3. the body is read up to ``maxPayloadSize`` (default 1 MiB); a larger one (by ``Content-Length`` or
   while reading) -> 413 without reading the rest;
4. ``hmacSecret`` (ours): the ``signatureHeader`` (default ``X-Hub-Signature-256``) must be
   ``sha256=<hex HMAC-SHA256 of the raw body>``; missing -> 401, wrong -> 403;
5. the payload: GET -> the URL query, ``{"k": ["v"]}``; a ``application/x-www-form-urlencoded`` body ->
   the form, same shape; anything else -> the body as JSON, where an empty or invalid body -> 400
   ``failed to construct the event payload``. Argo accepts only GET and POST; we accept the other
   methods an event may name, with POST's rules, except that DELETE, HEAD and OPTIONS may come
   without a body (``body`` is then null);
6. ``filter.expression`` (expr-lang) on the event data, top-level ``-`` in keys read as ``_``: false
   (or an evaluation error) drops the event and still answers 200 ``success``;
7. the event is published; 200 ``success`` only once the bus has stored it, 500
   ``failed to record event`` if it could not. Requests are not serialised: a route serves any number
   at once and the bus batches its commits.

The event is a CloudEvent (:mod:`engine.events.cloudevent`): ``source`` the EventSource's name,
``type`` ``webhook``, ``subject`` the event's name, a random hex ``id``, the receive time, and data
``{"header": {Name: [values]}, "body": <payload>, "metadata": {...}}``; header names are canonical
as Go writes them (``Content-Type``) and ``Host`` is not among them.

Incoming CloudEvents (ours; Argo wraps them like any request): a non-GET request in binary mode
(``ce-specversion``/``ce-id``/``ce-source``/``ce-type`` headers) or structured mode
(``Content-Type: application/cloudevents+json``) is read as one. Our event keeps its ``id`` and
``time`` (the receive time when it had none) but is still ``source`` = EventSource, ``type`` =
``webhook``, ``subject`` = event name, so sensors select it as usual; ``data.body`` is its data (binary
data as base64 text) and ``data.cloudevent`` its attributes, extensions included, ``time`` in RFC 3339.
A request that claims to be a CloudEvent and is not a valid one -> 400.

Secrets (``authSecret``, ``hmacSecret``, TLS) are read through the injected :data:`SecretLookup` at
start and at every update. A route whose auth or HMAC secret cannot be read is served anyway and
answers 500 naming the secret, looking it up again on each request until it appears: it never
accepts unauthenticated events. Kubernetes' ``optional: true`` is not honoured for these secrets,
for the same reason. A trailing newline in a token or key is ignored. ``serverCertSecret`` /
``serverKeySecret`` make the port serve TLS; a port whose routes name TLS secrets that cannot be read
or loaded is not opened. Such problems come back from :meth:`WebhookServer.start` and
:meth:`WebhookServer.update` as :class:`engine.errors.Problem` values and are logged.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import ssl
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from cloudevents.core.v1.event import CloudEvent

from engine import expr
from engine.errors import ExprError, Problem
from engine.events import cloudevent
from engine.events.sources.ports import Publish, SecretLookup
from engine.expr.encoding import from_json
from engine.spec.events import EventSource, SecretKeySelector, WebhookContext

log = logging.getLogger(__name__)

EVENT_TYPE = "webhook"
DEFAULT_MAX_PAYLOAD_SIZE = 1024 * 1024
DEFAULT_SIGNATURE_HEADER = "X-Hub-Signature-256"
HEALTH_PATH = "/health"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# Methods that conventionally carry no body; an empty one is `null`, not invalid JSON.
BODYLESS_METHODS = frozenset({"DELETE", "HEAD", "OPTIONS"})
# Header fields Go's server takes out of the header map (into Request.Host / TransferEncoding).
_HIDDEN_HEADERS = frozenset({"Host", "Transfer-Encoding"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


# ------------------------------------------------------------------------------------------- routes


@dataclass(slots=True)
class _Route:
    """One webhook event being served: where it lives, what it checks and the secrets it checks with."""

    namespace: str
    source: str
    event: str
    hook: WebhookContext
    method: str
    max_payload: int
    program: expr.Program | None
    filter_problem: str | None = None
    auth_token: bytes | None = None
    hmac_key: bytes | None = None
    secret_problem: str | None = None

    @property
    def owner(self) -> tuple[str, str, str]:
        return (self.namespace, self.source, self.event)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.source} event {self.event}"

    def field_path(self, name: str) -> str:
        return f"{self.namespace}/{self.source}: spec.webhook.{self.event}.{name}"

    def resolve_secrets(self, lookup: SecretLookup) -> Problem | None:
        """(Re)read the auth token and HMAC key; on failure the route answers 500 until they appear."""
        token = key = None
        problem: Problem | None = None
        if self.hook.auth_secret is not None:
            token, why = _secret_value(lookup, self.namespace, self.hook.auth_secret)
            if why:
                problem = Problem(self.field_path("authSecret"), why)
        if self.hook.hmac_secret is not None and problem is None:
            key, why = _secret_value(lookup, self.namespace, self.hook.hmac_secret)
            if why:
                problem = Problem(self.field_path("hmacSecret"), why)
        self.auth_token = token.encode() if token is not None else None
        self.hmac_key = key.encode() if key is not None else None
        self.secret_problem = problem.message if problem else None
        return problem


def _secret_value(lookup: SecretLookup, namespace: str, ref: SecretKeySelector) -> tuple[str | None, str]:
    """(value, "") or (None, why not)."""
    if not ref.name:
        return None, f"secret reference for key {ref.key!r} has no name"
    try:
        data = lookup(namespace, ref.name)
    except Exception as exc:
        log.exception("reading secret %s/%s failed", namespace, ref.name)
        return None, f"secret {namespace}/{ref.name} could not be read: {exc}"
    if data is None:
        return None, f"secret {namespace}/{ref.name} not found"
    value = data.get(ref.key)
    if value is None:
        return None, f"secret {namespace}/{ref.name} has no key {ref.key!r}"
    # Secrets written from files usually end in a newline that is not part of the token.
    return value.removesuffix("\n").removesuffix("\r"), ""


def _compile_filter(route: _Route) -> None:
    text = route.hook.filter.expression if route.hook.filter else None
    if text:
        try:
            route.program = expr.compile_expr(text)
        except ExprError as exc:
            route.filter_problem = str(exc)


# -------------------------------------------------------------------------------------------- ports


@dataclass(frozen=True, slots=True)
class _Tls:
    cert: str
    key: str


@dataclass(slots=True)
class _Port:
    """One spec port: its routes by endpoint, endpoints no longer served, and the listening server."""

    spec_port: str
    routes: dict[str, _Route] = field(default_factory=dict)
    inactive: set[str] = field(default_factory=set)
    tls: _Tls | None = None
    runner: web.ServerRunner | None = None
    bound: int | None = None


@dataclass(slots=True)
class _Desired:
    routes: dict[str, _Route] = field(default_factory=dict)
    tls: _Tls | None = None
    tls_problem: bool = False


class _Reject(Exception):
    """Answer the request with ``status`` and ``text``; raised inside the request pipeline."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class WebhookServer:
    """The HTTP servers of every webhook event: one per spec port, updated in place.

    ``ports`` maps spec ports to the ports actually bound (``{"12000": 0}`` binds any free port, for
    tests); :attr:`bound_ports` tells which port each spec port got.
    """

    def __init__(
        self,
        sources: Iterable[tuple[str, EventSource]],
        *,
        publish: Publish,
        secrets: SecretLookup,
        ports: Mapping[str, int] | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self._sources = list(sources)
        self._publish = publish
        self._secrets = secrets
        self._port_map = dict(ports or {})
        self._shutdown_timeout = shutdown_timeout
        self._ports: dict[str, _Port] = {}
        self._host = "127.0.0.1"
        self._started = False
        self._lock = asyncio.Lock()

    @property
    def bound_ports(self) -> dict[str, int]:
        """Spec port -> the port its server listens on, for every open port."""
        return {p: s.bound for p, s in self._ports.items() if s.bound is not None}

    async def start(self, host: str = "127.0.0.1") -> list[Problem]:
        """Open every port; returns what could not be served (also logged)."""
        self._host = host
        self._started = True
        return await self._apply(self._sources)

    async def update(self, sources: Iterable[tuple[str, EventSource]]) -> list[Problem]:
        """Serve exactly ``sources`` from now on: add and remove routes, open and close ports.

        Ports whose routes change stay open; requests in flight finish with the route they started
        with. Returns what could not be served (also logged).
        """
        self._sources = list(sources)
        if not self._started:
            return []
        return await self._apply(self._sources)

    async def stop(self) -> None:
        """Close every port, letting requests in flight finish (up to ``shutdown_timeout``)."""
        async with self._lock:
            self._started = False
            for port in list(self._ports.values()):
                await self._close(port)
            self._ports.clear()

    # --- reconciliation ---------------------------------------------------------------------------

    async def _apply(self, sources: list[tuple[str, EventSource]]) -> list[Problem]:
        async with self._lock:
            problems: list[Problem] = []
            desired = self._desired(sources, problems)
            for spec_port in [p for p in self._ports if p not in desired]:
                await self._close(self._ports.pop(spec_port))
            for spec_port, want in desired.items():
                port = self._ports.get(spec_port)
                if want.tls_problem:
                    # Serving these routes without the TLS they ask for would expose them in clear text.
                    if port is not None:
                        await self._close(self._ports.pop(spec_port))
                    continue
                if port is not None and port.runner is not None and port.tls == want.tls:
                    port.inactive |= set(port.routes) - set(want.routes)
                    port.inactive -= set(want.routes)
                    port.routes = want.routes
                    continue
                if port is not None:
                    await self._close(port)
                    inactive = (port.inactive | set(port.routes)) - set(want.routes)
                else:
                    inactive = set()
                port = _Port(spec_port, want.routes, inactive, want.tls)
                self._ports[spec_port] = port
                try:
                    await self._open(port)
                except (OSError, ssl.SSLError) as exc:
                    del self._ports[spec_port]
                    first = next(iter(want.routes.values()))
                    problems.append(
                        Problem(first.field_path("port"), f"cannot listen on port {spec_port}: {exc}")
                    )
            for problem in problems:
                log.warning("webhook: %s", problem)
            return problems

    def _desired(
        self, sources: list[tuple[str, EventSource]], problems: list[Problem]
    ) -> dict[str, _Desired]:
        current = {
            (spec_port, endpoint): route.owner
            for spec_port, port in self._ports.items()
            for endpoint, route in port.routes.items()
        }
        candidates: dict[tuple[str, str], list[_Route]] = {}
        for namespace, source in sources:
            name = source.metadata.name or ""
            for event, hook in source.spec.webhook.items():
                route = _Route(
                    namespace=namespace,
                    source=name,
                    event=event,
                    hook=hook,
                    method=hook.method.upper(),
                    max_payload=hook.max_payload_size or DEFAULT_MAX_PAYLOAD_SIZE,
                    program=None,
                )
                candidates.setdefault((hook.port, hook.endpoint), []).append(route)
        desired: dict[str, _Desired] = {}
        for (spec_port, endpoint), routes in candidates.items():
            # The event already serving an endpoint keeps it; otherwise the first one listed wins.
            owner = current.get((spec_port, endpoint))
            winner = next((r for r in routes if r.owner == owner), routes[0])
            for loser in routes:
                if loser is not winner:
                    ns, src, ev = winner.owner
                    message = f"port {spec_port} already serves {endpoint} for {ns}/{src} event {ev!r}"
                    problems.append(Problem(loser.field_path("endpoint"), message))
            _compile_filter(winner)
            if winner.filter_problem:
                problems.append(Problem(winner.field_path("filter.expression"), winner.filter_problem))
            secret_problem = winner.resolve_secrets(self._secrets)
            if secret_problem:
                problems.append(secret_problem)
            desired.setdefault(spec_port, _Desired()).routes[endpoint] = winner
        for spec_port, want in desired.items():
            self._resolve_tls(spec_port, want, problems)
        return desired

    def _resolve_tls(self, spec_port: str, want: _Desired, problems: list[Problem]) -> None:
        """The port's certificate: from the first of its routes that names one (in endpoint order)."""
        chosen: tuple[SecretKeySelector, SecretKeySelector] | None = None
        for endpoint in sorted(want.routes):
            route = want.routes[endpoint]
            cert_ref, key_ref = route.hook.server_cert_secret, route.hook.server_key_secret
            if cert_ref is None or key_ref is None:
                continue
            if chosen is None:
                chosen = (cert_ref, key_ref)
                cert, why = _secret_value(self._secrets, route.namespace, cert_ref)
                if why:
                    problems.append(Problem(route.field_path("serverCertSecret"), why))
                key, why_key = _secret_value(self._secrets, route.namespace, key_ref)
                if why_key:
                    problems.append(Problem(route.field_path("serverKeySecret"), why_key))
                if cert is None or key is None:
                    want.tls_problem = True
                    return
                want.tls = _Tls(cert, key)
            elif (cert_ref, key_ref) != chosen:
                message = f"port {spec_port} already serves TLS with another certificate; that one is used"
                problems.append(Problem(route.field_path("serverCertSecret"), message))
        if want.tls is not None:
            try:
                _ssl_context(want.tls)
            except (ssl.SSLError, OSError, ValueError) as exc:
                first = next(r for r in want.routes.values() if r.hook.server_cert_secret is not None)
                problems.append(
                    Problem(first.field_path("serverCertSecret"), f"cannot load certificate and key: {exc}")
                )
                want.tls, want.tls_problem = None, True

    async def _open(self, port: _Port) -> None:
        # No access log: a line per request would cost a fifth of a busy webhook's CPU; refusals and
        # failures are logged where they happen.
        server = web.Server(functools.partial(self._handle, port), access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        bind = self._port_map.get(port.spec_port, int(port.spec_port))
        site = web.TCPSite(
            runner,
            self._host,
            bind,
            ssl_context=_ssl_context(port.tls) if port.tls else None,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        port.runner = runner
        port.bound = _bound_port(runner, bind)
        scheme = "https" if port.tls else "http"
        log.info("webhook: serving %s on %s://%s:%s", sorted(port.routes), scheme, self._host, port.bound)

    async def _close(self, port: _Port) -> None:
        runner, port.runner, port.bound = port.runner, None, None
        if runner is not None:
            await runner.cleanup()

    # --- requests ---------------------------------------------------------------------------------

    async def _handle(self, port: _Port, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._serve(port, request)
        except _Reject as reject:
            return _text(reject.status, reject.text)
        except Exception:
            # Never a traceback to the client; the log has it.
            log.exception(
                "webhook: request %s %s on port %s failed", request.method, request.path, port.spec_port
            )
            return _text(500, "internal error")

    async def _serve(self, port: _Port, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == HEALTH_PATH:
            return _text(200, "OK")
        route = port.routes.get(path)
        if route is None:
            if path in port.inactive:
                raise _Reject(400, "the route is not active")
            raise _Reject(404, "not found")
        if request.method != route.method:
            raise _Reject(400, "http method does not match")
        if route.secret_problem is not None and route.resolve_secrets(self._secrets) is not None:
            log.error("webhook: %s: %s", route.label, route.secret_problem)
            raise _Reject(500, f"webhook is misconfigured: {route.secret_problem}")
        if route.filter_problem is not None:
            raise _Reject(500, f"webhook is misconfigured: invalid filter expression: {route.filter_problem}")
        if route.auth_token is not None:
            _check_bearer(request, route.auth_token)
        body = await _read_body(request, route.max_payload)
        if route.hmac_key is not None:
            _check_signature(
                request, body, route.hmac_key, route.hook.signature_header or DEFAULT_SIGNATURE_HEADER
            )
        data, incoming = _event_data(request, body, route)
        if route.program is not None and not _passes(route, data):
            return _text(200, "success")
        now = datetime.now(UTC)
        event = cloudevent.build(
            id=incoming.get_id() if incoming is not None else uuid.uuid4().hex,
            source=route.source,
            type=EVENT_TYPE,
            subject=route.event,
            time=(incoming.get_time() if incoming is not None else None) or now,
            data=data,
        )
        try:
            await self._publish(route.namespace, cloudevent.to_bus(event))
        except Exception:
            log.exception("webhook: %s: publishing failed", route.label)
            return _text(500, "failed to record event")
        return _text(200, "success")


# ------------------------------------------------------------------------------------ request steps


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def _check_bearer(request: web.BaseRequest, token: bytes) -> None:
    fields = request.headers.get(hdrs.AUTHORIZATION, "").split()
    if len(fields) != 2 or fields[0] != "Bearer":
        raise _Reject(401, "Invalid Authorization Header")
    if not hmac.compare_digest(fields[1].encode("utf-8", "surrogateescape"), token):
        raise _Reject(401, "Invalid Auth token")


def _check_signature(request: web.BaseRequest, body: bytes, key: bytes, header: str) -> None:
    given = request.headers.get(header)
    if given is None:
        raise _Reject(401, f"Missing signature header {header}")
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().lower().encode("utf-8", "surrogateescape"), expected.encode()):
        raise _Reject(403, f"Invalid signature in {header}")


async def _read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole body, refusing (413) one over ``limit`` bytes before or while reading it."""
    too_large = _Reject(413, f"payload too large (limit {limit} bytes)")
    length = request.content_length
    if length is not None and length > limit:
        raise too_large
    if request.version == HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        # The checks before this point passed: let the client send the body (aiohttp's routers do this).
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@functools.lru_cache(maxsize=1024)
def canonical_header(name: str) -> str:
    """Go's canonical header name (``content-type`` -> ``Content-Type``); names with odd characters stay."""
    if not name or any(c not in _TOKEN_CHARS for c in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def header_map(request: web.BaseRequest) -> dict[str, list[str]]:
    """The request's header as Go's ``http.Header``: canonical names, every value in order."""
    out: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        canonical = canonical_header(name)
        if canonical in _HIDDEN_HEADERS:
            continue
        if not value.isascii():
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        out.setdefault(canonical, []).append(value)
    return out


def _query(text: str) -> dict[str, list[str]]:
    return parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="replace")


def _event_data(
    request: web.BaseRequest, body: bytes, route: _Route
) -> tuple[dict[str, Any], CloudEvent | None]:
    incoming = None
    if request.method != "GET":
        try:
            incoming = cloudevent.parse_http(request.headers, body)
        except ExprError as exc:
            raise _Reject(400, f"failed to construct the event payload: {exc}") from exc
    data: dict[str, Any] = {"header": header_map(request)}
    if incoming is not None:
        data["body"] = cloudevent.data_of(incoming)
    else:
        data["body"] = _payload(request, body)
    data["metadata"] = dict(route.hook.metadata)
    if incoming is not None:
        data["cloudevent"] = cloudevent.context_of(incoming)
    return data, incoming


def _payload(request: web.BaseRequest, body: bytes) -> Any:
    if request.method == "GET":
        return _query(request.rel_url.raw_query_string)
    if cloudevent.media_type(request.headers.get(hdrs.CONTENT_TYPE)) == FORM_CONTENT_TYPE:
        return _query(body.decode("utf-8", "replace"))
    if not body and request.method in BODYLESS_METHODS:
        return None
    try:
        return from_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ExprError) as exc:
        why = "the body is empty" if not body else "the body is not valid JSON"
        raise _Reject(400, f"failed to construct the event payload: {why}") from exc


def _passes(route: _Route, data: dict[str, Any]) -> bool:
    assert route.program is not None
    env = {key.replace("-", "_"): value for key, value in data.items()}
    try:
        result = route.program.run(env)
    except ExprError as exc:
        log.warning("webhook: %s: filter failed, event dropped: %s", route.label, exc)
        return False
    if result is not True:
        log.debug("webhook: %s: filtered out", route.label)
        return False
    return True


# -------------------------------------------------------------------------------------------- TLS


def _ssl_context(tls: _Tls) -> ssl.SSLContext:
    """A server context from PEM text. The files exist only while the context loads them."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="sluice-webhook-tls-") as directory:
        cert_path = os.path.join(directory, "tls.crt")
        key_path = os.path.join(directory, "tls.key")
        for path, text in ((cert_path, tls.cert), (key_path, tls.key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        context.load_cert_chain(cert_path, key_path)
    return context


def _bound_port(runner: web.ServerRunner, fallback: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    return fallback


__all__ = [
    "DEFAULT_MAX_PAYLOAD_SIZE",
    "DEFAULT_SIGNATURE_HEADER",
    "EVENT_TYPE",
    "Publish",
    "SecretLookup",
    "WebhookServer",
    "canonical_header",
    "header_map",
]
