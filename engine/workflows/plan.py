"""The data passed between the workflow core and a runtime: actions out, observations in.

``reconcile`` returns a :class:`Plan` (actions + what changed); a runtime carries the actions out
(start a process or a pod, kill it, save a cache entry) and feeds back :class:`StepOutcome`
observations. Everything here is plain, frozen data with JSON-like fields, so the local runtime
and the Kubernetes runtime consume it the same way. Timestamps are epoch seconds (floats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JSONDict = dict[str, Any]

StepKind = Literal["container", "script", "http", "containerSet", "resource", "plugin", "data"]


@dataclass(frozen=True, slots=True)
class OutputParameterSpec:
    """An output parameter the runtime reads from a file in the step's filesystem after it exits."""

    name: str
    path: str
    # When the file is missing: the default if set, otherwise the node ends in Error.
    default: str | None = None


@dataclass(frozen=True, slots=True)
class OutputArtifactSpec:
    """An output artifact the runtime saves after the step exits."""

    name: str
    path: str
    # Key in the workflow's artifact repository when ``location`` does not say otherwise.
    key: str
    optional: bool = False
    # Argo's ArchiveStrategy: {"none": {}}, {"tar": {"compressionLevel": n}}, {"zip": {}}; None means tar.gz.
    archive: JSONDict | None = None
    # An explicit location from the template, e.g. {"s3": {"key": "x"}} (key-only: repository's bucket).
    location: JSONDict | None = None


@dataclass(frozen=True, slots=True)
class StepRun:
    """Everything a runtime needs to run one leaf node (a Pod node in Argo's terms).

    ``container`` is the main container after template substitution, in manifest form (camelCase).
    Input artifacts are Argo artifact dicts (``name``, ``path``, ``mode``, ``optional``, ``subPath``,
    ``recurseMode`` and exactly one location key such as ``raw``, ``s3``, ``http``, ``git`` or ``local``).
    """

    node_id: str
    node_name: str
    pod_name: str
    template_name: str
    kind: StepKind
    workflow_name: str
    workflow_uid: str
    namespace: str
    container: JSONDict = field(default_factory=dict)
    script_source: str | None = None
    init_containers: tuple[JSONDict, ...] = ()
    sidecars: tuple[JSONDict, ...] = ()
    # containerSet: the containers with their ``dependencies``; the one named ``main`` carries outputs.
    containers: tuple[JSONDict, ...] = ()
    volumes: tuple[JSONDict, ...] = ()
    input_artifacts: tuple[JSONDict, ...] = ()
    input_parameters: tuple[tuple[str, str], ...] = ()
    output_parameters: tuple[OutputParameterSpec, ...] = ()
    output_artifacts: tuple[OutputArtifactSpec, ...] = ()
    capture_result: bool = True
    # Absolute time after which the runtime kills the step; the node then Fails with DEADLINE_MESSAGE.
    deadline: float | None = None
    daemon: bool = False
    attempt: int = 0
    # http templates: url, method, headers [{name, value}], body, timeoutSeconds, successCondition.
    http: JSONDict | None = None
    # resource/plugin/data templates (runtimes that support them).
    resource: JSONDict | None = None
    pod_metadata: JSONDict = field(default_factory=dict)
    # Pod-level fields for runtimes that build pods (nodeSelector, tolerations, podSpecPatch...).
    pod_spec: JSONDict = field(default_factory=dict)
    archive_logs: bool = False


ContainerPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Error"]


@dataclass(frozen=True, slots=True)
class ContainerOutcome:
    """The state of one container of a containerSet step."""

    name: str
    phase: ContainerPhase
    exit_code: int | None = None
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What a runtime observed about a leaf node; repeated reports of the same state are harmless."""

    node_id: str
    phase: ContainerPhase
    message: str = ""
    exit_code: int | None = None
    result: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    artifacts: tuple[JSONDict, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    host_node_name: str | None = None
    pod_ip: str | None = None
    containers: tuple[ContainerOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class RunStep:
    """Start ``step`` unless a process/pod of that name already runs (starting twice must be a no-op)."""

    step: StepRun


@dataclass(frozen=True, slots=True)
class KillStep:
    """Stop the step's process tree/pod; the runtime reports it Failed with ``message``."""

    node_id: str
    pod_name: str
    message: str
    # True when the node has already been given its final phase (a daemon whose scope ended).
    already_final: bool = False


@dataclass(frozen=True, slots=True)
class SaveMemo:
    """Store a memoization cache entry (a ConfigMap key in Argo)."""

    cache: str
    key: str
    outputs: JSONDict
    node_id: str


Action = RunStep | KillStep | SaveMemo


@dataclass(slots=True)
class Plan:
    """The result of one reconcile: actions to carry out and the node ids whose status changed."""

    actions: list[Action] = field(default_factory=list)
    changed_nodes: set[str] = field(default_factory=set)
    workflow_changed: bool = False
    # The runtime calls reconcile again at this time even if nothing is observed (backoff, timers).
    requeue_at: float | None = None
    finished: bool = False


DEADLINE_MESSAGE = "Step exceeded its deadline"
