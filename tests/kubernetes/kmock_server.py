"""The tests' Kubernetes API server: stock kmock 0.8 plus what the operator's two clients need of it.

Run as a subprocess, never inside the test process: the official ``kubernetes`` client is synchronous and
would block the very event loop that serves it. ``tests/kubernetes/apiserver.py`` (``ApiServer`` and the
``api_server`` fixture) starts it; by hand::

    .venv/bin/python tests/kubernetes/kmock_server.py [--port N] [--log] [--exit-on-stdin-eof]

It listens on 127.0.0.1 (a free port unless ``--port``), prints ``KMOCK_READY <url>`` on stdout once it
serves, and runs until killed, or with ``--exit-on-stdin-eof`` until its parent closes stdin or dies.

kmock provides, unchanged: the aiohttp server and request parsing, discovery (``/api``, ``/apis``, …) over
its bundled built-in kinds, the object store with each object's history (a dict keyed by resource,
namespace and name), error bodies shaped as ``Status``. This module adds, each in a named function or
method that says why:

* ``parse_path``: ``/api/v1/namespaces[/NAME]`` is the namespaces resource (stock: 500 / 404);
* ``CompatEmulator._fetch``: GET of one object by its key in the store (stock kmock scans every object);
* ``CompatEmulator._admit_new``: server-filled metadata on create, 201, namespace must exist, defaults;
* ``CompatEmulator._register_crd``: a created CustomResourceDefinition makes its kind served;
* ``CompatEmulator._update``: merge / JSON / strategic patches and PUT, status-subresource rules,
  resourceVersion on every write, generation on spec changes, 409 on a stale resourceVersion;
* ``CompatEmulator._delete_locked``: finalizers, DELETED events, ownerReference garbage collection;
* ``CompatEmulator._serve_list`` / ``_serve_watch``: label and field selectors, a list resourceVersion a
  watch can resume from, no event lost between a watch's snapshot and its stream, ``timeoutSeconds``;
* ``CompatEmulator._serve_log``: ``pods/log`` answers the text a test set.

Writes are owned here rather than left to kmock: kmock assigns no resourceVersion and its watch loses the
events that happen while it sends its snapshot; fixing both around its write path would be larger than this.

Private endpoints for fixtures and the tests' "kubelet" (not Kubernetes APIs)::

    POST /_kmock/reset                                 back to the start state; open watches end
    PUT  /_kmock/logs/{namespace}/{pod}[/{container}]  request body = the container's whole log text

Imports kmock's private modules ``kmock._internal.parsing`` and ``rendering``: kmock is pinned (==0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import copy
import datetime
import random
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import parsing, rendering

Body = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]
Matcher = Callable[[Body], bool]

NAMESPACES = kmock.resource("", "v1", "namespaces")
PODS = kmock.resource("", "v1", "pods")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
REQUEST_RECORD_LIMIT = 2000
START_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# Field selectors a real API server accepts beyond metadata.name and metadata.namespace: anything else is
# a 400 there, so it is one here too (code relying on an unsupported field must not pass only here).
EXTRA_SELECTABLE_FIELDS: dict[kmock.resource, frozenset[str]] = {
    PODS: frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    kmock.resource("", "v1", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    NAMESPACES: frozenset({"status.phase"}),
}


def api_error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    """An error answered as a Kubernetes ``Status`` (non-empty details, or kmock adds a traceback)."""
    return kmock.KubernetesError(
        status=status, reason=reason, message=message, details={"causes": [{"message": message}]}
    )


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


# --- fix: the namespaces resource --------------------------------------------------------------------


_stock_parse_path = parsing.parse_path


def parse_path(path: str) -> parsing.ParsedPath:
    """Read ``/api/v1/namespaces[/NAME[/status|/finalize]]`` as the namespaces resource.

    Stock kmock takes the word ``namespaces`` as the start of a namespace scope, so ``GET
    /api/v1/namespaces`` (``CoreV1Api.list_namespace``, kopf's namespace observer) fails with a 500 and
    ``/api/v1/namespaces/NAME`` finds no resource. Namespaced URLs (``…/namespaces/NAME/pods``) are kmock's.
    """
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    ):
        return parsing.ParsedPath(
            group="",
            version="v1",
            plural="namespaces",
            name=parts[3] if len(parts) > 3 else None,
            subresource=parts[4] if len(parts) > 4 else None,
        )
    return _stock_parse_path(path)


def install_path_fix() -> None:
    # kmock's request parser looks the function up in its module on every request.
    parsing.parse_path = parse_path


# --- fix: label and field selectors (stock kmock ignores both) ---------------------------------------

_LABEL_REQUIREMENT = re.compile(
    r"^(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=|>|<)\s*(?P<value>[-A-Za-z0-9_.]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?$"
)
_FIELD_REQUIREMENT = re.compile(r"^(?P<field>[A-Za-z0-9_.]+)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$")


def _split_requirements(text: str) -> list[str]:
    """Split at commas outside parentheses: ``a in (x,y),b`` is two requirements."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _label_requirement(text: str) -> Callable[[dict[str, str]], bool]:
    m = _LABEL_REQUIREMENT.match(text)
    if not m or (m["neg"] and (m["op"] or m["setop"])):
        raise api_error(400, "BadRequest", f"unable to parse requirement: {text!r}")
    key, value = m["key"], m["value"]
    if m["neg"]:
        return lambda labels: key not in labels
    if m["setop"]:
        values = {v.strip() for v in m["values"].split(",")}
        if m["setop"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values  # absent labels are "not in", as on a server
    if m["op"] in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if m["op"] == "!=":
        return lambda labels: labels.get(key) != value  # absent labels match, as on a server
    if m["op"] in (">", "<"):
        if not value.lstrip("-").isdigit():
            raise api_error(400, "BadRequest", f"{text!r}: {m['op']} needs an integer")
        bound, greater = int(value), m["op"] == ">"

        def compare(labels: dict[str, str]) -> bool:
            have = labels.get(key, "")
            if not have.lstrip("-").isdigit():
                return False
            return int(have) > bound if greater else int(have) < bound

        return compare
    return lambda labels: key in labels


def label_selector(text: str) -> Matcher:
    tests = [_label_requirement(part) for part in _split_requirements(text)]
    return lambda obj: all(t((obj.get("metadata") or {}).get("labels") or {}) for t in tests)


def _field_value(obj: Body, path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if path == "source" and isinstance(value, dict):
        value = value.get("component")  # the events' "source" field selects source.component
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_selector(text: str, resource: kmock.resource) -> Matcher:
    allowed = {"metadata.name", "metadata.namespace"} | EXTRA_SELECTABLE_FIELDS.get(resource, frozenset())
    tests: list[Matcher] = []
    for part in _split_requirements(text):
        m = _FIELD_REQUIREMENT.match(part)
        if not m:
            raise api_error(400, "BadRequest", f"invalid field selector: {part!r}")
        if m["field"] not in allowed:
            raise api_error(400, "BadRequest", f"field label not supported: {m['field']}")
        field, value, equal = m["field"], m["value"].strip(), m["op"] != "!="
        tests.append(lambda obj, f=field, v=value, e=equal: (_field_value(obj, f) == v) == e)
    return lambda obj: all(t(obj) for t in tests)


# --- fix: patches ---------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386. kmock's own merge refuses to replace a mapping by a scalar or the reverse; this does not."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(content_type: str, current: Body, patch: Any) -> Any:
    """The object after ``patch``, by content type, as the API server answers errors.

    Strategic merge (the official client's default for dict patches of built-in kinds) is applied as a
    JSON merge patch: lists are replaced, never merged by key, and ``$patch`` directives are not understood.
    A failed JSON-patch ``test`` is a 422: kopf's finalizer and status patches rely on exactly that answer.
    Server-side apply is refused with a 415 rather than silently ignored as stock kmock does.
    """
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if patch is None:
        raise api_error(400, "BadRequest", "a patch needs a body")
    if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(patch, dict):
            raise api_error(400, "BadRequest", "a merge patch must be a JSON object")
        return merge_patch(current, patch)
    if kind == "application/json-patch+json":
        if not isinstance(patch, list):
            raise api_error(400, "BadRequest", "a JSON patch must be a list of operations")
        try:
            return jsonpatch.apply_patch(current, patch, in_place=False)
        except jsonpatch.InvalidJsonPatch as exc:
            raise api_error(400, "BadRequest", f"invalid JSON patch: {exc}") from exc
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise api_error(422, "Invalid", f"the JSON patch did not apply: {exc}") from exc
    raise api_error(
        415, "UnsupportedMediaType", f"{kind or 'no content type'}: not emulated (server-side apply neither)"
    )


def _owner_uids(obj: Body) -> set[str | None]:
    return {ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or ()}


def _spec_part(obj: Body, *, status_is_subresource: bool) -> Body:
    """The part whose changes bump metadata.generation: all but metadata, and but status when it is a
    subresource (a controller's status writes must not look like new desired state)."""
    skip = ("metadata", "status") if status_is_subresource else ("metadata",)
    return {k: v for k, v in obj.items() if k not in skip}


# --- fix: a journal of watch events, so watches resume from a resourceVersion and lose nothing ---------


class Journal:
    """Every watch event in resourceVersion order (the last ``keep``), and the resourceVersion counter."""

    def __init__(self, keep: int = 20_000) -> None:
        self.rv = 0  # the last resourceVersion given out; shared by all kinds, as etcd's revision
        self.keep = keep
        self.events: list[tuple[int, kmock.resource, Body]] = []
        self.start = 0  # absolute position of events[0]
        self.floor = 0  # watches from a resourceVersion below this get 410 Gone: their events are dropped
        self.epoch = 0  # bumped by a reset, which ends every open watch
        self._wakeup = asyncio.Event()

    @property
    def end(self) -> int:
        return self.start + len(self.events)

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def record(self, resource: kmock.resource, event: Body) -> None:
        self.events.append((int(event["object"]["metadata"]["resourceVersion"]), resource, event))
        if len(self.events) > self.keep:
            dropped = len(self.events) - self.keep
            self.floor = self.events[dropped - 1][0]
            del self.events[:dropped]
            self.start += dropped
        self._wake()

    def position_after(self, rv: int) -> int | None:
        """Where a watch from ``rv`` starts; None when its events are no longer kept (410 Gone)."""
        if rv < self.floor:
            return None
        return self.start + bisect.bisect_right([e[0] for e in self.events], rv)

    def since(self, position: int) -> list[tuple[int, kmock.resource, Body]]:
        return self.events[position - self.start :]

    async def wait(self, position: int, timeout: float | None) -> None:
        if self.end <= position:
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    def reset(self) -> None:
        self.floor = self.rv
        self.start = self.end
        self.events.clear()
        self.epoch += 1
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()


# --- the emulator ----------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class CompatEmulator(kmock.KubernetesEmulator):
    access_log: bool = False
    _journal: Journal = attrs.field(factory=Journal, init=False)
    _logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)  # (pod uid, container) → text
    _crd_resources: dict[str, list[kmock.resource]] = attrs.field(factory=dict, init=False)
    _gc_tasks: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    # For the garbage collector, kept by _commit over the live objects: owner uid → the keys of the objects
    # whose ownerReferences name it (a dict for its order), and the uids of the live objects.
    _dependents: dict[str | None, dict[Key, None]] = attrs.field(factory=dict, init=False)
    _uids: set[str | None] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # The official client asks ApisApi/CoreApi discovery at "/apis/" and "/api/"; kmock serves those
        # paths without the trailing slash only.
        self.fallback["get /apis/"] << self._serve_apis
        self.fallback["get /api/"] << self._serve_api

    def bootstrap(self) -> None:
        """The namespaces every cluster starts with: stock kmock has none, so nothing could be created."""
        for name in START_NAMESPACES:
            body: Body = {"metadata": {"name": name}}
            self._admit_new(NAMESPACES, None, body)
            self._commit(NAMESPACES, (NAMESPACES, None, name), body, "ADDED")

    # -- dispatch --

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # kmock records every request and scans the whole record for each request it answers itself
        # (lists, watches, discovery): unbounded, that is quadratic over a long run. Only requests
        # being answered need to be in it; keep a recent window for tests that look at it.
        if len(self._requests) > REQUEST_RECORD_LIMIT:
            del self._requests[: len(self._requests) - REQUEST_RECORD_LIMIT // 2]
        watching = request.action == kmock.action.WATCH
        if watching:
            self._log_request(request, "watching")  # a watch ends late, if ever: log when it starts
        try:
            response = await self._dispatch(request)
        except kmock.KubernetesError as exc:
            self._log_request(request, exc.status)
            raise
        if not watching:
            self._log_request(request, response.status)
        return response

    def _log_request(self, request: rendering.Request, status: int | str) -> None:
        if self.access_log:
            print(f"{request.method.value} {request.url.path_qs} -> {status}", file=sys.stderr, flush=True)

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.url.path.startswith("/_kmock/"):
            return await self._serve_private(request)
        resource = request.resource
        if resource is None or resource.plural is None:
            return await super()._handle(request)  # discovery, /version: kmock's
        info = self._served(resource)
        if request.params.get("dryRun"):
            raise api_error(400, "BadRequest", "dryRun is not emulated: it would persist here")
        if request.subresource == "log" and request.method == "GET":
            return self._serve_log(request)
        if request.subresource not in (None, "status"):
            raise api_error(404, "NotFound", f"subresource {request.subresource!r} is not emulated")
        method = str(request.method.value).upper()
        if method == "POST" and request.name is None:
            return await self._create(request, info)
        if method in ("PATCH", "PUT") and request.name is not None:
            return await self._update(request, info)
        if method == "DELETE":
            if request.name is None:
                return await self._delete_collection(request)
            return await self._delete(request, info)
        if request.action == kmock.action.FETCH:
            return await self._fetch(request)
        return await super()._handle(request)  # list and watch (overridden below)

    def _served(self, resource: kmock.resource) -> kmock.ResourceInfo:
        """Only built-in kinds and kinds of created CRDs are served; stock kmock stores any kind at all,
        so a test that forgot to apply the CRDs would pass here and fail on a cluster."""
        if resource not in self.resources:
            raise api_error(
                404, "NotFound", f"the server could not find the requested resource ({resource.plural})"
            )
        return self.resources[resource]

    def _key(
        self, resource: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, name: str
    ) -> Key:
        return (resource, namespace if info.namespaced else None, name)

    def _stored(self, key: Key) -> Body | None:
        """The object's current state as stored, or None when absent or deleted: one look-up by key, as
        every read of one object is here. Read it, never change it: a committed state is also an event
        that open watches may still be sending."""
        try:
            stored = self._objects[key]
        except KeyError:
            return None
        return None if stored.deleted else stored.raw

    def _live(self, key: Key) -> Body | None:
        """A private copy of the object's current state (one to change and commit), or None."""
        body = self._stored(key)
        return None if body is None else copy.deepcopy(body)

    def _commit(self, resource: kmock.resource, key: Key, body: Body, event: str) -> Body:
        """Store the object's next state (or its deletion) under the next resourceVersion; journal the event.

        Callers hold ``self._lock`` (or run before serving), so resourceVersions and events stay in order.
        """
        body["metadata"]["resourceVersion"] = self._journal.next_rv()
        self._index(key, self._stored(key), None if event == "DELETED" else body)
        if event == "DELETED":
            self._objects[key].delete()
        elif key in self._objects:
            self._objects[key].history.append(body)
        else:
            self._objects[key] = body
        self._journal.record(resource, {"type": event, "object": body})
        return body

    def _index(self, key: Key, old: Body | None, new: Body | None) -> None:
        """Move ``key`` in the garbage collector's indexes from its stored state to its next (None: gone)."""
        before, after = (_owner_uids(b) if b is not None else set() for b in (old, new))
        for uid in before - after:
            keys = self._dependents.get(uid, {})
            keys.pop(key, None)
            if not keys:
                self._dependents.pop(uid, None)
        for uid in after - before:
            self._dependents.setdefault(uid, {})[key] = None
        if old is not None:
            self._uids.discard(old["metadata"].get("uid"))
        if new is not None:
            self._uids.add(new["metadata"].get("uid"))

    # -- read one --

    async def _fetch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """GET of one object, ``/status`` included (the whole object, as on a server). Stock kmock finds it
        by comparing every stored object with the URL, after matching the request against the whole
        request record; here it is one look-up. The answer is stock's: the URL's namespace and name are
        the key as given (so a cluster-scoped kind under a namespace URL is not found), and an absent
        object is kmock's own 404."""
        assert request.resource is not None and request.name is not None
        async with self._lock:
            body = self._stored((request.resource, request.namespace, request.name))
            if body is None:
                raise kmock.KubernetesObjectNotFoundError()
            return aiohttp.web.json_response(body)

    # -- create --

    async def _create(
        self, request: rendering.Request, info: kmock.ResourceInfo
    ) -> aiohttp.web.StreamResponse:
        assert request.resource is not None
        if not isinstance(request.data, dict):
            raise api_error(400, "BadRequest", "the body must be a JSON object")
        body = copy.deepcopy(request.data)
        async with self._lock:
            self._admit_new(request.resource, request.namespace, body)
            meta = body["metadata"]
            key = self._key(request.resource, info, meta.get("namespace"), meta["name"])
            if self._live(key) is not None:
                raise api_error(
                    409, "AlreadyExists", f'{request.resource.plural} "{meta["name"]}" already exists'
                )
            self._commit(request.resource, key, body, "ADDED")
            if request.resource == CRDS:
                self._register_crd(body)
        # 201, as a real server: the official client's custom-object create returns None on a 200.
        return aiohttp.web.json_response(body, status=201)

    def _admit_new(self, resource: kmock.resource, url_namespace: str | None, body: Body) -> None:
        """Fill in what the server owns on create (stock kmock fills in nothing; kopf and the client need it):
        namespace from the URL (a namespaced watch drops objects without one), name from generateName,
        uid, creationTimestamp, generation; apiVersion and kind when the client left them out; status
        dropped when it is a subresource (it is set through /status only), plus per-kind defaults."""
        info = self.resources[resource]
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        body["metadata"] = meta
        body.setdefault("apiVersion", api_version(resource))
        body.setdefault("kind", info.kind)
        if info.namespaced:
            namespace = url_namespace or meta.get("namespace")
            if url_namespace and meta.get("namespace") not in (None, "", url_namespace):
                raise api_error(
                    400, "BadRequest", "the namespace of the object does not match the namespace of the URL"
                )
            if not namespace:
                raise api_error(400, "BadRequest", "a namespaced object needs a namespace")
            if self._live((NAMESPACES, None, namespace)) is None:
                raise api_error(404, "NotFound", f'namespaces "{namespace}" not found')
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise api_error(400, "BadRequest", "resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise api_error(422, "Invalid", "metadata.name or metadata.generateName is required")
            meta["name"] = self._generate_name(resource, info, meta.get("namespace"), meta["generateName"])
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        for server_only in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_only, None)
        if "status" in info.subresources:
            body.pop("status", None)
        if resource == PODS:
            body["status"] = {"phase": "Pending"}  # until the tests' kubelet says otherwise
        elif resource == NAMESPACES:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            body["status"] = {"phase": "Active"}
        elif resource == CRDS:
            body["status"] = self._crd_status(body)

    def _generate_name(
        self, resource: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, prefix: str
    ) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the API server's: no vowels, no look-alike digits
        while True:
            name = prefix + "".join(random.choices(alphabet, k=5))
            if self._live(self._key(resource, info, namespace, name)) is None:
                return name

    # -- CRDs --

    def _crd_status(self, crd: Body) -> Body:
        """Validate a CRD enough to register it, and answer it Established as a server does."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if not (spec.get("group") and names.get("plural") and names.get("kind") and spec.get("versions")):
            raise api_error(
                422, "Invalid", "a CRD needs spec.group, spec.names.plural/kind and spec.versions"
            )
        if crd["metadata"]["name"] != f"{names['plural']}.{spec['group']}":
            raise api_error(422, "Invalid", "a CRD's metadata.name must be <spec.names.plural>.<spec.group>")
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            raise api_error(422, "Invalid", "a CRD's spec.scope must be Namespaced or Cluster")
        conditions = [
            {"type": t, "status": "True", "reason": r, "lastTransitionTime": now(), "message": ""}
            for t, r in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
        ]
        return {
            "acceptedNames": names,
            "conditions": conditions,
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
        }

    def _register_crd(self, crd: Body) -> None:
        """Serve the CRD's kind (stock kmock ignores created CRDs): every verb, its scope, its subresources,
        and discovery under /apis/<group>/<version>, which is how kopf and the client find it."""
        self._unregister_crd(crd["metadata"]["name"], purge=False)
        spec, names = crd["spec"], crd["spec"]["names"]
        resources = []
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[resource] = kmock.ResourceInfo(
                namespaced=spec["scope"] == "Namespaced",
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                verbs=set(CRD_VERBS),
                shortnames=set(names.get("shortNames") or ()),
                categories=set(names.get("categories") or ()),
                subresources=set(version.get("subresources") or ()),
            )
            resources.append(resource)
        self._crd_resources[crd["metadata"]["name"]] = resources

    def _unregister_crd(self, name: str, *, purge: bool) -> None:
        """Stop serving the kind; with ``purge`` (the CRD was deleted) its objects go too, as on a server
        (there without waiting for their finalizers: not emulated)."""
        for resource in self._crd_resources.pop(name, []):
            del self.resources[resource]
            if purge:
                for key in [k for k in self._objects if k[0] == resource]:
                    if (body := self._live(key)) is not None:
                        self._commit(resource, key, body, "DELETED")
                        self._after_delete(resource, body)  # their pods go too
                    del self._objects[key]  # hard: kmock's discovery lists kinds that have stored objects

    # -- update: PATCH and PUT --

    async def _update(
        self, request: rendering.Request, info: kmock.ResourceInfo
    ) -> aiohttp.web.StreamResponse:
        assert request.resource is not None and request.name is not None
        on_status = request.subresource == "status"
        if on_status and "status" not in info.subresources:
            raise api_error(404, "NotFound", f"{request.resource.plural} have no status subresource")
        key = self._key(request.resource, info, request.namespace, request.name)
        headers = {k.lower(): v for k, v in request.headers.items()}
        async with self._lock:
            current = self._live(key)
            if current is None:
                raise api_error(404, "NotFound", f'{request.resource.plural} "{request.name}" not found')
            if str(request.method.value).upper() == "PUT":
                candidate = self._replacement(request, current)
            else:
                candidate = apply_patch(headers.get("content-type", ""), copy.deepcopy(current), request.data)
            new = self._settle(info, current, candidate, on_status=on_status)
            if new == current:
                return aiohttp.web.json_response(current)  # a no-op write: no new resourceVersion, no event
            status_sub = "status" in info.subresources
            if _spec_part(new, status_is_subresource=status_sub) != _spec_part(
                current, status_is_subresource=status_sub
            ):
                new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
            if request.resource == CRDS:
                new["status"] = self._crd_status(new)
                self._register_crd(new)
            self._commit(request.resource, key, new, "MODIFIED")
            meta = new["metadata"]
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                self._commit(request.resource, key, copy.deepcopy(new), "DELETED")  # the last finalizer left
                self._after_delete(request.resource, new)
        return aiohttp.web.json_response(new)

    def _replacement(self, request: rendering.Request, current: Body) -> Body:
        """PUT (stock kmock: 404): the body replaces the object; a custom object needs a resourceVersion."""
        body = request.data
        if not isinstance(body, dict):
            raise api_error(400, "BadRequest", "the body must be a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, request.name):
            raise api_error(400, "BadRequest", "the name of the object does not match the name of the URL")
        custom = {r for resources in self._crd_resources.values() for r in resources}
        if request.resource in custom and not meta.get("resourceVersion"):
            raise api_error(422, "Invalid", "metadata.resourceVersion: must be specified for an update")
        return copy.deepcopy(body)

    def _settle(self, info: kmock.ResourceInfo, current: Body, candidate: Any, *, on_status: bool) -> Body:
        """Apply the server's rules to a client's intended new state.

        A stale metadata.resourceVersion is a 409 (optimistic concurrency). With a status subresource,
        writes to the object keep its status and writes to /status change the status only, which is what
        lets a controller and a user write the same object without undoing each other. Server-owned
        metadata (uid, creationTimestamp, generation, resourceVersion, deletionTimestamp) is kept.
        """
        if not isinstance(candidate, dict):
            raise api_error(422, "Invalid", "the object must stay a JSON object")
        meta = candidate.get("metadata") if isinstance(candidate.get("metadata"), dict) else {}
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv not in (None, "") and wanted_rv != current["metadata"]["resourceVersion"]:
            raise api_error(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if on_status:
            new = copy.deepcopy(current)
            new.pop("status", None)
            if candidate.get("status") is not None:
                new["status"] = candidate["status"]
            return new
        new = candidate
        new["metadata"] = meta
        if "status" in info.subresources:
            new.pop("status", None)
            if current.get("status") is not None:
                new["status"] = current["status"]
        for field in ("apiVersion", "kind"):
            new[field] = current.get(field)
        owned = ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion")
        for field in (*owned, "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        return new

    # -- delete --

    async def _delete(
        self, request: rendering.Request, info: kmock.ResourceInfo
    ) -> aiohttp.web.StreamResponse:
        assert request.resource is not None and request.name is not None
        key = self._key(request.resource, info, request.namespace, request.name)
        options = request.data if isinstance(request.data, dict) else {}
        async with self._lock:
            current = self._live(key)
            if current is None:
                raise api_error(404, "NotFound", f'{request.resource.plural} "{request.name}" not found')
            for field, value in (options.get("preconditions") or {}).items():
                if value is not None and current["metadata"].get(field) != value:
                    raise api_error(409, "Conflict", f"precondition failed: {field} is not {value!r}")
            result = self._delete_locked(request.resource, key, current)
        return aiohttp.web.json_response(result)

    async def _delete_collection(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """DELETE on a list URL (stock kmock: 404), honouring the selectors."""
        assert request.resource is not None
        matches = self._matcher(request)
        async with self._lock:
            for key in [k for k in self._objects if k[0] == request.resource]:
                current = self._live(key)
                if current is not None and matches(current):
                    self._delete_locked(request.resource, key, current)
        return aiohttp.web.json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        )

    def _delete_locked(self, resource: kmock.resource, key: Key, current: Body) -> Body:
        """Delete now, or with finalizers mark deletionTimestamp (a new resourceVersion and generation: kopf
        sees a MODIFIED event and runs its deletion handlers) and delete when the last finalizer goes."""
        meta = current["metadata"]
        if meta.get("deletionTimestamp"):
            return current
        if meta.get("finalizers"):
            meta.update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
            meta["generation"] = meta.get("generation", 1) + 1
            return self._commit(resource, key, current, "MODIFIED")
        self._commit(resource, key, current, "DELETED")
        self._after_delete(resource, current)
        return current

    def _after_delete(self, resource: kmock.resource, gone: Body) -> None:
        if resource == CRDS:
            self._unregister_crd(gone["metadata"]["name"], purge=True)
        task = asyncio.get_running_loop().create_task(self._collect_garbage(gone["metadata"]["uid"]))
        self._gc_tasks.add(task)
        task.add_done_callback(self._gc_tasks.discard)

    async def _collect_garbage(self, owner_uid: str) -> None:
        """Delete the dependents of a deleted owner once none of their owners is left, in the background as
        the garbage collector does (stock kmock: none; the operator's pods are owned by their workflow).
        Propagation policies (Orphan, Foreground) and blockOwnerDeletion are not emulated.
        The dependents and the owners still alive come from indexes: a scan of every object made each
        delete cost milliseconds per thousand objects. Which owners are alive is decided before any
        dependent goes; one that was an owner too has its own collection."""
        async with self._lock:
            dependents = [
                (key, body)
                for key in self._dependents.get(owner_uid, {})
                if (body := self._live(key)) is not None
            ]
            orphans = [(key, body) for key, body in dependents if not _owner_uids(body) & self._uids]
            for key, body in orphans:
                self._delete_locked(key[0], key, body)

    # -- read: list and watch --

    def _matcher(self, request: rendering.Request) -> Matcher:
        assert request.resource is not None
        labels = label_selector(request.params.get("labelSelector", ""))
        fields = field_selector(request.params.get("fieldSelector", ""), request.resource)
        namespace, name = request.namespace, request.name

        def matches(obj: Body) -> bool:
            meta = obj.get("metadata") or {}
            return (
                (namespace is None or meta.get("namespace") == namespace)
                and (name is None or meta.get("name") == name)
                and labels(obj)
                and fields(obj)
            )

        return matches

    def _snapshot(self, request: rendering.Request) -> list[Body]:
        """The live objects a request selects, sorted as a server lists them; callers hold ``self._lock``."""
        matches = self._matcher(request)
        items = [
            body
            for key in list(self._objects)
            if key[0] == request.resource and (body := self._live(key)) is not None and matches(body)
        ]
        return sorted(items, key=lambda b: (b["metadata"].get("namespace") or "", b["metadata"]["name"]))

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        """Selectors applied, and the list's resourceVersion real (stock: "..."): kopf watches from it."""
        assert request.resource is not None
        info = self._served(request.resource)
        async with self._lock:
            items = self._snapshot(request)
            rv = self._journal.rv
        return {
            "apiVersion": api_version(request.resource),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """A watch as a server streams it (replaces stock kmock's, which sends a snapshot and then follows a
        bus it joins only after sending, so events in between are lost, and which ignores selectors and
        resourceVersion). Without a resourceVersion (or "0", or sendInitialEvents): ADDED for what exists,
        then changes; with one: the changes after it, or 410 Gone when no longer kept. ``timeoutSeconds``
        ends the stream, as the official client's ``Watch(timeout_seconds=...)`` expects."""
        assert request.resource is not None
        info = self._served(request.resource)
        matches = self._matcher(request)
        since = request.params.get("resourceVersion", "")
        initial = request.params.get("sendInitialEvents") == "true"
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        yield b""  # send the headers now: a client waits for them before it returns the stream
        async with self._lock:
            epoch = self._journal.epoch
            found: int | None = None
            if initial or since in ("", "0"):
                found = self._journal.end
                backlog = [{"type": "ADDED", "object": body} for body in self._snapshot(request)]
                snapshot_rv = self._journal.rv
            elif since.isdigit():
                found = self._journal.position_after(int(since))
                backlog, snapshot_rv = [], int(since)
        if found is None:
            yield self._gone(since)
            return
        position = found
        for event in backlog:
            yield event
        if initial and request.params.get("allowWatchBookmarks") == "true":
            yield self._initial_events_end(request.resource, info, snapshot_rv)
        while self._journal.epoch == epoch:
            if position < self._journal.start:
                yield self._gone(since)
                return
            batch = self._journal.since(position)
            position += len(batch)
            for _, resource, event in batch:
                if resource == request.resource and matches(event["object"]):
                    yield event
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await self._journal.wait(position, remaining)
            except TimeoutError:
                return

    @staticmethod
    def _gone(since: str) -> Body:
        message = f"too old resource version: {since}"
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        return {"type": "ERROR", "object": {**status, "code": 410, "reason": "Expired", "message": message}}

    @staticmethod
    def _initial_events_end(resource: kmock.resource, info: kmock.ResourceInfo, rv: int) -> Body:
        meta = {"resourceVersion": str(rv), "annotations": {"k8s.io/initial-events-end": "true"}}
        return {
            "type": "BOOKMARK",
            "object": {"apiVersion": api_version(resource), "kind": info.kind, "metadata": meta},
        }

    async def _serve_api(self, request: rendering.Request) -> rendering.Payload:
        """/api with serverAddressByClientCIDRs: the official client's CoreApi model requires the field."""
        payload = await super()._serve_api(request)
        if isinstance(payload, dict):
            address = f"{request.url.host}:{request.url.port}"
            payload["serverAddressByClientCIDRs"] = [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]
        return payload

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """/api/v1 names its groupVersion "v1" (stock: "/v1", which discovery clients cannot parse)."""
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and payload.get("groupVersion", "").startswith("/"):
            payload["groupVersion"] = payload["groupVersion"][1:]
        return payload

    # -- pods/log and the private endpoints --

    def _container(self, pod: Body, name: str | None) -> str:
        """The container a log belongs to, chosen as the server does: the only one when unnamed."""
        spec = pod.get("spec") or {}
        main = [c.get("name") for c in spec.get("containers") or ()]
        every = main + [
            c.get("name") for g in ("initContainers", "ephemeralContainers") for c in spec.get(g) or ()
        ]
        pod_name = pod["metadata"]["name"]
        if name:
            if every and name not in every:
                raise api_error(400, "BadRequest", f"container {name} is not valid for pod {pod_name}")
            return name
        if len(main) > 1:
            raise api_error(
                400, "BadRequest", f"a container name must be specified for pod {pod_name}: {main}"
            )
        return main[0] if main else ""

    def _pod(self, namespace: str | None, name: str | None) -> Body:
        pod = self._live((PODS, namespace, name or ""))
        if pod is None:
            raise api_error(404, "NotFound", f'pods "{name}" not found')
        return pod

    def _serve_log(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """GET pods/log (stock kmock answers the pod itself): the text a test set for this pod's container.
        Keyed by the pod's uid, so a pod re-created under the same name starts with an empty log.
        ``tailLines`` and ``limitBytes`` apply; ``follow`` answers what is there and ends."""
        pod = self._pod(request.namespace, request.name)
        container = self._container(pod, request.params.get("container"))
        text = self._logs.get((pod["metadata"]["uid"], container), "")
        if (tail := request.params.get("tailLines", "")).isdigit():
            lines = text.splitlines(keepends=True)
            text = "".join(lines[len(lines) - int(tail) :]) if int(tail) else ""
        if (limit := request.params.get("limitBytes", "")).isdigit():
            text = text.encode()[: int(limit)].decode(errors="ignore")
        return aiohttp.web.Response(text=text, content_type="text/plain")

    async def _serve_private(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        parts = request.url.path.strip("/").split("/")[1:]
        method = str(request.method.value).upper()
        if parts == ["reset"] and method == "POST":
            async with self._lock:
                self._reset()
            return aiohttp.web.json_response({"reset": True})
        if parts[:1] == ["logs"] and len(parts) in (3, 4) and method == "PUT":
            pod = self._pod(parts[1], parts[2])
            container = self._container(pod, parts[3] if len(parts) == 4 else None)
            self._logs[(pod["metadata"]["uid"], container)] = request.text
            return aiohttp.web.json_response(
                {"pod": parts[2], "container": container, "bytes": len(request.body)}
            )
        raise api_error(404, "NotFound", f"no private endpoint {method} {request.url.path}")

    def _reset(self) -> None:
        """Back to the start state, for a session-long server shared by tests: objects, CRD kinds, logs,
        the request record and the journal go (resourceVersions keep counting up, so no stale one is
        reused), garbage collection in flight stops, open watches end."""
        for name in list(self._crd_resources):
            self._unregister_crd(name, purge=False)
        for task in self._gc_tasks:
            task.cancel()
        self._objects.clear()
        self._dependents.clear()
        self._uids.clear()
        self._logs.clear()
        self._requests.clear()
        for errors in self._errors:
            errors.clear()
        self._journal.reset()
        self.bootstrap()


async def serve(*, port: int | None, access_log: bool, exit_on_stdin_eof: bool) -> None:
    emulator = CompatEmulator(access_log=access_log)
    # The built-in kinds (pods, namespaces, events, CRDs …) for discovery: without them kopf finds no
    # resource to watch and the official client's built-in APIs all answer 404.
    emulator.resources.load_bundled()
    async with emulator, kmock.Server(emulator, host="127.0.0.1", port=port) as server:
        emulator.bootstrap()
        print(f"KMOCK_READY {str(server.url).rstrip('/')}", flush=True)
        if exit_on_stdin_eof:
            # The parent holds our stdin open; EOF means it is gone (even after kill -9): do not linger.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
        else:
            await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--log", action="store_true", help="one line per request on stderr")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)
    install_path_fix()
    asyncio.run(serve(port=args.port, access_log=args.log, exit_on_stdin_eof=args.exit_on_stdin_eof))


if __name__ == "__main__":
    main()
