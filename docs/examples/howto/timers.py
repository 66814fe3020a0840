"""Timers: durable sleeps, fired by the dispatcher, on workflow time."""

from datetime import timedelta
from typing import Any

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

app = Celery("timers")
orc = Orchestrator(app)


@app.task
def send_reminder(invoice_id: str, count: int) -> str:
    return f"reminder {count} for {invoice_id}"


# --8<-- [start:workflow]
@orc.workflow(name="dunning")
async def dunning(ctx: WorkflowContext, invoice_id: str, every: float, times: int) -> Any:
    """Remind ``times`` times, ``every`` seconds apart, then report how long it took."""
    started = ctx.now()
    sent = []
    for count in range(1, times + 1):
        await ctx.sleep(timedelta(seconds=every))  # seconds (int/float) or a timedelta
        sent.append(await ctx.activity(send_reminder, invoice_id, count))
    return {"sent": sent, "took": (ctx.now() - started).total_seconds()}


# --8<-- [end:workflow]


def test_timers_fire_in_order_on_workflow_time(workflows: Orchestrator) -> None:
    handle = orc.start(dunning, "inv-7", 0.2, 2)
    outcome = handle.result(timeout=10)
    assert outcome["sent"] == ["reminder 1 for inv-7", "reminder 2 for inv-7"]
    assert outcome["took"] >= 0.4
    fired = [e for e in orc.history(handle.run_id) if e.type.value == "timer_fired"]
    assert len(fired) == 2
