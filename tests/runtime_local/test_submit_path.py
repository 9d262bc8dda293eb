"""The submission path of the local runtime: trigger submit, the store's name check, release, ConfigMaps."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.errors import StateError
from engine.events.actions import ANNOTATION_FIRING, ActionError, ObjectAction
from engine.events.sensor import Firing
from engine.runtime.local.engine import LocalEngine, time_ordered_uid
from engine.runtime.local.store import Store
from engine.runtime.local.triggers import LocalObjectActions, validation_key
from engine.spec.workflow import Workflow, WorkflowSpec
from engine.workflows.status import WorkflowStatus


def manifest(name: str, *, key: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "default", "annotations": {ANNOTATION_FIRING: key}},
        "spec": spec or {"entrypoint": "main", "templates": [{"name": "main", "suspend": {"duration": "0"}}]},
    }


def firing(key: str) -> Firing:
    return Firing(sensor="s", trigger="t", events={}, key=key)


def insert(store: Store, uid: str, name: str) -> None:
    store.insert_workflow(
        uid=uid,
        namespace="default",
        name=name,
        manifest={"metadata": {"name": name}},
        status=WorkflowStatus(),
        owner=None,
        now=1.0,
    )


def test_workflow_uids_are_version_7_uuids_that_sort_by_submission_time() -> None:
    earlier = [time_ordered_uid(1_800_000_000.250) for _ in range(50)]
    later = time_ordered_uid(1_800_000_000.255)
    for uid, ms in [*((u, 1_800_000_000_250) for u in earlier), (later, 1_800_000_000_255)]:
        parsed = uuid.UUID(uid)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, uid)
        assert parsed.int >> 80 == ms  # the first 48 bits: milliseconds since the epoch
    assert len(set(earlier)) == len(earlier)
    assert max(earlier) < later


def test_evolve_copies_a_model_as_dataclasses_replace_does_and_refuses_unknown_fields() -> None:
    wf = Workflow.parse(
        manifest(
            "wf",
            key="k",
            spec={
                "entrypoint": "main",
                "arguments": {"parameters": [{"name": "n", "value": "1"}]},
                "templates": [{"name": "main", "suspend": {"duration": "0"}}],
            },
        )
    )
    spec = wf.spec
    copied = spec.evolve(entrypoint="other", arguments=spec.arguments.evolve(parameters=()))
    assert copied == dataclasses.replace(
        spec, entrypoint="other", arguments=dataclasses.replace(spec.arguments, parameters=())
    )
    assert (spec.entrypoint, len(spec.arguments.parameters)) == ("main", 1)  # the original is untouched
    assert wf.metadata.evolve() == wf.metadata
    with pytest.raises(TypeError, match=r"WorkflowSpec has no field\(s\) nope"):
        spec.evolve(nope=1)


def test_submitted_workflows_get_time_ordered_uids(tmp_path: Path) -> None:
    async def go() -> list[str]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        try:
            uids = []
            for i in range(3):
                run = await eng.submit(Workflow.parse(manifest(f"wf-{i}", key=str(i))))
                await run.done.wait()
                uids.append(run.uid)
                await asyncio.sleep(0.002)
            return uids
        finally:
            await eng.close()

    uids = asyncio.run(go())
    assert [uuid.UUID(u).version for u in uids] == [7, 7, 7]
    assert uids == sorted(uids)


def test_a_taken_workflow_name_is_refused_and_the_first_row_kept(tmp_path: Path) -> None:
    store = Store(tmp_path)
    insert(store, "uid-1", "wf")
    with pytest.raises(StateError, match="already exists"):
        insert(store, "uid-2", "wf")
    rows = store.list_workflows()
    assert [(r.uid, r.name) for r in rows] == [("uid-1", "wf")]
    assert store.get_workflow_by_uid("uid-2") is None


def test_a_redelivered_firing_submits_once_and_another_firing_cannot_take_its_name(tmp_path: Path) -> None:
    async def go() -> tuple[list[str], str, list[str]]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        actions = LocalObjectActions(eng)
        done = []
        for _ in range(2):
            obj = manifest("wf-a", key="k1")
            done.append(await actions.run(ObjectAction("argoWorkflow", "submit", obj), firing("k1")))
        try:
            taken = manifest("wf-a", key="k2")
            await actions.run(ObjectAction("argoWorkflow", "submit", taken), firing("k2"))
        except ActionError as exc:
            refused = str(exc)
        else:
            refused = ""
        await eng.wait("wf-a")
        names = [r.name for r in eng.store.list_workflows()]
        await eng.close()
        return done, refused, names

    done, refused, names = asyncio.run(go())
    assert done == ["workflow/wf-a submitted", "workflow/wf-a was already submitted for this firing"]
    assert "already exists" in refused
    assert names == ["wf-a"]


def test_a_redelivered_firing_whose_workflow_no_longer_validates_is_still_answered_as_done(
    tmp_path: Path,
) -> None:
    # The second delivery's spec points at a template that is gone: the workflow exists, made by this
    # firing, so the answer is "already submitted", not a validation error.
    async def go() -> str:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        actions = LocalObjectActions(eng)
        await actions.run(ObjectAction("argoWorkflow", "submit", manifest("wf-b", key="k1")), firing("k1"))
        broken = manifest("wf-b", key="k1", spec={"workflowTemplateRef": {"name": "gone"}})
        again = await actions.run(ObjectAction("argoWorkflow", "submit", broken), firing("k1"))
        await eng.wait("wf-b")
        await eng.close()
        return again

    assert asyncio.run(go()) == "workflow/wf-b was already submitted for this firing"


def test_an_invalid_trigger_workflow_is_an_action_error(tmp_path: Path) -> None:
    async def go() -> str:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        actions = LocalObjectActions(eng)
        bad = manifest("wf-c", key="k1", spec={"entrypoint": "nope", "templates": [{"name": "main"}]})
        try:
            await actions.run(ObjectAction("argoWorkflow", "submit", bad), firing("k1"))
        except ActionError as exc:
            return str(exc)
        finally:
            await eng.close()
        return ""

    assert "the trigger's Workflow is invalid" in asyncio.run(go())


def test_a_finished_workflow_is_stored_without_an_owner(tmp_path: Path) -> None:
    waits = {"entrypoint": "main", "templates": [{"name": "main", "suspend": {"duration": "1"}}]}

    async def go() -> tuple[str, str | None, str | None]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        run = await eng.submit(Workflow.parse(manifest("wf-d", key="k", spec=waits)))
        owner_while_running = eng.store.get_workflow("default", "wf-d")
        await eng.wait("wf-d")
        row = eng.store.get_workflow("default", "wf-d")
        await eng.close()
        assert owner_while_running is not None and row is not None and run.name == "wf-d"
        return row.phase, owner_while_running.owner, row.owner

    phase, owner_while_running, owner_after = asyncio.run(go())
    assert phase == "Succeeded"
    assert owner_while_running  # the submitting engine owned it until it finished
    assert owner_after is None


def test_a_workflow_done_in_its_first_reconcile_is_stored_once_finished_with_its_nodes(
    tmp_path: Path,
) -> None:
    async def go() -> tuple[Any, Any]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        run = await eng.submit(Workflow.parse(manifest("wf-e", key="k")))
        stored = eng.store.get_workflow("default", "wf-e")
        await eng.wait("wf-e")
        await eng.close()
        assert run.name == "wf-e"
        return stored, Store(tmp_path)

    stored, store = asyncio.run(go())
    assert stored is not None
    assert (stored.phase, stored.owner) == ("Succeeded", None)
    assert stored.finished_at is not None
    nodes = store.load_status(stored).nodes
    assert [n.phase for n in nodes.values()] == ["Succeeded"]


def test_configmaps_are_read_again_after_a_change_here_or_from_another_process(tmp_path: Path) -> None:
    eng = LocalEngine(home=tmp_path)
    assert eng.configmaps("default") == {}
    eng.store.put_object("ConfigMap", "default", "one", {"metadata": {"name": "one"}, "data": {"a": "1"}})
    assert eng.configmaps("default") == {"one": {"a": "1"}}
    # Another connection stands for the CLI writing to the same state database.
    other = Store(tmp_path)
    other.put_object("ConfigMap", "default", "one", {"metadata": {"name": "one"}, "data": {"a": "2"}})
    other.put_object("ConfigMap", "ns2", "two", {"metadata": {"name": "two"}, "data": {"b": "x"}})
    assert eng.configmaps("default") == {"one": {"a": "2"}}
    assert eng.configmaps("ns2") == {"two": {"b": "x"}}
    other.delete_object("ConfigMap", "default", "one")
    assert eng.configmaps("default") == {}
    eng.store.put_object("ConfigMap", "default", "three", {"metadata": {"name": "three"}, "data": {}})
    eng.store.delete_object("ConfigMap", "default", "three")
    assert eng.configmaps("default") == {}
    other.close()


def test_a_workflow_sees_a_configmap_stored_after_an_earlier_submission(tmp_path: Path) -> None:
    spec = {
        "entrypoint": "main",
        "arguments": {
            "parameters": [{"name": "p", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]
        },
        "templates": [{"name": "main", "suspend": {"duration": "0"}}],
    }

    async def go() -> tuple[str, str]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        eng.store.put_object("ConfigMap", "default", "cm", {"metadata": {"name": "cm"}, "data": {"k": "old"}})
        first = await eng.submit(Workflow.parse(manifest("wf-e1", key="k", spec=spec)))
        await eng.wait("wf-e1")
        eng.store.put_object("ConfigMap", "default", "cm", {"metadata": {"name": "cm"}, "data": {"k": "new"}})
        second = await eng.submit(Workflow.parse(manifest("wf-e2", key="k", spec=spec)))
        await eng.wait("wf-e2")
        await eng.close()
        return first.reconciler.configmaps["cm"]["k"], second.reconciler.configmaps["cm"]["k"]

    assert asyncio.run(go()) == ("old", "new")


def args_spec(*params: dict[str, Any]) -> dict[str, Any]:
    return {
        "entrypoint": "main",
        "arguments": {"parameters": list(params)},
        "templates": [{"name": "main", "suspend": {"duration": "0"}}],
    }


def test_trigger_workflows_differing_only_in_metadata_and_argument_values_share_a_validation_key() -> None:
    a = manifest("wf-1", key="k1", spec=args_spec({"name": "n", "value": "1"}))
    b = manifest("wf-2", key="k2", spec=args_spec({"name": "n", "value": "2"}))
    assert validation_key(a) is not None
    assert validation_key(a) == validation_key(b)


def test_a_validation_key_keeps_what_validation_reads() -> None:
    base = validation_key(manifest("w", key="k", spec=args_spec({"name": "n", "value": "1"})))
    unset = validation_key(manifest("w", key="k", spec=args_spec({"name": "n"})))
    renamed = validation_key(manifest("w", key="k", spec=args_spec({"name": "m", "value": "1"})))
    enum_a = validation_key(
        manifest("w", key="k", spec=args_spec({"name": "n", "value": "a", "enum": ["a"]}))
    )
    enum_b = validation_key(
        manifest("w", key="k", spec=args_spec({"name": "n", "value": "b", "enum": ["a"]}))
    )
    assert len({base, unset, renamed, enum_a, enum_b}) == 5


def test_a_spec_using_stored_templates_has_no_validation_key() -> None:
    by_ref = manifest("w", key="k", spec={"workflowTemplateRef": {"name": "t"}})
    step_ref = manifest(
        "w",
        key="k",
        spec={
            "entrypoint": "main",
            "templates": [
                {"name": "main", "steps": [[{"name": "s", "templateRef": {"name": "t", "template": "x"}}]]}
            ],
        },
    )
    assert validation_key(by_ref) is None
    assert validation_key(step_ref) is None


def test_a_remembered_valid_spec_still_rejects_an_argument_outside_its_enum(tmp_path: Path) -> None:
    async def go() -> tuple[str, str, str]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        actions = LocalObjectActions(eng)
        results = []
        for i, value in enumerate(["a", "zzz", "a"]):
            spec = args_spec({"name": "n", "value": value, "enum": ["a", "b"]})
            action = ObjectAction("argoWorkflow", "submit", manifest(f"wf-{i}", key=f"k{i}", spec=spec))
            try:
                results.append(await actions.run(action, firing(f"k{i}")))
            except ActionError as exc:
                results.append(str(exc))
        for row in eng.store.list_workflows():
            await eng.wait(row.name)
        await eng.close()
        return results[0], results[1], results[2]

    first, second, third = asyncio.run(go())
    assert first == "workflow/wf-0 submitted"
    assert "is not one of" in second
    assert third == "workflow/wf-2 submitted"


def test_an_invalid_trigger_workflow_is_rejected_every_time(tmp_path: Path) -> None:
    async def go() -> list[str]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        actions = LocalObjectActions(eng)
        out = []
        for i in range(2):
            spec = args_spec({"name": "n", "value": "1"})
            spec["entrypoint"] = "missing"
            action = ObjectAction("argoWorkflow", "submit", manifest(f"wf-{i}", key=f"k{i}", spec=spec))
            try:
                out.append(await actions.run(action, firing(f"k{i}")))
            except ActionError as exc:
                out.append(str(exc))
        await eng.close()
        return out

    results = asyncio.run(go())
    assert all("the trigger's Workflow is invalid" in r for r in results), results


SHOWN = {"name": "ab", "value": "{{workflow.parameters.a}}-{{workflow.parameters.b}}"}


def test_a_workflow_of_a_remembered_shape_is_stored_and_run_as_a_full_parse_would(tmp_path: Path) -> None:
    # Firings 1 and 2 reuse the shape firing 0 left behind: their stored manifests and outputs must be
    # what parsing them in full gives, with their own values.
    spec = {
        "entrypoint": "main",
        "arguments": {
            "parameters": [{"name": "a", "value": "x"}, {"name": "b", "value": "1", "enum": ["1", "2"]}]
        },
        "templates": [
            {
                "name": "main",
                "steps": [[{"name": "show", "template": "echo", "arguments": {"parameters": [SHOWN]}}]],
            },
            {"name": "echo", "inputs": {"parameters": [{"name": "ab"}]}, "suspend": {"duration": "0"}},
        ],
    }
    values = [("x", "1"), ("y", "2"), ("z z", "1")]

    async def go() -> list[tuple[dict[str, Any], str]]:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        actions = LocalObjectActions(eng)
        for i, (a, b) in enumerate(values):
            s = json.loads(json.dumps(spec))
            s["arguments"]["parameters"][0]["value"] = a
            s["arguments"]["parameters"][1]["value"] = b
            obj = manifest(f"wf-{i}", key=f"k{i}", spec=s)
            await actions.run(ObjectAction("argoWorkflow", "submit", obj), firing(f"k{i}"))
        out = []
        for i in range(len(values)):
            await eng.wait(f"wf-{i}")
            row = eng.store.get_workflow("default", f"wf-{i}")
            assert row is not None
            (show,) = [n for n in eng.store.load_status(row).nodes.values() if n.display_name == "show"]
            out.append((row.manifest, show.inputs["parameters"][0]["value"]))
        await eng.close()
        return out

    stored = asyncio.run(go())
    for (a, b), (manifest_, output) in zip(values, stored, strict=True):
        assert Workflow.parse(manifest_).dump() == manifest_
        assert manifest_["spec"]["arguments"]["parameters"] == [
            {"name": "a", "value": a},
            {"name": "b", "value": b, "enum": ["1", "2"]},
        ]
        assert manifest_["spec"]["templates"] == WorkflowSpec.parse(spec).dump()["templates"]
        assert output == f"{a}-{b}"


def test_a_remembered_shape_still_rejects_invalid_metadata(tmp_path: Path) -> None:
    async def go() -> str:
        eng = LocalEngine(home=tmp_path)
        await eng.start(adopt=False)
        actions = LocalObjectActions(eng)
        await actions.run(ObjectAction("argoWorkflow", "submit", manifest("wf-0", key="k0")), firing("k0"))
        bad = manifest("wf-1", key="k1")
        bad["metadata"]["labels"] = ["not", "a", "mapping"]
        try:
            await actions.run(ObjectAction("argoWorkflow", "submit", bad), firing("k1"))
        except ActionError as exc:
            return str(exc)
        finally:
            await eng.wait("wf-0")
            await eng.close()
        return ""

    assert "metadata.labels" in asyncio.run(go())
