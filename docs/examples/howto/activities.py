"""Activities: ordinary Celery tasks, awaited with a retry policy and a timeout."""

from typing import Any

from celery import Celery
from orchestrator import ActivityFailed, Orchestrator, RetryPolicy, WorkflowContext

app = Celery("activities")
orc = Orchestrator(app)

calls: dict[str, int] = {}


# --8<-- [start:tasks]
@app.task
def fetch_invoice(invoice_id: str) -> dict[str, Any]:
    calls[invoice_id] = calls.get(invoice_id, 0) + 1
    if calls[invoice_id] < 3:  # a flaky service: the first two attempts fail
        raise ConnectionError(f"invoice service unavailable ({invoice_id})")
    return {"id": invoice_id, "total": 42}


@app.task
def validate(invoice: dict[str, Any]) -> None:
    if invoice["total"] > 10:
        raise ValueError(f"invoice {invoice['id']} is over the limit")


# --8<-- [end:tasks]


# --8<-- [start:workflow]
RETRY = RetryPolicy(
    max_attempts=4,  # counts the first attempt
    initial_interval=0.1,  # seconds before attempt 2; then times backoff, up to max_interval
    backoff=2.0,
    max_interval=10,
    non_retryable=("ValueError",),  # fail at once on these error types
)


@orc.workflow(name="invoice_check")
async def invoice_check(ctx: WorkflowContext, invoice_id: str) -> str:
    invoice = await ctx.activity(fetch_invoice, invoice_id, retry=RETRY, timeout=30)
    try:
        await ctx.activity(validate, invoice, retry=RETRY)
    except ActivityFailed as failed:  # the last attempt's error, by type and message
        return f"rejected after {failed.attempt} attempt(s): {failed.remote_message}"
    return "accepted"


# --8<-- [end:workflow]


def test_retries_are_journaled_as_attempts(workflows: Orchestrator) -> None:
    handle = orc.start(invoice_check, "inv-1")
    outcome = handle.result(timeout=10)
    assert outcome == "rejected after 1 attempt(s): invoice inv-1 is over the limit"
    fetches = [
        (e.type.value, e.attempt)
        for e in orc.history(handle.run_id)
        if e.data.get("task") == "activities.fetch_invoice" or e.command_id == 1
    ]
    assert fetches == [
        ("activity_scheduled", 1),
        ("activity_failed", 1),
        ("activity_scheduled", 2),
        ("activity_failed", 2),
        ("activity_scheduled", 3),
        ("activity_completed", 3),
    ]
