"""Text views of workflows for the terminal: the ``get`` header and step tree, ``list`` tables.

The tree follows ``argo get``: steps show their groups as branches, DAGs show their tasks, loops and
retries nest their children, exit handlers and hooks hang under what they belong to. Each line gives
the status icon, the display name, the template, the pod name, the duration and the message.
Called by the CLI for ``run``, ``get``, ``list`` and live progress.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from engine.workflows import nodes as N
from engine.workflows.nodes import Node, pod_name
from engine.workflows.status import WorkflowStatus

ICONS = {
    N.SUCCEEDED: "✔",
    N.FAILED: "✖",
    N.ERROR: "⚠",
    N.RUNNING: "●",
    N.PENDING: "◷",
    N.SKIPPED: "○",
    N.OMITTED: "○",
}
SUSPENDED_ICON = "ǁ"


def human_duration(seconds: float) -> str:
    s = int(max(0, round(seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s" if s else f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d{h}h" if h else f"{d}d"


def long_duration(seconds: float) -> str:
    s = int(max(0, round(seconds)))
    parts: list[str] = []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if s >= size or (unit == "second" and not parts):
            n, s = divmod(s, size)
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    return " ".join(parts)


def _ts(value: float | None) -> str:
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(value, tz=dt.UTC).astimezone().strftime("%a %b %d %H:%M:%S %z %Y")


def _icon(node: Node) -> str:
    if node.type == N.SUSPEND and node.phase == N.RUNNING:
        return SUSPENDED_ICON
    return ICONS.get(node.phase, "?")


def node_duration(node: Node, now: float) -> float | None:
    if node.started_at is None:
        return None
    end = node.finished_at if node.finished_at is not None else now
    return max(0.0, end - node.started_at)


class _Tree:
    def __init__(self, wf_name: str, status: WorkflowStatus) -> None:
        self.wf = wf_name
        self.nodes = status.nodes
        self.by_name = {n.name: n for n in status.nodes.values()}

    def _node(self, nid: str) -> Node | None:
        return self.nodes.get(nid)

    def children(self, node: Node) -> list[Node]:
        """The nodes shown under ``node`` (not the dependency links Argo keeps in ``children``)."""
        t = node.type
        if t == N.STEPS:
            out = []
            i = 0
            while (g := self.by_name.get(f"{node.name}[{i}]")) is not None:
                out.append(g)
                i += 1
            return out + self._hooks(node)
        if t == N.STEP_GROUP:
            return [c for c in self._children(node) if c.type != N.STEP_GROUP]
        if t == N.DAG:
            prefix = node.name + "."
            tasks = [
                n
                for n in self.nodes.values()
                if n.boundary_id == node.id
                and n.name.startswith(prefix)
                and "(" not in n.name[len(prefix) :]
                and "." not in n.name[len(prefix) :]
            ]
            return sorted(tasks, key=lambda n: (n.started_at or 0, n.name)) + self._hooks(node)
        if t in (N.TASK_GROUP, N.RETRY):
            return self._children(node)
        if t == N.POD:
            return [c for c in self._children(node) if c.type == N.CONTAINER or c.hooked()]
        return self._hooks(node)

    def _children(self, node: Node) -> list[Node]:
        return [c for c in (self._node(i) for i in node.children) if c is not None]

    def _hooks(self, node: Node) -> list[Node]:
        return [c for c in self._children(node) if c.hooked() and c.name.startswith(node.name + ".")]


def render_tree(
    wf_name: str, status: WorkflowStatus, *, now: float, template_of: Mapping[str, str] | None = None
) -> str:
    tree = _Tree(wf_name, status)
    root = status.nodes.get(wf_name)
    if root is None:
        return ""
    rows: list[tuple[str, str, str, str, str]] = [("STEP", "TEMPLATE", "PODNAME", "DURATION", "MESSAGE")]

    def line(node: Node, prefix: str) -> None:
        tmpl = node.template_name or ((node.template_ref or {}).get("template") or "")
        pod = ""
        if node.type == N.POD:
            pod = pod_name(wf_name, node.id, tmpl or None)
        dur = node_duration(node, now)
        shown = dur is not None and node.type in (N.POD, N.SUSPEND, N.HTTP, N.CONTAINER)
        label = node.display_name
        if node.type == N.STEP_GROUP:
            label = ""
        rows.append(
            (
                f"{prefix}{_icon(node)} {label}".rstrip() if label else prefix.rstrip(),
                tmpl if node.type not in (N.STEP_GROUP, N.RETRY, N.TASK_GROUP) else "",
                pod,
                human_duration(dur) if shown and dur is not None else "",
                node.message or "",
            )
        )

    def walk(node: Node, prefix: str, is_last: bool, top: bool) -> None:
        if node.type == N.STEP_GROUP:
            kids = tree.children(node)
            for i, k in enumerate(kids):
                last_kid = i == len(kids) - 1
                if len(kids) == 1:
                    branch = "└───" if is_last else "├───"
                elif i == 0:
                    branch = "└─┬─" if is_last else "├─┬─"
                else:
                    branch = "  └─" if last_kid else "  ├─"
                    branch = ("  " if is_last else "│ ") + branch[2:]
                kid_prefix = prefix + ("    " if is_last else "│   ")
                line(k, prefix + branch)
                sub = tree.children(k)
                for j, s in enumerate(sub):
                    walk(s, kid_prefix + ("  " if len(kids) > 1 else ""), j == len(sub) - 1, False)
            return
        if not top:
            line(node, prefix + ("└─" if is_last else "├─"))
            prefix = prefix + ("  " if is_last else "│ ")
        else:
            line(node, " ")
            prefix = " "
        kids = tree.children(node)
        for i, k in enumerate(kids):
            walk(k, prefix, i == len(kids) - 1, False)

    walk(root, "", True, True)
    exit_node = tree.by_name.get(f"{wf_name}.onExit")
    if exit_node is not None:
        rows.append(("", "", "", "", ""))
        walk(exit_node, "", True, True)
    for hook in sorted(
        (n for n in status.nodes.values() if n.name.startswith(f"{wf_name}.hooks.")), key=lambda n: n.name
    ):
        walk(hook, "", True, True)
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = []
    for r in rows:
        out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(out)


def render_header(manifest: Mapping[str, Any], status: WorkflowStatus, *, now: float) -> str:
    meta = manifest.get("metadata") or {}
    spec = manifest.get("spec") or {}
    lines = [
        ("Name:", meta.get("name", "")),
        ("Namespace:", meta.get("namespace", "default")),
    ]
    sa = spec.get("serviceAccountName")
    lines.append(("ServiceAccount:", sa or "unset"))
    phase = status.phase or "Pending"
    if spec.get("suspend") and phase == "Running":
        phase = "Running (Suspended)"
    lines.append(("Status:", phase))
    if status.message:
        lines.append(("Message:", status.message))
    if status.conditions:
        lines.append(("Conditions:", ""))
        for c in status.conditions:
            lines.append((f" {c.get('type')}", c.get("status", "")))
    created = N.parse_time(meta.get("creationTimestamp")) if meta.get("creationTimestamp") else None
    lines.append(("Created:", _ts(created)))
    if status.started_at is not None:
        lines.append(("Started:", _ts(status.started_at)))
    if status.finished_at is not None:
        lines.append(("Finished:", _ts(status.finished_at)))
    if status.started_at is not None:
        end = status.finished_at if status.finished_at is not None else now
        lines.append(("Duration:", long_duration(end - status.started_at)))
    lines.append(("Progress:", status.compute_progress()))
    params = ((spec.get("arguments") or {}).get("parameters")) or []
    if params:
        lines.append(("Parameters:", ""))
        for p in params:
            lines.append((f"  {p.get('name')}:", str(p.get("value", ""))))
    outs = status.outputs.get("parameters") or []
    if outs:
        lines.append(("Outputs:", ""))
        for p in outs:
            lines.append((f"  {p.get('name')}:", str(p.get("value", ""))))
    width = max(len(k) for k, _ in lines) + 1
    return "\n".join(f"{k.ljust(width)}{v}".rstrip() for k, v in lines)


def render_get(manifest: Mapping[str, Any], status: WorkflowStatus, *, now: float) -> str:
    name = (manifest.get("metadata") or {}).get("name", "")
    tree = render_tree(name, status, now=now)
    return render_header(manifest, status, now=now) + ("\n\n" + tree if tree else "")


def render_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    all_rows = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    return "\n".join("   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in all_rows)
