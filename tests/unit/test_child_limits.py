"""A child workflow is held by its workflow's concurrency limit as any run of it is.

In the test kit (the production driver and dispatcher on the in-memory journal): children
beyond the limit wait ``queued`` with the reason, are admitted in start order as places free
up, and all complete; a per-key limit applies to children by their arguments; a queued
child's cancellation reaches its parent; a key function that raises fails the call that
starts the child, as a bad argument does, and starts nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from orchestrator import ChildFailed, Orchestrator, RunStatus, WorkflowContext, WorkflowFailed
from orchestrator.model.events import EventType
from orchestrator.testing import WorkflowEnvironment

app = Celery("child_limits_tests", set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"])
orc = Orchestrator(app)


@orc.workflow(name="held", version="1", concurrency=2)
async def held(ctx: WorkflowContext, n: int) -> int:
    await ctx.wait_signal("go")
    return n


@orc.workflow(
    name="held_by_key", version="1", concurrency=1, concurrency_key=lambda customer, _: customer
)
async def held_by_key(ctx: WorkflowContext, customer: Any, n: int) -> str:
    await ctx.wait_signal("go")
    return f"{customer}-{n}"


@orc.workflow(name="fans_out", version="1")
async def fans_out(ctx: WorkflowContext, n: int) -> list[int]:
    return list(await ctx.gather(*[ctx.start_child(held, i) for i in range(n)]))


@orc.workflow(name="fans_out_by_key", version="1")
async def fans_out_by_key(ctx: WorkflowContext, customers: list[Any]) -> list[str]:
    children = [ctx.start_child(held_by_key, c, i) for i, c in enumerate(customers)]
    return list(await ctx.gather(*children))


@orc.workflow(name="outlives_its_child", version="1")
async def outlives_its_child(ctx: WorkflowContext) -> str:
    first = ctx.start_child(held, 0)
    second = ctx.start_child(held, 1)
    queued = ctx.start_child(held, 2)
    try:
        await queued
    except ChildFailed as exc:
        outcome = f"{exc.error['type']}: {exc.error['message']}"
    else:
        outcome = "the queued child completed"
    await ctx.gather(first, second)
    return outcome


def children(env: WorkflowEnvironment, run_id: str) -> list[str]:
    return [
        e.data["child_run_id"] for e in env.history(run_id) if e.type == EventType.CHILD_STARTED
    ]


def statuses(env: WorkflowEnvironment, run_ids: list[str]) -> list[RunStatus]:
    return [env.describe(r).status for r in run_ids]


def test_children_beyond_the_limit_wait_queued_and_are_admitted_in_start_order() -> None:
    with WorkflowEnvironment(orc) as env:
        parent = env.start(fans_out, 5)
        kids = children(env, parent)
        assert statuses(env, kids) == [RunStatus.SUSPENDED] * 2 + [RunStatus.QUEUED] * 3
        reason = env.describe(kids[2]).reason
        assert reason is not None and "workflow 'held' has its limit of 2 open runs" in reason

        env.signal(kids[1], "go")
        assert statuses(env, kids)[1:4] == [
            RunStatus.COMPLETED,
            RunStatus.SUSPENDED,
            RunStatus.QUEUED,
        ]
        for kid in [kids[0], *kids[2:]]:  # a queued child takes its signal, kept for its turn
            env.signal(kid, "go")
        assert env.result(parent) == [0, 1, 2, 3, 4]
        assert statuses(env, kids) == [RunStatus.COMPLETED] * 5


def test_a_per_key_limit_holds_children_of_one_key_only() -> None:
    with WorkflowEnvironment(orc) as env:
        parent = env.start(fans_out_by_key, ["ann", "bob", "ann", "bob", "cy"])
        kids = children(env, parent)
        assert statuses(env, kids) == [
            RunStatus.SUSPENDED,
            RunStatus.SUSPENDED,
            RunStatus.QUEUED,
            RunStatus.QUEUED,
            RunStatus.SUSPENDED,
        ]
        for kid in kids:
            env.signal(kid, "go")
        assert env.result(parent) == ["ann-0", "bob-1", "ann-2", "bob-3", "cy-4"]


def test_cancelling_a_queued_child_tells_its_parent() -> None:
    with WorkflowEnvironment(orc) as env:
        parent = env.start(outlives_its_child)
        first, second, queued = children(env, parent)
        assert env.describe(queued).status is RunStatus.QUEUED

        env.cancel(queued, "not needed")
        assert env.describe(queued).status is RunStatus.CANCELLED
        env.signal(first, "go")
        env.signal(second, "go")

        assert env.result(parent) == f"Cancelled: child {queued} was cancelled: not needed"
        ended = [e for e in env.history(parent) if e.type == EventType.CHILD_CANCELLED]
        assert [e.data["child_run_id"] for e in ended] == [queued]
        assert [e.type for e in env.history(queued)] == [
            EventType.RUN_STARTED,
            EventType.CANCEL_REQUESTED,
            EventType.RUN_CANCELLED,
        ]


@orc.workflow(name="bad_key_parent", version="1")
async def bad_key_parent(ctx: WorkflowContext, customer: Any) -> str:
    try:
        ctx.start_child(held_by_key, customer, 0)
    except (TypeError, ValueError) as exc:
        return f"refused: {exc}"
    return "started"


@pytest.mark.parametrize(
    ("customer", "message"),
    [
        (7, "concurrency_key must return a string, not 7"),
        (None, "concurrency_key must return a string, not None"),
        ("x" * 201, "concurrency_key returned 201 characters"),
    ],
)
def test_a_key_function_that_fails_fails_the_call_and_starts_nothing(
    customer: Any, message: str
) -> None:
    with WorkflowEnvironment(orc) as env:
        parent = env.start(bad_key_parent, customer)
        result = env.result(parent)
        assert result.startswith("refused: workflow 'held_by_key': ") and message in result
        assert children(env, parent) == []
        assert [r.workflow for r in env.journal.list_runs()] == ["bad_key_parent"]


@orc.workflow(name="raising_key", version="1", concurrency=1, concurrency_key=lambda: 1 / 0)
async def raising_key(ctx: WorkflowContext) -> None:
    return None


@orc.workflow(name="raising_key_parent", version="1")
async def raising_key_parent(ctx: WorkflowContext) -> None:
    await ctx.child(raising_key)


def test_a_key_function_that_raises_fails_the_parent_at_the_call() -> None:
    with WorkflowEnvironment(orc) as env:
        parent = env.start(raising_key_parent)
        with pytest.raises(WorkflowFailed, match="concurrency_key raised ZeroDivisionError"):
            env.result(parent)
        assert children(env, parent) == []
