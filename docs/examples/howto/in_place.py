"""Activities in place: a worker runs a run's next activity itself, without a message."""

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

# --8<-- [start:setting]
app = Celery("in_place")
app.conf.orchestrator_eager_activities = 10  # at most 10 in a row per message; 0 (default): off
orc = Orchestrator(app)
# --8<-- [end:setting]


@app.task(bind=True)
def step(self, n: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(self.request.is_eager)  # True when run in place (Celery's Task.apply)


@orc.workflow(name="steps")
async def steps(ctx: WorkflowContext, count: int) -> list[bool]:
    return [await ctx.activity(step, n) for n in range(count)]


# --8<-- [start:test]
def test_the_next_activity_runs_where_the_last_one_ended(workflows: Orchestrator) -> None:
    handle = orc.start(steps, 4)
    ran_in_place = handle.result(timeout=10)
    # The first goes out as a message from ``orc.start``; the worker that runs it runs the rest.
    assert ran_in_place == [False, True, True, True]


# --8<-- [end:test]
