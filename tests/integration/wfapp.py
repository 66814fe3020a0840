"""The Celery app the integration tests run in real worker processes.

Configured from the environment the test cluster sets (broker, journal, queue prefix, and a
directory where activities record each execution, so tests count side effects).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

from orchestrator import Orchestrator, RetryPolicy, WorkflowContext

PREFIX = os.environ.get("CONTINUUM_TEST_PREFIX", "itest")

app = Celery("wfapp", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=f"{PREFIX}-default",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
orc = Orchestrator(
    app,
    queue=f"{PREFIX}-orchestrator",
    poll_interval=0.2,
    lease_ttl=10,
    redispatch_after=2,
    republish_after=10,
)


def record(key: str) -> int:
    """Append one line per execution under the test's effects directory; the count so far."""
    path = Path(os.environ.get("CONTINUUM_TEST_EFFECTS", "/tmp")) / key
    with path.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def noop(i: Any = None) -> Any:
    return i


@app.task
def flaky(key: str, failures: int) -> str:
    """Fails ``failures`` times, then succeeds."""
    n = record(key)
    if n <= failures:
        raise RuntimeError(f"{key}: failure {n} of {failures}")
    return f"{key} ok after {n}"


@app.task
def slow(key: str, seconds: float) -> str:
    record(key)
    time.sleep(seconds)
    return f"{key} done"


@app.task
def unserialisable() -> Any:
    return object()


@orc.workflow(name="sequential")
async def sequential(ctx: WorkflowContext, n: int) -> int:
    total = 0
    for i in range(n):
        total = await ctx.activity(add, total, i)
    return total


@orc.workflow(name="fanout")
async def fanout(ctx: WorkflowContext, n: int) -> list[int]:
    return await ctx.gather(*(ctx.activity(add, i, i) for i in range(n)))


@orc.workflow(name="retrying")
async def retrying(ctx: WorkflowContext, key: str, failures: int) -> str:
    policy = RetryPolicy(max_attempts=5, initial_interval=0.2, backoff=1.5)
    return await ctx.activity(flaky, key, failures, retry=policy)


@orc.workflow(name="sleeper")
async def sleeper(ctx: WorkflowContext, seconds: float) -> float:
    before = ctx.now()
    await ctx.sleep(seconds)
    return (ctx.now() - before).total_seconds()


@orc.workflow(name="killable")
async def killable(ctx: WorkflowContext, key: str, seconds: float) -> str:
    policy = RetryPolicy(max_attempts=3, initial_interval=0.1)
    first = await ctx.activity(slow, key, seconds, timeout=seconds + 2.0, retry=policy)
    return first


@orc.workflow(name="changing")
async def changing(ctx: WorkflowContext, seconds: float) -> str:
    # The variant stands for a code change deployed while runs are in flight.
    task = add if os.environ.get("CONTINUUM_TEST_VARIANT") == "changed" else noop
    await ctx.activity(task, 1, 2) if task is add else await ctx.activity(task, 1)
    await ctx.sleep(seconds)
    return "done"


@orc.workflow(name="failing")
async def failing(ctx: WorkflowContext) -> None:
    await ctx.activity(noop, 1)
    raise ValueError("the order is invalid")
