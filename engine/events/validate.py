"""Semantic validation of EventSources, Sensors and EventBuses: what parsing cannot see.

Every problem is reported with its field path: source and trigger types the engine does not run
("unsupported event source type 'kafka'"), webhook ports/methods/endpoints, schedules, intervals and
time zones, filter expressions, regexes and time windows, trigger ``conditions`` over unknown
dependencies, trigger sources, operations, parameters, retry and rate-limit settings. Misplaced keys
that Argo ignores come back as warnings. Called by ``sluice lint``/``eventsource create``/``sensor create``,
by the server before it starts a source or sensor, and by the operator.

The ``s3`` and ``git`` trigger sources parse as plain JSON; :func:`s3_trigger_source` and
:func:`git_trigger_source` read them into typed form (:class:`~engine.spec.events.S3EventSource`, which
is Argo's S3Artifact, and :class:`GitArtifact`) for this validation and for the loader that fetches
them (``engine.runtime.triggersource``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import expr
from engine.errors import ExprError, Problem, SpecError
from engine.events.calendar import compile_calendar
from engine.events.conditions import parse_conditions
from engine.expr.cron import CronSchedule
from engine.expr.govaluate import check_govaluate
from engine.expr.regex import compile_regex
from engine.spec.duration import parse_duration
from engine.spec.events import (
    SUPPORTED_SOURCES,
    SUPPORTED_TRIGGERS,
    UNSUPPORTED_SOURCES,
    ArtifactLocation,
    Backoff,
    EventBus,
    EventDependency,
    EventSource,
    S3EventSource,
    SecretKeySelector,
    Sensor,
    Trigger,
    TriggerParameter,
    URLArtifact,
)
from engine.spec.fields import JSON, Model, model

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
LOGICAL_OPERATORS = ("", "and", "or")
DATA_TYPES = ("string", "number", "bool")
COMPARATORS = ("", "=", "!=", ">", ">=", "<", "<=")
PARAMETER_OPERATIONS = ("", "overwrite", "append", "prepend")
K8S_OPERATIONS = ("", "create", "update", "patch", "delete")
PATCH_STRATEGIES = (
    "",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
WORKFLOW_OPERATIONS = (
    "",
    "submit",
    "submit-from",
    "resubmit",
    "retry",
    "resume",
    "suspend",
    "terminate",
    "stop",
)
TRIGGER_SOURCES = ("resource", "inline", "configmap", "file", "url", "s3", "git")
# Transports a git trigger source may use: no ssh (keys are not supported) and no ``ext::`` (it runs
# commands).
GIT_SCHEMES = ("https://", "http://", "git://", "file://")
RATE_UNITS = ("", "Second", "Minute", "Hour")
S3_EVENT_PREFIXES = ("s3:ObjectCreated:", "s3:ObjectRemoved:")
MAX_PAYLOAD_SIZE = 64 * 1024 * 1024


def _zone(name: str | None, path: str, out: list[Problem]) -> None:
    if not name:
        return
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        out.append(Problem(path, f"unknown time zone {name!r}"))


def _duration(value: str | int | None, path: str, out: list[Problem]) -> None:
    if value is None:
        return
    try:
        parse_duration(value)
    except ValueError as exc:
        out.append(Problem(path, str(exc)))


def _schedule(text: str, path: str, out: list[Problem]) -> None:
    try:
        CronSchedule.parse(text, path=path)
    except SpecError as exc:
        out.extend(exc.problems)


# ------------------------------------------------------------------------------------------- EventSource


def event_source_problems(source: EventSource) -> list[Problem]:
    out: list[Problem] = []
    spec = source.spec
    for name in UNSUPPORTED_SOURCES:
        if _spec_value(spec, name) is not None:
            supported = ", ".join(SUPPORTED_SOURCES)
            out.append(
                Problem(f"spec.{name}", f"unsupported event source type {name!r} (supported: {supported})")
            )
    if not out and not (spec.webhook or spec.calendar or spec.minio):
        out.append(Problem("spec", f"no events: set one of {', '.join(SUPPORTED_SOURCES)}"))
    if spec.replicas is not None and spec.replicas < 0:
        out.append(Problem("spec.replicas", "must not be negative"))
    routes: dict[tuple[str, str], str] = {}
    for event, hook in spec.webhook.items():
        base = f"spec.webhook.{event}"
        if not hook.port.isdigit() or not 0 < int(hook.port) < 65536:
            out.append(Problem(f"{base}.port", f"must be a port number (1-65535), not {hook.port!r}"))
        if not hook.endpoint.startswith("/"):
            out.append(Problem(f"{base}.endpoint", f"must start with '/', not {hook.endpoint!r}"))
        if hook.endpoint == "/health":
            out.append(Problem(f"{base}.endpoint", "/health is the server's own health check"))
        if hook.method.upper() not in HTTP_METHODS:
            out.append(
                Problem(f"{base}.method", f"must be one of {', '.join(HTTP_METHODS)}, not {hook.method!r}")
            )
        if hook.max_payload_size is not None and not 0 < hook.max_payload_size <= MAX_PAYLOAD_SIZE:
            out.append(Problem(f"{base}.maxPayloadSize", f"must be between 1 and {MAX_PAYLOAD_SIZE} bytes"))
        if (hook.server_cert_secret is None) != (hook.server_key_secret is None):
            out.append(Problem(base, "serverCertSecret and serverKeySecret go together"))
        other = routes.setdefault((hook.port, hook.endpoint), event)
        if other != event:
            out.append(
                Problem(f"{base}.endpoint", f"port {hook.port} already serves {hook.endpoint} for {other!r}")
            )
        _filter_expression(hook.filter.expression if hook.filter else None, f"{base}.filter.expression", out)
    for event, cal in spec.calendar.items():
        try:
            compile_calendar(cal, path=f"spec.calendar.{event}")
        except SpecError as exc:
            out.extend(exc.problems)
    for event, s3 in spec.minio.items():
        base = f"spec.minio.{event}"
        for i, kind in enumerate(s3.events):
            if not kind.startswith(S3_EVENT_PREFIXES):
                out.append(
                    Problem(
                        f"{base}.events[{i}]",
                        f"expected s3:ObjectCreated:* or s3:ObjectRemoved:*, not {kind!r}",
                    )
                )
        if (s3.access_key is None) != (s3.secret_key is None):
            out.append(Problem(base, "accessKey and secretKey go together"))
        if s3.event_filter:
            _filter_expression(s3.event_filter.expression, f"{base}.eventFilter.expression", out)
    return out


def _spec_value(spec: object, key: str) -> object:
    attr = "".join("_" + c.lower() if c.isupper() else c for c in key)
    return getattr(spec, attr, None)


def _filter_expression(text: str | None, path: str, out: list[Problem]) -> None:
    if text:
        try:
            expr.compile_expr(text)
        except ExprError as exc:
            out.append(Problem(path, str(exc)))


# ------------------------------------------------------------------------------------------------ Sensor


def _dependency(dep: EventDependency, base: str, out: list[Problem]) -> None:
    if dep.transform is not None and (dep.transform.jq or dep.transform.script):
        which = "jq" if dep.transform.jq else "script"
        out.append(
            Problem(f"{base}.transform.{which}", f"unsupported: event transforms ({which}) are not run")
        )
    if (dep.filters_logical_operator or "") not in LOGICAL_OPERATORS:
        out.append(Problem(f"{base}.filtersLogicalOperator", "must be 'and' or 'or'"))
    f = dep.filters
    if f is None:
        return
    fbase = f"{base}.filters"
    if f.script:
        out.append(Problem(f"{fbase}.script", "unsupported: Lua script filters are not run"))
    for key, op in (
        ("dataLogicalOperator", f.data_logical_operator),
        ("exprLogicalOperator", f.expr_logical_operator),
    ):
        if (op or "") not in LOGICAL_OPERATORS:
            out.append(Problem(f"{fbase}.{key}", "must be 'and' or 'or'"))
    for i, d in enumerate(f.data):
        path = f"{fbase}.data[{i}]"
        if d.type not in DATA_TYPES:
            out.append(Problem(f"{path}.type", f"must be one of {', '.join(DATA_TYPES)}, not {d.type!r}"))
        if (d.comparator or "") not in COMPARATORS:
            out.append(
                Problem(f"{path}.comparator", f"must be one of {', '.join(c for c in COMPARATORS if c)}")
            )
        elif d.type == "string" and (d.comparator or "=") not in ("=", "!="):
            out.append(Problem(f"{path}.comparator", "strings compare only with = or !="))
        if not d.value:
            out.append(Problem(f"{path}.value", "needs at least one value"))
        for j, v in enumerate(d.value):
            if d.type == "string":
                try:
                    compile_regex(v)
                except ExprError as exc:
                    out.append(Problem(f"{path}.value[{j}]", str(exc)))
            elif d.type == "number":
                try:
                    float(v)
                except ValueError:
                    out.append(Problem(f"{path}.value[{j}]", f"not a number: {v!r}"))
            elif d.type == "bool" and v.lower() not in ("true", "false"):
                out.append(Problem(f"{path}.value[{j}]", f"not a boolean: {v!r}"))
    for i, e in enumerate(f.exprs):
        try:
            check_govaluate(e.expr)
        except ExprError as exc:
            out.append(Problem(f"{fbase}.exprs[{i}].expr", str(exc)))
    if f.time is not None:
        for key, value in (("start", f.time.start), ("stop", f.time.stop)):
            if not _is_clock(value):
                out.append(Problem(f"{fbase}.time.{key}", f"expected HH:MM:SS, not {value!r}"))
        _zone(f.time.timezone, f"{fbase}.time.timezone", out)


def _is_clock(text: str) -> bool:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) <= 2 for p in parts):
        return False
    h, m, *s = (int(p) for p in parts)
    return h < 24 and m < 60 and (not s or s[0] < 60)


def _parameters(params: Iterable[TriggerParameter], deps: set[str], base: str, out: list[Problem]) -> None:
    for i, p in enumerate(params):
        path = f"{base}[{i}]"
        src = p.src
        if src.dependency_name not in deps:
            out.append(Problem(f"{path}.src.dependencyName", f"no dependency named {src.dependency_name!r}"))
        if not p.dest:
            out.append(Problem(f"{path}.dest", "must not be empty"))
        if (p.operation or "") not in PARAMETER_OPERATIONS:
            out.append(Problem(f"{path}.operation", "must be overwrite, append or prepend"))


@model
class GitCreds(Model):
    """Basic-auth credentials of a git trigger source, each a key of a Secret in the Sensor's namespace."""

    username: SecretKeySelector | None = None
    password: SecretKeySelector | None = None


@model
class GitArtifact(Model):
    """A ``git`` trigger source: the file ``file_path`` of the repository at ``url``, at one branch, tag
    or ref (the repository's default branch without any). ``clone_directory`` is accepted and not used
    (the repository is fetched into a temporary directory); ``insecure_ignore_host_key`` only concerns
    SSH, which is not supported, nor are ``ssh_key_secret``, ``github_app`` and ``remote``."""

    url: str
    file_path: str
    clone_directory: str | None = None
    creds: GitCreds | None = None
    ssh_key_secret: SecretKeySelector | None = None
    github_app: JSON | None = None
    branch: str | None = None
    tag: str | None = None
    ref: str | None = None
    remote: JSON | None = None
    insecure_ignore_host_key: bool | None = None

    def revision(self) -> str:
        """What to fetch: the ref as given, ``refs/tags/TAG``, ``refs/heads/BRANCH`` (that precedence,
        as Argo's), or ``HEAD``."""
        if self.ref:
            return self.ref
        if self.tag:
            return f"refs/tags/{self.tag}"
        return f"refs/heads/{self.branch}" if self.branch else "HEAD"


def s3_trigger_source(raw: Any, path: str = "s3") -> S3EventSource:
    """The ``s3`` trigger source ``raw`` (Argo's S3Artifact) in typed form; SpecError naming each field
    that is wrong under ``path``. ``events``, ``filter`` and ``metadata`` mean nothing here and are
    ignored, as Argo does."""
    spec = S3EventSource.parse(raw, path)
    out: list[Problem] = []
    if not spec.bucket.name:
        out.append(Problem(f"{path}.bucket.name", "required"))
    if not spec.bucket.key:
        out.append(Problem(f"{path}.bucket.key", "required: the key of the object that holds the resource"))
    if spec.endpoint is not None and ("://" in spec.endpoint or "/" in spec.endpoint or not spec.endpoint):
        out.append(
            Problem(f"{path}.endpoint", "give host[:port] without a scheme or path (insecure: true for http)")
        )
    if (spec.access_key is None) != (spec.secret_key is None):
        out.append(Problem(path, "accessKey and secretKey go together"))
    for key, selector in (("accessKey", spec.access_key), ("secretKey", spec.secret_key)):
        if selector is not None and not selector.name:
            out.append(Problem(f"{path}.{key}.name", "required"))
    if spec.ca_certificate is not None:
        out.append(Problem(f"{path}.caCertificate", "unsupported: a custom certificate authority"))
    if out:
        raise SpecError(out)
    return spec


def git_trigger_source(raw: Any, path: str = "git") -> GitArtifact:
    """The ``git`` trigger source ``raw`` in typed form; SpecError naming each field that is wrong under
    ``path`` (an SSH URL or key, a GitHub App and ``remote`` are "unsupported")."""
    spec = GitArtifact.parse(raw, path)
    out: list[Problem] = []
    url = spec.url
    if url.startswith("ssh://") or (not url.startswith(GIT_SCHEMES) and "@" in url.split(":", 1)[0]):
        out.append(Problem(f"{path}.url", "unsupported: SSH repositories; use an https URL (with creds)"))
    elif not url.startswith(GIT_SCHEMES):
        out.append(Problem(f"{path}.url", f"must start with {', '.join(GIT_SCHEMES)}, not {url!r}"))
    for key, value, what in (
        ("sshKeySecret", spec.ssh_key_secret, "SSH keys; use an https URL with creds"),
        ("githubApp", spec.github_app, "GitHub App credentials; use creds with a token as the password"),
        ("remote", spec.remote, "remote; give the repository in url"),
    ):
        if value is not None:
            out.append(Problem(f"{path}.{key}", f"unsupported: {what}"))
    if spec.creds is not None:
        for key in ("username", "password"):
            selector = getattr(spec.creds, key)
            if selector is None or not selector.name:
                out.append(Problem(f"{path}.creds.{key}", "required: a Secret's name and key"))
        if url.startswith(GIT_SCHEMES) and not url.startswith(("https://", "http://")):
            out.append(Problem(f"{path}.creds", "credentials go with an http(s) URL"))
    parts = spec.file_path.strip("/").split("/")
    if not spec.file_path.strip("/") or any(p in ("", ".", "..") for p in parts):
        out.append(
            Problem(f"{path}.filePath", f"must be a path inside the repository, not {spec.file_path!r}")
        )
    revisions = [(k, v) for k, v in (("branch", spec.branch), ("tag", spec.tag), ("ref", spec.ref)) if v]
    if len(revisions) > 1:
        out.append(
            Problem(path, f"set one of branch, tag and ref, not {' and '.join(k for k, _ in revisions)}")
        )
    for key, value in revisions:
        if value.startswith("-") or any(c.isspace() or c in ":~^?*[\\" for c in value) or ".." in value:
            out.append(Problem(f"{path}.{key}", f"not a valid git {key}: {value!r}"))
    if out:
        raise SpecError(out)
    return spec


def _source(location: ArtifactLocation | None, base: str, out: list[Problem]) -> None:
    kind = location.kind() if location else None
    if location is None or kind is None:
        out.append(Problem(f"{base}.source", f"needs one of {', '.join(TRIGGER_SOURCES)}"))
        return
    path = f"{base}.source.{kind}"
    if kind == "resource" and not isinstance(location.resource, dict):
        out.append(Problem(path, "must be a mapping (a Kubernetes object)"))
    elif location.configmap is not None and not location.configmap.name:
        out.append(Problem(f"{path}.name", "required"))
    elif location.url is not None:
        _url_source(location.url, path, out)
    elif location.s3 is not None or location.git is not None:
        try:
            if location.s3 is not None:
                s3_trigger_source(location.s3, path)
            else:
                git_trigger_source(location.git, path)
        except SpecError as exc:
            out.extend(exc.problems)


def _url_source(url: URLArtifact, path: str, out: list[Problem]) -> None:
    if not url.path.startswith(("http://", "https://")):
        out.append(Problem(f"{path}.path", f"must be an http:// or https:// URL, not {url.path!r}"))


def _backoff(b: Backoff | None, base: str, out: list[Problem]) -> None:
    if b is None:
        return
    _duration(b.duration, f"{base}.duration", out)
    for key, value in (("factor", b.factor), ("jitter", b.jitter)):
        if value is not None:
            try:
                if float(value) < 0:
                    raise ValueError
            except ValueError:
                out.append(Problem(f"{base}.{key}", f"must be a non-negative number, not {value!r}"))
    if b.steps is not None and b.steps < 0:
        out.append(Problem(f"{base}.steps", "must not be negative"))


def _trigger(
    t: Trigger, deps: Mapping[str, EventDependency], base: str, out: list[Problem], warnings: list[Problem]
) -> None:
    tpl = t.template
    if tpl is None:
        out.append(Problem(f"{base}.template", "is required"))
        return
    tbase = f"{base}.template"
    types = tpl.types()
    if not types:
        out.append(Problem(tbase, f"needs one trigger type: {', '.join(SUPPORTED_TRIGGERS)}"))
    elif len(types) > 1:
        out.append(Problem(tbase, f"has several trigger types ({', '.join(types)}); set exactly one"))
    for kind in types:
        if kind not in SUPPORTED_TRIGGERS:
            supported = ", ".join(SUPPORTED_TRIGGERS)
            out.append(
                Problem(f"{tbase}.{kind}", f"unsupported trigger type {kind!r} (supported: {supported})")
            )
    if tpl.conditions is not None:
        try:
            cond = parse_conditions(tpl.conditions)
        except ExprError as exc:
            out.append(Problem(f"{tbase}.conditions", str(exc)))
        else:
            for name in sorted(cond.names - set(deps)):
                out.append(Problem(f"{tbase}.conditions", f"no dependency named {name!r}"))
    for i, reset in enumerate(tpl.conditions_reset):
        if reset.by_time is not None:
            _schedule(reset.by_time.cron, f"{tbase}.conditionsReset[{i}].byTime.cron", out)
            _zone(reset.by_time.timezone, f"{tbase}.conditionsReset[{i}].byTime.timezone", out)
    for key in ("policy", "atLeastOnce"):
        if getattr(tpl, "policy" if key == "policy" else "at_least_once") is not None:
            warnings.append(
                Problem(f"{tbase}.{key}", f"ignored here: {key} belongs on the trigger, next to template")
            )
    names = set(deps)
    _parameters(t.parameters, names, f"{base}.parameters", out)
    if tpl.k8s is not None:
        _source(tpl.k8s.source, f"{tbase}.k8s", out)
        if (tpl.k8s.operation or "") not in K8S_OPERATIONS:
            out.append(
                Problem(
                    f"{tbase}.k8s.operation", f"must be one of {', '.join(o for o in K8S_OPERATIONS if o)}"
                )
            )
        if (tpl.k8s.patch_strategy or "") not in PATCH_STRATEGIES:
            out.append(
                Problem(f"{tbase}.k8s.patchStrategy", f"unknown patch strategy {tpl.k8s.patch_strategy!r}")
            )
        _parameters(tpl.k8s.parameters, names, f"{tbase}.k8s.parameters", out)
    if tpl.argo_workflow is not None:
        wf = tpl.argo_workflow
        _source(wf.source, f"{tbase}.argoWorkflow", out)
        if (wf.operation or "") not in WORKFLOW_OPERATIONS:
            ops = ", ".join(o for o in WORKFLOW_OPERATIONS if o)
            out.append(Problem(f"{tbase}.argoWorkflow.operation", f"must be one of {ops}"))
        _parameters(wf.parameters, names, f"{tbase}.argoWorkflow.parameters", out)
    if tpl.http is not None:
        h = tpl.http
        if not h.url.startswith(("http://", "https://")):
            out.append(Problem(f"{tbase}.http.url", f"must be an http:// or https:// URL, not {h.url!r}"))
        if h.method is not None and h.method.upper() not in HTTP_METHODS:
            out.append(Problem(f"{tbase}.http.method", f"must be one of {', '.join(HTTP_METHODS)}"))
        if h.timeout is not None and h.timeout <= 0:
            out.append(Problem(f"{tbase}.http.timeout", "must be positive seconds"))
        _parameters(h.payload, names, f"{tbase}.http.payload", out)
        _parameters(h.parameters, names, f"{tbase}.http.parameters", out)
    if t.policy is not None and t.policy.status is not None:
        for i, code in enumerate(t.policy.status.allow):
            if not 100 <= code <= 599:
                out.append(Problem(f"{base}.policy.status.allow[{i}]", f"not an HTTP status code: {code}"))
    _backoff(t.retry_strategy, f"{base}.retryStrategy", out)
    if t.policy is not None and t.policy.k8s is not None:
        _backoff(t.policy.k8s.backoff, f"{base}.policy.k8s.backoff", out)
    if t.rate_limit is not None:
        if (t.rate_limit.unit or "") not in RATE_UNITS:
            out.append(Problem(f"{base}.rateLimit.unit", "must be Second, Minute or Hour"))
        if t.rate_limit.requests_per_unit is not None and t.rate_limit.requests_per_unit <= 0:
            out.append(Problem(f"{base}.rateLimit.requestsPerUnit", "must be positive"))
    if t.dlq_trigger is not None:
        if not t.at_least_once:
            warnings.append(Problem(f"{base}.dlqTrigger", "runs only with atLeastOnce: true"))
        _trigger(t.dlq_trigger, deps, f"{base}.dlqTrigger", out, warnings)


def sensor_problems(sensor: Sensor) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for ``sensor``."""
    out: list[Problem] = []
    warnings: list[Problem] = []
    spec = sensor.spec
    if not spec.dependencies:
        out.append(Problem("spec.dependencies", "needs at least one dependency"))
    if not spec.triggers:
        out.append(Problem("spec.triggers", "needs at least one trigger"))
    deps: dict[str, EventDependency] = {}
    for i, dep in enumerate(spec.dependencies):
        base = f"spec.dependencies[{i}]"
        if dep.name in deps:
            out.append(Problem(f"{base}.name", f"duplicate dependency name {dep.name!r}"))
        deps[dep.name] = dep
        _dependency(dep, base, out)
    seen: set[str] = set()
    for i, t in enumerate(spec.triggers):
        name = t.template.name if t.template else None
        if name is not None:
            if name in seen:
                out.append(Problem(f"spec.triggers[{i}].template.name", f"duplicate trigger name {name!r}"))
            seen.add(name)
        _trigger(t, deps, f"spec.triggers[{i}]", out, warnings)
    return out, warnings


def event_bus_problems(bus: EventBus) -> list[Problem]:
    out: list[Problem] = []
    spec = bus.spec
    if spec.nats is not None:
        out.append(Problem("spec.nats", "unsupported event bus 'nats' (NATS Streaming); use jetstream"))
    if spec.kafka is not None:
        out.append(Problem("spec.kafka", "unsupported event bus 'kafka'; use jetstream"))
    if spec.jetstream is not None and spec.jetstream_exotic is not None:
        out.append(Problem("spec", "set jetstream or jetstreamExotic, not both"))
    if not out and spec.jetstream is None and spec.jetstream_exotic is None:
        out.append(Problem("spec", "needs jetstream or jetstreamExotic"))
    if spec.jetstream_exotic is not None and not spec.jetstream_exotic.url.startswith(("nats://", "tls://")):
        out.append(Problem("spec.jetstreamExotic.url", "must be a nats:// or tls:// URL"))
    return out


def validate_event_object(obj: EventSource | Sensor | EventBus) -> list[Problem]:
    """Raise SpecError listing every problem of ``obj``; return its warnings."""
    warnings: list[Problem] = []
    if isinstance(obj, EventSource):
        problems = event_source_problems(obj)
    elif isinstance(obj, Sensor):
        problems, warnings = sensor_problems(obj)
    else:
        problems = event_bus_problems(obj)
    if problems:
        raise SpecError(problems)
    return warnings


__all__ = [
    "GitArtifact",
    "GitCreds",
    "event_bus_problems",
    "event_source_problems",
    "git_trigger_source",
    "s3_trigger_source",
    "sensor_problems",
    "validate_event_object",
]
