"""Valid manifests and random ways to break them, for the fuzz tests in this package.

``mutate(rng, doc)`` applies a few random edits to a copy of a manifest dict: drop a field, rename a
key (often to another real field name), give a value another type, put a random/huge/unicode value,
or bury a value under deep nesting. Driven by a ``random.Random`` so hypothesis (``st.randoms``) and a
plain seeded sample share one mutator.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import yaml

BASE_TEXTS = [
    """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: steps-, labels: {a: b}}
spec:
  entrypoint: main
  onExit: bye
  parallelism: 2
  arguments: {parameters: [{name: who, value: world}, {name: n, value: "2"}]}
  templates:
  - name: main
    steps:
    - - name: hello
        template: say
        arguments: {parameters: [{name: text, value: "{{workflow.parameters.who}}"}]}
    - - name: loop
        template: say
        arguments: {parameters: [{name: text, value: "{{item}}"}]}
        withItems: [a, b, {x: 1}]
        when: "{{steps.hello.status}} == Succeeded"
      - name: seq
        template: say
        arguments: {parameters: [{name: text, value: "{{item}}"}]}
        withSequence: {count: "{{workflow.parameters.n}}"}
        continueOn: {failed: true}
  - name: say
    inputs: {parameters: [{name: text, default: x}]}
    retryStrategy: {limit: 2, retryPolicy: OnFailure, backoff: {duration: 1s, factor: 2, maxDuration: 1m}}
    timeout: 30s
    container:
      image: busybox
      command: [echo]
      args: ["{{inputs.parameters.text}}"]
      env: [{name: A, value: b}]
  - name: bye
    script: {image: python:3, command: [python], source: "print('{{workflow.status}}')"}
""",
    """
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {name: dag}
spec:
  entrypoint: diamond
  activeDeadlineSeconds: 300
  templates:
  - name: diamond
    dag:
      failFast: true
      tasks:
      - {name: A, template: gen}
      - name: B
        depends: "A.Succeeded || A.Failed"
        template: take
        arguments: {parameters: [{name: v, value: "{{tasks.A.outputs.result}}"}]}
      - name: C
        depends: A
        template: take
        when: "{{=asInt(tasks.A.outputs.result) > 1}}"
        arguments: {parameters: [{name: v, value: "{{=sprig.upper('c')}}"}]}
        hooks:
          running:
            expression: tasks.A.status == "Running"
            template: take
            arguments: {parameters: [{name: v, value: h}]}
      - name: D
        depends: "B && (C.Succeeded || C.Skipped)"
        template: take
        withParam: "{{tasks.A.outputs.result}}"
        arguments: {parameters: [{name: v, value: "{{item}}"}]}
    outputs:
      parameters: [{name: out, valueFrom: {parameter: "{{tasks.B.outputs.result}}"}}]
  - name: gen
    script: {image: busybox, command: [sh], source: "echo '[1, 2]'"}
  - name: take
    inputs: {parameters: [{name: v}]}
    memoize: {key: "{{inputs.parameters.v}}", cache: {configMap: {name: memo}}, maxAge: 10m}
    outputs:
      parameters: [{name: p, valueFrom: {path: /tmp/p, default: none}}]
      artifacts: [{name: art, path: /tmp/p}]
    container: {image: busybox, command: [sh, -c, "echo {{inputs.parameters.v}} > /tmp/p"]}
  - name: wait
    suspend: {duration: "2m"}
""",
    """
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: lib}
spec:
  templates:
  - name: hello
    inputs:
      parameters: [{name: who, enum: [a, b], value: a}]
      artifacts: [{name: in, path: /tmp/in, raw: {data: hi}}]
    container: {image: busybox, command: [cat, /tmp/in]}
  - name: call
    steps:
    - - name: ref
        templateRef: {name: lib, template: hello}
      - name: inline
        inline: {container: {image: busybox, command: [echo, inline]}}
""",
    """
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  timezone: Europe/Paris
  concurrencyPolicy: Replace
  startingDeadlineSeconds: 60
  successfulJobsHistoryLimit: 2
  workflowSpec:
    entrypoint: main
    templates:
    - name: main
      synchronization: {mutex: {name: m}}
      container: {image: busybox, command: [echo, hi]}
""",
    """
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {a: b, c: "1"}
""",
]

BASES: list[dict[str, Any]] = [yaml.safe_load(t) for t in BASE_TEXTS]

FIELD_NAMES = [
    "apiVersion", "kind", "metadata", "name", "generateName", "spec", "entrypoint", "templates", "steps",
    "dag", "tasks", "template", "templateRef", "inline", "arguments", "parameters", "artifacts", "value",
    "valueFrom", "default", "depends", "dependencies", "when", "withItems", "withParam", "withSequence",
    "count", "start", "end", "continueOn", "retryStrategy", "limit", "backoff", "duration", "timeout",
    "activeDeadlineSeconds", "parallelism", "onExit", "hooks", "exit", "expression", "container",
    "script", "source", "resource", "suspend", "data", "http", "containerSet", "command", "args", "env",
    "inputs", "outputs", "result", "memoize", "synchronization", "mutex", "semaphore", "schedule",
    "schedules", "workflowSpec", "workflowTemplateRef", "volumes", "volumeMounts", "failFast", "key",
    "cache", "maxAge", "podSpecPatch", "enum", "path", "globalName", "supplied", "priority",
]  # fmt: skip

ODD_STRINGS = [
    "", " ", "{{", "}}", "{{}}", "{{=}}", "{{= 1 +}}", "{{workflow.", "{{tasks.A.outputs.result}}",
    "{{inputs.parameters.nope}}", "{{steps.nope.outputs.result}}", "A &&", "(A || ", "A.Bogus", "!!A",
    "1s1", "-5s", "5", "1e400", "0x10", "P1D", "9999999999999h", "nan", "inf", "null", "~", "yes", "no",
    "a/b", "../..", "/etc/passwd", "UPPER_case", "-leading", "x" * 300, "\u0000", "\t\n", "é✓😀\u202e",
    "{{item}}", "{{item.x}}", "[1,2", '{"a":', "*/5 * * * *", "61 25 * * *", "@every 1s", "Always",
    "OnError", "Never", "$(id)", "`id`", "{{ ''.__class__ }}",
]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(13 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2**31, 2**63, -(2**64), 10**30])
    if kind == 3:
        return rng.choice([0.5, -1.5, 1e308, float("inf"), float("-inf"), float("nan")])
    if kind in (4, 5):
        return rng.choice(ODD_STRINGS)
    if kind == 6:
        return rng.choice(FIELD_NAMES)
    if kind == 7:
        return "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randrange(1, 20)))
    if kind == 8:
        braces = "{{" * rng.choice([0, 1_000, 50_000])
        return rng.choice(["x", "é", "🌊"]) * rng.choice([1_000, 100_000]) + braces
    if kind in (9, 10):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(FIELD_NAMES + ODD_STRINGS[:5]): random_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


# Well past the loader's nesting bound, yet shallow enough for copy.deepcopy in these helpers.
MAX_DEPTH = 400


def depth_of(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max((depth_of(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((depth_of(v) for v in obj), default=0)
    return 0


def nest(rng: random.Random, value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value] if rng.random() < 0.5 else {rng.choice(FIELD_NAMES): value}
    return value


def _places(obj: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in ``obj`` (the root included) as a tuple of keys/indexes."""
    out = [here]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_places(v, (*here, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_places(v, (*here, i)))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def mutate(rng: random.Random, doc: dict[str, Any], edits: int | None = None) -> Any:
    """A copy of ``doc`` with 1-4 random edits (or ``edits``)."""
    doc = copy.deepcopy(doc)
    root: list[Any] = [doc]  # a holder, so the document itself can be replaced too
    for _ in range(edits if edits is not None else rng.randint(1, 4)):
        places = [(0, *p) for p in _places(root[0])]
        path = rng.choice(places)
        parent, key = _get(root, path[:-1]), path[-1]
        op = rng.randrange(8)
        if op == 0 and (isinstance(parent, dict) or parent is not root):  # drop a field/element
            del parent[key]
        elif op == 1 and isinstance(parent, dict):  # rename a key
            value = parent.pop(key)
            parent[rng.choice([*FIELD_NAMES, *ODD_STRINGS, 0, 1.5, None, True])] = value
        elif op == 2:  # another type, same content where possible
            v = parent[key]
            choices: list[Any] = [str(v), [v], {"value": v}, None, 0]
            if isinstance(v, list | dict):
                choices.append(yaml.safe_dump(v))
            parent[key] = rng.choice(choices)
        elif op in (3, 4):  # a random value
            parent[key] = random_value(rng)
        elif op == 5:  # deep nesting
            levels = rng.choice([10, 60, 200, 350])
            if depth_of(root[0]) + levels <= MAX_DEPTH:
                parent[key] = nest(rng, parent[key], levels)
        elif op == 6:  # duplicate a list element / add a field
            v = parent[key]
            if isinstance(v, list) and v:
                v.append(copy.deepcopy(rng.choice(v)))
            elif isinstance(v, dict):
                v[rng.choice(FIELD_NAMES)] = random_value(rng)
            else:
                parent[key] = random_value(rng)
        else:  # swap in a subtree from elsewhere in the document
            other = _get(root, rng.choice(places))
            if len(path) + depth_of(other) <= MAX_DEPTH:
                parent[key] = copy.deepcopy(other)
    return root[0]


def to_yaml(doc: Any) -> str:
    """YAML text for ``doc``; values YAML cannot write become their repr."""
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        return repr(doc)
