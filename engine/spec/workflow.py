"""Typed models of the workflow kinds: Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow.

Field names follow Argo's (``docs/fields.md``) as snake_case attributes; ``engine.spec.fields`` maps them to
the manifest's camelCase. Kubernetes sub-objects the engine does not interpret (affinity, resources,
securityContext, probes, volume sources...) are kept as plain JSON values and handed to the runtime as
they are. Parsed by ``engine.spec.loader``; read by the workflow core and the runtimes.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar

from engine.spec.fields import JSON, AnyStr, IntOrStr, Model, model

API_GROUP = "sluice.dev"
API_VERSION = "sluice.dev/v1alpha1"
ARGO_API_VERSION = "argoproj.io/v1alpha1"


@model
class ObjectMeta(Model):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, AnyStr] = field(default_factory=dict)
    annotations: dict[str, AnyStr] = field(default_factory=dict)
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    owner_references: tuple[JSON, ...] = ()
    finalizers: tuple[str, ...] = ()
    managed_fields: tuple[JSON, ...] = ()
    self_link: str | None = None


# ---------------------------------------------------------------------------------------------- values


@model
class ConfigMapKeySelector(Model):
    name: str
    key: str
    optional: bool | None = None


@model
class ValueFrom(Model):
    path: str | None = None
    default: AnyStr | None = None
    expression: str | None = None
    parameter: str | None = None
    supplied: JSON | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    json_path: str | None = None
    jq_filter: str | None = None
    event: str | None = None


@model
class Parameter(Model):
    name: str
    value: AnyStr | None = None
    default: AnyStr | None = None
    enum: tuple[AnyStr, ...] = ()
    description: str | None = None
    global_name: str | None = None
    value_from: ValueFrom | None = None


@model
class RawArtifact(Model):
    data: str


@model
class Artifact(Model):
    KEYS: ClassVar[dict[str, str]] = {"from_": "from", "artifact_gc": "artifactGC"}

    name: str
    path: str | None = None
    from_: str | None = None
    from_expression: str | None = None
    mode: int | None = None
    recurse_mode: bool | None = None
    optional: bool | None = None
    sub_path: str | None = None
    global_name: str | None = None
    archive: JSON | None = None
    archive_logs: bool | None = None
    artifact_gc: JSON | None = None
    deleted: bool | None = None
    raw: RawArtifact | None = None
    s3: JSON | None = None
    gcs: JSON | None = None
    git: JSON | None = None
    http: JSON | None = None
    artifactory: JSON | None = None
    azure: JSON | None = None
    hdfs: JSON | None = None
    oss: JSON | None = None
    plugin: JSON | None = None

    LOCATION_KEYS: ClassVar[tuple[str, ...]] = (
        "raw",
        "s3",
        "gcs",
        "git",
        "http",
        "artifactory",
        "azure",
        "hdfs",
        "oss",
        "plugin",
    )

    def has_location(self) -> bool:
        return any(getattr(self, k) is not None for k in self.LOCATION_KEYS)


@model
class Inputs(Model):
    parameters: tuple[Parameter, ...] = ()
    artifacts: tuple[Artifact, ...] = ()


@model
class Outputs(Model):
    parameters: tuple[Parameter, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    result: str | None = None
    exit_code: str | None = None


@model
class Arguments(Model):
    parameters: tuple[Parameter, ...] = ()
    artifacts: tuple[Artifact, ...] = ()


# ------------------------------------------------------------------------------------------ containers


@model
class EnvVar(Model):
    name: str
    value: AnyStr | None = None
    value_from: JSON | None = None


@model
class VolumeMount(Model):
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: str | None = None
    recursive_read_only: str | None = None


@model
class Container(Model):
    """A Kubernetes container; the fields the engine reads are typed, the rest pass through."""

    name: str | None = None
    image: str | None = None
    command: tuple[AnyStr, ...] | None = None
    args: tuple[AnyStr, ...] | None = None
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[JSON, ...] = ()
    working_dir: str | None = None
    volume_mounts: tuple[VolumeMount, ...] = ()
    resources: JSON | None = None
    security_context: JSON | None = None
    ports: tuple[JSON, ...] = ()
    image_pull_policy: str | None = None
    lifecycle: JSON | None = None
    liveness_probe: JSON | None = None
    readiness_probe: JSON | None = None
    startup_probe: JSON | None = None
    resize_policy: tuple[JSON, ...] = ()
    restart_policy: str | None = None
    restart_policy_rules: tuple[JSON, ...] = ()
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    volume_devices: tuple[JSON, ...] = ()


@model
class UserContainer(Container):
    """A sidecar or init container."""

    mirror_volume_mounts: bool | None = None


@model
class ScriptTemplate(Container):
    source: str


@model
class ContainerNode(Container):
    dependencies: tuple[str, ...] = ()


@model
class ContainerSetRetryStrategy(Model):
    retries: IntOrStr
    duration: str | None = None


@model
class ContainerSetTemplate(Model):
    containers: tuple[ContainerNode, ...]
    volume_mounts: tuple[VolumeMount, ...] = ()
    retry_strategy: ContainerSetRetryStrategy | None = None


# ------------------------------------------------------------------------------------- template kinds


@model
class TemplateRef(Model):
    name: str
    template: str
    cluster_scope: bool | None = None


@model
class ContinueOn(Model):
    error: bool | None = None
    failed: bool | None = None


@model
class Sequence(Model):
    count: IntOrStr | None = None
    start: IntOrStr | None = None
    end: IntOrStr | None = None
    format: str | None = None


@model
class LifecycleHook(Model):
    template: str | None = None
    template_ref: TemplateRef | None = None
    arguments: Arguments | None = None
    expression: str | None = None


@model
class WorkflowStep(Model):
    name: str | None = None
    template: str | None = None
    template_ref: TemplateRef | None = None
    inline: Template | None = None
    arguments: Arguments | None = None
    when: str | None = None
    with_items: tuple[JSON, ...] | None = None
    with_param: str | None = None
    with_sequence: Sequence | None = None
    continue_on: ContinueOn | None = None
    on_exit: str | None = None
    hooks: dict[str, LifecycleHook] = field(default_factory=dict)


@model
class DAGTask(Model):
    name: str
    template: str | None = None
    template_ref: TemplateRef | None = None
    inline: Template | None = None
    arguments: Arguments | None = None
    dependencies: tuple[str, ...] | None = None
    depends: str | None = None
    when: str | None = None
    with_items: tuple[JSON, ...] | None = None
    with_param: str | None = None
    with_sequence: Sequence | None = None
    continue_on: ContinueOn | None = None
    on_exit: str | None = None
    hooks: dict[str, LifecycleHook] = field(default_factory=dict)


@model
class DAGTemplate(Model):
    tasks: tuple[DAGTask, ...]
    target: str | None = None
    fail_fast: bool | None = None


@model
class SuspendTemplate(Model):
    duration: AnyStr | None = None


@model
class HTTPHeader(Model):
    name: str
    value: AnyStr | None = None
    value_from: JSON | None = None


@model
class HTTP(Model):
    url: str
    method: str | None = None
    headers: tuple[HTTPHeader, ...] = ()
    body: str | None = None
    body_from: JSON | None = None
    timeout_seconds: int | None = None
    insecure_skip_verify: bool | None = None
    success_condition: str | None = None


@model
class ResourceTemplate(Model):
    action: str
    manifest: str | None = None
    manifest_from: JSON | None = None
    merge_strategy: str | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    set_owner_reference: bool | None = None
    flags: tuple[str, ...] = ()


@model
class DataTemplate(Model):
    source: JSON
    transformation: tuple[JSON, ...] = ()


@model
class Backoff(Model):
    duration: AnyStr | None = None
    factor: IntOrStr | None = None
    cap: AnyStr | None = None
    max_duration: AnyStr | None = None


@model
class RetryStrategy(Model):
    limit: IntOrStr | None = None
    retry_policy: str | None = None
    backoff: Backoff | None = None
    expression: str | None = None
    affinity: JSON | None = None


@model
class Mutex(Model):
    name: str
    namespace: str | None = None
    database: bool | None = None


@model
class SemaphoreRef(Model):
    config_map_key_ref: ConfigMapKeySelector | None = None
    database: JSON | None = None
    namespace: str | None = None


@model
class Synchronization(Model):
    mutexes: tuple[Mutex, ...] = ()
    semaphores: tuple[SemaphoreRef, ...] = ()
    # Singular forms from before v4; `sluice convert` rewrites them into the lists.
    mutex: Mutex | None = None
    semaphore: SemaphoreRef | None = None

    def all_mutexes(self) -> tuple[Mutex, ...]:
        return self.mutexes + ((self.mutex,) if self.mutex else ())

    def all_semaphores(self) -> tuple[SemaphoreRef, ...]:
        return self.semaphores + ((self.semaphore,) if self.semaphore else ())


@model
class Memoize(Model):
    key: str
    cache: JSON
    max_age: str | None = None


@model
class Metrics(Model):
    prometheus: tuple[JSON, ...] = ()


@model
class Metadata(Model):
    labels: dict[str, AnyStr] = field(default_factory=dict)
    annotations: dict[str, AnyStr] = field(default_factory=dict)


TEMPLATE_TYPES = ("container", "script", "resource", "suspend", "http", "plugin", "container_set", "data")
INVOCATOR_TYPES = ("steps", "dag")


@model
class Template(Model):
    name: str | None = None
    inputs: Inputs = Inputs()
    outputs: Outputs = Outputs()
    metadata: Metadata | None = None
    daemon: bool | None = None
    # template types (exactly one)
    steps: tuple[tuple[WorkflowStep, ...], ...] | None = None
    dag: DAGTemplate | None = None
    container: Container | None = None
    script: ScriptTemplate | None = None
    resource: ResourceTemplate | None = None
    suspend: SuspendTemplate | None = None
    http: HTTP | None = None
    plugin: JSON | None = None
    container_set: ContainerSetTemplate | None = None
    data: DataTemplate | None = None
    # pod shaping
    sidecars: tuple[UserContainer, ...] = ()
    init_containers: tuple[UserContainer, ...] = ()
    volumes: tuple[JSON, ...] = ()
    pod_spec_patch: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    affinity: JSON | None = None
    tolerations: tuple[JSON, ...] = ()
    priority_class_name: str | None = None
    priority: int | None = None
    scheduler_name: str | None = None
    security_context: JSON | None = None
    service_account_name: str | None = None
    automount_service_account_token: bool | None = None
    executor: JSON | None = None
    host_aliases: tuple[JSON, ...] = ()
    pod_resources: JSON | None = None
    resource_claims: tuple[JSON, ...] = ()
    archive_location: JSON | None = None
    # control
    parallelism: IntOrStr | None = None
    fail_fast: bool | None = None
    retry_strategy: RetryStrategy | None = None
    timeout: AnyStr | None = None
    active_deadline_seconds: IntOrStr | None = None
    pending_timeout: AnyStr | None = None
    synchronization: Synchronization | None = None
    memoize: Memoize | None = None
    metrics: Metrics | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        """The template type (``container``, ``steps``, ``dag``...), or None when it has none."""
        for t in TEMPLATE_TYPES + INVOCATOR_TYPES:
            if getattr(self, t) is not None:
                return t
        return None

    def kinds(self) -> list[str]:
        return [t for t in TEMPLATE_TYPES + INVOCATOR_TYPES if getattr(self, t) is not None]


# ------------------------------------------------------------------------------------ workflow spec


@model
class WorkflowTemplateRef(Model):
    name: str
    cluster_scope: bool | None = None


@model
class PodGC(Model):
    strategy: str | None = None
    label_selector: JSON | None = None
    delete_delay_duration: str | None = None


@model
class TTLStrategy(Model):
    seconds_after_completion: int | None = None
    seconds_after_success: int | None = None
    seconds_after_failure: int | None = None


@model
class WorkflowMetadata(Model):
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    labels_from: dict[str, JSON] = field(default_factory=dict)


@model
class ArtifactRepositoryRef(Model):
    config_map: str | None = None
    key: str | None = None


@model
class WorkflowSpec(Model):
    KEYS: ClassVar[dict[str, str]] = {"pod_gc": "podGC", "artifact_gc": "artifactGC"}

    entrypoint: str | None = None
    arguments: Arguments = Arguments()
    templates: tuple[Template, ...] = ()
    on_exit: str | None = None
    hooks: dict[str, LifecycleHook] = field(default_factory=dict)
    parallelism: int | None = None
    suspend: bool | None = None
    shutdown: str | None = None
    active_deadline_seconds: int | None = None
    priority: int | None = None
    retry_strategy: RetryStrategy | None = None
    template_defaults: Template | None = None
    workflow_template_ref: WorkflowTemplateRef | None = None
    workflow_metadata: WorkflowMetadata | None = None
    synchronization: Synchronization | None = None
    metrics: Metrics | None = None
    # storage
    volumes: tuple[JSON, ...] = ()
    volume_claim_templates: tuple[JSON, ...] = ()
    volume_claim_gc: JSON | None = None
    artifact_repository_ref: ArtifactRepositoryRef | None = None
    artifact_gc: JSON | None = None
    archive_logs: bool | None = None
    # garbage collection
    pod_gc: PodGC | None = None
    ttl_strategy: TTLStrategy | None = None
    # pod shaping
    service_account_name: str | None = None
    automount_service_account_token: bool | None = None
    executor: JSON | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    affinity: JSON | None = None
    tolerations: tuple[JSON, ...] = ()
    image_pull_secrets: tuple[JSON, ...] = ()
    host_network: bool | None = None
    dns_policy: str | None = None
    dns_config: JSON | None = None
    host_aliases: tuple[JSON, ...] = ()
    scheduler_name: str | None = None
    pod_priority_class_name: str | None = None
    pod_metadata: Metadata | None = None
    pod_spec_patch: str | None = None
    pod_disruption_budget: JSON | None = None
    pod_resources: JSON | None = None
    resource_claims: tuple[JSON, ...] = ()
    security_context: JSON | None = None
    executor_plugins: tuple[JSON, ...] = ()
    template_referencing: str | None = None

    def template(self, name: str) -> Template | None:
        for t in self.templates:
            if t.name == name:
                return t
        return None


@model
class Workflow(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    spec: WorkflowSpec = WorkflowSpec()
    status: JSON | None = None


@model
class WorkflowTemplate(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    spec: WorkflowSpec = WorkflowSpec()


@model
class StopStrategy(Model):
    expression: str


@model
class CronWorkflowSpec(Model):
    workflow_spec: WorkflowSpec
    schedules: tuple[str, ...] = ()
    schedule: str | None = None
    timezone: str | None = None
    concurrency_policy: str | None = None
    starting_deadline_seconds: int | None = None
    successful_jobs_history_limit: int | None = None
    failed_jobs_history_limit: int | None = None
    suspend: bool | None = None
    stop_strategy: StopStrategy | None = None
    when: str | None = None
    workflow_metadata: ObjectMeta | None = None

    def all_schedules(self) -> tuple[str, ...]:
        return self.schedules + ((self.schedule,) if self.schedule else ())


@model
class CronWorkflow(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    spec: CronWorkflowSpec | None = None
    status: JSON | None = None


@model
class ConfigMap(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    data: dict[str, AnyStr] = field(default_factory=dict)
    binary_data: dict[str, str] = field(default_factory=dict)
    immutable: bool | None = None


@model
class Secret(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    data: dict[str, str] = field(default_factory=dict)
    string_data: dict[str, AnyStr] = field(default_factory=dict)
    type: str | None = None
    immutable: bool | None = None


Manifest = Workflow | WorkflowTemplate | CronWorkflow | ConfigMap | Secret
AnyObject = dict[str, Any]
