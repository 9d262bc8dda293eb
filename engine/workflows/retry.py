"""Retries: a Retry node whose children ``<name>(0)``, ``<name>(1)``... are the attempts.

The Retry node takes the phase and outputs of its last attempt. Another attempt starts when the policy
allows the last one's phase (``OnFailure`` by default: Failed only; ``OnError``; ``Always``;
``OnTransientError``), the ``limit`` is not used up (``limit: N`` means N+1 attempts, no limit means no
limit), the ``expression`` (over ``lastRetry.*``) holds, and the backoff (``duration * factor^(n-1)``
from the last attempt's finish, capped, within ``maxDuration`` from the first attempt's start) has
elapsed. Called by the reconciler for every template with a ``retryStrategy``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import ExprError, SluiceError
from engine.spec.duration import format_duration, parse_duration
from engine.spec.workflow import Arguments, RetryStrategy
from engine.workflows import nodes as N
from engine.workflows.invocation import InputError, bind_inputs
from engine.workflows.nodes import Node, NodeOutputs, pod_name
from engine.workflows.scope import evaluate_bool

if TYPE_CHECKING:
    from engine.workflows.invocation import Invocation
    from engine.workflows.reconciler import Holder, Opts, Reconciler
    from engine.workflows.templates import TemplateContext

# Messages of errors worth another attempt under OnTransientError (network and API hiccups).
_TRANSIENT = re.compile(
    r"connection refused|connection reset|i/o timeout|timeout|temporarily unavailable|"
    r"too many requests|service unavailable|EOF|broken pipe|no route to host|exceeded quota|"
    r"etcdserver: leader changed|pod deleted",
    re.IGNORECASE,
)


def effective_policy(strategy: RetryStrategy) -> str:
    if strategy.retry_policy:
        return strategy.retry_policy
    return "Always" if strategy.expression else "OnFailure"


class RetryFrame:
    def __init__(
        self,
        rec: Reconciler,
        node: Node,
        holder: Holder,
        tctx: TemplateContext,
        args: Arguments | None,
        opts: Opts,
        inv: Invocation,
        strategy: RetryStrategy,
        local: Mapping[str, Any],
        resolved: Mapping[str, dict[str, Any]] | None,
    ) -> None:
        from engine.workflows.reconciler import Opts

        self.rec = rec
        self.node = node
        self.holder = holder
        self.tctx = tctx
        self.args = args
        self.inv = inv
        self.strategy = strategy
        self.local = dict(local)
        self.resolved = resolved
        flag = dict(opts.node_flag or {})
        flag["retried"] = True
        self.child_opts = Opts(
            boundary_id=opts.boundary_id,
            on_exit=opts.on_exit,
            node_flag=flag,
            boundary_template=opts.boundary_template,
        )
        self.retry_deadline: float | None = None

    def close(self) -> None:
        pass

    # --- attempts ------------------------------------------------------------------------------------

    def attempts(self) -> list[Node]:
        nodes = self.rec.status.nodes
        out = []
        for c in self.node.children:
            n = nodes.get(c)
            if n is not None and n.node_flag and n.node_flag.get("retried"):
                out.append(n)
        return out

    def _bind(self, index: int, last: Node | None) -> Invocation:
        rec = self.rec
        name = f"{self.node.name}({index})"
        local = dict(self.local)
        local["node.name"] = name
        local["retries"] = str(index)
        tmpl = self.inv.template
        if tmpl.kind in ("container", "script", "resource", "container_set", "data"):
            local["pod.name"] = pod_name(rec.name, rec.id_for(name), tmpl.name)
        exit_code, duration, status, message = "0", "0", "", ""
        if last is not None:
            if last.outputs is not None and last.outputs.exit_code is not None:
                exit_code = last.outputs.exit_code
            status = last.phase
            duration = _seconds(last)
            message = last.message or ""
        local["lastRetry.exitCode"] = exit_code
        local["lastRetry.status"] = status
        local["lastRetry.duration"] = duration
        local["lastRetry.message"] = message
        inv = bind_inputs(
            tmpl,
            self.inv.tctx,
            self.args,
            resolved=self.resolved,
            parent=rec.globals,
            local=local,
            configmaps=rec.configmaps,
        )
        inv.cache["retry_deadline"] = self.retry_deadline
        return inv

    def _run_attempt(self, index: int, last: Node | None) -> Node | None:
        rec = self.rec
        name = f"{self.node.name}({index})"
        nid = rec.id_for(name)
        existing = rec.status.nodes.get(nid)
        if existing is not None:
            if existing.fulfilled() and not existing.daemoned:
                if nid in rec.pending_finalize:
                    rec._finalize_leaf(existing)
                return existing
            frame = rec.frames.get(nid)
            if frame is not None:
                return frame.execute()  # type: ignore[no-any-return]
            inv = rec.leaf_inv.get(nid)
            if inv is not None:
                return rec._advance_leaf(existing, inv)
        try:
            inv = self._bind(index, last)
        except (InputError, ExprError) as exc:
            return rec._error_node(existing, name, self.holder, self.tctx, self.child_opts, str(exc))
        if existing is None:
            from engine.workflows.reconciler import ParallelismReached

            try:
                rec._check_parallelism(inv.template, self.child_opts)
            except ParallelismReached:
                return None
        node = rec._dispatch(name, self.holder, inv.tctx, inv, self.child_opts, existing)
        rec._add_child(self.node, node)
        return node

    # --- decision ------------------------------------------------------------------------------------

    def _limit(self) -> int | None:
        raw = self.strategy.limit
        if raw is None:
            return None
        if isinstance(raw, int):
            return raw
        text = self.inv.scope.substitute(raw)
        try:
            return int(text)
        except ValueError as exc:
            raise SluiceError(f"retryStrategy.limit: {text!r} is not an integer") from exc

    def execute(self) -> Node:
        rec = self.rec
        node = self.node
        for _ in range(1000):
            if node.fulfilled() and not node.daemoned:
                return node
            attempts = self.attempts()
            last = attempts[-1] if attempts else None
            if last is None:
                created = self._run_attempt(0, None)
                if created is None:
                    return node
                continue
            if not last.fulfilled() or last.daemoned:
                last = self._run_attempt(len(attempts) - 1, None) or last
                if last.daemoned and last.phase != N.PENDING:
                    node.daemoned = True
                    rec._mark(node, last.phase)
                    return node
                if not last.fulfilled():
                    return node
            if node.daemoned and not last.daemoned:
                node.daemoned = None
            decision = self._decide(attempts, last)
            if decision is None:
                return node
            if decision == "retry":
                created = self._run_attempt(len(attempts), last)
                if created is None:
                    return node
                continue
            return node
        raise SluiceError(f"retry node {node.name} did not settle")

    def _decide(self, attempts: list[Node], last: Node) -> str | None:
        """'retry' to start another attempt, 'done' when the node got its final phase, None to wait."""
        rec = self.rec
        node = self.node
        if not last.unsuccessful():
            node.outputs = last.outputs.copy() if last.outputs is not None else None
            rec._mark(node, N.SUCCEEDED)
            return "done"
        if rec.control.shutdown:
            rec._mark(node, last.phase, f"Stopped with strategy '{rec.control.shutdown}'")
            return "done"
        deadline = rec._workflow_deadline()
        if deadline is not None and rec.now >= deadline:
            rec._mark(node, last.phase, f"retry exceeded workflow deadline {N.rfc3339(deadline)}")
            return "done"
        s = self.strategy
        n = len(attempts)
        limit = self._limit()
        if s.backoff is not None:
            b = s.backoff
            max_deadline: float | None = None
            try:
                if b.max_duration:
                    first = attempts[0]
                    start = first.started_at if first.started_at is not None else rec.now
                    max_deadline = start + parse_duration(rec_sub(self, b.max_duration))
                    if rec.now > max_deadline:
                        rec._mark(node, last.phase, "Max duration limit exceeded")
                        return "done"
                if not b.duration:
                    rec._mark_error(node, "no base duration specified for retryStrategy")
                    return "done"
                wait = parse_duration(rec_sub(self, b.duration))
                factor = b.factor
                if isinstance(factor, str):
                    factor = int(rec_sub(self, factor))
                if factor is not None and factor > 0:
                    wait = wait * float(factor) ** (n - 1)
                if b.cap:
                    wait = min(wait, parse_duration(rec_sub(self, b.cap)))
            except ValueError as exc:
                rec._mark_error(node, f"retryStrategy.backoff: {exc}")
                return "done"
            finished = last.finished_at if last.finished_at is not None else rec.now
            waiting_deadline = finished + wait
            if max_deadline is not None and waiting_deadline > max_deadline:
                rec._mark(node, last.phase, "Backoff would exceed max duration limit")
                return "done"
            if rec.now < waiting_deadline and limit is not None and n <= limit:
                rec._mark(node, node.phase, f"Backoff for {format_duration(wait)}")
                rec.add_timer(waiting_deadline, node.id)
                return None
            self.retry_deadline = max_deadline
            if node.message and node.message.startswith("Backoff for"):
                node.message = None
                rec._touch(node)
        policy = effective_policy(s)
        on_failed = policy in ("Always", "OnFailure")
        on_error = policy in ("Always", "OnError")
        if policy == "OnTransientError":
            transient = bool(_TRANSIENT.search(last.message or ""))
            on_failed = on_error = transient
        elif policy not in ("Always", "OnFailure", "OnError"):
            rec._mark_error(node, f"{policy} is not a valid RetryPolicy")
            return "done"
        if (last.phase == N.FAILED and not on_failed) or (last.phase == N.ERROR and not on_error):
            rec._mark(node, last.phase, last.message)
            return "done"
        if limit is not None and n > limit:
            rec._mark(node, last.phase, "No more retries left")
            return "done"
        if s.expression:
            scope = self.inv.scope.child(
                {
                    "retries": str(n - 1),
                    "lastRetry.exitCode": last.outputs.exit_code
                    if last.outputs is not None and last.outputs.exit_code is not None
                    else "-1",
                    "lastRetry.status": last.phase,
                    "lastRetry.duration": _seconds(last),
                    "lastRetry.message": last.message or "",
                }
            )
            try:
                ok = evaluate_bool(scope, s.expression)
            except ExprError as exc:
                rec._mark_error(node, f"retryStrategy.expression: {exc}")
                return "done"
            if not ok:
                rec._mark(node, last.phase, "retryStrategy.expression evaluated to false")
                return "done"
        return "retry"


def rec_sub(frame: RetryFrame, value: Any) -> str:
    text = str(value)
    return frame.inv.scope.substitute(text) if "{{" in text else text


def _seconds(node: Node) -> str:
    if node.started_at is None or node.finished_at is None:
        return "0"
    return repr(float(max(0.0, node.finished_at - node.started_at)))


__all__ = ["NodeOutputs", "RetryFrame", "effective_policy"]
