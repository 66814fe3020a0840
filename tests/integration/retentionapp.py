"""The Celery app of the retention test: workflows that leave families of every shape
(a run alone, a parent with a child, a continue-as-new chain, a parent still open after its
child finished).

Configured from the environment the test cluster sets; ``CONTINUUM_TEST_RETENTION`` (seconds)
sets ``orchestrator_retention``, so that only the process given it applies retention.
"""

from __future__ import annotations

import os

from celery import Celery

from orchestrator import Orchestrator, WorkflowContext

PREFIX = os.environ.get("CONTINUUM_TEST_PREFIX", "retention-itest")

app = Celery("retentionapp", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=f"{PREFIX}-default",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if os.environ.get("CONTINUUM_TEST_RETENTION"):
    app.conf.orchestrator_retention = float(os.environ["CONTINUUM_TEST_RETENTION"])
orc = Orchestrator(
    app,
    queue=f"{PREFIX}-orchestrator",
    poll_interval=0.2,
    lease_ttl=10,
    redispatch_after=2,
    heartbeat_interval=1,
    node_ttl=3,
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@orc.workflow(name="adding")
async def adding(ctx: WorkflowContext, n: int) -> int:
    total = 0
    for i in range(n):
        total = await ctx.activity(add, total, i)
    return total


@orc.workflow(name="nesting")
async def nesting(ctx: WorkflowContext, n: int) -> int:
    return int(await ctx.child(adding, n, run_id=f"{ctx.run_id}-child"))


@orc.workflow(name="chaining")
async def chaining(ctx: WorkflowContext, left: int) -> int:
    if left:
        return await ctx.continue_as_new(left - 1)
    return await ctx.activity(add, 1, 1)


@orc.workflow(name="waiting")
async def waiting(ctx: WorkflowContext) -> list[int]:
    """A child that finishes, then a wait for a signal: the family stays open until then."""
    done = await ctx.child(adding, 2, run_id=f"{ctx.run_id}-child")
    return [done, await ctx.wait_signal("go")]
