"""Intake pacing on one machine: a source's event waits while a sensor listening to it is behind.

:class:`~engine.runtime.local.events.IntakePacer` publishes for the local sources; each scenario runs a
real sensor over the embedded bus whose HTTP trigger answers slowly, and publishes through the pacer
from several concurrent "webhook requests" (publishers that each send their next event once the last
one is on the bus, as clients waiting for their answer do).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from engine.runtime.local.events import IntakePacer
from engine.runtime.sensors import UNFINISHED_MAX, SensorRunner
from tests.events.conftest import webhook_event
from tests.events.scene import NAMESPACE, TRIGGER, Receiver, Scene, always, http_trigger, until

PUBLISHERS = 4
LIMIT = 3
EVENTS = 24
SLOW = 0.02  # seconds the trigger's endpoint takes per request


def pacer_for(scene: Scene, *, limit: int, max_wait: float = 5.0) -> IntakePacer:
    pacer = IntakePacer(
        scene.bus.publish, lambda: [scene.runner] if scene.runner else [], limit=limit, max_wait=max_wait
    )
    assert scene.runner is not None
    scene.runner.on_progress = pacer.progress
    return pacer


def backlog_seen_by_publishers(tmp_path: Path, *, limit: int) -> int:
    """Publish EVENTS events through a pacer from PUBLISHERS concurrent publishers to a sensor whose
    trigger takes SLOW seconds each; the largest number of events on the bus and not yet acted on that
    a publisher saw right after its event was stored."""

    async def main() -> int:
        receiver = await Receiver(always(200), delay=SLOW).start()
        scene = Scene(tmp_path, http_trigger(TRIGGER, f"{receiver.url}/main"))
        try:
            await scene.start_runner()
            pacer = pacer_for(scene, limit=limit)
            backlog: list[int] = []
            numbers = iter(range(1, EVENTS + 1))

            async def publisher() -> None:
                for n in numbers:
                    await pacer.publish(NAMESPACE, webhook_event(n))
                    scene.published += 1
                    backlog.append(scene.published - len(receiver.hits))

            await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
            await until("every event acted on", lambda: len(receiver.hits) == EVENTS, timeout=20)
            return max(backlog)
        finally:
            await scene.close()
            await receiver.stop()

    return asyncio.run(main())


def test_paced_publishers_wait_for_a_lagging_sensor_so_its_backlog_stays_bounded(tmp_path: Path) -> None:
    paced = backlog_seen_by_publishers(tmp_path / "paced", limit=LIMIT)
    unpaced = backlog_seen_by_publishers(tmp_path / "unpaced", limit=0)
    # Unpaced, the publishers outrun the 20 ms trigger and nearly every event waits on the bus; paced,
    # no more than the limit do.
    assert unpaced >= EVENTS - PUBLISHERS
    assert paced <= LIMIT, (paced, unpaced)


def held_for(tmp_path: Path, event: dict[str, Any], *, max_wait: float) -> float:
    """Seconds publishing ``event`` takes while the sensor's trigger is stuck on an earlier event."""

    async def main() -> float:
        receiver = await Receiver(lambda path, n: None).start()  # never answers
        scene = Scene(tmp_path, http_trigger(TRIGGER, f"{receiver.url}/main"))
        try:
            runner: SensorRunner = await scene.start_runner()
            pacer = pacer_for(scene, limit=1, max_wait=max_wait)
            await pacer.publish(NAMESPACE, webhook_event(1))
            await until("the trigger stuck on event 1", lambda: len(receiver.hits) == 1)
            assert runner.backlog(NAMESPACE, ("webhook", "example")) == 1
            t0 = time.monotonic()
            await pacer.publish(NAMESPACE, event)
            return time.monotonic() - t0
        finally:
            await scene.close()
            await receiver.stop()

    return asyncio.run(main())


def test_an_event_is_held_at_most_max_wait_and_then_published(tmp_path: Path) -> None:
    waited = held_for(tmp_path, webhook_event(2), max_wait=0.3)
    assert 0.25 <= waited < 2.0


def test_an_event_no_lagging_sensor_listens_to_is_not_held(tmp_path: Path) -> None:
    other = {**webhook_event(2), "source": "calendar", "subject": "nightly"}
    assert held_for(tmp_path, other, max_wait=3.0) < 0.5


class CountingRunner:
    """Stands for a SensorRunner: listens to one subject and reports a backlog the test sets."""

    def __init__(self, subject: tuple[str, str], backlog: int) -> None:
        self.subject = subject
        self.count = backlog
        self.noted: list[int] = []

    def backlog(self, namespace: str | None = None, subject: tuple[str, str] | None = None) -> int | None:
        return self.count if subject in (None, self.subject) else None

    def note_published(self, namespace: str, subject: tuple[str, str], seq: int) -> None:
        if subject == self.subject:
            self.noted.append(seq)


def test_a_held_event_goes_once_its_own_triggers_catch_up_whatever_other_sensors_lag() -> None:
    quick = CountingRunner(("webhook", "example"), backlog=4)
    stuck = CountingRunner(("calendar", "nightly"), backlog=100)

    async def main() -> tuple[float, float]:
        published: list[dict[str, Any]] = []

        async def publish(namespace: str, event: Any) -> int:
            published.append(dict(event))
            return len(published)

        pacer = IntakePacer(publish, lambda: [quick, stuck], limit=4, max_wait=1.0)  # type: ignore[arg-type, list-item]
        t0 = time.monotonic()
        mine = asyncio.ensure_future(pacer.publish(NAMESPACE, webhook_event(1)))
        theirs = asyncio.ensure_future(
            pacer.publish(NAMESPACE, {**webhook_event(2), "source": "calendar", "subject": "nightly"})
        )
        await asyncio.sleep(0.05)
        assert not mine.done() and not theirs.done()
        quick.count = 2  # half the limit: room again
        pacer.progress()
        await mine
        mine_s = time.monotonic() - t0
        await theirs  # its trigger never catches up: it goes after max_wait
        return mine_s, time.monotonic() - t0

    mine_s, theirs_s = asyncio.run(main())
    assert mine_s < 0.5
    assert theirs_s >= 0.9
    assert quick.noted == [1] and stuck.noted == [2]


def test_a_stalled_trigger_counts_a_bounded_backlog(tmp_path: Path) -> None:
    async def main() -> int | None:
        scene = Scene(tmp_path, http_trigger(TRIGGER, "http://127.0.0.1:9/never"))
        try:
            runner = await scene.start_runner()
            for seq in range(1, UNFINISHED_MAX + 100):
                runner.note_published(NAMESPACE, ("webhook", "example"), seq)
            return runner.backlog(NAMESPACE, ("webhook", "example"))
        finally:
            await scene.close()

    assert asyncio.run(main()) == UNFINISHED_MAX
