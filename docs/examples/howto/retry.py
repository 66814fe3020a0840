"""Retrying a failed run: from the failed step, under the code now deployed."""

import pytest
from celery import Celery
from orchestrator import NotRetryable, Orchestrator, WorkflowContext, WorkflowFailed

app = Celery("retry")
orc = Orchestrator(app)

calls: dict[str, int] = {"reserve": 0, "charge": 0}
card_service_up = False


@app.task
def reserve(order_id: str) -> str:
    calls["reserve"] += 1
    return f"res-{order_id}"


@app.task
def charge(order_id: str) -> str:
    calls["charge"] += 1
    if not card_service_up:
        raise ConnectionError("card service down")
    return f"ch-{order_id}"


@orc.workflow(name="checkout")
async def checkout(ctx: WorkflowContext, order_id: str) -> list[str]:
    reservation = await ctx.activity(reserve, order_id)
    payment = await ctx.activity(charge, order_id)  # one attempt: fails the run at once
    return [reservation, payment]


def test_a_retry_runs_the_failed_step_only(workflows: Orchestrator) -> None:
    global card_service_up
    run_id = orc.start(checkout, "o-9").run_id
    with pytest.raises(WorkflowFailed, match="card service down"):
        orc.result(run_id, timeout=10)
    card_service_up = True  # the cause is fixed
    # --8<-- [start:retry]
    handle = orc.retry(run_id)  # a RunHandle for the retry
    print(handle.result(timeout=120))
    print(orc.result(run_id))  # the original's id reaches the retry too
    # --8<-- [end:retry]
    assert orc.result(run_id) == ["res-o-9", "ch-o-9"]
    assert calls == {"reserve": 1, "charge": 2}  # the reservation was not made again
    original = orc.journal.describe(run_id)
    assert (original.status, original.retried_to_run_id) == ("failed", handle.run_id)
    assert handle.describe().retried_from_run_id == run_id
    with pytest.raises(NotRetryable):  # only a failed run can be retried
        orc.retry(run_id)
