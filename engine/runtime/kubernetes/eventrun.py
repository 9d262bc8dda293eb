"""The processes inside the event Deployments: ``sluice eventsource run`` and ``sluice sensor run``.

On a cluster the operator runs one Deployment per EventSource and per Sensor
(:mod:`engine.runtime.kubernetes.eventworkloads`); its container runs ``sluice eventsource run NAME -n
NS`` or ``sluice sensor run NAME -n NS``, which ``engine.cli.main`` hands to :func:`run_event_source`
and :func:`run_sensor`. Each one:

1. reads its object from the API server, parses and validates it
   (:func:`engine.events.validate.validate_event_object`): an invalid object ends the process at once
   with one line naming the field (exit code 2 through the CLI), a missing one with exit code 1;
2. connects to the JetStream bus of ``SLUICE_EVENTBUS_URL`` (:class:`~engine.runtime.jetstream.
   JetStreamBus`), trying again with a growing delay while it does not answer (a bus created together
   with its users comes up after them);
3. runs what the object describes until SIGTERM or SIGINT, then stops it and closes the bus (exit 0):

   * an EventSource: its webhook endpoints on ``0.0.0.0`` at the spec's ports (one
     :class:`~engine.events.sources.webhook.WebhookServer`), a task per calendar and per ``minio`` (S3)
     event; the sources' cursors live in the bus's key-value store (bucket ``sources``, as under
     ``sluice server``) and their Secrets are read from the API server in the object's namespace;
   * a Sensor: a :class:`~engine.runtime.sensors.SensorRunner` whose ``k8s`` and ``argoWorkflow``
     actions go to the API server (:class:`ClusterObjectActions`).

Changes of the object. Under the operator a changed spec rolls the pod (its template carries a hash of
the spec), so the next process reads the new one. Besides that, the process reads its object again
every ``recheck`` seconds (30 by default): a changed spec is applied in place (the sources or the
runner restarted with it, as ``sluice server`` reloads), an invalid change is logged and the running
spec kept (the operator leaves an invalid object's workloads alone too), and a deleted object stops
what runs. This keeps a process run by hand, or one whose operator is away, in step with its object.
A GET per interval rather than a watch: there is no stream to keep alive, and the pod needs only
``get`` on its own kind. A Sensor that is gone for good (found missing at a recheck, or when the pod
is stopped) also has its durable consumers and trigger state deleted from the bus, as ``sluice
server`` does, so that a Sensor created later under the same name does not resume from them.

Health. With ``SLUICE_HEALTH_PORT`` set (the operator sets it), ``GET /healthz`` answers 200 while the
process runs (the liveness probe), and ``GET /readyz`` answers 200 once the bus is connected and what
the object describes has started (for an EventSource: every webhook port is listening), 503 with the
reason before that.

Bus credentials. ``SLUICE_EVENTBUS_CREDENTIALS`` (the value of an exotic bus's ``accessSecret`` key,
set by the operator) is read as a YAML mapping with ``username`` and ``password`` or with ``token``,
as the contents of a NATS ``.creds`` file, or else as a token.

Tests and hand runs: ``SLUICE_WEBHOOK_PORTS`` (``SPEC_PORT=PORT`` pairs separated by commas or spaces,
``0`` for a free port), or the CLI's ``--webhook-port``, binds a spec port elsewhere, as ``sluice
server --webhook-port`` does.

Lookups of ConfigMaps and Secrets (trigger sources, secure headers, webhook and S3 secrets) are single
GETs made when needed, through the synchronous ports the sources and the runner call. A trigger's
source (ConfigMap key, file, URL, S3 object, file of a git repository) is read by
:mod:`engine.runtime.triggersource`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import signal
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from aiohttp import web

from engine.errors import Problem, SluiceError, SpecError, StateError
from engine.events.actions import (
    ANNOTATION_EVENT_IDS,
    ANNOTATION_FIRING,
    ActionError,
    ObjectAction,
    deep_merge,
    name_suffix,
)
from engine.events.sensor import Firing, compile_sensor
from engine.events.sources.calendar import CalendarSource
from engine.events.sources.s3 import S3Source
from engine.events.sources.webhook import WebhookServer
from engine.events.validate import validate_event_object
from engine.runtime import s3 as s3client
from engine.runtime.base import EventBus
from engine.runtime.jetstream import JetStreamBus
from engine.runtime.kubernetes.api import (
    JSON_PATCH,
    MERGE_PATCH,
    Api,
    ApiError,
    AsyncApi,
    TokenBucket,
    load_client,
    path_of,
)
from engine.runtime.kubernetes.controller import ANNOTATION_RESUME, ANNOTATION_RETRY
from engine.runtime.kubernetes.pods import LABEL_INSTANCE
from engine.runtime.sensors import SensorRunner, consumer_name, state_bucket
from engine.runtime.triggersource import TriggerSources
from engine.spec.crd import GROUP, KINDS, VERSION
from engine.spec.events import EventSource, Sensor, TriggerTemplate
from engine.spec.loader import normalise_api_version
from engine.spec.workflow import API_VERSION, CronWorkflow, Workflow
from engine.workflows.status import WF_COMPLETED

log = logging.getLogger(__name__)

JSON = dict[str, Any]

ENV_WEBHOOK_PORTS = "SLUICE_WEBHOOK_PORTS"
RECHECK_SECONDS = 30.0
CURSOR_BUCKET = "sources"
ALL_INTERFACES = "0.0.0.0"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "sluicegate-sensor"
# One process acts for one object: the operator's default budget is plenty.
# A sensor makes about one API request per firing; the operator's 20/s would cap it at 20 workflows a
# second. SLUICE_API_QPS / SLUICE_API_BURST set it, as they do for the operator.
CLIENT_QPS = float(os.environ.get("SLUICE_API_QPS") or 500.0)
CLIENT_BURST = int(os.environ.get("SLUICE_API_BURST") or 1000)
API_WORKERS = 4
LOOKUP_TIMEOUT = 10.0
# Connecting to the bus: 1, 2, 4 ... seconds apart, at most this long.
MAX_RETRY_SECONDS = 30.0
# Answers of the API server that the same request would get again: not worth the trigger's retries.
REFUSED_STATUSES = frozenset({400, 403, 405, 406, 413, 415, 422})
# How an API server answers for a resource type it does not serve (a CRD not installed).
UNSERVED = "the server could not find the requested resource"
CORE_KINDS = {"ConfigMap": "configmaps", "Secret": "secrets"}
# The kinds an operator takes by its instance id: what a sensor creates carries the sensor's.
INSTANCE_KINDS = ("Workflow", "CronWorkflow")
LABEL_RESUBMITTED_FROM = "workflows.argoproj.io/resubmitted-from-workflow"
LABEL_CRON_WORKFLOW = "workflows.argoproj.io/cron-workflow"


# ============================================================================================ options


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How one event process connects and serves (the CLI fills it from flags and the environment)."""

    kubeconfig: str | None = None
    context: str | None = None
    credentials: str | None = None  # SLUICE_EVENTBUS_CREDENTIALS
    health_port: int | None = None  # SLUICE_HEALTH_PORT
    webhook_ports: Mapping[str, int] = field(default_factory=dict)  # SLUICE_WEBHOOK_PORTS
    webhook_host: str = ALL_INTERFACES
    recheck: float = RECHECK_SECONDS
    s3_poll_interval: float = 5.0


def parse_port_map(items: Sequence[str], *, where: str = ENV_WEBHOOK_PORTS) -> dict[str, int]:
    """``["12000=0", "13000=13001 14000=0"]`` -> ``{"12000": 0, "13000": 13001, "14000": 0}``."""
    out: dict[str, int] = {}
    for item in items:
        for pair in re.split(r"[,\s]+", item.strip()):
            if not pair:
                continue
            spec_port, sep, bind = pair.partition("=")
            if not sep or not spec_port.strip() or not bind.strip().isdigit() or int(bind) > 65535:
                raise SpecError([Problem(where, f"expected SPEC_PORT=PORT (PORT 0-65535), not {pair!r}")])
            out[spec_port.strip()] = int(bind)
    return out


def parse_health_port(text: str | None, *, where: str = "SLUICE_HEALTH_PORT") -> int | None:
    if text is None or not text.strip():
        return None
    if not text.strip().isdigit() or int(text) > 65535:
        raise SpecError([Problem(where, f"expected a port number, not {text!r}")])
    return int(text)


@dataclass(frozen=True, slots=True)
class BusAuth:
    """How the bus authenticates: a ``.creds`` file, a token, or a user and password (or nothing)."""

    credentials: str | None = None
    token: str | None = None
    user: str | None = None
    password: str | None = None


def bus_auth(credentials: str | None) -> BusAuth:
    """What ``SLUICE_EVENTBUS_CREDENTIALS`` says (see the module docstring); a ``.creds`` file's
    contents are written to a private temporary file the bus reads."""
    text = (credentials or "").strip()
    if not text:
        return BusAuth()
    if "BEGIN NATS USER JWT" in text:
        fd, path = tempfile.mkstemp(prefix="sluice-bus-", suffix=".creds")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        return BusAuth(credentials=path)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    if isinstance(parsed, dict):
        user = parsed.get("username", parsed.get("user"))
        if user is not None and parsed.get("password") is not None:
            return BusAuth(user=str(user), password=str(parsed["password"]))
        if parsed.get("token") is not None:
            return BusAuth(token=str(parsed["token"]))
        raise SpecError(
            [Problem("SLUICE_EVENTBUS_CREDENTIALS", "a mapping needs username and password, or token")]
        )
    return BusAuth(token=text)


def open_bus(url: str, *, client_name: str, credentials: str | None) -> JetStreamBus:
    """The (not yet connected) bus at ``url`` with the credentials of ``SLUICE_EVENTBUS_CREDENTIALS``."""
    auth = bus_auth(credentials)
    return JetStreamBus(
        url,
        client_name=client_name,
        credentials=auth.credentials,
        token=auth.token,
        user=auth.user,
        password=auth.password,
    )


def configure_logging(*, verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# ============================================================================================ the API


def _refusal(exc: ApiError) -> bool:
    return exc.status in REFUSED_STATUSES or (exc.status == 404 and _unserved(exc))


def _unserved(exc: ApiError) -> bool:
    return exc.status == 404 and exc.api_message.startswith(UNSERVED)


def _failure(exc: ApiError, what: str) -> SluiceError:
    """An API error as the runner should see it: ActionError when the same request would be refused
    again (bad request, forbidden, invalid), a retryable SluiceError otherwise."""
    message = f"{what}: {exc.status} {exc.reason}: {exc.api_message}".rstrip(": ")
    if _refusal(exc):
        return ActionError(" ".join(message.split()))
    return SluiceError(" ".join(message.split()))


class ClusterObjects:
    """ConfigMaps and Secrets from the API server (:class:`engine.runtime.base.ObjectLookup`).

    Synchronous because the port is: each lookup is one GET with a short timeout."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def _get(self, plural: str, namespace: str, name: str) -> JSON | None:
        try:
            found: JSON = self.api.call(
                "GET", path_of(plural, namespace, name, group=""), timeout=LOOKUP_TIMEOUT
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise SluiceError(f"cannot read {plural[:-1]} {namespace}/{name}: {exc}") from None
        return found

    def configmap(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._get("configmaps", namespace, name)
        return None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._get("secrets", namespace, name)
        if obj is None:
            return None
        out = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        out.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return out


@dataclass(frozen=True, slots=True)
class _Resource:
    group: str
    version: str
    plural: str
    namespaced: bool


class _Resources:
    """Which URL serves a kind: ours and core ConfigMaps/Secrets by table, anything else by discovery
    (asked again when a kind is not in the last answer, for a CRD installed since)."""

    def __init__(self, api: AsyncApi) -> None:
        self.api = api
        self._discovered: dict[str, dict[str, _Resource]] = {}

    async def find(self, api_version: str, kind: str) -> _Resource:
        group, _, version = api_version.rpartition("/")
        if group == GROUP and version == VERSION:
            for k in KINDS:
                if k.kind == kind:
                    return _Resource(GROUP, VERSION, k.plural, k.namespaced)
        if api_version == "v1" and kind in CORE_KINDS:
            return _Resource("", "v1", CORE_KINDS[kind], True)
        table = self._discovered.get(api_version)
        if table is None or kind not in table:
            table = self._discovered[api_version] = await self._discover(api_version, group, version)
        if kind not in table:
            raise SluiceError(f"the cluster serves no kind {kind!r} in {api_version}")
        return table[kind]

    async def _discover(self, api_version: str, group: str, version: str) -> dict[str, _Resource]:
        path = "/api/v1" if not group and version == "v1" else f"/apis/{group}/{version}"
        if not version or (not group and version != "v1"):
            raise ActionError(f"apiVersion {api_version!r} is not GROUP/VERSION or v1")
        try:
            listed = await self.api.get(path)
        except ApiError as exc:
            if exc.status == 404:
                raise SluiceError(f"the cluster does not serve {api_version}") from None
            raise _failure(exc, f"discovery of {api_version}") from None
        return {
            str(r["kind"]): _Resource(group, version, str(r["name"]), bool(r.get("namespaced")))
            for r in listed.get("resources") or ()
            if isinstance(r, dict) and "/" not in str(r.get("name", "/"))
        }


# ============================================================================================ actions


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return (meta.get("annotations") or {}) if isinstance(meta, dict) else {}


def _operator_key(key: str) -> bool:
    # Labels and annotations the operator and kubectl keep on a workflow, not part of what was submitted.
    return key.startswith((f"workflows.{GROUP}/", "workflows.argoproj.io/", "kubectl.kubernetes.io/"))


def _flags(args: Sequence[str], operation: str) -> dict[str, Any]:
    """The ``argo`` command-line flags of an ``argoWorkflow`` trigger's ``args`` that mean something
    here (``--restart-successful``, ``--node-field-selector``); others are logged and ignored."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, value = arg.partition("=")
        if flag == "--restart-successful" and operation == "retry":
            out["restartSuccessful"] = value.lower() != "false" if eq else True
        elif flag == "--node-field-selector" and operation in ("retry", "resume"):
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            out["nodeFieldSelector"] = value
        else:
            log.warning("argoWorkflow %s: argument %r is ignored", operation, arg)
        i += 1
    return out


class ClusterObjectActions:
    """The cluster's side of ``k8s`` and ``argoWorkflow`` triggers (:class:`engine.runtime.sensors.
    ObjectActions`), through the API server, for the Sensor in ``namespace``.

    * A Workflow (``k8s`` create of one, ``argoWorkflow`` submit and submit-from) is created in
      ``sluice.dev/v1alpha1`` under the name the firing gave it, checked first as ``sluice --kube
      submit`` checks it and labelled for the Sensor's operator instance; when one of that name exists
      with the same firing annotation, the firing was carried out before and this is a success, with
      another it is an error.
    * Any other kind (found by discovery): create (the same rule for an existing object), update (GET,
      deep merge, PUT guarded by the resourceVersion read), patch (merge patch, or the trigger's
      strategic merge or apply patch) and delete (a missing object counts as deleted). Update and
      patch of a missing object create it, as Argo does.
    * ``argoWorkflow`` resubmit creates the new Workflow under a name derived from the firing; suspend,
      stop and terminate patch the spec and resume and retry set the annotations the operator acts
      on, as ``sluice --kube`` does, each request carrying the firing key as its id.
    * An object without a namespace is in the Sensor's.

    Errors: an API refusal that would repeat (400, 403, 422 ...) is an ActionError, so the trigger does
    not retry it; a conflict, an unreachable server or a missing workflow are retryable.
    """

    def __init__(
        self, api: AsyncApi, lookup: ClusterObjects, *, namespace: str, instance_id: str = ""
    ) -> None:
        self.api = api
        self.lookup = lookup
        self.namespace = namespace
        self.instance_id = instance_id
        self.resources = _Resources(api)
        self.sources = TriggerSources(lookup)

    # -- sources --

    def load_source(self, template: TriggerTemplate, namespace: str) -> Any:
        """The text of the trigger's source (:class:`engine.runtime.triggersource.TriggerSources`)."""
        return self.sources.load(template, namespace)

    async def fetch_source(self, template: TriggerTemplate, namespace: str) -> Any:
        """:meth:`load_source` for the event loop: url/s3/git fetches run in a worker thread."""
        return await self.sources.fetch(template, namespace)

    # -- dispatch --

    def batch(self) -> AbstractContextManager[None]:
        """Each object is created by a request of its own: nothing to group."""
        return contextlib.nullcontext()

    async def run(self, action: ObjectAction, firing: Firing) -> str:
        obj = normalise_api_version(action.obj)
        kind = str(obj.get("kind") or "")
        if not isinstance(obj.get("metadata") or {}, dict):
            raise ActionError("the trigger's object has metadata that is not a mapping")
        if action.trigger_type == "argoWorkflow" and action.operation != "submit":
            return await self._workflow_operation(action, obj, firing)
        if (kind == "Workflow" and action.operation == "create") or action.trigger_type == "argoWorkflow":
            return await self._submit(obj, firing)
        return await self._object(action, obj, kind)

    # -- workflows --

    def _workflow_path(self, namespace: str, name: str | None = None) -> str:
        return path_of("workflows", namespace, name)

    async def _get(self, path: str, what: str) -> JSON | None:
        try:
            return await self.api.get_or_none(path)
        except ApiError as exc:
            raise _failure(exc, f"reading {what}") from None

    async def _live_workflow(self, namespace: str, name: str) -> JSON:
        obj = await self._get(self._workflow_path(namespace, name), f"workflow {namespace}/{name}")
        if obj is None:
            raise StateError(f"workflow {name!r} not found in namespace {namespace!r}")
        return obj

    async def _submit(self, obj: JSON, firing: Firing, *, instance: str | None = None) -> str:
        from engine.workflows.validate import validate_workflow

        if obj.get("kind") != "Workflow":
            raise ActionError(f"argoWorkflow submit: the source is a {obj.get('kind')!r}, not a Workflow")
        try:
            wf = Workflow.parse(obj)
            validate_workflow(wf)
        except SpecError as exc:
            raise ActionError(f"the trigger's Workflow is invalid: {exc.one_line()}") from None
        name = wf.metadata.name or ""
        if not name:
            raise ActionError("the trigger's Workflow has no metadata.name")
        namespace = wf.metadata.namespace or self.namespace
        body = copy.deepcopy(obj)
        body["apiVersion"] = API_VERSION
        meta = body.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta.pop("generateName", None)
        owner = self.instance_id if instance is None else instance
        if owner:
            meta.setdefault("labels", {}).setdefault(LABEL_INSTANCE, owner)
        try:
            made = await self.api.create(self._workflow_path(namespace), body)
        except ApiError as exc:
            raise _failure(exc, f"creating workflow {namespace}/{name}") from None
        if made is not None:
            return f"workflow/{name} submitted"
        existing = await self._get(self._workflow_path(namespace, name), f"workflow {namespace}/{name}")
        if existing is None:  # deleted since: the next attempt creates it
            raise SluiceError(f"workflow {name!r} existed a moment ago and is gone now")
        if _annotations(existing).get(ANNOTATION_FIRING) == firing.key:
            return f"workflow/{name} was already submitted for this firing"
        raise ActionError(f"workflow {name!r} already exists in namespace {namespace!r}")

    async def _workflow_operation(self, action: ObjectAction, obj: JSON, firing: Firing) -> str:
        operation = action.operation
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        namespace = str(meta.get("namespace") or self.namespace)
        if not name:
            raise ActionError(f"argoWorkflow {operation}: the source names no object (metadata.name)")
        if operation == "submit-from":
            return await self._submit(await self._from(obj, name, namespace, firing), firing)
        if operation == "resubmit":
            return await self._resubmit(name, namespace, firing)
        if operation not in ("retry", "resume", "suspend", "terminate", "stop"):
            raise ActionError(f"unknown argoWorkflow operation {operation!r}")
        flags = _flags(action.args, operation)
        live = await self._live_workflow(namespace, name)
        phase = str((live.get("status") or {}).get("phase") or "")
        path = self._workflow_path(namespace, name)
        patch: JSON
        if operation == "retry":
            request = _annotations(live).get(ANNOTATION_RETRY)
            if request and _request_id(request) == firing.key:
                return f"workflow/{name} retry was already requested for this firing"
            if phase not in ("Failed", "Error"):
                raise ActionError(
                    f"workflow {name!r} is {phase or 'running'}: only a Failed or Error one can be retried"
                )
            fields: JSON = {
                "restartSuccessful": bool(flags.get("restartSuccessful")),
                "nodeFieldSelector": flags.get("nodeFieldSelector") or None,
            }
            patch = {
                # Refused if the workflow changed since it was read as Failed/Error.
                "metadata": {
                    "resourceVersion": (live.get("metadata") or {}).get("resourceVersion"),
                    "annotations": {ANNOTATION_RETRY: json.dumps({**fields, "id": firing.key})},
                }
            }
        else:
            if phase in WF_COMPLETED:
                raise ActionError(f"workflow {name!r} has already completed ({phase})")
            if operation == "resume":
                selector = flags.get("nodeFieldSelector")
                node = str(selector).split("=", 1)[-1] if selector else None
                request = json.dumps({"node": node, "outputs": None, "id": firing.key})
                patch = {"metadata": {"annotations": {ANNOTATION_RESUME: request}}, "spec": {"suspend": None}}
            elif operation == "suspend":
                patch = {"spec": {"suspend": True}}
            else:
                patch = {"spec": {"shutdown": "Stop" if operation == "stop" else "Terminate"}}
        try:
            await self.api.merge_patch(path, patch)
        except ApiError as exc:
            raise _failure(exc, f"{operation} of workflow {namespace}/{name}") from None
        return f"workflow/{name} {operation}"

    async def _resubmit(self, name: str, namespace: str, firing: Firing) -> str:
        old = await self._live_workflow(namespace, name)
        meta = old.get("metadata") or {}
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if not _operator_key(k)}
        labels[LABEL_RESUBMITTED_FROM] = name
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not _operator_key(k)}
        annotations[ANNOTATION_FIRING] = firing.key
        annotations[ANNOTATION_EVENT_IDS] = ",".join(firing.event_ids())
        prefix = str(meta.get("generateName") or f"{name}-")
        manifest: JSON = {
            "apiVersion": API_VERSION,
            "kind": "Workflow",
            "metadata": {
                "name": prefix + name_suffix(firing.key),
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": {k: v for k, v in (old.get("spec") or {}).items() if k not in ("shutdown", "suspend")},
        }
        # The new run goes to the operator instance that ran the old one.
        instance = str((meta.get("labels") or {}).get(LABEL_INSTANCE) or "")
        return await self._submit(manifest, firing, instance=instance)

    async def _from(self, obj: JSON, name: str, namespace: str, firing: Firing) -> JSON:
        """The Workflow ``submit --from`` makes of a CronWorkflow or a (Cluster)WorkflowTemplate."""
        kind = str(obj.get("kind") or "")
        metadata: JSON = {
            "name": f"{name}-{name_suffix(firing.key)}",
            "namespace": namespace,
            "labels": dict((obj.get("metadata") or {}).get("labels") or {}),
            "annotations": {ANNOTATION_FIRING: firing.key},
        }
        spec: JSON
        if kind == "CronWorkflow":
            stored = await self._get(path_of("cronworkflows", namespace, name), f"CronWorkflow {name}")
            if stored is None:
                raise StateError(f"CronWorkflow {name!r} not found in namespace {namespace!r}")
            try:
                CronWorkflow.parse(normalise_api_version(stored))
            except SpecError as exc:
                raise ActionError(f"CronWorkflow {name!r} is invalid: {exc.one_line()}") from None
            metadata["labels"][LABEL_CRON_WORKFLOW] = name
            # As stored: the parse above checked it, and a dump would add every default field.
            spec = copy.deepcopy((stored.get("spec") or {})["workflowSpec"])
        elif kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
            cluster = kind == "ClusterWorkflowTemplate"
            path = path_of(f"{kind.lower()}s", None if cluster else namespace, name)
            try:
                found = await self.api.get_or_none(path)
            except ApiError as exc:
                # A Sensor's role is namespaced: it may not read cluster-scoped templates, which the
                # operator resolves when it runs the workflow anyway.
                if not (cluster and exc.status == 403):
                    raise _failure(exc, f"reading {kind} {name}") from None
                found = {}
            if found is None:
                raise StateError(f"{kind} {name!r} not found")
            spec = {"workflowTemplateRef": {"name": name, **({"clusterScope": True} if cluster else {})}}
        else:
            raise ActionError(
                f"argoWorkflow submit-from: expected a CronWorkflow or WorkflowTemplate, not {kind!r}"
            )
        return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata, "spec": spec}

    # -- any other object --

    async def _object(self, action: ObjectAction, obj: JSON, kind: str) -> str:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        api_version = str(obj.get("apiVersion") or "")
        if not kind or not name or not api_version:
            raise ActionError("the trigger's object needs an apiVersion, a kind and metadata.name")
        res = await self.resources.find(api_version, kind)
        namespace = str(meta.get("namespace") or self.namespace) if res.namespaced else None
        body = copy.deepcopy(obj)
        body.setdefault("metadata", {})
        if namespace is not None:
            body["metadata"]["namespace"] = namespace
        if kind in INSTANCE_KINDS and self.instance_id:
            body["metadata"].setdefault("labels", {}).setdefault(LABEL_INSTANCE, self.instance_id)
        item = path_of(res.plural, namespace, name, group=res.group, version=res.version)
        label = f"{kind.lower()}/{name}"
        op = action.operation
        if op == "delete":
            try:
                gone = await self.api.delete(item)
            except ApiError as exc:
                raise _failure(exc, f"deleting {label}") from None
            return f"{label} deleted" if gone else f"{label} was already gone"
        if op == "create":
            return await self._create(res, namespace, body, label, created_for=_firing_of(body))
        if op not in ("update", "patch"):
            raise ActionError(f"unknown k8s operation {op!r}")
        live = await self._get(item, label)
        if live is None:
            return await self._create(res, namespace, body, label, created_for=None)
        try:
            if op == "update":
                await self.api.call("PUT", item, body=deep_merge(live, body))
                return f"{label} updated"
            strategy = action.patch_strategy or MERGE_PATCH
            if strategy == JSON_PATCH:
                raise ActionError(
                    f"patchStrategy {JSON_PATCH} needs a list of operations, and the source is an object"
                )
            query = [("fieldManager", FIELD_MANAGER)] if strategy == APPLY_PATCH else []
            await self.api.call("PATCH", item, body=body, content_type=strategy, query=query)
            return f"{label} patched"
        except ApiError as exc:
            raise _failure(exc, f"{op} of {label}") from None

    async def _create(
        self, res: _Resource, namespace: str | None, body: JSON, label: str, *, created_for: str | None
    ) -> str:
        collection = path_of(res.plural, namespace, group=res.group, version=res.version)
        try:
            made = await self.api.create(collection, body)
        except ApiError as exc:
            raise _failure(exc, f"creating {label}") from None
        if made is not None:
            return f"{label} created"
        if created_for is not None:
            name = str(body["metadata"]["name"])
            item = path_of(res.plural, namespace, name, group=res.group, version=res.version)
            live = await self._get(item, label)
            if live is not None and _annotations(live).get(ANNOTATION_FIRING) == created_for:
                return f"{label} was already created for this firing"
            raise ActionError(f"{label} already exists")
        # Update or patch found it missing, and someone created it since: the next attempt updates it.
        raise SluiceError(f"{label} was created concurrently")


def _firing_of(obj: Mapping[str, Any]) -> str | None:
    value = _annotations(obj).get(ANNOTATION_FIRING)
    return str(value) if value else None


def _request_id(request: Any) -> str | None:
    try:
        decoded = json.loads(str(request))
    except ValueError:
        return None
    return str(decoded.get("id")) if isinstance(decoded, dict) and decoded.get("id") else None


# ============================================================================================ the process


class BusCursors:
    """A source's cursor store over the bus's key-value store."""

    def __init__(self, bus: EventBus, bucket: str = CURSOR_BUCKET) -> None:
        self.bus = bus
        self.bucket = bucket

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self.bus.kv_get(self.bucket, key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        await self.bus.kv_put(self.bucket, key, value)


class _Health:
    """``/healthz`` (alive) and ``/readyz`` (started) on ``port``; nothing without a port."""

    def __init__(self, port: int | None) -> None:
        self.port = port
        self.readiness: Callable[[], str | None] = lambda: "starting"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self.port is None:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._alive)
        app.router.add_get("/readyz", self._ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, ALL_INTERFACES, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise SluiceError(f"cannot serve health checks on port {self.port}: {exc}") from None
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _alive(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ready(self, _: web.Request) -> web.Response:
        why = self.readiness()
        return web.Response(text="ok") if why is None else web.Response(status=503, text=why)


class _Hosted(Protocol):
    """What one process runs for its object."""

    async def start(self) -> None:
        """Start (raises SluiceError for what may work on a later attempt, e.g. the bus)."""
        ...

    async def apply(self, obj: Any, raw: JSON) -> bool:
        """The object changed to ``obj`` (validated; ``raw`` as read): run it. Raises SluiceError when it
        cannot run (what ran before keeps running); False when it should be tried again later."""
        ...

    async def recheck(self) -> None:
        """The object is unchanged: retry what did not work out the last time (webhook ports)."""
        ...

    async def stop(self) -> None: ...

    async def forget(self) -> None:
        """The object is gone: stop, and drop what is kept for it on the bus."""
        ...

    def not_ready(self) -> str | None:
        """Why the process is not ready; None once it is."""
        ...


def _digest(raw: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw.get("spec"), sort_keys=True, default=str).encode()).hexdigest()


def _parse(kind: str, raw: JSON, namespace: str, name: str) -> Any:
    label = f"{kind} {namespace}/{name}"
    model = EventSource if kind == "EventSource" else Sensor
    try:
        obj = model.parse(normalise_api_version(raw))
        warnings = validate_event_object(obj)
    except SpecError as exc:
        raise exc.with_file(label) from None
    for warning in warnings:
        log.warning("%s: %s", label, warning)
    return obj


async def _wait(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as ``stopping`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), max(0.0, seconds))
    return stopping.is_set()


async def _unless_stopped(op: Callable[[], Awaitable[None]], stopping: asyncio.Event) -> bool:
    """Await ``op``; cancel it when the process is told to stop first (False)."""
    task = asyncio.ensure_future(op())
    waiter = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True


async def _retrying(what: str, op: Callable[[], Awaitable[None]], stopping: asyncio.Event) -> bool:
    """Run ``op`` until it succeeds (True) or the process is stopped (False), 1, 2, 4 ... s apart."""
    delay = 1.0
    while not stopping.is_set():
        try:
            return await _unless_stopped(op, stopping)
        except SpecError:
            raise
        except SluiceError as exc:
            log.warning("%s: %s; trying again in %.0f s", what, exc, delay)
        if await _wait(stopping, delay):
            break
        delay = min(delay * 2, MAX_RETRY_SECONDS)
    return False


def _checked(options: RunOptions, bus_url: str | None) -> tuple[RunOptions, str]:
    if not bus_url:
        raise SluiceError("no event bus: give --eventbus-url or set SLUICE_EVENTBUS_URL")
    if not options.recheck > 0:
        raise SpecError([Problem("--recheck-seconds", "must be a positive number of seconds")])
    return options, bus_url


class _Cluster:
    """One connection to the API server for the process: blocking and pooled calls on one client."""

    def __init__(self, options: RunOptions) -> None:
        self.sync = Api(
            load_client(options.kubeconfig, options.context), limiter=TokenBucket(CLIENT_QPS, CLIENT_BURST)
        )
        self.api = AsyncApi(self.sync, workers=API_WORKERS)
        self.lookup = ClusterObjects(self.sync)

    async def read(self, plural: str, kind: str, namespace: str, name: str) -> JSON | None:
        """The object; None when it does not exist."""
        try:
            return await self.api.get_or_none(path_of(plural, namespace, name))
        except ApiError as exc:
            if _unserved(exc):
                raise SluiceError(
                    f"the cluster does not serve {plural}.{GROUP}: are sluice's CRDs installed?"
                ) from None
            raise SluiceError(f"cannot read {kind} {namespace}/{name}: {exc}") from None

    def close(self) -> None:
        self.api.close()


async def _serve(
    hosted: _Hosted,
    *,
    cluster: _Cluster,
    bus: JetStreamBus,
    plural: str,
    kind: str,
    namespace: str,
    name: str,
    raw: JSON,
    options: RunOptions,
    stopping: asyncio.Event,
) -> int:
    """Connect, start, follow the object until stopped, stop. The exit code (0)."""
    label = f"{kind} {namespace}/{name}"
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    health = _Health(options.health_port)
    await health.start()
    health.readiness = lambda: "connecting to the event bus"
    started = gone = stopped = False

    async def connect() -> None:
        await bus.open()

    try:
        if not await _retrying("event bus", connect, stopping):
            return 0
        health.readiness = lambda: "starting"
        if not await _retrying(label, hosted.start, stopping):
            return 0
        started = True
        health.readiness = hosted.not_ready
        log.info("%s: running", label)
        digest, rejected = _digest(raw), None
        while not await _wait(stopping, options.recheck):
            try:
                live = await cluster.read(plural, kind, namespace, name)
            except SluiceError as exc:
                log.warning("%s: %s", label, exc)
                continue
            if live is None:
                if not gone:
                    log.info("%s was deleted: stopped", label)
                    await hosted.forget()
                    gone = True
                    health.readiness = lambda: f"{label} was deleted"
                continue
            changed = _digest(live)
            if changed == rejected:
                continue
            if not gone and changed == digest:
                await hosted.recheck()
                continue
            try:
                applied = await hosted.apply(_parse(kind, live, namespace, name), live)
            except SluiceError as exc:
                # Said once per version of the spec: the operator reports it in the object's status too.
                log.warning("%s: the changed spec is not run: %s", label, exc)
                rejected = changed
                continue
            if applied:
                digest, gone, rejected = changed, False, None
                health.readiness = hosted.not_ready
                log.info("%s: now running its changed spec", label)
        log.info("%s: stopping", label)
        if started and not gone:
            await _stop(hosted, cluster, plural, kind, namespace, name)
            stopped = True
        return 0
    finally:
        if not stopped:
            await hosted.stop()
        await bus.close()
        await health.stop()


async def _stop(
    hosted: _Hosted, cluster: _Cluster, plural: str, kind: str, namespace: str, name: str
) -> None:
    """Stop; when the object is gone (a deletion stops the pod), forget what the bus keeps for it."""
    try:
        # Bounded: the pod's grace period (30 s by default) also has to cover the stop itself.
        live = await asyncio.wait_for(cluster.read(plural, kind, namespace, name), LOOKUP_TIMEOUT)
    except (SluiceError, TimeoutError) as exc:
        log.warning("%s %s/%s: %s; keeping its state", kind, namespace, name, exc or "no answer")
        live = {}
    if live is None:
        log.info("%s %s/%s was deleted: dropping its state", kind, namespace, name)
        await hosted.forget()
    else:
        await hosted.stop()


async def _run_object(
    kind: str,
    name: str,
    namespace: str,
    bus_url: str | None,
    host: Callable[[Any, JSON, EventBus, _Cluster, RunOptions], _Hosted],
    *,
    options: RunOptions | None,
    stopping: asyncio.Event | None,
) -> int:
    """Read the ``kind`` object (Sensor or EventSource) ``namespace/name``, connect to the bus, and
    serve what ``host`` makes of it until stopped. Raises SpecError for an invalid object, SluiceError
    for a missing one."""
    plural = f"{kind.lower()}s"
    opts, url = _checked(options or RunOptions(), bus_url)
    cluster = _Cluster(opts)
    try:
        raw = await cluster.read(plural, kind, namespace, name)
        if raw is None:
            raise SluiceError(f"{kind} {name!r} not found in namespace {namespace!r}")
        obj = _parse(kind, raw, namespace, name)
        bus = open_bus(
            url, client_name=f"sluice-{kind.lower()}-{namespace}-{name}", credentials=opts.credentials
        )
        try:
            hosted = host(obj, raw, bus, cluster, opts)
        except SpecError as exc:
            raise exc.with_file(f"{kind} {namespace}/{name}") from None
        return await _serve(
            hosted,
            cluster=cluster,
            bus=bus,
            plural=plural,
            kind=kind,
            namespace=namespace,
            name=name,
            raw=raw,
            options=opts,
            stopping=stopping or asyncio.Event(),
        )
    finally:
        cluster.close()


# ---------------------------------------------------------------------------------------- a Sensor


class _SensorHost:
    def __init__(
        self, namespace: str, sensor: Sensor, raw: JSON, *, bus: EventBus, cluster: _Cluster
    ) -> None:
        self.namespace = namespace
        self.sensor = sensor
        self.bus = bus
        self.cluster = cluster
        self.actions = self._actions(raw)
        self.runner: SensorRunner | None = None

    def _actions(self, raw: JSON) -> ClusterObjectActions:
        labels = (raw.get("metadata") or {}).get("labels") or {}
        return ClusterObjectActions(
            self.cluster.api,
            self.cluster.lookup,
            namespace=self.namespace,
            instance_id=str(labels.get(LABEL_INSTANCE) or ""),
        )

    async def start(self) -> None:
        runner = SensorRunner(
            namespace=self.namespace,
            sensor=self.sensor,
            bus=self.bus,
            objects=self.actions,
            lookup=self.cluster.lookup,
        )
        try:
            await runner.start()
        except BaseException:
            await runner.stop()
            raise
        self.runner = runner

    async def apply(self, obj: Any, raw: JSON) -> bool:
        sensor: Sensor = obj
        name = sensor.metadata.name or ""
        await self.stop()
        self.sensor, self.actions = sensor, self._actions(raw)
        try:
            await self.start()
        except SluiceError as exc:
            log.warning("Sensor %s/%s: %s; trying again at the next check", self.namespace, name, exc)
            return False
        return True

    async def recheck(self) -> None:
        if self.runner is None:
            try:
                await self.start()
            except SluiceError as exc:
                log.warning("Sensor %s/%s: %s", self.namespace, self.sensor.metadata.name, exc)

    async def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.stop()

    async def forget(self) -> None:
        """Stop, then delete the durable consumer and the stored state of every trigger."""
        await self.stop()
        name = self.sensor.metadata.name or ""
        try:
            for compiled in compile_sensor(self.sensor):
                await self.bus.delete_consumer(consumer_name(self.namespace, name, compiled.name))
                await self.bus.kv_delete(state_bucket(self.namespace, name), compiled.name)
        except SluiceError as exc:
            log.warning("Sensor %s/%s: cannot drop its state on the bus: %s", self.namespace, name, exc)

    def not_ready(self) -> str | None:
        return None if self.runner is not None else "the sensor's triggers are not running"


async def run_sensor(
    name: str,
    namespace: str,
    bus_url: str | None,
    *,
    options: RunOptions | None = None,
    stopping: asyncio.Event | None = None,
) -> int:
    """``sluice sensor run NAME -n NAMESPACE``: run one Sensor of the cluster until SIGTERM (or
    ``stopping``). Raises SpecError for an invalid Sensor, SluiceError for a missing one."""

    def host(sensor: Any, raw: JSON, bus: EventBus, cluster: _Cluster, _options: RunOptions) -> _Hosted:
        return _SensorHost(namespace, sensor, raw, bus=bus, cluster=cluster)

    return await _run_object("Sensor", name, namespace, bus_url, host, options=options, stopping=stopping)


# ---------------------------------------------------------------------------------------- an EventSource


@dataclass
class _Running:
    what: str
    source: CalendarSource | S3Source
    task: asyncio.Task[None] | None = None


class _SourceHost:
    def __init__(
        self, namespace: str, source: EventSource, *, bus: EventBus, cluster: _Cluster, options: RunOptions
    ) -> None:
        self.namespace = namespace
        self.source = source
        self.bus = bus
        self.cluster = cluster
        self.options = options
        self.webhooks = WebhookServer(
            self._webhook_sources(source),
            publish=bus.publish,
            secrets=cluster.lookup.secret,
            ports=options.webhook_ports,
        )
        self.problems: list[Problem] = []
        self.pending = self._build(source)  # built now: a bad calendar or S3 spec ends the process
        self.running: list[_Running] = []
        self.serving = False  # whether the webhook server is started

    def _webhook_sources(self, source: EventSource) -> list[tuple[str, EventSource]]:
        return [(self.namespace, source)] if source.spec.webhook else []

    def _build(self, es: EventSource) -> list[_Running]:
        out: list[_Running] = []
        cursors = BusCursors(self.bus)
        if es.spec.calendar:
            calendar = CalendarSource(self.namespace, es, publish=self.bus.publish, cursors=cursors)
            out.append(_Running("calendar", calendar))
        for event, spec in es.spec.minio.items():
            out.append(
                _Running(
                    f"minio/{event}",
                    S3Source(
                        namespace=self.namespace,
                        event_source=es,
                        event_name=event,
                        spec=spec,
                        publish=self.bus.publish,
                        cursors=cursors,
                        secrets=self.cluster.lookup.secret,
                        connect=s3client.open_bucket,
                        poll_interval=self.options.s3_poll_interval,
                    ),
                )
            )
        return out

    def _launch(self, running: list[_Running]) -> None:
        loop = asyncio.get_running_loop()
        for r in running:
            where = f"EventSource {self.namespace}/{self.source.metadata.name} {r.what}"
            r.task = loop.create_task(r.source.run(), name=where)
            r.task.add_done_callback(_log_crash)
        self.running = running

    async def start(self) -> None:
        self.problems = await self.webhooks.start(self.options.webhook_host)
        self.serving = True
        self._launch(self.pending)
        self.pending = []

    async def apply(self, obj: Any, raw: JSON) -> bool:
        es: EventSource = obj
        fresh = self._build(es)
        await self._stop_sources()
        self.source = es
        if self.serving:
            self.problems = await self.webhooks.update(self._webhook_sources(es))
        else:  # stopped when the object was deleted, and it is back
            await self.webhooks.update(self._webhook_sources(es))
            self.problems = await self.webhooks.start(self.options.webhook_host)
            self.serving = True
        self._launch(fresh)
        return True

    async def recheck(self) -> None:
        if self.serving and self.problems:  # a port that could not be opened, a Secret that was missing
            self.problems = await self.webhooks.update(self._webhook_sources(self.source))

    async def _stop_sources(self) -> None:
        for r in self.running:
            await r.source.stop()
            if r.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await r.task
        self.running = []

    async def stop(self) -> None:
        await self._stop_sources()
        await self.webhooks.stop()
        self.serving = False

    async def forget(self) -> None:
        # Cursors are kept, as under ``sluice server``: they are keyed by the object's name.
        await self.stop()

    def not_ready(self) -> str | None:
        wanted = {hook.port for hook in self.source.spec.webhook.values()}
        missing = sorted(wanted - set(self.webhooks.bound_ports))
        if missing:
            return f"webhook port(s) {', '.join(missing)} not listening: " + "; ".join(
                str(p) for p in self.problems
            )
        return None


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %s", task.get_name(), task.exception(), exc_info=task.exception())


async def run_event_source(
    name: str,
    namespace: str,
    bus_url: str | None,
    *,
    options: RunOptions | None = None,
    stopping: asyncio.Event | None = None,
) -> int:
    """``sluice eventsource run NAME -n NAMESPACE``: run one EventSource of the cluster until SIGTERM
    (or ``stopping``). Raises SpecError for an invalid EventSource, SluiceError for a missing one."""

    def host(source: Any, _raw: JSON, bus: EventBus, cluster: _Cluster, opts: RunOptions) -> _Hosted:
        return _SourceHost(namespace, source, bus=bus, cluster=cluster, options=opts)

    return await _run_object(
        "EventSource", name, namespace, bus_url, host, options=options, stopping=stopping
    )


__all__ = [
    "ENV_WEBHOOK_PORTS",
    "BusCursors",
    "ClusterObjectActions",
    "ClusterObjects",
    "RunOptions",
    "bus_auth",
    "configure_logging",
    "parse_health_port",
    "parse_port_map",
    "run_event_source",
    "run_sensor",
]
