"""Events end to end on one machine: a real ``sluice server`` with webhook sources, the bus and sensors.

Each test starts the server as a process on its own SLUICE_HOME, binds the webhook spec port to a free
loopback port, stores EventSources and Sensors with the CLI and sends real HTTP requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli.client import Client
from engine.events.actions import ANNOTATION_EVENT_IDS
from engine.runtime.local.store import Store
from tests.cli.support import ServerProcess, cli, wait_for, write
from tests.s3server import ACCESS_KEY, BUCKET, SECRET_KEY, MotoS3, moto_server, s3

__all__ = ["moto_server", "s3"]  # the fixtures, for pytest

WEBHOOK = """
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: webhook}
spec:
  webhook:
    example: {port: "12000", endpoint: /example, method: POST}
    other: {port: "12000", endpoint: /other, method: POST}
"""


def echo_workflow(prefix: str, param: str | None) -> dict[str, Any]:
    """A one-step Workflow named after ``prefix`` that echoes its parameter ``param`` (or the prefix)."""
    main: dict[str, Any] = {
        "name": "main",
        "container": {"image": "busybox", "command": ["echo", f"{{{{inputs.parameters.{param}}}}}"]},
    }
    spec: dict[str, Any] = {"entrypoint": "main", "templates": [main]}
    if param is None:
        main["container"]["command"] = ["echo", prefix.rstrip("-")]
    else:
        main["inputs"] = {"parameters": [{"name": param}]}
        spec["arguments"] = {"parameters": [{"name": param}]}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": prefix},
        "spec": spec,
    }


def workflow_sensor(
    name: str,
    trigger: str,
    kind: str,
    prefix: str,
    *dependencies: dict[str, Any],
    param: tuple[str, str] | None = None,
    **template: Any,
) -> dict[str, Any]:
    """A Sensor on ``dependencies`` whose trigger ``trigger`` (of ``kind``: k8s or argoWorkflow) starts an
    :func:`echo_workflow` named ``prefix``...; ``param`` = (parameter, dataKey) fills its parameter from
    the first dependency's event; ``template`` adds keys to the trigger template (``conditions``) or to
    its ``kind`` section (``operation``)."""
    action: dict[str, Any] = {"source": {"resource": echo_workflow(prefix, param and param[0])}}
    if "operation" in template:
        action["operation"] = template.pop("operation")
    if param is not None:
        src = {"dependencyName": dependencies[0]["name"], "dataKey": param[1]}
        action["parameters"] = [{"src": src, "dest": "spec.arguments.parameters.0.value"}]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Sensor",
        "metadata": {"name": name},
        "spec": {
            "dependencies": list(dependencies),
            "triggers": [{"template": {"name": trigger, **template, kind: action}}],
        },
    }


def dependency(name: str, source: str, event: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "eventSourceName": source, "eventName": event, **more}


ONLY_MAIN = {"data": [{"path": "body.ref", "type": "string", "value": ["^refs/heads/main$"]}]}
PUSH_TO_MAIN = dependency("push", "webhook", "example", filters=ONLY_MAIN)
BUILD_SENSOR = workflow_sensor(
    "build",
    "start-build",
    "argoWorkflow",
    "build-",
    PUSH_TO_MAIN,
    param=("commit", "body.commit"),
    operation="submit",
)
A_AND_B = (dependency("a", "webhook", "example"), dependency("b", "webhook", "other"))
PAIR_SENSOR = workflow_sensor(
    "pair", "both", "k8s", "pair-", *A_AND_B, conditions="a && b", operation="create"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EventsServer:
    """A running ``sluice server``, the loopback port its webhook port 12000 is bound to, and a folder
    for the manifests a test applies."""

    srv: ServerProcess
    port: int
    manifests: Path

    @property
    def home(self) -> Path:
        return self.srv.home

    def apply(self, name: str, manifest: str | dict[str, Any]) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest, sort_keys=False)
        res = cli("apply", str(write(self.manifests, name, text)), home=self.home)
        assert res.returncode == 0, res.stderr

    def post(self, path: str, body: Any, *, method: str = "POST") -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def accept(self, path: str, body: Any) -> None:
        """POST ``body`` to the webhook, which must take it."""
        assert self.post(path, body) == (200, "success")

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
        try:
            return wait_for(check, timeout=timeout, interval=0.1, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nserver log:\n{self.srv.output()}") from None

    def workflows(self, prefix: str) -> list[Any]:
        store = Store(self.home)
        try:
            return [r for r in store.list_workflows() if r.name.startswith(prefix)]
        finally:
            store.close()

    def the_one_workflow(self, prefix: str, *, settle: float) -> Any:
        """Wait for a workflow named ``prefix``..., give the server ``settle`` seconds to (wrongly) start
        another, and return it, the only one."""
        row = self.wait_for(f"a {prefix}... workflow", lambda: self.workflows(prefix))[0]
        time.sleep(settle)
        assert [r.name for r in self.workflows(prefix)] == [row.name]
        return row


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., EventsServer]]:
    """Starts ``sluice server`` (with these extra arguments) on a home (``home`` under the test's
    folder, fresh unless a server of this test used it); killed after the test."""
    started: list[EventsServer] = []

    def start(*extra_args: str, home: str = "home") -> EventsServer:
        port = free_port()
        args = ("--no-cron", "--webhook-port", f"12000={port}", *extra_args)
        server = EventsServer(ServerProcess(tmp_path / home, extra_args=args), port, tmp_path)
        started.append(server)
        server.srv.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.srv.kill()


@pytest.fixture
def events_server(start_server: Callable[..., EventsServer]) -> EventsServer:
    return start_server()


def test_webhook_event_starts_a_workflow_with_its_payload_as_parameter(events_server: EventsServer) -> None:
    server = events_server
    server.apply("webhook.yaml", WEBHOOK)
    server.apply("sensor.yaml", BUILD_SENSOR)
    server.accept("/example", {"ref": "refs/heads/feature", "commit": "skip"})
    server.accept("/example", {"ref": "refs/heads/main", "commit": "abc123 $(id) {{x}}"})

    def finished() -> Any:
        rows = server.workflows("build-")
        return rows if rows and all(r.phase in ("Succeeded", "Failed", "Error") for r in rows) else None

    rows = server.wait_for("the build workflow to finish", finished)
    assert len(rows) == 1, [r.name for r in rows]
    (row,) = rows
    assert row.phase == "Succeeded"
    params = row.manifest["spec"]["arguments"]["parameters"]
    assert params == [{"name": "commit", "value": "abc123 $(id) {{x}}"}]
    assert row.manifest["metadata"]["annotations"][ANNOTATION_EVENT_IDS]
    res = cli("events", "tail", "--source", "webhook", home=server.home)
    tailed = [json.loads(line) for line in res.stdout.splitlines()]
    assert [e["data"]["body"]["ref"] for e in tailed] == ["refs/heads/feature", "refs/heads/main"]


def test_bad_requests_get_4xx_and_never_reach_the_bus(events_server: EventsServer) -> None:
    server = events_server
    server.apply("webhook.yaml", WEBHOOK)
    assert server.post("/example", {"ok": 1}, method="PUT")[0] == 400
    assert server.post("/nowhere", {"ok": 1})[0] == 404
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/example",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert server.post("/health", None, method="GET") == (200, "OK")
    assert cli("events", "tail", home=server.home).stdout == ""


def test_partial_condition_state_survives_a_server_crash(events_server: EventsServer) -> None:
    server = events_server
    server.apply("webhook.yaml", WEBHOOK)
    server.apply("sensor.yaml", PAIR_SENSOR)
    server.accept("/example", {"n": 1})
    server.accept("/example", {"n": 2})
    time.sleep(1.0)  # the sensor consumes and stores its state
    assert server.workflows("pair-") == []
    server.srv.kill()
    server.srv.start()
    server.accept("/other", {"n": 3})
    row = server.the_one_workflow("pair-", settle=1.0)
    events = row.manifest["metadata"]["annotations"][ANNOTATION_EVENT_IDS].split(",")
    assert len(events) == 2


class _Flaky(BaseHTTPRequestHandler):
    calls: list[bytes] = []
    failures = 2

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls.append(body)
        status = 503 if len(type(self).calls) <= type(self).failures else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def endpoint(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free loopback port answering with ``handler``; yields the URL to call."""
    target = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{target.server_address[1]}/hook"
    finally:
        target.shutdown()


def http_sensor(name: str, http: dict[str, Any], **trigger: Any) -> dict[str, Any]:
    """A Sensor calling ``http`` (method POST) for each event of webhook/example."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Sensor",
        "metadata": {"name": name},
        "spec": {
            "dependencies": [dependency("push", "webhook", "example")],
            "triggers": [{"template": {"name": "tell", "http": {"method": "POST", **http}}, **trigger}],
        },
    }


def test_http_trigger_retries_until_the_endpoint_accepts(events_server: EventsServer) -> None:
    server = events_server
    _Flaky.calls = []
    with endpoint(_Flaky) as url:
        payload = [{"src": {"dependencyName": "push", "dataKey": "body.who"}, "dest": "who"}]
        sensor = http_sensor(
            "notify",
            {"url": url, "payload": payload},
            retryStrategy={"steps": 4, "duration": "100ms"},
            policy={"status": {"allow": [200]}},
            atLeastOnce=True,
        )
        server.apply("webhook.yaml", WEBHOOK)
        server.apply("sensor.yaml", sensor)
        server.accept("/example", {"who": "ada"})
        server.wait_for("three calls", lambda: len(_Flaky.calls) >= 3)
        time.sleep(0.5)
        assert _Flaky.calls == [b'{"who":"ada"}'] * 3


CALENDAR = """
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: clock}
spec:
  calendar:
    tick: {interval: 1s}
"""

TICK = dependency("tick", "clock", "tick")
TICK_SENSOR = workflow_sensor("on-tick", "report", "k8s", "report-", TICK, param=("at", "eventTime"))


def test_calendar_interval_starts_a_workflow_per_tick(events_server: EventsServer) -> None:
    server = events_server
    server.apply("sensor.yaml", TICK_SENSOR)
    server.apply("calendar.yaml", CALENDAR)
    rows = server.wait_for("two report workflows", lambda: len(server.workflows("report-")) >= 2)
    assert rows
    reports = server.workflows("report-")
    times = {r.manifest["spec"]["arguments"]["parameters"][0]["value"] for r in reports}
    assert len(times) == len(reports), "each tick starts its own workflow"
    assert all(t.endswith("+0000 UTC") for t in times), times


NEW_FILE = dependency("file", "minio", "example")
INGEST_SENSOR = workflow_sensor(
    "ingest", "process", "argoWorkflow", "ingest-", NEW_FILE, param=("key", "notification.0.s3.object.key")
)


def test_object_landing_in_a_bucket_starts_a_workflow(
    start_server: Callable[..., EventsServer], s3: MotoS3
) -> None:
    server = start_server("--s3-poll-interval", "0.5")
    source = f"""
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {{name: minio}}
spec:
  minio:
    example:
      bucket: {{name: {BUCKET}}}
      endpoint: {s3.endpoint}
      insecure: true
      events: ["s3:ObjectCreated:*"]
      filter: {{prefix: incoming/, suffix: .csv}}
      accessKey: {{name: s3-creds, key: accesskey}}
      secretKey: {{name: s3-creds, key: secretkey}}
"""
    res = cli(
        "secret",
        "create",
        "s3-creds",
        "--from-literal",
        f"accesskey={ACCESS_KEY}",
        "--from-literal",
        f"secretkey={SECRET_KEY}",
        home=server.home,
    )
    assert res.returncode == 0, res.stderr
    server.apply("sensor.yaml", INGEST_SENSOR)
    server.apply("minio.yaml", source)
    time.sleep(2.0)  # the first listing is the starting point: what is already there is not news
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key="incoming/skip.txt", Body=b"x")
    client.put_object(Bucket=BUCKET, Key="incoming/day-1.csv", Body=b"a,b\n")
    row = server.the_one_workflow("ingest-", settle=1.5)
    assert row.manifest["spec"]["arguments"]["parameters"][0]["value"] == "incoming/day-1.csv"


# -------------------------------------------------------------------------------------- the intake process


def events_status(server: EventsServer) -> dict[str, Any]:
    status: dict[str, Any] = Client(server.home).call("GET", "/api/v1/events/status", timeout=10)
    return status


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


COUNTER = workflow_sensor("count", "counted", "k8s", "counted-", dependency("push", "webhook", "example"))


def test_the_intake_process_serves_the_webhooks_and_is_started_again_when_it_dies(
    events_server: EventsServer,
) -> None:
    server = events_server
    server.apply("webhook.yaml", WEBHOOK)
    server.apply("sensor.yaml", COUNTER)
    first = events_status(server)["intakePid"]
    assert first != server.srv.pid and "engine.runtime.local.intake" in cmdline(first)
    server.accept("/example", {"n": 1})
    server.wait_for("the first workflow", lambda: len(server.workflows("counted-")) == 1)
    os.kill(first, signal.SIGKILL)
    second = server.wait_for(
        "a new intake process",
        lambda: (pid := events_status(server)["intakePid"]) not in (None, first) and pid,
    )
    assert "engine.runtime.local.intake" in cmdline(second)

    def served() -> bool:
        try:
            return server.post("/example", {"n": 2}) == (200, "success")
        except urllib.error.URLError:  # not listening yet
            return False

    server.wait_for("the webhook served again", served)
    server.wait_for("the second workflow", lambda: len(server.workflows("counted-")) == 2)


def test_a_killed_server_takes_its_intake_process_with_it(events_server: EventsServer) -> None:
    server = events_server
    server.apply("webhook.yaml", WEBHOOK)
    child = events_status(server)["intakePid"]
    assert "engine.runtime.local.intake" in cmdline(child)
    server.srv.kill()
    server.wait_for(
        "the intake process gone", lambda: "engine.runtime.local.intake" not in cmdline(child), 10
    )
    # The port is free again: a new server binds it and serves.
    server.srv.start()
    server.accept("/example", {"n": 1})


def test_without_an_intake_process_the_server_serves_the_webhooks_itself(
    start_server: Callable[..., EventsServer],
) -> None:
    server = start_server("--no-intake-process")
    server.apply("webhook.yaml", WEBHOOK)
    server.apply("sensor.yaml", COUNTER)
    assert events_status(server)["intakePid"] is None
    server.accept("/example", {"n": 1})
    server.wait_for("the workflow", lambda: len(server.workflows("counted-")) == 1)


class _Slow(BaseHTTPRequestHandler):
    """An HTTP trigger's endpoint that takes DELAY seconds per request."""

    hits: list[int] = []
    delay = 0.02

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(type(self).delay)
        type(self).hits.append(1)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def most_events_behind(server: EventsServer, *, clients: int, events: int) -> int:
    """``clients`` concurrent senders post ``events`` events in all, each after its previous answer, to a
    sensor whose HTTP trigger takes 20 ms each; the most accepted events not yet acted on that a sender
    saw right after an answer."""
    _Slow.hits = []
    with endpoint(_Slow) as url:
        sensor = http_sensor("slow", {"url": url})
        server.apply("webhook.yaml", WEBHOOK)
        server.apply("sensor.yaml", sensor)
        accepted: list[int] = []
        behind: list[int] = []
        numbers = iter(range(events))
        lock = threading.Lock()

        def client() -> None:
            for n in numbers:
                server.accept("/example", {"n": n})
                with lock:
                    accepted.append(n)
                    behind.append(len(accepted) - len(_Slow.hits))

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        server.wait_for("every event acted on", lambda: len(_Slow.hits) == events)
        return max(behind)


def test_the_intake_process_holds_events_while_the_sensor_is_behind(
    start_server: Callable[..., EventsServer],
) -> None:
    clients, events, limit = 4, 40, 3
    paced_server = start_server("--intake-limit", str(limit), home="paced")
    paced = most_events_behind(paced_server, clients=clients, events=events)
    unpaced_server = start_server("--intake-limit", "0", home="unpaced")
    unpaced = most_events_behind(unpaced_server, clients=clients, events=events)
    # Unpaced, the senders outrun the 20 ms trigger and most events wait on the bus. Paced, the intake
    # process counts its events against the room the server granted, so however late the server
    # hears of them, no sender sees more than the limit accepted and not acted on.
    assert unpaced >= events // 2, (paced, unpaced)
    assert paced <= limit, (paced, unpaced)
