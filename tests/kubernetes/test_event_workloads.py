"""The workloads the operator builds for EventBuses, EventSources and Sensors
(``engine.runtime.kubernetes.eventworkloads``): pure tables, no API server."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.errors import SpecError
from engine.runtime.kubernetes.eventworkloads import (
    ANNOTATION_HASH,
    ANNOTATION_SPEC_HASH,
    LABEL_EVENT_BUS,
    LABEL_EVENT_SOURCE,
    LABEL_MANAGED_BY,
    LABEL_SENSOR,
    BusConnection,
    bus_connection,
    bus_name_of,
    decide_change,
    event_bus_children,
    event_source_children,
    fit_name,
    jetstream_image,
    label_value,
    owner_selector,
    sensor_children,
    update_patch,
)
from engine.runtime.kubernetes.settings import OperatorSettings
from engine.spec.events import EventBus, EventSource, SecretKeySelector, Sensor
from engine.spec.loader import normalise_api_version

CORPUS = Path("/work/shared/conformance/argo-events")
SETTINGS = OperatorSettings(
    executor_image="registry.example/sluicegate:9.9", executor_image_pull_policy="Always"
)
BUS = BusConnection("nats://eventbus-default-js-svc.team.svc:4222")
JSON = dict[str, Any]


def meta(name: str, uid: str = "uid-1") -> JSON:
    return {"name": name, "namespace": "team", "uid": uid}


def event_source(spec: JSON | None = None, name: str = "hooks") -> EventSource:
    body = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "EventSource",
        "metadata": meta(name),
        "spec": spec
        if spec is not None
        else {"webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}}},
    }
    return EventSource.parse(body)


def sensor(spec: JSON | None = None, name: str = "on-push") -> Sensor:
    base = {
        "dependencies": [{"name": "push", "eventSourceName": "hooks", "eventName": "push"}],
        "triggers": [{"template": {"name": "log", "log": {}}}],
    }
    return Sensor.parse(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Sensor",
            "metadata": meta(name, "uid-s"),
            "spec": {**base, **(spec or {})},
        }
    )


def event_bus(spec: JSON, name: str = "default") -> EventBus:
    return EventBus.parse(
        {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "EventBus",
            "metadata": meta(name, "uid-b"),
            "spec": spec,
        }
    )


def by_kind(children: list[JSON]) -> dict[str, list[JSON]]:
    out: dict[str, list[JSON]] = {}
    for c in children:
        out.setdefault(c["kind"], []).append(c)
    return out


def pod_of(workload: JSON) -> JSON:
    pod: JSON = workload["spec"]["template"]
    return pod


def main_container(workload: JSON) -> JSON:
    (container,) = pod_of(workload)["spec"]["containers"]
    c: JSON = container
    return c


def env_of(container: JSON) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or ()}


def problems_of(exc: pytest.ExceptionInfo[SpecError]) -> dict[str, str]:
    return {p.path: p.message for p in exc.value.problems}


# ------------------------------------------------------------------------------------------ EventSource


def test_an_event_source_deployment_runs_sluice_eventsource_run_against_its_bus() -> None:
    (deployment,) = event_source_children(event_source(), bus=BUS, settings=SETTINGS)
    assert deployment["apiVersion"] == "apps/v1" and deployment["kind"] == "Deployment"
    assert deployment["metadata"]["name"] == "hooks-eventsource"
    assert deployment["metadata"]["namespace"] == "team"
    c = main_container(deployment)
    assert c["command"] == ["sluice"]
    assert c["args"] == ["eventsource", "run", "hooks", "-n", "team"]
    assert c["image"] == "registry.example/sluicegate:9.9"
    assert c["imagePullPolicy"] == "Always"
    env = env_of(c)
    assert env["SLUICE_EVENTBUS_URL"] == BUS.url
    health = {p["name"]: p["containerPort"] for p in c["ports"] if "name" in p}["health"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env["SLUICE_HEALTH_PORT"] == str(health)
    assert 12000 in {p["containerPort"] for p in c["ports"]}
    assert c["resources"]["requests"] and c["resources"]["limits"]


def test_every_child_is_labelled_owned_by_its_object_and_selected_by_its_owner_label() -> None:
    source = event_source(
        {
            "service": {"ports": [{"port": 12000, "targetPort": 12000}]},
            "webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}},
        }
    )
    children = event_source_children(source, bus=BUS, settings=SETTINGS)
    assert [c["kind"] for c in children] == ["Deployment", "Service"]
    want_labels = {LABEL_EVENT_SOURCE: "hooks", LABEL_MANAGED_BY: "sluicegate"}
    for child in children:
        assert child["metadata"]["labels"].items() >= want_labels.items()
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "EventSource",
                "name": "hooks",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert ANNOTATION_HASH in child["metadata"]["annotations"]
    deployment, service = children
    assert deployment["spec"]["selector"]["matchLabels"] == want_labels
    assert pod_of(deployment)["metadata"]["labels"].items() >= want_labels.items()
    assert service["spec"]["selector"] == want_labels
    assert (
        owner_selector(LABEL_EVENT_SOURCE, "hooks")
        == f"{LABEL_EVENT_SOURCE}=hooks,{LABEL_MANAGED_BY}=sluicegate"
    )


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (None, None),
        (
            {"ports": [{"port": 80, "targetPort": 12000}]},
            {"ports": [{"port": 80, "targetPort": 12000}]},
        ),
        (
            {
                "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}],
                "clusterIP": "10.0.0.9",
                "type": "NodePort",
            },
            {
                "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}],
                "clusterIP": "10.0.0.9",
                "type": "NodePort",
            },
        ),
    ],
)
def test_a_webhook_source_gets_a_service_only_from_spec_service(
    service: JSON | None, expected: JSON | None
) -> None:
    spec: JSON = {"webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}}}
    if service is not None:
        spec["service"] = service
    services = by_kind(event_source_children(event_source(spec), bus=BUS, settings=SETTINGS)).get(
        "Service", []
    )
    if expected is None:
        assert services == []
        return
    (svc,) = services
    assert svc["metadata"]["name"] == "hooks-eventsource-svc"
    got = {k: v for k, v in svc["spec"].items() if k != "selector"}
    assert got == expected


def test_service_metadata_reaches_the_service_without_changing_its_selector_labels() -> None:
    spec: JSON = {
        "webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}},
        "service": {
            "metadata": {"labels": {"team": "a", LABEL_EVENT_SOURCE: "other"}, "annotations": {"x": "y"}},
            "ports": [{"port": 12000}],
        },
    }
    svc = by_kind(event_source_children(event_source(spec), bus=BUS, settings=SETTINGS))["Service"][0]
    assert svc["metadata"]["labels"][LABEL_EVENT_SOURCE] == "hooks"
    assert svc["metadata"]["labels"]["team"] == "a"
    assert svc["metadata"]["annotations"]["x"] == "y"


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ({"ports": []}, "spec.service.ports"),
        ({"ports": [{"port": 0}]}, "spec.service.ports[0].port"),
        ({"ports": [{"port": "80"}]}, "spec.service.ports[0].port"),
        ({"ports": [{"port": 80}, {"port": 81}]}, "spec.service.ports[1].name"),
        ({"ports": [{"port": 80}], "loadBalancerIP": "1.2.3.4"}, "spec.service.loadBalancerIP"),
    ],
)
def test_service_ports_the_api_server_would_refuse_are_reported_with_their_path(
    service: JSON, path: str
) -> None:
    spec = {"webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}}, "service": service}
    with pytest.raises(SpecError) as exc:
        event_source_children(event_source(spec), bus=BUS, settings=SETTINGS)
    assert path in problems_of(exc)


@pytest.mark.parametrize(("replicas", "expected"), [(None, 1), (0, 1), (-2, 1), (1, 1), (3, 3)])
def test_replicas_below_one_run_one_pod_and_sensors_run_one(replicas: int | None, expected: int) -> None:
    spec: JSON = {"webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}}}
    if replicas is not None:
        spec["replicas"] = replicas
    (deployment,) = event_source_children(event_source(spec), bus=BUS, settings=SETTINGS)
    assert deployment["spec"]["replicas"] == expected
    (sensor_deployment,) = sensor_children(sensor({"replicas": replicas}), bus=BUS, settings=SETTINGS)
    assert sensor_deployment["spec"]["replicas"] == 1  # a sensor's consumers and state have one owner


def test_the_pod_template_is_merged_into_the_pod() -> None:
    template = {
        "metadata": {"labels": {"team": "a", LABEL_EVENT_SOURCE: "spoofed"}, "annotations": {"note": "x"}},
        "serviceAccountName": "hooks-sa",
        "container": {
            "env": [{"name": "DEBUG", "value": "1"}, {"name": "SLUICE_HEALTH_PORT", "value": "9000"}],
            "resources": {"limits": {"memory": "1Gi"}},
            "volumeMounts": [{"name": "certs", "mountPath": "/certs"}],
            "imagePullPolicy": "IfNotPresent",
        },
        "volumes": [{"name": "certs", "secret": {"secretName": "certs"}}],
        "securityContext": {"runAsUser": 1000},
        "nodeSelector": {"zone": "a"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "high",
        "priority": 5,
    }
    spec = {
        "webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}},
        "template": template,
    }
    (deployment,) = event_source_children(event_source(spec), bus=BUS, settings=SETTINGS)
    pod = pod_of(deployment)
    assert pod["metadata"]["labels"] == {
        "team": "a",
        LABEL_EVENT_SOURCE: "hooks",
        LABEL_MANAGED_BY: "sluicegate",
    }
    assert pod["metadata"]["annotations"]["note"] == "x"
    ps = pod["spec"]
    assert ps["serviceAccountName"] == "hooks-sa"
    assert ps["securityContext"] == {"runAsUser": 1000}
    assert ps["nodeSelector"] == {"zone": "a"}
    assert ps["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert ps["affinity"] == {"nodeAffinity": {}}
    assert ps["imagePullSecrets"] == [{"name": "regcred"}]
    assert (ps["priorityClassName"], ps["priority"]) == ("high", 5)
    assert [v["name"] for v in ps["volumes"]] == ["tmp", "certs"]
    c = main_container(deployment)
    assert c["args"] == ["eventsource", "run", "hooks", "-n", "team"]
    assert c["resources"] == {"limits": {"memory": "1Gi"}}
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp", "/certs"]
    env = [e["name"] for e in c["env"]]
    assert env.count("SLUICE_HEALTH_PORT") == 1 and env[-1] == "DEBUG"
    assert env_of(c)["SLUICE_HEALTH_PORT"] == "9000"


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ({"container": {"args": ["sh"]}}, "spec.template.container.args"),
        ({"container": {"command": ["sh"]}}, "spec.template.container.command"),
        ({"hostNetwork": True}, "spec.template.hostNetwork"),
        ({"volumes": {"name": "x"}}, "spec.template.volumes"),
        ({"serviceAccountName": 3}, "spec.template.serviceAccountName"),
        ({"metadata": {"labels": {"a": 1}}}, "spec.template.metadata.labels.a"),
    ],
)
def test_pod_template_fields_that_cannot_apply_are_reported(template: JSON, path: str) -> None:
    spec = {
        "webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}},
        "template": template,
    }
    with pytest.raises(SpecError) as exc:
        event_source_children(event_source(spec), bus=BUS, settings=SETTINGS)
    assert path in problems_of(exc)
    with pytest.raises(SpecError) as exc:
        sensor_children(sensor({"template": template}), bus=BUS, settings=SETTINGS)
    assert path in problems_of(exc)


def test_a_webhook_on_the_pods_health_port_is_reported() -> None:
    spec = {"webhook": {"push": {"port": "8081", "endpoint": "/push", "method": "POST"}}}
    with pytest.raises(SpecError) as exc:
        event_source_children(event_source(spec), bus=BUS, settings=SETTINGS)
    assert "spec.webhook.push.port" in problems_of(exc)


@pytest.mark.parametrize(
    ("spec", "strategy"),
    [
        ({"webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}}}, "RollingUpdate"),
        ({"calendar": {"tick": {"interval": "10s"}}}, "Recreate"),
        (
            {
                "webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}},
                "calendar": {"tick": {"interval": "10s"}},
            },
            "Recreate",
        ),
    ],
)
def test_only_webhook_sources_overlap_their_old_and_new_pods(spec: JSON, strategy: str) -> None:
    (deployment,) = event_source_children(event_source(spec), bus=BUS, settings=SETTINGS)
    assert deployment["spec"]["strategy"] == {"type": strategy}


def test_building_twice_gives_the_same_children_and_a_spec_change_changes_the_hashes() -> None:
    first = event_source_children(event_source(), bus=BUS, settings=SETTINGS)
    assert event_source_children(event_source(), bus=BUS, settings=SETTINGS) == first
    changed = event_source({"webhook": {"push": {"port": "12000", "endpoint": "/pushed", "method": "POST"}}})
    second = event_source_children(changed, bus=BUS, settings=SETTINGS)
    a, b = pod_of(first[0])["metadata"]["annotations"], pod_of(second[0])["metadata"]["annotations"]
    assert a[ANNOTATION_SPEC_HASH] != b[ANNOTATION_SPEC_HASH], "the pods read their object: they must roll"
    assert decide_change(first[0], second[0]) == "patch"
    assert decide_change(first[0], copy.deepcopy(first[0])) == "none"
    moved = event_source_children(
        event_source(), bus=BusConnection("nats://elsewhere:4222"), settings=SETTINGS
    )
    assert decide_change(first[0], moved[0]) == "patch"


def test_the_corpus_webhook_event_source_builds() -> None:
    raw = normalise_api_version(yaml.safe_load((CORPUS / "event-sources" / "webhook.yaml").read_text()))
    raw["metadata"].update(namespace="team", uid="u")
    children = by_kind(event_source_children(EventSource.parse(raw), bus=BUS, settings=SETTINGS))
    assert [d["metadata"]["name"] for d in children["Deployment"]] == ["webhook-eventsource"]
    assert [p["port"] for p in children["Service"][0]["spec"]["ports"]] == [12000]


# ------------------------------------------------------------------------------------------ Sensor


def test_a_sensor_deployment_runs_sluice_sensor_run_one_pod_at_a_time() -> None:
    (deployment,) = sensor_children(sensor({"revisionHistoryLimit": 2}), bus=BUS, settings=SETTINGS)
    assert deployment["metadata"]["name"] == "on-push-sensor"
    assert deployment["metadata"]["labels"] == {LABEL_SENSOR: "on-push", LABEL_MANAGED_BY: "sluicegate"}
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "Sensor"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-s"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["revisionHistoryLimit"] == 2
    c = main_container(deployment)
    assert c["args"] == ["sensor", "run", "on-push", "-n", "team"]
    assert env_of(c)["SLUICE_EVENTBUS_URL"] == BUS.url
    assert "livenessProbe" in c


# ------------------------------------------------------------------------------------------ EventBus


def test_the_bus_of_an_object_is_its_event_bus_name_or_default() -> None:
    assert bus_name_of(event_source()) == "default"
    assert bus_name_of(sensor({"eventBusName": "fast"})) == "fast"


def test_a_jetstream_bus_runs_a_statefulset_with_its_config_a_headless_and_a_client_service() -> None:
    bus = event_bus({"jetstream": {"version": "latest"}})
    children = by_kind(event_bus_children(bus, settings=SETTINGS))
    (sts,) = children["StatefulSet"]
    (config,) = children["ConfigMap"]
    services = {s["metadata"]["name"]: s for s in children["Service"]}
    assert set(services) == {"eventbus-default-js-headless", "eventbus-default-js-svc"}
    headless = services["eventbus-default-js-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {4222, 6222, 8222}
    assert 4222 in {p["port"] for p in services["eventbus-default-js-svc"]["spec"]["ports"]}
    assert sts["metadata"]["name"] == "eventbus-default-js"
    assert sts["spec"]["serviceName"] == "eventbus-default-js-headless"
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    selector = {LABEL_EVENT_BUS: "default", LABEL_MANAGED_BY: "sluicegate"}
    assert sts["spec"]["selector"]["matchLabels"] == selector
    for svc in services.values():
        assert svc["spec"]["selector"] == selector
    (nats,) = pod_of(sts)["spec"]["containers"]
    assert nats["image"] == SETTINGS.jetstream_image == "nats:2.10-alpine"
    assert nats["args"][:2] == ["--config", "/etc/nats-config/nats.conf"]
    volumes = {v["name"]: v for v in pod_of(sts)["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    assert "emptyDir" in volumes["data"]
    conf = config["data"]["nats.conf"]
    assert "jetstream {" in conf
    routes = [line.strip() for line in conf.splitlines() if line.strip().startswith("nats://")]
    assert routes == [
        f"nats://eventbus-default-js-{i}.eventbus-default-js-headless.team.svc:6222" for i in range(3)
    ]
    for child in event_bus_children(bus, settings=SETTINGS):
        assert child["metadata"]["ownerReferences"][0]["kind"] == "EventBus"
        assert child["metadata"]["labels"] == selector
    assert bus_connection(bus).url == "nats://eventbus-default-js-svc.team.svc:4222"


def test_one_jetstream_server_forms_no_cluster_and_takes_the_buses_settings() -> None:
    bus = event_bus(
        {
            "jetstream": {
                "replicas": 1,
                "maxPayload": "4MB",
                "settings": "max_connections: 100",
                "startArgs": ["-D"],
                "containerTemplate": {"resources": {"limits": {"memory": "1Gi"}}},
                "nodeSelector": {"disk": "ssd"},
            }
        }
    )
    children = by_kind(event_bus_children(bus, settings=SETTINGS))
    conf = children["ConfigMap"][0]["data"]["nats.conf"]
    assert "cluster {" not in conf
    assert "max_payload: 4MB" in conf
    assert conf.rstrip().endswith("max_connections: 100")
    sts = children["StatefulSet"][0]
    assert sts["spec"]["replicas"] == 1
    (nats,) = pod_of(sts)["spec"]["containers"]
    assert nats["args"][-1] == "-D"
    assert nats["resources"] == {"limits": {"memory": "1Gi"}}
    assert pod_of(sts)["spec"]["nodeSelector"] == {"disk": "ssd"}


def test_persistence_becomes_volume_claims_and_adding_it_replaces_the_statefulset() -> None:
    plain = by_kind(event_bus_children(event_bus({"jetstream": {}}), settings=SETTINGS))["StatefulSet"][0]
    stored = event_bus({"jetstream": {"persistence": {"storageClassName": "fast", "volumeSize": "5Gi"}}})
    sts = by_kind(event_bus_children(stored, settings=SETTINGS))["StatefulSet"][0]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "5Gi"}},
    }
    assert "data" not in {v["name"] for v in pod_of(sts)["spec"]["volumes"]}
    assert decide_change(plain, sts) == "recreate"
    scaled = by_kind(event_bus_children(event_bus({"jetstream": {"replicas": 5}}), settings=SETTINGS))
    assert decide_change(plain, scaled["StatefulSet"][0]) == "patch"


@pytest.mark.parametrize(
    ("image", "version", "expected"),
    [
        ("nats:2.10-alpine", None, "nats:2.10-alpine"),
        ("nats:2.10-alpine", "latest", "nats:2.10-alpine"),
        ("nats:2.10-alpine", "2.10.18", "nats:2.10.18"),
        ("registry.local:5000/nats", "2.9", "registry.local:5000/nats:2.9"),
        ("registry.local:5000/nats:2.10@sha256:abc", "2.11", "registry.local:5000/nats:2.11"),
    ],
)
def test_the_bus_version_picks_a_tag_of_the_configured_image(
    image: str, version: str | None, expected: str
) -> None:
    assert jetstream_image(OperatorSettings(jetstream_image=image), version) == expected


def test_the_jetstream_image_setting_comes_from_the_environment() -> None:
    assert OperatorSettings.from_env({}).jetstream_image == "nats:2.10-alpine"
    assert (
        OperatorSettings.from_env({"SLUICE_JETSTREAM_IMAGE": "mirror/nats:2"}).jetstream_image
        == "mirror/nats:2"
    )


@pytest.mark.parametrize(
    ("jetstream", "path"),
    [
        ({"maxPayload": "lots"}, "spec.jetstream.maxPayload"),
        ({"version": "2.10; rm"}, "spec.jetstream.version"),
        ({"tls": True}, "spec.jetstream.tls"),
        ({"persistence": {"size": "1Gi"}}, "spec.jetstream.persistence.size"),
        ({"containerTemplate": {"command": ["sh"]}}, "spec.jetstream.containerTemplate.command"),
    ],
)
def test_bus_settings_the_server_could_not_take_are_reported(jetstream: JSON, path: str) -> None:
    with pytest.raises(SpecError) as exc:
        event_bus_children(event_bus({"jetstream": jetstream}), settings=SETTINGS)
    assert path in problems_of(exc)


def test_an_exotic_bus_runs_nothing_and_its_url_and_credentials_reach_the_event_pods() -> None:
    bus = event_bus(
        {
            "jetstreamExotic": {
                "url": "nats://nats.shared:4222",
                "accessSecret": {"name": "nats", "key": "token"},
            }
        }
    )
    assert event_bus_children(bus, settings=SETTINGS) == []
    connection = bus_connection(bus)
    assert connection == BusConnection("nats://nats.shared:4222", SecretKeySelector(name="nats", key="token"))
    (deployment,) = sensor_children(sensor(), bus=connection, settings=SETTINGS)
    env = env_of(main_container(deployment))
    assert env["SLUICE_EVENTBUS_URL"] == "nats://nats.shared:4222"
    assert env["SLUICE_EVENTBUS_CREDENTIALS"] == {"secretKeyRef": {"name": "nats", "key": "token"}}


# ------------------------------------------------------------------------------------------ names


def test_names_that_fit_are_kept_and_long_ones_are_cut_with_a_hash_that_keeps_them_apart() -> None:
    assert fit_name("hooks", "-eventsource") == "hooks-eventsource"
    a, b = "a" * 70 + "x", "a" * 70 + "y"
    na, nb = fit_name(a, "-eventsource"), fit_name(b, "-eventsource")
    assert na != nb
    assert len(na) <= 63 and na.endswith("-eventsource")
    assert fit_name("9lives.v2", "-eventsource-svc", letter_first=True)[0].isalpha()
    assert "." not in fit_name("9lives.v2", "-eventsource-svc", letter_first=True)
    assert label_value("short") == "short"
    assert len(label_value(a)) <= 63 and label_value(a) != label_value(b)
    long_source = event_source(name="s" * 100)
    (deployment,) = event_source_children(long_source, bus=BUS, settings=SETTINGS)
    assert len(deployment["metadata"]["name"]) <= 63
    assert len(deployment["metadata"]["labels"][LABEL_EVENT_SOURCE]) <= 63
    assert main_container(deployment)["args"][2] == "s" * 100


# ------------------------------------------------------------------------------------------ updates


def test_the_update_patch_replaces_the_spec_merges_metadata_and_keeps_the_services_allocations() -> None:
    spec = {
        "webhook": {"push": {"port": "12000", "endpoint": "/push", "method": "POST"}},
        "service": {"type": "NodePort", "ports": [{"port": 12000}]},
    }
    desired = by_kind(event_source_children(event_source(spec), bus=BUS, settings=SETTINGS))["Service"][0]
    live = copy.deepcopy(desired)
    live["metadata"].update(resourceVersion="42", labels={**live["metadata"]["labels"], "extra": "kept"})
    live["metadata"]["annotations"] = {"someone.else/note": "kept", ANNOTATION_HASH: "old"}
    live["spec"].update(clusterIP="10.0.0.7", clusterIPs=["10.0.0.7"], sessionAffinity="None")
    live["spec"]["ports"] = [{"port": 12000, "protocol": "TCP", "nodePort": 31000}]
    ops = {op["path"]: op for op in update_patch(live, desired)}
    assert ops["/metadata/resourceVersion"] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": "42",
    }
    assert ops["/metadata/labels"]["value"]["extra"] == "kept"
    annotations = ops["/metadata/annotations"]["value"]
    assert annotations["someone.else/note"] == "kept"
    assert annotations[ANNOTATION_HASH] == desired["metadata"]["annotations"][ANNOTATION_HASH]
    new_spec = ops["/spec"]["value"]
    assert new_spec["clusterIP"] == "10.0.0.7" and new_spec["clusterIPs"] == ["10.0.0.7"]
    assert new_spec["ports"] == [{"port": 12000, "nodePort": 31000}]
    assert "sessionAffinity" not in new_spec, "the builder's spec replaces the live one"


@pytest.mark.parametrize(
    ("live_annotations", "expected"),
    [
        ({"hash": "same", "immutable": "same"}, "none"),
        ({"hash": "old", "immutable": "same"}, "patch"),
        ({"hash": "same", "immutable": "old"}, "recreate"),
        ({}, "recreate"),
    ],
)
def test_decide_change_compares_the_builders_hashes_only(
    live_annotations: dict[str, str], expected: str
) -> None:
    (desired,) = sensor_children(sensor(), bus=BUS, settings=SETTINGS)
    want = desired["metadata"]["annotations"]
    names = {"hash": ANNOTATION_HASH, "immutable": "events.sluice.dev/immutable-hash"}
    live: JSON = {
        "metadata": {
            "annotations": {
                names[k]: (want[names[k]] if v == "same" else v) for k, v in live_annotations.items()
            }
        },
        # Server defaults on the live object do not count.
        "spec": {**desired["spec"], "progressDeadlineSeconds": 600},
    }
    assert decide_change(live, desired) == expected
