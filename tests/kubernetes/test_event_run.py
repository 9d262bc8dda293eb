"""``sluice sensor run`` and ``sluice eventsource run``: the processes of the event Deployments, run as real
subprocesses against the tests' API server and a real ``nats-server -js``; and the cluster's trigger
actions (``ClusterObjectActions``) against the same API server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.errors import SluiceError, StateError
from engine.events import cloudevent
from engine.events.actions import ANNOTATION_EVENT_IDS, ANNOTATION_FIRING, ActionError, ObjectAction
from engine.events.sensor import Firing
from engine.events.sources.calendar import cursor_key
from engine.runtime.busmodel import BusRecord
from engine.runtime.jetstream import JetStreamBus
from engine.runtime.kubernetes.api import Api, AsyncApi, load_client
from engine.runtime.kubernetes.controller import ANNOTATION_RESUME, ANNOTATION_RETRY
from engine.runtime.kubernetes.eventrun import (
    BusAuth,
    ClusterObjectActions,
    ClusterObjects,
    bus_auth,
    parse_port_map,
)
from engine.runtime.kubernetes.pods import LABEL_INSTANCE
from engine.runtime.sensors import state_bucket
from tests.kubernetes.apiserver import ApiServer
from tests.kubernetes.operator_process import DIE_WITH_PARENT, free_port
from tests.natsserver import NatsServer, nats_binary, nats_server

__all__ = ["nats_binary", "nats_server"]

T = TypeVar("T")
JSON = dict[str, Any]
NS = "default"
OURS = f"/apis/sluice.dev/v1alpha1/namespaces/{NS}"
WORKFLOWS = f"{OURS}/workflows"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
MERGE = "application/merge-patch+json"
SLUICE = str(Path(sys.executable).parent / "sluice")
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ helpers


def manifest(kind: str, name: str, spec: JSON, labels: dict[str, str] | None = None) -> JSON:
    meta: JSON = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}


def build_trigger(prefix: str = "build-") -> JSON:
    """An argoWorkflow trigger whose Workflow echoes the event's ``body.message``."""
    return {
        "template": {
            "name": "build",
            "argoWorkflow": {
                "operation": "submit",
                "source": {
                    "resource": {
                        "apiVersion": "argoproj.io/v1alpha1",
                        "kind": "Workflow",
                        "metadata": {"generateName": prefix},
                        "spec": {
                            "entrypoint": "main",
                            "arguments": {"parameters": [{"name": "message", "value": "none"}]},
                            "templates": [
                                {
                                    "name": "main",
                                    "inputs": {"parameters": [{"name": "message"}]},
                                    "container": {
                                        "image": "busybox",
                                        "command": ["echo", "{{inputs.parameters.message}}"],
                                    },
                                }
                            ],
                        },
                    }
                },
                "parameters": [
                    {
                        "src": {"dependencyName": "push", "dataKey": "body.message"},
                        "dest": "spec.arguments.parameters.0.value",
                    }
                ],
            },
        }
    }


def sensor_spec(prefix: str = "build-") -> JSON:
    return {
        "dependencies": [{"name": "push", "eventSourceName": "hooks", "eventName": "push"}],
        "triggers": [build_trigger(prefix)],
    }


def push_event(event_id: str, message: str) -> JSON:
    ce = cloudevent.build(
        id=event_id,
        source="hooks",
        type="webhook",
        subject="push",
        time=datetime.now(UTC),
        data={"header": {}, "body": {"message": message}, "metadata": {}},
    )
    return cloudevent.to_bus(ce)


def on_bus(url: str, use: Callable[[JetStreamBus], Any]) -> Any:
    """Open a bus on ``url``, await ``use(bus)``, close it."""

    async def go() -> Any:
        bus = await JetStreamBus(url).open()
        try:
            return await use(bus)
        finally:
            await bus.close()

    return asyncio.run(go())


def publish(url: str, event: JSON) -> int:
    seq: int = on_bus(url, lambda bus: bus.publish(NS, event))
    return seq


def workflows(api: ApiServer) -> list[JSON]:
    items: list[JSON] = api.request("GET", WORKFLOWS)["items"]
    return sorted(items, key=lambda w: w["metadata"]["creationTimestamp"] + w["metadata"]["name"])


def parameter(wf: JSON) -> str:
    return str(wf["spec"]["arguments"]["parameters"][0]["value"])


def eventually(what: str, check: Callable[[], T | None], timeout: float = 30, log: str = "") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log}")


class EventProcess:
    """``sluice eventsource|sensor run NAME`` as the Deployment runs it, with a health port for the test."""

    def __init__(self, api: ApiServer, workdir: Path, role: str, name: str, bus_url: str, *extra: str):
        self.health_port = free_port()
        self.log_path = workdir / f"{role}-{name}.log"
        self.argv = [
            SLUICE,
            role,
            "run",
            name,
            "-n",
            NS,
            "--kubeconfig",
            str(api.kubeconfig),
            *extra,
        ]
        self.env = {
            **os.environ,
            "SLUICE_EVENTBUS_URL": bus_url,
            "SLUICE_HEALTH_PORT": str(self.health_port),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("KUBECONFIG", None)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> EventProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", DIE_WITH_PARENT, *self.argv],
                cwd=REPO,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def readyz(self) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.log()}")
            if self.readyz()[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"not ready within {timeout}s ({self.readyz()}):\n{self.log()}")

    def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"did not stop within {timeout}s of SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def processes() -> Iterator[list[EventProcess]]:
    started: list[EventProcess] = []
    yield started
    for p in started:
        p.kill()


def run_once(
    api: ApiServer, *argv: str, bus_url: str = "nats://127.0.0.1:1"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLUICE_EVENTBUS_URL": bus_url}
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [SLUICE, *argv, "-n", NS, "--kubeconfig", str(api.kubeconfig)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ------------------------------------------------------------------------------------ the processes


def test_sensor_run_submits_one_workflow_per_firing_with_the_events_parameter(
    api_server: ApiServer, nats_server: NatsServer, tmp_path: Path, processes: list[EventProcess]
) -> None:
    api_server.apply_crds()
    api_server.create(f"{OURS}/sensors", manifest("Sensor", "on-push", sensor_spec()))
    sensor = EventProcess(api_server, tmp_path, "sensor", "on-push", nats_server.url).start()
    processes.append(sensor)
    sensor.wait_ready()

    first = publish(nats_server.url, push_event("e1", "hello"))
    [wf] = eventually("the first workflow", lambda: workflows(api_server), log=sensor.log())
    meta = wf["metadata"]
    assert wf["apiVersion"] == "sluice.dev/v1alpha1"
    assert meta["name"].startswith("build-") and len(meta["name"]) == len("build-") + 10
    assert parameter(wf) == "hello"
    assert meta["annotations"][ANNOTATION_EVENT_IDS] == "e1"
    assert meta["labels"]["events.argoproj.io/sensor"] == "on-push"

    # The same event id again is the same event: no second workflow. A later event still fires, and
    # events are taken in order, so once its workflow exists the repeated one has been handled.
    assert publish(nats_server.url, push_event("e1", "hello")) == first
    publish(nats_server.url, push_event("e2", "world"))
    eventually("the second workflow", lambda: len(workflows(api_server)) == 2, log=sensor.log())
    time.sleep(0.5)
    assert sorted(parameter(w) for w in workflows(api_server)) == ["hello", "world"]

    assert sensor.terminate() == 0
    assert "Traceback" not in sensor.log()


def test_eventsource_run_publishes_a_webhook_request_to_jetstream(
    api_server: ApiServer, nats_server: NatsServer, tmp_path: Path, processes: list[EventProcess]
) -> None:
    api_server.apply_crds()
    spec = {"webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}}}
    api_server.create(f"{OURS}/eventsources", manifest("EventSource", "hooks", spec))
    port = free_port()
    source = EventProcess(api_server, tmp_path, "eventsource", "hooks", nats_server.url)
    processes.append(source.start(SLUICE_WEBHOOK_PORTS=f"12000={port}"))
    source.wait_ready()

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/push",
        data=json.dumps({"message": "hi"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert (answer.status, answer.read().decode()) == (200, "success")

    records: list[BusRecord] = on_bus(nats_server.url, lambda bus: bus.read(1))
    [record] = records
    assert record.namespace == NS
    assert (record.event["source"], record.event["subject"], record.event["type"]) == (
        "hooks",
        "push",
        "webhook",
    )
    assert record.event["data"]["body"] == {"message": "hi"}
    assert source.terminate() == 0


def post(port: int, path: str, body: JSON) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_eventsource_run_follows_changes_keeps_its_spec_when_a_change_is_invalid_and_a_deletion(
    api_server: ApiServer, nats_server: NatsServer, tmp_path: Path, processes: list[EventProcess]
) -> None:
    api_server.apply_crds()

    def hook(endpoint: str, method: str = "POST") -> JSON:
        return {"webhook": {"push": {"port": "12000", "endpoint": endpoint, "method": method}}}

    api_server.create(f"{OURS}/eventsources", manifest("EventSource", "hooks", hook("/push")))
    port = free_port()
    source = EventProcess(
        api_server, tmp_path, "eventsource", "hooks", nats_server.url, "--recheck-seconds", "0.2"
    )
    processes.append(source.start(SLUICE_WEBHOOK_PORTS=f"12000={port}"))
    source.wait_ready()
    assert post(port, "/push", {"n": 1}) == (200, "success")

    def change(spec: JSON) -> None:
        api_server.request("PATCH", f"{OURS}/eventsources/hooks", {"spec": spec}, content_type=MERGE)

    change(hook("/v2"))
    eventually("the new endpoint", lambda: post(port, "/v2", {"n": 2}) == (200, "success"), log=source.log())
    assert post(port, "/push", {"n": 3}) == (400, "the route is not active")

    change(hook("/v3", method="BREW"))
    eventually("the refusal", lambda: "the changed spec is not run" in source.log(), log=source.log())
    time.sleep(0.6)  # a few more rechecks: said once, and the running spec stays
    assert source.log().count("the changed spec is not run") == 1
    assert "spec.webhook.push.method" in source.log()
    assert post(port, "/v2", {"n": 4}) == (200, "success")

    api_server.request("DELETE", f"{OURS}/eventsources/hooks")
    eventually("the deletion", lambda: source.readyz()[0] == 503, log=source.log())
    api_server.create(f"{OURS}/eventsources", manifest("EventSource", "hooks", hook("/again")))
    source.wait_ready()
    assert post(port, "/again", {"n": 5}) == (200, "success")
    assert source.terminate() == 0

    records: list[BusRecord] = on_bus(nats_server.url, lambda bus: bus.read(1))
    assert [r.event["data"]["body"]["n"] for r in records] == [1, 2, 4, 5]


def test_eventsource_run_publishes_calendar_events_and_keeps_the_cursor_on_the_bus(
    api_server: ApiServer, nats_server: NatsServer, tmp_path: Path, processes: list[EventProcess]
) -> None:
    api_server.apply_crds()
    spec = {"calendar": {"tick": {"interval": "1s"}}}
    api_server.create(f"{OURS}/eventsources", manifest("EventSource", "clock", spec))
    source = EventProcess(api_server, tmp_path, "eventsource", "clock", nats_server.url).start()
    processes.append(source)
    source.wait_ready()

    def ticks() -> list[BusRecord]:
        records: list[BusRecord] = on_bus(nats_server.url, lambda bus: bus.read(1))
        return records if len(records) >= 2 else []

    records = eventually("two ticks", ticks, log=source.log())
    assert {(r.event["source"], r.event["subject"], r.event["type"]) for r in records} == {
        ("clock", "tick", "calendar")
    }
    assert source.terminate() == 0
    cursor = on_bus(nats_server.url, lambda bus: bus.kv_get("sources", cursor_key(NS, "clock", "tick")))
    assert cursor is not None and cursor["lastFired"] >= records[-1].published_at - 2


def test_an_invalid_sensor_exits_non_zero_with_one_line_naming_the_field(api_server: ApiServer) -> None:
    api_server.apply_crds()
    spec = sensor_spec()
    spec["triggers"][0]["template"]["conditions"] = "nope"
    api_server.create(f"{OURS}/sensors", manifest("Sensor", "bad", spec))
    done = run_once(api_server, "sensor", "run", "bad")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("sluice: Sensor default/bad: spec.triggers[0].template.conditions:")
    assert "nope" in done.stderr


def test_a_sensor_waits_for_its_bus_not_ready_and_stops_on_sigterm_meanwhile(
    api_server: ApiServer, tmp_path: Path, processes: list[EventProcess]
) -> None:
    api_server.apply_crds()
    api_server.create(f"{OURS}/sensors", manifest("Sensor", "on-push", sensor_spec()))
    unreachable = f"nats://127.0.0.1:{free_port()}"
    sensor = EventProcess(api_server, tmp_path, "sensor", "on-push", unreachable).start()
    processes.append(sensor)
    eventually("the health port", lambda: sensor.readyz()[0] == 503, log=sensor.log())
    assert sensor.readyz() == (503, "connecting to the event bus")
    # A connection attempt takes up to 5 s; a stop does not wait for it.
    started = time.monotonic()
    assert sensor.terminate() == 0
    assert time.monotonic() - started < 3
    assert "Traceback" not in sensor.log()


def test_a_missing_eventsource_exits_non_zero_saying_so(api_server: ApiServer) -> None:
    api_server.apply_crds()
    done = run_once(api_server, "eventsource", "run", "ghost")
    assert done.returncode == 1
    assert done.stderr.strip() == "sluice: EventSource 'ghost' not found in namespace 'default'"


def test_sensor_run_follows_a_changed_spec_and_drops_its_state_when_deleted(
    api_server: ApiServer, nats_server: NatsServer, tmp_path: Path, processes: list[EventProcess]
) -> None:
    api_server.apply_crds()
    api_server.create(f"{OURS}/sensors", manifest("Sensor", "on-push", sensor_spec()))
    sensor = EventProcess(
        api_server, tmp_path, "sensor", "on-push", nats_server.url, "--recheck-seconds", "0.2"
    ).start()
    processes.append(sensor)
    sensor.wait_ready()
    publish(nats_server.url, push_event("e1", "one"))
    eventually("the first workflow", lambda: workflows(api_server), log=sensor.log())
    state = on_bus(nats_server.url, lambda bus: bus.kv_get(state_bucket(NS, "on-push"), "build"))
    assert state is not None

    api_server.request(
        "PATCH", f"{OURS}/sensors/on-push", {"spec": sensor_spec("deploy-")}, content_type=MERGE
    )
    eventually("the change to be applied", lambda: "changed spec" in sensor.log(), log=sensor.log())
    publish(nats_server.url, push_event("e2", "two"))
    eventually("the second workflow", lambda: len(workflows(api_server)) == 2, log=sensor.log())
    names = sorted(w["metadata"]["name"] for w in workflows(api_server))
    assert names[0].startswith("build-") and names[1].startswith("deploy-")

    api_server.request("DELETE", f"{OURS}/sensors/on-push")
    # Said once its consumers and state are gone.
    eventually("the sensor to notice", lambda: "was deleted" in sensor.readyz()[1], log=sensor.log())
    assert sensor.readyz()[0] == 503
    assert on_bus(nats_server.url, lambda bus: bus.kv_get(state_bucket(NS, "on-push"), "build")) is None
    assert sensor.terminate() == 0


def test_a_stopped_sensor_keeps_its_state_unless_it_was_deleted(
    api_server: ApiServer, nats_server: NatsServer, tmp_path: Path, processes: list[EventProcess]
) -> None:
    api_server.apply_crds()
    api_server.create(f"{OURS}/sensors", manifest("Sensor", "on-push", sensor_spec()))

    def run_and_fire(event_id: str, count: int) -> EventProcess:
        sensor = EventProcess(api_server, tmp_path, "sensor", "on-push", nats_server.url).start()
        processes.append(sensor)
        sensor.wait_ready()
        publish(nats_server.url, push_event(event_id, event_id))
        eventually(f"workflow {count}", lambda: len(workflows(api_server)) == count, log=sensor.log())
        return sensor

    def stored() -> Any:
        return on_bus(nats_server.url, lambda bus: bus.kv_get(state_bucket(NS, "on-push"), "build"))

    assert run_and_fire("e1", 1).terminate() == 0  # a rolling restart: the Sensor is still there
    assert stored() is not None
    last = run_and_fire("e2", 2)
    api_server.request("DELETE", f"{OURS}/sensors/on-push")  # the garbage collector then stops the pod
    assert last.terminate() == 0
    assert stored() is None


# ------------------------------------------------------------------------------------ the actions


def firing(key: str, *event_ids: str) -> Firing:
    from engine.events.model import Event

    events = {
        f"d{i}": Event(id=e, source="hooks", type="webhook", subject="push", time="2024-01-01T00:00:00Z")
        for i, e in enumerate(event_ids or ("e",))
    }
    return Firing(sensor="s", trigger="t", events=events, key=key)


F1, F2 = "a" * 20, "b" * 20


def act(api_server: ApiServer, *steps: tuple[ObjectAction, Firing], instance: str = "") -> list[Any]:
    """Run each action in turn; an action's result is its message, or the exception it raised."""

    async def go() -> list[Any]:
        sync = Api(load_client(str(api_server.kubeconfig)))
        api = AsyncApi(sync, workers=2)
        actions = ClusterObjectActions(api, ClusterObjects(sync), namespace=NS, instance_id=instance)
        out: list[Any] = []
        try:
            for action, fired in steps:
                try:
                    out.append(await actions.run(action, fired))
                except SluiceError as exc:
                    out.append(exc)
        finally:
            api.close()
        return out

    return asyncio.run(go())


def stamped_workflow(name: str, key: str) -> JSON:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "annotations": {ANNOTATION_FIRING: key}},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]},
    }


def test_a_workflow_is_created_once_per_firing_and_a_name_taken_by_another_firing_fails(
    api_server: ApiServer,
) -> None:
    api_server.apply_crds()
    results = act(
        api_server,
        (ObjectAction("argoWorkflow", "submit", stamped_workflow("w1", F1)), firing(F1)),
        (ObjectAction("argoWorkflow", "submit", stamped_workflow("w1", F1)), firing(F1)),
        (ObjectAction("k8s", "create", stamped_workflow("w1", F2)), firing(F2)),
        instance="blue",
    )
    assert results[:2] == ["workflow/w1 submitted", "workflow/w1 was already submitted for this firing"]
    assert isinstance(results[2], ActionError) and "already exists" in str(results[2])
    [wf] = workflows(api_server)
    assert wf["apiVersion"] == "sluice.dev/v1alpha1"
    assert wf["metadata"]["labels"][LABEL_INSTANCE] == "blue"  # the Sensor's operator instance runs it


def test_an_invalid_workflow_is_refused_without_creating_anything(api_server: ApiServer) -> None:
    api_server.apply_crds()
    broken = stamped_workflow("w1", F1)
    broken["spec"]["entrypoint"] = "missing"
    [result] = act(api_server, (ObjectAction("argoWorkflow", "submit", broken), firing(F1)))
    assert isinstance(result, ActionError) and "invalid" in str(result)
    assert workflows(api_server) == []


def test_k8s_actions_create_update_patch_and_delete_any_object(api_server: ApiServer) -> None:
    def cm(data: JSON, key: str | None = None) -> JSON:
        meta: JSON = {"name": "settings"}
        if key:
            meta["annotations"] = {ANNOTATION_FIRING: key}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}

    def deployment_patch() -> JSON:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 3},
        }

    api_server.create(
        "/apis/apps/v1/namespaces/default/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {}},
        },
    )
    results = act(
        api_server,
        (ObjectAction("k8s", "create", cm({"a": "1"}, F1)), firing(F1)),
        (ObjectAction("k8s", "create", cm({"a": "1"}, F1)), firing(F1)),
        (ObjectAction("k8s", "create", cm({"a": "1"}, F2)), firing(F2)),
        (ObjectAction("k8s", "update", cm({"b": "2"})), firing(F2)),
        (ObjectAction("k8s", "patch", cm({"a": None, "c": "3"})), firing(F2)),
        # A kind found by discovery, patched with the strategy the trigger names.
        (
            ObjectAction(
                "k8s", "patch", deployment_patch(), patch_strategy="application/strategic-merge-patch+json"
            ),
            firing(F2),
        ),
        (
            ObjectAction("k8s", "patch", deployment_patch(), patch_strategy="application/json-patch+json"),
            firing(F2),
        ),
    )
    assert results[:2] == [
        "configmap/settings created",
        "configmap/settings was already created for this firing",
    ]
    assert isinstance(results[2], ActionError) and "already exists" in str(results[2])
    assert results[3:6] == [
        "configmap/settings updated",
        "configmap/settings patched",
        "deployment/web patched",
    ]
    assert isinstance(results[6], ActionError) and "list of operations" in str(results[6])
    live = api_server.request("GET", f"{CONFIGMAPS}/settings")
    assert live["data"] == {"b": "2", "c": "3"}
    assert (
        api_server.request("GET", "/apis/apps/v1/namespaces/default/deployments/web")["spec"]["replicas"] == 3
    )

    results = act(
        api_server,
        (ObjectAction("k8s", "delete", cm({})), firing(F2)),
        (ObjectAction("k8s", "delete", cm({})), firing(F2)),
        # Update of a missing object creates it, as Argo does.
        (ObjectAction("k8s", "update", cm({"z": "9"})), firing(F2)),
        (
            ObjectAction(
                "k8s", "create", {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
            ),
            firing(F2),
        ),
    )
    assert results[:3] == [
        "configmap/settings deleted",
        "configmap/settings was already gone",
        "configmap/settings created",
    ]
    assert isinstance(results[3], SluiceError) and not isinstance(results[3], ActionError)
    assert "example.com/v1" in str(results[3])
    assert api_server.request("GET", f"{CONFIGMAPS}/settings")["data"] == {"z": "9"}


def test_argo_workflow_operations_use_the_operators_spec_fields_and_annotations(
    api_server: ApiServer,
) -> None:
    api_server.apply_crds()
    made = api_server.create(WORKFLOWS, {**stamped_workflow("w1", F1), "apiVersion": "sluice.dev/v1alpha1"})
    api_server.request(
        "PATCH", f"{WORKFLOWS}/w1/status", {"status": {"phase": "Running"}}, content_type=MERGE
    )
    ref = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w1"}}

    def op(name: str, key: str = F1, args: tuple[str, ...] = ()) -> tuple[ObjectAction, Firing]:
        return ObjectAction("argoWorkflow", name, ref, args=args), firing(key)

    def live() -> JSON:
        obj: JSON = api_server.request("GET", f"{WORKFLOWS}/w1")
        return obj

    assert act(api_server, op("suspend")) == ["workflow/w1 suspend"]
    assert live()["spec"]["suspend"] is True
    assert act(api_server, op("resume")) == ["workflow/w1 resume"]
    resumed = live()
    assert "suspend" not in resumed["spec"]
    assert json.loads(resumed["metadata"]["annotations"][ANNOTATION_RESUME])["id"] == F1
    assert act(api_server, op("stop")) == ["workflow/w1 stop"]
    assert live()["spec"]["shutdown"] == "Stop"
    [not_failed] = act(api_server, op("retry"))
    assert isinstance(not_failed, ActionError) and "only a Failed or Error" in str(not_failed)

    api_server.request("PATCH", f"{WORKFLOWS}/w1/status", {"status": {"phase": "Failed"}}, content_type=MERGE)
    retried = act(api_server, op("retry", F2, ("--restart-successful",)), op("retry", F2), op("terminate"))
    assert retried[:2] == ["workflow/w1 retry", "workflow/w1 retry was already requested for this firing"]
    request = json.loads(live()["metadata"]["annotations"][ANNOTATION_RETRY])
    assert request == {"restartSuccessful": True, "nodeFieldSelector": None, "id": F2}
    assert isinstance(retried[2], ActionError) and "already completed (Failed)" in str(retried[2])

    resubmitted = act(api_server, op("resubmit", F2), op("resubmit", F2))
    assert resubmitted[1].endswith("was already submitted for this firing")
    copies = [w for w in workflows(api_server) if w["metadata"]["name"] != "w1"]
    assert len(copies) == 1
    copy_ = copies[0]
    assert copy_["metadata"]["name"].startswith("w1-")
    assert copy_["metadata"]["labels"]["workflows.argoproj.io/resubmitted-from-workflow"] == "w1"
    assert "shutdown" not in copy_["spec"] and copy_["spec"]["templates"] == made["spec"]["templates"]

    [missing] = act(
        api_server, (ObjectAction("argoWorkflow", "stop", {"metadata": {"name": "nope"}}), firing(F1))
    )
    assert isinstance(missing, StateError)


def test_submit_from_a_template_or_cron_workflow_creates_a_workflow_named_by_the_firing(
    api_server: ApiServer,
) -> None:
    api_server.apply_crds()
    body = stamped_workflow("x", F1)["spec"]
    api_server.create(f"{OURS}/workflowtemplates", manifest("WorkflowTemplate", "tpl", body))
    api_server.create(
        f"{OURS}/cronworkflows",
        manifest("CronWorkflow", "nightly", {"schedule": "0 0 * * *", "workflowSpec": body}),
    )

    def source(kind: str, name: str) -> tuple[ObjectAction, Firing]:
        obj = {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": {"name": name}}
        return ObjectAction("argoWorkflow", "submit-from", obj), firing(F1, "e1", "e2")

    results = act(
        api_server,
        source("WorkflowTemplate", "tpl"),
        source("CronWorkflow", "nightly"),
        source("WorkflowTemplate", "absent"),
    )
    assert results[0].startswith("workflow/tpl-") and results[1].startswith("workflow/nightly-")
    assert isinstance(results[2], StateError)
    made = {w["metadata"]["name"].rsplit("-", 1)[0]: w for w in workflows(api_server)}
    assert made["tpl"]["spec"] == {"workflowTemplateRef": {"name": "tpl"}}
    assert made["nightly"]["spec"]["templates"] == body["templates"]
    assert made["nightly"]["metadata"]["labels"]["workflows.argoproj.io/cron-workflow"] == "nightly"
    assert all(w["metadata"]["annotations"][ANNOTATION_FIRING] == F1 for w in made.values())


def test_a_configmap_trigger_source_is_read_from_the_sensors_namespace(api_server: ApiServer) -> None:
    from engine.spec.events import TriggerTemplate

    api_server.create(CONFIGMAPS, {"metadata": {"name": "sources"}, "data": {"wf": "kind: Workflow\n"}})
    template = TriggerTemplate.parse(
        {
            "name": "t",
            "k8s": {"operation": "create", "source": {"configmap": {"name": "sources", "key": "wf"}}},
        },
        "template",
    )
    missing = TriggerTemplate.parse(
        {
            "name": "t",
            "k8s": {"operation": "create", "source": {"configmap": {"name": "sources", "key": "no"}}},
        },
        "template",
    )
    sync = Api(load_client(str(api_server.kubeconfig)))
    actions = ClusterObjectActions(AsyncApi(sync), ClusterObjects(sync), namespace=NS)
    assert actions.load_source(template, NS) == "kind: Workflow\n"
    with pytest.raises(SluiceError, match="key 'no'"):
        actions.load_source(missing, NS)


# ------------------------------------------------------------------------------------ the options


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, BusAuth()),
        ("s3cret\n", BusAuth(token="s3cret")),
        ("token: abc", BusAuth(token="abc")),
        ("username: sluice\npassword: pw", BusAuth(user="sluice", password="pw")),
    ],
)
def test_bus_credentials_are_a_token_or_a_user_and_password(value: str | None, expected: BusAuth) -> None:
    assert bus_auth(value) == expected


def test_bus_credentials_of_a_creds_file_are_handed_over_as_a_private_file() -> None:
    text = "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n"
    auth = bus_auth(text)
    assert auth.credentials is not None
    path = Path(auth.credentials)
    try:
        assert path.read_text() == text
        assert path.stat().st_mode & 0o077 == 0
    finally:
        path.unlink()


def test_a_credentials_mapping_without_a_secret_is_refused() -> None:
    with pytest.raises(SluiceError, match="SLUICE_EVENTBUS_CREDENTIALS"):
        bus_auth("username: sluice")


def test_webhook_port_maps_read_pairs_and_refuse_anything_else() -> None:
    assert parse_port_map(["12000=0, 13000=13001", "14000=14000"]) == {
        "12000": 0,
        "13000": 13001,
        "14000": 14000,
    }
    for bad in ("12000", "12000=x", "=1", "1=70000"):
        with pytest.raises(SluiceError, match="SLUICE_WEBHOOK_PORTS"):
            parse_port_map([bad])
