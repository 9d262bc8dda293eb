"""``sluice --kube``: the command line's workflow commands against a Kubernetes cluster.

``engine.cli.main`` hands a parsed command to :func:`run` when ``--kube`` is given (or ``SLUICE_KUBE=1``
is set). The cluster is the one of the kubeconfig (``--kubeconfig``, ``$KUBECONFIG`` or
``~/.kube/config``; ``--context``), the namespace ``-n`` or else the context's. Calls go through
``engine.runtime.kubernetes.api``; an API error becomes one line (``sluice: <message>``), a missing
object the same "not found" message the embedded runtime gives.

Reading is shared with the embedded runtime: :class:`ClusterStore` answers the part of the local
``Store`` that ``get``, ``list``, ``wait`` and the ``template``, ``cron``, ``configmap``, ``secret``,
``apply`` and ``lint`` commands use, from the API server, so those commands run their embedded code and
print exactly what it prints. Writing is the operator's protocol (``engine.runtime.kubernetes.
controller``): ``submit`` creates the Workflow object; ``stop``, ``terminate`` and ``suspend`` are merge
patches of its spec; ``resume`` and ``retry`` are annotations the operator acts on and then clears;
``delete`` deletes the object (its pods go with it). ``logs`` reads each step pod's ``main`` container.
Commands of the embedded runtime itself (``run``, ``server``) are refused with one line.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, SluiceError, SpecError, StateError
from engine.runtime.kubernetes.api import MERGE_PATCH, Api, ApiError, TokenBucket, load_client, path_of
from engine.runtime.kubernetes.pods import LABEL_INSTANCE
from engine.runtime.local.store import WorkflowRow
from engine.spec.crd import GROUP, KINDS
from engine.spec.loader import Document, load_file
from engine.spec.workflow import Workflow
from engine.workflows import nodes as N
from engine.workflows.status import WF_COMPLETED, WorkflowStatus

JSON = dict[str, Any]
ENV_KUBE = "SLUICE_KUBE"
# What the embedded runtime's own commands would do has no meaning on a cluster.
REFUSED = {
    "run": "`sluice run` runs a workflow inside this process; on a cluster use `sluice --kube submit --wait`",
    "server": "`sluice server` is the embedded runtime's engine; on a cluster the operator does its work",
}
# Resources outside the sluice.dev group that stored-object commands reach.
CORE_RESOURCES = {"ConfigMap": "configmaps", "Secret": "secrets"}
# Where a pod that is not running yet, or gone, has no log to give (not errors for `logs`).
NO_LOG_STATUSES = (400, 404)
# The API budget of one command, as client-go's defaults for kubectl (a waiting CLI polls).
CLIENT_QPS, CLIENT_BURST = 5.0, 10
POLL_SECONDS = 0.5
# How an API server answers for a resource type it does not serve (as opposed to a missing object).
UNSERVED = "the server could not find the requested resource"


def wanted(args: argparse.Namespace) -> bool:
    """Whether this command is for a cluster: ``--kube`` or ``SLUICE_KUBE`` set to a true value."""
    if getattr(args, "kube", False):
        return True
    return os.environ.get(ENV_KUBE, "").strip().lower() in ("1", "true", "yes", "on")


def run(args: argparse.Namespace) -> int:
    """Run a parsed command against the cluster."""
    args.kube = True
    if getattr(args, "namespace", None) is None:
        args.namespace = context_namespace(args.kubeconfig, args.context)
    if args.command in REFUSED:
        raise SluiceError(f"not available with --kube: {REFUSED[args.command]}")
    handler = COMMANDS.get(args.command)
    code: int = (handler or args.func)(args)
    return code


# =================================================================================== the cluster


def _kubeconfig_path(kubeconfig: str | None) -> Path:
    # The file load_client reads: the first of $KUBECONFIG's paths, else ~/.kube/config.
    return Path(
        kubeconfig
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or Path.home() / ".kube" / "config"
    )


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig's context (the current one unless ``context``), else "default".

    In a pod without a kubeconfig it is the pod's own namespace, as for the in-cluster credentials."""
    if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and not os.environ.get("KUBECONFIG"):
        try:
            own = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
        except OSError:
            own = ""
        return own or "default"
    try:
        config = yaml.safe_load(_kubeconfig_path(kubeconfig).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "default"  # loading the credentials reports the problem
    if not isinstance(config, dict):
        return "default"
    name = context or config.get("current-context")
    for entry in config.get("contexts") or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            namespace = (entry.get("context") or {}).get("namespace")
            return str(namespace) if namespace else "default"
    return "default"


class Cluster:
    """The API server of one kubeconfig context: connected on first use, errors turned into one line."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self._api: Api | None = None

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(
                load_client(self.kubeconfig, self.context), limiter=TokenBucket(CLIENT_QPS, CLIENT_BURST)
            )
        return self._api

    def call(self, method: str, path: str, *, absent_ok: bool = False, **kwargs: Any) -> Any:
        """``Api.call``; with ``absent_ok`` a missing object answers None instead of an error."""
        try:
            return self.api.call(method, path, **kwargs)
        except ApiError as exc:
            if absent_ok and exc.status == 404 and not _unserved(exc):
                return None
            raise self._error(exc, path) from None

    def merge_patch(self, path: str, patch: JSON) -> JSON:
        patched: JSON = self.call("PATCH", path, body=patch, content_type=MERGE_PATCH)
        return patched

    def _error(self, exc: ApiError, path: str) -> SluiceError:
        if exc.status == 0:
            host = getattr(getattr(self.api.client, "configuration", None), "host", "") or "?"
            why = exc.reason or exc.api_message or str(exc)
            return SluiceError(_one_line(f"cannot reach the Kubernetes API server at {host}: {why}"))
        if _unserved(exc):
            return SluiceError(
                f"the cluster does not serve {_resource_of(path)}: are sluice's CRDs installed?"
                " (`sluice crds | kubectl apply -f -`)"
            )
        return SluiceError(_one_line(exc.api_message or f"{exc.status} {exc.reason}".strip()))


def _unserved(exc: ApiError) -> bool:
    """A 404 for the resource type itself (its CRD is not installed), not for one object."""
    return exc.status == 404 and exc.api_message.startswith(UNSERVED)


def _resource_of(path: str) -> str:
    """``workflows.sluice.dev`` from ``/apis/sluice.dev/v1alpha1/namespaces/ns/workflows/name``."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = rest[0] if rest else path
    return f"{resource}.{group}" if group else resource


def _one_line(text: str) -> str:
    return " ".join(text.split())


_clusters: dict[tuple[str | None, str | None], Cluster] = {}


def cluster_of(args: argparse.Namespace) -> Cluster:
    """The command's cluster (one connection per process)."""
    key = (getattr(args, "kubeconfig", None), getattr(args, "context", None))
    if key not in _clusters:
        _clusters[key] = Cluster(*key)
    return _clusters[key]


def _workflow_path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    return path_of("workflows", namespace, name, sub=sub)


def _resource(kind: str) -> tuple[str, str, bool]:
    """(plural, API group, namespaced) of a kind the stored-object commands handle."""
    for k in KINDS:
        if k.kind == kind:
            return k.plural, GROUP, k.namespaced
    if kind in CORE_RESOURCES:
        return CORE_RESOURCES[kind], "", True
    raise SluiceError(f"{kind} objects are not kept on a cluster by sluice")


def _without_server_fields(obj: JSON) -> JSON:
    # managedFields is the API server's bookkeeping: kubectl hides it too.
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


# =================================================================================== reading


class ClusterStore:
    """What the CLI's embedded commands read and write of the local ``Store``, kept on the cluster.

    Workflows come back as ``WorkflowRow`` (their status is the object's, nodes possibly compressed);
    templates, cron workflows, config maps and secrets are the objects themselves. The CLI's ``_store``
    gives one of these (:func:`cluster_store`) under ``--kube``, so those commands print what they print
    for the embedded runtime.
    """

    def __init__(self, cluster: Cluster, *, instance_id: str = "") -> None:
        self.cluster = cluster
        self.instance_id = instance_id

    # -- workflows --

    def get_workflow(self, namespace: str, name: str) -> WorkflowRow | None:
        obj = self.cluster.call("GET", _workflow_path(namespace, name), absent_ok=True)
        return None if obj is None else workflow_row(obj)

    def list_workflows(self, namespace: str | None = None) -> list[WorkflowRow]:
        listed = self.cluster.call("GET", path_of("workflows", namespace))
        rows = [workflow_row(o) for o in listed.get("items") or ()]
        return sorted(rows, key=lambda r: (r.created_at, r.name))

    def load_status(self, row: WorkflowRow) -> WorkflowStatus:
        return WorkflowStatus.from_dict(row.status)

    # -- stored objects --

    def _path(self, kind: str, namespace: str | None, name: str | None = None) -> str:
        plural, group, namespaced = _resource(kind)
        return path_of(plural, (namespace or None) if namespaced else None, name, group=group)

    def get_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        obj = self.cluster.call("GET", self._path(kind, namespace, name), absent_ok=True)
        return None if obj is None else _without_server_fields(obj)

    def list_objects(self, kind: str, namespace: str | None = None) -> list[JSON]:
        listed = self.cluster.call("GET", self._path(kind, namespace))
        # Items of a core list carry no kind or apiVersion of their own.
        out = [
            {"apiVersion": listed.get("apiVersion"), "kind": kind, **_without_server_fields(o)}
            for o in listed.get("items") or ()
        ]
        return sorted(out, key=lambda o: ((o["metadata"].get("namespace") or ""), o["metadata"]["name"]))

    def put_object(self, kind: str, namespace: str, name: str, data: JSON) -> None:
        """Create the object, or replace it when it exists (the embedded store's put)."""
        body = copy.deepcopy(data)
        meta = body.setdefault("metadata", {})
        if kind in INSTANCE_KINDS:
            with_instance_label(body, self.instance_id)
        if meta.get("resourceVersion"):  # read from the cluster: replace that version
            self.cluster.call("PUT", self._path(kind, namespace, name), body=body)
            return
        meta.pop("creationTimestamp", None)  # the API server's to set
        try:
            self.cluster.api.call("POST", self._path(kind, namespace), body=body)
            return
        except ApiError as exc:
            if exc.status != 409 or exc.reason != "AlreadyExists":
                raise self.cluster._error(exc, self._path(kind, namespace)) from None
        current = self.cluster.call("GET", self._path(kind, namespace, name))
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.cluster.call("PUT", self._path(kind, namespace, name), body=body)

    def delete_object(self, kind: str, namespace: str, name: str) -> bool:
        gone = self.cluster.call("DELETE", self._path(kind, namespace, name), absent_ok=True)
        return gone is not None

    def cron_state(self, namespace: str, name: str) -> JSON | None:
        obj = self.get_object("CronWorkflow", namespace, name)
        return None if obj is None else (obj.get("status") or {})


def workflow_row(obj: Mapping[str, Any]) -> WorkflowRow:
    """A Workflow object as the embedded store's row: the manifest, the status, and the controls."""
    meta = obj.get("metadata") or {}
    status = dict(obj.get("status") or {})
    spec = dict(obj.get("spec") or {})
    manifest = dict(_without_server_fields({k: v for k, v in obj.items() if k != "status"}))
    stored = status.get("storedWorkflowTemplateSpec")
    if isinstance(stored, dict):
        # As the embedded runtime keeps it: the spec merged from the template, with the live controls.
        live = {k: spec[k] for k in ("suspend", "shutdown", "activeDeadlineSeconds") if k in spec}
        manifest["spec"] = {**stored, **live}
    created = N.parse_time(meta.get("creationTimestamp"))
    return WorkflowRow(
        uid=str(meta.get("uid") or ""),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        manifest=manifest,
        phase=str(status.get("phase") or ""),
        message=status.get("message"),
        status=status,
        control={k: spec[k] for k in ("suspend", "shutdown") if spec.get(k)},
        created_at=created if created is not None else 0.0,
        finished_at=N.parse_time(status.get("finishedAt")),
        owner=None,
    )


def cluster_store(args: argparse.Namespace) -> ClusterStore:
    return ClusterStore(cluster_of(args), instance_id=instance_id(args))


# The kinds an operator picks by its instance id (SLUICE_INSTANCE_ID): objects the CLI creates carry it.
INSTANCE_KINDS = ("Workflow", "CronWorkflow")


def instance_id(args: argparse.Namespace) -> str:
    """``--instanceid``, else ``$SLUICE_INSTANCE_ID``: the operator instance whose workflows these are."""
    given = getattr(args, "instanceid", None)
    return str(given if given is not None else os.environ.get("SLUICE_INSTANCE_ID", ""))


def with_instance_label(body: JSON, instance: str) -> JSON:
    """``body`` labelled for operator ``instance`` (an operator without an instance id takes only
    objects without the label, so an empty id sets none)."""
    if instance:
        body.setdefault("metadata", {}).setdefault("labels", {})[LABEL_INSTANCE] = instance
    return body


def _workflow(args: argparse.Namespace, name: str) -> JSON:
    """The Workflow object, or the embedded runtime's "not found" error."""
    obj: JSON | None = cluster_of(args).call("GET", _workflow_path(args.namespace, name), absent_ok=True)
    if obj is None:
        raise StateError(f"workflow {name!r} not found in namespace {args.namespace!r}")
    return obj


def _phase(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


# =================================================================================== submit


def workflow_body(
    doc: Document, *, namespace: str, parameters: Sequence[tuple[str, Any]], entrypoint: str | None
) -> JSON:
    """The object to create for one Workflow document: checked as the embedded runtime checks it, as far
    as that needs no cluster (WorkflowTemplate references are the operator's to resolve), with the
    ``-p`` values in ``spec.arguments.parameters`` and ``--entrypoint`` in ``spec.entrypoint``."""
    from engine.workflows.submit import apply_parameters
    from engine.workflows.validate import validate_workflow

    wf: Workflow = doc.obj
    try:
        if not (wf.metadata.name or wf.metadata.generate_name):
            raise SpecError([Problem("metadata.name", "is required (or metadata.generateName)")])
        validate_workflow(wf, allow_empty_arguments=bool(parameters))
        spec = apply_parameters(wf.spec, parameters)
        if entrypoint:
            spec = dataclasses.replace(spec, entrypoint=entrypoint)
        if parameters or entrypoint:
            validate_workflow(dataclasses.replace(wf, spec=spec))
    except SpecError as exc:
        raise (exc if exc.file else exc.with_file(doc.source)) from None
    body = copy.deepcopy(doc.raw)  # apiVersion already sluice.dev (the loader reads Argo's as ours)
    body.setdefault("metadata", {})["namespace"] = namespace
    raw_spec = body.setdefault("spec", {})
    if parameters:
        raw_spec.setdefault("arguments", {})["parameters"] = spec.arguments.dump().get("parameters", [])
    if entrypoint:
        raw_spec["entrypoint"] = entrypoint
    return body


def cmd_submit(args: argparse.Namespace) -> int:
    from engine.cli.main import _apply_objects, _wait_names, parse_parameters

    docs = load_file(args.file)
    workflows = [d for d in docs if d.kind == "Workflow"]
    if not workflows:
        raise SpecError([Problem("kind", "the file has no Workflow document to submit")], file=args.file)
    params = parse_parameters(args.parameter, args.parameter_file)
    # Every document is checked before anything is created.
    bodies = [
        with_instance_label(
            workflow_body(d, namespace=args.namespace, parameters=params, entrypoint=args.entrypoint),
            instance_id(args),
        )
        for d in workflows
    ]
    store = cluster_store(args)
    _apply_objects(store, [d for d in docs if d.kind != "Workflow"], namespace=args.namespace)
    names = []
    for body in bodies:
        made = store.cluster.call("POST", _workflow_path(args.namespace), body=body)
        name = str(made["metadata"]["name"])
        names.append(name)
        if args.output == "name":
            print(name)
        elif not (args.wait or args.watch):
            print(f"Name:      {name}\nNamespace: {args.namespace}\nStatus:    Pending")
        sys.stdout.flush()
    if args.wait or args.watch:
        return _wait_names(args, names, live=args.watch)
    return 0


def cmd_resubmit(args: argparse.Namespace) -> int:
    from engine.cli.main import _wait_names, parse_parameters

    old = _workflow(args, args.name)
    meta = old.get("metadata") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if not _operator_key(k)}
    labels["workflows.argoproj.io/resubmitted-from-workflow"] = str(meta.get("name"))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not _operator_key(k)}
    spec = {k: v for k, v in (old.get("spec") or {}).items() if k not in ("shutdown", "suspend")}
    manifest: JSON = {
        "apiVersion": old.get("apiVersion"),
        "kind": "Workflow",
        "metadata": {
            "generateName": meta.get("generateName") or f"{meta.get('name')}-",
            "labels": labels,
            **({"annotations": annotations} if annotations else {}),
        },
        "spec": spec,
    }
    doc = Document("Workflow", Workflow.parse(manifest), manifest, f"workflow {args.name}", 0)
    params = parse_parameters(args.parameter, [])
    body = workflow_body(doc, namespace=args.namespace, parameters=params, entrypoint=None)
    # The new run goes to the operator instance that ran the old one, unless --instanceid says otherwise.
    old_instance = str((meta.get("labels") or {}).get(LABEL_INSTANCE) or "")
    with_instance_label(
        body, instance_id(args) if getattr(args, "instanceid", None) is not None else old_instance
    )
    made = cluster_of(args).call("POST", _workflow_path(args.namespace), body=body)
    name = str(made["metadata"]["name"])
    print(name if args.output == "name" else f"Name:      {name}")
    if args.wait or args.watch:
        return _wait_names(args, [name], live=args.watch)
    return 0


def _operator_key(key: str) -> bool:
    # Labels and annotations the operator and kubectl keep on an object, not part of what was submitted.
    return key.startswith((f"workflows.{GROUP}/", "workflows.argoproj.io/", "kubectl.kubernetes.io/"))


# =================================================================================== operations


def _running(args: argparse.Namespace) -> JSON:
    """The workflow, refused as the embedded runtime refuses an operation on a finished one."""
    obj = _workflow(args, args.name)
    phase = _phase(obj)
    if phase in WF_COMPLETED:
        raise StateError(f"workflow {args.name!r} has already completed ({phase})")
    return obj


def cmd_simple_op(args: argparse.Namespace) -> int:
    patches: dict[str, JSON] = {
        "stop": {"spec": {"shutdown": "Stop"}},
        "terminate": {"spec": {"shutdown": "Terminate"}},
        "suspend": {"spec": {"suspend": True}},
    }
    patch = patches[args.op]
    _running(args)
    cluster_of(args).merge_patch(_workflow_path(args.namespace, args.name), patch)
    past = {"stop": "stopped", "terminate": "terminated", "suspend": "suspended"}[args.op]
    print(f"workflow {args.name} {past}")
    return 0


def _request(fields: JSON) -> str:
    # The id makes every request a change of the annotation, so the operator sees a repeated one too.
    return json.dumps({**fields, "id": uuid.uuid4().hex})


def cmd_resume(args: argparse.Namespace) -> int:
    from engine.cli.main import parse_parameters
    from engine.runtime.kubernetes.controller import ANNOTATION_RESUME

    node = args.node_field_selector.split("=", 1)[-1] if args.node_field_selector else None
    outputs = dict(parse_parameters(args.output_parameter, [])) or None
    _running(args)
    request = _request({"node": node, "outputs": outputs})
    cluster_of(args).merge_patch(
        _workflow_path(args.namespace, args.name),
        {"metadata": {"annotations": {ANNOTATION_RESUME: request}}, "spec": {"suspend": None}},
    )
    print(f"workflow {args.name} resumed")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from engine.cli.main import _wait_names, parse_parameters
    from engine.runtime.kubernetes.controller import ANNOTATION_RETRY
    from engine.workflows.submit import apply_parameters

    params = parse_parameters(args.parameter, [])
    obj = _workflow(args, args.name)
    phase = _phase(obj)
    if phase not in ("Failed", "Error"):
        raise StateError(
            f"workflow {args.name!r} is {phase or 'running'}: only a Failed or Error one can be retried"
        )
    patch: JSON = {
        # Refused if the object changed since it was read as Failed/Error.
        "metadata": {
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "annotations": {
                ANNOTATION_RETRY: _request(
                    {
                        "restartSuccessful": bool(args.restart_successful),
                        "nodeFieldSelector": args.node_field_selector or None,
                    }
                )
            },
        }
    }
    if params:
        try:
            spec = apply_parameters(Workflow.parse(obj).spec, params)
        except SpecError as exc:
            raise exc.with_file(f"workflow {args.name}") from None
        patch["spec"] = {"arguments": {"parameters": spec.arguments.dump().get("parameters", [])}}
    cluster_of(args).merge_patch(_workflow_path(args.namespace, args.name), patch)
    print(f"workflow {args.name} retried")
    if args.wait or args.watch:
        _until_taken_up(args, args.name, ANNOTATION_RETRY, obj.get("status") or {})
        return _wait_names(args, [args.name], live=args.watch)
    return 0


def _until_taken_up(args: argparse.Namespace, name: str, annotation: str, before: Mapping[str, Any]) -> None:
    """Until the operator has cleared ``annotation`` and written a status other than ``before``: a wait
    that started earlier would find the old Failed status and end at once."""
    while True:
        obj = _workflow(args, name)
        pending = annotation in ((obj.get("metadata") or {}).get("annotations") or {})
        if not pending and (obj.get("status") or {}) != before:
            return
        time.sleep(POLL_SECONDS)


def cmd_delete(args: argparse.Namespace) -> int:
    store = cluster_store(args)
    names = list(args.names)
    if args.all or args.completed:
        for row in store.list_workflows(args.namespace):
            if args.all or row.phase in WF_COMPLETED:
                names.append(row.name)
    if not names:
        raise StateError("nothing to delete (give workflow names, --all or --completed)")
    for name in dict.fromkeys(names):
        if store.cluster.call("DELETE", _workflow_path(args.namespace, name), absent_ok=True) is None:
            raise StateError(f"workflow {name!r} not found in namespace {args.namespace!r}")
        print(f'Workflow "{name}" deleted')
    return 0


# =================================================================================== logs


def pod_log(cluster: Cluster, namespace: str, pod: str) -> str | None:
    """The ``main`` container's log so far; None while the pod has none (not started, or gone)."""
    try:
        text = cluster.api.call(
            "GET",
            path_of("pods", namespace, pod, group="", sub="log"),
            query=[("container", "main")],
            raw=True,
        )
    except ApiError as exc:
        if exc.status in NO_LOG_STATUSES and not _unserved(exc):
            return None
        raise cluster._error(exc, f"pods/{pod}/log") from None
    return str(text)


def cmd_logs(args: argparse.Namespace) -> int:
    from engine.cli.main import _row, log_pods

    store, row = _row(args, args.name)
    cluster = cluster_of(args)
    shown: dict[str, int] = {}  # characters of each pod's log printed so far
    while True:
        finished = row.phase in WF_COMPLETED
        for n, pod in log_pods(row.name, store.load_status(row), args.node):
            text = pod_log(cluster, row.namespace, pod)
            if text is None:
                continue
            new = text[shown.get(pod, 0) :]
            if args.follow and not finished and n.active():
                new = new[: new.rfind("\n") + 1]  # a line still being written waits for its end
            shown[pod] = shown.get(pod, 0) + len(new)
            for line in new.splitlines():
                print(line if args.no_prefix else f"{pod}: {line}")
        sys.stdout.flush()
        if not args.follow or finished:
            return 0
        time.sleep(POLL_SECONDS)
        row = store.get_workflow(row.namespace, row.name) or row


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "submit": cmd_submit,
    "resubmit": cmd_resubmit,
    "stop": cmd_simple_op,
    "terminate": cmd_simple_op,
    "suspend": cmd_simple_op,
    "resume": cmd_resume,
    "retry": cmd_retry,
    "delete": cmd_delete,
    "logs": cmd_logs,
}

__all__ = [
    "ClusterStore",
    "cluster_of",
    "cluster_store",
    "context_namespace",
    "run",
    "wanted",
    "workflow_row",
]
