"""Runs from the client side: start, wait, read the summary and the history."""

from celery import Celery
from orchestrator import Orchestrator, RunStatus, WorkflowContext

app = Celery("runs")
orc = Orchestrator(app)


@app.task
def add(a: int, b: int) -> int:
    return a + b


@orc.workflow(name="sum")
async def total(ctx: WorkflowContext, numbers: list[int]) -> int:
    result = 0
    for n in numbers:
        result = await ctx.activity(add, result, n)
    return result


# --8<-- [start:client]
def test_a_run_from_start_to_history(workflows: Orchestrator) -> None:
    handle = orc.start(total, [1, 2, 3], run_id="sum-1")  # run ids are yours to choose
    again = orc.start(total, [1, 2, 3], run_id="sum-1")  # same id: the same run, not a new one
    assert again.run_id == handle.run_id
    assert orc.result("sum-1", timeout=10) == 6

    info = orc.describe("sum-1")
    assert (info.workflow, info.version, info.status) == ("sum", "1", RunStatus.COMPLETED)
    assert info.result == 6 and info.closed_at is not None

    history = orc.history("sum-1")
    assert history[0].type.value == "run_started" and history[0].data["args"] == [[1, 2, 3]]
    assert history[-1].type.value == "run_completed"
    assert [e.seq for e in history] == list(range(1, len(history) + 1))

    assert [r.run_id for r in orc.list_runs(status="completed", workflow="sum")] == ["sum-1"]


# --8<-- [end:client]
