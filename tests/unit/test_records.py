"""Records validated where they are written: retry policies, payloads, the workflow registry
and the arguments of ``ctx.activity``."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from orchestrator import PayloadError, RetryPolicy, RunStatus, UnknownWorkflow, WorkflowContext
from orchestrator.engine.registry import Registry, version_key
from orchestrator.model import payloads
from orchestrator.model.retry import to_seconds
from tests.unit.harness import Harness

# -- RetryPolicy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"max_attempts": 0}, ValueError, "RetryPolicy.max_attempts"),
        ({"max_attempts": -3}, ValueError, "RetryPolicy.max_attempts"),
        ({"max_attempts": 2.5}, TypeError, "RetryPolicy.max_attempts"),
        ({"max_attempts": True}, TypeError, "RetryPolicy.max_attempts"),
        ({"initial_interval": -1}, ValueError, "RetryPolicy.initial_interval"),
        ({"initial_interval": timedelta(seconds=-1)}, ValueError, "RetryPolicy.initial_interval"),
        ({"initial_interval": "1s"}, TypeError, "RetryPolicy.initial_interval"),
        ({"max_interval": -0.5}, ValueError, "RetryPolicy.max_interval"),
        ({"max_interval": float("nan")}, ValueError, "RetryPolicy.max_interval"),
        ({"backoff": 0.5}, ValueError, "RetryPolicy.backoff"),
        ({"backoff": 0}, ValueError, "RetryPolicy.backoff"),
        ({"backoff": "2"}, ValueError, "RetryPolicy.backoff"),
    ],
)
def test_retry_policy_refuses_bad_values_naming_the_field(
    options: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        RetryPolicy(**options)


def test_retry_policy_accepts_timedeltas_and_records_them_as_seconds() -> None:
    policy = RetryPolicy(
        max_attempts=3,
        initial_interval=timedelta(milliseconds=500),
        backoff=1,
        max_interval=timedelta(minutes=2),
        non_retryable=["KeyError"],
    )

    assert policy.non_retryable == ("KeyError",)
    assert policy.to_json() == {
        "max_attempts": 3,
        "initial_interval": 0.5,
        "backoff": 1.0,
        "max_interval": 120.0,
        "non_retryable": ["KeyError"],
    }
    assert RetryPolicy.from_json(policy.to_json()) == RetryPolicy(
        max_attempts=3,
        initial_interval=0.5,
        backoff=1.0,
        max_interval=120.0,
        non_retryable=("KeyError",),
    )


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (RetryPolicy(), {2: 1.0, 3: 2.0, 4: 4.0, 7: 32.0, 8: 60.0, 20: 60.0}),
        (
            RetryPolicy(initial_interval=2, backoff=3, max_interval=10),
            {2: 2.0, 3: 6.0, 4: 10.0, 5: 10.0},
        ),
        (RetryPolicy(initial_interval=0.5, backoff=1), {2: 0.5, 3: 0.5, 9: 0.5}),
        (RetryPolicy(initial_interval=0), {2: 0.0, 5: 0.0}),
        (
            RetryPolicy(initial_interval=timedelta(seconds=5), max_interval=timedelta(seconds=7)),
            {2: 5.0, 3: 7.0},
        ),
    ],
)
def test_delay_before_each_attempt_grows_by_backoff_up_to_the_cap(
    policy: RetryPolicy, delays: dict[int, float]
) -> None:
    assert {attempt: policy.delay_before(attempt) for attempt in delays} == delays


def test_retries_stop_at_max_attempts_and_on_non_retryable_types() -> None:
    policy = RetryPolicy(max_attempts=3, non_retryable=("PaymentDeclined", "builtins.KeyError"))

    assert policy.retries(1, "ConnectionError")
    assert policy.retries(2, "ConnectionError")
    assert not policy.retries(3, "ConnectionError")
    assert not policy.retries(1, "shop.errors.PaymentDeclined")
    assert not policy.retries(1, "PaymentDeclined")
    assert not policy.retries(1, "builtins.KeyError")
    assert policy.retries(1, "KeyError")  # listed qualified: only the qualified name matches
    assert not RetryPolicy().retries(1, "ConnectionError")  # the default never retries


@pytest.mark.parametrize(
    "options",
    [
        {"backoff": float("nan")},
        {"backoff": float("inf")},
        {"initial_interval": float("inf")},
        {"max_interval": float("inf")},
    ],
    ids=["backoff-nan", "backoff-inf", "initial-inf", "max-inf"],
)
def test_retry_policy_refuses_non_finite_numbers(options: dict[str, float]) -> None:
    field = next(iter(options))
    with pytest.raises(ValueError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**options)


def test_non_retryable_given_as_a_single_string_is_not_split_into_characters() -> None:
    try:
        policy = RetryPolicy(max_attempts=3, non_retryable="ValueError")  # type: ignore[arg-type]
    except TypeError:
        return  # refusing it where it is written is fine too
    assert not policy.retries(1, "ValueError")


# -- durations ----------------------------------------------------------------------------------


def test_durations_are_seconds_or_timedeltas_with_errors_naming_what() -> None:
    assert to_seconds(timedelta(minutes=1, milliseconds=250), "sleep duration") == 60.25
    assert to_seconds(3, "timeout") == 3.0
    with pytest.raises(ValueError, match="sleep duration must be a finite number of seconds >= 0"):
        to_seconds(-1, "sleep duration")
    with pytest.raises(TypeError, match="timeout must be seconds"):
        to_seconds(True, "timeout")
    with pytest.raises(TypeError, match="timeout must be seconds"):
        to_seconds("10", "timeout")  # type: ignore[arg-type]


def test_negative_sleep_fails_the_run_naming_the_duration() -> None:
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.sleep(-5)

    decision = Harness(wf).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "ValueError"
    assert "sleep duration" in decision.error["message"]
    assert decision.timers == []


def test_infinite_activity_timeout_fails_the_run_at_the_call() -> None:
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.activity("export", timeout=math.inf)

    decision = Harness(wf).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert "timeout" in decision.error["message"]
    assert decision.tasks == []


# -- payloads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (object(), "not JSON serializable"),
        ({"x": {1, 2}}, "not JSON serializable"),
        (float("nan"), "Out of range float"),
        ([1.0, float("-inf")], "Out of range float"),
    ],
    ids=["object", "set", "nan", "inf"],
)
def test_encode_refuses_what_json_cannot_carry_naming_what(value: Any, detail: str) -> None:
    with pytest.raises(PayloadError, match="arguments of activity charge cannot be carried") as e:
        payloads.encode(value, "arguments of activity charge")
    assert detail in str(e.value)
    assert isinstance(e.value, TypeError)


def test_encode_refuses_payloads_over_the_limit_naming_size_and_limit() -> None:
    assert payloads.encode("x" * 48, "signal payload", max_bytes=50) == '"' + "x" * 48 + '"'
    with pytest.raises(PayloadError) as caught:
        payloads.encode("x" * 100, "signal payload", max_bytes=50)

    message = str(caught.value)
    assert message.startswith("signal payload is 102 bytes as JSON")
    assert "limit of 50 bytes" in message
    assert "orchestrator_max_payload_bytes" in message


def test_roundtrip_keeps_datetimes_and_other_celery_json_types() -> None:
    value = {
        "at": datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "naive": datetime(2024, 5, 1, 8, 0),
        "day": date(2024, 1, 2),
        "id": UUID(int=5),
        "price": Decimal("1.10"),
        "pair": (1, 2),
    }

    back = payloads.roundtrip(value, "workflow arguments")

    assert back == {**value, "pair": [1, 2]}
    assert back["at"].tzinfo is not None
    assert payloads.decode(payloads.encode(value, "x")) == back
    assert payloads.decode(None) is None


def test_replayer_payload_limit_applies_to_activity_arguments() -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity("store", "y" * 500)

    decision = Harness(wf, max_payload_bytes=100).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "orchestrator.errors.PayloadError"
    assert "arguments of activity store is" in decision.error["message"]
    assert decision.tasks == []


# -- registry -----------------------------------------------------------------------------------


async def order_v1(ctx: WorkflowContext) -> str:
    return "v1"


async def order_v2(ctx: WorkflowContext) -> str:
    return "v2"


def test_registry_refuses_a_function_that_is_not_async() -> None:
    def not_async(ctx: WorkflowContext) -> str:
        return "sync"

    registry = Registry()
    with pytest.raises(TypeError, match=r"workflow 'order' must be an 'async def' function"):
        registry.add(not_async, name="order", version="1")
    with pytest.raises(TypeError, match="async def"):
        registry.add(lambda ctx: order_v1(ctx), name="order", version="1")
    assert registry.names() == []


def test_registry_refuses_a_second_function_under_the_same_name_and_version() -> None:
    registry = Registry()
    registry.add(order_v1, name="order", version="1")

    with pytest.raises(ValueError, match="workflow 'order' version '1' is already registered"):
        registry.add(order_v2, name="order", version="1")

    assert registry.add(order_v1, name="order", version="1").fn is order_v1  # re-import is fine
    assert registry.get("order", "1").fn is order_v1


def test_registry_refuses_empty_names_and_versions() -> None:
    registry = Registry()
    with pytest.raises(ValueError, match="name"):
        registry.add(order_v1, name="", version="1")
    with pytest.raises(ValueError, match="version"):
        registry.add(order_v1, name="order", version="")


def test_registry_chooses_the_newest_version_by_version_order() -> None:
    registry = Registry()
    for version in ("9", "10", "2"):
        registry.add(order_v1 if version != "10" else order_v2, name="order", version=version)

    newest = registry.get("order")
    assert newest.version == "10"
    assert newest.fn is order_v2
    assert registry.versions() == {"order": ["2", "9", "10"]}
    assert registry.has("order", "9")
    assert not registry.has("order", "11")


def test_version_key_orders_numeric_parts_as_numbers() -> None:
    assert sorted(["1.10", "1.2", "10", "9", "1.9.1"], key=version_key) == [
        "1.2",
        "1.9.1",
        "1.10",
        "9",
        "10",
    ]
    assert version_key("10") > version_key("9")


def test_registry_names_the_unknown_workflow_and_version() -> None:
    registry = Registry()
    registry.add(order_v1, name="order", version="1")

    with pytest.raises(UnknownWorkflow, match="'invoice'"):
        registry.get("invoice")
    with pytest.raises(UnknownWorkflow, match="'order' version '7'") as caught:
        registry.get("order", "7")
    assert (caught.value.name, caught.value.version) == ("order", "7")


# -- ctx.activity arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    "task", [object(), 42, None, {"args": [1]}], ids=["object", "int", "none", "dict-no-task"]
)
def test_activity_refuses_what_is_not_a_task_name_or_signature(task: Any) -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity(task, 1)

    decision = Harness(wf).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "TypeError"
    assert (
        "ctx.activity needs a Celery task, a task name or a signature"
        in (decision.error["message"])
    )
    assert decision.tasks == []


@pytest.mark.parametrize(
    ("task", "queue", "what"),
    [("t" * 256, None, "task name"), ("tasks.a", "q" * 300, "queue")],
    ids=["name", "queue"],
)
def test_activity_refuses_a_name_longer_than_the_journal_keeps(
    task: str, queue: str | None, what: str
) -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity(task, 1, queue=queue)

    decision = Harness(wf).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert decision.error["type"] == "ValueError"
    assert f"ctx.activity: {what}" in decision.error["message"]
    assert "over the limit of 255" in decision.error["message"]
    assert decision.tasks == []


def test_activity_refuses_a_retry_that_is_not_a_retry_policy() -> None:
    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity("charge", retry={"max_attempts": 3})

    decision = Harness(wf).step()

    assert decision.status is RunStatus.FAILED
    assert decision.error is not None
    assert "retry must be a RetryPolicy" in decision.error["message"]


def test_activity_accepts_a_celery_signature_dict() -> None:
    signature = {"task": "x", "args": [1], "kwargs": {}, "options": {"queue": "q"}}

    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity(signature, 2, 3, mode="fast")

    h = Harness(wf)
    decision = h.step()

    (task,) = decision.tasks
    assert task.task_name == "x"
    assert task.args == [1, 2, 3]
    assert task.kwargs == {"mode": "fast"}
    assert task.queue == "q"
    assert h.scheduled() == [(1, "x", 1)]


def test_activity_merges_signature_kwargs_and_lets_an_explicit_queue_win() -> None:
    signature = {"task": "x", "args": (1,), "kwargs": {"a": 1, "b": 2}, "options": {"queue": "q"}}

    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity(signature, b=3, queue="urgent")

    (task,) = Harness(wf).step().tasks

    assert task.args == [1]
    assert task.kwargs == {"a": 1, "b": 3}
    assert task.queue == "urgent"


def test_activity_accepts_a_task_object_by_its_name() -> None:
    charge = SimpleNamespace(name="shop.tasks.charge")

    async def wf(ctx: WorkflowContext) -> Any:
        return await ctx.activity(charge, "o-1")

    (task,) = Harness(wf).step().tasks

    assert (task.task_name, task.args, task.queue) == ("shop.tasks.charge", ["o-1"], None)
