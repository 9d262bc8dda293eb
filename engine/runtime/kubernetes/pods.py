"""The pod of one step: a pure function from the core's StepRun to a Pod manifest.

Called by the operator when a plan says RunStep. The layout follows the capture design in this
package's docstring: an ``init`` container and a ``wait`` container of ours around the template's
containers, a shared ``emptyDir`` at ``/var/run/sluice``, and ``sluice-run`` in front of every
container that has to report back or be stopped. Names are deterministic (the core's pod name), so a
create that is retried after a crash finds the pod already there instead of starting a second one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ExecutorError
from engine.runtime.images import ImageTable
from engine.spec.crd import GROUP, VERSION
from engine.workflows.plan import JSONDict, StepRun

VAR_DIR = "/var/run/sluice"
VAR_VOLUME = "sluice-var"
WRAPPER = f"{VAR_DIR}/bin/sluice-run"
SCRIPT_PATH = f"{VAR_DIR}/staging/script"
INPUTS_DIR = "inputs/artifacts"  # relative to VAR_DIR, as the subPath of input artifact mounts
EXECUTOR_CONTAINERS = ("init", "wait")
# The kubelet may stop a pod (its deadline, a stop) before wait's Python has set up its SIGTERM handler:
# SIGTERM is ignored until then, so an early one leaves wait waiting for main as usual, not dead.
WAIT_COMMAND = ["sh", "-c", "trap '' TERM; exec sluice executor wait"]

LABEL_WORKFLOW = f"workflows.{GROUP}/workflow"
LABEL_COMPLETED = f"workflows.{GROUP}/completed"
LABEL_INSTANCE = f"workflows.{GROUP}/controller-instanceid"
ANNOTATION_NODE_ID = f"workflows.{GROUP}/node-id"
ANNOTATION_NODE_NAME = f"workflows.{GROUP}/node-name"
# Why the operator cut a running pod's deadline short (stop, terminate, a deadline): the node's message.
ANNOTATION_STOP_MESSAGE = f"workflows.{GROUP}/stop-message"
STEP_ENV = "SLUICE_STEP"
# "http" on the pods of http steps, whose main container reports a verdict of its own (see
# engine.runtime.kubernetes.podstate); absent on other step pods.
ANNOTATION_STEP_KIND = f"workflows.{GROUP}/step-kind"
# An http step's main container (``sluice executor http``) finds its request here, as JSON:
# {"v": 1, "request": <the template's http>, "secrets": [{"name", "key", "env"}]}, where each secret
# names the variable of the same container that the kubelet fills from that Secret's key.
HTTP_ENV = "SLUICE_HTTP"
HTTP_SECRET_ENV_PREFIX = "SLUICE_HTTP_SECRET_"

# Fields of the core's pod_spec copied onto the pod as they are.
_POD_FIELDS = (
    "serviceAccountName",
    "automountServiceAccountToken",
    "nodeSelector",
    "tolerations",
    "affinity",
    "securityContext",
    "schedulerName",
    "priorityClassName",
    "hostAliases",
    "imagePullSecrets",
    "dnsConfig",
    "dnsPolicy",
    "hostNetwork",
    "runtimeClassName",
    "resourceClaims",
)


@dataclass(frozen=True, slots=True)
class PodSettings:
    """What the operator's configuration adds to every step pod."""

    executor_image: str
    executor_image_pull_policy: str | None = None
    # Requests/limits of the init and wait containers.
    executor_resources: JSONDict | None = None
    # Environment of the init and wait containers: artifact repository endpoint, bucket, credentials
    # (as secretKeyRef entries, so the secret's values never appear in the pod spec).
    executor_env: tuple[JSONDict, ...] = ()
    instance_id: str | None = None
    images: ImageTable = field(default_factory=ImageTable)
    # How long a sidecar may take to stop after main has exited, before sluice-run kills it.
    sidecar_grace_seconds: int = 10


def build_pod(step: StepRun, settings: PodSettings, *, now: float) -> JSONDict:
    """The Pod manifest for a container, script, containerSet or http step."""
    if step.kind == "http":
        step = _http_step(step, settings)
    elif step.kind not in ("container", "script", "containerSet"):
        raise ExecutorError(f"a {step.kind} step does not run as a pod")
    doc = step_document(step)
    mains = _main_containers(step, settings)
    wrapped = [c["name"] for c in mains if (c.get("command") or [])[:1] == [WRAPPER]]
    doc["wrapped"] = wrapped
    needs_files = bool(step.output_parameters or step.output_artifacts)
    if needs_files and "main" not in wrapped:
        raise ExecutorError(
            f"image {step.container.get('image')!r} has no known entrypoint: give the container a command"
            " (or add the image to the image table) so its outputs can be captured"
        )
    main_mounts = list(step.container.get("volumeMounts") or ())
    sidecars = [_sidecar(_mirrored(c, main_mounts), i, settings) for i, c in enumerate(step.sidecars)]
    inits = [
        _user_container(_mirrored(c, main_mounts), str(c.get("name") or f"init-{i}"))
        for i, c in enumerate(step.init_containers)
    ]
    step_json = env_literal(json.dumps(doc, separators=(",", ":"), sort_keys=True))
    executor_mount = {"name": VAR_VOLUME, "mountPath": VAR_DIR}
    spec: JSONDict = {
        "restartPolicy": "Never",
        "initContainers": [
            _executor("init", ["sluice", "executor", "init"], step_json, settings, executor_mount),
            *inits,
        ],
        "containers": [
            *mains,
            *([_executor("wait", WAIT_COMMAND, step_json, settings, executor_mount)]),
            *sidecars,
        ],
        "volumes": [{"name": VAR_VOLUME, "emptyDir": {}}, *step.volumes],
    }
    for key in _POD_FIELDS:
        if key in step.pod_spec:
            spec[key] = step.pod_spec[key]
    if step.deadline is not None:
        # The kubelet enforces it too, so a step dies on time even while the operator is down.
        spec["activeDeadlineSeconds"] = max(1, math.ceil(step.deadline - now))
    patch = step.pod_spec.get("podSpecPatch")
    if patch:
        spec = merge_pod_spec(spec, _parse_patch(patch))
    pod: JSONDict = _plain(
        {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(step, settings), "spec": spec}
    )
    return pod


def _plain(value: Any) -> Any:
    """JSON-ready: the core's values may hold tuples."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def step_document(step: StepRun) -> JSONDict:
    """What the init and wait containers are told about the step (``$SLUICE_STEP``, JSON)."""
    doc: JSONDict = {
        "v": 1,
        "workflow": step.workflow_name,
        "namespace": step.namespace,
        "pod": step.pod_name,
        "node": step.node_id,
        "result": step.capture_result,
        "inputs": list(step.input_artifacts),
        "parameters": [
            {"name": p.name, "path": p.path, **({"default": p.default} if p.default is not None else {})}
            for p in step.output_parameters
        ],
        "artifacts": [
            {
                "name": a.name,
                "path": a.path,
                "key": a.key,
                "optional": a.optional,
                **({"archive": a.archive} if a.archive is not None else {}),
                **({"location": a.location} if a.location is not None else {}),
            }
            for a in step.output_artifacts
        ],
        "archiveLogs": step.archive_logs,
        "containers": [str(c.get("name") or "") for c in step.containers] if step.containers else ["main"],
    }
    if step.script_source is not None:
        doc["script"] = step.script_source
    return doc


def argo_env(step: StepRun, container: str) -> list[JSONDict]:
    """The variables Argo gives every step container; the pod's uid comes from the downward API."""
    env: list[JSONDict] = [
        {"name": "ARGO_POD_NAME", "value": step.pod_name},
        {"name": "ARGO_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "ARGO_NODE_ID", "value": step.node_id},
        {"name": "ARGO_WORKFLOW_NAME", "value": step.workflow_name},
        {"name": "ARGO_WORKFLOW_UID", "value": step.workflow_uid},
        {"name": "ARGO_CONTAINER_NAME", "value": container},
        {"name": "ARGO_TEMPLATE", "value": json.dumps({"name": step.template_name}, separators=(",", ":"))},
        {"name": "ARGO_INCLUDE_SCRIPT_OUTPUT", "value": "true" if step.capture_result else "false"},
    ]
    return env


# ------------------------------------------------------------------------------------------ http


def _http_step(step: StepRun, settings: PodSettings) -> StepRun:
    """An http step as a step of one container: ``sluice executor http`` from the executor image.

    The pod is otherwise every step's (init and wait, ``sluice-run`` in front of main), so main's stdout,
    the response body, becomes the result by the usual capture. The body is always kept and the
    template's outputs, artifacts, volumes and containers play no part, as on the embedded runtime.
    Header values from Secrets reach the container as ``secretKeyRef`` variables that the kubelet
    fills: their values never appear in the pod (nor does the operator read them)."""
    request = dict(step.http or {})
    variables: dict[tuple[str, str], str] = {}
    for header in request.get("headers") or ():
        if not isinstance(header, Mapping) or "value" in header:
            continue
        ref = (header.get("valueFrom") or {}).get("secretKeyRef")
        if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("key"):
            continue  # left to the request's own check, which names the header
        variables.setdefault((str(ref["name"]), str(ref["key"])), f"{HTTP_SECRET_ENV_PREFIX}{len(variables)}")
    doc = {
        "v": 1,
        "request": request,
        "secrets": [{"name": name, "key": key, "env": env} for (name, key), env in variables.items()],
    }
    text = env_literal(json.dumps(doc, separators=(",", ":"), sort_keys=True))
    env: list[JSONDict] = [{"name": HTTP_ENV, "value": text}]
    # optional: a missing Secret or key leaves the variable unset and the request fails with the embedded
    # runtime's message, rather than the container waiting for the Secret for ever.
    env += [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key, "optional": True}}}
        for (name, key), var in variables.items()
    ]
    container: JSONDict = {
        "name": "main",
        "image": settings.executor_image,
        "command": ["sluice", "executor", "http"],
        "env": env,
    }
    if settings.executor_image_pull_policy:
        container["imagePullPolicy"] = settings.executor_image_pull_policy
    if settings.executor_resources:
        container["resources"] = settings.executor_resources
    return dataclasses.replace(
        step,
        container=container,
        script_source=None,
        init_containers=(),
        sidecars=(),
        containers=(),
        volumes=(),
        input_artifacts=(),
        output_parameters=(),
        output_artifacts=(),
        capture_result=True,
        archive_logs=False,
    )


# ------------------------------------------------------------------------------------------ containers


def _main_containers(step: StepRun, settings: PodSettings) -> list[JSONDict]:
    if step.kind == "containerSet":
        out = []
        for c in step.containers:
            name = str(c.get("name") or "")
            deps = [str(d) for d in c.get("dependencies") or ()]
            body = {k: v for k, v in c.items() if k != "dependencies"}
            out.append(
                _wrapped(
                    step,
                    body,
                    name,
                    settings,
                    flags=[*(["--after", ",".join(deps)] if deps else []), *_save_flags(step, name)],
                    capture=step.capture_result and name == "main",
                )
            )
        return out
    extra = [SCRIPT_PATH] if step.kind == "script" else []
    return [
        _wrapped(
            step,
            step.container,
            "main",
            settings,
            flags=_save_flags(step, "main"),
            capture=step.capture_result,
            extra_args=extra,
        )
    ]


def _save_flags(step: StepRun, name: str) -> list[str]:
    """``--save`` pairs: where sluice-run copies each output path once the command has exited."""
    if name != "main":
        return []
    flags: list[str] = []
    for p in step.output_parameters:
        flags += ["--save", f"parameters/{p.name}={p.path}"]
    for a in step.output_artifacts:
        flags += ["--save", f"artifacts/{a.name}={a.path}"]
    return flags


def _wrapped(
    step: StepRun,
    c: Mapping[str, Any],
    name: str,
    settings: PodSettings,
    *,
    flags: Sequence[str],
    capture: bool,
    extra_args: Sequence[str] = (),
) -> JSONDict:
    out = _user_container(c, name)
    argv = _argv(c, settings.images)
    env = [*argo_env(step, name), *(out.get("env") or [])]
    out["env"] = env
    mounts = [*(out.get("volumeMounts") or []), {"name": VAR_VOLUME, "mountPath": VAR_DIR}]
    if name == "main":
        mounts += [
            {"name": VAR_VOLUME, "mountPath": str(a["path"]), "subPath": f"{INPUTS_DIR}/{a['name']}"}
            for a in step.input_artifacts
            if a.get("path")
        ]
    out["volumeMounts"] = mounts
    if argv is None:
        # Unknown entrypoint: run as written; only the exit code and the log are observed.
        if extra_args:
            out["args"] = [*(out.get("args") or []), *extra_args]
        return out
    out["command"] = [WRAPPER, "--name", name, *(["--stdout"] if capture else []), *flags, "--", *argv]
    out["args"] = list(extra_args)
    return out


def _sidecar(c: Mapping[str, Any], i: int, settings: PodSettings) -> JSONDict:
    name = str(c.get("name") or f"sidecar-{i}")
    out = _user_container(c, name)
    argv = _argv(c, settings.images)
    if argv is None:
        raise ExecutorError(
            f"sidecar {name!r}: image {c.get('image')!r} has no known entrypoint: give it a command so it"
            " can be stopped when main exits"
        )
    grace = str(settings.sidecar_grace_seconds)
    out["command"] = [WRAPPER, "--name", name, "--stop-on", "main", "--grace", grace, "--", *argv]
    out["args"] = []
    out["volumeMounts"] = [*(out.get("volumeMounts") or []), {"name": VAR_VOLUME, "mountPath": VAR_DIR}]
    return out


def _argv(c: Mapping[str, Any], images: ImageTable) -> list[str] | None:
    """The command line the container runs (Kubernetes' rule), or None when the image's is unknown."""
    command = c.get("command")
    args = c.get("args")
    if command:
        return [*map(str, command), *map(str, args or ())]
    return images.argv(str(c.get("image") or ""), [str(a) for a in args] if args is not None else None)


def _mirrored(c: Mapping[str, Any], main_mounts: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """``mirrorVolumeMounts``: the container also mounts what main mounts, at the same paths."""
    if not c.get("mirrorVolumeMounts"):
        return c
    own = list(c.get("volumeMounts") or ())
    paths = {m.get("mountPath") for m in own}
    return {**c, "volumeMounts": [*own, *(dict(m) for m in main_mounts if m.get("mountPath") not in paths)]}


def _user_container(c: Mapping[str, Any], name: str) -> JSONDict:
    """A template container as a pod container: our bookkeeping fields dropped, the name set."""
    out = {k: v for k, v in c.items() if k not in ("mirrorVolumeMounts", "dependencies")}
    out["name"] = name
    return out


def env_literal(text: str) -> str:
    """``text`` as an env value the kubelet passes on as written: it expands ``$(VAR)`` and reads
    ``$$`` as ``$``, and a script, a request body or a url may hold either."""
    return text.replace("$", "$$")


def _executor(
    name: str, command: list[str], step_json: str, settings: PodSettings, mount: JSONDict
) -> JSONDict:
    out: JSONDict = {
        "name": name,
        "image": settings.executor_image,
        "command": command,
        "env": [{"name": STEP_ENV, "value": step_json}, *settings.executor_env],
        "volumeMounts": [mount],
    }
    if settings.executor_image_pull_policy:
        out["imagePullPolicy"] = settings.executor_image_pull_policy
    if settings.executor_resources:
        out["resources"] = settings.executor_resources
    return out


# ------------------------------------------------------------------------------------------ metadata


def _metadata(step: StepRun, settings: PodSettings) -> JSONDict:
    labels = dict(step.pod_metadata.get("labels") or {})
    labels[LABEL_WORKFLOW] = step.workflow_name
    labels[LABEL_COMPLETED] = "false"
    if settings.instance_id:
        labels[LABEL_INSTANCE] = settings.instance_id
    annotations = dict(step.pod_metadata.get("annotations") or {})
    annotations[ANNOTATION_NODE_ID] = step.node_id
    annotations[ANNOTATION_NODE_NAME] = step.node_name
    if step.kind == "http":
        annotations[ANNOTATION_STEP_KIND] = "http"
    return {
        "name": step.pod_name,
        "namespace": step.namespace,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Workflow",
                "name": step.workflow_name,
                "uid": step.workflow_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


# ------------------------------------------------------------------------------------------ podSpecPatch


def _parse_patch(patch: Any) -> JSONDict:
    if isinstance(patch, Mapping):
        return dict(patch)
    import yaml

    try:
        parsed = yaml.safe_load(str(patch))
    except yaml.YAMLError as exc:
        raise ExecutorError(f"podSpecPatch is not valid YAML or JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ExecutorError("podSpecPatch must be a mapping")
    return parsed


def merge_pod_spec(spec: Mapping[str, Any], patch: Mapping[str, Any]) -> JSONDict:
    """Kubernetes' strategic merge for a pod spec: lists of named items (containers, volumes...) merge
    by name, other lists are replaced, maps merge, ``null`` deletes."""
    out: JSONDict = dict(spec)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_pod_spec(out[key], value)
        elif (
            isinstance(value, list) and isinstance(out.get(key), list) and _named(value) and _named(out[key])
        ):
            merged = {str(item["name"]): dict(item) for item in out[key]}
            order = [str(item["name"]) for item in out[key]]
            for item in value:
                n = str(item["name"])
                if n in merged:
                    merged[n] = merge_pod_spec(merged[n], item)
                else:
                    merged[n] = dict(item)
                    order.append(n)
            out[key] = [merged[n] for n in order]
        else:
            out[key] = value
    return out


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, Mapping) and "name" in i for i in items)


__all__ = [
    "ANNOTATION_NODE_ID",
    "ANNOTATION_NODE_NAME",
    "ANNOTATION_STEP_KIND",
    "HTTP_ENV",
    "HTTP_SECRET_ENV_PREFIX",
    "LABEL_COMPLETED",
    "LABEL_WORKFLOW",
    "STEP_ENV",
    "VAR_DIR",
    "WRAPPER",
    "PodSettings",
    "argo_env",
    "build_pod",
    "merge_pod_spec",
    "step_document",
]
