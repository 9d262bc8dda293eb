"""The workloads behind EventBuses, EventSources and Sensors on Kubernetes: pure builders.

Given one parsed object and the operator's settings, each builder returns the child objects that
should exist for it, as plain manifests (no I/O, no clock):

* an EventSource: a Deployment running ``sluice eventsource run NAME -n NS`` and, when
  ``spec.service`` is set, a Service in front of it (without ``spec.service`` there is none, as in
  Argo Events);
* a Sensor: a Deployment running ``sluice sensor run NAME -n NS``;
* a ``jetstream`` EventBus: a NATS JetStream StatefulSet, its server configuration (a ConfigMap), a
  headless Service that gives the servers their stable names (cluster routes) and a client Service;
  a ``jetstreamExotic`` bus points at a server run elsewhere and needs nothing.

The event pods run the operator's own image (``OperatorSettings.executor_image``) and find their bus
in ``SLUICE_EVENTBUS_URL``: the client Service of a ``jetstream`` bus, or the URL of an exotic one,
the bus being the one ``spec.eventBusName`` names (``default`` when unset). They serve ``GET /healthz``
on ``SLUICE_HEALTH_PORT`` for the liveness probe. ``spec.template`` (service account, container
overrides, volumes, scheduling, security context, pull secrets, pod labels and annotations) is
merged into the pod.

Every child is labelled with its owner (``events.sluice.dev/eventsource|sensor|eventbus``) and
``app.kubernetes.io/managed-by: sluicegate``, owned by the object (``ownerReferences``, controller),
and named deterministically, so a reconcile that runs twice finds what the first one made. Two
annotations let the reconciler (:mod:`engine.runtime.kubernetes.eventcontroller`) decide what to do
without comparing server-defaulted fields: ``events.sluice.dev/hash`` (everything the builder sets:
different means patch) and ``events.sluice.dev/immutable-hash`` (fields the API server refuses to
change, such as a StatefulSet's volume claims: different means delete and create again). Pod templates
carry a hash of the object's spec, so any change of the spec rolls the pods, which read their object
when they start.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import Problem, SpecError
from engine.runtime.kubernetes.settings import OperatorSettings
from engine.spec.crd import GROUP, VERSION
from engine.spec.events import EventBus, EventSource, JetStreamBus, SecretKeySelector, Sensor

JSON = dict[str, Any]

LABEL_EVENT_SOURCE = f"events.{GROUP}/eventsource"
LABEL_SENSOR = f"events.{GROUP}/sensor"
LABEL_EVENT_BUS = f"events.{GROUP}/eventbus"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "sluicegate"
ANNOTATION_HASH = f"events.{GROUP}/hash"
ANNOTATION_IMMUTABLE_HASH = f"events.{GROUP}/immutable-hash"
ANNOTATION_SPEC_HASH = f"events.{GROUP}/spec-hash"

DEFAULT_EVENT_BUS = "default"
ENV_EVENTBUS_URL = "SLUICE_EVENTBUS_URL"
# The value of the exotic bus's accessSecret key, resolved by the kubelet (the operator reads no Secret).
ENV_EVENTBUS_CREDENTIALS = "SLUICE_EVENTBUS_CREDENTIALS"
ENV_HEALTH_PORT = "SLUICE_HEALTH_PORT"
HEALTH_PORT = 8081
HEALTH_PATH = "/healthz"

JETSTREAM_CLIENT_PORT = 4222
JETSTREAM_CLUSTER_PORT = 6222
JETSTREAM_MONITOR_PORT = 8222
JETSTREAM_DEFAULT_REPLICAS = 3
JETSTREAM_DEFAULT_VOLUME_SIZE = "20Gi"
JETSTREAM_CONFIG_KEY = "nats.conf"
JETSTREAM_CONFIG_DIR = "/etc/nats-config"
JETSTREAM_STORE_DIR = "/data/jetstream"

# The apiVersion and plural of each kind of child, for the reconciler's URLs.
CHILD_RESOURCES: dict[str, tuple[str, str, str]] = {
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "Service": ("", "v1", "services"),
    "ConfigMap": ("", "v1", "configmaps"),
}
EVENT_SOURCE_CHILD_KINDS = ("Deployment", "Service")
SENSOR_CHILD_KINDS = ("Deployment",)
EVENT_BUS_CHILD_KINDS = ("StatefulSet", "Service", "ConfigMap")

# What Argo Events' pod template holds; anything else in spec.template is reported, not dropped.
_TEMPLATE_KEYS = (
    "metadata",
    "serviceAccountName",
    "container",
    "volumes",
    "securityContext",
    "affinity",
    "tolerations",
    "nodeSelector",
    "imagePullSecrets",
    "priorityClassName",
    "priority",
)
# Template keys copied onto the pod spec as they are, with the JSON type each must have.
_POD_FIELDS: tuple[tuple[str, type], ...] = (
    ("serviceAccountName", str),
    ("securityContext", dict),
    ("affinity", dict),
    ("tolerations", list),
    ("nodeSelector", dict),
    ("imagePullSecrets", list),
    ("priorityClassName", str),
    ("priority", int),
)
# A container override may not change what runs: that is the operator's part.
_FIXED_CONTAINER_KEYS = ("command", "args")
_SERVICE_KEYS = ("ports", "clusterIP", "type", "metadata")
_SIZE = re.compile(r"^[0-9]+([KkMmGgTt][Bb]?)?$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")

# The defaults of the event pods: the operator's own security posture (the image runs as 65532).
_POD_SECURITY: JSON = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CONTAINER_SECURITY: JSON = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
_RESOURCES: JSON = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

Change = Literal["none", "patch", "recreate"]


# ------------------------------------------------------------------------------------------ the bus


@dataclass(frozen=True, slots=True)
class BusConnection:
    """How event pods reach their bus: its URL, and for an exotic bus the Secret key holding access."""

    url: str
    credentials: SecretKeySelector | None = None


def bus_name_of(obj: EventSource | Sensor) -> str:
    """The EventBus an EventSource or Sensor uses: ``spec.eventBusName``, else ``default``."""
    return obj.spec.event_bus_name or DEFAULT_EVENT_BUS


def bus_connection(bus: EventBus) -> BusConnection:
    """Where a (valid) EventBus's clients connect: the client Service of a ``jetstream`` bus, in the
    bus's namespace, or the URL of a ``jetstreamExotic`` one."""
    exotic = bus.spec.jetstream_exotic
    if exotic is not None:
        return BusConnection(exotic.url, exotic.access_secret)
    if bus.spec.jetstream is None:
        raise SpecError([Problem("spec", "needs jetstream or jetstreamExotic")])
    name, namespace = _identity(bus)
    return BusConnection(f"nats://{jetstream_client_service(name)}.{namespace}.svc:{JETSTREAM_CLIENT_PORT}")


# ------------------------------------------------------------------------------------------ names


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def fit_name(base: str, suffix: str = "", *, limit: int = 63, letter_first: bool = False) -> str:
    """``base + suffix`` as a DNS label (lowercase alphanumerics and ``-``, at most ``limit`` long,
    ``letter_first`` for Service names): unchanged when it already is one, otherwise cleaned and, when
    shortened, given a hash of the original so that two long names do not meet."""
    full = base + suffix
    clean = _NOT_LABEL.sub("-", full.lower()).strip("-")
    if letter_first and not clean[:1].isalpha():
        clean = f"x-{clean}"
    if clean == full and len(full) <= limit:
        return full
    tag = _short_hash(full)
    keep = max(1, limit - len(suffix) - len(tag) - 1)
    head = _NOT_LABEL.sub("-", base.lower()).strip("-")
    if letter_first and not head[:1].isalpha():
        head = f"x-{head}"
    cleaned_suffix = _NOT_LABEL.sub("-", suffix.lower())
    name = f"{head[:keep].rstrip('-')}-{tag}{cleaned_suffix}"
    return name[:limit].rstrip("-")


def label_value(name: str) -> str:
    """An object name as a label value (at most 63 characters; longer names keep a hash)."""
    if len(name) <= 63:
        return name
    return f"{name[:54].rstrip('.-_')}-{_short_hash(name)}"


def event_source_deployment(name: str) -> str:
    return fit_name(name, "-eventsource")


def event_source_service(name: str) -> str:
    return fit_name(name, "-eventsource-svc", letter_first=True)


def sensor_deployment(name: str) -> str:
    return fit_name(name, "-sensor")


def jetstream_statefulset(bus: str) -> str:
    # Pods add "-<ordinal>" and the controller a revision hash label "<name>-<10 chars>": stay under 52.
    return fit_name(f"eventbus-{bus}", "-js", limit=52)


def jetstream_headless_service(bus: str) -> str:
    return fit_name(f"eventbus-{bus}", "-js-headless", letter_first=True)


def jetstream_client_service(bus: str) -> str:
    return fit_name(f"eventbus-{bus}", "-js-svc", letter_first=True)


def jetstream_config_map(bus: str) -> str:
    return fit_name(f"eventbus-{bus}", "-js-config")


def owner_selector(label: str, name: str) -> str:
    """The label selector of every child of the object ``name`` of the kind ``label`` stands for."""
    return f"{label}={label_value(name)},{LABEL_MANAGED_BY}={MANAGED_BY}"


# ------------------------------------------------------------------------------------------ hashes


def stable_hash(value: Any) -> str:
    """A hash of a JSON value that does not depend on key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _immutable_part(obj: Mapping[str, Any]) -> JSON | None:
    """The fields of a child the API server will not change in place; None when there are none."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    keys: tuple[str, ...]
    if kind == "StatefulSet":
        keys = ("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates")
    elif kind == "Deployment":
        keys = ("selector",)
    elif kind == "Service":
        keys = ("clusterIP",)
    else:
        return None
    return {k: spec.get(k) for k in keys}


def _sealed(obj: JSON) -> JSON:
    """``obj`` with its hash annotations set (computed over everything else the builder wrote)."""
    annotations = obj["metadata"].setdefault("annotations", {})
    annotations.pop(ANNOTATION_HASH, None)
    annotations.pop(ANNOTATION_IMMUTABLE_HASH, None)
    immutable = _immutable_part(obj)
    if immutable is not None:
        annotations[ANNOTATION_IMMUTABLE_HASH] = stable_hash(immutable)
    annotations[ANNOTATION_HASH] = stable_hash(obj)
    return obj


def decide_change(live: Mapping[str, Any], desired: Mapping[str, Any]) -> Change:
    """What brings ``live`` to ``desired``: nothing, a patch, or (an immutable field differs) a new
    object in its place. Compares the builder's hashes only: the live object's server-filled defaults
    never count as a difference."""
    have = (live.get("metadata") or {}).get("annotations") or {}
    want = (desired.get("metadata") or {}).get("annotations") or {}
    if have.get(ANNOTATION_IMMUTABLE_HASH) != want.get(ANNOTATION_IMMUTABLE_HASH):
        return "recreate"
    if have.get(ANNOTATION_HASH) != want.get(ANNOTATION_HASH):
        return "patch"
    return "none"


def update_patch(live: Mapping[str, Any], desired: Mapping[str, Any]) -> list[JSON]:
    """A JSON patch (RFC 6902) that makes ``live`` what ``desired`` says, guarded by the live object's
    resourceVersion (a concurrent writer makes it fail with 422 instead of being overwritten).

    The builder's parts (``spec``, or ``data``) are replaced whole, so a field the object no longer
    sets goes away; labels and annotations are merged over the live ones, which others write too (the
    Deployment controller's revision). A Service keeps the addresses and node ports the server gave it.
    """
    meta = live.get("metadata") or {}
    want_meta = desired.get("metadata") or {}
    ops: list[JSON] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
        {
            "op": "add",
            "path": "/metadata/labels",
            "value": {**(meta.get("labels") or {}), **want_meta["labels"]},
        },
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {**(meta.get("annotations") or {}), **(want_meta.get("annotations") or {})},
        },
        {"op": "add", "path": "/metadata/ownerReferences", "value": want_meta.get("ownerReferences") or []},
    ]
    for part in ("spec", "data"):
        if part in desired:
            value = desired[part]
            if desired.get("kind") == "Service" and part == "spec":
                value = _keep_allocations(live.get("spec") or {}, value)
            ops.append({"op": "add", "path": f"/{part}", "value": value})
    return ops


def _keep_allocations(live: Mapping[str, Any], desired: Mapping[str, Any]) -> JSON:
    out = dict(desired)
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if key not in out and key in live:
            out[key] = live[key]
    live_ports = {(p.get("port"), p.get("protocol") or "TCP"): p for p in live.get("ports") or ()}
    # Node ports exist only on these types; a Service changed to ClusterIP must not keep them.
    node_ports = out.get("type") in ("NodePort", "LoadBalancer")
    ports = []
    for port in out.get("ports") or ():
        have = live_ports.get((port.get("port"), port.get("protocol") or "TCP"))
        if node_ports and have is not None and "nodePort" not in port and "nodePort" in have:
            port = {**port, "nodePort": have["nodePort"]}
        ports.append(port)
    if ports:
        out["ports"] = ports
    return out


# ------------------------------------------------------------------------------------------ pieces


def _identity(obj: EventSource | Sensor | EventBus) -> tuple[str, str]:
    meta = obj.metadata
    if not meta.name or not meta.namespace:
        raise SpecError([Problem("metadata", "a stored object has a name and a namespace")])
    return meta.name, meta.namespace


def owner_reference(obj: EventSource | Sensor | EventBus) -> JSON:
    """The reference that makes a child belong to ``obj`` (the garbage collector deletes it with ``obj``)."""
    name, _ = _identity(obj)
    if not obj.metadata.uid:
        raise SpecError([Problem("metadata.uid", "a stored object has a uid")])
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": obj.kind,
        "name": name,
        "uid": obj.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(name: str, namespace: str, labels: Mapping[str, str], owner: JSON) -> JSON:
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "annotations": {},
        "ownerReferences": [owner],
    }


def _replicas(value: int | None, default: int = 1) -> int:
    # Argo Events coerces anything below one to one.
    if value is None:
        return default
    return max(1, value)


def _expect(value: Any, kind: type, path: str, problems: list[Problem]) -> bool:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer"}
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return True
    problems.append(Problem(path, f"must be {names.get(kind, kind.__name__)}"))
    return False


def _string_map(value: Any, path: str, problems: list[Problem]) -> dict[str, str]:
    if value is None:
        return {}
    if not _expect(value, dict, path, problems):
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            problems.append(Problem(f"{path}.{k}", "must be a string"))
        else:
            out[str(k)] = v
    return out


def _merge_env(ours: Sequence[JSON], theirs: Sequence[Any]) -> list[JSON]:
    """Our variables, then the template's; a template variable of the same name takes our one's place."""
    theirs_by_name = {str(e.get("name")): e for e in theirs if isinstance(e, dict)}
    merged = [theirs_by_name.pop(str(e["name"]), e) for e in ours]
    return merged + [e for e in theirs if isinstance(e, dict) and str(e.get("name")) in theirs_by_name]


def _merge_container(ours: JSON, override: Any, path: str, problems: list[Problem]) -> JSON:
    if override is None:
        return ours
    if not _expect(override, dict, path, problems):
        return ours
    out = dict(ours)
    for key, value in override.items():
        if key == "name":
            continue  # the operator's container keeps its name
        if key in _FIXED_CONTAINER_KEYS:
            problems.append(Problem(f"{path}.{key}", "is set by the operator (the container runs sluice)"))
        elif key == "env":
            if _expect(value, list, f"{path}.env", problems):
                out["env"] = _merge_env(ours.get("env") or [], value)
        elif key in ("volumeMounts", "ports", "envFrom"):
            if _expect(value, list, f"{path}.{key}", problems):
                out[key] = [*(ours.get(key) or []), *value]
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class _Pod:
    """A pod template built from an object's ``spec.template`` around one container of ours."""

    metadata: JSON
    spec: JSON


def _pod_template(
    template: Mapping[str, Any] | None,
    container: JSON,
    selector: Mapping[str, str],
    spec_hash: str,
    problems: list[Problem],
    *,
    defaults: Mapping[str, Any],
    base_volumes: Sequence[JSON] = (),
) -> _Pod:
    tpl = dict(template or {})
    for key in tpl:
        if key not in _TEMPLATE_KEYS:
            problems.append(Problem(f"spec.template.{key}", "unknown pod template field"))
    meta = tpl.get("metadata") or {}
    if not _expect(meta, dict, "spec.template.metadata", problems):
        meta = {}
    labels = {**_string_map(meta.get("labels"), "spec.template.metadata.labels", problems), **selector}
    annotations = {
        **_string_map(meta.get("annotations"), "spec.template.metadata.annotations", problems),
        ANNOTATION_SPEC_HASH: spec_hash,
    }
    spec: JSON = dict(defaults)
    spec["containers"] = [
        _merge_container(container, tpl.get("container"), "spec.template.container", problems)
    ]
    volumes = list(base_volumes)
    if "volumes" in tpl and _expect(tpl["volumes"], list, "spec.template.volumes", problems):
        volumes += tpl["volumes"]
    if volumes:
        spec["volumes"] = volumes
    for key, kind in _POD_FIELDS:
        if key in tpl and _expect(tpl[key], kind, f"spec.template.{key}", problems):
            spec[key] = tpl[key]
    return _Pod({"labels": labels, "annotations": annotations}, spec)


def _event_container(
    role: Literal["eventsource", "sensor"],
    name: str,
    namespace: str,
    bus: BusConnection,
    settings: OperatorSettings,
    ports: Sequence[int] = (),
) -> JSON:
    env: list[JSON] = [
        {"name": ENV_EVENTBUS_URL, "value": bus.url},
        {"name": ENV_HEALTH_PORT, "value": str(HEALTH_PORT)},
    ]
    if bus.credentials is not None and bus.credentials.name:
        ref = {"name": bus.credentials.name, "key": bus.credentials.key}
        env.append({"name": ENV_EVENTBUS_CREDENTIALS, "valueFrom": {"secretKeyRef": ref}})
    container: JSON = {
        "name": "main",
        "image": settings.executor_image,
        "command": ["sluice"],
        "args": [role, "run", name, "-n", namespace],
        "env": env,
        "ports": [
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            *({"containerPort": p, "protocol": "TCP"} for p in ports),
        ],
        "livenessProbe": {
            "httpGet": {"path": HEALTH_PATH, "port": "health"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # Ready once the bus is connected and the sources listen, so a Service routes no webhook early.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
        },
        "resources": _RESOURCES,
        "securityContext": _CONTAINER_SECURITY,
        # The root filesystem is read-only; Python still wants a temporary directory.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if settings.executor_image_pull_policy:
        container["imagePullPolicy"] = settings.executor_image_pull_policy
    return container


def _deployment(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: JSON,
    replicas: int,
    pod: _Pod,
    strategy: str,
    revision_history_limit: int | None = None,
) -> JSON:
    spec: JSON = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(labels)},
        "strategy": {"type": strategy},
        "template": {"metadata": pod.metadata, "spec": pod.spec},
    }
    if revision_history_limit is not None:
        spec["revisionHistoryLimit"] = revision_history_limit
    return _sealed(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(name, namespace, labels, owner),
            "spec": spec,
        }
    )


def _fail(problems: list[Problem]) -> None:
    if problems:
        raise SpecError(problems)


# ------------------------------------------------------------------------------------------ EventSource


def _service_ports(raw: Any, problems: list[Problem]) -> list[JSON]:
    if not _expect(raw, list, "spec.service.ports", problems):
        return []
    if not raw:
        problems.append(Problem("spec.service.ports", "needs at least one port"))
    ports: list[JSON] = []
    for i, port in enumerate(raw):
        path = f"spec.service.ports[{i}]"
        if not _expect(port, dict, path, problems):
            continue
        number = port.get("port")
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            problems.append(Problem(f"{path}.port", "must be a port number (1-65535)"))
        if len(raw) > 1 and not port.get("name"):
            problems.append(Problem(f"{path}.name", "is required when the Service has several ports"))
        ports.append(dict(port))
    return ports


def _event_source_service(
    source: EventSource, labels: Mapping[str, str], owner: JSON, problems: list[Problem]
) -> JSON | None:
    raw = source.spec.service
    if raw is None:
        return None
    name, namespace = _identity(source)
    for key in raw:
        if key not in _SERVICE_KEYS:
            problems.append(Problem(f"spec.service.{key}", "unknown service field"))
    spec: JSON = {"selector": dict(labels), "ports": _service_ports(raw.get("ports"), problems)}
    for key in ("clusterIP", "type"):
        if key in raw and _expect(raw[key], str, f"spec.service.{key}", problems):
            spec[key] = raw[key]
    meta = raw.get("metadata") or {}
    if not _expect(meta, dict, "spec.service.metadata", problems):
        meta = {}
    metadata = _metadata(event_source_service(name), namespace, labels, owner)
    metadata["labels"] = {
        **_string_map(meta.get("labels"), "spec.service.metadata.labels", problems),
        **labels,
    }
    metadata["annotations"] = _string_map(
        meta.get("annotations"), "spec.service.metadata.annotations", problems
    )
    return _sealed({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec})


def event_source_children(
    source: EventSource, *, bus: BusConnection, settings: OperatorSettings
) -> list[JSON]:
    """The Deployment (and, with ``spec.service``, the Service) of a validated EventSource.

    Raises :class:`SpecError` for what only the workloads can tell: an unknown or mistyped pod template
    field, a container override of what runs, a webhook on the pods' health port, Service ports that
    the API server would refuse."""
    name, namespace = _identity(source)
    problems: list[Problem] = []
    labels = {LABEL_EVENT_SOURCE: label_value(name), LABEL_MANAGED_BY: MANAGED_BY}
    owner = owner_reference(source)
    webhook_ports = sorted({int(h.port) for h in source.spec.webhook.values() if h.port.isdigit()})
    for event, hook in source.spec.webhook.items():
        if hook.port == str(HEALTH_PORT):
            problems.append(
                Problem(f"spec.webhook.{event}.port", f"{HEALTH_PORT} is the event pod's own health port")
            )
    container = _event_container("eventsource", name, namespace, bus, settings, webhook_ports)
    pod = _pod_template(
        source.spec.template,
        container,
        labels,
        stable_hash(source.spec.dump()),
        problems,
        defaults={"securityContext": _POD_SECURITY},
        base_volumes=[{"name": "tmp", "emptyDir": {}}],
    )
    # Webhook servers answer side by side during a rolling update; a schedule or a bucket listener
    # would fire twice, so those stop before their replacement starts.
    only_webhooks = not (source.spec.calendar or source.spec.minio)
    children = [
        _deployment(
            name=event_source_deployment(name),
            namespace=namespace,
            labels=labels,
            owner=owner,
            replicas=_replicas(source.spec.replicas),
            pod=pod,
            strategy="RollingUpdate" if only_webhooks else "Recreate",
        )
    ]
    service = _event_source_service(source, labels, owner, problems)
    _fail(problems)
    if service is not None:
        children.append(service)
    return children


# ------------------------------------------------------------------------------------------ Sensor


def sensor_children(sensor: Sensor, *, bus: BusConnection, settings: OperatorSettings) -> list[JSON]:
    """The Deployment of a validated Sensor (one active pod at a time: it is stopped before its
    replacement starts, so two never act on the same trigger state)."""
    name, namespace = _identity(sensor)
    problems: list[Problem] = []
    labels = {LABEL_SENSOR: label_value(name), LABEL_MANAGED_BY: MANAGED_BY}
    container = _event_container("sensor", name, namespace, bus, settings)
    pod = _pod_template(
        sensor.spec.template,
        container,
        labels,
        stable_hash(sensor.spec.dump()),
        problems,
        defaults={"securityContext": _POD_SECURITY},
        base_volumes=[{"name": "tmp", "emptyDir": {}}],
    )
    limit = sensor.spec.revision_history_limit
    if limit is not None and limit < 0:
        problems.append(Problem("spec.revisionHistoryLimit", "must not be negative"))
    _fail(problems)
    return [
        _deployment(
            name=sensor_deployment(name),
            namespace=namespace,
            labels=labels,
            owner=owner_reference(sensor),
            # One pod per sensor: its triggers' consumers and stored state have a single owner, and
            # without leader election a second replica would overwrite the first one's state.
            replicas=1,
            pod=pod,
            strategy="Recreate",
            revision_history_limit=limit,
        )
    ]


# ------------------------------------------------------------------------------------------ EventBus


def jetstream_image(settings: OperatorSettings, version: str | None) -> str:
    """The server image: the setting's, or with ``version`` the same repository at that tag."""
    image = settings.jetstream_image
    if not version or version == "latest":
        return image
    image = image.split("@")[0]  # a digest pins one image: another tag cannot keep it
    slash = image.rfind("/")
    colon = image.rfind(":")
    repository = image[:colon] if colon > slash else image
    return f"{repository}:{version}"


def jetstream_config(bus: str, namespace: str, js: JetStreamBus, replicas: int) -> str:
    """The nats-server configuration file of a ``jetstream`` bus (its ``settings`` appended last)."""
    lines = [
        f"# The JetStream server of EventBus {bus}, written by the Sluicegate operator: edit the EventBus.",
        "server_name: $POD_NAME",
        f"port: {JETSTREAM_CLIENT_PORT}",
        f"http_port: {JETSTREAM_MONITOR_PORT}",
    ]
    if js.max_payload:
        lines.append(f"max_payload: {js.max_payload}")
    lines += ["jetstream {", f"  store_dir: {JETSTREAM_STORE_DIR}", "}"]
    if replicas > 1:
        sts, headless = jetstream_statefulset(bus), jetstream_headless_service(bus)
        routes = [
            f"    nats://{sts}-{i}.{headless}.{namespace}.svc:{JETSTREAM_CLUSTER_PORT}"
            for i in range(replicas)
        ]
        lines += [
            "cluster {",
            f"  name: {fit_name(bus)}",
            f"  port: {JETSTREAM_CLUSTER_PORT}",
            "  routes: [",
            *routes,
            "  ]",
            "}",
        ]
    if js.settings:
        lines += ["# spec.jetstream.settings", js.settings.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _volume_claim(persistence: Mapping[str, Any], problems: list[Problem]) -> JSON:
    path = "spec.jetstream.persistence"
    for key in persistence:
        if key not in ("storageClassName", "accessMode", "volumeSize"):
            problems.append(Problem(f"{path}.{key}", "unknown persistence field"))
    spec: JSON = {
        "accessModes": [str(persistence.get("accessMode") or "ReadWriteOnce")],
        "resources": {
            "requests": {"storage": str(persistence.get("volumeSize") or JETSTREAM_DEFAULT_VOLUME_SIZE)}
        },
    }
    if persistence.get("storageClassName"):
        spec["storageClassName"] = str(persistence["storageClassName"])
    return {"metadata": {"name": "data"}, "spec": spec}


def _jetstream_pod(
    bus: EventBus,
    js: JetStreamBus,
    labels: Mapping[str, str],
    settings: OperatorSettings,
    problems: list[Problem],
) -> _Pod:
    name, _ = _identity(bus)
    container: JSON = {
        "name": "nats",
        "image": jetstream_image(settings, js.version),
        "command": ["nats-server"],
        "args": ["--config", f"{JETSTREAM_CONFIG_DIR}/{JETSTREAM_CONFIG_KEY}", *js.start_args],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            {"name": "client", "containerPort": JETSTREAM_CLIENT_PORT, "protocol": "TCP"},
            {"name": "cluster", "containerPort": JETSTREAM_CLUSTER_PORT, "protocol": "TCP"},
            {"name": "monitor", "containerPort": JETSTREAM_MONITOR_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"},
            "initialDelaySeconds": 10,
            "periodSeconds": 30,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": JETSTREAM_CONFIG_DIR},
            {"name": "data", "mountPath": JETSTREAM_STORE_DIR},
        ],
    }
    container = _merge_container(
        container, js.container_template, "spec.jetstream.containerTemplate", problems
    )
    meta = js.metadata or {}
    pod_labels = {**_string_map(meta.get("labels"), "spec.jetstream.metadata.labels", problems), **labels}
    annotations = {
        **_string_map(meta.get("annotations"), "spec.jetstream.metadata.annotations", problems),
        ANNOTATION_SPEC_HASH: stable_hash(bus.spec.dump()),
    }
    volumes: list[JSON] = [{"name": "config", "configMap": {"name": jetstream_config_map(name)}}]
    if js.persistence is None:
        volumes.append({"name": "data", "emptyDir": {}})
    spec: JSON = {"containers": [container], "volumes": volumes}
    fields: dict[str, Any] = {
        "nodeSelector": js.node_selector or None,
        "tolerations": list(js.tolerations) or None,
        "securityContext": js.security_context,
        "imagePullSecrets": list(js.image_pull_secrets) or None,
        "priorityClassName": js.priority_class_name,
        "priority": js.priority,
        "affinity": js.affinity,
        "serviceAccountName": js.service_account_name,
    }
    spec.update({k: v for k, v in fields.items() if v is not None})
    return _Pod({"labels": pod_labels, "annotations": annotations}, spec)


def event_bus_children(bus: EventBus, *, settings: OperatorSettings) -> list[JSON]:
    """What a validated EventBus runs: for ``jetstream`` the server's StatefulSet, ConfigMap, headless
    Service (stable names for the cluster routes, addresses published before the servers are ready so
    they can find each other) and client Service; for ``jetstreamExotic`` nothing."""
    js = bus.spec.jetstream
    if js is None:
        return []
    name, namespace = _identity(bus)
    problems: list[Problem] = []
    if js.max_payload and not _SIZE.match(js.max_payload):
        problems.append(
            Problem("spec.jetstream.maxPayload", f"expected a size such as 1MB, not {js.max_payload!r}")
        )
    if js.version and js.version != "latest" and not _IMAGE_TAG.match(js.version):
        problems.append(Problem("spec.jetstream.version", f"not an image tag: {js.version!r}"))
    if js.tls:
        problems.append(Problem("spec.jetstream.tls", "unsupported: the operator runs JetStream without TLS"))
    replicas = _replicas(js.replicas, JETSTREAM_DEFAULT_REPLICAS)
    labels = {LABEL_EVENT_BUS: label_value(name), LABEL_MANAGED_BY: MANAGED_BY}
    owner = owner_reference(bus)
    claims: list[JSON] = []
    if js.persistence is not None and _expect(js.persistence, dict, "spec.jetstream.persistence", problems):
        claims.append(_volume_claim(js.persistence, problems))
    pod = _jetstream_pod(bus, js, labels, settings, problems)
    _fail(problems)
    headless = jetstream_headless_service(name)
    sts_spec: JSON = {
        "replicas": replicas,
        "serviceName": headless,
        # The servers of a cluster must all be up to form it: start them together, not one by one.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": pod.metadata, "spec": pod.spec},
    }
    if claims:
        sts_spec["volumeClaimTemplates"] = claims
    client_port = {"name": "client", "port": JETSTREAM_CLIENT_PORT, "targetPort": "client", "protocol": "TCP"}
    monitor_port = {
        "name": "monitor",
        "port": JETSTREAM_MONITOR_PORT,
        "targetPort": "monitor",
        "protocol": "TCP",
    }
    cluster_port = {
        "name": "cluster",
        "port": JETSTREAM_CLUSTER_PORT,
        "targetPort": "cluster",
        "protocol": "TCP",
    }
    config = jetstream_config(name, namespace, js, replicas)
    return [
        _sealed(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _metadata(jetstream_config_map(name), namespace, labels, owner),
                "data": {JETSTREAM_CONFIG_KEY: config},
            }
        ),
        _sealed(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _metadata(headless, namespace, labels, owner),
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": True,
                    "selector": dict(labels),
                    "ports": [client_port, cluster_port, monitor_port],
                },
            }
        ),
        _sealed(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _metadata(jetstream_client_service(name), namespace, labels, owner),
                "spec": {"selector": dict(labels), "ports": [client_port, monitor_port]},
            }
        ),
        _sealed(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": _metadata(jetstream_statefulset(name), namespace, labels, owner),
                "spec": sts_spec,
            }
        ),
    ]


__all__ = [
    "ANNOTATION_HASH",
    "ANNOTATION_IMMUTABLE_HASH",
    "ANNOTATION_SPEC_HASH",
    "CHILD_RESOURCES",
    "DEFAULT_EVENT_BUS",
    "ENV_EVENTBUS_URL",
    "EVENT_BUS_CHILD_KINDS",
    "EVENT_SOURCE_CHILD_KINDS",
    "LABEL_EVENT_BUS",
    "LABEL_EVENT_SOURCE",
    "LABEL_MANAGED_BY",
    "LABEL_SENSOR",
    "MANAGED_BY",
    "SENSOR_CHILD_KINDS",
    "BusConnection",
    "Change",
    "bus_connection",
    "bus_name_of",
    "decide_change",
    "event_bus_children",
    "event_source_children",
    "owner_reference",
    "owner_selector",
    "sensor_children",
    "stable_hash",
    "update_patch",
]
