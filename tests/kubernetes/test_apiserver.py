"""The tests' Kubernetes API server behaves as a real one where the operator's clients can tell.

Each test proves one compatibility fix of ``tests/kubernetes/kmock_server.py`` through the official
``kubernetes`` client (or, for the kubelet side channel, ``ApiServer``'s helpers), and the last one runs a
tiny kopf operator against it. Stock kmock 0.8 fails every one of these tests.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.cli.support import wait_for
from tests.kubernetes.apiserver import CRD_DIR, ApiError, ApiServer, container_status

GROUP, VERSION, WORKFLOWS = "sluice.dev", "v1alpha1", "workflows"
KOPF = Path(sys.executable).with_name("kopf")


def workflow(**metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": metadata or {"generateName": "hello-"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]},
    }


def pod(
    name: str, *, labels: dict[str, str] | None = None, containers: tuple[str, ...] = ("main",)
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]},
    }


@pytest.fixture
def core(api_server: ApiServer) -> client.CoreV1Api:
    return client.CoreV1Api(api_server.kubernetes_client())


@pytest.fixture
def custom(api_server: ApiServer) -> client.CustomObjectsApi:
    api_server.apply_crds()
    return client.CustomObjectsApi(api_server.kubernetes_client())


def status_of(exc_info: pytest.ExceptionInfo[ApiException]) -> int | None:
    return exc_info.value.status


class Watcher:
    """The official client's watch in a thread, its events in a queue (the client's watch blocks)."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.watch = watch.Watch()
        # timeout_seconds: the server ends the stream, so the thread ends even when a test fails.
        kwargs.setdefault("timeout_seconds", 15)
        self.thread = threading.Thread(target=self._run, args=(func, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            for event in self.watch.stream(func, *args, **kwargs):
                self.events.put((event["type"], event["object"]))
        except Exception as exc:  # reported to the test by next()
            self.events.put(("EXCEPTION", exc))

    def next(self, timeout: float = 10) -> tuple[str, Any]:
        try:
            kind, obj = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch event within {timeout}s") from None
        if kind == "EXCEPTION":
            raise AssertionError(f"the watch failed: {obj!r}") from obj
        return kind, obj

    def rest(self, timeout: float = 20) -> list[tuple[str, Any]]:
        """Every event until the stream ends (its timeout_seconds)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the watch did not end at its timeoutSeconds"
        out = []
        while not self.events.empty():
            out.append(self.events.get())
        return out

    def close(self) -> None:
        self.watch.stop()  # takes effect at the next event; the stream's timeout ends it otherwise


@pytest.fixture
def watcher() -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Watcher:
        started.append(Watcher(func, *args, **kwargs))
        return started[-1]

    yield start
    for w in started:
        w.close()


# --- namespaces -----------------------------------------------------------------------------------


def test_namespaces_list_shows_the_start_namespaces_and_created_ones(core: client.CoreV1Api) -> None:
    assert {"default", "kube-system"} <= {ns.metadata.name for ns in core.list_namespace().items}
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a")))
    assert created.status.phase == "Active"
    assert core.read_namespace("team-a").metadata.uid == created.metadata.uid
    assert "team-a" in {ns.metadata.name for ns in core.list_namespace().items}


def test_creating_in_a_missing_namespace_is_not_found(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod("nowhere", pod("p"))
    assert status_of(caught) == 404


# --- CRDs and discovery ---------------------------------------------------------------------------


def test_a_kind_is_not_served_until_its_crd_is_created(api_server: ApiServer) -> None:
    api = client.CustomObjectsApi(api_server.kubernetes_client())
    with pytest.raises(ApiException) as caught:
        api.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow())
    assert status_of(caught) == 404
    assert sorted(api_server.apply_crds()) == [
        "clusterworkflowtemplates.sluice.dev",
        "cronworkflows.sluice.dev",
        "eventbus.sluice.dev",
        "eventsources.sluice.dev",
        "sensors.sluice.dev",
        "workflows.sluice.dev",
        "workflowtemplates.sluice.dev",
    ]
    assert api.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow())


def test_a_crd_created_with_the_client_is_discoverable_with_scope_and_subresources(
    api_server: ApiServer,
) -> None:
    api = api_server.kubernetes_client()
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    created = client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    assert {c.type for c in created.status.conditions if c.status == "True"} == {
        "Established",
        "NamesAccepted",
    }
    assert "example.com" in {g.name for g in client.ApisApi(api).get_api_versions().groups}
    resources = client.CustomObjectsApi(api).get_api_resources("example.com", "v1").resources
    assert {(r.name, r.kind, r.namespaced) for r in resources} == {
        ("widgets", "Widget", False),
        ("widgets/status", "Widget", False),
    }
    widget = client.CustomObjectsApi(api).create_cluster_custom_object(
        "example.com", "v1", "widgets", {"metadata": {"name": "w1"}, "spec": {}}
    )
    assert "namespace" not in widget["metadata"]
    assert widget["kind"] == "Widget"


def test_deleting_a_crd_stops_serving_its_kind_and_drops_its_objects(
    api_server: ApiServer, custom: client.CustomObjectsApi
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1"))
    client.ApiextensionsV1Api(api_server.kubernetes_client()).delete_custom_resource_definition(
        "workflows.sluice.dev"
    )
    with pytest.raises(ApiException) as caught:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS)
    assert status_of(caught) == 404
    api_server.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", _workflow_crd())
    assert custom.list_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS)["items"] == []


def _workflow_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(
        (CRD_DIR / "sluice.dev_workflows.yaml").read_text(), Loader=yaml.CSafeLoader
    )
    return crd


def test_core_discovery_names_its_group_version_v1(api_server: ApiServer) -> None:
    assert api_server.request("GET", "/api/v1")["groupVersion"] == "v1"
    assert client.CoreApi(api_server.kubernetes_client()).get_api_versions().versions == ["v1"]


# --- create ---------------------------------------------------------------------------------------


def test_a_workflow_created_with_generate_name_gets_server_metadata_and_a_201(
    custom: client.CustomObjectsApi,
) -> None:
    body, status, _ = custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, "default", WORKFLOWS, workflow(generateName="hello-")
    )
    assert status == 201
    meta = body["metadata"]
    assert meta["name"].startswith("hello-") and len(meta["name"]) == len("hello-") + 5
    assert meta["namespace"] == "default"
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert meta["generation"] == 1
    fetched = custom.get_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, meta["name"])
    assert fetched == body


def test_a_second_object_with_the_same_name_is_a_conflict(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1"))
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1"))
    assert status_of(caught) == 409


def test_a_pod_created_without_kind_is_stored_with_kind_and_a_pending_phase(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("p1"))
    assert (created.api_version, created.kind, created.status.phase) == ("v1", "Pod", "Pending")


# --- update ---------------------------------------------------------------------------------------


def test_a_status_patch_changes_only_the_status(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1")
    )
    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        WORKFLOWS,
        "w1",
        {"status": {"phase": "Running"}, "spec": {"entrypoint": "x"}},
    )
    assert patched["status"] == {"phase": "Running"}
    assert patched["spec"] == created["spec"]
    assert patched["metadata"]["generation"] == 1
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_an_object_patch_keeps_the_status_and_bumps_generation_on_spec_changes(
    custom: client.CustomObjectsApi,
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1"))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", WORKFLOWS, "w1", {"status": {"phase": "Running"}}
    )
    labelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, "w1", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        WORKFLOWS,
        "w1",
        {"spec": {"entrypoint": "other"}, "status": {"phase": "X"}},
    )
    assert patched["spec"]["entrypoint"] == "other"
    assert patched["status"] == {"phase": "Running"}
    assert patched["metadata"]["generation"] == 2
    assert patched["metadata"]["labels"] == {"a": "b"}


def test_resource_version_rises_on_every_write_and_not_on_a_no_op(custom: client.CustomObjectsApi) -> None:
    seen = [custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1"))]
    for labels in ({"a": "1"}, {"a": "2"}, {"a": "2"}):
        seen.append(
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, "default", WORKFLOWS, "w1", {"metadata": {"labels": labels}}
            )
        )
    versions = [int(obj["metadata"]["resourceVersion"]) for obj in seen]
    assert versions[0] < versions[1] < versions[2] == versions[3]


def test_a_merge_patch_null_removes_a_field(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1", labels={"a": "1", "b": "2"})
    )
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, "w1", {"metadata": {"labels": {"a": None}}}
    )
    assert patched["metadata"]["labels"] == {"b": "2"}


def test_a_stale_resource_version_is_a_conflict_for_patch_and_replace(
    custom: client.CustomObjectsApi,
) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1")
    )
    stale = created["metadata"]["resourceVersion"]
    fresh = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, "w1", {"metadata": {"labels": {"a": "1"}}}
    )
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            WORKFLOWS,
            "w1",
            {"metadata": {"resourceVersion": stale, "labels": {"a": "2"}}},
        )
    assert status_of(caught) == 409
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, "w1", created)
    assert status_of(caught) == 409
    fresh["spec"]["entrypoint"] = "replaced"
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, "w1", fresh)
    assert replaced["spec"]["entrypoint"] == "replaced"
    assert replaced["metadata"]["generation"] == 2


def test_a_json_patch_applies_and_a_failed_test_op_is_unprocessable(api_server: ApiServer) -> None:
    # kopf removes its finalizers with a JSON patch guarded by a resourceVersion test; it expects a 422.
    api_server.apply_crds()
    path = f"/apis/{GROUP}/{VERSION}/namespaces/default/{WORKFLOWS}"
    created = api_server.create(path, workflow(name="w1", finalizers=["x/y"]))
    rv = created["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]
    patched = api_server.request("PATCH", f"{path}/w1", ops, content_type="application/json-patch+json")
    assert patched["metadata"]["finalizers"] == []
    with pytest.raises(ApiError) as caught:
        api_server.request("PATCH", f"{path}/w1", ops, content_type="application/json-patch+json")
    assert caught.value.status == 422


def test_server_side_apply_is_refused_rather_than_ignored(
    api_server: ApiServer, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", pod("p1"))
    with pytest.raises(ApiError) as caught:
        api_server.request(
            "PATCH",
            "/api/v1/namespaces/default/pods/p1?fieldManager=t",
            {"metadata": {"labels": {"a": "b"}}},
            content_type="application/apply-patch+yaml",
        )
    assert caught.value.status == 415


# --- selectors ------------------------------------------------------------------------------------

SELECTED = {
    "app=web": {"web-1", "web-2"},
    "app==web": {"web-1", "web-2"},
    "app!=web": {"db", "bare"},
    "app": {"web-1", "web-2", "db"},
    "!app": {"bare"},
    "app in (web, db)": {"web-1", "web-2", "db"},
    "app notin (web)": {"db", "bare"},
    "app=web,tier=front": {"web-1"},
    "app in (web),!tier": {"web-2"},
}


@pytest.mark.parametrize("selector", list(SELECTED))
def test_label_selectors_filter_pod_lists(core: client.CoreV1Api, selector: str) -> None:
    for name, labels in (
        ("web-1", {"app": "web", "tier": "front"}),
        ("web-2", {"app": "web"}),
        ("db", {"app": "db"}),
        ("bare", {}),
    ):
        core.create_namespaced_pod("default", pod(name, labels=labels))
    names = {p.metadata.name for p in core.list_namespaced_pod("default", label_selector=selector).items}
    assert names == SELECTED[selector]


def test_field_selectors_filter_by_name_and_namespace(core: client.CoreV1Api) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="other")))
    for namespace in ("default", "other"):
        for name in ("a", "b"):
            core.create_namespaced_pod(namespace, pod(name))

    def listed(selector: str) -> set[tuple[str, str]]:
        items = core.list_pod_for_all_namespaces(field_selector=selector).items
        return {(p.metadata.namespace, p.metadata.name) for p in items}

    assert listed("metadata.name=a") == {("default", "a"), ("other", "a")}
    assert listed("metadata.namespace=other,metadata.name!=a") == {("other", "b")}
    assert listed("status.phase=Pending") == {
        ("default", "a"),
        ("default", "b"),
        ("other", "a"),
        ("other", "b"),
    }


@pytest.mark.parametrize(
    ("label_selector", "field_selector"), [("app in (web", ""), ("!app=web", ""), ("", "spec.image=x")]
)
def test_malformed_or_unsupported_selectors_are_bad_requests(
    core: client.CoreV1Api, label_selector: str, field_selector: str
) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod("default", label_selector=label_selector, field_selector=field_selector)
    assert status_of(caught) == 400


# --- watch ----------------------------------------------------------------------------------------


def test_a_watch_from_a_list_resource_version_sees_added_modified_deleted(
    custom: client.CustomObjectsApi, watcher: Callable[..., Watcher]
) -> None:
    # The way kopf and the client's informers watch: list, then watch from the list's resourceVersion.
    # Whenever the stream actually starts, it must see everything after the list, in order.
    rv = custom.list_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS)["metadata"][
        "resourceVersion"
    ]
    w = watcher(
        custom.list_namespaced_custom_object, GROUP, VERSION, "default", WORKFLOWS, resource_version=rv
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1"))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", WORKFLOWS, "w1", {"status": {"phase": "Running"}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, "w1")
    events = [w.next() for _ in range(3)]
    assert [(kind, obj["metadata"]["name"]) for kind, obj in events] == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w1"),
    ]
    assert all(obj["metadata"]["namespace"] == "default" for _, obj in events)
    assert events[1][1]["status"] == {"phase": "Running"}
    versions = [int(obj["metadata"]["resourceVersion"]) for _, obj in events]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_a_watch_started_before_a_create_sees_each_change_as_it_happens(
    core: client.CoreV1Api, watcher: Callable[..., Watcher]
) -> None:
    w = watcher(core.list_namespaced_pod, "default")
    core.create_namespaced_pod("default", pod("p1"))
    assert w.next()[0] == "ADDED"
    core.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"seen": "yes"}}})
    kind, obj = w.next()
    assert (kind, obj.metadata.labels) == ("MODIFIED", {"seen": "yes"})
    core.delete_namespaced_pod("p1", "default")
    kind, obj = w.next()
    assert (kind, obj.metadata.name, obj.metadata.namespace) == ("DELETED", "p1", "default")


def test_a_watch_with_a_label_selector_sees_only_matching_pods(
    core: client.CoreV1Api, watcher: Callable[..., Watcher]
) -> None:
    rv = core.list_namespaced_pod("default").metadata.resource_version
    w = watcher(core.list_namespaced_pod, "default", label_selector="app=web", resource_version=rv)
    core.create_namespaced_pod("default", pod("other", labels={"app": "db"}))
    core.create_namespaced_pod("default", pod("web", labels={"app": "web"}))
    core.delete_namespaced_pod("other", "default")
    core.delete_namespaced_pod("web", "default")
    assert [(k, o.metadata.name) for k, o in (w.next(), w.next())] == [("ADDED", "web"), ("DELETED", "web")]


def test_a_watch_without_resource_version_lists_what_exists_and_ends_at_its_timeout(
    core: client.CoreV1Api, watcher: Callable[..., Watcher]
) -> None:
    core.create_namespaced_pod("default", pod("p1"))
    w = watcher(core.list_namespaced_pod, "default", timeout_seconds=1)
    assert [(k, o.metadata.name) for k, o in w.rest()] == [("ADDED", "p1")]


# --- delete ---------------------------------------------------------------------------------------


def test_deleting_an_object_with_a_finalizer_waits_for_the_finalizer(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1", finalizers=["sluice.dev/cleanup"])
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, "w1")
    marked = custom.get_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, "w1")
    assert marked["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", WORKFLOWS, "w1", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as caught:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, "w1")
    assert status_of(caught) == 404


def test_deleting_an_owner_garbage_collects_its_pods(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow(name="w1"))
    reference = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "name": "w1",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    owned = pod("w1-step")
    owned["metadata"]["ownerReferences"] = [reference]
    core.create_namespaced_pod("default", owned)
    core.create_namespaced_pod("default", pod("unowned"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, "w1")

    def names() -> set[str]:
        return {p.metadata.name for p in core.list_namespaced_pod("default").items}

    wait_for(lambda: names() == {"unowned"}, timeout=10, what="the owned pod to be collected")


def test_delete_collection_deletes_only_the_selected_pods(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("a", labels={"run": "1"}))
    core.create_namespaced_pod("default", pod("b", labels={"run": "2"}))
    core.delete_collection_namespaced_pod("default", label_selector="run=1")
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["b"]


# --- the tests' kubelet: pod status and logs ------------------------------------------------------


def test_pod_status_set_by_the_test_kubelet_reaches_readers_and_watchers(
    api_server: ApiServer, core: client.CoreV1Api, watcher: Callable[..., Watcher]
) -> None:
    created = core.create_namespaced_pod("default", pod("p1"))
    w = watcher(core.list_namespaced_pod, "default", resource_version=created.metadata.resource_version)
    api_server.set_pod_status(
        "default", "p1", {"phase": "Succeeded", "containerStatuses": [container_status("main", exit_code=0)]}
    )
    kind, obj = w.next()
    assert (kind, obj.status.phase) == ("MODIFIED", "Succeeded")
    read = core.read_namespaced_pod("p1", "default")
    assert read.status.container_statuses[0].state.terminated.exit_code == 0
    assert read.spec.containers[0].image == "busybox"
    assert read.metadata.generation == 1


def test_a_pod_log_set_by_the_test_is_returned_and_goes_with_the_pod(
    api_server: ApiServer, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", pod("p1"))
    api_server.set_pod_log("default", "p1", "line 1\nline 2\nline 3\n")
    assert core.read_namespaced_pod_log("p1", "default") == "line 1\nline 2\nline 3\n"
    assert core.read_namespaced_pod_log("p1", "default", tail_lines=1) == "line 3\n"
    core.delete_namespaced_pod("p1", "default")
    core.create_namespaced_pod("default", pod("p1"))
    assert core.read_namespaced_pod_log("p1", "default") == ""


def test_a_pod_with_two_containers_has_a_log_per_container(
    api_server: ApiServer, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", pod("p1", containers=("main", "wait")))
    api_server.set_pod_log("default", "p1", "from main", container="main")
    api_server.set_pod_log("default", "p1", "from wait", container="wait")
    assert core.read_namespaced_pod_log("p1", "default", container="wait") == "from wait"
    assert core.read_namespaced_pod_log("p1", "default", container="main") == "from main"
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod_log("p1", "default")
    assert status_of(caught) == 400


# --- the fixture ----------------------------------------------------------------------------------


def test_reset_forgets_objects_crds_and_logs(api_server: ApiServer, core: client.CoreV1Api) -> None:
    api_server.apply_crds()
    core.create_namespaced_pod("default", pod("p1"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a")))
    api_server.reset()
    assert core.list_namespaced_pod("default").items == []
    assert "team-a" not in {ns.metadata.name for ns in core.list_namespace().items}
    assert "sluice.dev" not in {g["name"] for g in api_server.request("GET", "/apis")["groups"]}


# --- kopf -----------------------------------------------------------------------------------------

OPERATOR = """
import kopf


@kopf.on.create("sluice.dev", "v1alpha1", "workflows")
def started(patch, **_):
    patch.status["phase"] = "Running"
"""


def test_a_kopf_operator_sets_the_status_of_a_created_workflow(
    api_server: ApiServer, custom: client.CustomObjectsApi, tmp_path: Path
) -> None:
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR, encoding="utf-8")
    log = tmp_path / "kopf.log"
    started = time.monotonic()
    with log.open("wb") as out:
        operator = subprocess.Popen(
            [str(KOPF), "run", "--standalone", "--all-namespaces", "--verbose", str(script)],
            env=api_server.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, workflow())
        name = created["metadata"]["name"]

        def phase() -> str | None:
            if operator.poll() is not None:
                raise AssertionError(f"kopf exited with {operator.returncode}:\n{log.read_text()[-3000:]}")
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, "default", WORKFLOWS, name)
            return (obj.get("status") or {}).get("phase")

        try:
            wait_for(lambda: phase() == "Running", timeout=20, interval=0.1, what="kopf to set status.phase")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nkopf:\n{log.read_text()[-3000:]}\nserver:\n{api_server.log_tail()}"
            ) from None
        print(f"kopf started and handled a workflow in {time.monotonic() - started:.2f}s")
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(timeout=10)
