"""The authoring API: :class:`WorkflowContext` and the awaitables it hands out.

Workflow code awaits only these awaitables; the replay engine resolves them from history.
Nothing here does I/O: every call that affects the world becomes a command that the engine
checks against history (replay) or records (new decisions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random as _random
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from orchestrator.engine import decisions
from orchestrator.engine.registry import WorkflowDefinition
from orchestrator.model import limits, payloads
from orchestrator.model.deadlines import check_timeout
from orchestrator.model.errors import OrchestratorError
from orchestrator.model.events import timestamp
from orchestrator.model.retry import RetryPolicy, Seconds, to_seconds

T = TypeVar("T")


class Future(Awaitable[T]):
    """A value the workflow waits for; resolved by the engine, never by workflow code."""

    __slots__ = ("_callbacks", "_error", "_value", "description", "done")

    def __init__(self, description: str) -> None:
        self.description = description
        self.done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Future[Any]], None]] = []

    def __await__(self) -> Generator[Future[Any], None, T]:
        if not self.done:
            yield self
        return self.result()

    def result(self) -> T:
        """The value, or the error raised, once resolved."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]

    def set_result(self, value: Any) -> None:
        """Resolve with a value (engine only)."""
        self._resolve(value, None)

    def set_error(self, error: BaseException) -> None:
        """Resolve with an error raised at the await (engine only)."""
        self._resolve(None, error)

    def _resolve(self, value: Any, error: BaseException | None) -> None:
        if self.done:
            return
        self.done, self._value, self._error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def on_done(self, callback: Callable[[Future[Any]], None]) -> None:
        """Call ``callback`` when resolved (at once if it already is)."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)


class _Gather(Future[list[Any]]):
    """Resolves with every child's value in order, or with the first error."""

    def __init__(self, children: list[Future[Any]]) -> None:
        names = ", ".join(c.description for c in children[:3])
        more = f" and {len(children) - 3} more" if len(children) > 3 else ""
        super().__init__(f"gather({names}{more})")
        self._children = children
        self._left = len(children)
        if not children:
            self.set_result([])
        for child in children:
            child.on_done(self._child_done)

    def _child_done(self, child: Future[Any]) -> None:
        if child._error is not None:
            self.set_error(child._error)
            return
        self._left -= 1
        if self._left == 0:
            self.set_result([c._value for c in self._children])


class ChildHandle(Future[Any]):
    """A started child workflow: await it (or pass it to ``ctx.gather``) for its result."""

    __slots__ = ("run_id",)

    def __init__(self, description: str, run_id: str) -> None:
        super().__init__(description)
        self.run_id = run_id


class Engine(Protocol):
    """What the context needs from the replay engine."""

    run_id: str
    now: float
    default_retry: RetryPolicy
    max_payload_bytes: int
    last_activity_id: int | None

    def next_command_id(self) -> int: ...

    def issue(self, command: decisions.Command, future: Future[Any] | None = None) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]: ...

    def patched(self, change_id: str) -> bool: ...

    def wait_signal(self, name: str, timeout: float | None) -> Future[Any]: ...

    def continue_as_new(self, args: list[Any]) -> Future[Any]: ...

    def resolve_workflow(self, workflow: Any, version: str | None) -> WorkflowDefinition: ...


@dataclass(frozen=True, kw_only=True)
class WorkflowInfo:
    """Facts about the running workflow, as ``ctx.info``."""

    run_id: str
    workflow: str
    version: str
    parent_run_id: str | None
    correlation_id: str | None
    continued_from_run_id: str | None


class WorkflowContext:
    """The only way a workflow affects the world. Passed as the first argument.

    Every waiting call returns an awaitable that :meth:`gather` accepts.
    """

    def __init__(self, engine: Engine, info: WorkflowInfo) -> None:
        self._engine = engine
        self.info = info
        seed = int.from_bytes(hashlib.sha256(info.run_id.encode()).digest()[:8], "big")
        self._random = _random.Random(seed)

    @property
    def run_id(self) -> str:
        """This run's id."""
        return self.info.run_id

    def activity(
        self,
        task: Any,
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        queue: str | None = None,
        heartbeat_timeout: Seconds | None = None,
        **kwargs: Any,
    ) -> Future[Any]:
        """Run a Celery task as an activity; await the result.

        ``task`` is a task object, a task name, or a signature (whose args come first and
        whose queue option is used unless ``queue`` is given). ``timeout`` is start-to-close
        per attempt, enforced by the dispatcher; ``retry`` defaults to the orchestrator's
        ``default_retry``. A failed last attempt raises :class:`~orchestrator.ActivityFailed`.
        With ``heartbeat_timeout``, an attempt that goes longer without calling
        ``orchestrator.heartbeat()`` (from its start) times out and is retried by ``retry``.
        """
        name, args, kwargs, queue = _task_call(task, args, kwargs, queue)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {retry!r}")
        limit = self._engine.max_payload_bytes
        command = decisions.ScheduleActivity(
            command_id=self._engine.next_command_id(),
            task_name=name,
            args=payloads.roundtrip(list(args), f"arguments of activity {name}", limit),
            kwargs=payloads.roundtrip(kwargs, f"keyword arguments of activity {name}", limit),
            queue=queue,
            retry=retry or self._engine.default_retry,
            timeout=None if timeout is None else to_seconds(timeout, "timeout"),
            heartbeat_timeout=(
                None
                if heartbeat_timeout is None
                else check_timeout(heartbeat_timeout, "heartbeat_timeout")
            ),
        )
        future: Future[Any] = Future(f"activity {name} (command {command.command_id})")
        self._engine.issue(command, future)
        return future

    def gather(self, *awaitables: Awaitable[Any]) -> Future[list[Any]]:
        """Wait for all of ``awaitables`` (futures or coroutines); their results in order.

        The first error is raised; the others keep running and are recorded.
        """
        children: list[Future[Any]] = []
        for item in awaitables:
            if isinstance(item, Future):
                children.append(item)
            elif isinstance(item, Coroutine):
                children.append(self._engine.spawn(item))
            else:
                raise TypeError(f"ctx.gather takes workflow awaitables or coroutines, not {item!r}")
        return _Gather(children)

    def wait_signal(self, name: str, timeout: Seconds | None = None) -> Future[Any]:
        """The payload of the next signal ``name`` (signals sent earlier wait in order), or
        ``None`` when ``timeout`` passes first (a durable timer, so replay agrees)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"wait_signal needs a non-empty signal name, not {name!r}")
        seconds = None if timeout is None else to_seconds(timeout, "wait_signal timeout")
        return self._engine.wait_signal(name, seconds)

    def start_child(
        self,
        workflow: Any,
        *args: Any,
        run_id: str | None = None,
        version: str | None = None,
        parent_close_policy: str = "cancel",
    ) -> ChildHandle:
        """Start a child workflow; returns its handle, to await now or later.

        ``parent_close_policy`` is what happens to the child if this run ends or is cancelled
        first: ``"cancel"`` (default) or ``"abandon"``. A failed child raises
        :class:`~orchestrator.ChildFailed` at the await. A child of a workflow with a
        concurrency limit waits ``queued`` for its place as any run of it does; its key
        function runs here, so a key that raises fails this call, as a bad argument does.
        """
        if parent_close_policy not in ("cancel", "abandon"):
            raise ValueError(
                f"parent_close_policy must be 'cancel' or 'abandon', not {parent_close_policy!r}"
            )
        definition = self._engine.resolve_workflow(workflow, version)
        name = definition.name
        child_args = payloads.roundtrip(
            list(args), f"arguments of child workflow {name}", self._engine.max_payload_bytes
        )
        limited = limits.run_fields(definition.limit, child_args)
        command_id = self._engine.next_command_id()
        if run_id is None:
            run_id = uuid.uuid5(
                uuid.NAMESPACE_URL, f"continuum:child:{self.run_id}:{command_id}"
            ).hex
        elif not isinstance(run_id, str) or not run_id or len(run_id) > 200:
            raise ValueError(f"invalid child run id {run_id!r}")
        command = decisions.StartChild(
            command_id=command_id,
            workflow=name,
            version=definition.version,
            args=child_args,
            child_run_id=run_id,
            parent_close_policy=parent_close_policy,
            **limited,
        )
        handle = ChildHandle(f"child {name} {run_id} (command {command_id})", run_id)
        self._engine.issue(command, handle)
        return handle

    def child(self, workflow: Any, *args: Any, **options: Any) -> ChildHandle:
        """Start a child workflow and await its result: ``await ctx.child(ship, order_id)``
        (the options of :meth:`start_child`)."""
        return self.start_child(workflow, *args, **options)

    def continue_as_new(self, *args: Any) -> Future[Any]:
        """End this run and continue as a new run of the same workflow with ``args`` and a
        fresh history. The run ends here: ``return await ctx.continue_as_new(...)``."""
        return self._engine.continue_as_new(list(args))

    def saga(self) -> Saga:
        """A block whose registered compensations run, newest first, if it raises or the run
        is cancelled inside it; then the error propagates."""
        return Saga(self)

    def sleep(self, duration: Seconds) -> Future[None]:
        """A durable timer: survives restarts, fired by the dispatcher."""
        seconds = to_seconds(duration, "sleep duration")
        future: Future[None] = Future(f"sleep {seconds:g}s")
        if seconds == 0:
            future.set_result(None)
            return future
        command = decisions.StartTimer(
            command_id=self._engine.next_command_id(),
            fire_at=self._engine.now + seconds,
            seconds=seconds,
        )
        future.description = f"timer {command.command_id} until {timestamp(command.fire_at)}"
        self._engine.issue(command, future)
        return future

    def now(self) -> datetime:
        """Workflow time: the time of the event being replayed (the same on every replay)."""
        return timestamp(self._engine.now)

    def random(self) -> _random.Random:
        """A random generator seeded by the run: the same sequence on every replay."""
        return self._random

    def uuid4(self) -> uuid.UUID:
        """A random UUID drawn from :meth:`random` (deterministic across replays)."""
        return uuid.UUID(int=self._random.getrandbits(128), version=4)

    def patched(self, change_id: str) -> bool:
        """``True`` where new code runs; ``False`` where a run recorded before the change
        replays. Lets a workflow change while old runs are in flight."""
        if not isinstance(change_id, str) or not change_id:
            raise TypeError(f"patched() needs a non-empty change id string, not {change_id!r}")
        return self._engine.patched(change_id)

    def publish(self, name: str, value: Any) -> None:
        """Publish ``value`` (JSON) under ``name`` for ``orc.query(run_id, name)``, which
        returns the newest value published under it. Journaled (a ``value_published``
        event), so it is the same on every replay; a value JSON cannot carry, or larger than
        ``max_payload_bytes``, raises :class:`~orchestrator.PayloadError` here."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"publish needs a name of 1-200 printable characters, not {name!r}")
        limit = self._engine.max_payload_bytes
        published = payloads.roundtrip(value, f"value published under {name!r}", limit)
        command = decisions.PublishValue(
            command_id=self._engine.next_command_id(), name=name, value=published
        )
        self._engine.issue(command)


class Saga:
    """``async with ctx.saga() as saga: ...; saga.compensate_with(undo.s(x))``."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx
        self._steps: list[decisions.ScheduleCompensation] = []

    def compensate_with(
        self,
        task: Any,
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        queue: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register the compensation of the step just done (a task, name or signature)."""
        engine = self._ctx._engine
        name, args, kwargs, queue = _task_call(task, args, kwargs, queue)
        limit = engine.max_payload_bytes
        self._steps.append(
            decisions.ScheduleCompensation(
                command_id=None,
                task_name=name,
                args=payloads.roundtrip(list(args), f"arguments of compensation {name}", limit),
                kwargs=payloads.roundtrip(
                    kwargs, f"keyword arguments of compensation {name}", limit
                ),
                queue=queue,
                retry=retry or engine.default_retry,
                timeout=None if timeout is None else to_seconds(timeout, "timeout"),
                target_activity_id=engine.last_activity_id,
            )
        )

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, GeneratorExit):
            # GeneratorExit: this copy of the run is dropped from memory (a cache eviction,
            # a test's end), not ended; the run itself has nothing to undo.
            return False
        failures: list[str] = []
        engine = self._ctx._engine
        for step in reversed(self._steps):
            command = dataclasses.replace(step, command_id=engine.next_command_id())
            future: Future[Any] = Future(
                f"compensation {step.task_name} (command {command.command_id})"
            )
            engine.issue(command, future)
            try:
                await future
            except OrchestratorError as failure:
                failures.append(str(failure))
        if failures:
            exc.add_note("compensation failed: " + "; ".join(failures))
        return False


#: A published value's name: printable, as a signal's.
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")

#: The longest task name and queue name the journal keeps.
NAME_LIMIT = 255


def _task_call(
    task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], queue: str | None
) -> tuple[str, tuple[Any, ...], dict[str, Any], str | None]:
    """Name, args, kwargs and queue of a task object, task name or signature."""
    if isinstance(task, str):
        name = task
    elif isinstance(task, dict) and "task" in task:  # a Celery signature is a dict
        name = str(task["task"])
        args = tuple(task.get("args") or ()) + args
        kwargs = {**(task.get("kwargs") or {}), **kwargs}
        queue = queue or (task.get("options") or {}).get("queue")
    elif isinstance(getattr(task, "name", None), str):
        name = task.name
    else:
        raise TypeError(
            f"ctx.activity needs a Celery task, a task name or a signature, not {task!r}"
        )
    if not name:
        raise TypeError("ctx.activity needs a task with a name")
    for what, value in (("task name", name), ("queue", queue)):
        if value is not None and len(value) > NAME_LIMIT:
            raise ValueError(
                f"ctx.activity: {what} {value[:40]!r}... is {len(value)} characters long, "
                f"over the limit of {NAME_LIMIT}"
            )
    return name, args, kwargs, queue
