"""``sluice``: the command line.

``run`` executes a workflow in this process on the embedded runtime and exits with its result (0
Succeeded, 1 Failed/Error, 2 invalid input). ``server`` hosts a long-running engine; ``submit``,
``stop``, ``terminate``, ``suspend``, ``resume``, ``retry``, ``resubmit``, ``delete`` and ``wait`` talk
to it. ``get``, ``list`` and ``logs`` read the local state directly. ``lint``, ``convert``, ``apply``
and the ``template``, ``cron``, ``configmap`` and ``secret`` groups manage manifests and stored
objects. Errors are one line naming the file and field; never a traceback for bad input.

With ``--kube`` (or ``SLUICE_KUBE=1``) the same commands work on a Kubernetes cluster instead
(``engine.cli.kube``): ``_store`` then reads the cluster, so the views print the same.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, SluiceError, SpecError, StateError
from engine.spec.loader import Document, load_file, normalise_api_version, parse_yaml
from engine.spec.workflow import API_VERSION, ARGO_API_VERSION, CronWorkflow, WorkflowTemplate

VERSION = "0.1.0"
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


# =================================================================================== helpers


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home or os.environ.get("SLUICE_HOME") or Path.home() / ".sluice")


def _store(args: argparse.Namespace) -> Any:
    from engine.runtime.local.store import Store

    if getattr(args, "kube", False):
        from engine.cli.kube import cluster_store

        return cluster_store(args)
    return Store(_home(args))


def parse_parameters(pairs: Sequence[str], files: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for f in files:
        docs = parse_yaml(_read(f), source=f)
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise SpecError([Problem("", "a parameter file must be one mapping of name: value")], file=f)
        for k, v in docs[0].items():
            out.append(
                (str(k), v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else str(v))
            )
    for p in pairs:
        if "=" not in p:
            raise SpecError([Problem("", f"parameter {p!r} must be name=value")], file="-p")
        k, v = p.split("=", 1)
        out.append((k.strip(), v))
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem("", f"cannot read: {exc.strerror or exc}")], file=path) from exc


def _docs(paths: Iterable[str]) -> list[Document]:
    out: list[Document] = []
    for p in paths:
        out.extend(load_file(p))
    return out


def workflow_object(manifest: dict[str, Any], status: Any) -> dict[str, Any]:
    obj = json.loads(json.dumps(manifest))
    labels = obj.setdefault("metadata", {}).setdefault("labels", {})
    if status.phase:
        labels["workflows.argoproj.io/phase"] = status.phase
        labels["workflows.argoproj.io/completed"] = "true" if status.fulfilled() else "false"
    obj["status"] = status.to_dict()
    return obj


def _print_obj(obj: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(obj, indent=2))
    elif fmt == "yaml":
        print(yaml.safe_dump(obj, sort_keys=False), end="")
    elif fmt == "name":
        print(obj.get("metadata", {}).get("name", ""))


def _template_source(store: Any, namespace: str, extra: dict[tuple[bool, str], Any] | None = None) -> Any:
    from engine.runtime.local.store import CLUSTER

    def source(cluster: bool, name: str) -> Any:
        if extra and (cluster, name) in extra:
            return extra[(cluster, name)]
        kind = "ClusterWorkflowTemplate" if cluster else "WorkflowTemplate"
        obj = store.get_object(kind, CLUSTER if cluster else namespace, name)
        return None if obj is None else WorkflowTemplate.parse(obj).spec

    return source


class _Live:
    """Redraws the workflow tree in place on a terminal; prints phase changes otherwise."""

    def __init__(self, stream: Any = sys.stdout) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0
        self._lines = 0
        self._phases: dict[str, str] = {}

    def update(self, manifest: dict[str, Any], status: Any, *, force: bool = False) -> None:
        from engine.cli.render import render_get

        now = time.time()
        if self.tty:
            if not force and now - self._last < 0.1:
                return
            self._last = now
            text = render_get(manifest, status, now=now)
            width = shutil.get_terminal_size((120, 40)).columns
            lines = [ln[:width] for ln in text.splitlines()]
            out = ""
            if self._lines:
                out += f"\x1b[{self._lines}F\x1b[J"
            out += "\n".join(lines) + "\n"
            self._lines = len(lines)
            self.stream.write(out)
            self.stream.flush()
            return
        root = manifest["metadata"]["name"]
        # Steps in the order they started, the workflow's own line last.
        for node in sorted(status.nodes.values(), key=lambda n: (n.id == root, n.started_at or 0.0)):
            if self._phases.get(node.id) != node.phase:
                self._phases[node.id] = node.phase
                if (
                    node.type in ("Pod", "Suspend", "HTTP", "Skipped")
                    or node.id == manifest["metadata"]["name"]
                ):
                    print(
                        f"{node.display_name}: {node.phase}" + (f" ({node.message})" if node.message else "")
                    )
        self.stream.flush()


# =================================================================================== run


def _redraw(live: _Live, manifest: dict[str, Any]) -> Any:
    def listener(run: Any) -> None:
        live.update(manifest, run.status)

    return listener


async def _run(args: argparse.Namespace) -> int:
    from engine.cli.render import render_get
    from engine.runtime.local.engine import EngineSettings, LocalEngine

    docs = load_file(args.file)
    workflows = [d for d in docs if d.kind == "Workflow"]
    if not workflows:
        raise SpecError([Problem("kind", "the file has no Workflow document to run")], file=args.file)
    params = parse_parameters(args.parameter, args.parameter_file)
    extra_path = tuple(p for p in (os.environ.get("SLUICE_STEP_PATH") or "").split(os.pathsep) if p)
    engine = LocalEngine(
        home=_home(args),
        settings=EngineSettings(
            isolation=args.isolation,
            extra_path=extra_path,
            default_active_deadline_seconds=args.active_deadline_seconds,
        ),
    )
    # Objects the file brings along (templates, configmaps) are stored first, as `apply` would.
    _apply_objects(engine.store, [d for d in docs if d.kind != "Workflow"], namespace=args.namespace)
    await engine.start(adopt=False)
    # Long runs show live progress on a terminal; --watch asks for it elsewhere too.
    want_live = args.watch or (sys.stdout.isatty() and not args.quiet)
    live = _Live() if want_live and args.output not in ("json", "yaml", "name") else None
    runs = []
    try:
        for d in workflows:
            try:
                run = await engine.submit(
                    d.obj, namespace=args.namespace, parameters=params, entrypoint=args.entrypoint
                )
            except SpecError as exc:
                raise (exc if exc.file else exc.with_file(d.source)) from None
            runs.append(run)
            if args.output == "name":
                print(run.name)
            if live is not None:
                run.listeners.append(_redraw(live, run.workflow.dump()))
            elif args.output not in ("json", "yaml", "name"):
                print(f"Name: {run.name}", file=sys.stderr)
        loop = asyncio.get_running_loop()
        interrupted = 0

        def on_signal() -> None:
            nonlocal interrupted
            interrupted += 1
            for r in runs:
                with contextlib.suppress(StateError):  # already finished
                    (engine.stop if interrupted == 1 else engine.terminate)(r.name, r.namespace)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        await asyncio.gather(*(r.done.wait() for r in runs))
    finally:
        await engine.close()
    worst = EXIT_OK
    objs = []
    for run in runs:
        manifest = run.workflow.dump()
        if live is not None:
            live.update(manifest, run.status, force=True)
        if args.output in ("json", "yaml"):
            objs.append(workflow_object(manifest, run.status))
        elif args.output == "name":
            pass  # printed at submission
        elif live is None or not live.tty:
            print(render_get(manifest, run.status, now=time.time()))
        if run.status.phase != "Succeeded":
            worst = EXIT_FAILED
    if objs:
        _print_obj(objs[0] if len(objs) == 1 else objs, args.output)
    return worst


# =================================================================================== lint/convert/apply


def _label(d: Document, parsed: Sequence[Document]) -> str:
    """The file name, with the document number when the file holds several."""
    if d.index == 0 and len([x for x in parsed if x.source == d.source]) == 1:
        return d.source
    return f"{d.source} (document {d.index + 1})"


EVENT_KINDS = ("EventSource", "Sensor", "EventBus")


def cmd_lint(args: argparse.Namespace) -> int:
    from engine.events.validate import validate_event_object
    from engine.workflows.validate import validate_cron, validate_workflow

    files: list[str] = []
    for p in args.paths:
        path = Path(p)
        if path.is_dir():
            files.extend(str(f) for f in sorted(path.rglob("*")) if f.suffix in (".yaml", ".yml", ".json"))
        else:
            files.append(p)
    problems: list[str] = []
    parsed: list[Document] = []
    for f in files:
        try:
            parsed.extend(load_file(f))
        except SpecError as exc:
            problems.extend(exc.lines())
    templates: dict[tuple[bool, str], Any] = {}
    for d in parsed:
        if d.kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
            templates[(d.kind == "ClusterWorkflowTemplate", d.obj.metadata.name)] = d.obj.spec
    store = None
    with _suppress_store_errors():
        store = _store(args)
    source = (
        _template_source(store, args.namespace, templates) if store else (lambda c, n: templates.get((c, n)))
    )
    for d in parsed:
        try:
            if d.kind in ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate"):
                validate_workflow(d.obj, source=source)
            elif d.kind == "CronWorkflow":
                validate_cron(d.obj, source=source)
            elif d.kind in EVENT_KINDS:
                for w in validate_event_object(d.obj):
                    print(f"{_label(d, parsed)}: warning: {w}", file=sys.stderr)
        except SpecError as exc:
            problems.extend(exc.with_file(_label(d, parsed)).lines())
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return EXIT_INVALID
    print(f"✔ no linting errors found in {len(files)} file{'s' if len(files) != 1 else ''}")
    return EXIT_OK


class _suppress_store_errors:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, SluiceError)


def convert_document(raw: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a manifest to current form: sluice.dev API group, ``schedules``, lock lists."""
    doc = normalise_api_version(raw)
    if doc.get("apiVersion") == ARGO_API_VERSION:
        doc["apiVersion"] = API_VERSION
    doc = json.loads(json.dumps(doc))
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronWorkflow" and "schedule" in spec:
        s = spec.pop("schedule")
        spec.setdefault("schedules", [])
        if s not in spec["schedules"]:
            spec["schedules"].insert(0, s)

    def fix_sync(obj: Any) -> None:
        if isinstance(obj, dict):
            sync = obj.get("synchronization")
            if isinstance(sync, dict):
                if "mutex" in sync:
                    sync.setdefault("mutexes", []).append(sync.pop("mutex"))
                if "semaphore" in sync:
                    sync.setdefault("semaphores", []).append(sync.pop("semaphore"))
            for v in obj.values():
                fix_sync(v)
        elif isinstance(obj, list):
            for v in obj:
                fix_sync(v)

    fix_sync(doc)
    return doc


def cmd_crds(args: argparse.Namespace) -> int:
    from engine.spec.crd import custom_resource_definitions, file_name

    crds = custom_resource_definitions()
    if not args.dir:
        sys.stdout.write(yaml.safe_dump_all(crds, sort_keys=False))
        return EXIT_OK
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for d in crds:
        (out / file_name(d)).write_text(crd_text(d), encoding="utf-8")
    return EXIT_OK


def crd_text(definition: dict[str, Any]) -> str:
    """One CRD file as committed under ``crds/``."""
    return "# Generated by `sluice crds --dir crds` from engine/spec; do not edit.\n" + yaml.safe_dump(
        definition, sort_keys=False
    )


def cmd_convert(args: argparse.Namespace) -> int:
    docs = parse_yaml(_read(args.file), source=args.file)
    out = [convert_document(d) if isinstance(d, dict) else d for d in docs]
    text = yaml.safe_dump_all(out, sort_keys=False)
    if args.in_place:
        Path(args.file).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _apply_objects(store: Any, docs: Sequence[Document], *, namespace: str) -> list[str]:
    from engine.events.validate import validate_event_object
    from engine.runtime.local.store import CLUSTER
    from engine.workflows.validate import validate_cron, validate_workflow

    done = []
    for d in docs:
        meta = d.raw.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise SpecError([Problem("metadata.name", "is required")], file=d.source)
        ns = CLUSTER if d.kind == "ClusterWorkflowTemplate" else (meta.get("namespace") or namespace)
        raw = json.loads(json.dumps(d.raw))
        raw.setdefault("metadata", {})["namespace"] = ns or None
        if not ns:
            raw["metadata"].pop("namespace")
        if d.kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
            try:
                validate_workflow(d.obj, source=_template_source(store, namespace))
            except SpecError as exc:
                raise exc.with_file(d.source) from None
        elif d.kind == "CronWorkflow":
            try:
                validate_cron(d.obj, source=_template_source(store, namespace))
            except SpecError as exc:
                raise exc.with_file(d.source) from None
            raw["metadata"].setdefault(
                "creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
        elif d.kind in EVENT_KINDS:
            try:
                for w in validate_event_object(d.obj):
                    print(f"{d.source}: warning: {w}", file=sys.stderr)
            except SpecError as exc:
                raise exc.with_file(d.source) from None
        elif d.kind == "Workflow":
            raise SpecError(
                [Problem("kind", "use `sluice run` or `sluice submit` for Workflows")], file=d.source
            )
        store.put_object(d.kind, ns, name, raw)
        done.append(f"{d.kind.lower()}/{name}")
    return done


def cmd_apply(args: argparse.Namespace) -> int:
    store = _store(args)
    docs = _docs(args.files)
    for line in _apply_objects(store, docs, namespace=args.namespace):
        print(f"{line} configured")
    _poke_cron(args)
    if any(d.kind in EVENT_KINDS for d in docs):
        _poke_events(args)
    return EXIT_OK


def cmd_events_tail(args: argparse.Namespace) -> int:
    """Print the bus's events as JSON lines: the last ``-n`` of them, then new ones with ``-f``."""
    from engine.runtime.busmodel import SubjectFilter
    from engine.runtime.local.eventbus import EventLogReader, events_path

    path = events_path(_home(args))
    if not path.exists():
        raise StateError(f"no events yet: {path} does not exist (a `sluice server` creates it)")
    filters = [SubjectFilter(args.namespace, args.source, args.event)] if args.source else None
    with EventLogReader(path) as reader:
        start = max(1, reader.last_seq() - args.lines + 1)
        while True:
            for record in reader.read(start, 1000, filters):
                line = {"seq": record.seq, "namespace": record.namespace, **record.event}
                print(json.dumps(line, sort_keys=True), flush=True)
                start = record.seq + 1
            if not args.follow:
                return EXIT_OK
            time.sleep(0.5)


def _poke_events(args: argparse.Namespace) -> None:
    from engine.cli.client import Client, NoServer

    with contextlib.suppress(NoServer):  # a server started later reads the store anyway
        Client(_home(args)).call("POST", "/api/v1/events/reload", {}, timeout=30)


def _poke_cron(args: argparse.Namespace) -> None:
    from engine.cli.client import Client, NoServer

    if getattr(args, "kube", False):  # the operator watches cron workflows itself
        return
    with contextlib.suppress(NoServer):  # the next server start runs the cron loop anyway
        Client(_home(args)).call("POST", "/api/v1/cron/wake", {}, timeout=5)


# =================================================================================== server and its clients


def cmd_server(args: argparse.Namespace) -> int:
    from engine.runtime.local.engine import EngineSettings, LocalEngine
    from engine.runtime.local.server import Server

    extra_path = tuple(p for p in (os.environ.get("SLUICE_STEP_PATH") or "").split(os.pathsep) if p)
    engine = LocalEngine(
        home=_home(args),
        settings=EngineSettings(
            isolation=args.isolation,
            extra_path=extra_path,
            default_active_deadline_seconds=args.active_deadline_seconds,
        ),
    )
    ports = {}
    for pair in args.webhook_port:
        spec, _, bound = pair.partition("=")
        if not spec or not bound.isdigit():
            raise SpecError([Problem("--webhook-port", f"expected SPEC_PORT=PORT, not {pair!r}")])
        ports[spec] = int(bound)
    server = Server(
        engine,
        cron_interval=args.cron_interval,
        webhook_host=args.webhook_host,
        webhook_ports=ports or None,
        s3_poll_interval=args.s3_poll_interval,
        pace_limit=None if args.intake_limit is None else max(0, args.intake_limit),
        intake_process=args.intake_process,
    )
    asyncio.run(server.serve(cron=not args.no_cron, events=not args.no_events))
    return EXIT_OK


def _client(args: argparse.Namespace) -> Any:
    from engine.cli.client import Client

    return Client(_home(args))


def cmd_submit(args: argparse.Namespace) -> int:
    docs = load_file(args.file)
    workflows = [d for d in docs if d.kind == "Workflow"]
    if not workflows:
        raise SpecError([Problem("kind", "the file has no Workflow document to submit")], file=args.file)
    store = _store(args)
    _apply_objects(store, [d for d in docs if d.kind != "Workflow"], namespace=args.namespace)
    params = parse_parameters(args.parameter, args.parameter_file)
    client = _client(args)
    names = []
    for d in workflows:
        try:
            res = client.call(
                "POST",
                "/api/v1/workflows",
                {
                    "manifest": d.raw,
                    "namespace": args.namespace,
                    "parameters": params,
                    "entrypoint": args.entrypoint,
                },
            )
        except SpecError as exc:
            raise (exc if exc.file else exc.with_file(d.source)) from None
        names.append(res["name"])
        if args.output == "name":
            print(res["name"])
        elif not (args.wait or args.watch):
            print(f"Name:      {res['name']}\nNamespace: {res['namespace']}\nStatus:    Pending")
    if args.wait or args.watch:
        return _wait_names(args, names, live=args.watch)
    return EXIT_OK


def _wait_names(args: argparse.Namespace, names: Sequence[str], *, live: bool) -> int:
    from engine.cli.render import render_get

    store = _store(args)
    watcher = _Live() if live else None
    worst = EXIT_OK
    for name in names:
        while True:
            row = store.get_workflow(args.namespace, name)
            if row is None:
                raise StateError(f"workflow {name!r} not found in namespace {args.namespace!r}")
            status = (
                store.load_status(row)
                if watcher is not None or row.phase in ("Succeeded", "Failed", "Error")
                else None
            )
            if watcher is not None and status is not None:
                watcher.update(row.manifest, status)
            if row.phase in ("Succeeded", "Failed", "Error"):
                assert status is not None
                if watcher is not None:
                    watcher.update(row.manifest, status, force=True)
                    if not watcher.tty:
                        print(render_get(row.manifest, status, now=time.time()))
                else:
                    print(f"{name} {row.phase}" + (f" ({row.message})" if row.message else ""))
                if row.phase != "Succeeded":
                    worst = EXIT_FAILED
                break
            time.sleep(0.2)
    return worst


def cmd_wait(args: argparse.Namespace) -> int:
    return _wait_names(args, args.names, live=False)


def _op(args: argparse.Namespace, op: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = _client(args).call(
        "POST", f"/api/v1/workflows/{args.namespace}/{args.name}/{op}", body or {}
    )
    return result


def cmd_simple_op(args: argparse.Namespace) -> int:
    _op(args, args.op)
    past = {"stop": "stopped", "terminate": "terminated", "suspend": "suspended"}[args.op]
    print(f"workflow {args.name} {past}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.node_field_selector:
        body["node"] = args.node_field_selector.split("=", 1)[-1]
    if args.output_parameter:
        body["outputs"] = dict(p.split("=", 1) for p in args.output_parameter)
    _op(args, "resume", body)
    print(f"workflow {args.name} resumed")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    params = parse_parameters(args.parameter, [])
    res = _op(
        args,
        "retry",
        {
            "restartSuccessful": args.restart_successful,
            "nodeFieldSelector": args.node_field_selector,
            "parameters": params,
        },
    )
    print(f"workflow {res['name']} retried")
    if args.wait or args.watch:
        return _wait_names(args, [res["name"]], live=args.watch)
    return EXIT_OK


def cmd_resubmit(args: argparse.Namespace) -> int:
    params = parse_parameters(args.parameter, [])
    res = _op(args, "resubmit", {"parameters": params})
    print(res["name"] if args.output == "name" else f"Name:      {res['name']}")
    if args.wait or args.watch:
        return _wait_names(args, [res["name"]], live=args.watch)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from engine.cli.client import NoServer

    store = _store(args)
    names = list(args.names)
    if args.all or args.completed:
        for row in store.list_workflows(args.namespace):
            done = row.phase in ("Succeeded", "Failed", "Error")
            if args.all or done:
                names.append(row.name)
    if not names:
        raise StateError("nothing to delete (give workflow names, --all or --completed)")
    client = _client(args)
    for name in dict.fromkeys(names):
        try:
            client.call("DELETE", f"/api/v1/workflows/{args.namespace}/{name}")
        except NoServer:
            row = store.get_workflow(args.namespace, name)
            if row is None:
                raise StateError(f"workflow {name!r} not found in namespace {args.namespace!r}") from None
            if row.phase not in ("Succeeded", "Failed", "Error"):
                raise
            store.delete_workflow(row.uid)
        print(f'Workflow "{name}" deleted')
    return EXIT_OK


# =================================================================================== read-only commands


def _row(args: argparse.Namespace, name: str) -> Any:
    store = _store(args)
    row = store.get_workflow(args.namespace, name)
    if row is None and name == "@latest":
        rows = store.list_workflows(args.namespace)
        row = rows[-1] if rows else None
    if row is None:
        raise StateError(f"workflow {name!r} not found in namespace {args.namespace!r}")
    return store, row


def cmd_get(args: argparse.Namespace) -> int:
    from engine.cli.render import render_get

    store, row = _row(args, args.name)
    status = store.load_status(row)
    if args.output in ("json", "yaml", "name"):
        _print_obj(workflow_object(row.manifest, status), args.output)
        return EXIT_OK
    if args.watch:
        return _wait_names(args, [row.name], live=True)
    print(render_get(row.manifest, status, now=time.time()))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from engine.cli.render import human_duration, render_table

    store = _store(args)
    rows = store.list_workflows(None if args.all_namespaces else args.namespace)
    if args.running:
        rows = [r for r in rows if r.phase in ("", "Pending", "Running")]
    if args.completed:
        rows = [r for r in rows if r.phase in ("Succeeded", "Failed", "Error")]
    if args.output == "json":
        print(
            json.dumps(
                [
                    {"name": r.name, "namespace": r.namespace, "phase": r.phase, "message": r.message}
                    for r in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if args.output == "name":
        for r in rows:
            print(r.name)
        return EXIT_OK
    now = time.time()
    table = []
    for r in reversed(rows):
        started = r.status.get("startedAt")
        from engine.workflows.nodes import parse_time

        parsed = parse_time(started) if started else None
        start = parsed if parsed is not None else r.created_at
        end = r.finished_at or now
        status = r.phase or "Pending"
        if r.control.get("suspend") and status == "Running":
            status = "Running (Suspended)"
        table.append(
            [r.name, status, human_duration(now - r.created_at), human_duration(end - start), r.message or ""]
        )
    if not table:
        print("No workflows found")
        return EXIT_OK
    print(render_table(["NAME", "STATUS", "AGE", "DURATION", "MESSAGE"], table))
    return EXIT_OK


def log_pods(workflow: str, status: Any, node: str | None) -> list[tuple[Any, str]]:
    """The steps ``logs`` shows (all, or the one named ``node``) in the order they started, each with
    its pod's name. Shared with ``--kube``."""
    from engine.workflows import nodes as N

    steps = sorted(
        (n for n in status.nodes.values() if n.type in (N.POD, N.HTTP)),
        key=lambda n: (n.started_at or 0, n.name),
    )
    return [
        (n, N.pod_name(workflow, n.id, n.template_name or (n.template_ref or {}).get("template")))
        for n in steps
        if not node or node in (n.name, n.display_name, n.id)
    ]


def cmd_logs(args: argparse.Namespace) -> int:
    store, row = _row(args, args.name)
    home = _home(args)
    offsets: dict[Path, int] = {}
    while True:
        status = store.load_status(row)
        for _node, pod in log_pods(row.name, status, args.node):
            for fname in ("main.log", "main.err"):
                path = home / "pods" / pod / fname
                if not path.exists():
                    continue
                with path.open("rb") as f:
                    f.seek(offsets.get(path, 0))
                    data = f.read()
                    offsets[path] = f.tell()
                text = data.decode("utf-8", "replace")
                for line in text.splitlines():
                    print(f"{pod}: {line}" if not args.no_prefix else line)
        sys.stdout.flush()
        if not args.follow or row.phase in ("Succeeded", "Failed", "Error"):
            return EXIT_OK
        time.sleep(0.3)
        row = store.get_workflow_by_uid(row.uid) or row


# =================================================================================== stored objects


def _object_cmds(kind: str, plural: str) -> Any:
    from engine.runtime.local.store import CLUSTER

    def ns_of(args: argparse.Namespace) -> str:
        return (
            CLUSTER
            if getattr(args, "cluster", False) or kind == "ClusterWorkflowTemplate"
            else args.namespace
        )

    def create(args: argparse.Namespace) -> int:
        docs = _docs(args.files)
        wanted = {"WorkflowTemplate", "ClusterWorkflowTemplate"} if kind == "WorkflowTemplate" else {kind}
        bad = [d for d in docs if d.kind not in wanted]
        if bad:
            raise SpecError(
                [Problem("kind", f"expected {' or '.join(sorted(wanted))}, not {bad[0].kind}")],
                file=bad[0].source,
            )
        for line in _apply_objects(_store(args), docs, namespace=args.namespace):
            print(f"{line} created")
        if kind == "CronWorkflow":
            _poke_cron(args)
        if kind in EVENT_KINDS:
            _poke_events(args)
        return EXIT_OK

    def list_(args: argparse.Namespace) -> int:
        from engine.cli.render import render_table

        store = _store(args)
        objs = store.list_objects(kind, ns_of(args))
        if kind == "WorkflowTemplate":
            objs += [
                dict(o, kind="ClusterWorkflowTemplate") for o in store.list_objects("ClusterWorkflowTemplate")
            ]
        if not objs:
            print(f"No {plural} found")
            return EXIT_OK
        rows = []
        for o in objs:
            meta = o.get("metadata") or {}
            extra = ""
            if kind == "CronWorkflow":
                spec = o.get("spec") or {}
                scheds = spec.get("schedules") or ([spec["schedule"]] if spec.get("schedule") else [])
                extra = ",".join(scheds) + ("  (suspended)" if spec.get("suspend") else "")
            rows.append([meta.get("name", ""), o.get("kind", kind), extra])
        print(render_table(["NAME", "KIND", "SCHEDULE" if kind == "CronWorkflow" else ""], rows))
        return EXIT_OK

    def get(args: argparse.Namespace) -> int:
        store = _store(args)
        obj = store.get_object(kind, ns_of(args), args.name)
        if obj is None and kind == "WorkflowTemplate":
            obj = store.get_object("ClusterWorkflowTemplate", CLUSTER, args.name)
        if obj is None:
            raise StateError(f"{kind} {args.name!r} not found")
        if kind == "CronWorkflow":
            obj = dict(obj, status=store.cron_state(ns_of(args), args.name) or {})
        if kind == "Secret" and args.output != "yaml-raw":
            obj = dict(obj, data=dict.fromkeys(obj.get("data") or {}, "(hidden)"))
        _print_obj(obj, "json" if args.output == "json" else "yaml")
        return EXIT_OK

    def delete(args: argparse.Namespace) -> int:
        store = _store(args)
        removed = store.delete_object(kind, ns_of(args), args.name)
        if not removed and kind == "WorkflowTemplate":
            removed = store.delete_object("ClusterWorkflowTemplate", CLUSTER, args.name)
        if not removed:
            raise StateError(f"{kind} {args.name!r} not found")
        print(f"{kind.lower()}/{args.name} deleted")
        if kind in EVENT_KINDS:
            _poke_events(args)
        return EXIT_OK

    return create, list_, get, delete


def cmd_cron_suspend(args: argparse.Namespace, value: bool) -> int:
    store = _store(args)
    obj = store.get_object("CronWorkflow", args.namespace, args.name)
    if obj is None:
        raise StateError(f"CronWorkflow {args.name!r} not found")
    obj.setdefault("spec", {})["suspend"] = value
    CronWorkflow.parse(obj)
    store.put_object("CronWorkflow", args.namespace, args.name, obj)
    _poke_cron(args)
    print(f"CronWorkflow '{args.name}' {'suspended' if value else 'resumed'}")
    return EXIT_OK


def cmd_data_create(args: argparse.Namespace, kind: str) -> int:
    from engine.spec.workflow import ConfigMap, Secret

    data: dict[str, str] = {}
    for lit in args.from_literal:
        if "=" not in lit:
            raise SpecError([Problem("", f"--from-literal {lit!r} must be key=value")], file="-")
        k, v = lit.split("=", 1)
        data[k] = v
    for spec in args.from_file:
        k, _, path = spec.partition("=")
        if not path:
            path, k = k, Path(k).name
        data[k] = _read(path)
    meta = {"name": args.name, "namespace": args.namespace}
    if kind == "ConfigMap":
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        ConfigMap.parse(obj)
    else:
        obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        Secret.parse(obj)
    store = _store(args)
    store.put_object(kind, args.namespace, args.name, obj)
    print(f"{kind.lower()}/{args.name} created")
    return EXIT_OK


def cmd_executor(args: argparse.Namespace) -> int:
    """The executor containers of a step pod (internal: the pods the operator builds run these)."""
    from engine.runtime.kubernetes import executor

    if args.subcommand == "init":
        return executor.run_init(os.environ)
    if args.subcommand == "http":
        return executor.run_http(os.environ)
    return executor.run_wait(os.environ)


def cmd_operator(args: argparse.Namespace) -> int:
    """The Kubernetes operator (the Deployment in deploy/ runs this)."""
    from engine.runtime.kubernetes import operator

    argv = [*(["--kubeconfig", args.kubeconfig] if args.kubeconfig else [])]
    argv += [*(["--context", args.context] if args.context else []), *(["-v"] if args.verbose else [])]
    return operator.main(argv)


def cmd_events_run(args: argparse.Namespace, kind: str) -> int:
    """``sluice eventsource run`` / ``sluice sensor run``: one object's process on a cluster (the
    operator's Deployments run these)."""
    from engine.runtime.kubernetes import eventrun

    eventrun.configure_logging(verbose=args.verbose)
    options = eventrun.RunOptions(
        kubeconfig=args.kubeconfig,
        context=args.context,
        credentials=os.environ.get("SLUICE_EVENTBUS_CREDENTIALS"),
        health_port=eventrun.parse_health_port(os.environ.get("SLUICE_HEALTH_PORT")),
        webhook_ports={
            **eventrun.parse_port_map([os.environ.get(eventrun.ENV_WEBHOOK_PORTS, "")]),
            **eventrun.parse_port_map(getattr(args, "webhook_port", []), where="--webhook-port"),
        },
        recheck=args.recheck_seconds,
    )
    run = eventrun.run_sensor if kind == "Sensor" else eventrun.run_event_source
    return asyncio.run(run(args.name, args.namespace, args.eventbus_url, options=options))


# Commands that run inside a cluster themselves: --kube / SLUICE_KUBE do not redirect them.
IN_CLUSTER_COMMANDS = ("executor", "operator")


# =================================================================================== parser


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a workflow argument (repeatable)",
    )
    p.add_argument(
        "-f",
        "--parameter-file",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML/JSON mapping of arguments",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description="Run Argo-style workflows on this machine.")
    parser.add_argument("--home", help="state directory (default: $SLUICE_HOME or ~/.sluice)")
    parser.add_argument(
        "-n", "--namespace", default=None, help="default: 'default' (--kube: the context's namespace)"
    )
    parser.add_argument(
        "--kube",
        action="store_true",
        help="work on the Kubernetes cluster of the kubeconfig instead of this machine (also SLUICE_KUBE=1)",
    )
    parser.add_argument("--context", help="with --kube: the kubeconfig context (default: its current one)")
    parser.add_argument("--kubeconfig", help="with --kube: default $KUBECONFIG or ~/.kube/config")
    parser.add_argument(
        "--instanceid",
        help="with --kube: label created workflows and cron workflows for the operator started with this "
        "SLUICE_INSTANCE_ID (default: $SLUICE_INSTANCE_ID)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("-n", "--namespace", default=argparse.SUPPRESS)
        p.add_argument("--home", default=argparse.SUPPRESS)
        p.add_argument("--kube", action="store_true", default=argparse.SUPPRESS)
        p.add_argument("--context", default=argparse.SUPPRESS)
        p.add_argument("--kubeconfig", default=argparse.SUPPRESS)
        p.add_argument("--instanceid", default=argparse.SUPPRESS)
        return p

    p = add("run", "run a workflow here and now, exit with its result")
    p.add_argument("file")
    _add_params(p)
    p.add_argument("--entrypoint")
    p.add_argument("-w", "--watch", action="store_true", help="show live progress (default on a terminal)")
    p.add_argument("-q", "--quiet", action="store_true", help="no live progress, only the final view")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"], default="wide")
    p.add_argument(
        "--isolation",
        default=os.environ.get("SLUICE_ISOLATION", "auto"),
        help="step isolation: auto, bwrap, unshare or session",
    )
    p.add_argument(
        "--active-deadline-seconds", type=int, default=None, help="deadline for workflows that set none"
    )
    p.set_defaults(func=lambda a: asyncio.run(_run(a)))

    p = add("lint", "validate manifests (files or directories)")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_lint)

    p = add("crds", "print the CustomResourceDefinitions a cluster needs (or write one file each)")
    p.add_argument("--dir", help="write <group>_<plural>.yaml files into this directory instead")
    p.set_defaults(func=cmd_crds)

    p = add("convert", "rewrite manifests to the current API (sluice.dev, schedules, lock lists)")
    p.add_argument("file")
    p.add_argument("--in-place", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = add("apply", "store templates, cron workflows, config maps and secrets from files")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_apply)

    p = add("server", "run the long-lived local engine (continues unfinished workflows)")
    p.add_argument("--isolation", default=os.environ.get("SLUICE_ISOLATION", "auto"))
    p.add_argument("--active-deadline-seconds", type=int, default=None)
    p.add_argument("--cron-interval", type=float, default=10.0)
    p.add_argument("--no-cron", action="store_true")
    p.add_argument("--no-events", action="store_true", help="run no event sources or sensors")
    p.add_argument(
        "--webhook-host",
        default=os.environ.get("SLUICE_WEBHOOK_HOST", "127.0.0.1"),
        help="address webhook event sources listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    p.add_argument(
        "--webhook-port",
        action="append",
        default=[],
        metavar="SPEC_PORT=PORT",
        help="listen on PORT for webhooks whose spec says SPEC_PORT (0 picks a free port)",
    )
    p.add_argument("--s3-poll-interval", type=float, default=5.0, help="seconds between bucket listings")
    p.add_argument(
        "--intake-limit",
        type=int,
        default=None,
        metavar="N",
        help="hold a source's event while a sensor trigger listening to it has N events still to act on"
        " (for at most half a second; default 16; 0: never)",
    )
    p.add_argument(
        "--intake-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve webhooks from a process of their own, so they run on another core than the sensors"
        " and workflows (default; --no-intake-process serves them in the server's process)",
    )
    p.set_defaults(func=cmd_server)

    p = add("events", "read the local event bus")
    esub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    c = esub.add_parser("tail", help="print the latest events as JSON lines")
    c.add_argument("-n", "--lines", type=int, default=20)
    c.add_argument("-f", "--follow", action="store_true")
    c.add_argument("--source", help="only events of this EventSource")
    c.add_argument("--event", help="only this event of the EventSource")
    c.set_defaults(func=cmd_events_tail)

    p = add("submit", "submit a workflow to the running server")
    p.add_argument("file")
    _add_params(p)
    p.add_argument("--entrypoint")
    p.add_argument("--wait", action="store_true")
    p.add_argument("-w", "--watch", action="store_true")
    p.add_argument("-o", "--output", choices=["wide", "name"], default="wide")
    p.set_defaults(func=cmd_submit)

    p = add("list", "list workflows")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--running", action="store_true")
    p.add_argument("--completed", action="store_true")
    p.add_argument("-o", "--output", choices=["wide", "json", "name"], default="wide")
    p.set_defaults(func=cmd_list)

    p = add("get", "show a workflow")
    p.add_argument("name")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"], default="wide")
    p.add_argument("-w", "--watch", action="store_true")
    p.set_defaults(func=cmd_get)

    p = add("logs", "print the logs of a workflow's steps")
    p.add_argument("name")
    p.add_argument("node", nargs="?")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--no-prefix", action="store_true")
    p.set_defaults(func=cmd_logs)

    p = add("wait", "wait for workflows to finish")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_wait)

    for op, help_ in (
        ("stop", "stop a workflow; exit handlers still run"),
        ("terminate", "terminate a workflow; exit handlers do not run"),
        ("suspend", "suspend a workflow (running steps finish, no new ones start)"),
    ):
        p = add(op, help_)
        p.add_argument("name")
        p.set_defaults(func=cmd_simple_op, op=op)

    p = add("resume", "resume a suspended workflow or suspend node")
    p.add_argument("name")
    p.add_argument("--node-field-selector", help="resume only this node (displayName=NAME)")
    p.add_argument(
        "--output-parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value for a suspend node's supplied output parameter",
    )
    p.set_defaults(func=cmd_resume)

    p = add("retry", "retry a Failed/Error workflow in place")
    p.add_argument("name")
    p.add_argument("--restart-successful", action="store_true")
    p.add_argument("--node-field-selector")
    p.add_argument("-p", "--parameter", action="append", default=[])
    p.add_argument("--wait", action="store_true")
    p.add_argument("-w", "--watch", action="store_true")
    p.set_defaults(func=cmd_retry)

    p = add("resubmit", "submit a new workflow with the same spec")
    p.add_argument("name")
    p.add_argument("-p", "--parameter", action="append", default=[])
    p.add_argument("--wait", action="store_true")
    p.add_argument("-w", "--watch", action="store_true")
    p.add_argument("-o", "--output", choices=["wide", "name"], default="wide")
    p.set_defaults(func=cmd_resubmit)

    p = add("delete", "delete workflows")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--completed", action="store_true")
    p.set_defaults(func=cmd_delete)

    for group, kind, plural in (
        ("template", "WorkflowTemplate", "workflow templates"),
        ("cron", "CronWorkflow", "cron workflows"),
        ("configmap", "ConfigMap", "config maps"),
        ("secret", "Secret", "secrets"),
        ("eventsource", "EventSource", "event sources"),
        ("sensor", "Sensor", "sensors"),
        ("eventbus", "EventBus", "event buses"),
    ):
        g = add(group, f"manage {plural}")
        gsub = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        create, list_, get, delete = _object_cmds(kind, plural)
        if kind in ("ConfigMap", "Secret"):
            c = gsub.add_parser("create", help=f"create a {kind} from literals or files")
            c.add_argument("name")
            c.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE")
            c.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH")
            c.set_defaults(func=lambda a, k=kind: cmd_data_create(a, k))
        else:
            c = gsub.add_parser("create", help=f"store {plural} from files")
            c.add_argument("files", nargs="+")
            c.set_defaults(func=create)
        c = gsub.add_parser("list", help=f"list {plural}")
        c.set_defaults(func=list_)
        c = gsub.add_parser("get", help=f"show one of the {plural}")
        c.add_argument("name")
        c.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
        c.set_defaults(func=get)
        c = gsub.add_parser("delete", help=f"delete one of the {plural}")
        c.add_argument("name")
        c.set_defaults(func=delete)
        if kind == "WorkflowTemplate":
            c = gsub.add_parser("lint", help="validate template files")
            c.add_argument("paths", nargs="+")
            c.set_defaults(func=cmd_lint)
        if kind in ("EventSource", "Sensor"):
            c = gsub.add_parser(
                "run", help=f"run one {kind} of a cluster until SIGTERM (the operator's Deployments do)"
            )
            c.add_argument("name")
            c.add_argument("-n", "--namespace", default=argparse.SUPPRESS)
            c.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="default: in-cluster, $KUBECONFIG")
            c.add_argument("--context", default=argparse.SUPPRESS)
            c.add_argument(
                "--eventbus-url",
                default=os.environ.get("SLUICE_EVENTBUS_URL"),
                help="the JetStream bus, nats://HOST:PORT (default: $SLUICE_EVENTBUS_URL)",
            )
            c.add_argument(
                "--recheck-seconds",
                type=float,
                default=30.0,
                help="how often the object is read again to follow changes of its spec",
            )
            c.add_argument("-v", "--verbose", action="store_true")
            if kind == "EventSource":
                c.add_argument(
                    "--webhook-port",
                    action="append",
                    default=[],
                    metavar="SPEC_PORT=PORT",
                    help="listen on PORT for webhooks whose spec says SPEC_PORT (also $SLUICE_WEBHOOK_PORTS)",
                )
            c.set_defaults(func=lambda a, k=kind: cmd_events_run(a, k))
        if kind == "CronWorkflow":
            c = gsub.add_parser("suspend", help="stop scheduling a cron workflow")
            c.add_argument("name")
            c.set_defaults(func=lambda a: cmd_cron_suspend(a, True))
            c = gsub.add_parser("resume", help="schedule a suspended cron workflow again")
            c.add_argument("name")
            c.set_defaults(func=lambda a: cmd_cron_suspend(a, False))
        g.set_defaults(func=lambda a, g=g: (g.print_help(), EXIT_INVALID)[1])

    p = add("executor", "internal: the executor containers of a Kubernetes step pod (not for use by hand)")
    esub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    c = esub.add_parser("init", help="init container: stage sluice-run, the script and the input artifacts")
    c.set_defaults(func=cmd_executor)
    c = esub.add_parser("wait", help="wait container: wait for the step, upload outputs, print them as JSON")
    c.set_defaults(func=cmd_executor)
    c = esub.add_parser("http", help="main container of an http step: send the request, print the body")
    c.set_defaults(func=cmd_executor)
    p.set_defaults(func=lambda a, g=p: (g.print_help(), EXIT_INVALID)[1])

    p = add("operator", "run the Kubernetes operator (settings from SLUICE_* variables, see deploy/)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every watch event")
    p.set_defaults(func=cmd_operator)

    p = add("version", "print the version")
    p.set_defaults(func=lambda a: (print(f"sluice {VERSION}"), EXIT_OK)[1])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_INVALID
    try:
        from engine.cli import kube

        if args.command not in IN_CLUSTER_COMMANDS and kube.wanted(args):
            return kube.run(args)
        if args.namespace is None:
            args.namespace = "default"
        code: int = args.func(args)
        return code
    except SpecError as exc:
        if getattr(args, "command", "") == "lint":
            for line in exc.lines():
                print(line, file=sys.stderr)
        else:
            print(f"sluice: {exc.one_line()}", file=sys.stderr)
        return EXIT_INVALID
    except SluiceError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
