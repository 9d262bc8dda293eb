"""What a step pod's state means for its node: a pure mapping from a Pod object to a StepOutcome.

Called by the operator's workflow driver (``engine.runtime.kubernetes.controller``) for every pod event
it receives, and once more with the ``wait`` container's outputs document when the pod has ended. The
rules follow Argo's: a non-zero exit of main is Failed; what the step could not help (the kubelet
killed it for memory, evicted it, could not pull its image, the pod vanished) is Error, with the
reason in the message; outputs that could not be read turn a Succeeded pod into Error.

An http step's pod (annotated by the pod builder) has no command of the user's in main: main is
``sluice executor http``, which judges the response itself and hands its verdict over through
Kubernetes' own channel for a container's last word. Its exit code is the phase (HTTP_EXIT_CODES)
and its termination message (``/dev/termination-log``, shown as the terminated state's ``message``)
is the node's message, word for word as the embedded runtime gives it; the response body arrives as
the result through the wait container, as any step's stdout does.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from engine.runtime.kubernetes.pods import (
    ANNOTATION_NODE_ID,
    ANNOTATION_STEP_KIND,
    ANNOTATION_STOP_MESSAGE,
    EXECUTOR_CONTAINERS,
)
from engine.workflows.plan import DEADLINE_MESSAGE, ContainerOutcome, ContainerPhase, StepOutcome

# Waiting reasons after which a container will not start without someone changing the pod.
STUCK_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
DELETED_MESSAGE = "pod deleted"
# Terminated reasons of a container whose process could not be started at all (runc, Docker).
START_FAILURES = frozenset({"StartError", "ContainerCannotRun"})
# ``sluice executor http``'s exit code for each verdict; any other exit is an Error of its own.
HTTP_EXIT_CODES: Mapping[ContainerPhase, int] = {"Succeeded": 0, "Failed": 1, "Error": 2}
PodDict = Mapping[str, Any]


def parse_time(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def node_id_of(pod: PodDict) -> str | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_NODE_ID)
    return str(value) if value else None


def is_http(pod: PodDict) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return annotations.get(ANNOTATION_STEP_KIND) == "http"


def _statuses(pod: PodDict, key: str) -> dict[str, Mapping[str, Any]]:
    return {str(s.get("name")): s for s in (pod.get("status") or {}).get(key) or () if isinstance(s, Mapping)}


def _terminated(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not status:
        return None
    term = (status.get("state") or {}).get("terminated")
    return term if isinstance(term, Mapping) else None


def _waiting(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not status:
        return None
    wait = (status.get("state") or {}).get("waiting")
    return wait if isinstance(wait, Mapping) else None


def pod_finished(pod: PodDict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def wait_finished(pod: PodDict) -> bool:
    """The ``wait`` container has exited, so its log holds the outputs document (or never will)."""
    return _terminated(_statuses(pod, "containerStatuses").get("wait")) is not None


def wait_running(pod: PodDict) -> bool:
    status = _statuses(pod, "containerStatuses").get("wait")
    return bool(status and isinstance((status.get("state") or {}).get("running"), Mapping))


def stuck_reason(pod: PodDict) -> str | None:
    """``reason: message`` when a container of a Pending pod cannot start (bad image, bad config)."""
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "", "Pending"):
        return None
    for key in ("initContainerStatuses", "containerStatuses"):
        for s in _statuses(pod, key).values():
            waiting = _waiting(s)
            if waiting and waiting.get("reason") in STUCK_REASONS:
                text = f"{waiting['reason']}: {waiting.get('message') or s.get('image') or ''}".rstrip(": ")
                return f"container {s.get('name')}: {text}"
    return None


def pod_outcome(
    pod: PodDict,
    *,
    outputs: Mapping[str, Any] | None = None,
    outputs_error: str | None = None,
    deleted: bool = False,
    container_set: Sequence[str] = (),
) -> StepOutcome | None:
    """The node's state as ``pod`` shows it; ``outputs`` is the wait container's document once the pod
    has ended (``outputs_error`` says why there is none); ``container_set`` names a containerSet step's
    containers. None when the pod is not one of ours."""
    node_id = node_id_of(pod)
    if node_id is None:
        return None
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    started = parse_time(status.get("startTime"))
    host = (pod.get("spec") or {}).get("nodeName")
    pod_ip = status.get("podIP")
    common: dict[str, Any] = {
        "node_id": node_id,
        "started_at": started,
        "host_node_name": host,
        "pod_ip": pod_ip,
    }
    mains = _statuses(pod, "containerStatuses")
    if deleted and phase not in ("Succeeded", "Failed"):
        return StepOutcome(phase="Error", message=DELETED_MESSAGE, **common)
    if phase in ("Pending", ""):
        stuck = stuck_reason(pod)
        if stuck is not None:
            return StepOutcome(phase="Error", message=stuck, **common)
        return StepOutcome(phase="Pending", message=_pending_message(pod), **common)
    if phase == "Running":
        main_term = _terminated(mains.get("main"))
        if main_term is not None and main_term.get("reason") == "OOMKilled":
            # The kill took sluice-run with it, so nothing tells the wait container main has ended: the
            # pod would run on. The node ends here; the operator deletes the pod.
            code = main_term.get("exitCode", 137)
            return StepOutcome(
                phase="Error", message=f"OOMKilled (exit code {code})", exit_code=code, **common
            )
        if main_term is not None and main_term.get("reason") in START_FAILURES:
            # main never ran, so sluice-run records no exit for the wait container either.
            detail = str(main_term.get("message") or "").strip()
            text = f"{main_term['reason']}: {detail}" if detail else str(main_term["reason"])
            return StepOutcome(phase="Error", message=f"container main: {text}", **common)
        return StepOutcome(phase="Running", **common)
    finished = _finished_at(mains.values()) or parse_time(status.get("startTime"))
    containers = _container_outcomes(pod, outputs, container_set)
    reason = str(status.get("reason") or "") if phase == "Failed" else ""
    # Past its activeDeadlineSeconds (set at creation, or cut short by the operator to stop the step)
    # the kubelet stopped every container with SIGTERM first: what main left is still reported.
    deadline = reason == "DeadlineExceeded"
    if phase == "Failed" and not deadline:
        if reason:
            text = f"{reason}: {status.get('message')}" if status.get("message") else reason
            return StepOutcome(phase="Error", message=text, finished_at=finished, **common)
        init_failure = _init_failure(pod)
        if init_failure is not None:
            return StepOutcome(phase="Error", message=init_failure, finished_at=finished, **common)
    main = _terminated(mains.get("main"))
    exit_code = _exit_code(main, outputs)
    http = is_http(pod)
    outcome_phase: ContainerPhase = "Succeeded"
    message = ""
    if deadline:
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        outcome_phase, message = "Failed", str(annotations.get(ANNOTATION_STOP_MESSAGE) or DEADLINE_MESSAGE)
    elif main is not None and main.get("reason") == "OOMKilled":
        outcome_phase, message = "Error", f"OOMKilled (exit code {main.get('exitCode', 137)})"
    elif http:
        outcome_phase, message = _http_verdict(main, exit_code)
    elif exit_code not in (None, 0):
        outcome_phase, message = "Failed", f"Error (exit code {exit_code})"
    elif "main" not in container_set and any(c.phase != "Succeeded" for c in containers):
        # A containerSet without a container named main follows its first failed container.
        failed = next(c for c in containers if c.phase != "Succeeded")
        outcome_phase, message = "Failed", failed.message
    elif phase == "Failed":
        outcome_phase, message = _other_failure(pod)
    result = params = artifacts = None
    if outputs is not None:
        result = outputs.get("result")
        params = tuple((str(p["name"]), str(p["value"])) for p in outputs.get("parameters") or ())
        artifacts = tuple(dict(a) for a in outputs.get("artifacts") or ())
        problems = [str(p) for p in outputs.get("problems") or ()]
        if problems and outcome_phase == "Succeeded":
            outcome_phase, message = "Error", problems[0]
    elif outcome_phase == "Succeeded" and outputs_error is not None:
        outcome_phase, message = "Error", outputs_error
    if http:
        # As on the embedded runtime: no exit code (the command is ours), no result for an empty body.
        exit_code, result = None, result or None
    return StepOutcome(
        phase=outcome_phase,
        message=message,
        exit_code=exit_code,
        result=result if isinstance(result, str) else None,
        parameters=params or (),
        artifacts=artifacts or (),
        finished_at=finished,
        containers=containers,
        **common,
    )


def _pending_message(pod: PodDict) -> str:
    for key in ("initContainerStatuses", "containerStatuses"):
        for s in _statuses(pod, key).values():
            waiting = _waiting(s)
            if waiting and waiting.get("reason") not in (None, "PodInitializing", "ContainerCreating"):
                return str(waiting.get("reason"))
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("reason") or "Unschedulable")
    return ""


def _finished_at(statuses: Any) -> float | None:
    times = [parse_time((_terminated(s) or {}).get("finishedAt")) for s in statuses]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _exit_code(main: Mapping[str, Any] | None, outputs: Mapping[str, Any] | None) -> int | None:
    # sluice-run records the command's own exit code; the container's may differ when sluice-run was
    # itself killed, so prefer the recorded one.
    recorded = (outputs or {}).get("exitCodes", {}).get("main") if outputs else None
    if isinstance(recorded, int):
        return recorded
    if main is not None and isinstance(main.get("exitCode"), int):
        return int(main["exitCode"])
    return None


def _http_verdict(main: Mapping[str, Any] | None, exit_code: int | None) -> tuple[ContainerPhase, str]:
    """The phase and message ``sluice executor http`` left (see the module docstring)."""
    message = str((main or {}).get("message") or "")
    phase = next((p for p, code in HTTP_EXIT_CODES.items() if code == exit_code), None)
    if phase == "Succeeded":
        return "Succeeded", ""
    if phase is not None and message:
        return phase, message
    # The command died before it could judge (killed, could not start): nothing it said is a verdict.
    return "Error", f"the http request ended without a verdict (exit code {exit_code})"


def _init_failure(pod: PodDict) -> str | None:
    for name, s in _statuses(pod, "initContainerStatuses").items():
        term = _terminated(s)
        if term is not None and term.get("exitCode") not in (0, None):
            detail = str(term.get("message") or "").strip().splitlines()
            why = f": {detail[-1]}" if detail else ""
            return f"init container {name} failed with exit code {term.get('exitCode')}{why}"
    return None


def _other_failure(pod: PodDict) -> tuple[ContainerPhase, str]:
    """A Failed pod whose main exited 0: a sidecar or our wait container failed."""
    for name, s in _statuses(pod, "containerStatuses").items():
        term = _terminated(s)
        if name == "main" or term is None or term.get("exitCode") in (0, None):
            continue
        if name in EXECUTOR_CONTAINERS:
            detail = str(term.get("message") or "").strip().splitlines()
            return "Error", f"{name} container failed with exit code {term['exitCode']}" + (
                f": {detail[-1]}" if detail else ""
            )
        return "Failed", f"sidecar {name} failed with exit code {term['exitCode']}"
    return "Error", str((pod.get("status") or {}).get("message") or "pod failed")


def _container_outcomes(
    pod: PodDict, outputs: Mapping[str, Any] | None, names: Sequence[str]
) -> tuple[ContainerOutcome, ...]:
    """Per-container states of a containerSet step."""
    if not names:
        return ()
    statuses = _statuses(pod, "containerStatuses")
    codes = (outputs or {}).get("exitCodes") or {}
    out: list[ContainerOutcome] = []
    for name in names:
        term = _terminated(statuses.get(name))
        code = codes.get(name)
        if code == "skipped":
            out.append(ContainerOutcome(name, "Failed", message="not run: a dependency did not succeed"))
            continue
        if not isinstance(code, int) and term is not None:
            code = term.get("exitCode")
        phase: ContainerPhase = "Succeeded" if code == 0 else "Failed"
        out.append(
            ContainerOutcome(
                name,
                phase,
                exit_code=code if isinstance(code, int) else None,
                message="" if code == 0 else f"Error (exit code {code})",
                started_at=parse_time((term or {}).get("startedAt")),
                finished_at=parse_time((term or {}).get("finishedAt")),
            )
        )
    return tuple(out)
