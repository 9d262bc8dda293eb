"""Typed models of the event kinds: EventSource, Sensor and EventBus.

Field names follow Argo Events' API (``pkg/apis/events/v1alpha1``) as snake_case attributes; the manifest
keys are their camelCase. Source and trigger types the engine does not run (``kafka``, ``awsLambda``...)
still parse, as plain JSON, so that ``engine.events.validate`` can name them in an "unsupported" error
instead of the parser calling them unknown fields. Pod templates, Services and other Kubernetes
sub-objects are kept as given. Parsed by ``engine.spec.loader``; read by the events core and the runtimes.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar

from engine.spec.fields import JSON, AnyStr, IntOrStr, Model, model
from engine.spec.workflow import ObjectMeta

# ----------------------------------------------------------------------------------------------- shared


@model
class SecretKeySelector(Model):
    key: str
    name: str | None = None
    optional: bool | None = None


@model
class ConfigMapKeySelector(Model):
    key: str
    name: str | None = None
    optional: bool | None = None


@model
class Backoff(Model):
    """A retry schedule: ``steps`` attempts, ``duration`` apart, growing by ``factor``, with ``jitter``."""

    duration: IntOrStr | None = None
    factor: float | str | None = None
    jitter: float | str | None = None
    steps: int | None = None


# -------------------------------------------------------------------------------------------- EventSource


@model
class EventSourceFilter(Model):
    expression: str | None = None


@model
class WebhookContext(Model):
    """One named webhook event: an HTTP endpoint on a port.

    ``hmacSecret`` is ours, not Argo's: with it set, a request must carry an HMAC-SHA256 of its body in
    ``signatureHeader`` (default ``X-Hub-Signature-256``, value ``sha256=<hex>``), as GitHub signs.
    """

    endpoint: str
    method: str
    port: AnyStr
    url: str | None = None
    server_cert_secret: SecretKeySelector | None = None
    server_key_secret: SecretKeySelector | None = None
    metadata: dict[str, AnyStr] = field(default_factory=dict)
    auth_secret: SecretKeySelector | None = None
    max_payload_size: int | None = None
    filter: EventSourceFilter | None = None
    hmac_secret: SecretKeySelector | None = None
    signature_header: str | None = None


@model
class CatchupConfiguration(Model):
    enabled: bool | None = None
    max_duration: str | None = None


@model
class ConfigMapPersistence(Model):
    name: str | None = None
    create_if_not_exist: bool | None = None


@model
class EventPersistence(Model):
    catchup: CatchupConfiguration | None = None
    config_map: ConfigMapPersistence | None = None


@model
class CalendarEventSource(Model):
    schedule: str | None = None
    interval: str | None = None
    exclusion_dates: tuple[str, ...] = ()
    timezone: str | None = None
    metadata: dict[str, AnyStr] = field(default_factory=dict)
    persistence: EventPersistence | None = None
    filter: EventSourceFilter | None = None


@model
class S3Bucket(Model):
    name: str
    key: str | None = None


@model
class S3Filter(Model):
    prefix: str | None = None
    suffix: str | None = None


@model
class S3EventSource(Model):
    """A bucket watched for object events (Argo's ``minio`` source, which is an S3Artifact)."""

    bucket: S3Bucket
    endpoint: str | None = None
    events: tuple[str, ...] = ()
    region: str | None = None
    insecure: bool | None = None
    access_key: SecretKeySelector | None = None
    secret_key: SecretKeySelector | None = None
    filter: S3Filter | None = None
    metadata: dict[str, AnyStr] = field(default_factory=dict)
    ca_certificate: SecretKeySelector | None = None
    event_filter: EventSourceFilter | None = None


# Event source types in Argo's API that the engine does not run; each parses as JSON and is reported.
UNSUPPORTED_SOURCES = (
    "amqp",
    "azureEventsHub",
    "azureQueueStorage",
    "azureServiceBus",
    "bitbucket",
    "bitbucketserver",
    "emitter",
    "file",
    "generic",
    "gerrit",
    "github",
    "gitlab",
    "hdfs",
    "kafka",
    "mns",
    "mqtt",
    "nats",
    "nsq",
    "pubSub",
    "pulsar",
    "redis",
    "redisStream",
    "resource",
    "sftp",
    "slack",
    "sns",
    "sqs",
    "storageGrid",
    "stripe",
)
SUPPORTED_SOURCES = ("webhook", "calendar", "minio")


@model
class EventSourceSpec(Model):
    event_bus_name: str | None = None
    template: JSON | None = None
    service: JSON | None = None
    replicas: int | None = None
    webhook: dict[str, WebhookContext] = field(default_factory=dict)
    calendar: dict[str, CalendarEventSource] = field(default_factory=dict)
    minio: dict[str, S3EventSource] = field(default_factory=dict)
    amqp: JSON | None = None
    azure_events_hub: JSON | None = None
    azure_queue_storage: JSON | None = None
    azure_service_bus: JSON | None = None
    bitbucket: JSON | None = None
    bitbucketserver: JSON | None = None
    emitter: JSON | None = None
    file: JSON | None = None
    generic: JSON | None = None
    gerrit: JSON | None = None
    github: JSON | None = None
    gitlab: JSON | None = None
    hdfs: JSON | None = None
    kafka: JSON | None = None
    mns: JSON | None = None
    mqtt: JSON | None = None
    nats: JSON | None = None
    nsq: JSON | None = None
    pub_sub: JSON | None = None
    pulsar: JSON | None = None
    redis: JSON | None = None
    redis_stream: JSON | None = None
    resource: JSON | None = None
    sftp: JSON | None = None
    slack: JSON | None = None
    sns: JSON | None = None
    sqs: JSON | None = None
    storage_grid: JSON | None = None
    stripe: JSON | None = None


@model
class EventSource(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    spec: EventSourceSpec = EventSourceSpec()
    status: JSON | None = None


# ------------------------------------------------------------------------------------------------ Sensor


@model
class TimeFilter(Model):
    start: str
    stop: str
    timezone: str | None = None


@model
class EventContextFilter(Model):
    """Exact matches on the event's CloudEvents attributes; empty fields match anything."""

    type: str | None = None
    subject: str | None = None
    source: str | None = None
    datacontenttype: str | None = None
    id: str | None = None
    specversion: str | None = None
    time: str | None = None


@model
class DataFilter(Model):
    path: str
    type: str
    value: tuple[AnyStr, ...] = ()
    comparator: str | None = None
    template: str | None = None


@model
class PayloadField(Model):
    name: str
    path: str


@model
class ExprFilter(Model):
    expr: str
    fields_: tuple[PayloadField, ...] = ()  # "fields" would shadow Model.fields()


@model
class EventDependencyFilter(Model):
    time: TimeFilter | None = None
    context: EventContextFilter | None = None
    data: tuple[DataFilter, ...] = ()
    exprs: tuple[ExprFilter, ...] = ()
    data_logical_operator: str | None = None
    expr_logical_operator: str | None = None
    script: str | None = None


@model
class EventDependencyTransformer(Model):
    jq: str | None = None
    script: str | None = None


@model
class EventDependency(Model):
    name: str
    event_source_name: str
    event_name: str
    filters: EventDependencyFilter | None = None
    transform: EventDependencyTransformer | None = None
    filters_logical_operator: str | None = None


@model
class TriggerParameterSource(Model):
    dependency_name: str
    context_key: str | None = None
    context_template: str | None = None
    data_key: str | None = None
    data_template: str | None = None
    value: AnyStr | None = None
    use_raw_data: bool | None = None


@model
class TriggerParameter(Model):
    src: TriggerParameterSource
    dest: str
    operation: str | None = None


@model
class URLArtifact(Model):
    # The API field is verifyCert; manifests also spell it verifycert (the API server's JSON decoding
    # matches keys case-insensitively), so both keys are read.
    KEYS: ClassVar[dict[str, str]] = {"verify_cert_lower": "verifycert"}

    path: str
    verify_cert: bool | None = None
    verify_cert_lower: bool | None = None

    def verifies(self) -> bool | None:
        """The ``verifyCert`` setting, whichever spelling gave it (None when unset)."""
        return self.verify_cert if self.verify_cert is not None else self.verify_cert_lower


@model
class FileArtifact(Model):
    path: str


@model
class ArtifactLocation(Model):
    """Where a trigger's object comes from: ``resource`` (inline object) or ``inline`` (YAML text)."""

    resource: JSON | None = None
    inline: str | None = None
    configmap: ConfigMapKeySelector | None = None
    file: FileArtifact | None = None
    url: URLArtifact | None = None
    git: JSON | None = None
    s3: JSON | None = None

    def kind(self) -> str | None:
        for name in ("resource", "inline", "configmap", "file", "url", "git", "s3"):
            if getattr(self, name) is not None:
                return name
        return None


@model
class StandardK8STrigger(Model):
    source: ArtifactLocation | None = None
    operation: str | None = None
    parameters: tuple[TriggerParameter, ...] = ()
    patch_strategy: str | None = None
    live_object: bool | None = None


@model
class ArgoWorkflowTrigger(Model):
    source: ArtifactLocation | None = None
    operation: str | None = None
    parameters: tuple[TriggerParameter, ...] = ()
    args: tuple[str, ...] = ()


@model
class ValueFromSource(Model):
    secret_key_ref: SecretKeySelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None


@model
class SecureHeader(Model):
    name: str
    value_from: ValueFromSource


@model
class BasicAuth(Model):
    username: SecretKeySelector | None = None
    password: SecretKeySelector | None = None


@model
class HTTPTrigger(Model):
    url: str
    method: str | None = None
    payload: tuple[TriggerParameter, ...] = ()
    parameters: tuple[TriggerParameter, ...] = ()
    headers: dict[str, AnyStr] = field(default_factory=dict)
    secure_headers: tuple[SecureHeader, ...] = ()
    timeout: int | None = None
    basic_auth: BasicAuth | None = None
    tls: JSON | None = None


@model
class LogTrigger(Model):
    interval_seconds: int | None = None


@model
class ConditionsResetByTime(Model):
    cron: str
    timezone: str | None = None


@model
class ConditionsResetCriteria(Model):
    by_time: ConditionsResetByTime | None = None


UNSUPPORTED_TRIGGERS = (
    "awsLambda",
    "azureEventHubs",
    "azureServiceBus",
    "custom",
    "email",
    "kafka",
    "nats",
    "openWhisk",
    "pulsar",
    "slack",
)
SUPPORTED_TRIGGERS = ("k8s", "argoWorkflow", "http", "log")


@model
class TriggerTemplate(Model):
    """One trigger's action. ``policy``/``atLeastOnce`` here are misplaced in some published examples:
    they are accepted and ignored (they belong on the trigger), and validation warns about them."""

    name: str
    conditions: str | None = None
    conditions_reset: tuple[ConditionsResetCriteria, ...] = ()
    k8s: StandardK8STrigger | None = None
    argo_workflow: ArgoWorkflowTrigger | None = None
    http: HTTPTrigger | None = None
    log: LogTrigger | None = None
    aws_lambda: JSON | None = None
    azure_event_hubs: JSON | None = None
    azure_service_bus: JSON | None = None
    custom: JSON | None = None
    email: JSON | None = None
    kafka: JSON | None = None
    nats: JSON | None = None
    open_whisk: JSON | None = None
    # Argo's own example spells it in lower case, which Go's case-insensitive JSON decoding accepts.
    openwhisk: JSON | None = None
    pulsar: JSON | None = None
    slack: JSON | None = None
    policy: JSON | None = None
    at_least_once: JSON | None = None

    def types(self) -> tuple[str, ...]:
        """The action keys set on this template (exactly one is valid)."""
        names = (*SUPPORTED_TRIGGERS, *UNSUPPORTED_TRIGGERS)
        attrs = {"argoWorkflow": "argo_workflow", "awsLambda": "aws_lambda", "openWhisk": "open_whisk"}
        attrs |= {"azureEventHubs": "azure_event_hubs", "azureServiceBus": "azure_service_bus"}
        found = tuple(n for n in names if getattr(self, attrs.get(n, n)) is not None)
        return found + (("openWhisk",) if self.openwhisk is not None and not self.open_whisk else ())


@model
class K8SResourcePolicy(Model):
    labels: dict[str, AnyStr] = field(default_factory=dict)
    backoff: Backoff | None = None
    error_on_backoff_timeout: bool | None = None


@model
class StatusPolicy(Model):
    allow: tuple[int, ...] = ()


@model
class TriggerPolicy(Model):
    k8s: K8SResourcePolicy | None = None
    status: StatusPolicy | None = None


@model
class RateLimit(Model):
    unit: str | None = None
    requests_per_unit: int | None = None


@model
class Trigger(Model):
    template: TriggerTemplate | None = None
    parameters: tuple[TriggerParameter, ...] = ()
    policy: TriggerPolicy | None = None
    retry_strategy: Backoff | None = None
    rate_limit: RateLimit | None = None
    at_least_once: bool | None = None
    dlq_trigger: Trigger | None = None


@model
class SensorSpec(Model):
    dependencies: tuple[EventDependency, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    template: JSON | None = None
    error_on_failed_round: bool | None = None
    event_bus_name: str | None = None
    replicas: int | None = None
    revision_history_limit: int | None = None
    logging_fields: dict[str, AnyStr] = field(default_factory=dict)


@model
class Sensor(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    spec: SensorSpec = SensorSpec()
    status: JSON | None = None


# ---------------------------------------------------------------------------------------------- EventBus


@model
class JetStreamBus(Model):
    """A JetStream server the operator deploys (``version`` picks the image from its settings)."""

    version: str | None = None
    replicas: int | None = None
    persistence: JSON | None = None
    container_template: JSON | None = None
    reloader_container_template: JSON | None = None
    metrics_container_template: JSON | None = None
    metadata: JSON | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[JSON, ...] = ()
    security_context: JSON | None = None
    image_pull_secrets: tuple[JSON, ...] = ()
    priority_class_name: str | None = None
    priority: int | None = None
    affinity: JSON | None = None
    service_account_name: str | None = None
    settings: str | None = None
    start_args: tuple[str, ...] = ()
    stream_config: str | None = None
    max_payload: str | None = None
    tls: bool | None = None


@model
class JetStreamConfig(Model):
    """A JetStream server run elsewhere (Argo's ``jetstreamExotic``)."""

    url: str
    access_secret: SecretKeySelector | None = None
    stream_config: str | None = None
    tls: JSON | None = None


@model
class EventBusSpec(Model):
    jetstream: JetStreamBus | None = None
    jetstream_exotic: JetStreamConfig | None = None
    nats: JSON | None = None
    kafka: JSON | None = None


@model
class EventBus(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta = ObjectMeta()
    spec: EventBusSpec = EventBusSpec()
    status: JSON | None = None


EventManifest = EventSource | Sensor | EventBus
AnyObject = dict[str, Any]
