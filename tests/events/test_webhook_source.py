"""The webhook event source against real HTTP: an aiohttp server on loopback, aiohttp client requests.

The bus is a recording publish callable (the bus has its own tests); everything else is real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from engine.events.model import Event
from engine.events.sources.webhook import WebhookServer, canonical_header
from engine.spec.events import EventSource

HEX_ID = re.compile(r"^[0-9a-f]{32}$")
SUB_SECOND_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def source(name: str, webhook: dict[str, dict[str, Any]]) -> EventSource:
    return EventSource.parse(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "EventSource",
            "metadata": {"name": name},
            "spec": {"webhook": webhook},
        }
    )


def hook(
    endpoint: str = "/example", method: str = "POST", port: str = "12000", **extra: Any
) -> dict[str, Any]:
    return {"port": port, "endpoint": endpoint, "method": method, **extra}


@dataclass
class Recorder:
    """The bus: records what is published; ``fail`` makes it raise, ``hold`` makes it wait."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: bool = False
    hold: asyncio.Event | None = None
    in_flight: int = 0
    peak: int = 0

    async def __call__(self, namespace: str, event: dict[str, Any]) -> int:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.fail:
                raise RuntimeError("bus is down")
            json.dumps(event)  # what the bus stores must be JSON
            self.events.append((namespace, event))
            return len(self.events)
        finally:
            self.in_flight -= 1


@dataclass
class Ctx:
    server: WebhookServer
    http: aiohttp.ClientSession
    bus: Recorder
    secrets: dict[tuple[str, str], dict[str, str]]
    problems: list[Any]

    def url(self, path: str, port: str = "12000", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server.bound_ports[port]}{path}"

    async def send(self, method: str, path: str, port: str = "12000", **kwargs: Any) -> tuple[int, str]:
        async with self.http.request(method, self.url(path, port), **kwargs) as resp:
            return resp.status, await resp.text()

    async def raw(self, request: bytes, port: str = "12000") -> bytes:
        """Send ``request`` as written (repeated headers, no body...) and return the status line."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.bound_ports[port])
        try:
            writer.write(request)
            await writer.drain()
            return await asyncio.wait_for(reader.readline(), 5)
        finally:
            writer.close()

    @property
    def bodies(self) -> list[Any]:
        return [event["data"]["body"] for _, event in self.bus.events]


def run(
    sources: list[tuple[str, EventSource]],
    scenario: Callable[[Ctx], Awaitable[None]],
    *,
    secrets: dict[tuple[str, str], dict[str, str]] | None = None,
    bus: Recorder | None = None,
    lookup: Callable[[str, str], Any] | None = None,
) -> None:
    """Serve ``sources`` on ephemeral ports (every spec port 12000-12999 mapped to 0) and run ``scenario``."""
    secret_data = secrets if secrets is not None else {}
    recorder = bus or Recorder()

    async def main() -> None:
        server = WebhookServer(
            sources,
            publish=recorder,
            secrets=lookup or (lambda ns, name: secret_data.get((ns, name))),
            ports={str(p): 0 for p in range(12000, 13000)},
            shutdown_timeout=1.0,
        )
        problems = await server.start()
        try:
            async with aiohttp.ClientSession() as http:
                await scenario(Ctx(server, http, recorder, secret_data, problems))
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


# --------------------------------------------------------------------------------------- the event


def test_post_json_becomes_a_cloudevent_with_header_body_and_metadata():
    es = source("github", {"push": hook(metadata={"team": "infra"})})

    async def scenario(c: Ctx) -> None:
        body = b'{"ref": "main", "n": 3}'
        status_line = await c.raw(
            b"POST /example HTTP/1.1\r\nHost: hooks.example\r\ncontent-type: application/json\r\n"
            b"x-trace: a\r\nX-TRACE: b\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert status_line.startswith(b"HTTP/1.1 200")
        [(namespace, event)] = c.bus.events
        assert namespace == "ci"
        assert event["source"] == "github"
        assert event["type"] == "webhook"
        assert event["subject"] == "push"
        assert event["specversion"] == "1.0"
        assert event["datacontenttype"] == "application/json"
        assert HEX_ID.match(event["id"])
        assert SUB_SECOND_UTC.match(event["time"])
        received = dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        assert abs((dt.datetime.now(dt.UTC) - received).total_seconds()) < 30
        data = event["data"]
        assert data["body"] == {"ref": "main", "n": 3}
        assert data["metadata"] == {"team": "infra"}
        assert data["header"]["Content-Type"] == ["application/json"]
        assert data["header"]["X-Trace"] == ["a", "b"]
        assert "Host" not in data["header"]
        assert Event.from_json(event).to_json() == event

    run([("ci", es)], scenario)


def test_every_event_gets_its_own_id():
    async def scenario(c: Ctx) -> None:
        for _ in range(3):
            assert (await c.send("POST", "/example", json={}))[0] == 200
        assert len({event["id"] for _, event in c.bus.events}) == 3

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_header_names_are_canonical_as_in_go():
    assert canonical_header("content-type") == "Content-Type"
    assert canonical_header("X-HUB-SIGNATURE-256") == "X-Hub-Signature-256"
    assert canonical_header("ce-specversion") == "Ce-Specversion"
    assert canonical_header("odd header") == "odd header"


def test_get_body_is_the_url_query_as_lists():
    async def scenario(c: Ctx) -> None:
        status, _ = await c.send("GET", "/example?a=1&a=2&b=&c=x%20y")
        assert status == 200
        assert c.bodies == [{"a": ["1", "2"], "b": [""], "c": ["x y"]}]

    run([("default", source("wh", {"example": hook(method="GET")}))], scenario)


def test_form_body_is_parsed_like_a_query():
    async def scenario(c: Ctx) -> None:
        status, _ = await c.send("POST", "/example", data={"name": "sluice", "tag": "a b"})
        assert status == 200
        status, _ = await c.send(
            "POST",
            "/example",
            data=b"k=1&k=2",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        assert status == 200
        assert c.bodies == [{"name": ["sluice"], "tag": ["a b"]}, {"k": ["1", "2"]}]

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_json_body_is_required_for_other_content_types():
    async def scenario(c: Ctx) -> None:
        for body in (b"not json", b"{", b'{"a": NaN}', b"\xff"):
            status, text = await c.send("POST", "/example", data=body, headers={"Content-Type": "text/plain"})
            assert status == 400
            assert text.startswith("failed to construct the event payload")
        # A JSON body is accepted whatever the content type says.
        assert (await c.send("POST", "/example", data=b"[1]", headers={"Content-Type": "text/plain"}))[
            0
        ] == 200
        assert c.bodies == [[1]]

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_empty_body_is_400():
    async def scenario(c: Ctx) -> None:
        status, text = await c.send(
            "POST", "/example", data=b"", headers={"Content-Type": "application/json"}
        )
        assert status == 400
        assert text == "failed to construct the event payload: the body is empty"
        assert c.bus.events == []

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_put_takes_a_json_body_and_delete_may_have_none():
    es = source("wh", {"put": hook("/put", method="PUT"), "del": hook("/del", method="DELETE")})

    async def scenario(c: Ctx) -> None:
        assert (await c.send("PUT", "/put", json={"v": 1}))[0] == 200
        assert (await c.send("PUT", "/put", data=b""))[0] == 400
        assert (await c.send("DELETE", "/del"))[0] == 200
        assert (await c.send("DELETE", "/del", json={"id": 9}))[0] == 200
        assert c.bodies == [{"v": 1}, None, {"id": 9}]

    run([("default", es)], scenario)


# ----------------------------------------------------------------------------------------- routing


def test_wrong_method_is_400():
    async def scenario(c: Ctx) -> None:
        assert await c.send("GET", "/example") == (400, "http method does not match")
        assert await c.send("PUT", "/example", json={}) == (400, "http method does not match")
        assert c.bus.events == []

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_method_in_the_spec_is_case_insensitive():
    async def scenario(c: Ctx) -> None:
        assert (await c.send("POST", "/example", json={}))[0] == 200

    run([("default", source("wh", {"example": hook(method="post")}))], scenario)


def test_unknown_path_is_404():
    async def scenario(c: Ctx) -> None:
        assert (await c.send("POST", "/nope", json={}))[0] == 404
        assert (await c.send("POST", "/example/", json={}))[0] == 404

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_health_answers_ok_on_every_port():
    es = source("wh", {"a": hook("/a", port="12000"), "b": hook("/b", port="12001")})

    async def scenario(c: Ctx) -> None:
        assert await c.send("GET", "/health", port="12000") == (200, "OK")
        assert await c.send("GET", "/health", port="12001") == (200, "OK")
        assert c.server.bound_ports["12000"] != c.server.bound_ports["12001"]

    run([("default", es)], scenario)


def test_two_events_on_one_port_are_told_apart_by_endpoint():
    es = source("wh", {"first": hook("/first"), "second": hook("/second")})
    other = source("other", {"third": hook("/third")})

    async def scenario(c: Ctx) -> None:
        assert (await c.send("POST", "/second", json={"n": 2}))[0] == 200
        assert (await c.send("POST", "/first", json={"n": 1}))[0] == 200
        assert (await c.send("POST", "/third", json={"n": 3}))[0] == 200
        assert len(c.server.bound_ports) == 1
        got = [(ns, e["source"], e["subject"], e["data"]["body"]["n"]) for ns, e in c.bus.events]
        assert got == [
            ("default", "wh", "second", 2),
            ("default", "wh", "first", 1),
            ("team", "other", "third", 3),
        ]

    run([("default", es), ("team", other)], scenario)


def test_an_endpoint_claimed_twice_is_served_for_the_first_and_reported():
    first = source("first", {"e": hook("/same")})
    second = source("second", {"e": hook("/same")})

    async def scenario(c: Ctx) -> None:
        assert [p.path for p in c.problems] == ["default/second: spec.webhook.e.endpoint"]
        assert "already serves /same for default/first" in c.problems[0].message
        assert (await c.send("POST", "/same", json={}))[0] == 200
        assert c.bus.events[0][1]["source"] == "first"

    run([("default", first), ("default", second)], scenario)


def test_the_corpus_example_serves_its_endpoint(events_corpus: Path):
    manifest = yaml.safe_load((events_corpus / "event-sources" / "webhook.yaml").read_text())
    es = EventSource.parse(manifest)

    async def scenario(c: Ctx) -> None:
        assert await c.send("POST", "/example", json={"message": "hello"}) == (200, "success")
        [(_, event)] = c.bus.events
        assert (event["source"], event["subject"]) == ("webhook", "example")
        assert event["data"]["body"] == {"message": "hello"}

    run([("argo-events", es)], scenario)


# ------------------------------------------------------------------------------------- auth / HMAC


def test_bearer_token_is_required_when_auth_secret_is_set():
    es = source("wh", {"example": hook(authSecret={"name": "hook-auth", "key": "token"})})
    # Written from a file: the trailing newline is not part of the token.
    secrets = {("default", "hook-auth"): {"token": "s3cret\n"}}

    async def scenario(c: Ctx) -> None:
        invalid_header = (401, "Invalid Authorization Header")
        assert await c.send("POST", "/example", json={}) == invalid_header
        assert (
            await c.send("POST", "/example", json={}, headers={"Authorization": "Basic czNjcmV0"})
            == invalid_header
        )
        assert (
            await c.send("POST", "/example", json={}, headers={"Authorization": "Bearer"}) == invalid_header
        )
        assert await c.send("POST", "/example", json={}, headers={"Authorization": "Bearer nope"}) == (
            401,
            "Invalid Auth token",
        )
        assert c.bus.events == []
        ok = await c.send("POST", "/example", json={"a": 1}, headers={"Authorization": "Bearer s3cret"})
        assert ok == (200, "success")
        assert c.bodies == [{"a": 1}]

    run([("default", es)], scenario, secrets=secrets)


def test_missing_auth_secret_answers_500_until_the_secret_appears():
    es = source("wh", {"example": hook(authSecret={"name": "later", "key": "token"})})

    async def scenario(c: Ctx) -> None:
        assert [(p.path, p.message) for p in c.problems] == [
            ("default/wh: spec.webhook.example.authSecret", "secret default/later not found")
        ]
        status, text = await c.send("POST", "/example", json={}, headers={"Authorization": "Bearer t"})
        assert status == 500
        assert "secret default/later not found" in text
        c.secrets[("default", "later")] = {"other": "x"}
        status, text = await c.send("POST", "/example", json={}, headers={"Authorization": "Bearer t"})
        assert (status, "has no key 'token'" in text) == (500, True)
        c.secrets[("default", "later")] = {"token": "t"}
        assert (await c.send("POST", "/example", json={}, headers={"Authorization": "Bearer t"}))[0] == 200
        assert len(c.bus.events) == 1

    run([("default", es)], scenario)


def test_secret_lookup_failure_is_a_500_without_a_traceback():
    es = source("wh", {"example": hook(authSecret={"name": "s", "key": "token"})})

    def lookup(namespace: str, name: str) -> Any:
        raise RuntimeError("store unavailable")

    async def scenario(c: Ctx) -> None:
        assert "store unavailable" in c.problems[0].message
        status, text = await c.send("POST", "/example", json={}, headers={"Authorization": "Bearer t"})
        assert status == 500
        assert "Traceback" not in text
        assert "store unavailable" in text

    run([("default", es)], scenario, lookup=lookup)


def _signature(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def test_hmac_signature_must_match_the_raw_body():
    es = source("wh", {"example": hook(hmacSecret={"name": "gh", "key": "webhook-secret"})})
    secrets = {("default", "gh"): {"webhook-secret": "It's a Secret to Everybody"}}
    body = b'{"action": "opened"}'

    async def scenario(c: Ctx) -> None:
        good = _signature(b"It's a Secret to Everybody", body)
        assert await c.send("POST", "/example", data=body) == (
            401,
            "Missing signature header X-Hub-Signature-256",
        )
        status, text = await c.send(
            "POST", "/example", data=body, headers={"X-Hub-Signature-256": _signature(b"x", body)}
        )
        assert (status, text) == (403, "Invalid signature in X-Hub-Signature-256")
        tampered = body.replace(b"opened", b"closed")
        assert (await c.send("POST", "/example", data=tampered, headers={"X-Hub-Signature-256": good}))[
            0
        ] == 403
        assert c.bus.events == []
        assert (await c.send("POST", "/example", data=body, headers={"x-hub-signature-256": good.upper()}))[
            0
        ] == 200
        assert c.bodies == [{"action": "opened"}]

    run([("default", es)], scenario, secrets=secrets)


def test_hmac_signature_header_can_be_renamed():
    es = source("wh", {"example": hook(hmacSecret={"name": "k", "key": "k"}, signatureHeader="X-Signature")})

    async def scenario(c: Ctx) -> None:
        body = b"{}"
        sig = _signature(b"key", body)
        assert (await c.send("POST", "/example", data=body, headers={"X-Hub-Signature-256": sig}))[0] == 401
        assert (await c.send("POST", "/example", data=body, headers={"X-Signature": sig}))[0] == 200

    run([("default", es)], scenario, secrets={("default", "k"): {"k": "key"}})


# ---------------------------------------------------------------------------------------- payload size


def test_body_over_max_payload_size_is_413():
    es = source("wh", {"example": hook(maxPayloadSize=64)})

    async def scenario(c: Ctx) -> None:
        fits = json.dumps({"pad": "x" * 40}).encode()
        assert (await c.send("POST", "/example", data=fits))[0] == 200
        status, text = await c.send("POST", "/example", data=json.dumps({"pad": "x" * 80}).encode())
        assert (status, text) == (413, "payload too large (limit 64 bytes)")
        assert len(c.bus.events) == 1

    run([("default", es)], scenario)


def test_chunked_body_is_cut_off_at_max_payload_size():
    es = source("wh", {"example": hook(maxPayloadSize=1000)})

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad": "'
        for _ in range(200):
            yield b"x" * 1000
        yield b'"}'

    async def scenario(c: Ctx) -> None:
        status, _ = await c.send("POST", "/example", data=chunks())
        assert status == 413
        assert c.bus.events == []

    run([("default", es)], scenario)


def test_default_max_payload_size_is_one_mebibyte():
    def body(size: int) -> bytes:
        return b'"' + b"x" * (size - 2) + b'"'

    async def scenario(c: Ctx) -> None:
        assert (await c.send("POST", "/example", data=body(1024 * 1024)))[0] == 200
        assert (await c.send("POST", "/example", data=body(1024 * 1024 + 1)))[0] == 413
        assert len(c.bus.events) == 1

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_too_large_content_length_is_refused_before_the_body_is_sent():
    async def scenario(c: Ctx) -> None:
        # No byte of the 100 MB body is sent: the answer must come from the declared length alone.
        status_line = await c.raw(
            b"POST /example HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n"
        )
        assert status_line.startswith(b"HTTP/1.1 413")

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_expect_100_continue_gets_the_body_sent():
    async def scenario(c: Ctx) -> None:
        status, _ = await c.send("POST", "/example", data=b'{"big": true}', expect100=True)
        assert status == 200
        assert c.bodies == [{"big": True}]

    run([("default", source("wh", {"example": hook()}))], scenario)


# ----------------------------------------------------------------------------------------- publishing


def test_publish_failure_is_500_and_nothing_is_recorded():
    async def scenario(c: Ctx) -> None:
        c.bus.fail = True
        assert await c.send("POST", "/example", json={"a": 1}) == (500, "failed to record event")
        assert c.bus.events == []
        c.bus.fail = False
        assert await c.send("POST", "/example", json={"a": 2}) == (200, "success")
        assert c.bodies == [{"a": 2}]

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_success_is_answered_only_after_the_bus_stored_the_event():
    bus = Recorder(hold=asyncio.Event())

    async def scenario(c: Ctx) -> None:
        assert bus.hold is not None
        request = asyncio.create_task(c.send("POST", "/example", json={}))
        while bus.in_flight == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert not request.done()
        bus.hold.set()
        assert await request == (200, "success")
        assert len(bus.events) == 1

    run([("default", source("wh", {"example": hook()}))], scenario, bus=bus)


def test_requests_to_one_route_are_published_concurrently():
    bus = Recorder(hold=asyncio.Event())
    n = 20

    async def scenario(c: Ctx) -> None:
        assert bus.hold is not None
        requests = [asyncio.create_task(c.send("POST", "/example", json={"i": i})) for i in range(n)]
        # Every request reaches the bus before any is answered; serialised dispatch would stop at one.
        async with asyncio.timeout(10):
            while bus.in_flight < n:
                await asyncio.sleep(0.01)
        bus.hold.set()
        assert [status for status, _ in await asyncio.gather(*requests)] == [200] * n
        assert sorted(body["i"] for body in c.bodies) == list(range(n))
        assert bus.peak == n

    run([("default", source("wh", {"example": hook()}))], scenario, bus=bus)


# -------------------------------------------------------------------------------------- CloudEvents


def test_binary_cloudevent_keeps_its_id_time_and_attributes():
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "order-42",
        "ce-source": "/shop",
        "ce-type": "order.created",
        "ce-time": "2024-05-01T12:00:00.5Z",
        "ce-tenant": "acme",
        "Content-Type": "application/json",
    }

    async def scenario(c: Ctx) -> None:
        assert (await c.send("POST", "/example", data=b'{"total": 10}', headers=headers))[0] == 200
        [(_, event)] = c.bus.events
        assert (event["id"], event["time"]) == ("order-42", "2024-05-01T12:00:00.500000Z")
        assert (event["source"], event["type"], event["subject"]) == ("wh", "webhook", "example")
        assert event["data"]["body"] == {"total": 10}
        assert event["data"]["cloudevent"] == {
            "specversion": "1.0",
            "id": "order-42",
            "source": "/shop",
            "type": "order.created",
            "time": "2024-05-01T12:00:00.500000Z",
            "tenant": "acme",
            "datacontenttype": "application/json",
        }
        assert event["data"]["header"]["Ce-Id"] == ["order-42"]

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_structured_cloudevent_body_is_its_data():
    doc = {
        "specversion": "1.0",
        "id": "inv-7",
        "source": "/billing",
        "type": "invoice.paid",
        "subject": "customer-3",
        "data": {"amount": 5},
    }

    async def scenario(c: Ctx) -> None:
        status, _ = await c.send(
            "POST", "/example", data=json.dumps(doc), headers={"Content-Type": "application/cloudevents+json"}
        )
        assert status == 200
        [(_, event)] = c.bus.events
        assert event["id"] == "inv-7"
        assert SUB_SECOND_UTC.match(event["time"])  # it sent none: the receive time
        assert event["subject"] == "example"
        assert event["data"]["body"] == {"amount": 5}
        assert event["data"]["cloudevent"]["subject"] == "customer-3"
        assert "time" not in event["data"]["cloudevent"]

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_invalid_cloudevent_is_400():
    headers = {"ce-specversion": "1.0", "ce-id": "x", "ce-type": "t", "Content-Type": "application/json"}

    async def scenario(c: Ctx) -> None:
        status, text = await c.send("POST", "/example", data=b"{}", headers=headers)
        assert status == 400
        assert text == "failed to construct the event payload: not a CloudEvent: missing attribute source"
        assert c.bus.events == []

    run([("default", source("wh", {"example": hook()}))], scenario)


def test_get_request_with_ce_headers_is_a_plain_request():
    async def scenario(c: Ctx) -> None:
        assert (await c.send("GET", "/example?q=1", headers={"ce-specversion": "1.0"}))[0] == 200
        [(_, event)] = c.bus.events
        assert "cloudevent" not in event["data"]
        assert event["data"]["body"] == {"q": ["1"]}

    run([("default", source("wh", {"example": hook(method="GET")}))], scenario)


# ------------------------------------------------------------------------------------------- filter


def test_filter_expression_false_drops_the_event_but_answers_200():
    es = source(
        "wh",
        {
            "example": hook(
                filter={"expression": 'body.action == "opened" && metadata.env == "prod"'},
                metadata={"env": "prod"},
            )
        },
    )

    async def scenario(c: Ctx) -> None:
        assert await c.send("POST", "/example", json={"action": "closed"}) == (200, "success")
        assert c.bus.events == []
        assert await c.send("POST", "/example", json={"action": "opened"}) == (200, "success")
        assert c.bodies == [{"action": "opened"}]

    run([("default", es)], scenario)


def test_filter_sees_headers_and_an_evaluation_error_drops_the_event():
    es = source("wh", {"example": hook(filter={"expression": 'header["X-Kind"][0] == "push"'})})

    async def scenario(c: Ctx) -> None:
        assert (await c.send("POST", "/example", json={}, headers={"X-Kind": "pull"}))[0] == 200
        # No X-Kind header: indexing nil is an evaluation error, and the event is dropped.
        assert (await c.send("POST", "/example", json={}))[0] == 200
        assert c.bus.events == []
        assert (await c.send("POST", "/example", json={"n": 1}, headers={"x-kind": "push"}))[0] == 200
        assert c.bodies == [{"n": 1}]

    run([("default", es)], scenario)


# ------------------------------------------------------------------------------------------- updates


def test_update_adds_and_removes_routes_without_dropping_other_ports():
    a = source("a", {"a": hook("/a")})
    b = source("b", {"b": hook("/b"), "c": hook("/c", port="12001")})
    d = source("d", {"d": hook("/d")})

    async def scenario(c: Ctx) -> None:
        port = c.server.bound_ports["12000"]
        assert set(c.server.bound_ports) == {"12000", "12001"}
        assert await c.server.update([("default", a), ("default", d)]) == []
        assert c.server.bound_ports == {"12000": port}
        assert (await c.send("POST", "/a", json={}))[0] == 200
        assert (await c.send("POST", "/d", json={}))[0] == 200
        assert await c.send("POST", "/b", json={}) == (400, "the route is not active")
        with pytest.raises(aiohttp.ClientConnectionError):
            await c.http.post(f"http://127.0.0.1:{c.server.bound_ports.get('12001', 1)}/c", json={})
        # Re-adding an endpoint makes it active again.
        assert await c.server.update([("default", a), ("default", b)]) == []
        assert (await c.send("POST", "/b", json={}))[0] == 200
        assert (await c.send("POST", "/c", port="12001", json={}))[0] == 200
        assert [e["subject"] for _, e in c.bus.events] == ["a", "d", "b", "c"]

    run([("default", a), ("default", b)], scenario)


def test_update_with_a_changed_event_applies_its_new_settings():
    before = source("wh", {"example": hook()})
    after = source("wh", {"example": hook(method="PUT", metadata={"v": "2"})})

    async def scenario(c: Ctx) -> None:
        await c.server.update([("default", after)])
        assert (await c.send("POST", "/example", json={}))[0] == 400
        assert (await c.send("PUT", "/example", json={}))[0] == 200
        assert c.bus.events[0][1]["data"]["metadata"] == {"v": "2"}

    run([("default", before)], scenario)


def test_stop_closes_every_port():
    async def scenario(c: Ctx) -> None:
        url = c.url("/example")
        await c.server.stop()
        assert c.server.bound_ports == {}
        with pytest.raises(aiohttp.ClientConnectionError):
            await c.http.post(url, json={})

    run([("default", source("wh", {"example": hook()}))], scenario)


# ----------------------------------------------------------------------------------------------- TLS


def _self_signed() -> tuple[str, str]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert_pem, key_pem


def test_tls_secrets_make_the_port_serve_https():
    cert, key = _self_signed()
    es = source(
        "wh",
        {
            "secure": hook(
                "/secure",
                port="12443",
                serverCertSecret={"name": "tls", "key": "cert"},
                serverKeySecret={"name": "tls", "key": "key"},
            )
        },
    )

    async def scenario(c: Ctx) -> None:
        assert c.problems == []
        trust = ssl.create_default_context(cadata=cert)
        async with c.http.post(c.url("/secure", "12443", "https"), json={"s": 1}, ssl=trust) as resp:
            assert (resp.status, await resp.text()) == (200, "success")
        with pytest.raises(aiohttp.ClientError):
            await c.http.post(c.url("/secure", "12443", "http"), json={})
        assert c.bodies == [{"s": 1}]

    run([("default", es)], scenario, secrets={("default", "tls"): {"cert": cert, "key": key}})


def test_port_with_unreadable_tls_secrets_is_not_opened():
    es = source(
        "wh",
        {
            "secure": hook(
                "/secure",
                port="12443",
                serverCertSecret={"name": "tls", "key": "cert"},
                serverKeySecret={"name": "tls", "key": "key"},
            ),
            "plain": hook("/plain", port="12000"),
        },
    )

    async def scenario(c: Ctx) -> None:
        assert [p.path for p in c.problems] == ["default/wh: spec.webhook.secure.serverCertSecret"]
        assert "cannot load certificate and key" in c.problems[0].message
        assert set(c.server.bound_ports) == {"12000"}
        assert (await c.send("POST", "/plain", json={}))[0] == 200

    run([("default", es)], scenario, secrets={("default", "tls"): {"cert": "not a cert", "key": "nor a key"}})
