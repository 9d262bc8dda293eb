"""The local runtime's side of ``k8s`` and ``argoWorkflow`` triggers: workflows and stored objects.

A Workflow a trigger creates (``k8s`` create of a Workflow, ``argoWorkflow`` submit or submit-from) is
submitted to the local engine under the name the firing gave it; when a workflow of that name exists
already and carries the same firing key, the firing was delivered before and nothing more happens.
A trigger's Workflow whose spec passed validation before (argument values aside) is neither validated
nor parsed again: its parsed spec and manifest form are kept by that shape, and a firing only puts its
argument values into them (a sensor submits the same Workflow with new values hundreds of times a second).
Other kinds are objects in the local store (ConfigMaps, WorkflowTemplates, CronWorkflows, anything):
create, update (deep merge over the live object), patch (JSON merge patch) and delete. The other
``argoWorkflow`` operations (resubmit, retry, resume, suspend, terminate, stop) act on the workflow
the source names. Called by :class:`engine.runtime.sensors.SensorRunner` inside ``sluice server``.
"""

from __future__ import annotations

import functools
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from engine.errors import SpecError, StateError
from engine.events.actions import (
    ANNOTATION_FIRING,
    ActionError,
    ObjectAction,
    deep_merge,
    merge_patch,
    name_suffix,
)
from engine.events.sensor import Firing
from engine.runtime.local.engine import LocalEngine, StoreObjects
from engine.runtime.local.store import CLUSTER
from engine.runtime.triggersource import TriggerSources
from engine.spec.events import TriggerTemplate
from engine.spec.loader import normalise_api_version
from engine.spec.workflow import API_VERSION, CronWorkflow, ObjectMeta, Workflow, WorkflowSpec

# How many distinct trigger workflow specs are remembered as valid (a sensor has a handful).
VALID_SPECS_MAX = 256
_WORKFLOW_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec"})


def _masked(p: Any) -> bool:
    """Whether validation_key masks the value of the argument parameter ``p`` (raw manifest form)."""
    return isinstance(p, dict) and isinstance(p.get("value"), str) and "enum" not in p


def validation_key(obj: dict[str, Any]) -> str | None:
    """What the validation of the Workflow ``obj`` depends on, as text; None when it is not cacheable.

    A trigger's Workflow differs from one firing to the next in its metadata and in argument values.
    Validation reads neither metadata nor an argument's value beyond "is it set" and "is it one of its
    ``enum``", so a string value of a parameter without ``enum`` is masked. A spec that refers to stored
    templates (``workflowTemplateRef``, ``templateRef``) is never cached: those may change.
    """
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None
    shape = dict(spec)
    args = spec.get("arguments")
    if isinstance(args, dict) and isinstance(args.get("parameters"), list):
        params = []
        for p in args["parameters"]:
            params.append({**p, "value": ""} if _masked(p) else p)
        shape["arguments"] = {**args, "parameters": params}
    try:
        text = json.dumps([obj.get("kind"), shape], sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    if '"templateRef"' in text or '"workflowTemplateRef"' in text:
        return None
    return text


@dataclass(frozen=True)
class _Shape:
    """A trigger Workflow spec that passed validation: parsed, and in manifest form."""

    spec: WorkflowSpec
    manifest: dict[str, Any]

    def with_values(self, raw: dict[str, Any]) -> tuple[WorkflowSpec, dict[str, Any]]:
        """This spec with the masked argument values of ``raw``, a spec of the same validation key."""
        raw_params = (raw.get("arguments") or {}).get("parameters") or ()
        if not any(_masked(p) for p in raw_params):
            return self.spec, self.manifest
        # Only what changes is copied: the rest is shared with the shape, and nothing writes to either.
        params = list(self.spec.arguments.parameters)
        dumped = list(self.manifest["arguments"]["parameters"])
        for i, p in enumerate(raw_params):
            if _masked(p):
                params[i] = params[i].evolve(value=p["value"])
                dumped[i] = {**dumped[i], "value": p["value"]}
        arguments = self.spec.arguments.evolve(parameters=tuple(params))
        manifest = {**self.manifest, "arguments": {**self.manifest["arguments"], "parameters": dumped}}
        return self.spec.evolve(arguments=arguments), manifest


class LocalObjectActions:
    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.store = engine.store
        # By validation key (see validation_key): trigger Workflow specs that passed validation.
        self._shapes: dict[str, _Shape] = {}

    @functools.cached_property
    def _sources(self) -> TriggerSources:
        return TriggerSources(StoreObjects(self.store))

    def load_source(self, template: TriggerTemplate, namespace: str) -> Any:
        """The text of the trigger's source (:class:`engine.runtime.triggersource.TriggerSources`)."""
        return self._sources.load(template, namespace)

    async def fetch_source(self, template: TriggerTemplate, namespace: str) -> Any:
        """:meth:`load_source` for the event loop: url/s3/git fetches run in a worker thread."""
        return await self._sources.fetch(template, namespace)

    def batch(self) -> AbstractContextManager[None]:
        """The store's batch: the workflows and objects a sensor batch creates commit together."""
        return self.store.batch()

    async def run(self, action: ObjectAction, firing: Firing) -> str:
        obj = normalise_api_version(action.obj)
        kind = str(obj.get("kind") or "")
        if action.trigger_type == "argoWorkflow" and action.operation != "submit":
            return await self._workflow_operation(action.operation, obj, firing)
        if (kind == "Workflow" and action.operation == "create") or action.trigger_type == "argoWorkflow":
            return await self._submit(obj, firing)
        return self._object(action, obj, kind)

    def _parse(self, obj: dict[str, Any], shape: _Shape | None) -> tuple[Workflow, dict[str, Any] | None]:
        """``obj`` as a Workflow, and its spec's manifest form when that came from ``shape``."""
        if shape is not None and obj.keys() <= _WORKFLOW_KEYS and isinstance(obj.get("apiVersion"), str):
            metadata = ObjectMeta.parse(obj.get("metadata") or {}, "metadata")
            spec, manifest = shape.with_values(obj["spec"])
            return Workflow(
                api_version=obj["apiVersion"], kind="Workflow", metadata=metadata, spec=spec
            ), manifest
        return Workflow.parse(obj), None

    async def _submit(self, obj: dict[str, Any], firing: Firing) -> str:
        key = validation_key(obj)
        shape = self._shapes.get(key) if key is not None else None
        try:
            wf, spec_manifest = self._parse(obj, shape)
        except SpecError as exc:
            raise ActionError(f"the trigger's Workflow is invalid: {exc.one_line()}") from None
        namespace = wf.metadata.namespace or "default"
        name = wf.metadata.name or ""
        # The store's name constraint makes the insert the check: the existing workflow is read only
        # when the submission fails, to tell a redelivered firing from a name taken by another one.
        try:
            run = await self.engine.submit(
                wf, namespace=namespace, validated=shape is not None, spec_manifest=spec_manifest
            )
        except SpecError as exc:
            done = self._submitted_before(namespace, name, firing)
            if done is not None:
                return done
            raise ActionError(f"the trigger's Workflow is invalid: {exc.one_line()}") from None
        except StateError:
            done = self._submitted_before(namespace, name, firing)
            if done is not None:
                return done
            raise
        if key is not None and shape is None:
            if len(self._shapes) >= VALID_SPECS_MAX:
                self._shapes.clear()
            self._shapes[key] = _Shape(wf.spec, wf.spec.dump())
        return f"workflow/{run.name} submitted"

    def _submitted_before(self, namespace: str, name: str, firing: Firing) -> str | None:
        """What to answer when a workflow named ``name`` exists: this firing made it, or ActionError.

        None when there is no such workflow (the submission failed for another reason).
        """
        existing = self.store.get_workflow(namespace, name) if name else None
        if existing is None:
            return None
        annotations = (existing.manifest.get("metadata") or {}).get("annotations") or {}
        if annotations.get(ANNOTATION_FIRING) == firing.key:
            return f"workflow/{name} was already submitted for this firing"
        raise ActionError(f"workflow {name!r} already exists in namespace {namespace!r}")

    async def _workflow_operation(self, operation: str, obj: dict[str, Any], firing: Firing) -> str:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        namespace = str(meta.get("namespace") or "default")
        if not name:
            raise ActionError(f"argoWorkflow {operation}: the source names no object (metadata.name)")
        if operation == "submit-from":
            return await self._submit(self._from(obj, name, namespace, firing), firing)
        eng = self.engine
        if operation == "resubmit":
            run = await eng.resubmit(name, namespace)
            return f"workflow/{name} resubmitted as {run.name}"
        if operation == "retry":
            run = await eng.retry(name, namespace)
            return f"workflow/{run.name} retried"
        if operation == "resume":
            eng.resume(name, namespace)
        elif operation == "suspend":
            eng.suspend(name, namespace)
        elif operation == "terminate":
            eng.terminate(name, namespace)
        elif operation == "stop":
            eng.stop(name, namespace)
        else:
            raise ActionError(f"unknown argoWorkflow operation {operation!r}")
        return f"workflow/{name} {operation}"

    def _from(self, obj: dict[str, Any], name: str, namespace: str, firing: Firing) -> dict[str, Any]:
        """The Workflow ``submit --from`` makes of a CronWorkflow or a (Cluster)WorkflowTemplate."""
        kind = str(obj.get("kind") or "")
        metadata: dict[str, Any] = {
            "name": f"{name}-{name_suffix(firing.key)}",
            "namespace": namespace,
            "labels": dict((obj.get("metadata") or {}).get("labels") or {}),
            "annotations": {ANNOTATION_FIRING: firing.key},
        }
        if kind == "CronWorkflow":
            stored = self.store.get_object("CronWorkflow", namespace, name)
            if stored is None:
                raise StateError(f"CronWorkflow {name!r} not found in namespace {namespace!r}")
            cron = CronWorkflow.parse(normalise_api_version(stored))
            assert cron.spec is not None
            metadata["labels"]["workflows.argoproj.io/cron-workflow"] = name
            spec: dict[str, Any] = cron.spec.workflow_spec.dump()
        elif kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
            cluster = kind == "ClusterWorkflowTemplate"
            if self.store.get_object(kind, CLUSTER if cluster else namespace, name) is None:
                raise StateError(f"{kind} {name!r} not found")
            spec = {"workflowTemplateRef": {"name": name, **({"clusterScope": True} if cluster else {})}}
        else:
            raise ActionError(
                f"argoWorkflow submit-from: expected a CronWorkflow or WorkflowTemplate, not {kind!r}"
            )
        return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata, "spec": spec}

    def _object(self, action: ObjectAction, obj: dict[str, Any], kind: str) -> str:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not kind or not name:
            raise ActionError("the trigger's object needs a kind and metadata.name")
        namespace = CLUSTER if kind.startswith("Cluster") else str(meta.get("namespace") or "default")
        live = self.store.get_object(kind, namespace, name)
        op = action.operation
        if op == "delete":
            self.store.delete_object(kind, namespace, name)
            return f"{kind.lower()}/{name} deleted" if live else f"{kind.lower()}/{name} was already gone"
        if op == "create" or live is None:
            if live is not None:
                annotations = (live.get("metadata") or {}).get("annotations") or {}
                if annotations.get(ANNOTATION_FIRING) == (meta.get("annotations") or {}).get(
                    ANNOTATION_FIRING
                ):
                    return f"{kind.lower()}/{name} was already created for this firing"
                raise ActionError(f"{kind} {name!r} already exists")
            self.store.put_object(kind, namespace, name, obj)
            return f"{kind.lower()}/{name} created"
        if op == "update":
            self.store.put_object(kind, namespace, name, deep_merge(live, obj))
            return f"{kind.lower()}/{name} updated"
        if action.patch_strategy != "application/merge-patch+json":
            raise ActionError(
                f"patch strategy {action.patch_strategy!r} is not supported by the local runtime"
            )
        self.store.put_object(kind, namespace, name, merge_patch(live, obj))
        return f"{kind.lower()}/{name} patched"


__all__ = ["LocalObjectActions"]
