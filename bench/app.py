"""The Celery app the benchmark runs in its worker, its dispatcher and its own process.

Configured from the environment the harness sets (see :mod:`bench.cluster`): the broker, the
journal URL (``ORCHESTRATOR_JOURNAL_URL``), a prefix that isolates every Redis key of this
benchmark run, and a directory where each process counts the messages it publishes.

The worker settings mirror the reference deployment (``celeryconfig.py``): JSON, prefetch 1,
late acks. Workflow activities and the plain Celery chains of the comparison run on the same
app, broker, queue and worker, so the comparison differs only in what Continuum adds.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, chain
from celery.signals import after_task_publish
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.counters import ProcessCounter
from bench.tracing import TRACING_ENV, trace_spans
from orchestrator import Orchestrator, WorkflowContext

PREFIX = os.environ.get("CONTINUUM_BENCH_PREFIX", "continuum-bench")
BROKER = os.environ.get("CONTINUUM_BENCH_BROKER", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=f"{PREFIX}-default",
    # Every key this app writes (queues, bindings, unacked, results) starts with the prefix,
    # so the harness can delete exactly its own keys and nothing else on a shared Redis.
    broker_transport_options={"global_keyprefix": f"{PREFIX}:"},
    result_backend_transport_options={"global_keyprefix": f"{PREFIX}:"},
    result_expires=3600,
    # Results are kept only where asked for (the chain's last task); workflow activities
    # report their outcome to the journal, not to the result backend.
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
orc = Orchestrator(
    app,
    queue=f"{PREFIX}-orchestrator",
    # ``--eager-activities``: activities the worker may run in place per message.
    eager_activities=int(os.environ.get("CONTINUUM_BENCH_EAGER_ACTIVITIES", 0)),
)

_counter = ProcessCounter.from_env()


@event.listens_for(Engine, "before_cursor_execute")
def _count_statement(*_: Any) -> None:
    """Counts every SQL statement this process sends (the journal's, the client's)."""
    if _counter is not None:
        _counter.count_statement()


@after_task_publish.connect(weak=False)
def _count_publish(sender: str | None = None, headers: Any = None, **_: Any) -> None:
    """Counts every message this process publishes, by kind (replay, activity, other)."""
    if _counter is not None:
        _counter.count_publish(sender, headers)


@app.task(name="bench.noop")
def noop(*args: Any) -> None:
    """An activity (or chain link) that does nothing: what is measured is the machinery."""
    return None


@app.task(name="bench.chain_end", ignore_result=False)
def chain_end(*args: Any) -> float:
    """The last link of a plain chain: returns when it ran, stored in the result backend."""
    return time.time()


def plain_chain(steps: int) -> Any:
    """A plain Celery chain of ``steps`` no-op tasks, the last one reporting its finish time.

    Links are immutable signatures, like the workflow's activities, which do not pass
    results along either.
    """
    return chain(*(noop.si(i) for i in range(steps - 1)), chain_end.si())


@orc.workflow(name="bench.sequence")
async def sequence(ctx: WorkflowContext, steps: int) -> int:
    """``steps`` no-op activities, one after the other."""
    for i in range(steps):
        await ctx.activity(noop, i)
    return steps


@orc.workflow(name="bench.fanout")
async def fanout(ctx: WorkflowContext, width: int) -> int:
    """``width`` no-op activities at once, gathered."""
    results = await ctx.gather(*(ctx.activity(noop, i) for i in range(width)))
    return len(results)


@orc.workflow(name="bench.waiter")
async def waiter(ctx: WorkflowContext) -> Any:
    """Waits (without a timer) for one signal that the benchmark never sends."""
    return await ctx.wait_signal("go")


@app.task(name="bench.inc", ignore_result=False)
def inc(x: int) -> int:
    """A canvas link that passes its result on (kept in the result backend, as a chain's and a
    chord header's results must be for ``get()``)."""
    return x + 1


@app.task(name="bench.total", ignore_result=False)
def total(values: list[int]) -> int:
    """A chord body: the sum of its header's results."""
    return sum(values)


# ``--tracing``: the worker and dispatcher of ``w10_traced`` trace (see bench.tracing).
if os.environ.get(TRACING_ENV):
    trace_spans()
