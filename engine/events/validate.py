"""Semantic validation of EventSources, Sensors and EventBuses: what parsing cannot see.

Every problem is reported with its field path: source and trigger types the engine does not run
("unsupported event source type 'kafka'"), webhook ports/methods/endpoints, schedules, intervals and
time zones, filter expressions, regexes and time windows, trigger ``conditions`` over unknown
dependencies, trigger sources, operations, parameters, retry and rate-limit settings. Misplaced keys
that Argo ignores come back as warnings. Called by ``sluice lint``/``eventsource create``/``sensor create``,
by the server before it starts a source or sensor, and by the operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    Sensor,
    Trigger,
    TriggerParameter,
)

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
TRIGGER_SOURCES = ("resource", "inline", "configmap", "file")
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


def _source(location: ArtifactLocation | None, base: str, out: list[Problem]) -> None:
    kind = location.kind() if location else None
    if kind is None:
        out.append(Problem(f"{base}.source", "needs a resource (or inline, configmap, file)"))
    elif kind not in TRIGGER_SOURCES:
        supported = ", ".join(TRIGGER_SOURCES)
        out.append(
            Problem(f"{base}.source.{kind}", f"unsupported trigger source {kind!r} (supported: {supported})")
        )
    elif kind == "resource" and not isinstance(location.resource if location else None, dict):
        out.append(Problem(f"{base}.source.resource", "must be a mapping (a Kubernetes object)"))


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
    "event_bus_problems",
    "event_source_problems",
    "sensor_problems",
    "validate_event_object",
]
