"""Tests of engine.workflows.cron: cron expressions and the CronWorkflow planner, with an injected clock.

Times are written as ISO strings and turned into epoch seconds by ``at``; a small ``Runner`` plays the
runtime's part (carry out actions, report children) so scenarios read as a timeline. ``run_cron``, the
driver both runtimes call, is tested with ``FakeCronRuntime``: in-memory children and status in place of
the runtime's I/O, with the real planner deciding.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import SpecError
from engine.spec.workflow import CronWorkflow, CronWorkflowSpec
from engine.workflows.cron import (
    ANNOTATION_SCHEDULED_TIME,
    LABEL_CRON_COMPLETED,
    LABEL_CRON_WORKFLOW,
    ON_TIME_TOLERANCE,
    SPEC_ERROR,
    SUBMISSION_ERROR,
    ChildRun,
    CronPlan,
    CronSchedule,
    CronState,
    DeleteChild,
    StartChild,
    TerminateChild,
    child_manifest,
    child_name,
    compile_cron,
    earlier,
    plan_cron,
    record_submission_error,
    run_cron,
)

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str, zone: ZoneInfo = UTC) -> float:
    """Epoch seconds of an ISO time; without an offset it is read in ``zone``."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.timestamp()


def iso(t: float, zone: ZoneInfo = UTC) -> str:
    return datetime.fromtimestamp(t, zone).isoformat()


def cron_spec(**fields: Any) -> CronWorkflowSpec:
    doc: dict[str, Any] = {
        "schedules": ["* * * * *"],
        "workflowSpec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "alpine"}}],
        },
    }
    doc.update(fields)
    return CronWorkflowSpec.parse(doc, "spec")


def nexts(schedule: str, after: str, count: int, zone: ZoneInfo = UTC) -> list[str]:
    s = CronSchedule.parse(schedule)
    t = at(after, zone)
    out = []
    for _ in range(count):
        t = s.next_after(t, zone)
        out.append(iso(t, zone))
    return out


# ------------------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("* * * * *", "2024-03-01T10:00:00", "2024-03-01T10:01:00+00:00"),
        ("* * * * *", "2024-03-01T10:00:30", "2024-03-01T10:01:00+00:00"),
        ("*/5 * * * *", "2024-03-01T10:02:00", "2024-03-01T10:05:00+00:00"),
        ("1-10/2 * * * *", "2024-03-01T10:09:30", "2024-03-01T11:01:00+00:00"),
        ("5/20 * * * *", "2024-03-01T10:26:00", "2024-03-01T10:45:00+00:00"),
        ("0,30 9-17 * * *", "2024-03-01T17:30:00", "2024-03-02T09:00:00+00:00"),
        ("0 9 * * MON-FRI", "2024-03-15T09:00:00", "2024-03-18T09:00:00+00:00"),
        ("0 9 * * mon-fri", "2024-03-15T09:00:00", "2024-03-18T09:00:00+00:00"),
        ("0 0 1 JAN *", "2024-03-01T00:00:00", "2025-01-01T00:00:00+00:00"),
        ("0 0 1 jun-aug *", "2024-08-02T00:00:00", "2025-06-01T00:00:00+00:00"),
        ("0 12 * * 7", "2024-09-02T00:00:00", "2024-09-08T12:00:00+00:00"),
        ("0 12 * * 0", "2024-09-02T00:00:00", "2024-09-08T12:00:00+00:00"),
        ("0 12 * * 5-7", "2024-09-02T00:00:00", "2024-09-06T12:00:00+00:00"),
        ("0 12 ? * SUN", "2024-09-02T00:00:00", "2024-09-08T12:00:00+00:00"),
        ("0 0 13 * *", "2024-09-01T00:00:00", "2024-09-13T00:00:00+00:00"),
        ("0 0 * * FRI", "2024-09-01T00:00:00", "2024-09-06T00:00:00+00:00"),
        ("@yearly", "2024-06-01T00:00:00", "2025-01-01T00:00:00+00:00"),
        ("@annually", "2024-06-01T00:00:00", "2025-01-01T00:00:00+00:00"),
        ("@monthly", "2024-06-15T00:00:00", "2024-07-01T00:00:00+00:00"),
        ("@weekly", "2024-09-02T00:00:00", "2024-09-08T00:00:00+00:00"),
        ("@daily", "2024-06-15T08:00:00", "2024-06-16T00:00:00+00:00"),
        ("@midnight", "2024-06-15T08:00:00", "2024-06-16T00:00:00+00:00"),
        ("@hourly", "2024-06-15T08:00:00", "2024-06-15T09:00:00+00:00"),
        ("  0 9 * * *  ", "2024-06-15T08:00:00", "2024-06-15T09:00:00+00:00"),
    ],
)
def test_next_after_follows_the_standard_cron_fields(schedule: str, after: str, expected: str) -> None:
    assert nexts(schedule, after, 1) == [expected]


def test_day_of_month_and_day_of_week_both_restricted_match_either() -> None:
    # Friday the 13th in cron means "every Friday, and every 13th".
    assert nexts("0 0 13 * FRI", "2024-09-01T00:00:00", 3) == [
        "2024-09-06T00:00:00+00:00",
        "2024-09-13T00:00:00+00:00",
        "2024-09-20T00:00:00+00:00",
    ]


def test_a_stepped_star_counts_as_restricted_for_the_day_rule_but_step_one_does_not() -> None:
    # 2024-09-02 is a Monday. */2 restricts day-of-month: odd days OR Mondays.
    assert nexts("0 0 */2 * MON", "2024-09-02T00:00:00", 1) == ["2024-09-03T00:00:00+00:00"]
    # */1 is still a star: every day AND Monday, i.e. Mondays.
    assert nexts("0 0 */1 * MON", "2024-09-02T00:00:00", 1) == ["2024-09-09T00:00:00+00:00"]


def test_leap_day_schedule_is_found_years_ahead_and_quickly() -> None:
    schedule = CronSchedule.parse("0 0 29 2 *")
    t = at("2024-03-01T00:00:00")
    started = time.perf_counter()
    for _ in range(200):
        found = schedule.next_after(t, UTC)
    assert time.perf_counter() - started < 2.0  # a minute-by-minute scan would take ~2M steps per call
    assert iso(found) == "2028-02-29T00:00:00+00:00"
    assert iso(schedule.latest_at_or_before(t, UTC) or 0) == "2024-02-29T00:00:00+00:00"
    assert nexts("0 0 29 2 *", "2096-03-01T00:00:00", 1) == [
        "2104-02-29T00:00:00+00:00"
    ]  # 2100 is no leap year


def test_time_zone_prefix_reads_the_fields_in_that_zone() -> None:
    tokyo = CronSchedule.parse("CRON_TZ=Asia/Tokyo 0 9 * * *")
    assert iso(tokyo.next_after(at("2024-06-01T12:00:00"), UTC)) == "2024-06-02T00:00:00+00:00"
    new_york = CronSchedule.parse("TZ=America/New_York 0 9 * * *")
    assert iso(new_york.next_after(at("2024-06-01T00:00:00"), PARIS), PARIS) == "2024-06-01T15:00:00+02:00"


def test_every_fires_at_multiples_of_the_interval_since_the_epoch() -> None:
    every = CronSchedule.parse("@every 90s")
    assert every.next_after(100.0, UTC) == 180.0
    assert every.next_after(180.0, UTC) == 270.0
    assert every.latest_at_or_before(269.9, UTC) == 180.0
    assert CronSchedule.parse("@every 1h30m").next_after(at("2024-01-01T00:10:00"), UTC) % 5400 == 0
    # Sub-second intervals round up to one second, fractions are dropped (robfig).
    assert CronSchedule.parse("@every 500ms").every == 1
    assert CronSchedule.parse("@every 2.7s").every == 2
    # The zone does not matter for an interval.
    assert every.next_after(100.0, PARIS) == 180.0


def test_latest_at_or_before_includes_the_instant_itself() -> None:
    s = CronSchedule.parse("*/15 * * * *")
    assert iso(s.latest_at_or_before(at("2024-01-01T10:15:00"), UTC) or 0) == "2024-01-01T10:15:00+00:00"
    assert iso(s.latest_at_or_before(at("2024-01-01T10:14:59"), UTC) or 0) == "2024-01-01T10:00:00+00:00"


def test_spring_forward_skips_a_wall_clock_time_that_does_not_exist() -> None:
    # 2024-03-31 in Paris: 02:00 CET jumps to 03:00 CEST, so 02:30 never happens that day.
    assert nexts("30 2 * * *", "2024-03-30T03:00:00", 2, PARIS) == [
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]
    assert nexts("0 * * * *", "2024-03-31T00:30:00", 3, PARIS) == [
        "2024-03-31T01:00:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T04:00:00+02:00",
    ]


def test_fall_back_fires_a_repeated_wall_clock_time_once_per_occurrence() -> None:
    # 2024-10-27 in Paris: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
    assert nexts("30 2 * * *", "2024-10-26T12:00:00", 3, PARIS) == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:30:00+01:00",
        "2024-10-28T02:30:00+01:00",
    ]
    assert nexts("0 * * * *", "2024-10-27T01:30:00", 3, PARIS) == [
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-27T03:00:00+01:00",
    ]


def test_fall_back_second_pass_is_found_from_inside_the_first_pass() -> None:
    # From 02:50 CEST, the next "10 2" is 02:10 CET forty minutes later (an earlier wall-clock time).
    start = at("2024-10-27T02:50:00+02:00")
    assert (
        iso(CronSchedule.parse("10 2 * * *").next_after(start, PARIS), PARIS) == "2024-10-27T02:10:00+01:00"
    )
    # And backwards: from 02:20 CET, the latest "50 2" is 02:50 CEST, a later wall-clock time.
    back = CronSchedule.parse("50 2 * * *").latest_at_or_before(at("2024-10-27T02:20:00+01:00"), PARIS)
    assert iso(back or 0, PARIS) == "2024-10-27T02:50:00+02:00"


def test_new_york_dst_transitions() -> None:
    assert nexts("30 2 * * *", "2024-03-09T12:00:00", 2, NEW_YORK) == [
        "2024-03-11T02:30:00-04:00",
        "2024-03-12T02:30:00-04:00",
    ]
    assert nexts("30 1 * * *", "2024-11-03T00:00:00", 3, NEW_YORK) == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:30:00-05:00",
        "2024-11-04T01:30:00-05:00",
    ]


@pytest.mark.parametrize(
    ("schedule", "path", "fragment"),
    [
        ("", "spec.schedules[0]", "empty schedule"),
        ("* * * *", "spec.schedules[0]", "expected 5 fields"),
        ("* * * * * *", "spec.schedules[0]", "expected 5 fields"),
        ("60 * * * *", "spec.schedules[0]", "minute value 60"),
        ("* 24 * * *", "spec.schedules[0]", "hour value 24"),
        ("* * 0 * *", "spec.schedules[0]", "day-of-month value 0"),
        ("* * 32 * *", "spec.schedules[0]", "day-of-month value 32"),
        ("* * * 13 *", "spec.schedules[0]", "month value 13"),
        ("* * * * 8", "spec.schedules[0]", "day-of-week value 8"),
        ("* * * FOO *", "spec.schedules[0]", "month value 'FOO'"),
        ("* * * * MONDAY", "spec.schedules[0]", "day-of-week value 'MONDAY'"),
        ("*/0 * * * *", "spec.schedules[0]", "step in '*/0' must be positive"),
        ("*/x * * * *", "spec.schedules[0]", "step 'x'"),
        ("5-1 * * * *", "spec.schedules[0]", "starts after it ends"),
        ("1-2-3 * * * *", "spec.schedules[0]", "more than one '-'"),
        ("1,,2 * * * *", "spec.schedules[0]", "empty list item"),
        ("-5 * * * *", "spec.schedules[0]", "not a number"),
        ("0 0 30 2 *", "spec.schedules[0]", "never fires"),
        ("0 0 31 4,6,9,11 *", "spec.schedules[0]", "never fires"),
        ("@fortnightly", "spec.schedules[0]", "unknown descriptor"),
        ("@daily 5", "spec.schedules[0]", "unknown descriptor"),
        ("@every", "spec.schedules[0]", "@every needs a duration"),
        ("@every ten", "spec.schedules[0]", "@every needs a duration"),
        ("@every 0s", "spec.schedules[0]", "positive"),
        ("@every 10", "spec.schedules[0]", "@every needs a duration"),
        ("CRON_TZ=Mars/Olympus 0 9 * * *", "spec.schedules[0]", "unknown time zone 'Mars/Olympus'"),
        ("TZ=Europe/Paris", "spec.schedules[0]", "nothing follows"),
    ],
)
def test_a_bad_schedule_gives_one_clear_error(schedule: str, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        CronSchedule.parse(schedule, path=path)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.path == path
    assert fragment in problem.message
    assert repr(schedule) in problem.message
    assert str(caught.value).startswith(f"{path}: invalid schedule")


def test_compile_cron_reports_every_problem_of_the_spec_at_its_path() -> None:
    spec = cron_spec(
        schedules=["0 9 * * *", "61 * * * *"],
        timezone="Nowhere/City",
        concurrencyPolicy="Sometimes",
        startingDeadlineSeconds=-5,
    )
    with pytest.raises(SpecError) as caught:
        compile_cron(spec)
    paths = [p.path for p in caught.value.problems]
    assert paths == [
        "spec.timezone",
        "spec.schedules[1]",
        "spec.concurrencyPolicy",
        "spec.startingDeadlineSeconds",
    ]


def test_compile_cron_requires_a_schedule() -> None:
    with pytest.raises(SpecError, match=r"spec.schedules: at least one schedule is required"):
        compile_cron(cron_spec(schedules=[]))


def test_singular_schedule_is_still_read() -> None:
    compiled = compile_cron(cron_spec(schedules=[], schedule="0 9 * * *"))
    assert [s.text for s in compiled.schedules] == ["0 9 * * *"]


# ---------------------------------------------------------------------------------- hypothesis: parse

FIELD_ATOMS = st.sampled_from(
    [
        "*",
        "?",
        "0",
        "1",
        "5",
        "7",
        "12",
        "13",
        "23",
        "29",
        "30",
        "31",
        "59",
        "60",
        "JAN",
        "feb",
        "MON",
        "sun",
        "x",
        "",
    ]
)


@st.composite
def cron_field(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        part = draw(FIELD_ATOMS)
        if draw(st.booleans()):
            part += "-" + draw(FIELD_ATOMS)
        if draw(st.booleans()):
            part += "/" + draw(st.sampled_from(["0", "1", "2", "5", "15", "x", ""]))
        parts.append(part)
    return ",".join(parts)


@st.composite
def cron_text(draw: st.DrawFn) -> str:
    prefix = draw(
        st.sampled_from(["", "", "CRON_TZ=Europe/Paris ", "TZ=America/New_York ", "TZ=Bad/Zone ", "TZ= "])
    )
    kind = draw(st.integers(0, 9))
    if kind == 0:
        body = draw(
            st.sampled_from(["@yearly", "@monthly", "@weekly", "@daily", "@hourly", "@every 1m", "@every"])
        )
    elif kind == 1:
        body = "@every " + draw(st.text(alphabet="0123456789.hms-µ ", max_size=8))
    else:
        count = draw(st.sampled_from([5, 5, 5, 5, 4, 6]))
        body = " ".join(draw(cron_field()) for _ in range(count))
    return prefix + body


@given(cron_text())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_valid_looking_schedules_either_parse_and_fire_or_raise_spec_error(text: str) -> None:
    try:
        schedule = CronSchedule.parse(text, path="spec.schedules[0]")
    except SpecError as exc:
        assert exc.problems[0].path == "spec.schedules[0]"
        return
    t = at("2024-10-26T23:17:31")
    nxt = schedule.next_after(t, PARIS)
    assert nxt > t
    assert schedule.matches(nxt, PARIS)
    assert (schedule.latest_at_or_before(nxt - 0.5, PARIS) or 0) <= t


@given(st.text(max_size=40))
@settings(max_examples=400)
def test_arbitrary_text_never_raises_anything_but_spec_error(text: str) -> None:
    with contextlib.suppress(SpecError):
        CronSchedule.parse(text)


DST_ZONES = st.sampled_from(
    [
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Antarctica/Troll",
        "Asia/Kolkata",
    ]
)
DENSE_SCHEDULES = st.sampled_from(
    ["* * * * *", "*/7 * * * *", "30 2 * * *", "0 * * * *", "*/20 1-3 * * *", "15,45 0-4 * * *", "59 1 * * *"]
)


@given(zone_name=DST_ZONES, schedule_text=DENSE_SCHEDULES, offset=st.integers(-3 * 86400, 3 * 86400))
@settings(max_examples=300, deadline=None)
def test_next_after_agrees_with_a_minute_by_minute_scan_around_dst(
    zone_name: str, schedule_text: str, offset: int
) -> None:
    zone = ZoneInfo(zone_name)
    schedule = CronSchedule.parse(schedule_text)
    # Around the 2024 transitions of each zone (northern autumn and spring, southern ones too).
    for anchor in (at("2024-10-27T01:00:00Z"), at("2024-04-07T01:00:00Z"), at("2024-03-31T01:00:00Z")):
        t = anchor + offset + 0.25
        candidate = (t // 60 + 1) * 60
        while not schedule.matches(candidate, zone):
            candidate += 60
        assert schedule.next_after(t, zone) == candidate
        assert schedule.latest_at_or_before(candidate, zone) == candidate
        assert (schedule.latest_at_or_before(candidate - 1, zone) or 0) <= t


# ------------------------------------------------------------------------------------------- planner


@dataclass
class Runner:
    """The runtime's side of the loop: carries out actions and reports children as they are."""

    spec: CronWorkflowSpec
    name: str = "hello"
    status: CronState = field(default_factory=CronState)
    children: dict[str, ChildRun] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    started: list[float] = field(default_factory=list)
    created_at: float | None = None

    def tick(self, now: float) -> CronPlan:
        plan = plan_cron(
            spec=self.spec,
            name=self.name,
            namespace="argo",
            status=self.status,
            children=tuple(self.children.values()),
            now=now,
            labels=self.labels,
            created_at=self.created_at,
        )
        self.status = plan.status
        for action in plan.actions:
            if isinstance(action, StartChild):
                self.children[action.name] = ChildRun(action.name, "Running")
                self.started.append(action.scheduled_time)
            elif isinstance(action, TerminateChild):
                self.children[action.name] = ChildRun(action.name, "Failed", now)
            elif isinstance(action, DeleteChild):
                self.children.pop(action.name, None)
        return plan

    def finish(self, name: str, phase: str, when: float) -> None:
        self.children[name] = ChildRun(name, phase, when)

    def follow(self, start: float, until: float, *, finish_after: float | None = None) -> list[str]:
        """Tick at start, then at every requeue time until ``until``; optionally finish children."""
        now = start
        while now <= until:
            plan = self.tick(now)
            if finish_after is not None:
                for action in plan.started:
                    self.finish(action.name, "Succeeded", now + finish_after)
            if plan.requeue_at is None:
                break
            now = plan.requeue_at
        return [iso(t, UTC) for t in self.started]


def test_the_first_plan_only_looks_ahead() -> None:
    runner = Runner(cron_spec())
    plan = runner.tick(at("2024-03-01T10:00:30"))
    assert plan.actions == ()
    assert plan.requeue_at == at("2024-03-01T10:01:00")
    assert plan.status.checked_until == at("2024-03-01T10:00:30")
    assert plan.changed


def test_a_due_fire_time_starts_a_child_named_after_its_unix_time() -> None:
    runner = Runner(cron_spec(workflowMetadata={"labels": {"team": "a"}, "annotations": {"note": "x"}}))
    runner.labels = {"workflows.argoproj.io/creator": "alice", "other": "not copied"}
    runner.tick(at("2024-03-01T10:00:30"))
    plan = runner.tick(at("2024-03-01T10:01:00"))
    fire = at("2024-03-01T10:01:00")
    assert plan.actions == (
        StartChild(
            name=f"hello-{int(fire)}",
            namespace="argo",
            scheduled_time=fire,
            scheduled_time_text="2024-03-01T10:01:00Z",
            labels={LABEL_CRON_WORKFLOW: "hello", "workflows.argoproj.io/creator": "alice", "team": "a"},
            annotations={ANNOTATION_SCHEDULED_TIME: "2024-03-01T10:01:00Z", "note": "x"},
        ),
    )
    assert plan.status.last_scheduled_time == fire
    assert plan.status.active == (f"hello-{int(fire)}",)
    assert plan.requeue_at == at("2024-03-01T10:02:00")
    assert child_name("hello", fire) == "hello-1709287260"


def test_planning_again_with_the_same_inputs_starts_nothing_twice() -> None:
    runner = Runner(cron_spec())
    runner.tick(at("2024-03-01T10:00:30"))
    before = runner.status
    first = runner.tick(at("2024-03-01T10:01:00"))
    assert len(first.started) == 1
    # Same status again (the runtime carried the plan out but crashed before saving it).
    replay = plan_cron(
        spec=runner.spec,
        name="hello",
        namespace="argo",
        status=before,
        children=tuple(runner.children.values()),
        now=at("2024-03-01T10:01:05"),
    )
    assert replay.started == ()
    assert replay.status.active == first.status.active
    assert replay.status.last_scheduled_time == first.status.last_scheduled_time
    # And with the new status: nothing to do, nothing changed.
    again = runner.tick(at("2024-03-01T10:01:00"))
    assert again.actions == ()
    assert not again.changed


def test_plans_are_deterministic() -> None:
    spec = cron_spec(schedules=["*/5 * * * *"], concurrencyPolicy="Replace")
    status = CronState(checked_until=at("2024-03-01T10:00:00"), schedule_key=compile_cron(spec).key)
    kwargs: dict[str, Any] = {
        "spec": spec,
        "name": "n",
        "namespace": "ns",
        "status": status,
        "children": (ChildRun("n-1", "Running"),),
        "now": at("2024-03-01T10:05:10"),
    }
    assert plan_cron(**kwargs) == plan_cron(**kwargs)


def test_a_late_wake_up_within_the_tolerance_still_runs() -> None:
    runner = Runner(cron_spec(schedules=["0 * * * *"]))
    runner.tick(at("2024-03-01T09:59:00"))
    plan = runner.tick(at("2024-03-01T10:00:00") + ON_TIME_TOLERANCE - 1)
    assert [a.scheduled_time for a in plan.started] == [at("2024-03-01T10:00:00")]


def test_a_fire_time_missed_beyond_the_tolerance_is_skipped_without_a_deadline() -> None:
    runner = Runner(cron_spec(schedules=["0 * * * *"]))
    runner.tick(at("2024-03-01T09:59:00"))
    plan = runner.tick(at("2024-03-01T10:05:00"))
    assert plan.started == ()
    assert [(s.reason, s.scheduled_time) for s in plan.skipped] == [("missed", at("2024-03-01T10:00:00"))]
    assert "60s on-time tolerance" in plan.skipped[0].message
    assert plan.requeue_at == at("2024-03-01T11:00:00")
    # It stays skipped: the next plan does not reconsider it.
    assert runner.tick(at("2024-03-01T10:06:00")).actions == ()


def test_a_zero_deadline_means_on_time_runs_only() -> None:
    runner = Runner(cron_spec(schedules=["0 * * * *"], startingDeadlineSeconds=0))
    runner.tick(at("2024-03-01T09:59:00"))
    assert runner.tick(at("2024-03-01T10:03:00")).skipped[0].reason == "missed"
    assert len(runner.tick(at("2024-03-01T11:00:20")).started) == 1


def test_catch_up_after_downtime_starts_only_the_latest_missed_run_within_the_deadline() -> None:
    runner = Runner(cron_spec(schedules=["0 * * * *"], startingDeadlineSeconds=600))
    runner.tick(at("2024-03-01T09:59:00"))
    # Down from 09:59 to 13:05: 10:00 ... 13:00 were missed; only 13:00 is within 10 minutes.
    plan = runner.tick(at("2024-03-01T13:05:00"))
    assert [iso(a.scheduled_time) for a in plan.started] == ["2024-03-01T13:00:00+00:00"]
    assert runner.tick(at("2024-03-01T13:06:00")).started == ()


def test_catch_up_beyond_the_deadline_is_skipped() -> None:
    runner = Runner(cron_spec(schedules=["0 * * * *"], startingDeadlineSeconds=120))
    runner.tick(at("2024-03-01T09:59:00"))
    plan = runner.tick(at("2024-03-01T13:05:00"))
    assert plan.started == ()
    assert plan.skipped[0].reason == "missed"
    assert "startingDeadlineSeconds 120" in plan.skipped[0].message


def test_created_at_lets_a_late_first_plan_catch_up() -> None:
    runner = Runner(cron_spec(schedules=["*/5 * * * *"], startingDeadlineSeconds=300))
    runner.created_at = at("2024-03-01T09:58:00")
    plan = runner.tick(at("2024-03-01T10:02:00"))
    assert [iso(a.scheduled_time) for a in plan.started] == ["2024-03-01T10:00:00+00:00"]


def test_an_argo_status_catches_up_from_its_last_scheduled_time() -> None:
    argo_status = {"lastScheduledTime": "2024-03-01T10:00:00Z", "active": [], "succeeded": 4, "failed": 1}
    runner = Runner(cron_spec(startingDeadlineSeconds=600), status=CronState.from_json(argo_status))
    plan = runner.tick(at("2024-03-01T10:03:10"))
    assert [iso(a.scheduled_time) for a in plan.started] == ["2024-03-01T10:03:00+00:00"]
    assert (plan.status.succeeded, plan.status.failed) == (4, 1)


def test_changed_schedules_do_not_catch_up_runs_of_the_old_ones() -> None:
    runner = Runner(cron_spec(schedules=["0 * * * *"], startingDeadlineSeconds=3600))
    runner.tick(at("2024-03-01T09:59:00"))
    runner.spec = cron_spec(schedules=["30 * * * *"], startingDeadlineSeconds=3600)
    plan = runner.tick(at("2024-03-01T10:40:00"))
    assert plan.started == ()
    assert plan.requeue_at == at("2024-03-01T11:30:00")


def test_suspend_skips_due_runs_and_stops_requeueing() -> None:
    runner = Runner(cron_spec(schedules=["0 * * * *"], suspend=True))
    runner.tick(at("2024-03-01T09:59:00"))
    plan = runner.tick(at("2024-03-01T10:00:00"))
    assert plan.started == ()
    assert [s.reason for s in plan.skipped] == ["suspended"]
    assert plan.requeue_at is None
    # Resumed twenty minutes later: the run skipped while suspended is not started late.
    runner.spec = cron_spec(schedules=["0 * * * *"], suspend=False)
    resumed = runner.tick(at("2024-03-01T10:20:00"))
    assert resumed.started == ()
    assert resumed.requeue_at == at("2024-03-01T11:00:00")


def test_resuming_starts_a_fire_time_that_is_still_on_time() -> None:
    runner = Runner(cron_spec(suspend=True))
    runner.tick(at("2024-03-01T10:00:30"))
    runner.spec = cron_spec(suspend=False)
    plan = runner.tick(at("2024-03-01T10:03:30"))
    assert [iso(a.scheduled_time) for a in plan.started] == ["2024-03-01T10:03:00+00:00"]


def test_forbid_skips_while_a_child_is_active() -> None:
    runner = Runner(cron_spec(concurrencyPolicy="Forbid"))
    runner.tick(at("2024-03-01T10:00:30"))
    first = runner.tick(at("2024-03-01T10:01:00"))
    plan = runner.tick(at("2024-03-01T10:02:00"))
    assert plan.started == ()
    assert [s.reason for s in plan.skipped] == ["forbid"]
    assert first.started[0].name in plan.skipped[0].message
    assert plan.requeue_at == at("2024-03-01T10:03:00")


def test_forbid_runs_again_once_the_active_child_finished() -> None:
    runner = Runner(cron_spec(concurrencyPolicy="Forbid"))
    runner.tick(at("2024-03-01T10:00:30"))
    first = runner.tick(at("2024-03-01T10:01:00")).started[0]
    runner.tick(at("2024-03-01T10:02:00"))
    runner.finish(first.name, "Succeeded", at("2024-03-01T10:02:30"))
    plan = runner.tick(at("2024-03-01T10:03:00"))
    assert [iso(a.scheduled_time) for a in plan.started] == ["2024-03-01T10:03:00+00:00"]
    assert plan.status.succeeded == 1
    assert plan.status.active == (plan.started[0].name,)


def test_allow_runs_children_concurrently() -> None:
    runner = Runner(cron_spec())
    assert runner.follow(at("2024-03-01T10:00:30"), at("2024-03-01T10:03:00")) == [
        "2024-03-01T10:01:00+00:00",
        "2024-03-01T10:02:00+00:00",
        "2024-03-01T10:03:00+00:00",
    ]
    assert len(runner.status.active) == 3


def test_replace_terminates_the_active_children_before_starting_the_new_one() -> None:
    runner = Runner(cron_spec(concurrencyPolicy="Replace"))
    runner.tick(at("2024-03-01T10:00:30"))
    old = runner.tick(at("2024-03-01T10:01:00")).started[0].name
    plan = runner.tick(at("2024-03-01T10:02:00"))
    assert [type(a) for a in plan.actions] == [TerminateChild, StartChild]
    assert plan.actions[0] == TerminateChild(old, "concurrencyPolicy Replace: a newer run starts")
    # The old run is active until it is seen finished.
    assert plan.status.active == (old, plan.started[0].name)
    # The terminated child is seen Failed next time: counted as a failure, once.
    after = runner.tick(at("2024-03-01T10:02:10"))
    assert after.status.failed == 1
    assert after.status.active == (plan.started[0].name,)
    assert runner.tick(at("2024-03-01T10:02:20")).status.failed == 1


def test_multiple_schedules_fire_at_each_and_once_where_they_coincide() -> None:
    runner = Runner(cron_spec(schedules=["*/3 * * * *", "*/2 * * * *"]))
    assert runner.follow(at("2024-03-01T10:00:30"), at("2024-03-01T10:07:00")) == [
        "2024-03-01T10:02:00+00:00",
        "2024-03-01T10:03:00+00:00",
        "2024-03-01T10:04:00+00:00",
        "2024-03-01T10:06:00+00:00",
    ]


def test_the_timezone_field_reads_schedules_in_that_zone() -> None:
    runner = Runner(cron_spec(schedules=["0 9 * * *"], timezone="Asia/Tokyo"))
    runner.tick(at("2024-03-01T12:00:00"))
    plan = runner.tick(at("2024-03-02T00:00:00"))
    assert plan.started[0].scheduled_time_text == "2024-03-02T09:00:00+09:00"
    assert plan.started[0].annotations[ANNOTATION_SCHEDULED_TIME] == "2024-03-02T09:00:00+09:00"


def test_the_default_timezone_is_utc() -> None:
    runner = Runner(cron_spec(schedules=["0 9 * * *"]))
    plan = runner.tick(at("2024-03-01T12:00:00"))
    assert plan.requeue_at == at("2024-03-02T09:00:00")


def test_a_schedule_prefix_zone_shows_in_the_scheduled_time() -> None:
    runner = Runner(cron_spec(schedules=["CRON_TZ=America/New_York 0 9 * * *"], timezone="Asia/Tokyo"))
    runner.tick(at("2024-06-01T00:00:00"))
    plan = runner.tick(at("2024-06-01T13:00:00"))
    assert plan.started[0].scheduled_time_text == "2024-06-01T09:00:00-04:00"


def test_daily_runs_across_spring_forward_skip_the_missing_day() -> None:
    runner = Runner(cron_spec(schedules=["30 2 * * *"], timezone="Europe/Paris"), name="nightly")
    started = runner.follow(at("2024-03-29T12:00:00"), at("2024-04-02T00:00:00"), finish_after=60)
    assert started == [
        "2024-03-30T01:30:00+00:00",
        "2024-04-01T00:30:00+00:00",
    ]


def test_daily_runs_across_fall_back_run_at_both_occurrences() -> None:
    runner = Runner(cron_spec(schedules=["30 2 * * *"], timezone="Europe/Paris"), name="nightly")
    started = runner.follow(at("2024-10-26T12:00:00"), at("2024-10-28T12:00:00"), finish_after=60)
    assert started == [
        "2024-10-27T00:30:00+00:00",
        "2024-10-27T01:30:00+00:00",
        "2024-10-28T01:30:00+00:00",
    ]
    assert len(set(runner.children)) == 3  # distinct instants, distinct child names


def test_a_leap_day_schedule_requeues_years_ahead() -> None:
    runner = Runner(cron_spec(schedules=["0 0 29 2 *"]))
    assert runner.tick(at("2025-01-01T00:00:00")).requeue_at == at("2028-02-29T00:00:00")
    assert len(runner.tick(at("2028-02-29T00:00:00")).started) == 1


def test_every_schedules_run_at_fixed_intervals() -> None:
    runner = Runner(cron_spec(schedules=["@every 90s"]))
    assert runner.follow(at("2024-03-01T10:00:00"), at("2024-03-01T10:06:00")) == [
        "2024-03-01T10:01:30+00:00",
        "2024-03-01T10:03:00+00:00",
        "2024-03-01T10:04:30+00:00",
        "2024-03-01T10:06:00+00:00",
    ]


# ---------------------------------------------------------------------------------- children, history


def test_finished_children_are_counted_once_even_when_reported_twice() -> None:
    runner = Runner(cron_spec())
    runner.tick(at("2024-03-01T10:00:30"))
    a = runner.tick(at("2024-03-01T10:01:00")).started[0].name
    b = runner.tick(at("2024-03-01T10:02:00")).started[0].name
    runner.finish(a, "Succeeded", at("2024-03-01T10:02:10"))
    runner.finish(b, "Error", at("2024-03-01T10:02:20"))
    first = runner.tick(at("2024-03-01T10:02:30"))
    assert (first.status.succeeded, first.status.failed) == (1, 1)
    assert first.status.active == ()
    second = runner.tick(at("2024-03-01T10:02:40"))
    assert (second.status.succeeded, second.status.failed) == (1, 1)
    # A stale report of a counted child as Running neither reactivates nor recounts it.
    runner.children[a] = ChildRun(a, "Running")
    third = runner.tick(at("2024-03-01T10:02:50"))
    assert third.status.active == ()
    runner.finish(a, "Succeeded", at("2024-03-01T10:02:10"))
    assert runner.tick(at("2024-03-01T10:02:55")).status.succeeded == 1


def test_children_found_already_finished_are_not_counted() -> None:
    runner = Runner(cron_spec())
    runner.children["hello-manual"] = ChildRun("hello-manual", "Succeeded", at("2024-03-01T09:00:00"))
    plan = runner.tick(at("2024-03-01T10:00:30"))
    assert (plan.status.succeeded, plan.status.failed) == (0, 0)


def test_running_children_we_did_not_start_are_active() -> None:
    runner = Runner(cron_spec(concurrencyPolicy="Forbid"))
    runner.tick(at("2024-03-01T10:00:30"))
    runner.children["hello-manual"] = ChildRun("hello-manual", "Running")
    plan = runner.tick(at("2024-03-01T10:01:00"))
    assert plan.status.active == ("hello-manual",)
    assert [s.reason for s in plan.skipped] == ["forbid"]


def test_an_active_child_that_disappeared_is_dropped_without_counting() -> None:
    runner = Runner(cron_spec())
    runner.tick(at("2024-03-01T10:00:30"))
    name = runner.tick(at("2024-03-01T10:01:00")).started[0].name
    del runner.children[name]
    plan = runner.tick(at("2024-03-01T10:01:30"))
    assert plan.status.active == ()
    assert (plan.status.succeeded, plan.status.failed) == (0, 0)


def _finished(prefix: str, phase: str, count: int) -> dict[str, ChildRun]:
    return {f"{prefix}-{i}": ChildRun(f"{prefix}-{i}", phase, 1000.0 + i) for i in range(count)}


@pytest.mark.parametrize(
    ("limits", "deleted"),
    [
        ({}, ["ok-0", "ok-1", "bad-0", "bad-1"]),
        ({"successfulJobsHistoryLimit": 4, "failedJobsHistoryLimit": 4}, ["ok-0"]),
        (
            {"successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0},
            ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4", "bad-0", "bad-1", "bad-2"],
        ),
        (
            {"successfulJobsHistoryLimit": -1, "failedJobsHistoryLimit": -1},
            ["ok-0", "ok-1", "bad-0", "bad-1"],
        ),
    ],
)
def test_history_limits_delete_the_oldest_completed_children(
    limits: dict[str, int], deleted: list[str]
) -> None:
    runner = Runner(cron_spec(**limits))
    runner.children.update(_finished("ok", "Succeeded", 5))
    runner.children.update(_finished("bad", "Failed", 2))
    runner.children["bad-2"] = ChildRun("bad-2", "Error", 1100.0)
    runner.children["live"] = ChildRun("live", "Running")
    plan = runner.tick(at("2024-03-01T10:00:30"))
    assert [a.name for a in plan.actions if isinstance(a, DeleteChild)] == deleted
    assert "live" in runner.children


def test_history_limits_keep_the_most_recently_finished_not_the_most_recently_named() -> None:
    runner = Runner(cron_spec(successfulJobsHistoryLimit=1))
    runner.children["c-1"] = ChildRun("c-1", "Succeeded", 300.0)
    runner.children["c-2"] = ChildRun("c-2", "Succeeded", 200.0)
    runner.children["c-3"] = ChildRun("c-3", "Succeeded", None)
    plan = runner.tick(at("2024-03-01T10:00:30"))
    assert [a.name for a in plan.actions if isinstance(a, DeleteChild)] == ["c-3", "c-2"]


# ---------------------------------------------------------------------------- spec errors, statuses


def test_a_bad_spec_sets_a_spec_error_condition_and_schedules_nothing() -> None:
    runner = Runner(cron_spec(schedules=["61 * * * *"]))
    plan = runner.tick(at("2024-03-01T10:00:30"))
    assert plan.requeue_at is None
    assert plan.started == ()
    assert [(c.type, c.message) for c in plan.status.conditions] == [
        (
            SPEC_ERROR,
            "spec.schedules[0]: invalid schedule '61 * * * *': minute value 61 in '61' is outside 0-59",
        )
    ]
    runner.spec = cron_spec()
    fixed = runner.tick(at("2024-03-01T10:00:40"))
    assert fixed.status.conditions == ()
    assert fixed.requeue_at == at("2024-03-01T10:01:00")


def test_record_submission_error_counts_a_failure_and_sets_a_condition() -> None:
    runner = Runner(cron_spec())
    runner.tick(at("2024-03-01T10:00:30"))
    plan = runner.tick(at("2024-03-01T10:01:00"))
    status = record_submission_error(plan.status, child=plan.started[0].name, message="quota exceeded")
    assert status.active == ()
    assert status.failed == 1
    assert [(c.type, c.message) for c in status.conditions] == [
        (SUBMISSION_ERROR, "Failed to submit Workflow: quota exceeded")
    ]
    # The next successful start clears it.
    runner.status = status
    del runner.children[plan.started[0].name]
    assert runner.tick(at("2024-03-01T10:02:00")).status.conditions == ()


def test_status_json_round_trips_and_reads_like_argo() -> None:
    state = CronState(
        last_scheduled_time=at("2024-03-01T10:01:00"),
        active=("hello-1",),
        succeeded=2,
        failed=1,
        phase="Stopped",
        checked_until=at("2024-03-01T10:01:05"),
        schedule_key="k",
        counted=("hello-0",),
    )
    data = state.to_json(namespace="argo")
    assert data["lastScheduledTime"] == "2024-03-01T10:01:00Z"
    assert data["active"] == [
        {"kind": "Workflow", "apiVersion": "sluice.dev/v1alpha1", "name": "hello-1", "namespace": "argo"}
    ]
    assert CronState.from_json(data) == state
    assert CronState.from_json(None) == CronState()
    assert (
        CronState.from_json({"lastScheduledTime": "garbage", "succeeded": "x", "phase": "?"}) == CronState()
    )


def test_child_manifest_is_the_workflow_spec_named_labelled_and_owned() -> None:
    spec = cron_spec(workflowMetadata={"finalizers": ["keep"]})
    runner = Runner(spec)
    runner.tick(at("2024-03-01T10:00:30"))
    start = runner.tick(at("2024-03-01T10:01:00")).started[0]
    doc = child_manifest(start, spec=spec, owner_uid="uid-1", owner_name="hello")
    assert doc["kind"] == "Workflow"
    assert doc["metadata"]["name"] == start.name
    assert doc["metadata"]["finalizers"] == ["keep"]
    assert doc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert doc["spec"]["entrypoint"] == "main"


# ------------------------------------------------------------------------------------------ expressions


def _expr_ready() -> bool:
    try:
        from engine import expr
    except ImportError:
        return False
    return all(hasattr(expr, n) for n in ("evaluate", "evaluate_when", "substitute"))


needs_expr = pytest.mark.skipif(
    not _expr_ready(), reason="engine.expr (evaluate, evaluate_when, substitute) missing"
)


@needs_expr
def test_stop_strategy_stops_scheduling_once_its_expression_is_true() -> None:
    runner = Runner(cron_spec(stopStrategy={"expression": "cronworkflow.failed >= 2"}))
    runner.tick(at("2024-03-01T10:00:30"))
    a = runner.tick(at("2024-03-01T10:01:00")).started[0].name
    b = runner.tick(at("2024-03-01T10:02:00")).started[0].name
    runner.finish(a, "Failed", at("2024-03-01T10:02:10"))
    assert runner.tick(at("2024-03-01T10:02:20")).status.phase == "Active"
    runner.finish(b, "Error", at("2024-03-01T10:02:30"))
    plan = runner.tick(at("2024-03-01T10:02:40"))
    assert plan.status.phase == "Stopped"
    assert plan.set_labels == {LABEL_CRON_COMPLETED: "true"}
    assert plan.requeue_at is None
    later = runner.tick(at("2024-03-01T10:03:00"))
    assert later.started == ()
    assert [s.reason for s in later.skipped] == ["stopped"]


@needs_expr
def test_stop_strategy_on_successes() -> None:
    runner = Runner(cron_spec(stopStrategy={"expression": "cronworkflow.succeeded == 1"}))
    runner.follow(at("2024-03-01T10:00:30"), at("2024-03-01T10:10:00"), finish_after=10)
    # The first child finishes at 10:01:10; the 10:02 plan sees it, stops, and starts nothing more.
    assert len(runner.started) == 1
    assert runner.status.phase == "Stopped"


@needs_expr
def test_a_broken_stop_expression_is_a_spec_error_condition() -> None:
    runner = Runner(cron_spec(stopStrategy={"expression": "cronworkflow.failed >="}))
    plan = runner.tick(at("2024-03-01T10:00:30"))
    assert plan.status.phase == "Active"
    assert plan.status.conditions[0].type == SPEC_ERROR
    assert "stopping condition" in plan.status.conditions[0].message


@needs_expr
@pytest.mark.parametrize(
    ("when", "runs"),
    [
        ("{{cronworkflow.name}} == hello", True),
        ("{{cronworkflow.name}} == other", False),
        ("{{cronworkflow.failed}} == 0", True),
        ("{{cronworkflow.labels.tier}} == gold", True),
        ("{{cronworkflow.annotations.owner}} == bob", True),
        ("{{= cronworkflow.lastScheduledTime == nil }}", True),
        ("{{= cronworkflow.namespace == 'argo' }}", True),
        ("'{{cronworkflow.lastScheduledTime}}' == ''", True),
        ("{{= cronworkflow.labels.tier == 'gold' && cronworkflow.annotations.owner == 'bob' }}", True),
        ("{{= cronworkflow.succeeded > 0 }}", False),
    ],
)
def test_when_substitutes_cronworkflow_variables_then_decides(when: str, runs: bool) -> None:
    runner = Runner(cron_spec(when=when))
    runner.labels = {"tier": "gold"}
    runner.tick(at("2024-03-01T10:00:30"))
    plan = plan_cron(
        spec=runner.spec,
        name="hello",
        namespace="argo",
        status=runner.status,
        children=(),
        now=at("2024-03-01T10:01:00"),
        labels={"tier": "gold"},
        annotations={"owner": "bob"},
    )
    assert bool(plan.started) is runs
    if not runs:
        assert [s.reason for s in plan.skipped] == ["when"]


@needs_expr
def test_when_sees_last_scheduled_time_as_nil_only_on_the_first_run() -> None:
    runner = Runner(cron_spec(when="{{= cronworkflow.lastScheduledTime == nil }}"))
    assert len(runner.follow(at("2024-03-01T10:00:30"), at("2024-03-01T10:05:00"))) == 1


@needs_expr
def test_the_cron_when_example_runs_at_most_every_six_minutes() -> None:
    # examples/cron-when.yaml: run each minute, unless the last run was less than 360 s ago.
    when = (
        "{{= cronworkflow.lastScheduledTime == nil"
        " || (now() - cronworkflow.lastScheduledTime).Seconds() > 360 }}"
    )
    runner = Runner(cron_spec(when=when))
    assert runner.follow(at("2024-03-01T10:00:30"), at("2024-03-01T10:16:00")) == [
        "2024-03-01T10:01:00+00:00",
        "2024-03-01T10:08:00+00:00",
        "2024-03-01T10:15:00+00:00",
    ]


@needs_expr
def test_a_when_that_cannot_be_evaluated_is_a_submission_error_and_a_failure() -> None:
    runner = Runner(cron_spec(when="{{cronworkflow.nope}} == 1"))
    runner.tick(at("2024-03-01T10:00:30"))
    plan = runner.tick(at("2024-03-01T10:01:00"))
    assert plan.started == ()
    assert [s.reason for s in plan.skipped] == ["when-error"]
    assert plan.status.failed == 1
    assert plan.status.conditions[0].type == SUBMISSION_ERROR


# ------------------------------------------------------------------------------ hypothesis: timelines


@given(
    schedule=st.sampled_from(["* * * * *", "*/2 * * * *", "30 2 * * *", "@every 45s", "0 * * * *"]),
    policy=st.sampled_from(["Allow", "Forbid", "Replace"]),
    deadline=st.sampled_from([None, 0, 30, 600]),
    steps=st.lists(st.tuples(st.integers(1, 900), st.booleans(), st.booleans()), min_size=1, max_size=40),
)
@settings(max_examples=150, deadline=None)
def test_random_timelines_never_start_a_fire_time_twice_or_off_schedule(
    schedule: str, policy: str, deadline: int | None, steps: list[tuple[int, bool, bool]]
) -> None:
    fields: dict[str, Any] = {
        "schedules": [schedule],
        "timezone": "Europe/Paris",
        "concurrencyPolicy": policy,
    }
    if deadline is not None:
        fields["startingDeadlineSeconds"] = deadline
    runner = Runner(cron_spec(**fields))
    compiled = compile_cron(runner.spec)
    now = at("2024-10-27T00:00:00")
    for gap, finish_one, replay in steps:
        now += gap
        before = runner.status
        plan = runner.tick(now)
        assert len(plan.started) <= 1
        for start in plan.started:
            assert compiled.schedules[0].matches(start.scheduled_time, compiled.zone)
            assert start.scheduled_time <= now
        if policy == "Forbid" and plan.started:
            assert [
                n for n in before.active if n in runner.children and not runner.children[n].finished
            ] == []
        if replay:
            assert runner.tick(now).started == ()
        if finish_one:
            running = [c for c in runner.children.values() if not c.finished]
            if running:
                runner.finish(running[0].name, "Succeeded", now)
    assert len(runner.started) == len(set(runner.started))


# ------------------------------------------------------------------------------- run_cron, the driver


@dataclass
class FakeCronRuntime:
    """A runtime's side of run_cron in memory: children by name, every call in order, statuses saved."""

    children: dict[str, ChildRun] = field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    saved: list[tuple[str, str, CronState]] = field(default_factory=list)
    # Child name -> the message its submission fails with.
    refuse: dict[str, str] = field(default_factory=dict)

    async def terminate_child(self, namespace: str, name: str) -> None:
        self.calls.append(("terminate", namespace, name))
        if name in self.children:
            self.children[name] = ChildRun(name, "Failed")

    async def submit_child(self, start: StartChild, manifest: dict[str, Any]) -> str | None:
        self.calls.append(("submit", start.namespace, start.name))
        if start.name in self.refuse:
            return self.refuse[start.name]
        self.manifests[start.name] = manifest
        self.children[start.name] = ChildRun(start.name, "Running")
        return None

    async def delete_child(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", namespace, name))
        self.children.pop(name, None)

    async def save_status(self, namespace: str, name: str, status: CronState) -> None:
        self.saved.append((namespace, name, status))

    @property
    def status(self) -> CronState:
        return self.saved[-1][2] if self.saved else CronState()

    def run(self, cron: CronWorkflow, now: float, *, own_children: bool = False) -> float | None:
        """One pass over ``cron`` at ``now``, from the last saved status and the children as they are."""
        return asyncio.run(
            run_cron(
                cron,
                status=self.status,
                children=tuple(self.children.values()),
                now=now,
                runtime=self,
                own_children=own_children,
            )
        )


def cron_workflow(metadata: dict[str, Any] | None = None, **fields: Any) -> CronWorkflow:
    """A CronWorkflow ``hello`` in ``argo``, created at 10:00:00 and running every minute by default."""
    meta: dict[str, Any] = {
        "name": "hello",
        "namespace": "argo",
        "uid": "uid-1",
        "creationTimestamp": "2024-03-01T10:00:00Z",
    }
    meta.update(metadata or {})
    spec = cron_spec(**fields).dump()
    return CronWorkflow.parse(
        {"apiVersion": "sluice.dev/v1alpha1", "kind": "CronWorkflow", "metadata": meta, "spec": spec}
    )


def test_run_cron_submits_a_due_run_saves_the_status_and_returns_the_next_fire_time() -> None:
    creator = "workflows.argoproj.io/creator"
    cron = cron_workflow({"labels": {creator: "ann", "other": "x"}})
    runtime = FakeCronRuntime()
    # The creation time comes from the metadata: a first pass ten seconds after 10:01 still runs it.
    requeue = runtime.run(cron, at("2024-03-01T10:01:10"))
    child = child_name("hello", at("2024-03-01T10:01:00"))
    assert runtime.calls == [("submit", "argo", child)]
    assert requeue == at("2024-03-01T10:02:00")
    metadata = runtime.manifests[child]["metadata"]
    assert metadata["namespace"] == "argo"
    assert metadata["labels"] == {LABEL_CRON_WORKFLOW: "hello", creator: "ann"}
    assert metadata["annotations"] == {ANNOTATION_SCHEDULED_TIME: "2024-03-01T10:01:00Z"}
    assert "ownerReferences" not in metadata
    [(namespace, name, status)] = runtime.saved
    assert (namespace, name) == ("argo", "hello")
    assert status.active == (child,)
    assert status.last_scheduled_time == at("2024-03-01T10:01:00")


def test_run_cron_makes_the_cron_workflow_own_its_children_when_asked() -> None:
    runtime = FakeCronRuntime()
    runtime.run(cron_workflow(), at("2024-03-01T10:01:10"), own_children=True)
    [manifest] = runtime.manifests.values()
    [owner] = manifest["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CronWorkflow", "hello", "uid-1")


def test_run_cron_records_a_refused_submission_as_a_failed_run() -> None:
    runtime = FakeCronRuntime()
    child = child_name("hello", at("2024-03-01T10:01:00"))
    runtime.refuse[child] = "quota exceeded"
    assert runtime.run(cron_workflow(), at("2024-03-01T10:01:10")) == at("2024-03-01T10:02:00")
    assert runtime.calls == [("submit", "argo", child)]
    assert runtime.status.active == ()
    assert runtime.status.failed == 1
    assert [(c.type, c.message) for c in runtime.status.conditions] == [
        (SUBMISSION_ERROR, "Failed to submit Workflow: quota exceeded")
    ]
    # The fire time was decided: the next pass does not try it again.
    runtime.run(cron_workflow(), at("2024-03-01T10:01:20"))
    assert len(runtime.calls) == 1


def test_a_pass_that_changes_nothing_saves_nothing() -> None:
    runtime = FakeCronRuntime()
    cron = cron_workflow()
    runtime.run(cron, at("2024-03-01T10:01:10"))
    calls, saved = list(runtime.calls), list(runtime.saved)
    assert runtime.run(cron, at("2024-03-01T10:01:10")) == at("2024-03-01T10:02:00")
    assert (runtime.calls, runtime.saved) == (calls, saved)


def test_run_cron_terminates_the_replaced_run_before_submitting_the_new_one() -> None:
    runtime = FakeCronRuntime()
    cron = cron_workflow(concurrencyPolicy="Replace")
    runtime.run(cron, at("2024-03-01T10:01:00"))
    runtime.run(cron, at("2024-03-01T10:02:00"))
    first, second = (
        child_name("hello", at("2024-03-01T10:01:00")),
        child_name("hello", at("2024-03-01T10:02:00")),
    )
    assert runtime.calls == [
        ("submit", "argo", first),
        ("terminate", "argo", first),
        ("submit", "argo", second),
    ]


def test_run_cron_deletes_finished_children_beyond_the_history_limit() -> None:
    runtime = FakeCronRuntime()
    runtime.children = {
        "hello-1": ChildRun("hello-1", "Succeeded", at("2024-03-01T09:00:00")),
        "hello-2": ChildRun("hello-2", "Succeeded", at("2024-03-01T09:30:00")),
    }
    runtime.run(cron_workflow(successfulJobsHistoryLimit=1), at("2024-03-01T10:00:30"))
    assert runtime.calls == [("delete", "argo", "hello-1")]
    assert list(runtime.children) == ["hello-2"]


def test_run_cron_reads_a_missing_namespace_as_default() -> None:
    runtime = FakeCronRuntime()
    runtime.run(cron_workflow({"namespace": None}), at("2024-03-01T10:01:10"))
    assert [(kind, namespace) for kind, namespace, _ in runtime.calls] == [("submit", "default")]
    assert [(namespace, name) for namespace, name, _ in runtime.saved] == [("default", "hello")]


def test_run_cron_on_a_suspended_cron_workflow_starts_nothing_and_asks_no_requeue() -> None:
    runtime = FakeCronRuntime()
    assert runtime.run(cron_workflow(suspend=True), at("2024-03-01T10:01:10")) is None
    assert runtime.calls == []
    assert [s.checked_until for _, _, s in runtime.saved] == [at("2024-03-01T10:01:10")]


@needs_expr
@pytest.mark.parametrize(("owner", "runs"), [("bob", True), ("alice", False)])
def test_run_cron_gives_when_the_cron_workflows_own_annotations(owner: str, runs: bool) -> None:
    runtime = FakeCronRuntime()
    cron = cron_workflow({"annotations": {"owner": owner}}, when="{{cronworkflow.annotations.owner}} == bob")
    runtime.run(cron, at("2024-03-01T10:01:10"))
    assert bool(runtime.manifests) is runs


def test_run_cron_refuses_a_cron_workflow_without_a_spec() -> None:
    cron = CronWorkflow.parse(
        {"apiVersion": "sluice.dev/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "x"}}
    )
    with pytest.raises(SpecError, match="CronWorkflow default/x has no spec"):
        FakeCronRuntime().run(cron, at("2024-03-01T10:01:10"))


def test_earlier_takes_the_first_requeue_time_and_ignores_none() -> None:
    assert earlier(None, None) is None
    assert earlier(None, 5.0) == 5.0
    assert earlier(5.0, None) == 5.0
    assert earlier(7.0, 5.0) == 5.0
    assert earlier(5.0, 7.0) == 5.0
