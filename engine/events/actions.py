"""What a firing does: the trigger's action as data, for a runtime to carry out.

:func:`plan_action` takes a compiled trigger, a :class:`~engine.events.sensor.Firing` and, for trigger
sources that live outside the sensor (a ConfigMap key, a file), the object already loaded by the
runtime. It applies the trigger-level parameters to the trigger template itself, then the resource or
payload parameters to the object, and returns one of:

* :class:`ObjectAction` for ``k8s`` and for ``argoWorkflow`` (``submit`` creates the Workflow; the
  other operations name an existing workflow or, for ``submit-from``, a WorkflowTemplate/CronWorkflow);
* :class:`HttpAction` for ``http`` (secure headers stay references: the runtime reads the Secrets);
* :class:`LogAction` for ``log``.

Created objects get a fixed name so a firing delivered twice creates one object: ``generateName`` plus a
suffix derived from the firing key (an object that names itself keeps its name). They carry the sensor
and trigger labels Argo sets and the ids of the events that fired them in an annotation. Pure: called
by the local server and by ``sluice sensor run``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from engine.errors import ExprError, SpecError
from engine.events.parameters import apply_all
from engine.events.sensor import CompiledTrigger, Firing
from engine.spec.events import HTTPTrigger, SecureHeader, TriggerTemplate

LABEL_SENSOR = "events.argoproj.io/sensor"
LABEL_TRIGGER = "events.argoproj.io/trigger"
LABEL_ACTION_TIMESTAMP = "events.argoproj.io/action-timestamp"
ANNOTATION_EVENT_IDS = "events.sluice.dev/event-ids"
ANNOTATION_FIRING = "events.sluice.dev/firing"
DEFAULT_HTTP_TIMEOUT = 60.0
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True, slots=True)
class ObjectAction:
    trigger_type: str  # "k8s" or "argoWorkflow"
    operation: str  # create/update/patch/delete, or submit/submit-from/resubmit/retry/resume/...
    obj: dict[str, Any]
    patch_strategy: str = "application/merge-patch+json"
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpAction:
    url: str
    method: str
    headers: Mapping[str, str]
    secure_headers: tuple[SecureHeader, ...]
    body: bytes | None
    timeout: float
    allow: tuple[int, ...]  # accepted status codes; empty = any answer counts as success


@dataclass(frozen=True, slots=True)
class LogAction:
    text: str


Action = ObjectAction | HttpAction | LogAction


class ActionError(ExprError):
    """The firing cannot become an action (a parameter has no value, the source is not an object...)."""


def name_suffix(key: str, length: int = 10) -> str:
    """A random-looking suffix derived from ``key``, so it is the same every time for the same firing.

    Ten characters (27**10 names), not Kubernetes' five: two firings that drew the same name would make
    the second one fail, and at five characters that happens about once in 4,000 events.
    """
    n = int(key, 16)
    out = []
    for _ in range(length):
        n, r = divmod(n, len(_SUFFIX_ALPHABET))
        out.append(_SUFFIX_ALPHABET[r])
    return "".join(out)


def trigger_template(trigger: CompiledTrigger, firing: Firing) -> TriggerTemplate:
    """The trigger's template with the trigger-level parameters of ``firing`` applied (they may set the
    source's location too). Raises ActionError when they cannot be."""
    tpl = trigger.spec.template
    assert tpl is not None
    if not trigger.spec.parameters:
        return tpl
    try:
        raw = apply_all(tpl.dump(), trigger.spec.parameters, firing.events)
        return TriggerTemplate.parse(raw, "template")
    except SpecError as exc:
        raise ActionError(f"trigger parameters made the template invalid: {exc.one_line()}") from None
    except ExprError as exc:
        raise ActionError(str(exc)) from None


def copy_tree(value: Any) -> Any:
    """A deep copy of parsed YAML/JSON (mappings, lists, scalars), several times faster than
    ``copy.deepcopy``, which a trigger's source object goes through once per firing."""
    if type(value) is dict:
        return {k: copy_tree(v) for k, v in value.items()}
    if type(value) is list:
        return [copy_tree(v) for v in value]
    if isinstance(value, str | int | float | bool | None):
        return value
    return copy.deepcopy(value)


def source_object(tpl: TriggerTemplate, loaded: Any = None) -> dict[str, Any]:
    """The object a k8s/argoWorkflow trigger starts from; ``loaded`` is a ConfigMap value or file text."""
    spec = tpl.k8s or tpl.argo_workflow
    location = spec.source if spec else None
    if location is None:
        raise ActionError("the trigger has no source")
    if location.resource is not None:
        obj: Any = copy_tree(location.resource)
    else:
        text = location.inline if location.inline is not None else loaded
        if not isinstance(text, str):
            raise ActionError(f"the trigger's {location.kind()} source was not loaded")
        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ActionError(f"the trigger's {location.kind()} source is not YAML: {exc}") from None
    if not isinstance(obj, dict):
        raise ActionError("the trigger's source is not an object (a mapping with apiVersion and kind)")
    return obj


def _stamp(obj: dict[str, Any], trigger: CompiledTrigger, firing: Firing, now: float, namespace: str) -> None:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ActionError("the object's metadata is not a mapping")
    meta.setdefault("namespace", namespace)
    labels = meta.setdefault("labels", {})
    annotations = meta.setdefault("annotations", {})
    if not isinstance(labels, dict) or not isinstance(annotations, dict):
        raise ActionError("the object's labels and annotations must be mappings")
    labels[LABEL_SENSOR] = trigger.sensor
    labels[LABEL_TRIGGER] = trigger.name
    labels[LABEL_ACTION_TIMESTAMP] = str(int(now * 1000))
    annotations[ANNOTATION_EVENT_IDS] = ",".join(firing.event_ids())
    annotations[ANNOTATION_FIRING] = firing.key
    if not meta.get("name"):
        prefix = meta.pop("generateName", None)
        if not isinstance(prefix, str) or not prefix:
            raise ActionError("the object has neither metadata.name nor metadata.generateName")
        meta["name"] = prefix + name_suffix(firing.key)


def _http(h: HTTPTrigger, trigger: CompiledTrigger, firing: Firing) -> HttpAction:
    body: bytes | None = None
    if h.payload:
        body = json.dumps(apply_all({}, h.payload, firing.events), separators=(",", ":")).encode()
    headers = {k: str(v) for k, v in h.headers.items()}
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    policy = trigger.spec.policy
    return HttpAction(
        url=h.url,
        method=(h.method or "POST").upper(),
        headers=headers,
        secure_headers=h.secure_headers,
        body=body,
        timeout=float(h.timeout) if h.timeout else DEFAULT_HTTP_TIMEOUT,
        allow=policy.status.allow if policy and policy.status else (),
    )


def merge_patch(live: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(live) if isinstance(live, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def deep_merge(live: Any, new: Any) -> Any:
    """``new`` over ``live``: mappings merge key by key, everything else is overridden (a k8s trigger's
    ``update``, as Argo merges the new object over the live one)."""
    if isinstance(live, dict) and isinstance(new, dict):
        out = dict(live)
        for key, value in new.items():
            out[key] = deep_merge(live.get(key), value)
        return out
    return copy.deepcopy(new)


def plan_action(
    trigger: CompiledTrigger,
    firing: Firing,
    *,
    now: float,
    namespace: str,
    loaded: Any = None,
    template: TriggerTemplate | None = None,
) -> Action:
    """The action ``firing`` asks for; ``template``: :func:`trigger_template` of it, when the caller
    has it already (to fetch the source it names). Raises ActionError when it cannot be built."""
    try:
        tpl = template if template is not None else trigger_template(trigger, firing)
        return _plan(tpl, trigger, firing, now=now, namespace=namespace, loaded=loaded)
    except ActionError:
        raise
    except ExprError as exc:  # a parameter without a value, a template that fails on this data
        raise ActionError(str(exc)) from None


def _plan(
    tpl: TriggerTemplate, trigger: CompiledTrigger, firing: Firing, *, now: float, namespace: str, loaded: Any
) -> Action:
    if tpl.http is not None:
        return _http(tpl.http, trigger, firing)
    if tpl.log is not None:
        lines = [
            json.dumps(
                {"dependency": dep, "context": e.context(), "data": e.data}, sort_keys=True, default=str
            )
            for dep, e in sorted(firing.events.items())
        ]
        return LogAction("\n".join(lines))
    if tpl.k8s is not None:
        obj = apply_all(source_object(tpl, loaded), tpl.k8s.parameters, firing.events)
        if not isinstance(obj, dict):
            raise ActionError("parameters turned the object into something else than a mapping")
        operation = tpl.k8s.operation or "create"
        if operation == "create":
            _stamp(obj, trigger, firing, now, namespace)
        strategy = tpl.k8s.patch_strategy or "application/merge-patch+json"
        return ObjectAction("k8s", operation, obj, patch_strategy=strategy)
    if tpl.argo_workflow is not None:
        wf = tpl.argo_workflow
        obj = apply_all(source_object(tpl, loaded), wf.parameters, firing.events)
        if not isinstance(obj, dict):
            raise ActionError("parameters turned the object into something else than a mapping")
        operation = wf.operation or "submit"
        if operation == "submit":
            _stamp(obj, trigger, firing, now, namespace)
        return ObjectAction("argoWorkflow", operation, obj, args=wf.args)
    raise ActionError(f"trigger {trigger.name!r} has no type this engine runs")


__all__ = [
    "ANNOTATION_EVENT_IDS",
    "ANNOTATION_FIRING",
    "Action",
    "ActionError",
    "HttpAction",
    "LogAction",
    "ObjectAction",
    "deep_merge",
    "merge_patch",
    "plan_action",
    "source_object",
    "trigger_template",
]
