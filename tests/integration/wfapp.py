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
    # Task events, so Flower (tests/integration/test_flower.py) sees what runs.
    worker_send_task_events=True,
    task_send_sent_event=True,
)
orc = Orchestrator(
    app,
    queue=f"{PREFIX}-orchestrator",
    poll_interval=0.2,
    lease_ttl=10,
    redispatch_after=2,
    republish_after=10,
    mark_start_after=float(os.environ.get("CONTINUUM_TEST_MARK_START_AFTER", 1.0)),
    eager_activities=int(os.environ.get("CONTINUUM_TEST_EAGER_ACTIVITIES", 0)),
    heartbeat_interval=1,
    node_ttl=3,
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


@app.task(acks_late=True)
def acked_late(key: str) -> str:
    """Acknowledged after it ran, as the reference deployment's tasks are."""
    record(key)
    return f"{key} done"


@app.task
def unserialisable() -> Any:
    return object()


def _place(task: Any, key: str, retry_after: float, seconds: float) -> str:
    """Records which worker ran ``task``, how (from a message, or in place) and when; with
    ``retry_after``, its first try asks Celery for a retry that many seconds later."""
    how = "in place" if task.request.is_eager else "message"
    path = Path(os.environ.get("CONTINUUM_TEST_EFFECTS", "/tmp")) / key
    with path.open("a") as fh:
        fh.write(f"{os.environ.get('CONTINUUM_TEST_NODE', 'client')} {how} {time.time()}\n")
    if retry_after and not task.request.retries:
        raise task.retry(countdown=retry_after)
    time.sleep(seconds)
    return how


@app.task(bind=True)
def placed(self: Any, key: str, retry_after: float = 0.0, seconds: float = 0.0) -> str:
    return _place(self, key, retry_after, seconds)


@app.task(bind=True, acks_late=True)
def placed_late(self: Any, key: str, retry_after: float = 0.0, seconds: float = 0.0) -> str:
    return _place(self, key, retry_after, seconds)


@orc.workflow(name="sequential")
async def sequential(ctx: WorkflowContext, n: int) -> int:
    total = 0
    for i in range(n):
        total = await ctx.activity(add, total, i)
    return total


@orc.workflow(name="placed")
async def placed_in_turn(
    ctx: WorkflowContext,
    key: str,
    queues: list[str | None],
    retry_after: float = 0.0,
    last_seconds: float = 0.0,
    late: bool = False,
) -> list[str]:
    """One ``placed`` (or ``placed_late``) activity per queue (``None``: the default), one
    after the other; the last one takes ``last_seconds``."""
    task = placed_late if late else placed
    out = []
    for i, queue in enumerate(queues):
        seconds = last_seconds if i == len(queues) - 1 else 0.0
        out.append(await ctx.activity(task, key, retry_after, seconds, queue=queue))
    return out


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


@orc.workflow(name="acking_late")
async def acking_late(ctx: WorkflowContext, key: str) -> str:
    return await ctx.activity(acked_late, key)


@orc.workflow(name="killable")
async def killable(ctx: WorkflowContext, key: str, seconds: float) -> str:
    policy = RetryPolicy(max_attempts=3, initial_interval=0.1)
    first = await ctx.activity(slow, key, seconds, timeout=seconds + 2.0, retry=policy)
    return first


@orc.workflow(name="unbounded")
async def unbounded(ctx: WorkflowContext, key: str, seconds: float) -> str:
    return await ctx.activity(slow, key, seconds)  # no timeout


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


def journal_line(key: str, line: str) -> None:
    path = Path(os.environ.get("CONTINUUM_TEST_EFFECTS", "/tmp")) / f"{key}.order"
    with path.open("a") as fh:
        fh.write(line + "\n")


@app.task
def step(key: str, name: str, fail: bool = False) -> str:
    record(f"{key}-{name}")
    journal_line(key, name)
    if fail:
        raise RuntimeError(f"{name} failed")
    return name


@app.task
def undo(key: str, name: str) -> str:
    record(f"{key}-undo-{name}")
    journal_line(key, f"undo-{name}")
    return f"undid {name}"


@orc.workflow(name="approval")
async def approval(ctx: WorkflowContext, timeout: float) -> list[Any]:
    first = await ctx.wait_signal("approve", timeout=timeout)
    second = await ctx.wait_signal("approve", timeout=timeout)
    return [first, second]


@orc.workflow(name="counter")
async def counter(ctx: WorkflowContext, n: int, total: int) -> int:
    total = await ctx.activity(add, total, n)
    if n > 0:
        return await ctx.continue_as_new(n - 1, total)
    return total


@orc.workflow(name="ticker")
async def ticker(ctx: WorkflowContext, n: int) -> int:
    """Continues as new ``n`` times without activities (a long chain, cheaply)."""
    if n > 0:
        return await ctx.continue_as_new(n - 1)
    return 0


@orc.workflow(name="parent")
async def parent(ctx: WorkflowContext, generation: int = 0) -> dict[str, Any]:
    if generation == 0:
        return await ctx.continue_as_new(1)  # so the signal below is sent to the chain's root
    go = await ctx.wait_signal("go")
    results = await ctx.gather(
        ctx.child(sequential, 3), ctx.start_child(counter, 2, 0), ctx.child("fanout", 4)
    )
    return {"go": go, "results": results}


@orc.workflow(name="saga")
async def saga_wf(ctx: WorkflowContext, key: str, fail_at: int) -> str:
    async with ctx.saga() as saga:
        for i, name in enumerate(["reserve", "charge", "ship"]):
            await ctx.activity(step, key, name, i == fail_at)
            saga.compensate_with(undo.s(key, name))
    return "shipped"


@orc.workflow(name="sleepy_child")
async def sleepy_child(ctx: WorkflowContext, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "woke"


@orc.workflow(name="cancellable")
async def cancellable(ctx: WorkflowContext, key: str) -> str:
    async with ctx.saga() as saga:
        await ctx.activity(step, key, "reserve")
        saga.compensate_with(undo.s(key, "reserve"))
        child = ctx.start_child(sleepy_child, 600)
        # Sent to a queue no worker consumes: it stays pending until the run is cancelled.
        stuck = ctx.activity(noop, 1, queue=f"{PREFIX}-nowhere")
        await ctx.gather(child, stuck)
    return "never"


@orc.workflow(name="failing_child")
async def failing_child(ctx: WorkflowContext) -> str:
    try:
        await ctx.child(failing)
    except Exception as exc:  # ChildFailed carries the child's error
        return f"{type(exc).__name__}: {getattr(exc, 'remote_message', '')}"
    return "no error"


VERSIONS = os.environ.get("CONTINUUM_TEST_VERSIONS", "1").split(",")
NODE = os.environ.get("CONTINUUM_TEST_NODE", "client")

if "1" in VERSIONS:

    @orc.workflow(name="versioned", version="1")
    async def versioned_v1(ctx: WorkflowContext) -> dict[str, Any]:
        await ctx.activity(noop, 1)
        return {"version": "1", "node": NODE}


if "2" in VERSIONS:

    @orc.workflow(name="versioned", version="2")
    async def versioned_v2(ctx: WorkflowContext) -> dict[str, Any]:
        await ctx.activity(noop, 2)
        await ctx.activity(noop, 2)
        return {"version": "2", "node": NODE}


@app.task
def stamp(run_id: str) -> str:
    """Records one execution under the run's id (a scheduled run's side effect)."""
    record(run_id)
    return run_id


@orc.workflow(name="tick")
async def tick(ctx: WorkflowContext) -> str:
    """What a schedule starts: one side effect, counted per run."""
    return await ctx.activity(stamp, ctx.run_id)


@orc.workflow(name="limited", concurrency=3)
async def limited(ctx: WorkflowContext, key: str, seconds: float) -> str:
    # The first step's events carry the run's start time; the outcome of ``noop`` is
    # journaled when it ran, after the run was admitted.
    await ctx.activity(noop)
    return await ctx.activity(slow, key, seconds)


@orc.workflow(
    name="limited_by_key", concurrency=1, concurrency_key=lambda customer, *_: str(customer)
)
async def limited_by_key(ctx: WorkflowContext, customer: str, key: str, seconds: float) -> str:
    await ctx.activity(noop)
    return await ctx.activity(slow, key, seconds)


@orc.workflow(name="limited_children")
async def limited_children(ctx: WorkflowContext, tag: str, n: int, seconds: float) -> list[str]:
    """Starts ``n`` children of ``limited``, which its limit of 3 holds back."""
    kids = [ctx.start_child(limited, f"{tag}-{i}", seconds) for i in range(n)]
    return list(await ctx.gather(*kids))


# -- authoring: queries, signal-with-start, execution timeouts, heartbeats ------------------
@orc.workflow(name="publishing")
async def publishing(ctx: WorkflowContext, n: int) -> int:
    """Publishes its progress, then waits for ``go``."""
    for i in range(n):
        ctx.publish("progress", {"done": i, "of": n})
        await ctx.activity(add, i, 0)
    ctx.publish("progress", "waiting")
    await ctx.wait_signal("go")
    ctx.publish("progress", "done")
    return n


@orc.workflow(name="publishing_badly")
async def publishing_badly(ctx: WorkflowContext) -> None:
    ctx.publish("state", {"when": object()})


@orc.workflow(name="collector")
async def collector(ctx: WorkflowContext, n: int) -> list[Any]:
    """The payloads of ``n`` signals ``item``, in the order they were journaled."""
    return [await ctx.wait_signal("item") for _ in range(n)]


@orc.workflow(name="sleepy_parent")
async def sleepy_parent(ctx: WorkflowContext, seconds: float) -> str:
    return str(await ctx.child(sleepy_child, seconds, run_id=f"{ctx.run_id}-child"))


@orc.workflow(name="forever")
async def forever(ctx: WorkflowContext, generation: int) -> int:
    """Continues as new after a short sleep, without end."""
    await ctx.sleep(0.3)
    return await ctx.continue_as_new(generation + 1)


@app.task
def heartbeating(key: str, silent_for: float) -> dict[str, Any]:
    """Its first attempt records progress, then goes silent for ``silent_for`` seconds and
    beats again (to learn it was superseded); a retry reports where it resumed from."""
    from orchestrator import ActivityCancelled, activity_info, heartbeat

    info = activity_info()
    record(key)
    if info.attempt == 1:
        heartbeat({"done": 5})
        time.sleep(silent_for)
        try:
            heartbeat({"done": 6})
        except ActivityCancelled:
            record(f"{key}-cancelled")
            raise
    return {"attempt": info.attempt, "resumed_from": info.heartbeat_details}


@orc.workflow(name="beating")
async def beating(ctx: WorkflowContext, key: str, silent_for: float) -> dict[str, Any]:
    policy = RetryPolicy(max_attempts=3, initial_interval=0.1)
    result: dict[str, Any] = await ctx.activity(
        heartbeating, key, silent_for, retry=policy, heartbeat_timeout=1.5
    )
    return result


@app.task
def fixable(key: str) -> str:
    """Fails until the file ``<key>.fixed`` exists in the effects directory: the fix that a
    redeploy would bring."""
    record(key)
    fixed = Path(os.environ.get("CONTINUUM_TEST_EFFECTS", "/tmp")) / f"{key}.fixed"
    if not fixed.exists():
        raise RuntimeError(f"{key}: not fixed yet")
    return f"{key} fixed"


@orc.workflow(name="fix_then_retry")
async def fix_then_retry(ctx: WorkflowContext, key: str) -> list[str]:
    """A first activity that succeeds, then one that fails until it is fixed (no retries)."""
    once = RetryPolicy(max_attempts=1)
    first = await ctx.activity(flaky, f"{key}-first", 0, retry=once)
    second = await ctx.activity(fixable, f"{key}-second", retry=once)
    return [first, second]


if os.environ.get("CONTINUUM_TEST_TRACES"):
    from tests.span_file import export_to

    export_to(os.environ["CONTINUUM_TEST_TRACES"])


@orc.workflow(name="checkout")
async def checkout(ctx: WorkflowContext, key: str) -> str:
    """Something of everything, for the web view: a retried activity, a signal, a timer, a
    child, a failing step and the compensations it sets off."""
    async with ctx.saga() as saga:
        await ctx.activity(step, key, "reserve")
        saga.compensate_with(undo.s(key, "reserve"))
        policy = RetryPolicy(max_attempts=3, initial_interval=0.3)
        await ctx.activity(flaky, f"{key}-charge", 1, retry=policy)
        saga.compensate_with(undo.s(key, "charge"))
        await ctx.wait_signal("approve")
        await ctx.sleep(0.4)
        await ctx.child(sequential, 2)
        await ctx.activity(step, key, "ship", True)
    return "shipped"
