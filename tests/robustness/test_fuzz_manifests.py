"""Fuzzing the manifest front door: broken YAML and broken manifests raise only SluiceError, quickly.

Mutated valid manifests (dropped, renamed and retyped fields, random values, deep nesting, huge strings,
random unicode) and raw random text go through ``load_text`` and semantic validation in-process, and a
seeded sample goes through a real ``sluice lint`` process, which must answer 0 or 2 with one
``file: ...`` line per problem and never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import SluiceError
from engine.spec.loader import load_text
from engine.workflows.validate import validate_cron, validate_workflow
from tests.cli.support import sluice
from tests.robustness.mutations import BASE_TEXTS, BASES, mutate, to_yaml

FUZZ = settings(
    max_examples=int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "150")),
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("SLUICE_FUZZ_RANDOM") is None,
)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail (not hang) when the body runs longer than ``seconds``: hypothesis deadlines need an end."""

    def expired(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_and_validate(text: str) -> None:
    """What ``sluice lint`` does to one file's text, minus the printing."""
    docs = load_text(text, source="fuzz.yaml")
    templates = {
        (d.kind == "ClusterWorkflowTemplate", d.obj.metadata.name): d.obj.spec
        for d in docs
        if d.kind in ("WorkflowTemplate", "ClusterWorkflowTemplate")
    }

    def source(cluster: bool, name: str) -> Any:
        return templates.get((cluster, name))

    for doc in docs:
        if doc.kind in ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate"):
            validate_workflow(doc.obj, source=source)
        elif doc.kind == "CronWorkflow":
            validate_cron(doc.obj, source=source)


def only_sluice_errors(text: str) -> None:
    with within(10):
        try:
            load_and_validate(text)
        except SluiceError as exc:
            assert str(exc)


def test_the_base_manifests_are_valid() -> None:
    for text in BASE_TEXTS:
        load_and_validate(text)


@FUZZ
@given(base=st.sampled_from(BASES), rng=st.randoms(use_true_random=False))
def test_mutated_manifests_raise_only_sluice_errors(base: dict, rng: random.Random) -> None:  # type: ignore[type-arg]
    only_sluice_errors(to_yaml(mutate(rng, base)))


@FUZZ
@given(
    base=st.sampled_from(BASES),
    rng=st.randoms(use_true_random=False),
    cut=st.floats(min_value=0, max_value=1),
    junk=st.text(max_size=30),
)
def test_truncated_and_spliced_yaml_raises_only_sluice_errors(
    base: dict,  # type: ignore[type-arg]
    rng: random.Random,
    cut: float,
    junk: str,
) -> None:
    text = to_yaml(mutate(rng, base, edits=rng.randint(0, 2)))
    at = int(len(text) * cut)
    only_sluice_errors(text[:at] + junk + text[at:])
    only_sluice_errors(text[:at])


@FUZZ
@given(st.text(max_size=300))
def test_random_text_raises_only_sluice_errors(text: str) -> None:
    only_sluice_errors(text)


def nested_text(shape: str, depth: int) -> str:
    if shape == "flow-list":
        return "[" * depth + "x" + "]" * depth
    if shape == "flow-map":
        return "{a: " * depth + "x" + "}" * depth
    if shape == "block-list":
        return "\n    " + "- " * depth + "x"
    if shape == "unclosed":
        return "[{a: " * depth
    return "".join("\n" + "  " * (i + 2) + "a:" for i in range(depth)) + " x"  # block-map


@FUZZ
@given(
    shape=st.sampled_from(["flow-list", "flow-map", "block-list", "block-map", "unclosed"]),
    depth=st.integers(min_value=1, max_value=3_000),
    field=st.sampled_from(["spec", "spec.templates", "metadata.labels"]),
)
def test_deeply_nested_yaml_raises_only_sluice_errors(shape: str, depth: int, field: str) -> None:
    # Block mappings grow as depth squared in characters; a few hundred levels is plenty there.
    depth = min(depth, 400) if shape == "block-map" else depth
    head = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: n}\n"
    body = nested_text(shape, depth)
    if field == "spec":
        text = head + "spec: " + body
    elif field == "spec.templates":
        text = head + "spec:\n  entrypoint: main\n  templates: " + body
    else:
        text = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  labels: " + body
    only_sluice_errors(text)


def test_yaml_bombs_and_tags_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)
    )
    for text in (
        bomb,
        "!!python/object/apply:os.system ['touch /tmp/sluice-fuzz-pwned']",
        "kind: !!python/name:os.system Workflow",
        "apiVersion: !!binary aGVsbG8=\nkind: Workflow",
    ):
        only_sluice_errors(text)
    assert not Path("/tmp/sluice-fuzz-pwned").exists()


def refusal(text: str) -> str:
    with within(10):
        try:
            load_and_validate(text)
        except SluiceError as exc:
            return str(exc)
    raise AssertionError("accepted")


def test_aliases_that_expand_exponentially_are_refused() -> None:
    items = ["&a0 [x, x, x]"] + [f"&a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    text = f"""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{name: n}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {{name: s, template: t, withItems: [{", ".join(items)}]}}
  - {{name: t, container: {{image: busybox}}}}
"""
    assert "values once its aliases are expanded" in refusal(text)


def test_very_deep_flow_collections_are_refused_before_parsing() -> None:
    head = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: n}\nspec: "
    assert "nested more than 1000 levels deep" in refusal(head + nested_text("flow-list", 200_000))
    assert "nested more than 100 levels deep" in refusal(head + nested_text("flow-map", 500))


def test_long_runs_of_braces_in_a_field_are_plain_text() -> None:
    text = f"""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{name: n}}
spec:
  entrypoint: t
  templates:
  - {{name: t, container: {{image: busybox, args: ["{"{" * 200_000}"]}}}}
"""
    with within(10):
        load_and_validate(text)


def test_lint_process_on_a_sample_of_mutations_answers_in_lines(home: Path, tmp_path: Path) -> None:
    rng = random.Random(20240521)
    files = []
    for i in range(40):
        path = tmp_path / f"m{i:02d}.yaml"
        path.write_text(to_yaml(mutate(rng, rng.choice(BASES))), encoding="utf-8")
        files.append(path)
    res = sluice("lint", tmp_path, home=home, timeout=60)
    assert res.returncode == 2, res.stdout  # some of 40 mutations are always invalid
    assert "Traceback" not in res.stderr
    names = tuple(f"{f}: " for f in files) + tuple(f"{f} (document" for f in files)
    bad = [ln for ln in res.stderr.splitlines() if not ln.startswith(names)]
    assert not bad, bad
