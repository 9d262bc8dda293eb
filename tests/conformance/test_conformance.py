"""The Argo conformance run as a regression test, part of ``make test``.

Runs :func:`tests.conformance.run.run_corpus` once (about 35 s, bounded by the corpus's own 30 s
sleeps) and checks that the count of CI-checked examples reaching their expected phase never drops
below ``recorded.json``, and that the examples Argo designs to fail still end Failed. Skipped, with
the reason, when the corpus directory (``SLUICE_CONFORMANCE_DIR``) is absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conformance.run import Report, locate_corpus, recorded_count, run_corpus

# Far below the CI deadline of 300 s: a hang fails the test as "still running" instead of stalling
# `make test`; a healthy run takes about 35 s.
TEST_OVERALL_TIMEOUT = 120.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    corpus, reason = locate_corpus()
    if corpus is None:
        pytest.skip(reason)
    result = asyncio.run(run_corpus(corpus, overall_timeout=TEST_OVERALL_TIMEOUT))
    print("\n" + "\n".join(result.lines()))
    yield result


def test_ci_checked_examples_passing_never_drop_below_the_recorded_count(report: Report) -> None:
    floor = recorded_count()
    assert report.passed >= floor, "\n".join(
        [
            f"{report.passed} examples pass, {floor} recorded in tests/conformance/recorded.json",
            *report.lines(),
        ]
    )


def test_every_ci_checked_example_is_run(report: Report) -> None:
    assert len(report.checked) == 103


def test_examples_argo_designs_to_fail_end_failed(report: Report) -> None:
    intended = report.intended_failures
    assert len(intended) == 5
    wrong = [f"{o.example.path}: {o.phase}: {o.reason}" for o in intended if not o.reached]
    assert not wrong, "\n".join(wrong)
