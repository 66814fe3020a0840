"""Schedules and concurrency limits through ``Orchestrator``, on the in-memory journal: what
the calls write, what the dispatcher then fires, and bad input refused at the call with
nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery

from orchestrator import Orchestrator, RunStatus, UnknownWorkflow, WorkflowContext
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.model.schedules import ScheduleSpec, UnknownSchedule, slot_run_id, slot_stamp
from orchestrator.runtime.dispatcher import Dispatcher
from orchestrator.runtime.publisher import RecordingPublisher
from tests.builders import offline
from tests.conftest import FakeClock

START = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def orc(clock: FakeClock) -> Iterator[Orchestrator]:
    app = Celery("sched", broker="memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    orc = offline(Orchestrator(app, journal=InMemoryJournal(clock=clock), eager_start=False))

    @orc.workflow(name="report")
    async def report(ctx: WorkflowContext, day: str) -> str:
        return day

    @orc.workflow(name="limited", concurrency=2)
    async def limited(ctx: WorkflowContext, n: int) -> int:
        return n

    @orc.workflow(name="per_customer", concurrency=1, concurrency_key=lambda c, *_: c)
    async def per_customer(ctx: WorkflowContext, customer: Any, n: int = 0) -> int:
        return n

    yield orc


def published(orc: Orchestrator) -> list[str]:
    publisher = orc.__dict__["publisher"]
    assert isinstance(publisher, RecordingPublisher)
    return [r.run_id for r in publisher.replays]


def test_a_schedule_written_through_the_orchestrator_is_fired_by_a_dispatcher(
    orc: Orchestrator, clock: FakeClock
) -> None:
    info = orc.schedule("nightly", "report", "today", every=timedelta(minutes=1))
    assert info.spec == ScheduleSpec(
        schedule_id="nightly", workflow="report", version="1", args=["today"], every=60.0
    )
    assert orc.schedule("nightly", "report", "today", every=60) == orc.list_schedules()[0]
    dispatcher = Dispatcher(orc.journal, orc.publisher, orc.settings, clock=clock)

    clock.advance(60)
    dispatcher.tick()

    run_id = slot_run_id("nightly", START + 40)  # the first whole minute after the start
    assert published(orc) == [run_id]
    assert orc.describe(run_id).args == ["today"]
    assert orc.list_schedules()[0].last_run_id == run_id


def test_pause_resume_trigger_and_delete(orc: Orchestrator, clock: FakeClock) -> None:
    orc.schedule("s", "report", "d", cron="0 2 * * *", timezone="America/New_York")
    assert orc.pause_schedule("s").paused
    handle = orc.trigger_schedule("s")
    assert handle.run_id == f"s@manual-{slot_stamp(START)}"
    assert published(orc) == [handle.run_id]
    assert not orc.resume_schedule("s").paused
    next_fire = orc.list_schedules()[0].next_fire_at
    assert next_fire == datetime(2023, 11, 15, 7, 0, tzinfo=UTC)  # 02:00 in New York
    orc.delete_schedule("s")
    assert orc.list_schedules() == []
    for call in (orc.pause_schedule, orc.resume_schedule, orc.trigger_schedule):
        with pytest.raises(UnknownSchedule, match="unknown schedule 's'"):
            call("s")
    with pytest.raises(UnknownSchedule):
        orc.delete_schedule("s")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "* * * *"}, "invalid cron expression"),
        ({"cron": "@daily"}, "invalid cron expression"),
        ({"cron": "0 2 * * *", "every": 60}, "exactly one of cron= and every=, not both"),
        ({}, "exactly one of cron= and every=, not neither"),
        ({"every": 0}, "every must be a positive number"),
        ({"every": -5}, "every must be a positive number"),
        ({"every": timedelta(0)}, "every must be a positive number"),
        ({"every": "60"}, "every must be a positive number"),
        ({"every": 60, "overlap": "buffer"}, "overlap must be one of skip, allow, not 'buffer'"),
        ({"every": 60, "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"every": 60, "catchup_window": 0}, "catchup_window must be a positive number"),
    ],
)
def test_a_bad_schedule_is_refused_at_the_call_and_nothing_is_written(
    orc: Orchestrator, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        orc.schedule("s", "report", "d", **options)
    assert orc.list_schedules() == []


def test_a_schedule_of_an_unknown_workflow_a_bad_id_or_args_is_refused(
    orc: Orchestrator,
) -> None:
    with pytest.raises(UnknownWorkflow):
        orc.schedule("s", "nope", every=60)
    with pytest.raises(ValueError, match="invalid schedule id 'a b'"):
        orc.schedule("a b", "report", "d", every=60)
    with pytest.raises(TypeError, match="arguments of schedule s"):
        orc.schedule("s", "report", object(), every=60)
    assert orc.list_schedules() == []


def test_runs_over_the_limit_wait_queued_and_are_admitted_as_runs_end(
    orc: Orchestrator,
) -> None:
    handles = [orc.start("limited", n, run_id=f"r{n}") for n in range(3)]

    assert [h.describe().status for h in handles] == [
        RunStatus.RUNNABLE,
        RunStatus.RUNNABLE,
        RunStatus.QUEUED,
    ]
    reason = handles[2].describe().reason
    assert reason is not None and "limit of 2 open runs" in reason
    orc.cancel("r2")
    assert handles[2].describe().status is RunStatus.CANCELLED  # at once, none of its code run


def test_keys_limit_runs_apart(orc: Orchestrator) -> None:
    for run_id, customer in (("a1", "a"), ("b1", "b"), ("a2", "a")):
        orc.start("per_customer", customer, run_id=run_id)
    assert {r.run_id: r.status for r in orc.list_runs()} == {
        "a1": RunStatus.RUNNABLE,
        "b1": RunStatus.RUNNABLE,
        "a2": RunStatus.QUEUED,
    }


@pytest.mark.parametrize(
    ("customer", "error", "message"),
    [
        (None, TypeError, "concurrency_key must return a string, not None"),
        (7, TypeError, "concurrency_key must return a string, not 7"),
        ("x" * 201, ValueError, "concurrency_key returned 201 characters"),
    ],
)
def test_a_key_that_is_not_a_short_string_is_refused_and_nothing_is_written(
    orc: Orchestrator, customer: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        orc.start("per_customer", customer)
    with pytest.raises(error, match=message):
        orc.schedule("s", "per_customer", customer, every=60)
    assert orc.list_runs() == [] and orc.list_schedules() == []


def test_a_key_function_that_raises_is_refused_and_nothing_is_written(
    orc: Orchestrator,
) -> None:
    with pytest.raises(ValueError, match="'per_customer': concurrency_key raised TypeError"):
        orc.start("per_customer")  # the key function is missing its argument
    assert orc.list_runs() == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"concurrency": 0}, ValueError, "concurrency must be a whole number of runs, 1 or more"),
        ({"concurrency": -1}, ValueError, "concurrency must be a whole number"),
        ({"concurrency": 1.5}, ValueError, "concurrency must be a whole number"),
        ({"concurrency": 2, "concurrency_key": "customer"}, TypeError, "must be a function"),
        ({"concurrency_key": lambda c: c}, ValueError, "concurrency_key needs concurrency=N"),
    ],
)
def test_a_bad_limit_is_refused_where_the_workflow_is_declared(
    orc: Orchestrator, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):

        @orc.workflow(name="bad", **options)
        async def bad(ctx: WorkflowContext) -> None:
            return None

    assert "bad" not in orc.registry.names()


def test_slots_of_an_interval_are_its_multiples_since_the_epoch() -> None:
    spec = ScheduleSpec(schedule_id="s", workflow="w", version="1", args=[], every=0.25)
    assert spec.next_slot(10.1) == 10.25
    assert spec.next_slot(10.25) == 10.5
    assert spec.latest_slot(10.25) == 10.25
    assert spec.latest_slot(10.49) == 10.25
    assert slot_run_id("s", 10.25) == "s@19700101T000010.250Z"
