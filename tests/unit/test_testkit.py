"""The test kit runs the reference workflows in-process, skipping the time their timers take.

Each test asserts what a workflow author cares about: the result or error, what ran (the
history, the activities called) and how much virtual time passed, and that the wall time
stayed short even when a timer waits for a day.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery

import tasks
from orchestrator import (
    ActivityFailed,
    Cancelled,
    NotPublished,
    Orchestrator,
    RetryPolicy,
    UnknownRun,
    WorkflowContext,
    WorkflowFailed,
)
from orchestrator.testing import VirtualClock, WorkflowEnvironment

BIG = tasks.APPROVAL_THRESHOLD  # an order this large waits for approval
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def env() -> Iterator[WorkflowEnvironment]:
    with WorkflowEnvironment(tasks.orc, start_time=T0) as environment:
        yield environment


@pytest.fixture(autouse=True)
def quick() -> Iterator[None]:
    """Every test here finishes within a second of wall time, however long its timers."""
    began = time.perf_counter()
    yield
    assert time.perf_counter() - began < 1.0


def kinds(env: WorkflowEnvironment, run_id: str, kind: str) -> list[str]:
    """The task names of one kind of event in a run's history, in order."""
    return [e.data["task"].rpartition(".")[2] for e in env.history(run_id) if e.type == kind]


# -- the reference order workflow ----------------------------------------------------------
def test_a_small_order_is_reserved_charged_and_shipped_by_its_child(
    env: WorkflowEnvironment,
) -> None:
    run_id = env.start(tasks.order, "o-1", 1200, ["book"])
    result = env.result(run_id)
    assert result["status"] == "shipped" and result["amount"] == 1200
    assert result["tracking_number"].startswith("trk-")
    assert kinds(env, run_id, "activity_scheduled") == ["reserve_stock", "charge"]
    child = next(e for e in env.history(run_id) if e.type == "child_completed")
    shipment = env.describe(child.data["child_run_id"])
    assert (shipment.workflow, shipment.parent_run_id) == ("shipment", run_id)
    assert kinds(env, shipment.run_id, "activity_scheduled") == ["pack", "ship"]
    assert env.now() - T0 == timedelta(seconds=1)  # the one-second hold before shipping


def test_a_large_order_waits_for_approval_then_ships(env: WorkflowEnvironment) -> None:
    run_id = env.start(tasks.order, "o-2", BIG, ["piano"])
    assert env.describe(run_id).reason == "waiting for signal 'approve'"
    env.signal(run_id, "approve", True)
    assert env.result(run_id)["approved"] is True
    assert env.now() - T0 < timedelta(minutes=1)


def test_an_unapproved_order_times_out_after_its_day_and_is_compensated(
    env: WorkflowEnvironment,
) -> None:
    run_id = env.start(tasks.order, "o-3", BIG, ["piano"])
    with pytest.raises(WorkflowFailed, match=r"not approved \(timed out\)"):
        env.result(run_id)
    assert env.now() - T0 >= tasks.APPROVAL_TIMEOUT
    assert kinds(env, run_id, "compensation_scheduled") == ["refund", "release_stock"]
    assert env.describe(run_id).status == "failed"


def test_a_rejected_order_is_compensated_at_once(env: WorkflowEnvironment) -> None:
    run_id = env.start(tasks.order, "o-4", BIG, ["piano"])
    env.signal(run_id, "approve", False)
    with pytest.raises(WorkflowFailed, match=r"rejected"):
        env.result(run_id)
    assert len([e for e in env.history(run_id) if e.type == "compensation_completed"]) == 2
    assert env.now() == T0


def test_a_refused_payment_is_not_retried_and_releases_the_stock(
    env: WorkflowEnvironment,
) -> None:
    run_id = env.start(tasks.order, "o-5", tasks.CHARGE_LIMIT + 1, ["car"])
    with pytest.raises(WorkflowFailed, match="payment refused"):
        env.result(run_id)
    assert kinds(env, run_id, "activity_scheduled") == ["reserve_stock", "charge"]
    assert kinds(env, run_id, "compensation_scheduled") == ["release_stock"]


def test_cancelling_an_order_waiting_for_approval_runs_its_compensations(
    env: WorkflowEnvironment,
) -> None:
    run_id = env.start(tasks.order, "o-6", BIG, ["piano"])
    env.cancel(run_id, "customer changed their mind")
    with pytest.raises(Cancelled, match="changed their mind"):
        env.result(run_id)
    assert kinds(env, run_id, "compensation_scheduled") == ["refund", "release_stock"]


def test_a_flaky_charge_is_retried_with_its_backoff_skipped() -> None:
    calls: list[datetime] = []

    def charge(order_id: str, amount: int) -> dict[str, Any]:
        calls.append(environment.now())
        if len(calls) < 3:
            raise ConnectionError("payment provider unreachable")
        return {"charge_id": "ch-1", "amount": amount}

    with WorkflowEnvironment(tasks.orc, {"charge": charge}, start_time=T0) as environment:
        run_id = environment.start(tasks.order, "o-7", 500, ["pen"])
        assert environment.result(run_id)["charge_id"] == "ch-1"
        attempts = [
            e.attempt for e in environment.history(run_id) if e.data.get("task") == "tasks.charge"
        ]
    assert attempts == [1, 2, 3]
    # CHARGE_RETRY waits 1 s, then 2 s: virtual seconds, not wall time
    assert [(c - T0).total_seconds() for c in calls] == [0.0, 1.0, 3.0]


# -- the reference subscription: signals and continue-as-new -------------------------------
def test_a_subscription_bills_every_month_continuing_as_new(env: WorkflowEnvironment) -> None:
    month = timedelta(days=30).total_seconds()
    run_id = env.start(tasks.subscription, "c-1", "pro", month, 3)
    result = env.result(run_id)
    assert result == {"customer_id": "c-1", "plan": "pro", "periods_billed": 3, "cancelled": False}
    assert env.now() - T0 == timedelta(days=90)
    tip = env.describe(run_id)  # the first run's id reaches its chain's live tip
    assert tip.run_id != run_id and tip.args == ["c-1", "pro", month, 1, 2]
    assert env.history(run_id)[0].data["args"] == tip.args


def test_a_subscription_cancelled_by_signal_in_its_second_month(
    env: WorkflowEnvironment,
) -> None:
    month = timedelta(days=30).total_seconds()
    run_id = env.start(tasks.subscription, "c-2", "basic", month, 12)
    env.advance(timedelta(days=45))
    assert env.activities.calls["tasks.charge"] == 2
    env.signal(run_id, "cancel", "too expensive")  # reaches the chain's live tip
    result = env.result(run_id)
    assert (result["periods_billed"], result["cancelled"]) == (2, True)
    assert env.now() - T0 == timedelta(days=45)


# -- workflows of this module: timeouts, cancellation of children, bad input ----------------
app = Celery("testkit_tests", set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"])
orc = Orchestrator(app)


@app.task
def slow(seconds: float) -> str:
    return f"took {seconds}"


@orc.workflow(name="timed", version="1")
async def timed(ctx: WorkflowContext, seconds: float) -> str:
    result: str = await ctx.activity(
        slow, seconds, timeout=30, retry=RetryPolicy(max_attempts=2, initial_interval=5)
    )
    return result


@orc.workflow(name="sleeper", version="1")
async def sleeper(ctx: WorkflowContext, days: int) -> str:
    await ctx.sleep(timedelta(days=days))
    return ctx.now().isoformat()


@orc.workflow(name="parent", version="1")
async def parent(ctx: WorkflowContext) -> Any:
    return await ctx.child(sleeper, 7)


def test_an_activity_that_outlives_its_timeout_is_retried_then_fails() -> None:
    def too_slow(seconds: float) -> str:
        environment.advance(seconds)  # the activity takes this long, in virtual time
        return "late"

    with WorkflowEnvironment(orc, {"slow": too_slow}, start_time=T0) as environment:
        run_id = environment.start(timed, 31)
        with pytest.raises(WorkflowFailed, match="did not finish within 30"):
            environment.result(run_id)
        outcomes = [e.type.value for e in environment.history(run_id) if e.attempt]
    assert outcomes == [
        "activity_scheduled",
        "activity_timed_out",
        "activity_scheduled",
        "activity_timed_out",
    ]


def test_an_activity_within_its_timeout_completes(
    workflow_environment: Callable[..., WorkflowEnvironment],
) -> None:
    environment = workflow_environment(orc)
    assert environment.result(environment.start(timed, 1)) == "took 1"


def test_cancelling_a_parent_cancels_its_sleeping_child() -> None:
    with WorkflowEnvironment(orc, start_time=T0) as environment:
        run_id = environment.start(parent)
        child = next(e for e in environment.history(run_id) if e.type == "child_started")
        environment.cancel(run_id)
        with pytest.raises(Cancelled):
            environment.result(run_id)
        assert environment.describe(child.data["child_run_id"]).status == "cancelled"
        assert environment.now() == T0


def test_advance_fires_timers_on_the_way_and_result_skips_to_the_next() -> None:
    with WorkflowEnvironment(orc, start_time=T0) as environment:
        week = environment.start(sleeper, 7)
        month = environment.start(sleeper, 30)
        environment.advance(timedelta(days=10))
        assert environment.describe(week).status == "completed"
        assert environment.describe(month).status == "suspended"
        assert environment.result(week) == (T0 + timedelta(days=7)).isoformat()
        assert environment.result(month) == (T0 + timedelta(days=30)).isoformat()
        assert environment.now() == T0 + timedelta(days=30)


def test_result_with_a_timeout_stops_the_clock_there() -> None:
    with WorkflowEnvironment(orc, start_time=T0) as environment:
        run_id = environment.start(sleeper, 2)
        with pytest.raises(TimeoutError, match=f"run {run_id} did not finish within 3600"):
            environment.result(run_id, timeout=3600)
        assert environment.now() == T0 + timedelta(hours=1)


@orc.workflow(name="waits_forever", version="1")
async def waits_forever(ctx: WorkflowContext) -> Any:
    return await ctx.wait_signal("never")


def test_a_run_nothing_can_wake_is_reported_not_waited_for() -> None:
    with WorkflowEnvironment(orc) as environment:
        run_id = environment.start(waits_forever)
        with pytest.raises(TimeoutError, match=r"can never finish.*signal 'never'"):
            environment.result(run_id)


def test_bad_input_is_refused_clearly(env: WorkflowEnvironment) -> None:
    with pytest.raises(TypeError, match="'charge' maps to 42"):
        WorkflowEnvironment(tasks.orc, {"charge": 42})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'chrage', which is not a task of app 'tasks'"):
        WorkflowEnvironment(tasks.orc, {"chrage": print})
    with pytest.raises(ValueError, match="start_time must be an aware datetime"):
        WorkflowEnvironment(tasks.orc, start_time=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="seconds >= 0"):
        env.advance(-1)
    run_id = env.start(tasks.order, "o-8", 10, ["pen"])
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        env.result(run_id, timeout=0)
    with pytest.raises(UnknownRun):
        env.describe("no-such-run")
    with pytest.raises(NotPublished):
        env.query(run_id, "progress")
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.start(tasks.order, "o-9", 10, ["pen"])


@orc.workflow(name="calls_elsewhere", version="1")
async def calls_elsewhere(ctx: WorkflowContext) -> Any:
    return await ctx.activity(app.signature("billing.invoice"))


def test_an_activity_nobody_can_run_is_a_clear_error() -> None:
    with (
        WorkflowEnvironment(orc) as environment,
        pytest.raises(LookupError, match=r"'billing\.invoice' is neither a task"),
    ):
        environment.start(calls_elsewhere)


@orc.workflow(name="catches", version="1")
async def catches(ctx: WorkflowContext) -> str:
    try:
        await ctx.activity(slow, 1, retry=RetryPolicy(max_attempts=1))
    except ActivityFailed as exc:
        return exc.error_type
    return "no error"


def test_activity_failures_reach_the_workflow_as_in_production() -> None:
    def broken(seconds: float) -> str:
        raise KeyError("gone")

    with WorkflowEnvironment(orc, {"slow": broken}) as environment:
        assert environment.result(environment.start(catches)) == "KeyError"


def test_the_clock_keeps_the_microseconds_event_times_keep() -> None:
    clock = VirtualClock(1_796_547_854.0431687)
    assert datetime.fromtimestamp(clock(), UTC).timestamp() == clock() >= 1_796_547_854.0431687
    clock.move_to(clock() - 5)
    assert clock() >= 1_796_547_854.0431687  # never back


def test_an_activity_may_start_and_signal_runs_which_go_on_once_it_returns() -> None:
    def kick_off(seconds: float) -> str:
        environment.signal(waiting, "never", "at last")
        return environment.start(sleeper, 1, run_id="started-by-an-activity")

    with WorkflowEnvironment(orc, {"slow": kick_off}, start_time=T0) as environment:
        waiting = environment.start(waits_forever)
        assert environment.result(environment.start(timed, 1)) == "started-by-an-activity"
        assert environment.result(waiting) == "at last"
        assert environment.result("started-by-an-activity") == (T0 + timedelta(days=1)).isoformat()


@orc.workflow(name="fan_out", version="1")
async def fan_out(ctx: WorkflowContext) -> list[Any]:
    return await ctx.gather(
        ctx.activity(slow, 1), ctx.child(sleeper, 3), ctx.activity(slow, 2), ctx.sleep(60)
    )


def test_gathered_activities_children_and_timers_all_resolve() -> None:
    with WorkflowEnvironment(orc, start_time=T0) as environment:
        result = environment.result(environment.start(fan_out))
    assert result == ["took 1", (T0 + timedelta(days=3)).isoformat(), "took 2", None]


@orc.workflow(name="countdown", version="1")
async def countdown(ctx: WorkflowContext, days: int) -> str:
    for left in range(days, 0, -1):
        ctx.publish("left", left)
        await ctx.sleep(86400)
    ctx.publish("left", 0)
    return "done"


def test_queries_read_published_values_and_wait_in_virtual_time() -> None:
    with WorkflowEnvironment(orc, start_time=T0) as environment:
        run_id = environment.start(countdown, 3)
        assert environment.query(run_id, "left") == 3
        environment.advance(timedelta(days=1))
        assert environment.query(run_id, "left") == 2
        with pytest.raises(NotPublished):
            environment.query(run_id, "nothing", timeout=3600)
        assert environment.now() == T0 + timedelta(days=1, hours=1)  # waited in virtual time
        assert environment.result(run_id) == "done"
        assert environment.query(run_id, "left") == 0
