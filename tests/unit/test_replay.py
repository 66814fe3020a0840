"""The replay engine, driven step by step against an in-memory history."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator import (
    ActivityFailed,
    Cancelled,
    EventType,
    NonDeterminismError,
    RetryPolicy,
    RunStatus,
    WorkflowContext,
)
from orchestrator.model.events import COMMAND_EVENTS
from orchestrator.model.records import InboxItem, OutboxTask
from tests.builders import completed
from tests.unit.harness import (
    START,
    Harness,
    cancel_requested,
    failed,
    kinds,
    summary,
    timed_out,
    timer_fired,
)

# -- command ids --------------------------------------------------------------------------------


async def mixed_commands(ctx: WorkflowContext) -> list[Any]:
    first = await ctx.activity("a")
    await ctx.sleep(5)
    ctx.patched("feature-x")
    pair = await ctx.gather(ctx.activity("b"), ctx.activity("c"))
    return [first, *pair]


def run_mixed(run_id: str) -> Harness:
    h = Harness(mixed_commands, run_id=run_id)
    h.step()
    h.step([completed(1, "A")])
    h.step([timer_fired(2)])
    h.step([completed(5, "C"), completed(4, "B")])
    return h


def test_command_ids_follow_the_order_of_issue() -> None:
    h = run_mixed("run-ids")

    issued = [
        (e.type.value, e.command_id, e.data.get("task") or e.data.get("name"))
        for e in h.history
        if e.type in COMMAND_EVENTS and e.command_id is not None
    ]
    assert issued == [
        ("activity_scheduled", 1, "a"),
        ("timer_started", 2, None),
        ("marker_recorded", 3, "feature-x"),
        ("activity_scheduled", 4, "b"),
        ("activity_scheduled", 5, "c"),
    ]
    assert h.decisions[-1].status is RunStatus.COMPLETED
    assert h.decisions[-1].result == ["A", "B", "C"]


def test_command_ids_are_the_same_in_every_run_of_the_same_code() -> None:
    one, two = run_mixed("run-x"), run_mixed("run-x")

    def shape(h: Harness) -> list[tuple[Any, ...]]:
        return [(e.seq, e.type, e.command_id, e.attempt, e.data) for e in h.history]

    assert shape(one) == shape(two)
    assert one.replay().finished


# -- activities ---------------------------------------------------------------------------------


async def checkout(ctx: WorkflowContext, order_id: str, amount: int) -> dict[str, Any]:
    charge_id = await ctx.activity("charge", order_id, amount)
    receipt = await ctx.activity("email_receipt", order_id, charge_id=charge_id)
    return {"charge": charge_id, "receipt": receipt}


def test_sequential_activities_run_one_after_another_with_results_passed_along() -> None:
    h = Harness(checkout, "o-1", 250)

    first = h.step()
    assert kinds(first) == [("activity_scheduled", 1, 1)]
    assert [(t.task_name, t.args, t.kwargs) for t in first.tasks] == [("charge", ["o-1", 250], {})]
    assert first.status is RunStatus.SUSPENDED
    assert first.reason == "waiting for activity charge (command 1)"

    second = h.step([completed(1, "ch_9")])
    assert kinds(second) == [("activity_completed", 1, 1), ("activity_scheduled", 2, 1)]
    assert [(t.task_name, t.args, t.kwargs) for t in second.tasks] == [
        ("email_receipt", ["o-1"], {"charge_id": "ch_9"})
    ]

    last = h.step([completed(2, "sent")])
    assert last.status is RunStatus.COMPLETED
    assert last.result == {"charge": "ch_9", "receipt": "sent"}
    assert h.types() == [
        "run_started",
        "activity_scheduled",
        "activity_completed",
        "activity_scheduled",
        "activity_completed",
        "run_completed",
    ]
    assert h.history[-1].data == {"result": {"charge": "ch_9", "receipt": "sent"}}


def test_outbox_task_of_an_activity_names_run_command_attempt_and_queue() -> None:
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.activity("resize", "img.png", queue="images", timeout=timedelta(seconds=45))

    decision = Harness(wf, run_id="run-q").step()

    (task,) = decision.tasks
    assert (task.run_id, task.command_id, task.attempt) == ("run-q", 1, 1)
    assert task.queue == "images"
    assert task.timeout_seconds == 45.0
    assert task.available_at == START
    assert task.kind == "activity"


async def fan_out(ctx: WorkflowContext, n: int) -> list[Any]:
    return await ctx.gather(*(ctx.activity("square", i) for i in range(n)))


def test_gather_schedules_all_at_once_and_returns_results_in_order() -> None:
    n = 20
    h = Harness(fan_out, n)

    first = h.step()
    assert [t.args for t in first.tasks] == [[i] for i in range(n)]
    assert [e.command_id for e in first.events] == list(range(1, n + 1))

    arrival = list(range(1, n + 1))
    random.Random(7).shuffle(arrival)
    for chunk_start in range(0, n - 4, 4):
        chunk = arrival[chunk_start : chunk_start + 4]
        decision = h.step([completed(cid, (cid - 1) ** 2) for cid in chunk])
        assert decision.status is RunStatus.SUSPENDED
        assert decision.tasks == []
    last = h.step([completed(cid, (cid - 1) ** 2) for cid in arrival[-4:]])

    assert last.status is RunStatus.COMPLETED
    assert last.result == [i * i for i in range(n)]
    assert h.types().count("activity_scheduled") == n


def test_gather_with_no_awaitables_returns_an_empty_list() -> None:
    decision = Harness(fan_out, 0).step()

    assert decision.status is RunStatus.COMPLETED
    assert decision.result == []


async def enrich(ctx: WorkflowContext, user: str) -> str:
    profile = await ctx.activity("load_profile", user)
    return await ctx.activity("render", profile)


async def mixed_gather(ctx: WorkflowContext) -> list[Any]:
    return await ctx.gather(enrich(ctx, "ann"), ctx.activity("count"), enrich(ctx, "bob"))


def test_gather_mixes_helper_coroutines_and_activities() -> None:
    h = Harness(mixed_gather)

    h.step()
    assert h.scheduled() == [(1, "count", 1), (2, "load_profile", 1), (3, "load_profile", 1)]

    h.step([completed(3, "P-bob"), completed(1, 2)])
    h.step([completed(2, "P-ann")])
    assert [(name, a) for _, name, a in h.scheduled()] == [
        ("count", 1),
        ("load_profile", 1),
        ("load_profile", 1),
        ("render", 1),
        ("render", 1),
    ]
    render_bob, render_ann = h.command("render", 0), h.command("render", 1)
    assert [e.data["args"] for e in h.events(EventType.ACTIVITY_SCHEDULED)[3:]] == [
        ["P-bob"],
        ["P-ann"],
    ]

    last = h.step([completed(render_ann, "<ann>"), completed(render_bob, "<bob>")])
    assert last.status is RunStatus.COMPLETED
    assert last.result == ["<ann>", 2, "<bob>"]
    assert h.replay().finished


def test_first_error_in_gather_is_raised_while_the_others_keep_running() -> None:
    async def wf(ctx: WorkflowContext) -> dict[str, Any]:
        slow, broken = ctx.activity("slow"), ctx.activity("broken")
        try:
            await ctx.gather(slow, broken, ctx.activity("other"))
        except ActivityFailed as err:
            return {"failed": err.task_name, "slow": await slow}
        return {}

    h = Harness(wf)
    h.step()
    after_error = h.step([failed(2, "KeyError", "sku-1")])
    assert after_error.status is RunStatus.SUSPENDED
    assert after_error.reason == "waiting for activity slow (command 1)"

    last = h.step([completed(1, "done")])
    assert last.status is RunStatus.COMPLETED
    assert last.result == {"failed": "broken", "slow": "done"}


def test_error_in_a_gathered_coroutine_fails_the_run_when_not_caught() -> None:
    async def step_that_raises(ctx: WorkflowContext) -> None:
        await ctx.activity("prepare")
        raise LookupError("no such warehouse")

    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.gather(ctx.activity("fine"), step_that_raises(ctx))

    h = Harness(wf)
    h.step()
    decision = h.step([completed(2)])

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "LookupError"
    assert decision.error["message"] == "no such warehouse"
    assert h.history[-1].type is EventType.RUN_FAILED


# -- retries ------------------------------------------------------------------------------------

FLAKY = RetryPolicy(max_attempts=4, initial_interval=2, backoff=3, max_interval=10)


async def flaky(ctx: WorkflowContext) -> Any:
    return await ctx.activity("fetch", retry=FLAKY)


def test_failed_attempt_is_rescheduled_after_the_backoff_delay() -> None:
    h = Harness(flaky)
    h.step()

    expected_delays = {2: 2.0, 3: 6.0, 4: 10.0}  # 2 * 3 ** (n - 2), capped at 10
    for attempt in (1, 2, 3):
        now = START + 100 * attempt
        decision = h.step([failed(1, "ConnectionError", "reset", attempt=attempt)], now=now)
        nxt = attempt + 1
        assert kinds(decision) == [("activity_failed", 1, attempt), ("activity_scheduled", 1, nxt)]
        scheduled = decision.events[1]
        assert scheduled.data["delay"] == expected_delays[nxt]
        assert scheduled.at == now
        (task,) = decision.tasks
        assert (task.command_id, task.attempt) == (1, nxt)
        assert task.available_at == now + expected_delays[nxt]
        assert decision.status is RunStatus.SUSPENDED

    task_ids = {t.task_id for d in h.decisions for t in d.tasks}
    assert len(task_ids) == 4  # one Celery task id per attempt

    last = h.step([completed(1, "page", attempt=4)])
    assert last.status is RunStatus.COMPLETED
    assert last.result == "page"


def test_exhausted_retries_raise_activity_failed_which_the_workflow_can_handle() -> None:
    async def wf(ctx: WorkflowContext) -> dict[str, Any]:
        try:
            await ctx.activity("charge", "o-1", retry=RetryPolicy(max_attempts=2))
        except ActivityFailed as err:
            return {
                "task": err.task_name,
                "attempt": err.attempt,
                "type": err.error_type,
                "message": err.remote_message,
                "traceback": err.remote_traceback is not None,
            }
        return {"charged": True}

    h = Harness(wf)
    h.step()
    h.step([failed(1, "CardDeclined", "insufficient funds", attempt=1)])
    last = h.step([failed(1, "CardDeclined", "insufficient funds", attempt=2)])

    assert last.status is RunStatus.COMPLETED
    assert last.result == {
        "task": "charge",
        "attempt": 2,
        "type": "CardDeclined",
        "message": "insufficient funds",
        "traceback": True,
    }
    assert h.scheduled() == [(1, "charge", 1), (1, "charge", 2)]


def test_uncaught_activity_failure_fails_the_run_naming_the_activity() -> None:
    h = Harness(checkout, "o-2", 10)
    h.step()
    decision = h.step([failed(1, "ValueError", "amount too small")])

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "orchestrator.errors.ActivityFailed"
    assert "charge" in decision.error["message"]
    assert "ValueError: amount too small" in decision.error["message"]
    end = h.terminal()
    assert end is not None
    assert end.type is EventType.RUN_FAILED


@pytest.mark.parametrize("listed", ["PaymentDeclined", "shop.errors.PaymentDeclined"])
def test_non_retryable_error_fails_at_once(listed: str) -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable=(listed,))

    async def wf(ctx: WorkflowContext) -> Any:
        try:
            return await ctx.activity("pay", retry=policy)
        except ActivityFailed as err:
            return f"gave up after attempt {err.attempt}"

    h = Harness(wf)
    h.step()
    decision = h.step([failed(1, "shop.errors.PaymentDeclined", "card stolen")])

    assert decision.tasks == []
    assert decision.result == "gave up after attempt 1"
    assert h.scheduled() == [(1, "pay", 1)]


def test_other_error_types_are_still_retried_under_a_non_retryable_list() -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable=("PaymentDeclined",))

    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity("pay", retry=policy)

    h = Harness(wf)
    h.step()
    decision = h.step([failed(1, "shop.errors.GatewayTimeout", "slow")])

    assert [(t.command_id, t.attempt) for t in decision.tasks] == [(1, 2)]


def test_timed_out_attempt_is_retried_like_a_failure() -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        try:
            return await ctx.activity("export", timeout=30, retry=RetryPolicy(max_attempts=2))
        except ActivityFailed as err:
            return err.error_type

    h = Harness(wf)
    h.step()
    retry = h.step([timed_out(1, attempt=1, task="export")], now=START + 40)
    assert kinds(retry) == [("activity_timed_out", 1, 1), ("activity_scheduled", 1, 2)]
    (task,) = retry.tasks
    assert task.available_at == START + 40 + 1.0
    assert task.timeout_seconds == 30.0

    last = h.step([timed_out(1, attempt=2, task="export")])
    assert last.status is RunStatus.COMPLETED
    assert last.result == "TimeoutError"


def test_default_retry_policy_of_the_replayer_applies_to_activities_without_one() -> None:
    h = Harness(checkout, "o-3", 5, default_retry=RetryPolicy(max_attempts=3, initial_interval=7))
    h.step()

    decision = h.step([failed(1)], now=START + 10)

    (task,) = decision.tasks
    assert task.attempt == 2
    assert task.available_at == START + 17
    assert h.events(EventType.ACTIVITY_SCHEDULED)[0].data["retry"]["max_attempts"] == 3


def test_stale_outcome_of_an_earlier_attempt_is_recorded_but_ignored() -> None:
    h = Harness(flaky)
    h.step()
    h.step([timed_out(1, attempt=1)])

    late = h.step([completed(1, "from attempt 1", attempt=1)])
    assert kinds(late) == [("activity_completed", 1, 1)]
    assert late.status is RunStatus.SUSPENDED
    assert h.history[-1].data == {"result": "from attempt 1"}

    last = h.step([completed(1, "from attempt 2", attempt=2)])
    assert last.status is RunStatus.COMPLETED
    assert last.result == "from attempt 2"
    assert h.replay().finished


def test_duplicate_outcome_of_a_finished_activity_is_ignored() -> None:
    h = Harness(checkout, "o-4", 1)
    h.step()
    h.step([completed(1, "ch_1")])

    again = h.step([completed(1, "ch_other")])

    assert kinds(again) == [("activity_completed", 1, 1)]
    assert again.tasks == []
    last = h.step([completed(2, "sent")])
    assert last.result == {"charge": "ch_1", "receipt": "sent"}


# -- timers and workflow time -------------------------------------------------------------------


def test_sleep_starts_a_durable_timer_and_resumes_when_it_fires() -> None:
    async def wf(ctx: WorkflowContext) -> str:
        await ctx.activity("reserve")
        await ctx.sleep(timedelta(minutes=5))
        return ctx.now().isoformat()

    h = Harness(wf)
    h.step()
    reserved_at = START + 12.5
    decision = h.step([completed(1)], now=reserved_at)

    assert kinds(decision)[-1] == ("timer_started", 2, None)
    assert decision.events[-1].data == {"fire_at": reserved_at + 300, "seconds": 300.0}
    assert [(t.command_id, t.fire_at) for t in decision.timers] == [(2, reserved_at + 300)]
    assert decision.status is RunStatus.SUSPENDED
    assert decision.reason is not None
    assert decision.reason.startswith("waiting for timer 2")

    fired_at = reserved_at + 301
    last = h.step([timer_fired(2)], now=fired_at)
    assert kinds(last) == [("timer_fired", 2, None), ("run_completed", None, None)]
    assert last.result == datetime.fromtimestamp(fired_at, UTC).isoformat()


def test_sleep_of_zero_seconds_does_not_start_a_timer() -> None:
    async def wf(ctx: WorkflowContext) -> str:
        await ctx.sleep(0)
        return "awake"

    decision = Harness(wf).step()

    assert decision.timers == []
    assert decision.result == "awake"


def test_now_is_the_time_of_the_event_being_processed_and_the_same_on_replay() -> None:
    seen: list[tuple[str, datetime]] = []

    async def wf(ctx: WorkflowContext) -> list[str]:
        seen.append(("start", ctx.now()))
        await ctx.activity("a")
        seen.append(("after a", ctx.now()))
        await ctx.sleep(10)
        seen.append(("after sleep", ctx.now()))
        return [t.isoformat() for _, t in seen[-3:]]

    start = START + 0.123456
    h = Harness(wf, start=start)
    h.step(now=start + 1)
    h.step([completed(1)], now=start + 5.5)
    seen.clear()
    last = h.step([timer_fired(2)], now=start + 20.25)

    expected = [
        ("start", datetime.fromtimestamp(start, UTC)),
        ("after a", datetime.fromtimestamp(start + 5.5, UTC)),
        ("after sleep", datetime.fromtimestamp(start + 20.25, UTC)),
    ]
    assert seen == expected
    assert last.result == [t.isoformat() for _, t in expected]

    seen.clear()
    replayed = h.replay()
    assert seen == expected
    assert replayed.decide([], now=start + 999).result == last.result


async def draws(ctx: WorkflowContext) -> dict[str, Any]:
    before = [ctx.random().random(), str(ctx.uuid4())]
    await ctx.activity("a")
    after = [ctx.random().randint(0, 10**9), str(ctx.uuid4())]
    return {"before": before, "after": after}


def test_random_and_uuid4_are_identical_across_replays() -> None:
    h = Harness(draws, run_id="run-r")
    h.step()
    result = h.step([completed(1)]).result

    replayed = h.replay().decide([], now=START + 100)
    assert replayed.status is RunStatus.COMPLETED
    assert replayed.result == result

    again = Harness(draws, run_id="run-r")
    again.step()
    assert again.step([completed(1)]).result == result

    other = Harness(draws, run_id="run-other")
    other.step()
    assert other.step([completed(1)]).result != result
    assert len(set(result["before"] + result["after"])) == 4


# -- code-change markers ------------------------------------------------------------------------


async def ship_v1(ctx: WorkflowContext) -> Any:
    await ctx.activity("pack")
    return await ctx.activity("ship_ground")


async def ship_v2(ctx: WorkflowContext) -> Any:
    await ctx.activity("pack")
    if ctx.patched("air-shipping"):
        return await ctx.activity("ship_air")
    return await ctx.activity("ship_ground")


def test_patched_in_a_new_run_is_true_and_records_a_marker() -> None:
    h = Harness(ship_v2)
    h.step()

    decision = h.step([completed(1)])

    assert kinds(decision) == [
        ("activity_completed", 1, 1),
        ("marker_recorded", 2, None),
        ("activity_scheduled", 3, 1),
    ]
    assert decision.events[1].data == {"name": "air-shipping"}
    assert [t.task_name for t in decision.tasks] == ["ship_air"]
    last = h.step([completed(3, "by air")])
    assert last.result == "by air"
    assert h.replay().finished


def test_patched_on_history_recorded_by_old_code_is_false_and_records_nothing() -> None:
    h = Harness(ship_v1)
    h.step()
    h.step([completed(1)])

    h.fn = ship_v2  # new code deployed while the run waits for ship_ground
    last = h.step([completed(2, "by ground")])

    assert last.status is RunStatus.COMPLETED
    assert last.result == "by ground"
    assert h.events(EventType.MARKER_RECORDED) == []
    assert h.replay().finished


def test_patched_past_the_end_of_old_history_takes_the_new_path() -> None:
    h = Harness(ship_v1)
    h.step()  # recorded by old code: waiting for pack

    h.fn = ship_v2
    decision = h.step([completed(1)])

    assert [e.type for e in decision.events[1:]] == [
        EventType.MARKER_RECORDED,
        EventType.ACTIVITY_SCHEDULED,
    ]
    assert [t.task_name for t in decision.tasks] == ["ship_air"]


# -- runs that fail -----------------------------------------------------------------------------


class OrderRejected(Exception):
    pass


def test_workflow_raising_fails_the_run_with_type_message_and_traceback() -> None:
    async def reject_big_orders(ctx: WorkflowContext, amount: int) -> None:
        limit = await ctx.activity("limit")
        if amount > limit:
            raise OrderRejected(f"amount {amount} over limit {limit}")

    h = Harness(reject_big_orders, 900)
    h.step()
    decision = h.step([completed(1, 500)])

    assert decision.status is RunStatus.FAILED
    error = decision.error
    assert error is not None
    assert error["type"].endswith("OrderRejected")
    assert error["message"] == "amount 900 over limit 500"
    assert "reject_big_orders" in error["traceback"]
    assert "OrderRejected: amount 900 over limit 500" in error["traceback"]
    end = h.terminal()
    assert end is not None
    assert end.type is EventType.RUN_FAILED
    assert end.data == {"error": error}


@pytest.mark.parametrize(
    ("value", "detail"),
    [(object(), "not JSON serializable"), (float("nan"), "Out of range float")],
)
def test_returning_a_value_json_cannot_carry_fails_with_payload_error(
    value: Any, detail: str
) -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        await ctx.activity("a")
        return value

    h = Harness(wf)
    h.step()
    decision = h.step([completed(1)])

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "orchestrator.errors.PayloadError"
    assert "workflow result" in decision.error["message"]
    assert detail in decision.error["message"]


def test_activity_arguments_json_cannot_carry_fail_the_run_before_scheduling() -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity("store", {"blob": object()})

    decision = Harness(wf).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "orchestrator.errors.PayloadError"
    assert "arguments of activity store" in decision.error["message"]
    assert decision.tasks == []
    assert [e.type for e in decision.events] == [EventType.RUN_FAILED]


class _Foreign:
    def __await__(self) -> Generator[str, None, None]:
        yield "something else"


@pytest.mark.parametrize(
    "awaitable",
    [lambda: asyncio.sleep(0), _Foreign],
    ids=["asyncio.sleep(0)", "foreign-awaitable"],
)
def test_awaiting_a_non_workflow_awaitable_fails_with_a_clear_message(awaitable: Any) -> None:
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.activity("a")
        await awaitable()

    h = Harness(wf)
    h.step()
    decision = h.step([completed(1)])

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "TypeError"
    assert "not a workflow awaitable" in decision.error["message"]


def test_awaiting_asyncio_sleep_fails_with_a_message_pointing_at_ctx() -> None:
    async def wf(ctx: WorkflowContext) -> None:
        await asyncio.sleep(5)

    decision = Harness(wf).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert "workflow awaitable" in decision.error["message"]


# -- nondeterminism -----------------------------------------------------------------------------


async def two_steps(ctx: WorkflowContext) -> Any:
    await ctx.activity("validate")
    return await ctx.activity("charge")


async def renamed_second(ctx: WorkflowContext) -> Any:
    await ctx.activity("validate")
    return await ctx.activity("charge_v2")


async def dropped_second(ctx: WorkflowContext) -> Any:
    return await ctx.activity("validate")


async def extra_between(ctx: WorkflowContext) -> Any:
    await ctx.activity("validate")
    await ctx.activity("audit")
    return await ctx.activity("charge")


async def sleep_instead(ctx: WorkflowContext) -> Any:
    await ctx.activity("validate")
    await ctx.sleep(3)


async def swallows_errors(ctx: WorkflowContext) -> Any:
    await ctx.activity("validate")
    try:
        return await ctx.activity("charge_v2")
    except Exception:
        return "swallowed"


@pytest.mark.parametrize(
    ("changed", "names"),
    [
        (renamed_second, ["charge_v2", "charge"]),
        (dropped_second, ["charge"]),
        (extra_between, ["audit", "charge"]),
        (sleep_instead, ["timer_started", "charge"]),
        (swallows_errors, ["charge_v2", "charge"]),
    ],
    ids=["renamed-task", "missing-command", "extra-command", "different-kind", "swallowed"],
)
def test_nondeterministic_change_is_refused_and_leaves_history_untouched(
    changed: Any, names: list[str]
) -> None:
    h = Harness(two_steps)
    h.step()
    h.step([completed(1, "ok")])
    before = list(h.history)

    h.fn = changed
    with pytest.raises(NonDeterminismError) as caught:
        h.step([completed(2, "charged")])

    assert "command 2" in str(caught.value)
    assert caught.value.run_id == "run-1"
    for name in names:
        assert name in str(caught.value)
    assert h.history == before

    h.fn = two_steps  # the right code again: the run carries on
    last = h.step([completed(2, "charged")])
    assert last.status is RunStatus.COMPLETED
    assert last.result == "charged"


def test_history_with_a_command_the_code_no_longer_issues_at_the_end_is_refused() -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.gather(ctx.activity("a"), ctx.activity("b"))

    async def only_a(ctx: WorkflowContext) -> Any:
        return await ctx.gather(ctx.activity("a"))

    h = Harness(wf)
    h.step()

    with pytest.raises(NonDeterminismError, match="activity_scheduled b") as caught:
        h.replay(only_a)
    assert caught.value.command_id == 2


def test_changing_the_retry_policy_in_code_replays_with_the_recorded_policy() -> None:
    async def v1(ctx: WorkflowContext) -> Any:
        return await ctx.activity("fetch", retry=RetryPolicy(max_attempts=3))

    async def v2(ctx: WorkflowContext) -> Any:
        return await ctx.activity("fetch", retry=RetryPolicy(max_attempts=1))

    h = Harness(v1)
    h.step()
    h.step([failed(1, attempt=1)])  # history: attempt 2 scheduled under max_attempts=3

    h.fn = v2
    last = h.step([completed(1, "page", attempt=2)])

    assert last.status is RunStatus.COMPLETED
    assert last.result == "page"


# -- cancellation -------------------------------------------------------------------------------


def test_cancel_raises_cancelled_at_the_current_await_and_cancels_the_run() -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        try:
            await ctx.activity("a")
            await ctx.sleep(3600)
        except Exception:
            return "an except Exception clause must not swallow a cancellation"
        return "finished"

    h = Harness(wf)
    h.step()
    h.step([completed(1)])

    decision = h.step([cancel_requested("customer asked")])

    assert decision.status is RunStatus.CANCELLED
    assert decision.reason == "customer asked"
    assert kinds(decision) == [("cancel_requested", None, None), ("run_cancelled", None, None)]
    assert h.history[-1].data == {"reason": "customer asked"}
    assert h.replay().finished


def test_workflow_that_cleans_up_after_cancel_ends_cancelled_after_the_cleanup() -> None:
    cleaned: list[Any] = []

    async def wf(ctx: WorkflowContext) -> Any:
        try:
            return await ctx.activity("long_job")
        except Cancelled:
            cleaned.append(await ctx.activity("cleanup"))
            raise

    h = Harness(wf)
    h.step()

    cancel = h.step([cancel_requested("deploy")])
    assert cancel.status is RunStatus.SUSPENDED
    assert [t.task_name for t in cancel.tasks] == ["cleanup"]

    last = h.step([completed(2, "cleaned")])
    assert last.status is RunStatus.CANCELLED
    assert last.reason == "deploy"
    assert cleaned == ["cleaned"]
    assert h.types()[-3:] == ["activity_scheduled", "activity_completed", "run_cancelled"]
    assert h.replay().finished


def test_cancel_during_a_gather_of_coroutines_cancels_the_run() -> None:
    h = Harness(mixed_gather)
    h.step()
    h.step([completed(2, "P-ann")])

    decision = h.step([cancel_requested(None), completed(3, "P-bob")])

    assert decision.status is RunStatus.CANCELLED
    assert decision.tasks == []
    assert kinds(decision) == [("cancel_requested", None, None), ("run_cancelled", None, None)]


# -- cached and fresh replay --------------------------------------------------------------------


async def double(ctx: WorkflowContext, x: int) -> int:
    y = await ctx.activity("step", x)
    return 2 * y


async def long_flow(ctx: WorkflowContext, n: int) -> dict[str, Any]:
    policy = RetryPolicy(max_attempts=3, initial_interval=1.5)
    fast = ctx.patched("fast-path")
    total = 0
    for i in range(n):
        name = "flaky" if i % 4 == 1 else "step"
        total += await ctx.activity(name, i, retry=policy)
        if i % 5 == 2:
            await ctx.sleep(30 + ctx.random().randint(0, 30))
        if i % 6 == 3:
            pair = await ctx.gather(ctx.activity("side", i, retry=policy), double(ctx, i))
            total += sum(pair)
    return {
        "total": total,
        "fast": fast,
        "token": str(ctx.uuid4()),
        "at": ctx.now().isoformat(),
    }


def outcome_for(task: OutboxTask) -> InboxItem:
    """What the worker reports for one published attempt of ``long_flow``."""
    cid, attempt = task.command_id, task.attempt
    if task.task_name == "flaky" and attempt == 1:
        return failed(cid, "ConnectionError", "reset", attempt=attempt)
    if task.task_name == "side" and attempt == 1:
        return timed_out(cid, attempt=attempt, task=task.task_name)
    return completed(cid, task.args[0] + 1, attempt=attempt)


def test_cached_replayer_decides_exactly_as_a_fresh_full_replay_at_every_step() -> None:
    fresh = Harness(long_flow, 16)
    cached = fresh.copy(cached=True)
    pending: list[InboxItem] = []
    rng = random.Random(3)
    steps = 0
    decision = None
    replayers = set()
    while decision is None or not decision.status.terminal:
        take = min(len(pending), rng.choice([1, 1, 2]))
        inbox = [pending.pop(rng.randrange(len(pending))) for _ in range(take)]
        decision = fresh.step(inbox)
        assert summary(cached.step(inbox)) == summary(decision), f"step {steps}"
        replayers.add(id(cached.cached_replayer))
        pending += [outcome_for(t) for t in decision.tasks]
        pending += [timer_fired(t.command_id) for t in decision.timers]
        steps += 1
        assert steps < 200

    assert steps >= 30
    assert len(replayers) == 1  # one replayer, fed only what each step added
    assert decision.status is RunStatus.COMPLETED
    assert decision.result["fast"] is True
    assert fresh.history == cached.history
    assert fresh.replay().decide([], now=fresh.now + 1).result == decision.result


def test_replaying_a_thousand_activity_history_and_taking_one_more_step() -> None:
    n = 1000

    async def wf(ctx: WorkflowContext, count: int) -> int:
        total = 0
        for i in range(count):
            total += await ctx.activity("add", i)
        return total

    cached = Harness(wf, n, cached=True)
    cached.step()
    for cid in range(1, n):
        cached.step([completed(cid, cid - 1)])
    assert len(cached.history) == 2 * n

    fresh = cached.copy()
    last = fresh.step([completed(n, n - 1)])

    assert last.status is RunStatus.COMPLETED
    assert last.result == sum(range(n))
    assert len(fresh.history) == 2 * n + 2
