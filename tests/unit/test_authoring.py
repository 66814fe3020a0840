"""Queries, signal-with-start, execution timeouts and heartbeat timeouts in the engine and the
client, on the in-memory journal: the replayer stepped by hand (:mod:`tests.unit.harness`),
and a client whose runs a driver advances in this process."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator import (
    NonDeterminismError,
    NotPublished,
    RunClosed,
    UnknownRun,
    WorkflowContext,
    WorkflowFailed,
    WorkflowTimeout,
)
from orchestrator.client import queries, signal_start
from orchestrator.client.runs import Client
from orchestrator.engine.registry import Registry
from orchestrator.journal.authoring import heartbeat_timed_out_item, run_timed_out_item
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.model.deadlines import HEARTBEAT_TIMEOUT, WORKFLOW_TIMEOUT
from orchestrator.model.events import EventType, RunStatus
from orchestrator.model.retry import RetryPolicy
from orchestrator.model.settings import Settings
from orchestrator.runtime.dispatcher import Dispatcher
from orchestrator.runtime.driver import Driver
from orchestrator.runtime.publisher import RecordingPublisher
from tests.builders import completed
from tests.conftest import FakeClock
from tests.invariants import check_history
from tests.unit.harness import Harness, kinds, timer_fired


# -- workflows -----------------------------------------------------------------------------
async def progress(ctx: WorkflowContext, steps: int) -> str:
    for i in range(steps):
        ctx.publish("progress", {"done": i, "of": steps})
        await ctx.activity("work.step", i)
    ctx.publish("progress", {"done": steps, "of": steps})
    return "done"


async def unpublishable(ctx: WorkflowContext) -> None:
    ctx.publish("state", object())


async def sleeps(ctx: WorkflowContext, seconds: float) -> str:
    try:
        await ctx.sleep(seconds)
    finally:
        ctx.publish("cleanup", "ran")  # a timed-out run's code runs no further
    return "woke"


async def beating(ctx: WorkflowContext, timeout: Any) -> Any:
    policy = RetryPolicy(max_attempts=2)
    return await ctx.activity("work.long", retry=policy, heartbeat_timeout=timeout)


async def collects(ctx: WorkflowContext, n: int) -> list[Any]:
    return [await ctx.wait_signal("item") for _ in range(n)]


# -- the engine: ctx.publish ---------------------------------------------------------------
def test_publish_is_journaled_before_the_command_that_follows_it() -> None:
    run = Harness(progress, 1)
    run.step()
    assert run.types() == ["run_started", "value_published", "activity_scheduled"]
    [value] = run.events(EventType.VALUE_PUBLISHED)
    assert (value.command_id, value.data) == (
        1,
        {"name": "progress", "value": {"done": 0, "of": 1}},
    )
    run.step([completed(2, "ok")])
    assert run.types()[-2:] == ["value_published", "run_completed"]
    run.replay()  # the whole history replays without a mismatch


def test_a_publish_the_history_does_not_have_is_nondeterminism() -> None:
    run = Harness(progress, 1)
    run.step()

    async def renamed(ctx: WorkflowContext, steps: int) -> str:
        ctx.publish("percent", 0)
        await ctx.activity("work.step", 0)
        return "done"

    with pytest.raises(NonDeterminismError, match="value_published"):
        run.replay(renamed)


def test_publishing_a_value_json_cannot_carry_fails_the_run_naming_it() -> None:
    run = Harness(unpublishable)
    decision = run.step()
    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "orchestrator.errors.PayloadError"
    assert "value published under 'state'" in decision.error["message"]
    assert run.events(EventType.VALUE_PUBLISHED) == []


@pytest.mark.parametrize("name", ["", None, "x" * 201, "bad\nname"])
def test_publish_under_a_bad_name_fails_the_run(name: Any) -> None:
    async def bad(ctx: WorkflowContext) -> None:
        ctx.publish(name, 1)

    decision = Harness(bad).step()
    assert decision.status is RunStatus.FAILED
    assert decision.error is not None and "publish needs a name" in decision.error["message"]


# -- the engine: execution timeout ---------------------------------------------------------
def test_a_run_timed_out_fails_with_workflow_timeout_and_runs_no_more_code() -> None:
    run = Harness(sleeps, 3600)
    run.step()
    decision = run.step([run_timed_out_item("r1", 60)])

    assert kinds(decision)[-2:] == [("run_timed_out", None, None), ("run_failed", None, None)]
    assert decision.status is RunStatus.FAILED
    assert decision.error is not None and decision.error["type"] == WORKFLOW_TIMEOUT
    assert "within 60 seconds" in decision.error["message"]
    assert run.events(EventType.VALUE_PUBLISHED) == []  # its finally did not publish
    run.replay()
    # A timer firing after the end is recorded, not acted on.
    late = run.step([timer_fired(1)])
    assert late.consumed == 0


# -- the engine: heartbeat timeout ---------------------------------------------------------
def test_an_activitys_heartbeat_timeout_rides_on_each_attempt_and_its_retry() -> None:
    run = Harness(beating, 30)
    first = run.step()
    [scheduled] = run.events(EventType.ACTIVITY_SCHEDULED)
    assert scheduled.data["heartbeat_timeout"] == 30.0
    assert [t.heartbeat_timeout for t in first.tasks] == [30.0]

    silent = heartbeat_timed_out_item(1, 1, "activity", "work.long", 30.0)
    retry = run.step([silent])
    assert [(t.attempt, t.heartbeat_timeout) for t in retry.tasks] == [(2, 30.0)]
    [timed_out] = run.events(EventType.ACTIVITY_TIMED_OUT)
    assert timed_out.data["error"]["type"] == HEARTBEAT_TIMEOUT


def test_an_activity_without_a_heartbeat_timeout_records_none() -> None:
    async def plain(ctx: WorkflowContext) -> Any:
        return await ctx.activity("work.long")

    run = Harness(plain)
    decision = run.step()
    assert "heartbeat_timeout" not in run.events(EventType.ACTIVITY_SCHEDULED)[0].data
    assert decision.tasks[0].heartbeat_timeout is None


@pytest.mark.parametrize("timeout", [0, -5, "30", float("inf")])
def test_a_heartbeat_timeout_that_is_not_positive_fails_the_run_naming_it(timeout: Any) -> None:
    decision = Harness(beating, timeout).step()
    assert decision.status is RunStatus.FAILED
    assert decision.error is not None and "heartbeat_timeout" in decision.error["message"]
    assert decision.tasks == []


# -- the client, with runs advanced in this process ----------------------------------------
class Local:
    """A client, a driver and a dispatcher over one in-memory journal on a fake clock."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.journal = InMemoryJournal(clock=self.clock)
        self.registry = Registry()
        for fn, name in ((progress, "progress"), (sleeps, "sleeps"), (collects, "collects")):
            self.registry.add(fn, name=name, version="1")
        self.publisher = RecordingPublisher()
        settings = Settings()
        self.driver = Driver(
            self.journal, self.registry, self.publisher, settings, owner="w", clock=self.clock
        )
        starter = Driver(
            self.journal,
            self.registry,
            self.publisher,
            replace(settings, cache_size=0),
            owner="s",
            clock=self.clock,
        )
        self.client = Client(self.journal, self.registry, self.publisher, settings, driver=starter)
        self.dispatcher = Dispatcher(self.journal, self.publisher, settings, clock=self.clock)

    def settle(self) -> None:
        """Replay every run a replay was published for, until none is."""
        while True:
            _, replays = self.publisher.take()
            if not replays:
                return
            for ref in replays:
                self.driver.advance(ref.run_id)

    def finish_activity(self, run_id: str, command_id: int, result: Any) -> None:
        self.driver.deliver(
            run_id, completed(command_id, result), task_id=f"{run_id}:{command_id}:1"
        )
        self.settle()


def test_query_returns_the_newest_value_and_follows_the_run() -> None:
    local = Local()
    run_id = local.client.start("progress", 2, run_id="p1")
    assert queries.query(local.client, run_id, "progress") == {"done": 0, "of": 2}
    local.finish_activity(run_id, 2, "a")
    assert queries.query(local.client, run_id, "progress") == {"done": 1, "of": 2}
    local.finish_activity(run_id, 4, "b")
    assert local.client.result(run_id, timeout=1) == "done"
    assert queries.query(local.client, run_id, "progress") == {"done": 2, "of": 2}


def test_query_of_a_name_never_published_is_a_lookup_error_after_its_timeout() -> None:
    local = Local()
    run_id = local.client.start("progress", 1, run_id="p1")
    with pytest.raises(NotPublished, match="no value under 'eta'") as caught:
        queries.query(local.client, run_id, "eta", timeout=0.05)
    assert isinstance(caught.value, LookupError)


def test_query_bad_input_is_a_clear_error() -> None:
    local = Local()
    with pytest.raises(UnknownRun, match="nope"):
        queries.query(local.client, "nope", "progress")
    local.client.start("progress", 1, run_id="p1")
    with pytest.raises(ValueError, match="name"):
        queries.query(local.client, "p1", "")
    with pytest.raises(ValueError, match="timeout"):
        queries.query(local.client, "p1", "progress", timeout=-1)


def test_start_with_a_timeout_fails_the_run_once_the_dispatcher_sees_its_deadline() -> None:
    local = Local()
    run_id = local.client.start("sleeps", 3600, run_id="t1", timeout=60)
    local.clock.advance(59)
    local.dispatcher.tick()
    local.settle()
    assert local.journal.describe(run_id).status is RunStatus.SUSPENDED  # type: ignore[union-attr]

    local.clock.advance(1)
    local.dispatcher.tick()
    local.settle()
    with pytest.raises(WorkflowTimeout) as caught:
        local.client.result(run_id, timeout=1)
    assert isinstance(caught.value, WorkflowFailed)
    assert caught.value.error_type == WORKFLOW_TIMEOUT
    check_history(local.journal.history(run_id))


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "60", True])
def test_start_with_a_timeout_that_is_not_positive_writes_nothing(timeout: Any) -> None:
    local = Local()
    with pytest.raises((ValueError, TypeError), match="timeout"):
        local.client.start("sleeps", 1, run_id="t1", timeout=timeout)
    assert local.journal.describe("t1") is None
    assert local.publisher.take() == ([], [])


def test_signal_with_start_starts_once_and_delivers_every_signal() -> None:
    local = Local()
    for n in range(3):
        assert (
            signal_start.signal_with_start(
                local.client, "collects", 3, run_id="c1", signal="item", payload=n
            )
            == "c1"
        )
    local.settle()
    assert local.client.result("c1", timeout=1) == [0, 1, 2]
    history = local.journal.history("c1")
    assert sum(e.type is EventType.RUN_STARTED for e in history) == 1
    assert sum(e.type is EventType.SIGNAL_RECEIVED for e in history) == 3


def test_signal_with_start_bad_input_writes_nothing() -> None:
    local = Local()
    bad: list[dict[str, Any]] = [
        {"run_id": "c1", "signal": "", "payload": None},
        {"run_id": "c1", "signal": "item", "payload": object()},
        {"run_id": "bad id", "signal": "item", "payload": None},
        {"run_id": "c1", "signal": "item", "payload": None, "timeout": 0},
    ]
    for options in bad:
        with pytest.raises((ValueError, TypeError)):
            signal_start.signal_with_start(local.client, "collects", 1, **options)
    with pytest.raises(ValueError):
        signal_start.signal_with_start(local.client, "collects", 1, run_id=None, signal="item")  # type: ignore[arg-type]
    assert local.journal.list_runs() == []
    assert local.publisher.take() == ([], [])


def test_signal_with_start_to_an_ended_run_is_refused() -> None:
    local = Local()
    signal_start.signal_with_start(local.client, "collects", 1, run_id="c1", signal="item")
    local.settle()
    assert local.client.result("c1", timeout=1) == [None]
    with pytest.raises(RunClosed, match="c1"):
        signal_start.signal_with_start(local.client, "collects", 1, run_id="c1", signal="item")


def test_signal_with_start_of_an_id_of_another_workflow_is_refused_before_sending() -> None:
    local = Local()
    local.client.start("sleeps", 10, run_id="x1")
    with pytest.raises(ValueError, match="already used by workflow 'sleeps'"):
        signal_start.signal_with_start(local.client, "collects", 1, run_id="x1", signal="item")
    assert local.journal.history("x1")[-1].type is not EventType.SIGNAL_RECEIVED
    assert not [i for i in local.journal._runs["x1"].inbox.values()]
