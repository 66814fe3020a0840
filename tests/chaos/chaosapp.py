"""The Celery app of the chaos suite, run in real worker and dispatcher processes.

Configured from the environment the suite sets: broker (``CELERY_BROKER_URL``), journal
(``ORCHESTRATOR_JOURNAL_URL``), a queue prefix (``CONTINUUM_CHAOS_PREFIX``), orchestrator
settings as JSON (``CONTINUUM_CHAOS_SETTINGS``) and a directory where every activity
execution is recorded (``CONTINUUM_CHAOS_EFFECTS``), so the suite measures how often each
attempt really ran instead of assuming it.

Effects: one file per process, ``<pid>.log``, one line per fact, each written with a single
``write`` on an ``O_APPEND`` descriptor (a ``kill -9`` cannot leave half a line)::

    S <task_id> <task_name> <pid> <epoch> <seconds> <how>    an execution started (how:
                                                             "message" or "in-place")
    E <task_id> <task_name> <pid> <epoch>              it returned or raised

A ``S`` without its ``E`` is an execution that was killed mid-flight. The task id of an
orchestrated attempt is ``<run_id>:<command_id>:<attempt>``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from celery import Celery

from orchestrator import Orchestrator, RetryPolicy, WorkflowContext

PREFIX = os.environ.get("CONTINUUM_CHAOS_PREFIX", "chaos")
EFFECTS = Path(os.environ.get("CONTINUUM_CHAOS_EFFECTS", "/tmp/continuum-chaos-effects"))

#: Short settings, so leases, lost messages and dead nodes are noticed within seconds.
DEFAULT_SETTINGS: dict[str, Any] = {
    "lease_ttl": 3,
    "redispatch_after": 2,
    "republish_after": 4,
    "node_ttl": 5,
    "heartbeat_interval": 1,
    "poll_interval": 0.2,
}

#: Every activity is retried, so an attempt lost with a killed worker is made again.
RETRY = RetryPolicy(
    max_attempts=12,
    initial_interval=0.2,
    backoff=1.5,
    max_interval=2.0,
    non_retryable=("StepFailed",),
)
#: Start-to-close timeout of an activity beyond the time it means to sleep.
MARGIN = 5.0
#: How long a signal waiter waits before giving up (``None`` then stands for a lost signal).
SIGNAL_TIMEOUT = 30.0


def settings() -> dict[str, Any]:
    """The orchestrator settings of this process: the defaults, overridden from the env."""
    return {**DEFAULT_SETTINGS, **json.loads(os.environ.get("CONTINUUM_CHAOS_SETTINGS", "{}"))}


def configure(app: Celery, prefix: str) -> None:
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=f"{prefix}-default",
        worker_prefetch_multiplier=1,
        # As the reference deployment (celeryconfig.py): a killed worker's messages stay in
        # Redis' unacknowledged set and are redelivered, so the redelivery paths are under fault.
        task_acks_late=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
    )


app = Celery("chaosapp", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
configure(app, PREFIX)
orc = Orchestrator(app, queue=f"{PREFIX}-orchestrator", **settings())

if os.environ.get("CONTINUUM_CHAOS_NODE"):
    # Workers and dispatchers log the library's warnings ("lease lost before commit", ...)
    # with the process id, so a test can tell which process said what.
    _handler = logging.StreamHandler(sys.__stderr__)
    _handler.setFormatter(
        logging.Formatter("[%(asctime)s pid=%(process)d %(levelname)s %(name)s] %(message)s")
    )
    _library = logging.getLogger("orchestrator")
    _library.addHandler(_handler)
    _library.setLevel(logging.INFO)
    _library.propagate = False


# -- activities ------------------------------------------------------------------------------
class StepFailed(Exception):
    """A saga step that fails for good (not retried)."""


def _effect(line: str) -> None:
    EFFECTS.mkdir(parents=True, exist_ok=True)
    fd = os.open(EFFECTS / f"{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class _Execution:
    """Records the start and the end of one execution of an activity."""

    def __init__(self, task: Any, seconds: float) -> None:
        self.head = f"{task.request.id} {task.name} {os.getpid()}"
        self.seconds = seconds
        self.how = "in-place" if task.request.is_eager else "message"

    def __enter__(self) -> None:
        _effect(f"S {self.head} {time.time():.3f} {self.seconds} {self.how}")

    def __exit__(self, *_: Any) -> None:
        _effect(f"E {self.head} {time.time():.3f}")


@app.task(bind=True, name="chaos.add")
def add(self: Any, x: int, y: int, seconds: float = 0.0) -> int:
    with _Execution(self, seconds):
        time.sleep(seconds)
        return x + y


@app.task(bind=True, name="chaos.step")
def step(self: Any, key: str, name: str, fail: bool = False, seconds: float = 0.0) -> str:
    with _Execution(self, seconds):
        time.sleep(seconds)
        if fail:
            raise StepFailed(f"{key}: {name} failed")
        return name


@app.task(bind=True, name="chaos.undo")
def undo(self: Any, key: str, name: str) -> str:
    with _Execution(self, 0.0):
        return f"undid {name}"


# -- workflows -------------------------------------------------------------------------------
def _act(ctx: WorkflowContext, task: Any, *args: Any, seconds: float = 0.0) -> Any:
    return ctx.activity(task, *args, seconds, retry=RETRY, timeout=seconds + MARGIN)


async def seq(ctx: WorkflowContext, n: int, base: int, seconds: float) -> int:
    total = base
    for i in range(n):
        total = await _act(ctx, add, total, i, seconds=seconds)
    return total


async def fan(ctx: WorkflowContext, n: int, seconds: float) -> list[int]:
    return await ctx.gather(*(_act(ctx, add, i, i, seconds=seconds) for i in range(n)))


async def counter(ctx: WorkflowContext, n: int, total: int) -> int:
    total = await _act(ctx, add, total, n)
    if n > 0:
        return await ctx.continue_as_new(n - 1, total)
    return total


async def family(ctx: WorkflowContext, base: int) -> list[Any]:
    return await ctx.gather(
        ctx.child("chaos.seq", 2, base, 0.0),
        ctx.child("chaos.fan", 3, 0.0),
        ctx.child("chaos.counter", 2, 0),
    )


async def saga(ctx: WorkflowContext, key: str, fail_at: int | None, seconds: float) -> str:
    async with ctx.saga() as steps:
        for i, name in enumerate(SAGA_STEPS):
            await _act(ctx, step, key, name, i == fail_at, seconds=seconds)
            steps.compensate_with(undo.s(key, name), retry=RETRY, timeout=MARGIN)
    return "shipped"


async def waiter(ctx: WorkflowContext, count: int) -> list[Any]:
    return [await ctx.wait_signal("go", timeout=SIGNAL_TIMEOUT) for _ in range(count)]


async def relay(ctx: WorkflowContext, generation: int) -> Any:
    """Continues as new once, then waits for a signal sent to the chain's first run."""
    if generation == 0:
        return await ctx.continue_as_new(1)
    return await ctx.wait_signal("go", timeout=SIGNAL_TIMEOUT)


async def tick(ctx: WorkflowContext, seconds: float) -> int:
    """What the schedules start: one activity."""
    return int(await _act(ctx, add, 1, 1, seconds=seconds))


async def limited(ctx: WorkflowContext, base: int, seconds: float) -> int:
    """Runs under a concurrency limit: a quick step, then one that takes a while."""
    first = await _act(ctx, add, base, 1)
    return int(await _act(ctx, add, first, 1, seconds=seconds))


async def keyed(ctx: WorkflowContext, customer: str, base: int, seconds: float) -> int:
    """Runs limited per customer."""
    return await limited(ctx, base, seconds)


async def limited_parent(ctx: WorkflowContext, base: int, seconds: float) -> int:
    """Two children held by the limit of ``chaos.limited``, as any run of it is."""
    first, second = await ctx.gather(
        ctx.child("chaos.limited", base, seconds), ctx.child("chaos.limited", base + 1, seconds)
    )
    return int(first) + int(second)


SAGA_STEPS = ("reserve", "charge", "ship")
#: The concurrency limits of the limited workflows.
LIMITED = 3
KEYED = 1

WORKFLOWS = {
    "chaos.seq": seq,
    "chaos.fan": fan,
    "chaos.counter": counter,
    "chaos.family": family,
    "chaos.saga": saga,
    "chaos.waiter": waiter,
    "chaos.relay": relay,
    "chaos.tick": tick,
    "chaos.limited": limited,
    "chaos.keyed": keyed,
    "chaos.limited_parent": limited_parent,
}
LIMITS: dict[str, dict[str, Any]] = {
    "chaos.limited": {"concurrency": LIMITED},
    "chaos.keyed": {"concurrency": KEYED, "concurrency_key": lambda customer, *_: customer},
}


def register(target: Orchestrator) -> Orchestrator:
    for name, fn in WORKFLOWS.items():
        target.workflow(name=name, **LIMITS.get(name, {}))(fn)
    return target


register(orc)


def client(
    broker_url: str, journal_url: str, prefix: str, overrides: dict[str, Any]
) -> Orchestrator:
    """An orchestrator for the test process itself (start, signal, read), on its own Celery
    app, so each cluster of a test session talks to its own broker and journal."""
    client_app = Celery(f"chaos-client-{prefix}", broker=broker_url)
    configure(client_app, prefix)
    values = {**DEFAULT_SETTINGS, **overrides}
    return register(Orchestrator(client_app, journal_url, queue=f"{prefix}-orchestrator", **values))
