"""Events end to end on one machine: a real ``sluice server`` with webhook sources, the bus and sensors.

Each test starts the server as a process on its own SLUICE_HOME, binds the webhook spec port to a free
loopback port, stores EventSources and Sensors with the CLI and sends real HTTP requests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.events.actions import ANNOTATION_EVENT_IDS
from engine.runtime.local.store import Store
from tests.cli.support import ServerProcess, cli, write
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

BUILD_SENSOR = """
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: build}
spec:
  dependencies:
  - name: push
    eventSourceName: webhook
    eventName: example
    filters:
      data:
      - {path: body.ref, type: string, value: ["^refs/heads/main$"]}
  triggers:
  - template:
      name: start-build
      argoWorkflow:
        operation: submit
        source:
          resource:
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata: {generateName: build-}
            spec:
              entrypoint: main
              arguments: {parameters: [{name: commit}]}
              templates:
              - name: main
                inputs: {parameters: [{name: commit}]}
                container: {image: busybox, command: [echo, "{{inputs.parameters.commit}}"]}
        parameters:
        - src: {dependencyName: push, dataKey: body.commit}
          dest: spec.arguments.parameters.0.value
"""

PAIR_SENSOR = """
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: pair}
spec:
  dependencies:
  - {name: a, eventSourceName: webhook, eventName: example}
  - {name: b, eventSourceName: webhook, eventName: other}
  triggers:
  - template:
      name: both
      conditions: a && b
      k8s:
        operation: create
        source:
          resource:
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata: {generateName: pair-}
            spec:
              entrypoint: main
              templates:
              - name: main
                container: {image: busybox, command: [echo, pair]}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def events_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    home = tmp_path / "home"
    port = free_port()
    srv = ServerProcess(home, extra_args=("--no-cron", "--webhook-port", f"12000={port}"))
    srv.start()
    try:
        yield srv, port
    finally:
        srv.kill()


def post(port: int, path: str, body: Any, *, method: str = "POST") -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 30, srv: ServerProcess | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"\nserver log:\n{srv.output()}" if srv else ""))


def workflows(home: Path, prefix: str) -> list[Any]:
    store = Store(home)
    try:
        return [r for r in store.list_workflows() if r.name.startswith(prefix)]
    finally:
        store.close()


def apply(home: Path, tmp_path: Path, name: str, text: str) -> None:
    res = cli("apply", str(write(tmp_path, name, text)), home=home)
    assert res.returncode == 0, res.stderr


def test_webhook_event_starts_a_workflow_with_its_payload_as_parameter(
    events_server: tuple[ServerProcess, int], tmp_path: Path
) -> None:
    srv, port = events_server
    apply(srv.home, tmp_path, "webhook.yaml", WEBHOOK)
    apply(srv.home, tmp_path, "sensor.yaml", BUILD_SENSOR)
    assert post(port, "/example", {"ref": "refs/heads/feature", "commit": "skip"}) == (200, "success")
    assert post(port, "/example", {"ref": "refs/heads/main", "commit": "abc123 $(id) {{x}}"}) == (
        200,
        "success",
    )

    def finished() -> Any:
        rows = workflows(srv.home, "build-")
        return rows if rows and all(r.phase in ("Succeeded", "Failed", "Error") for r in rows) else None

    rows = wait_for("the build workflow to finish", finished, srv=srv)
    assert len(rows) == 1, [r.name for r in rows]
    (row,) = rows
    assert row.phase == "Succeeded"
    params = row.manifest["spec"]["arguments"]["parameters"]
    assert params == [{"name": "commit", "value": "abc123 $(id) {{x}}"}]
    assert row.manifest["metadata"]["annotations"][ANNOTATION_EVENT_IDS]
    res = cli("events", "tail", "--source", "webhook", home=srv.home)
    tailed = [json.loads(line) for line in res.stdout.splitlines()]
    assert [e["data"]["body"]["ref"] for e in tailed] == ["refs/heads/feature", "refs/heads/main"]


def test_bad_requests_get_4xx_and_never_reach_the_bus(
    events_server: tuple[ServerProcess, int], tmp_path: Path
) -> None:
    srv, port = events_server
    apply(srv.home, tmp_path, "webhook.yaml", WEBHOOK)
    assert post(port, "/example", {"ok": 1}, method="PUT")[0] == 400
    assert post(port, "/nowhere", {"ok": 1})[0] == 404
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/example",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert post(port, "/health", None, method="GET") == (200, "OK")
    assert cli("events", "tail", home=srv.home).stdout == ""


def test_partial_condition_state_survives_a_server_crash(
    events_server: tuple[ServerProcess, int], tmp_path: Path
) -> None:
    srv, port = events_server
    apply(srv.home, tmp_path, "webhook.yaml", WEBHOOK)
    apply(srv.home, tmp_path, "sensor.yaml", PAIR_SENSOR)
    assert post(port, "/example", {"n": 1}) == (200, "success")
    assert post(port, "/example", {"n": 2}) == (200, "success")
    time.sleep(1.0)  # the sensor consumes and stores its state
    assert workflows(srv.home, "pair-") == []
    srv.kill()
    srv.start()
    assert post(port, "/other", {"n": 3}) == (200, "success")
    row = wait_for("the pair workflow", lambda: workflows(srv.home, "pair-"), srv=srv)[0]
    events = row.manifest["metadata"]["annotations"][ANNOTATION_EVENT_IDS].split(",")
    assert len(events) == 2
    time.sleep(1.0)
    assert len(workflows(srv.home, "pair-")) == 1


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


def test_http_trigger_retries_until_the_endpoint_accepts(
    events_server: tuple[ServerProcess, int], tmp_path: Path
) -> None:
    srv, port = events_server
    target = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    _Flaky.calls = []
    threading.Thread(target=target.serve_forever, daemon=True).start()
    try:
        sensor = f"""
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: notify}}
spec:
  dependencies:
  - {{name: push, eventSourceName: webhook, eventName: example}}
  triggers:
  - template:
      name: tell
      http:
        url: http://127.0.0.1:{target.server_address[1]}/hook
        method: POST
        payload:
        - src: {{dependencyName: push, dataKey: body.who}}
          dest: who
    retryStrategy: {{steps: 4, duration: 100ms}}
    policy: {{status: {{allow: [200]}}}}
    atLeastOnce: true
"""
        apply(srv.home, tmp_path, "webhook.yaml", WEBHOOK)
        apply(srv.home, tmp_path, "sensor.yaml", sensor)
        assert post(port, "/example", {"who": "ada"}) == (200, "success")
        wait_for("three calls", lambda: len(_Flaky.calls) >= 3, srv=srv)
        time.sleep(0.5)
        assert _Flaky.calls == [b'{"who":"ada"}'] * 3
    finally:
        target.shutdown()


CALENDAR = """
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: clock}
spec:
  calendar:
    tick: {interval: 1s}
"""

TICK_SENSOR = """
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: on-tick}
spec:
  dependencies:
  - {name: tick, eventSourceName: clock, eventName: tick}
  triggers:
  - template:
      name: report
      k8s:
        source:
          resource:
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata: {generateName: report-}
            spec:
              entrypoint: main
              arguments: {parameters: [{name: at}]}
              templates:
              - name: main
                inputs: {parameters: [{name: at}]}
                container: {image: busybox, command: [echo, "{{inputs.parameters.at}}"]}
        parameters:
        - src: {dependencyName: tick, dataKey: eventTime}
          dest: spec.arguments.parameters.0.value
"""


def test_calendar_interval_starts_a_workflow_per_tick(
    events_server: tuple[ServerProcess, int], tmp_path: Path
) -> None:
    srv, _ = events_server
    apply(srv.home, tmp_path, "sensor.yaml", TICK_SENSOR)
    apply(srv.home, tmp_path, "calendar.yaml", CALENDAR)
    rows = wait_for("two report workflows", lambda: len(workflows(srv.home, "report-")) >= 2, srv=srv)
    assert rows
    times = {
        r.manifest["spec"]["arguments"]["parameters"][0]["value"] for r in workflows(srv.home, "report-")
    }
    assert len(times) == len(workflows(srv.home, "report-")), "each tick starts its own workflow"
    assert all(t.endswith("+0000 UTC") for t in times), times


def test_object_landing_in_a_bucket_starts_a_workflow(tmp_path: Path, s3: MotoS3) -> None:
    home = tmp_path / "home"
    srv = ServerProcess(home, extra_args=("--no-cron", "--s3-poll-interval", "0.5")).start()
    try:
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
        sensor = """
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: ingest}
spec:
  dependencies:
  - {name: file, eventSourceName: minio, eventName: example}
  triggers:
  - template:
      name: process
      argoWorkflow:
        source:
          resource:
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata: {generateName: ingest-}
            spec:
              entrypoint: main
              arguments: {parameters: [{name: key}]}
              templates:
              - name: main
                inputs: {parameters: [{name: key}]}
                container: {image: busybox, command: [echo, "{{inputs.parameters.key}}"]}
        parameters:
        - src: {dependencyName: file, dataKey: notification.0.s3.object.key}
          dest: spec.arguments.parameters.0.value
"""
        res = cli(
            "secret",
            "create",
            "s3-creds",
            "--from-literal",
            f"accesskey={ACCESS_KEY}",
            "--from-literal",
            f"secretkey={SECRET_KEY}",
            home=home,
        )
        assert res.returncode == 0, res.stderr
        apply(home, tmp_path, "sensor.yaml", sensor)
        apply(home, tmp_path, "minio.yaml", source)
        time.sleep(2.0)  # the first listing is the starting point: what is already there is not news
        client = s3.client()
        client.put_object(Bucket=BUCKET, Key="incoming/skip.txt", Body=b"x")
        client.put_object(Bucket=BUCKET, Key="incoming/day-1.csv", Body=b"a,b\n")
        row = wait_for("the ingest workflow", lambda: workflows(home, "ingest-"), srv=srv)[0]
        assert row.manifest["spec"]["arguments"]["parameters"][0]["value"] == "incoming/day-1.csv"
        time.sleep(1.5)
        assert len(workflows(home, "ingest-")) == 1
    finally:
        srv.kill()
