"""The replay engine: recorded events in, new decisions out, with no event loop.

A :class:`Replayer` drives one run's workflow coroutine. :meth:`Replayer.feed` replays
recorded history, checking every command the code issues against the event recorded at the
same place (a mismatch is a :class:`NonDeterminismError`); :meth:`Replayer.decide` applies
new facts from the inbox and returns what the workflow decided. The replayer keeps its state,
so a worker that caches it feeds only the events recorded since (replay cost proportional to
what is new). Errors in workflow code become a failed run, never an exception here.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine import decisions
from orchestrator.engine.context import Future, WorkflowContext, WorkflowInfo
from orchestrator.engine.registry import WorkflowDefinition
from orchestrator.model import payloads
from orchestrator.model.errors import (
    ActivityFailed,
    Cancelled,
    ChildFailed,
    NonDeterminismError,
    UnknownWorkflow,
    describe_exception,
)
from orchestrator.model.events import COMMAND_EVENTS, Event, EventType, NewEvent, RunStatus
from orchestrator.model.records import InboxItem, NewRun, OutboxTask, Timer
from orchestrator.model.retry import RetryPolicy

log = logging.getLogger(__name__)

WorkflowFn = Callable[..., Coroutine[Any, Any, Any]]
ResolveWorkflow = Callable[[Any, "str | None"], WorkflowDefinition]


@dataclass
class Decision:
    """What one :meth:`Replayer.decide` produced, ready to become a journal batch."""

    events: list[NewEvent] = field(default_factory=list)
    tasks: list[OutboxTask] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    children: list[NewRun] = field(default_factory=list)
    continuation: decisions.ContinueRun | None = None
    status: RunStatus = RunStatus.SUSPENDED
    result: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    #: How many of the inbox items given to :meth:`Replayer.decide` were applied; the rest
    #: arrived after the run ended (a continuation inherits its signals and cancellation).
    consumed: int = 0


@dataclass
class _Activity:
    command: decisions.ScheduleActivity
    future: Future[Any]


class _Task:
    """One coroutine of the workflow (the main one, or one spawned by ``ctx.gather``)."""

    __slots__ = ("coro", "future", "started", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], future: Future[Any]) -> None:
        self.coro = coro
        self.future = future
        self.waiting_on: Future[Any] | None = None
        self.started = False

    def ready(self) -> bool:
        return not self.future.done and (
            not self.started or (self.waiting_on is not None and self.waiting_on.done)
        )


class Replayer:
    """Replays one run and decides its next steps. Not thread-safe; one per run."""

    def __init__(
        self,
        fn: WorkflowFn,
        info: WorkflowInfo,
        *,
        default_retry: RetryPolicy | None = None,
        max_payload_bytes: int = payloads.DEFAULT_MAX_BYTES,
        resolve_workflow: ResolveWorkflow | None = None,
    ) -> None:
        self.run_id = info.run_id
        self.last_activity_id: int | None = None
        self._resolve_workflow = resolve_workflow
        self.now = 0.0
        self.default_retry = default_retry or RetryPolicy()
        self.max_payload_bytes = max_payload_bytes
        self.last_seq = 0
        self._fn = fn
        self._ctx = WorkflowContext(self, info)
        self._command_ids = 0
        self._recorded: deque[Event] = deque()
        self._out: Decision | None = None
        self._tasks: list[_Task] = []
        self._main: _Task | None = None
        self._activities: dict[int, _Activity] = {}
        self._timers: dict[int, Future[Any]] = {}
        self._children: dict[int, Future[Any]] = {}
        self._signals: defaultdict[str, deque[Any]] = defaultdict(deque)
        self._signal_waiters: defaultdict[str, deque[Future[Any]]] = defaultdict(deque)
        self._continue: decisions.ContinueRun | None = None
        self._pending_cancel: Cancelled | None = None
        self._nondeterminism: NonDeterminismError | None = None
        self._terminal: decisions.Command | None = None

    # -- public -----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether the run reached a terminal decision."""
        return self._terminal is not None

    def feed(self, history: Sequence[Event]) -> None:
        """Replay recorded events (those after :attr:`last_seq`), checking the code against
        them. Raises :class:`NonDeterminismError` when they disagree."""
        self._recorded.extend(e for e in history if e.seq > self.last_seq)
        while self._recorded:
            event = self._recorded.popleft()
            self.last_seq = event.seq
            if event.type in COMMAND_EVENTS:
                raise self._mismatch(
                    event.command_id,
                    f"history has {_show(event)} here, but the workflow code did not issue it",
                )
            self._apply(
                event.type,
                event.command_id,
                event.attempt,
                event.data,
                event.at.timestamp(),
                event.seq,
            )
        self._raise_nondeterminism()

    def decide(self, inbox: Sequence[InboxItem], now: float) -> Decision:
        """Apply new facts (in order) and return the events and rows to commit.

        The decision's events begin with any commands the code issued past the end of
        recorded history, then each fact followed by what it led to.
        """
        out = self._out or Decision()
        self._out = out
        try:
            if self._main is None:
                raise NonDeterminismError(self.run_id, None, "history has no run_started event")
            for item in inbox:
                if self._terminal is not None:
                    break  # the run has ended; the rest is not this run's to absorb
                self.now = now
                out.events.append(
                    NewEvent(
                        type=item.type,
                        command_id=item.command_id,
                        attempt=item.attempt,
                        data=item.data,
                        at=now,
                    )
                )
                self._apply(item.type, item.command_id, item.attempt, item.data, now, None)
                out.consumed += 1
                self._raise_nondeterminism()
        finally:
            self._out = None
        self._summarise(out)
        return out

    # -- the context's engine interface ------------------------------------------------------
    def next_command_id(self) -> int:
        self._command_ids += 1
        return self._command_ids

    def issue(self, command: decisions.Command, future: Future[Any] | None = None) -> None:
        cid = command.command_id
        if isinstance(command, decisions.ScheduleActivity) and future is not None:
            assert cid is not None
            self._activities[cid] = _Activity(command, future)
            if type(command) is decisions.ScheduleActivity:
                self.last_activity_id = cid
        elif isinstance(command, decisions.StartTimer) and future is not None:
            assert cid is not None
            self._timers[cid] = future
        elif isinstance(command, decisions.StartChild) and future is not None:
            assert cid is not None
            self._children[cid] = future
        recorded = self._record(command)
        if recorded is not None and isinstance(command, decisions.ScheduleActivity):
            # History wins: retries follow the policy the run was scheduled with, not today's.
            activity = self._activities.get(cid) if cid is not None else None
            if activity is not None and "retry" in recorded.data:
                activity.command = dataclasses.replace(
                    activity.command, retry=RetryPolicy.from_json(recorded.data["retry"])
                )

    def wait_signal(self, name: str, timeout: float | None) -> Future[Any]:
        future: Future[Any] = Future(f"signal {name!r}")
        buffered = self._signals[name]
        if buffered:
            future.set_result(buffered.popleft())
            return future
        waiters = self._signal_waiters[name]
        waiters.append(future)
        if timeout is not None:
            timer: Future[Any] = Future(f"timeout of signal {name!r}")
            self.issue(
                decisions.StartTimer(
                    command_id=self.next_command_id(), fire_at=self.now + timeout, seconds=timeout
                ),
                timer,
            )

            def expire(_: Future[Any]) -> None:
                if not future.done:
                    waiters.remove(future)
                    future.set_result(None)

            timer.on_done(expire)
        return future

    def continue_as_new(self, args: list[Any]) -> Future[Any]:
        if self._continue is None:
            self._continue = decisions.ContinueRun(
                args=payloads.roundtrip(args, "continue_as_new arguments", self.max_payload_bytes),
                next_run_id=decisions.next_run_id(self.run_id),
            )
        return Future("continue as new")

    def resolve_workflow(self, workflow: Any, version: str | None) -> WorkflowDefinition:
        if self._resolve_workflow is None:
            raise UnknownWorkflow(str(workflow), version)
        return self._resolve_workflow(workflow, version)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        future: Future[Any] = Future(getattr(coro, "__qualname__", "coroutine"))
        self._tasks.append(_Task(coro, future))
        return future

    def patched(self, change_id: str) -> bool:
        if self._recorded:
            head = self._recorded[0]
            if head.type == EventType.MARKER_RECORDED and head.data.get("name") == change_id:
                self._recorded.popleft()
                self.last_seq = head.seq
                self._command_ids += 1
                return True
            return False
        self._record(decisions.RecordMarker(command_id=self.next_command_id(), name=change_id))
        return True

    # -- recording and matching -------------------------------------------------------------
    def _record(self, command: decisions.Command) -> Event | None:
        """Match ``command`` against history (returning the recorded event) or record it."""
        if self._nondeterminism is not None:
            raise self._nondeterminism
        if self._terminal is not None and command is not self._terminal:
            raise RuntimeError(
                f"run {self.run_id}: {command.describe()} issued after the run ended"
            )
        if self._recorded:
            head = self._recorded[0]
            if not command.matches(head):
                raise self._mismatch(
                    command.command_id,
                    f"the workflow issued {command.describe()}, but history has {_show(head)}",
                )
            self._recorded.popleft()
            self.last_seq = head.seq
            return head
        if self._out is None:
            # Past the end of history during feed: the code issues more than was recorded;
            # these become new decisions at the next decide.
            self._out = Decision()
        out = self._out
        out.events.append(command.to_event(self.now))
        if isinstance(command, decisions.ScheduleActivity):
            out.tasks.append(command.outbox(self.run_id, self.now))
        elif isinstance(command, decisions.StartTimer):
            out.timers.append(command.timer(self.run_id))
        elif isinstance(command, decisions.StartChild):
            out.children.append(command.new_run(self.run_id))
        elif isinstance(command, decisions.ContinueRun):
            out.continuation = command
        return None

    def _mismatch(self, command_id: int | None, detail: str) -> NonDeterminismError:
        self._nondeterminism = NonDeterminismError(self.run_id, command_id, detail)
        return self._nondeterminism

    def _raise_nondeterminism(self) -> None:
        if self._nondeterminism is not None:
            raise self._nondeterminism

    # -- applying facts ---------------------------------------------------------------------
    def _apply(
        self,
        kind: EventType,
        command_id: int | None,
        attempt: int | None,
        data: dict[str, Any],
        at: float,
        seq: int | None,
    ) -> None:
        self.now = at
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise NonDeterminismError(self.run_id, command_id, f"unexpected {kind} event")
        if self._terminal is not None:
            return  # facts arriving after the end are recorded, not acted on
        handler(self, command_id, attempt, data)
        self._run()

    def _on_run_started(self, _cid: int | None, _attempt: int | None, data: dict[str, Any]) -> None:
        if self._main is not None:
            raise NonDeterminismError(self.run_id, None, "a second run_started event")
        coro = self._fn(self._ctx, *data.get("args", []))
        self._main = _Task(coro, Future("workflow"))
        self._tasks.append(self._main)

    def _on_activity_completed(
        self, cid: int | None, attempt: int | None, data: dict[str, Any]
    ) -> None:
        activity = self._current_activity(cid, attempt)
        if activity is not None:
            activity.future.set_result(data.get("result"))

    def _on_activity_failed(
        self, cid: int | None, attempt: int | None, data: dict[str, Any]
    ) -> None:
        activity = self._current_activity(cid, attempt)
        if activity is None or cid is None or attempt is None:
            return
        error = data.get("error") or {}
        command = activity.command
        if command.retry.retries(attempt, str(error.get("type", ""))):
            retry = dataclasses.replace(
                command, attempt_no=attempt + 1, delay=command.retry.delay_before(attempt + 1)
            )
            activity.command = retry
            self._record(retry)
            return
        activity.future.set_error(
            ActivityFailed(self.run_id, cid, command.task_name, attempt, error)
        )

    def _on_timer_fired(self, cid: int | None, _attempt: int | None, _data: dict[str, Any]) -> None:
        future = self._timers.pop(cid, None) if cid is not None else None
        if future is not None:
            future.set_result(None)

    def _on_signal_received(
        self, _cid: int | None, _attempt: int | None, data: dict[str, Any]
    ) -> None:
        name = str(data.get("name"))
        waiters = self._signal_waiters[name]
        if waiters:
            waiters.popleft().set_result(data.get("payload"))
        else:
            self._signals[name].append(data.get("payload"))

    def _on_child_ended(self, cid: int | None, data: dict[str, Any], kind: EventType) -> None:
        future = self._children.pop(cid, None) if cid is not None else None
        if future is None or cid is None:
            return
        child_run_id = str(data.get("child_run_id", ""))
        if kind is EventType.CHILD_COMPLETED:
            future.set_result(data.get("result"))
            return
        error = data.get("error") or {
            "type": "Cancelled",
            "message": f"child {child_run_id} was cancelled: {data.get('reason')}",
            "traceback": None,
        }
        future.set_error(ChildFailed(self.run_id, cid, child_run_id, error))

    def _on_child_completed(self, cid: int | None, _a: int | None, data: dict[str, Any]) -> None:
        self._on_child_ended(cid, data, EventType.CHILD_COMPLETED)

    def _on_child_failed(self, cid: int | None, _a: int | None, data: dict[str, Any]) -> None:
        self._on_child_ended(cid, data, EventType.CHILD_FAILED)

    def _on_child_cancelled(self, cid: int | None, _a: int | None, data: dict[str, Any]) -> None:
        self._on_child_ended(cid, data, EventType.CHILD_CANCELLED)

    def _on_cancel_requested(
        self, _cid: int | None, _attempt: int | None, data: dict[str, Any]
    ) -> None:
        self._pending_cancel = Cancelled(self.run_id, data.get("reason"))

    def _on_run_timed_out(
        self, _cid: int | None, _attempt: int | None, data: dict[str, Any]
    ) -> None:
        """The run's execution timeout passed: it fails here, and its code runs no further
        (no cleanup is awaited, as for a process that ran out of time)."""
        error = data.get("error") or {"type": "WorkflowTimeout", "message": "timed out"}
        self._finish(decisions.FailRun(error=dict(error)))

    def _current_activity(self, cid: int | None, attempt: int | None) -> _Activity | None:
        activity = self._activities.get(cid) if cid is not None else None
        if activity is None or activity.future.done or activity.command.attempt_no != attempt:
            log.info(
                "run %s: outcome of command %s attempt %s is stale; recorded only",
                self.run_id,
                cid,
                attempt,
            )
            return None
        return activity

    # -- driving the coroutines -------------------------------------------------------------
    def _run(self) -> None:
        progressed = True
        while progressed and self._terminal is None:
            progressed = False
            for task in list(self._tasks):
                if self._terminal is not None:
                    return
                throw = self._pending_cancel if task is self._main else None
                if throw is not None or task.ready():
                    if throw is not None:
                        self._pending_cancel = None
                    self._step(task, throw)
                    progressed = True
            self._tasks = [t for t in self._tasks if not t.future.done]

    def _step(self, task: _Task, throw: BaseException | None) -> None:
        self._take_step(task, throw)
        if self._continue is not None and self._terminal is None:
            self._finish(self._continue)

    def _take_step(self, task: _Task, throw: BaseException | None) -> None:
        task.started = True
        try:
            yielded = task.coro.throw(throw) if throw is not None else task.coro.send(None)
        except StopIteration as stop:
            self._raise_nondeterminism()
            self._task_returned(task, stop.value)
            return
        except Cancelled as exc:
            self._raise_nondeterminism()
            self._task_failed(task, exc)
            return
        except Exception as exc:
            self._raise_nondeterminism()
            if isinstance(exc, RuntimeError) and "no running event loop" in str(exc):
                exc = TypeError(
                    "workflow code used asyncio, which does not run inside workflows: await only "
                    "workflow awaitables, what ctx returns (ctx.sleep, not asyncio.sleep)"
                )
            self._task_failed(task, exc)
            return
        self._raise_nondeterminism()
        if not isinstance(yielded, Future):
            error = TypeError(
                f"workflow awaited {yielded!r}, which is not a workflow awaitable: "
                "await only what ctx returns (asyncio does not run inside workflows)"
            )
            task.coro.close()
            self._task_failed(task, error)
            return
        task.waiting_on = yielded

    def _task_returned(self, task: _Task, value: Any) -> None:
        if task is not self._main:
            task.future.set_result(value)
            return
        try:
            result = payloads.roundtrip(value, "workflow result", self.max_payload_bytes)
        except Exception as exc:
            self._finish(decisions.FailRun(error=describe_exception(exc)))
            return
        self._finish(decisions.CompleteRun(result=result))

    def _task_failed(self, task: _Task, exc: BaseException) -> None:
        if task is not self._main:
            task.future.set_error(exc)
            return
        if isinstance(exc, Cancelled):
            self._finish(decisions.CancelRun(reason=exc.reason))
            return
        tb = "".join(traceback.format_exception(exc))
        self._finish(decisions.FailRun(error=describe_exception(exc, tb)))

    def _finish(self, command: decisions.Command) -> None:
        self._terminal = command
        self._record(command)
        for task in self._tasks:
            try:
                task.coro.close()
            except Exception:  # a finally-block that awaits; the run has ended regardless
                log.warning("run %s: a workflow coroutine did not close cleanly", self.run_id)

    def _summarise(self, out: Decision) -> None:
        terminal = self._terminal
        if isinstance(terminal, decisions.CompleteRun):
            out.status, out.result = RunStatus.COMPLETED, terminal.result
        elif isinstance(terminal, decisions.FailRun):
            out.status, out.error = RunStatus.FAILED, terminal.error
        elif isinstance(terminal, decisions.CancelRun):
            out.status, out.reason = RunStatus.CANCELLED, terminal.reason
        elif isinstance(terminal, decisions.ContinueRun):
            out.status, out.reason = RunStatus.CONTINUED, f"continued as {terminal.next_run_id}"
        else:
            out.status = RunStatus.SUSPENDED
            waiting = self._main.waiting_on if self._main is not None else None
            out.reason = f"waiting for {waiting.description}" if waiting is not None else None


def _show(event: Event) -> str:
    target = event.data.get("task") or event.data.get("name") or ""
    return (
        f"{event.type.value}"
        + (f" {target}" if target else "")
        + (
            f" (command {event.command_id}, seq {event.seq})"
            if event.command_id is not None
            else f" (seq {event.seq})"
        )
    )


_Handler = Callable[[Replayer, int | None, int | None, dict[str, Any]], None]

_HANDLERS: dict[EventType, _Handler] = {
    EventType.RUN_STARTED: Replayer._on_run_started,
    EventType.ACTIVITY_COMPLETED: Replayer._on_activity_completed,
    EventType.ACTIVITY_FAILED: Replayer._on_activity_failed,
    EventType.ACTIVITY_TIMED_OUT: Replayer._on_activity_failed,
    EventType.TIMER_FIRED: Replayer._on_timer_fired,
    EventType.CANCEL_REQUESTED: Replayer._on_cancel_requested,
    EventType.SIGNAL_RECEIVED: Replayer._on_signal_received,
    EventType.CHILD_COMPLETED: Replayer._on_child_completed,
    EventType.CHILD_FAILED: Replayer._on_child_failed,
    EventType.CHILD_CANCELLED: Replayer._on_child_cancelled,
    EventType.COMPENSATION_COMPLETED: Replayer._on_activity_completed,
    EventType.COMPENSATION_FAILED: Replayer._on_activity_failed,
    EventType.RUN_TIMED_OUT: Replayer._on_run_timed_out,
}
