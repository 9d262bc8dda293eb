"""CronWorkflow scheduling: cron expressions, and the pure planner that decides one CronWorkflow's next step.

``plan_cron`` is called by the local runtime's cron loop and by the Kubernetes operator with what they
know: the spec, the status the previous plan returned, the child Workflows they observe and the current
time. It returns a :class:`CronPlan`: the next status, the children to terminate, start and delete, and
when to call again. It reads no clock, does no I/O and uses no randomness, so both runtimes make the same
decisions and the tests drive it with an injected clock. ``CronSchedule`` is the cron expression itself
(it lives in :mod:`engine.expr.cron`, shared with the events core, and is re-exported here);
:func:`compile_cron` checks a spec's schedules, zone and policy in one go, for validation at submit time.

Both runtimes' cron loops call :func:`run_cron` once per CronWorkflow: it plans from the parsed object,
its stored status and its children, carries the plan out through a :class:`CronRuntime` (the runtime's
own terminate, submit, delete and status write) and returns when to call again. What differs between
the runtimes, how children are found and how each operation is done, stays in the runtime.

Schedules are robfig/cron's standard syntax, as in Argo (five fields: minute, hour, day-of-month, month,
day-of-week; ``*``, ``?``, lists, ranges, steps, month and weekday names, ``@yearly``..``@hourly``,
``@every <duration>``, a ``CRON_TZ=Zone`` or ``TZ=Zone`` prefix). Where we differ, on purpose:

- ``spec.timezone`` defaults to **UTC**, not the controller machine's zone, so a plan never depends on the
  host it runs on. A schedule's own ``CRON_TZ=`` prefix wins over ``spec.timezone``.
- Day-of-week ``7`` is accepted as Sunday (robfig rejects it; Vixie cron accepts it).
- A schedule that can never fire (``0 0 30 2 *``) is rejected instead of silently never running.
- ``@every d`` fires at the multiples of ``d`` since the Unix epoch. robfig counts from whenever its
  scheduler happened to start; a stateless planner needs a fixed anchor, so ``@every 1h`` fires on the
  hour (UTC) and two runtimes agree on the instants.
- The ``cronworkflow.annotations`` variables hold the annotations (Argo 3.6 fills them with the labels).

Daylight saving time: a schedule fires at every instant whose wall-clock time in the zone matches it.
A wall-clock time skipped by a spring-forward gap does not exist, so it does not fire that day (``30 2 * *
*`` in Europe/Paris skips the last Sunday of March). A wall-clock time repeated by a fall-back happens
twice, so it fires twice, once per occurrence, as with robfig (and Argo documents this): ``30 2 * * *``
in Europe/Paris runs at 02:30 CEST and again at 02:30 CET on the last Sunday of October. The two runs
are distinct instants, so their child names differ.

Missed runs: a fire time is started when the planner sees it no later than ``ON_TIME_TOLERANCE`` (60 s)
after it, or ``startingDeadlineSeconds`` if that is larger. After downtime only the most recent missed
fire time is considered, so at most one catch-up run starts, and only when it is no older than the
deadline. Without a deadline (or with 0, as Argo's examples set) anything later than the tolerance is
skipped: the tolerance absorbs a late wake-up of a healthy runtime, not an outage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from engine.errors import ExprError, Problem, SpecError
from engine.expr.cron import (
    UTC_ZONE,
    CronSchedule,
    _BadSchedule,
    load_zone,
    parse_rfc3339,
    rfc3339,
)
from engine.spec.workflow import API_VERSION, CronWorkflow, CronWorkflowSpec

# How late a fire time may be seen and still start when no larger startingDeadlineSeconds is set: one
# minute, the cron granularity. A runtime that wakes a few seconds late (a busy host, a GC pause, a timer
# that fired early and was re-armed) still runs the job; one that was down for longer does not.
ON_TIME_TOLERANCE = 60.0

DEFAULT_SUCCESSFUL_HISTORY = 3
DEFAULT_FAILED_HISTORY = 1

ALLOW, FORBID, REPLACE = "Allow", "Forbid", "Replace"
CONCURRENCY_POLICIES = (ALLOW, FORBID, REPLACE)

ACTIVE_PHASE, STOPPED_PHASE = "Active", "Stopped"
SPEC_ERROR, SUBMISSION_ERROR = "SpecError", "SubmissionError"

LABEL_CRON_WORKFLOW = "workflows.argoproj.io/cron-workflow"
LABEL_CRON_COMPLETED = "workflows.argoproj.io/cron-completed"
ANNOTATION_SCHEDULED_TIME = "workflows.argoproj.io/scheduled-time"
# Labels of the CronWorkflow copied onto every child, as Argo does.
PROPAGATED_LABELS = (
    "workflows.argoproj.io/controller-instanceid",
    "workflows.argoproj.io/creator",
    "workflows.argoproj.io/creator-email",
    "workflows.argoproj.io/creator-preferred-username",
)

SUCCEEDED, FAILED, ERROR = "Succeeded", "Failed", "Error"
FINISHED_PHASES = frozenset({SUCCEEDED, FAILED, ERROR})


# ----------------------------------------------------------------------------------- compiled spec


@dataclass(frozen=True, slots=True)
class CompiledCron:
    """The parts of a CronWorkflowSpec that decide *when* to run, checked once."""

    schedules: tuple[CronSchedule, ...]
    zone: ZoneInfo
    concurrency_policy: str
    # Identifies the schedules: when it changes, missed fire times of the old ones are not caught up.
    key: str

    def next_after(self, t: float) -> float:
        return min(s.next_after(t, self.zone) for s in self.schedules)

    def latest_at_or_before(self, t: float) -> float | None:
        found = [x for s in self.schedules if (x := s.latest_at_or_before(t, self.zone)) is not None]
        return max(found) if found else None


def compile_cron(spec: CronWorkflowSpec) -> CompiledCron:
    """Check the schedules, time zone, concurrency policy and deadline; raise one SpecError listing all."""
    problems: list[Problem] = []
    zone = UTC_ZONE
    if spec.timezone:
        try:
            zone = load_zone(spec.timezone)
        except _BadSchedule as exc:
            problems.append(Problem("spec.timezone", str(exc)))
    named = [(f"spec.schedules[{i}]", text) for i, text in enumerate(spec.schedules)]
    if spec.schedule:
        named.append(("spec.schedule", spec.schedule))
    if not named:
        problems.append(Problem("spec.schedules", "at least one schedule is required"))
    schedules = []
    for path, text in named:
        try:
            schedules.append(CronSchedule.parse(text, path=path))
        except SpecError as exc:
            problems.extend(exc.problems)
    policy = spec.concurrency_policy or ALLOW
    if policy not in CONCURRENCY_POLICIES:
        problems.append(
            Problem(
                "spec.concurrencyPolicy", f"must be one of {', '.join(CONCURRENCY_POLICIES)}, not {policy!r}"
            )
        )
    if spec.starting_deadline_seconds is not None and spec.starting_deadline_seconds < 0:
        problems.append(Problem("spec.startingDeadlineSeconds", "must not be negative"))
    if problems:
        raise SpecError(problems)
    key = json.dumps([[s.text for s in schedules], zone.key])
    return CompiledCron(tuple(schedules), zone, policy, key)


# ------------------------------------------------------------------------------------ planner data


@dataclass(frozen=True, slots=True)
class ChildRun:
    """A child Workflow of the CronWorkflow as the runtime observes it (any phase, including finished)."""

    name: str
    # Argo workflow phase: "" (not yet picked up), Pending, Running, Succeeded, Failed or Error.
    phase: str = ""
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


@dataclass(frozen=True, slots=True)
class CronCondition:
    """A condition of the CronWorkflow's status (Argo's ``SpecError``, ``SubmissionError``)."""

    type: str
    message: str
    status: str = "True"


@dataclass(frozen=True, slots=True)
class CronState:
    """A CronWorkflow's status as plan_cron reads and writes it; times are epoch seconds.

    The first five fields are Argo's status. The last three are ours, kept so that the plan stays a
    function of its inputs: without ``checked_until`` a fire time skipped by ``Forbid`` or ``when``
    would look missed, and be started, on the next call.
    """

    last_scheduled_time: float | None = None
    # Children started and not yet seen finished, oldest first.
    active: tuple[str, ...] = ()
    succeeded: int = 0
    failed: int = 0
    phase: str = ACTIVE_PHASE
    conditions: tuple[CronCondition, ...] = ()
    # Every fire time at or before this instant has been decided (started or skipped).
    checked_until: float | None = None
    # CompiledCron.key of the schedules checked_until refers to.
    schedule_key: str = ""
    # Finished children already added to succeeded/failed, while they still exist: a child reported
    # finished twice is counted once.
    counted: tuple[str, ...] = ()

    def to_json(self, *, namespace: str, api_version: str = API_VERSION) -> dict[str, Any]:
        """The status object as the CronWorkflow resource stores it (Argo's fields plus ``sluice``)."""
        out: dict[str, Any] = {
            "active": [
                {"kind": "Workflow", "apiVersion": api_version, "name": n, "namespace": namespace}
                for n in self.active
            ],
            "succeeded": self.succeeded,
            "failed": self.failed,
            "phase": self.phase,
            "conditions": [
                {"type": c.type, "status": c.status, "message": c.message} for c in self.conditions
            ],
        }
        if self.last_scheduled_time is not None:
            out["lastScheduledTime"] = rfc3339(self.last_scheduled_time)
        ours: dict[str, Any] = {"scheduleKey": self.schedule_key, "counted": list(self.counted)}
        if self.checked_until is not None:
            ours["checkedUntil"] = self.checked_until
        out["sluice"] = ours
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CronState:
        """Read a stored status, ours or Argo's; fields that are missing or unreadable take defaults."""
        if not isinstance(data, Mapping):
            return cls()
        raw = data.get("sluice")
        ours: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        last = None
        if isinstance(data.get("lastScheduledTime"), str):
            try:
                last = parse_rfc3339(data["lastScheduledTime"])
            except ValueError:
                last = None
        active = tuple(
            str(ref["name"])
            for ref in _list(data.get("active"))
            if isinstance(ref, Mapping) and isinstance(ref.get("name"), str)
        )
        conditions = tuple(
            CronCondition(str(c.get("type", "")), str(c.get("message", "")), str(c.get("status", "True")))
            for c in _list(data.get("conditions"))
            if isinstance(c, Mapping)
        )
        checked = ours.get("checkedUntil")
        return cls(
            last_scheduled_time=last,
            active=active,
            succeeded=_int(data.get("succeeded")),
            failed=_int(data.get("failed")),
            phase=data["phase"] if data.get("phase") in (ACTIVE_PHASE, STOPPED_PHASE) else ACTIVE_PHASE,
            conditions=conditions,
            checked_until=float(checked) if isinstance(checked, int | float) else None,
            schedule_key=str(ours.get("scheduleKey", "")),
            counted=tuple(str(n) for n in _list(ours.get("counted"))),
        )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class StartChild:
    """Create the child Workflow ``name`` from ``spec.workflowSpec`` (a no-op if it already exists).

    ``scheduled_time_text`` is ``{{workflow.scheduledTime}}`` for the child, RFC 3339 in the
    CronWorkflow's zone; it is also the ``workflows.argoproj.io/scheduled-time`` annotation.
    """

    name: str
    namespace: str
    scheduled_time: float
    scheduled_time_text: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TerminateChild:
    """Terminate a running child (``concurrencyPolicy: Replace``): no exit handlers, as in Argo."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeleteChild:
    """Delete a finished child beyond the history limits (already gone is fine)."""

    name: str
    reason: str


CronAction = TerminateChild | StartChild | DeleteChild

SkipReason = Literal["suspended", "stopped", "when", "forbid", "missed", "when-error"]


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """A fire time that was due and deliberately not started (for logs, events and metrics)."""

    scheduled_time: float
    reason: SkipReason
    message: str


@dataclass(frozen=True, slots=True)
class CronPlan:
    """What one call of plan_cron decided.

    The runtime saves ``status`` (only when ``changed``), sets ``set_labels`` on the CronWorkflow, then
    carries out ``actions`` in order (terminations before the start they make room for), and calls
    plan_cron again at ``requeue_at`` or when a child changes phase, whichever comes first.
    ``requeue_at`` is None when nothing is scheduled (suspended, stopped, invalid spec).
    """

    status: CronState
    actions: tuple[CronAction, ...] = ()
    requeue_at: float | None = None
    skipped: tuple[SkippedRun, ...] = ()
    set_labels: dict[str, str] = field(default_factory=dict)
    changed: bool = False

    @property
    def started(self) -> tuple[StartChild, ...]:
        return tuple(a for a in self.actions if isinstance(a, StartChild))


def child_name(cron_name: str, scheduled_time: float) -> str:
    """``<cron-name>-<unix scheduled time>``: one name per fire time, so starting twice is harmless."""
    return f"{cron_name}-{math.floor(scheduled_time)}"


# ---------------------------------------------------------------------------------------- planner


def plan_cron(
    *,
    spec: CronWorkflowSpec,
    name: str,
    namespace: str,
    status: CronState,
    children: Sequence[ChildRun],
    now: float,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    created_at: float | None = None,
) -> CronPlan:
    """Decide what CronWorkflow ``name`` does at ``now``.

    ``children`` are all the child Workflows that exist (active and finished, found by the
    ``workflows.argoproj.io/cron-workflow`` label); a child missing from them is taken as deleted.
    ``labels`` and ``annotations`` are the CronWorkflow's own, for the ``cronworkflow.*`` variables and
    label propagation. ``created_at`` is the CronWorkflow's creation time: fire times after it count as
    missed when the first plan comes late; without it the first plan only looks ahead.
    """
    labels = dict(labels or {})
    annotations = dict(annotations or {})
    conditions = {c.type: c for c in status.conditions}
    terminations: list[TerminateChild] = []
    starts: list[StartChild] = []
    skipped: list[SkippedRun] = []
    set_labels: dict[str, str] = {}

    # A finished child we started is counted once; the unfinished ones are the active set. Children we
    # did not start (found already finished) are left to the history limits, as Argo does.
    observed = {c.name: c for c in children}
    counted = {n for n in status.counted if n in observed}
    was_active = set(status.active)
    succeeded, failed = status.succeeded, status.failed
    for child in sorted(children, key=lambda c: c.name):
        if child.finished and child.name in was_active and child.name not in counted:
            counted.add(child.name)
            if child.phase == SUCCEEDED:
                succeeded += 1
            else:
                failed += 1
    running = {c.name for c in children if not c.finished and c.name not in counted}
    # Keep the previous order (oldest first); newly seen ones follow by name.
    active = [n for n in status.active if n in running] + sorted(running - was_active)

    phase = status.phase if status.phase in (ACTIVE_PHASE, STOPPED_PHASE) else ACTIVE_PHASE
    variables = _CronVariables(
        name=name,
        namespace=namespace,
        labels=labels,
        annotations=annotations,
        succeeded=succeeded,
        failed=failed,
        last_scheduled_time=status.last_scheduled_time,
        now=now,
    )

    try:
        compiled: CompiledCron | None = compile_cron(spec)
        conditions.pop(SPEC_ERROR, None)
    except SpecError as exc:
        compiled = None
        conditions[SPEC_ERROR] = CronCondition(SPEC_ERROR, exc.one_line())

    if phase != STOPPED_PHASE and spec.stop_strategy is not None:
        try:
            if _should_stop(spec.stop_strategy.expression, variables):
                phase = STOPPED_PHASE
        except ExprError as exc:
            conditions[SPEC_ERROR] = CronCondition(
                SPEC_ERROR, f"failed to check CronWorkflow '{name}' stopping condition: {exc}"
            )
    if phase == STOPPED_PHASE:
        set_labels[LABEL_CRON_COMPLETED] = "true"

    last_scheduled = status.last_scheduled_time
    checked_until = status.checked_until
    schedule_key = status.schedule_key
    requeue_at: float | None = None

    if compiled is not None:
        if checked_until is None:
            checked_until = _first_watermark(status, created_at, now)
        elif schedule_key != compiled.key:
            # New schedules: fire times the old ones missed are not caught up (Argo does the same).
            checked_until = max(checked_until, now)
        schedule_key = compiled.key

        latest = compiled.latest_at_or_before(now)
        if latest is not None and latest > checked_until:
            # Only the most recent due fire time is considered: it supersedes any older missed ones.
            checked_until = max(checked_until, now)
            run_name = child_name(name, latest)
            # The run itself may already exist when a previous plan was carried out but not saved.
            others = [n for n in active if n != run_name]
            reason, message = _skip_reason(
                spec=spec,
                compiled=compiled,
                phase=phase,
                variables=variables,
                late=now - latest,
                others=others,
            )
            if reason == "when-error":
                # Argo reports a run-policy error as a submission error and counts it as a failed run.
                conditions[SUBMISSION_ERROR] = CronCondition(SUBMISSION_ERROR, message)
                failed += 1
            if reason is not None:
                skipped.append(SkippedRun(latest, reason, message))
            else:
                if compiled.concurrency_policy == REPLACE:
                    # They stay active until seen finished: a terminated run counts as failed, as in Argo.
                    terminations = [
                        TerminateChild(n, "concurrencyPolicy Replace: a newer run starts") for n in others
                    ]
                if run_name not in observed:
                    starts.append(
                        _start_child(
                            spec=spec,
                            name=name,
                            namespace=namespace,
                            labels=labels,
                            scheduled_time=latest,
                            zone=_run_zone(compiled, latest),
                        )
                    )
                    active.append(run_name)
                last_scheduled = latest
                conditions.pop(SUBMISSION_ERROR, None)

        if not spec.suspend and phase != STOPPED_PHASE:
            requeue_at = compiled.next_after(max(checked_until, now))

    new_status = CronState(
        last_scheduled_time=last_scheduled,
        active=tuple(active),
        succeeded=succeeded,
        failed=failed,
        phase=phase,
        conditions=tuple(sorted(conditions.values(), key=lambda c: c.type)),
        checked_until=checked_until,
        schedule_key=schedule_key,
        counted=tuple(sorted(counted)),
    )
    return CronPlan(
        status=new_status,
        actions=(*terminations, *starts, *_history_deletions(spec, children)),
        requeue_at=requeue_at,
        skipped=tuple(skipped),
        set_labels=set_labels,
        changed=new_status != status,
    )


def _skip_reason(
    *,
    spec: CronWorkflowSpec,
    compiled: CompiledCron,
    phase: str,
    variables: _CronVariables,
    late: float,
    others: Sequence[str],
) -> tuple[SkipReason | None, str]:
    """Why a due fire time does not start, checked in Argo's order; (None, "") when it starts."""
    allowed = max(ON_TIME_TOLERANCE, float(spec.starting_deadline_seconds or 0))
    if late > allowed:
        return "missed", _missed_message(late, spec.starting_deadline_seconds)
    if spec.suspend:
        return "suspended", "the CronWorkflow is suspended"
    if phase == STOPPED_PHASE:
        return "stopped", "the stop strategy was met"
    try:
        if not _when_allows(spec.when, variables):
            return "when", f"when {spec.when!r} is false"
    except ExprError as exc:
        return "when-error", f"run policy error: {exc}"
    if others and compiled.concurrency_policy == FORBID:
        return "forbid", f"concurrencyPolicy Forbid and still active: {', '.join(others)}"
    return None, ""


def record_submission_error(status: CronState, *, child: str, message: str) -> CronState:
    """The status after the runtime failed to create ``child`` (Argo counts this as a failure)."""
    return replace(
        status,
        active=tuple(n for n in status.active if n != child),
        failed=status.failed + 1,
        conditions=tuple(
            sorted(
                [c for c in status.conditions if c.type != SUBMISSION_ERROR]
                + [CronCondition(SUBMISSION_ERROR, f"Failed to submit Workflow: {message}")],
                key=lambda c: c.type,
            )
        ),
    )


def child_manifest(
    start: StartChild,
    *,
    spec: CronWorkflowSpec,
    owner_uid: str | None = None,
    owner_name: str = "",
    api_version: str = API_VERSION,
) -> dict[str, Any]:
    """The Workflow document a runtime creates for ``start``: the CronWorkflow's workflowSpec, named and
    labelled as planned, owned by the CronWorkflow when its uid is known."""
    metadata: dict[str, Any] = {
        "name": start.name,
        "namespace": start.namespace,
        "labels": dict(start.labels),
        "annotations": dict(start.annotations),
    }
    if start.finalizers:
        metadata["finalizers"] = list(start.finalizers)
    if owner_uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": api_version,
                "kind": "CronWorkflow",
                "name": owner_name or start.labels.get(LABEL_CRON_WORKFLOW, ""),
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": api_version,
        "kind": "Workflow",
        "metadata": metadata,
        "spec": spec.workflow_spec.dump(),
    }


# ------------------------------------------------------------------------------- carrying out a plan


def cron_key(cron: CronWorkflow) -> tuple[str, str]:
    """The CronWorkflow's namespace (``default`` when unset) and name, which its status and children go by."""
    return cron.metadata.namespace or "default", cron.metadata.name or ""


def plan_cron_workflow(
    cron: CronWorkflow, *, status: CronState, children: Sequence[ChildRun], now: float
) -> CronPlan:
    """``plan_cron`` for a parsed CronWorkflow: name, namespace, labels, annotations and creation time come
    from its metadata; ``status`` is the one last saved and ``children`` the child Workflows observed."""
    namespace, name = cron_key(cron)
    meta = cron.metadata
    return plan_cron(
        spec=_spec_of(cron),
        name=name,
        namespace=namespace,
        status=status,
        children=children,
        now=now,
        labels=dict(meta.labels),
        annotations=dict(meta.annotations),
        created_at=parse_rfc3339(meta.creation_timestamp) if meta.creation_timestamp else None,
    )


class CronRuntime(Protocol):
    """The I/O :func:`run_cron` asks of a runtime for one CronWorkflow.

    Each operation deals with its own expected failures: a child already gone is not an error for
    terminate or delete, and a status write that fails is the runtime's to report (the next pass plans
    again from the status it still has).
    """

    async def terminate_child(self, namespace: str, name: str) -> None:
        """Stop the running child ``name`` without exit handlers."""
        ...

    async def submit_child(self, start: StartChild, manifest: dict[str, Any]) -> str | None:
        """Create the child Workflow ``manifest``; None when created or already there, else why not."""
        ...

    async def delete_child(self, namespace: str, name: str) -> None:
        """Delete the finished child ``name``."""
        ...

    async def save_status(self, namespace: str, name: str, status: CronState) -> None:
        """Store ``status`` as the CronWorkflow's status."""
        ...


async def run_cron(
    cron: CronWorkflow,
    *,
    status: CronState,
    children: Sequence[ChildRun],
    now: float,
    runtime: CronRuntime,
    own_children: bool = False,
) -> float | None:
    """Plan one CronWorkflow at ``now`` and carry the plan out through ``runtime``, in the plan's order.

    A child that cannot be submitted is recorded in the status as a submission error (a failed run).
    The status is saved when the plan or a submission error changed it. ``own_children`` makes the
    CronWorkflow (by its uid) the owner of the children it starts, so deleting it deletes them.
    Returns the plan's ``requeue_at``: when to call again at the latest, None when nothing is scheduled.
    """
    namespace, name = cron_key(cron)
    spec = _spec_of(cron)
    plan = plan_cron_workflow(cron, status=status, children=children, now=now)
    owner_uid = cron.metadata.uid if own_children else None
    saved = plan.status
    for action in plan.actions:
        if isinstance(action, TerminateChild):
            await runtime.terminate_child(namespace, action.name)
        elif isinstance(action, StartChild):
            manifest = child_manifest(action, spec=spec, owner_uid=owner_uid, owner_name=name)
            error = await runtime.submit_child(action, manifest)
            if error is not None:
                saved = record_submission_error(saved, child=action.name, message=error)
        else:
            await runtime.delete_child(namespace, action.name)
    if plan.changed or saved is not plan.status:
        await runtime.save_status(namespace, name, saved)
    return plan.requeue_at


def earlier(a: float | None, b: float | None) -> float | None:
    """The earlier of two requeue times, where None means "no time": a cron pass wakes for the first."""
    if a is None:
        return b
    return a if b is None or a <= b else b


def _spec_of(cron: CronWorkflow) -> CronWorkflowSpec:
    if cron.spec is None:
        namespace, name = cron_key(cron)
        raise SpecError([Problem("spec", f"CronWorkflow {namespace}/{name} has no spec")])
    return cron.spec


def _first_watermark(status: CronState, created_at: float | None, now: float) -> float:
    # A status written by Argo (or by a runtime that lost ours) has lastScheduledTime: fire times after
    # it are missed runs, subject to the deadline, exactly as Argo's catch-up treats them.
    for candidate in (status.last_scheduled_time, created_at):
        if candidate is not None:
            return min(candidate, now)
    return now


def _missed_message(late: float, deadline: int | None) -> str:
    limit = (
        f"startingDeadlineSeconds {deadline}"
        if deadline and deadline > ON_TIME_TOLERANCE
        else f"the {ON_TIME_TOLERANCE:.0f}s on-time tolerance"
    )
    return f"missed by {late:.0f}s, beyond {limit}"


def _run_zone(compiled: CompiledCron, scheduled: float) -> ZoneInfo:
    # The zone of the schedule that fired, so workflow.scheduledTime shows the wall-clock time it matched.
    for schedule in compiled.schedules:
        if schedule.matches(scheduled, compiled.zone):
            return schedule.zone(compiled.zone)
    return compiled.zone


def _start_child(
    *,
    spec: CronWorkflowSpec,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    scheduled_time: float,
    zone: ZoneInfo,
) -> StartChild:
    child_labels = {k: labels[k] for k in PROPAGATED_LABELS if k in labels}
    child_labels[LABEL_CRON_WORKFLOW] = name
    text = rfc3339(scheduled_time, zone)
    child_annotations = {ANNOTATION_SCHEDULED_TIME: text}
    finalizers: tuple[str, ...] = ()
    meta = spec.workflow_metadata
    if meta is not None:
        child_labels.update({k: str(v) for k, v in meta.labels.items()})
        child_annotations.update({k: str(v) for k, v in meta.annotations.items()})
        finalizers = meta.finalizers
    return StartChild(
        name=child_name(name, scheduled_time),
        namespace=namespace,
        scheduled_time=scheduled_time,
        scheduled_time_text=text,
        labels=child_labels,
        annotations=child_annotations,
        finalizers=finalizers,
    )


def _history_deletions(spec: CronWorkflowSpec, children: Sequence[ChildRun]) -> list[DeleteChild]:
    """Finished children beyond successfulJobsHistoryLimit / failedJobsHistoryLimit, oldest first."""
    out: list[DeleteChild] = []
    groups = (
        (
            "successfulJobsHistoryLimit",
            spec.successful_jobs_history_limit,
            DEFAULT_SUCCESSFUL_HISTORY,
            [c for c in children if c.phase == SUCCEEDED],
        ),
        (
            "failedJobsHistoryLimit",
            spec.failed_jobs_history_limit,
            DEFAULT_FAILED_HISTORY,
            [c for c in children if c.phase in (FAILED, ERROR)],
        ),
    )
    for field_name, limit, default, done in groups:
        keep = limit if limit is not None and limit >= 0 else default
        # Newest first by finish time; a child without one counts as oldest; the name breaks ties.
        done.sort(
            key=lambda c: (c.finished_at if c.finished_at is not None else -math.inf, c.name), reverse=True
        )
        out.extend(DeleteChild(c.name, f"{field_name} {keep}") for c in reversed(done[keep:]))
    return out


# ------------------------------------------------------------------------------ cron variables


@dataclass(frozen=True, slots=True)
class _CronVariables:
    """The ``cronworkflow.*`` variables of ``when`` and ``stopStrategy.expression``."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    succeeded: int
    failed: int
    last_scheduled_time: float | None
    now: float

    def resolve(self, key: str) -> str:
        """A ``{{cronworkflow.x}}`` tag as text; raises KeyError for anything else."""
        prefix = "cronworkflow."
        if not key.startswith(prefix):
            raise KeyError(key)
        rest = key[len(prefix) :]
        simple: dict[str, str] = {
            "name": self.name,
            "namespace": self.namespace,
            "succeeded": str(self.succeeded),
            "failed": str(self.failed),
            # Empty before the first run, so a when can test "'{{cronworkflow.lastScheduledTime}}' == ''".
            "lastScheduledTime": rfc3339(self.last_scheduled_time)
            if self.last_scheduled_time is not None
            else "",
            "labels.json": json.dumps(dict(self.labels), separators=(",", ":"), sort_keys=True),
            "annotations.json": json.dumps(dict(self.annotations), separators=(",", ":"), sort_keys=True),
        }
        if rest in simple:
            return simple[rest]
        for group, values in (("labels.", self.labels), ("annotations.", self.annotations)):
            if rest.startswith(group) and rest[len(group) :] in values:
                return str(values[rest[len(group) :]])
        raise KeyError(key)

    def expression_env(self) -> dict[str, Any]:
        """The environment of ``{{= }}`` and expr-lang expressions: ``cronworkflow`` as a nested map."""
        from engine import expr

        last = self.last_scheduled_time
        return {
            "cronworkflow": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
                "succeeded": self.succeeded,
                "failed": self.failed,
                # A time value, so (now() - cronworkflow.lastScheduledTime).Seconds() works; nil before
                # the first run.
                "lastScheduledTime": expr.Time.from_epoch(last) if last is not None else None,
            },
            # now() reads the planner's clock from here, never the machine's.
            expr.NOW_KEY: expr.Time.from_epoch(self.now),
        }


def _when_allows(when: str | None, variables: _CronVariables) -> bool:
    if not when or not when.strip():
        return True
    from engine import expr

    resolve: Callable[[str], str] = variables.resolve
    text = expr.substitute(when, resolve, env=variables.expression_env())
    return bool(expr.evaluate_when(text))


def _should_stop(expression: str, variables: _CronVariables) -> bool:
    if not expression.strip():
        return False
    from engine import expr

    result = expr.evaluate(expression, variables.expression_env())
    if not isinstance(result, bool):
        raise ExprError(f"the stop expression must give true or false, not {result!r}", expression=expression)
    return result
