"""Building the StepRun for a leaf node: the template's container/script/http... after substitution.

The runtime receives everything resolved: the main container in manifest form, the script source,
input artifacts with their locations, where to read output parameters and artifacts, the deadline,
the pod-level fields a Kubernetes runtime needs. Tags are substituted once, here, with the leaf's own
scope (inputs, pod.name, retries, workflow globals). Called by the reconciler when it starts a leaf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import SluiceError
from engine.workflows.invocation import Invocation
from engine.workflows.nodes import Node, pod_name
from engine.workflows.plan import OutputArtifactSpec, OutputParameterSpec, StepKind, StepRun
from engine.workflows.scope import has_json_tags

if TYPE_CHECKING:
    from engine.workflows.reconciler import Reconciler

_KINDS: dict[str, StepKind] = {
    "container": "container",
    "script": "script",
    "http": "http",
    "container_set": "containerSet",
    "resource": "resource",
    "plugin": "plugin",
    "data": "data",
}

# Pod-level fields passed through to runtimes that build pods; template values win over the workflow's.
_POD_FIELDS = (
    "node_selector",
    "affinity",
    "tolerations",
    "security_context",
    "service_account_name",
    "automount_service_account_token",
    "scheduler_name",
    "host_aliases",
    "pod_spec_patch",
)
_POD_KEYS = {
    "node_selector": "nodeSelector",
    "affinity": "affinity",
    "tolerations": "tolerations",
    "security_context": "securityContext",
    "service_account_name": "serviceAccountName",
    "automount_service_account_token": "automountServiceAccountToken",
    "scheduler_name": "schedulerName",
    "host_aliases": "hostAliases",
    "pod_spec_patch": "podSpecPatch",
}


def _sub(inv: Invocation, value: Any) -> Any:
    return inv.scope.substitute_json(value) if has_json_tags(value) else value


def _dump(rec: Reconciler, obj: Any) -> tuple[dict[str, Any], bool]:
    """The object's manifest form and whether it holds any tag, computed once per template object."""
    hit = rec.dump_cache.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1], hit[2]
    dumped: dict[str, Any] = obj.dump()
    tagged = has_json_tags(dumped)
    rec.dump_cache[id(obj)] = (obj, dumped, tagged)
    return dumped, tagged


def _sub_dump(rec: Reconciler, inv: Invocation, obj: Any) -> dict[str, Any]:
    dumped, tagged = _dump(rec, obj)
    return inv.scope.substitute_json(dumped) if tagged else dumped


def build_step_run(rec: Reconciler, node: Node, inv: Invocation) -> StepRun:
    tmpl = inv.template
    kind = tmpl.kind
    if kind is None or kind not in _KINDS:
        raise SluiceError(f"template {tmpl.name!r} cannot run as a step")
    scope = inv.scope
    pname = pod_name(rec.name, node.id, tmpl.name)
    container: dict[str, Any] = {}
    script_source: str | None = None
    if tmpl.container is not None:
        container = _sub_dump(rec, inv, tmpl.container)
    elif tmpl.script is not None:
        raw = dict(_dump(rec, tmpl.script)[0])
        source = raw.pop("source")
        container = _sub(inv, raw)
        script_source = scope.substitute(source) if "{{" in source else source
    containers: tuple[dict[str, Any], ...] = ()
    if tmpl.container_set is not None:
        cs = _sub_dump(rec, inv, tmpl.container_set)
        containers = tuple(cs.get("containers", ()))
        if cs.get("volumeMounts"):
            containers = tuple(
                {**c, "volumeMounts": list(c.get("volumeMounts", [])) + list(cs["volumeMounts"])}
                for c in containers
            )
    volumes: list[dict[str, Any]] = [*rec.spec_volumes(), *(_sub(inv, v) for v in tmpl.volumes)]
    out_params = []
    for p in tmpl.outputs.parameters:
        vf = p.value_from
        if vf is not None and vf.path:
            out_params.append(
                OutputParameterSpec(
                    name=p.name,
                    path=scope.substitute(vf.path),
                    default=scope.substitute(vf.default) if vf.default is not None else None,
                )
            )
    out_arts = []
    for a in tmpl.outputs.artifacts:
        if not a.path:
            continue
        archive = a.archive
        plain = isinstance(archive, dict) and "none" in archive
        key = f"{rec.name}/{pname}/{a.name}" + ("" if plain else ".tgz")
        location = None
        if a.has_location():
            location = {k: v for k, v in _sub(inv, a.dump()).items() if k in a.LOCATION_KEYS}
        out_arts.append(
            OutputArtifactSpec(
                name=a.name,
                path=scope.substitute(a.path),
                key=key,
                optional=bool(a.optional),
                archive=archive,
                location=location,
            )
        )
    pod_spec: dict[str, Any] = {}
    for f in _POD_FIELDS:
        v = getattr(tmpl, f, None) or getattr(rec.spec, f, None)
        if v:
            pod_spec[_POD_KEYS[f]] = _sub(inv, v)
    for f, k in (
        ("image_pull_secrets", "imagePullSecrets"),
        ("dns_config", "dnsConfig"),
        ("dns_policy", "dnsPolicy"),
        ("host_network", "hostNetwork"),
        ("pod_priority_class_name", "priorityClassName"),
    ):
        v = getattr(rec.spec, f, None)
        if v:
            pod_spec[k] = v
    if tmpl.priority_class_name:
        pod_spec["priorityClassName"] = tmpl.priority_class_name
    metadata: dict[str, Any] = {}
    for md in (rec.spec.pod_metadata, tmpl.metadata):
        if md is not None:
            if md.labels:
                metadata.setdefault("labels", {}).update(_sub(inv, dict(md.labels)))
            if md.annotations:
                metadata.setdefault("annotations", {}).update(_sub(inv, dict(md.annotations)))
    retries = scope.get("retries")
    archive_logs = bool(rec.spec.archive_logs) or bool(
        isinstance(tmpl.archive_location, dict) and tmpl.archive_location.get("archiveLogs")
    )
    return StepRun(
        node_id=node.id,
        node_name=node.name,
        pod_name=pname,
        template_name=tmpl.name or node.template_name or "",
        kind=_KINDS[kind],
        workflow_name=rec.name,
        workflow_uid=rec.uid,
        namespace=rec.namespace,
        container=container,
        script_source=script_source,
        init_containers=tuple(_sub(inv, c.dump()) for c in tmpl.init_containers),
        sidecars=tuple(_sub(inv, c.dump()) for c in tmpl.sidecars),
        containers=containers,
        volumes=tuple(volumes),
        input_artifacts=tuple(inv.artifacts),
        input_parameters=tuple(inv.parameters.items()),
        output_parameters=tuple(out_params),
        output_artifacts=tuple(out_arts),
        capture_result=rec.capture_result,
        deadline=rec.step_deadline(node, inv),
        daemon=bool(tmpl.daemon),
        attempt=int(retries) if isinstance(retries, str) and retries.isdigit() else 0,
        http=_sub(inv, tmpl.http.dump()) if tmpl.http is not None else None,
        resource=_sub(inv, tmpl.resource.dump()) if tmpl.resource is not None else None,
        pod_metadata=metadata,
        pod_spec=pod_spec,
        archive_logs=archive_logs,
    )
