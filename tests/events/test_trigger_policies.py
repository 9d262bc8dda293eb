"""A sensor trigger's delivery options on the embedded bus: retryStrategy, atLeastOnce, dlqTrigger, rateLimit.

Each scenario runs a real :class:`~engine.runtime.sensors.SensorRunner` over a
:class:`~engine.runtime.local.eventbus.LocalEventBus` in the test's directory, with an HTTP trigger aimed
at a loopback aiohttp server that answers by a script (fail the first N requests, hold one open, ...)
and records every request it gets. The options, as Argo Events documents them and this engine runs them:

* ``retryStrategy`` retries a failed action in place, ``steps`` attempts in all;
* the event is acknowledged after the action, so an action cut off by a crash is redelivered; an action
  that still fails after its retries is acknowledged all the same and never redelivered: what catches it
  is ``dlqTrigger``. (Without ``atLeastOnce`` Argo acknowledges before acting, which leaves its retries
  and dlqTrigger inert; this engine acknowledges after acting either way, so retries apply to both.)
* ``dlqTrigger`` runs, with the same events, when the trigger finally failed, and only with
  ``atLeastOnce: true``;
* ``rateLimit`` caps a trigger's actions at ``requestsPerUnit`` per unit (a token bucket: a full bucket's
  worth at once, then the steady rate).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.events.scene import (
    ACK_WAIT,
    TRIGGER,
    Receiver,
    Scene,
    always,
    failing_first,
    http_trigger,
    play,
    sent,
    until,
)

FAST_RETRY = {"steps": 2, "duration": "20ms"}


# -- retryStrategy and atLeastOnce ---------------------------------------------------------------------


with_and_without_at_least_once = pytest.mark.parametrize(
    "at_least_once", [True, False], ids=["atLeastOnce", "atMostOnce"]
)


@with_and_without_at_least_once
def test_a_trigger_failing_within_its_retry_strategy_succeeds_once(
    tmp_path: Path, at_least_once: bool
) -> None:
    async def scenario(scene: Scene, receiver: Receiver) -> None:
        await scene.feed(1)
        await asyncio.sleep(2 * ACK_WAIT)  # time enough for a redelivery, were there one
        assert receiver.statuses("/main") == [500, 500, 200]
        assert receiver.bodies("/main") == sent(1, 1, 1)
        counters = scene.counters()
        assert (counters.fired, counters.failed) == (1, 0)

    trigger = {"retryStrategy": {"steps": 3, "duration": "20ms"}, "atLeastOnce": at_least_once}
    play(tmp_path, failing_first(2), lambda url: http_trigger(TRIGGER, f"{url}/main", **trigger), scenario)


@with_and_without_at_least_once
def test_a_firing_that_exhausts_its_retries_is_acknowledged_and_not_redelivered(
    tmp_path: Path, at_least_once: bool
) -> None:
    # The first three requests fail: event 1 uses up both its attempts, event 2 succeeds on its second.
    async def scenario(scene: Scene, receiver: Receiver) -> None:
        await scene.feed(1)
        assert scene.counters().failed == 1
        await asyncio.sleep(2 * ACK_WAIT)  # an unacknowledged event 1 would be fetched again by now
        await scene.feed(2)
        await asyncio.sleep(2 * ACK_WAIT)
        assert receiver.bodies("/main") == sent(1, 1, 2, 2)
        assert receiver.statuses("/main") == [500, 500, 500, 200]
        counters = scene.counters()
        assert (counters.events, counters.fired, counters.failed) == (2, 1, 1)
        assert "answered 500" in counters.last_error

    trigger = {"retryStrategy": FAST_RETRY, "atLeastOnce": at_least_once}
    play(tmp_path, failing_first(3), lambda url: http_trigger(TRIGGER, f"{url}/main", **trigger), scenario)


def test_an_at_least_once_action_cut_off_by_a_crash_is_redelivered_and_succeeds_once(tmp_path: Path) -> None:
    # The endpoint holds the first request open; the runner "crashes" (is stopped) while it waits, so
    # the event is never acknowledged. A new runner on the same bus gets it again once ack_wait passed.
    async def scenario(scene: Scene, receiver: Receiver) -> None:
        await scene.publish(1)
        await until("the first request", lambda: len(receiver.hits) == 1)
        assert scene.ack_pending() == 1
        await scene.crash_and_restart()
        await until("the redelivered request", lambda: len(receiver.hits) == 2)
        await scene.settled(1)
        await scene.feed(2)
        await asyncio.sleep(2 * ACK_WAIT)
        assert receiver.bodies("/main") == sent(1, 1, 2)
        assert receiver.statuses("/main") == [None, 200, 200]
        assert (scene.counters().fired, scene.counters().failed) == (2, 0)

    def hold_first(path: str, n: int) -> int | None:
        return None if n == 0 else 200

    trigger = {"atLeastOnce": True}
    play(tmp_path, hold_first, lambda url: http_trigger(TRIGGER, f"{url}/main", **trigger), scenario)


# -- dlqTrigger ------------------------------------------------------------------------------------------


def with_dlq(url: str, *, at_least_once: bool) -> dict[str, Any]:
    dlq = http_trigger("dead-letter", f"{url}/dlq")
    return http_trigger(
        TRIGGER, f"{url}/main", retryStrategy=FAST_RETRY, atLeastOnce=at_least_once, dlqTrigger=dlq
    )


def test_the_dlq_trigger_gets_each_finally_failed_firing_with_its_events_parameters(tmp_path: Path) -> None:
    async def scenario(scene: Scene, receiver: Receiver) -> None:
        await scene.feed(1, 2)
        assert receiver.bodies("/main") == sent(1, 1, 2, 2)
        assert receiver.bodies("/dlq") == sent(1, 2)
        assert [h.path for h in receiver.hits] == ["/main", "/main", "/dlq"] * 2, "dlq after the last retry"
        assert (scene.counters().fired, scene.counters().failed) == (0, 2)

    play(tmp_path, failing_first(99), lambda url: with_dlq(url, at_least_once=True), scenario)


@pytest.mark.parametrize(
    ("main_status", "at_least_once"),
    [(200, True), (500, False)],
    ids=["trigger-succeeds", "without-atLeastOnce"],
)
def test_the_dlq_trigger_stays_silent(tmp_path: Path, main_status: int, at_least_once: bool) -> None:
    async def scenario(scene: Scene, receiver: Receiver) -> None:
        # The dlq trigger would run before the acknowledgement: once acknowledged, its chance is past.
        await scene.feed(1)
        assert receiver.statuses("/main") == [main_status] * (1 if main_status == 200 else 2)
        assert receiver.on("/dlq") == []

    play(tmp_path, always(main_status), lambda url: with_dlq(url, at_least_once=at_least_once), scenario)


# -- rateLimit -------------------------------------------------------------------------------------------

BURST = 20
PER_SECOND = 5


def burst_arrivals(tmp_path: Path, **options: Any) -> list[float]:
    """Publish BURST events at once; the times (monotonic) their requests reached the endpoint."""

    async def scenario(scene: Scene, receiver: Receiver) -> list[float]:
        await scene.publish(*range(1, BURST + 1))
        await until(f"{BURST} requests", lambda: len(receiver.hits) == BURST, timeout=20)
        assert receiver.bodies("/main") == sent(*range(1, BURST + 1))
        return [h.at for h in receiver.hits]

    return play(tmp_path, always(200), lambda url: http_trigger(TRIGGER, f"{url}/main", **options), scenario)


def most_within(times: list[float], window: float) -> int:
    """The largest number of ``times`` in any half-open interval of length ``window``."""
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_a_rate_limited_trigger_spreads_a_burst_over_requests_per_unit(tmp_path: Path) -> None:
    times = burst_arrivals(tmp_path, rateLimit={"unit": "Second", "requestsPerUnit": PER_SECOND})
    span = times[-1] - times[0]
    # A full bucket goes at once, then one request every 1/PER_SECOND s: (20 - 5) / 5 = 3 s in all.
    assert 2.7 <= span < 8.0, span
    assert most_within(times[PER_SECOND:], 1.0) <= PER_SECOND + 1, times
    assert most_within(times, 1.0) <= 2 * PER_SECOND + 1, times


def test_without_a_rate_limit_the_same_burst_goes_out_at_once(tmp_path: Path) -> None:
    # The control for the test above: the burst itself is fast, so its 3 s come from the limit.
    times = burst_arrivals(tmp_path)
    assert times[-1] - times[0] < 1.5, times
