"""Cancellation: ``Cancelled`` is raised at the workflow's current await; it may clean up."""

import time

from celery import Celery
from orchestrator import Cancelled, Orchestrator, WorkflowContext

app = Celery("cancellation")
orc = Orchestrator(app)


@app.task
def reserve_seat(show: str) -> str:
    return f"seat-{show}"


@app.task
def release_seat(seat: str) -> str:
    return f"released {seat}"


# --8<-- [start:workflow]
@orc.workflow(name="ticket")
async def ticket(ctx: WorkflowContext, show: str) -> str:
    seat = await ctx.activity(reserve_seat, show)
    try:
        paid = await ctx.wait_signal("paid", timeout=900)
    except Cancelled:
        await ctx.activity(release_seat, seat)  # a cancelled run may still do its cleanup
        raise  # then ends ``cancelled``; swallowing it would let the run go on
    return f"{seat} paid: {paid}"


# --8<-- [end:workflow]


# --8<-- [start:client]
def test_a_cancelled_run_releases_its_seat(workflows: Orchestrator) -> None:
    handle = orc.start(ticket, "hamlet")
    wait_until_waiting_for(handle.run_id, "signal 'paid'")
    orc.cancel(handle.run_id, reason="customer left")
    try:
        handle.result(timeout=10)
        raise AssertionError("the run should have been cancelled")
    except Cancelled as cancelled:
        assert cancelled.reason == "customer left"
    info = orc.describe(handle.run_id)
    assert info.status.value == "cancelled"
    tasks = [e.data["task"] for e in orc.history(handle.run_id) if "task" in e.data]
    assert tasks[-1] == "cancellation.release_seat"


# --8<-- [end:client]


def wait_until_waiting_for(run_id: str, what: str, timeout: float = 10) -> None:
    """Poll ``describe`` until the run waits on ``what`` (its ``reason`` says so)."""
    deadline = time.monotonic() + timeout
    while what not in (orc.describe(run_id).reason or ""):
        assert time.monotonic() < deadline, orc.describe(run_id)
        time.sleep(0.05)
