"""``sluice operator`` keeps the workloads of EventBuses, EventSources and Sensors: the real operator process
against the tests' API server (no kubelet: only the objects it writes are looked at), and the RBAC that
lets it do so in deploy/."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.apiserver import ApiError, ApiServer
from tests.kubernetes.operator_process import OperatorProcess

JSON = dict[str, Any]
EVENTS = "/apis/sluice.dev/v1alpha1/namespaces/default"
PLURALS = {"EventBus": "eventbus", "EventSource": "eventsources", "Sensor": "sensors"}
CHILDREN = {
    "Deployment": "/apis/apps/v1/namespaces/default/deployments",
    "StatefulSet": "/apis/apps/v1/namespaces/default/statefulsets",
    "Service": "/api/v1/namespaces/default/services",
    "ConfigMap": "/api/v1/namespaces/default/configmaps",
}
MERGE = "application/merge-patch+json"
MANAGED = "app.kubernetes.io/managed-by=sluicegate"
EXOTIC_URL = "nats://nats.shared.example:4222"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def operator(api_server: ApiServer, tmp_path: Path) -> Iterator[OperatorProcess]:
    api_server.apply_crds()
    process = OperatorProcess(api_server, tmp_path / "operator").start()
    try:
        yield process
    finally:
        process.kill()


def manifest(kind: str, name: str, spec: JSON) -> JSON:
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def webhook(service: bool = True, endpoint: str = "/push") -> JSON:
    spec: JSON = {"webhook": {"push": {"port": "12000", "endpoint": endpoint, "method": "POST"}}}
    if service:
        spec["service"] = {"ports": [{"port": 12000, "targetPort": 12000}]}
    return spec


SENSOR_SPEC: JSON = {
    "dependencies": [{"name": "push", "eventSourceName": "hooks", "eventName": "push"}],
    "triggers": [{"template": {"name": "log", "log": {}}}],
}


def create(api: ApiServer, kind: str, name: str, spec: JSON) -> JSON:
    return api.create(f"{EVENTS}/{PLURALS[kind]}", manifest(kind, name, spec))


def get(api: ApiServer, kind: str, name: str) -> JSON:
    obj: JSON = api.request("GET", f"{EVENTS}/{PLURALS[kind]}/{name}")
    return obj


def patch_spec(api: ApiServer, kind: str, name: str, spec: JSON) -> None:
    api.request("PATCH", f"{EVENTS}/{PLURALS[kind]}/{name}", {"spec": spec}, content_type=MERGE)


def children(api: ApiServer, kind: str, selector: str = MANAGED) -> dict[str, JSON]:
    items = api.request("GET", f"{CHILDREN[kind]}?labelSelector={selector}")["items"]
    return {str(i["metadata"]["name"]): i for i in items}


def child(api: ApiServer, kind: str, name: str) -> JSON | None:
    try:
        found: JSON = api.request("GET", f"{CHILDREN[kind]}/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return found


def conditions(obj: JSON) -> dict[str, JSON]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


def wait_for(operator: OperatorProcess, what: str, check: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert operator.alive, f"the operator died:\n{operator.log_tail()}"
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\noperator log:\n{operator.log_tail()}")


def deployed(api: ApiServer, operator: OperatorProcess, kind: str, name: str) -> JSON:
    def check() -> JSON | None:
        obj = get(api, kind, name)
        return obj if conditions(obj).get("Deployed", {}).get("status") == "True" else None

    found: JSON = wait_for(operator, f"{kind} {name} to be deployed", check)
    return found


def container(workload: JSON) -> JSON:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    found: JSON = c
    return found


def env_of(workload: JSON) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container(workload).get("env") or ()}


def owner_of(obj: JSON) -> JSON:
    (ref,) = obj["metadata"]["ownerReferences"]
    found: JSON = ref
    return found


# ------------------------------------------------------------------------------------------ scenarios


def test_a_webhook_event_source_gets_its_deployment_and_service_owned_and_labelled(
    api_server: ApiServer, operator: OperatorProcess
) -> None:
    create(api_server, "EventBus", "default", {"jetstreamExotic": {"url": EXOTIC_URL}})
    source = create(api_server, "EventSource", "hooks", webhook())
    status = deployed(api_server, operator, "EventSource", "hooks")
    assert conditions(status)["SourcesProvided"]["status"] == "True"
    deployment = child(api_server, "Deployment", "hooks-eventsource")
    service = child(api_server, "Service", "hooks-eventsource-svc")
    assert deployment is not None and service is not None
    c = container(deployment)
    assert c["command"] == ["sluice"]
    assert c["args"] == ["eventsource", "run", "hooks", "-n", "default"]
    assert env_of(deployment)["SLUICE_EVENTBUS_URL"] == EXOTIC_URL
    for obj in (deployment, service):
        ref = owner_of(obj)
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "EventSource",
            "hooks",
            source["metadata"]["uid"],
            True,
        )
        assert obj["metadata"]["labels"]["events.sluice.dev/eventsource"] == "hooks"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sluicegate"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["port"] for p in service["spec"]["ports"]] == [12000]
    # The exotic bus itself runs nothing.
    assert children(api_server, "StatefulSet") == {}
    bus = get(api_server, "EventBus", "default")
    assert conditions(bus)["Deployed"]["status"] == "True"
    assert bus["status"]["config"]["jetstream"]["url"] == EXOTIC_URL


def test_a_spec_change_patches_the_deployment_and_removing_spec_service_deletes_the_service(
    api_server: ApiServer, operator: OperatorProcess
) -> None:
    create(api_server, "EventBus", "default", {"jetstreamExotic": {"url": EXOTIC_URL}})
    create(api_server, "EventSource", "hooks", webhook())
    deployed(api_server, operator, "EventSource", "hooks")
    before = child(api_server, "Deployment", "hooks-eventsource")
    assert before is not None
    hash_before = before["metadata"]["annotations"]["events.sluice.dev/hash"]
    pods_before = before["spec"]["template"]["metadata"]["annotations"]["events.sluice.dev/spec-hash"]

    patch_spec(
        api_server, "EventSource", "hooks", {"replicas": 2, "webhook": webhook(endpoint="/pushed")["webhook"]}
    )

    def patched() -> JSON | None:
        d = child(api_server, "Deployment", "hooks-eventsource")
        return d if d and d["metadata"]["annotations"]["events.sluice.dev/hash"] != hash_before else None

    after: JSON = wait_for(operator, "the Deployment to be patched", patched)
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "patched in place, not replaced"
    assert after["spec"]["replicas"] == 2
    assert after["spec"]["template"]["metadata"]["annotations"]["events.sluice.dev/spec-hash"] != pods_before
    assert child(api_server, "Service", "hooks-eventsource-svc") is not None

    patch_spec(api_server, "EventSource", "hooks", {"service": None})
    wait_for(
        operator,
        "the Service to be deleted",
        lambda: child(api_server, "Service", "hooks-eventsource-svc") is None,
    )
    kept = child(api_server, "Deployment", "hooks-eventsource")
    assert kept is not None and kept["metadata"]["uid"] == before["metadata"]["uid"]


def test_a_sensor_gets_its_deployment_once_its_event_bus_exists(
    api_server: ApiServer, operator: OperatorProcess
) -> None:
    sensor = create(api_server, "Sensor", "on-push", SENSOR_SPEC)

    def waiting() -> JSON | None:
        c = conditions(get(api_server, "Sensor", "on-push")).get("Deployed")
        return c if c and c["status"] == "False" else None

    missing: JSON = wait_for(operator, "the sensor to report its missing bus", waiting)
    assert "no EventBus 'default'" in missing["message"]
    assert children(api_server, "Deployment") == {}

    create(api_server, "EventBus", "default", {"jetstream": {"replicas": 1}})
    status = deployed(api_server, operator, "Sensor", "on-push")
    assert {t: c["status"] for t, c in conditions(status).items()} == {
        "DependenciesProvided": "True",
        "TriggersProvided": "True",
        "Deployed": "True",
    }
    deployment = child(api_server, "Deployment", "on-push-sensor")
    assert deployment is not None
    assert container(deployment)["args"] == ["sensor", "run", "on-push", "-n", "default"]
    assert env_of(deployment)["SLUICE_EVENTBUS_URL"] == "nats://eventbus-default-js-svc.default.svc:4222"
    assert owner_of(deployment)["uid"] == sensor["metadata"]["uid"]
    assert deployment["metadata"]["labels"]["events.sluice.dev/sensor"] == "on-push"


def test_a_jetstream_event_bus_gets_its_statefulset_services_and_config(
    api_server: ApiServer, operator: OperatorProcess
) -> None:
    bus = create(api_server, "EventBus", "default", {"jetstream": {"version": "2.10.18"}})
    status = deployed(api_server, operator, "EventBus", "default")
    assert conditions(status)["Configured"]["status"] == "True"
    assert status["status"]["config"]["jetstream"]["url"] == "nats://eventbus-default-js-svc.default.svc:4222"
    selector = "events.sluice.dev/eventbus=default"
    sts = children(api_server, "StatefulSet", selector)
    services = children(api_server, "Service", selector)
    configs = children(api_server, "ConfigMap", selector)
    assert list(sts) == ["eventbus-default-js"]
    assert set(services) == {"eventbus-default-js-headless", "eventbus-default-js-svc"}
    assert list(configs) == ["eventbus-default-js-config"]
    server = sts["eventbus-default-js"]
    assert server["spec"]["serviceName"] == "eventbus-default-js-headless"
    assert server["spec"]["replicas"] == 3
    assert container(server)["image"] == "nats:2.10.18"
    assert services["eventbus-default-js-headless"]["spec"]["clusterIP"] == "None"
    for obj in [*sts.values(), *services.values(), *configs.values()]:
        assert owner_of(obj)["uid"] == bus["metadata"]["uid"]
        assert owner_of(obj)["kind"] == "EventBus"

    # Volume claims cannot change in place: the StatefulSet is replaced.
    patch_spec(api_server, "EventBus", "default", {"jetstream": {"persistence": {"volumeSize": "1Gi"}}})

    def replaced() -> JSON | None:
        now = child(api_server, "StatefulSet", "eventbus-default-js")
        return now if now and now["metadata"]["uid"] != server["metadata"]["uid"] else None

    new: JSON = wait_for(operator, "the StatefulSet to be replaced", replaced)
    assert new["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == {"requests": {"storage": "1Gi"}}

    # An exotic bus runs nothing: the server's objects go.
    api_server.request(
        "PATCH",
        f"{EVENTS}/eventbus/default",
        {"spec": {"jetstream": None, "jetstreamExotic": {"url": EXOTIC_URL}}},
        content_type=MERGE,
    )
    wait_for(
        operator,
        "the JetStream objects to be deleted",
        lambda: not any(children(api_server, k, selector) for k in ("StatefulSet", "Service", "ConfigMap")),
    )
    assert get(api_server, "EventBus", "default")["status"]["config"]["jetstream"]["url"] == EXOTIC_URL


def test_an_invalid_sensor_gets_a_false_condition_and_no_deployment(
    api_server: ApiServer, operator: OperatorProcess
) -> None:
    create(api_server, "EventBus", "default", {"jetstreamExotic": {"url": EXOTIC_URL}})
    bad = {**SENSOR_SPEC, "triggers": [{"template": {"name": "log", "conditions": "nope", "log": {}}}]}
    create(api_server, "Sensor", "broken", bad)

    def reported() -> JSON | None:
        c = conditions(get(api_server, "Sensor", "broken")).get("TriggersProvided")
        return c if c and c["status"] == "False" else None

    condition: JSON = wait_for(operator, "the sensor's condition", reported)
    assert condition["message"] == "spec.triggers[0].template.conditions: no dependency named 'nope'"
    state = conditions(get(api_server, "Sensor", "broken"))
    assert state["DependenciesProvided"]["status"] == "True"
    assert state["Deployed"]["status"] == "False"
    # A valid sensor created after it is deployed: the operator got past the broken one.
    create(api_server, "Sensor", "fine", SENSOR_SPEC)
    deployed(api_server, operator, "Sensor", "fine")
    assert set(children(api_server, "Deployment")) == {"fine-sensor"}

    patch_spec(api_server, "Sensor", "broken", {"triggers": SENSOR_SPEC["triggers"]})
    deployed(api_server, operator, "Sensor", "broken")
    assert set(children(api_server, "Deployment")) == {"fine-sensor", "broken-sensor"}


def test_a_restarted_operator_finds_every_child_in_place_and_writes_nothing(
    api_server: ApiServer, operator: OperatorProcess
) -> None:
    create(api_server, "EventBus", "default", {"jetstream": {}})
    create(api_server, "EventSource", "hooks", webhook())
    create(api_server, "Sensor", "on-push", SENSOR_SPEC)
    for kind, name in (("EventBus", "default"), ("EventSource", "hooks"), ("Sensor", "on-push")):
        deployed(api_server, operator, kind, name)

    def snapshot() -> dict[tuple[str, str], tuple[str, str]]:
        return {
            (kind, name): (obj["metadata"]["uid"], obj["metadata"]["resourceVersion"])
            for kind in CHILDREN
            for name, obj in children(api_server, kind).items()
        }

    def statuses() -> dict[str, str]:
        return {
            kind: get(api_server, kind, name)["metadata"]["resourceVersion"]
            for kind, name in (("EventBus", "default"), ("EventSource", "hooks"), ("Sensor", "on-push"))
        }

    before, status_before = snapshot(), statuses()
    assert len(before) == 7  # 2 Deployments, 1 StatefulSet, 3 Services, 1 ConfigMap

    log_start = api_server.log_path.stat().st_size
    operator.kill()
    operator.start()
    # Objects created after the restart are reconciled after the ones listed at its start.
    create(api_server, "EventSource", "later", webhook(service=False))
    create(api_server, "Sensor", "later", SENSOR_SPEC)
    deployed(api_server, operator, "EventSource", "later")
    deployed(api_server, operator, "Sensor", "later")
    time.sleep(0.5)

    after = snapshot()
    assert {k: v for k, v in after.items() if k in before} == before, "nothing re-created or rewritten"
    assert set(after) - set(before) == {("Deployment", "later-eventsource"), ("Deployment", "later-sensor")}
    assert statuses() == status_before
    # Not even a write that changed nothing: the access log has none but the new objects' own.
    with api_server.log_path.open(encoding="utf-8", errors="replace") as log:
        log.seek(log_start)
        requests = log.read().splitlines()
    writes = sorted(r for r in requests if r.split(" ")[0] in ("POST", "PATCH", "PUT", "DELETE"))
    assert writes == sorted(
        [
            f"POST {EVENTS}/eventsources -> 201",
            f"POST {EVENTS}/sensors -> 201",
            f"POST {CHILDREN['Deployment']} -> 201",
            f"POST {CHILDREN['Deployment']} -> 201",
            f"PATCH {EVENTS}/eventsources/later/status -> 200",
            f"PATCH {EVENTS}/sensors/later/status -> 200",
        ]
    )


# ------------------------------------------------------------------------------------------ RBAC


def rbac_documents(name: str) -> list[JSON]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text(encoding="utf-8")) if d]


def grants(role: JSON) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_operator_may_do_exactly_what_the_event_controller_does() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in rbac_documents("rbac.yaml")}
    role = docs[("ClusterRole", "sluice-operator-events")]
    kinds = ("eventsources", "sensors", "eventbus")
    assert grants(role) == {
        *{("sluice.dev", r, v) for r in kinds for v in ("get", "list", "watch")},
        *{("sluice.dev", f"{r}/status", "patch") for r in kinds},
        *{
            ("apps", r, v)
            for r in ("deployments", "statefulsets")
            for v in ("list", "create", "patch", "delete")
        },
        *{("", r, v) for r in ("services", "configmaps") for v in ("list", "create", "patch", "delete")},
    }
    binding = docs[("ClusterRoleBinding", "sluice-operator-events")]
    assert binding["roleRef"]["name"] == "sluice-operator-events"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sluice-operator", "namespace": "sluicegate"}
    ]


def test_the_event_pods_roles_read_their_own_kind_and_let_sensors_submit_workflows() -> None:
    roles = {
        d["metadata"]["name"]: grants(d)
        for d in rbac_documents("events-rbac.yaml")
        if d["kind"] == "ClusterRole"
    }
    assert set(roles) == {"sluice-eventsource", "sluice-sensor"}
    assert ("sluice.dev", "eventsources", "get") in roles["sluice-eventsource"]
    assert ("sluice.dev", "sensors", "get") in roles["sluice-sensor"]
    assert ("sluice.dev", "workflows", "create") in roles["sluice-sensor"]
    assert not any(r == "sensors" for _, r, _ in roles["sluice-eventsource"])
    assert not any(v in ("create", "patch", "delete") for _, r, v in roles["sluice-eventsource"])
