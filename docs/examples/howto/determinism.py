"""The determinism rules, and what breaking one of them does to a run."""

import asyncio

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext, WorkflowFailed

app = Celery("determinism")
orc = Orchestrator(app)


@app.task
def fetch_rate(currency: str) -> float:
    return {"EUR": 1.08, "GBP": 1.27}[currency]


# --8<-- [start:good]
@orc.workflow(name="quote")
async def quote(ctx: WorkflowContext, currency: str, amount: float) -> dict[str, object]:
    rate = await ctx.activity(fetch_rate, currency)  # I/O: in an activity, never here
    return {
        "id": str(ctx.uuid4()),  # not uuid.uuid4()
        "at": ctx.now().isoformat(),  # not datetime.now() or time.time()
        "jitter": ctx.random().random(),  # not random.random()
        "usd": round(amount * rate, 2),
    }


# --8<-- [end:good]


# --8<-- [start:bad]
@orc.workflow(name="impatient_quote")
async def impatient_quote(ctx: WorkflowContext, currency: str) -> float:
    await asyncio.sleep(1)  # wrong: asyncio does not run inside a workflow; use ctx.sleep
    return await ctx.activity(fetch_rate, currency)


# --8<-- [end:bad]


def test_values_from_ctx_are_recorded_with_the_run(workflows: Orchestrator) -> None:
    handle = orc.start(quote, "EUR", 100)
    result = handle.result(timeout=10)
    assert result["usd"] == 108.0
    assert len(result["id"]) == 36


# --8<-- [start:client]
def test_awaiting_asyncio_fails_the_run_with_a_type_error(workflows: Orchestrator) -> None:
    handle = orc.start(impatient_quote, "GBP")
    try:
        handle.result(timeout=10)
        raise AssertionError("the run should have failed")
    except WorkflowFailed as failed:
        assert failed.error_type == "TypeError"
        assert "ctx.sleep, not asyncio.sleep" in failed.remote_message


# --8<-- [end:client]
