"""Continue-as-new: a long-lived workflow ends each period with a fresh history."""

from typing import Any

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

app = Celery("continue_as_new")
orc = Orchestrator(app)


@app.task
def poll_feed(feed: str, page: int) -> list[str]:
    return [f"{feed}/{page}/{n}" for n in range(2)]


# --8<-- [start:workflow]
@orc.workflow(name="feed_reader")
async def feed_reader(ctx: WorkflowContext, feed: str, page: int, seen: int) -> Any:
    """Read one page per run; continue with the next page until page 3."""
    items = await ctx.activity(poll_feed, feed, page)
    seen += len(items)
    if page == 3:
        return {"pages": page, "items": seen}
    return await ctx.continue_as_new(feed, page + 1, seen)  # this run ends here


# --8<-- [end:workflow]


# --8<-- [start:client]
def test_the_first_run_id_reaches_the_end_of_the_chain(workflows: Orchestrator) -> None:
    handle = orc.start(feed_reader, "news", 1, 0, run_id="reader-1")
    assert handle.result(timeout=10) == {"pages": 3, "items": 6}
    tip = orc.describe("reader-1")  # follows the chain to its live tip
    assert tip.run_id != "reader-1"
    assert tip.correlation_id == "reader-1"  # the chain's first run
    first = orc.list_runs(status="continued", workflow="feed_reader")
    assert {run.correlation_id for run in first} == {"reader-1"}


# --8<-- [end:client]
