"""Execution timeouts: a run still open too long after its start fails."""

import pytest
from celery import Celery
from orchestrator import Orchestrator, WorkflowContext, WorkflowFailed, WorkflowTimeout

app = Celery("execution_timeouts")
orc = Orchestrator(app)


@orc.workflow(name="order")
async def order(ctx: WorkflowContext, order_id: str, amount: int) -> str:
    """Waits for a payment that never comes."""
    await ctx.wait_signal("paid")
    return f"{order_id} paid"


def test_a_run_past_its_timeout_fails(workflows: Orchestrator) -> None:
    # --8<-- [start:start]
    handle = orc.start(order, "o-1", 100, timeout=1)  # seconds (or a timedelta)
    # --8<-- [end:start]
    with pytest.raises(WorkflowTimeout) as failed:
        handle.result(timeout=10)
    assert isinstance(failed.value, WorkflowFailed)
    assert handle.describe().status == "failed"
    assert [e.type for e in orc.history(handle.run_id)][-2:] == ["run_timed_out", "run_failed"]


def test_the_timeout_must_be_positive(workflows: Orchestrator) -> None:
    with pytest.raises(ValueError):
        orc.start(order, "o-2", 100, timeout=0)
