"""Retrying a failed run: which part of its history the retry keeps, and what it starts again.

A retry is a new run. Its history is the failed run's, cut where the failure began: the
final failure of the activity (or child) the workflow did not survive, else the first
compensation of its unwinding, else the ``run_failed`` decision itself (the workflow's own
code raised). What came before the cut is kept, event for event, with its sequence numbers
and times, so replay walks past it and completed activities are not run again. The
attempts that were open at the cut (scheduled, no outcome kept) are sent again under the
retry's task ids: the failed step runs again, under the code now deployed. Timers open at
the cut are set again; a child open at the cut is started again, as a new child, by cutting
before its ``child_started``. Signals the failed run took after the cut are handed to the
retry's inbox.

The retry shares its original's chain (``correlation_id``): the original keeps status
``failed`` and names its retry in ``retried_to_run_id``; having a successor, it is no longer
its chain's live tip, so every call that resolves a run id reaches the retry. Its id is
derived from the original's, so a second retry of the same run is refused by its key.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.model.errors import NotRetryable
from orchestrator.model.events import Event, EventType, RunInfo, RunStatus
from orchestrator.model.records import InboxItem, NewRun, OutboxTask, Timer, task_id_for

#: What a workflow issues going forward; compensations come after, when it unwinds.
_FORWARD = frozenset(
    {
        EventType.ACTIVITY_SCHEDULED,
        EventType.TIMER_STARTED,
        EventType.CHILD_STARTED,
        EventType.MARKER_RECORDED,
    }
)
#: Facts that end an activity's or child's command with an error.
_FAILURES = frozenset(
    {
        EventType.ACTIVITY_FAILED,
        EventType.ACTIVITY_TIMED_OUT,
        EventType.CHILD_FAILED,
        EventType.CHILD_CANCELLED,
    }
)
_SCHEDULED = frozenset({EventType.ACTIVITY_SCHEDULED, EventType.COMPENSATION_SCHEDULED})
_OUTCOMES = frozenset(
    {
        EventType.ACTIVITY_COMPLETED,
        EventType.ACTIVITY_FAILED,
        EventType.ACTIVITY_TIMED_OUT,
        EventType.COMPENSATION_COMPLETED,
        EventType.COMPENSATION_FAILED,
    }
)
_CHILD_ENDS = frozenset(
    {EventType.CHILD_COMPLETED, EventType.CHILD_FAILED, EventType.CHILD_CANCELLED}
)


def retry_run_id(run_id: str) -> str:
    """The id of the run that retries ``run_id`` (one retry per run: retry the retry next)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"continuum:retry:{run_id}").hex


@dataclass(frozen=True, kw_only=True)
class RetryPlan:
    """What a journal writes for a retry: the run, the events it keeps (``seq < cut``), the
    attempts and timers open at the cut, and the signals taken after it."""

    run: NewRun
    cut: int
    events: list[Event]
    tasks: list[OutboxTask]
    timers: list[Timer]
    inbox: list[InboxItem]


def plan_retry(info: RunInfo, history: Sequence[Event], now: float) -> RetryPlan:
    """The retry of the failed run ``info`` with its ``history``; :class:`NotRetryable`
    when it is not failed or was retried already."""
    if info.status is not RunStatus.FAILED or info.retried_to_run_id is not None:
        raise NotRetryable(info.run_id, info.status.value, info.retried_to_run_id)
    cut = _cut(history)
    kept = [e for e in history if e.seq < cut]
    run = NewRun(
        run_id=retry_run_id(info.run_id),
        workflow=info.workflow,
        version=info.version,
        args=info.args,
        parent_run_id=info.parent_run_id,
        parent_command_id=info.parent_command_id,
        correlation_id=info.correlation_id or info.run_id,
        continued_from_run_id=info.continued_from_run_id,
        parent_close_policy=info.parent_close_policy,
        retried_from_run_id=info.run_id,
        trace_context=info.trace_context,
    )
    signals = [
        InboxItem(
            dedupe_key=f"retried:{e.seq}",
            type=EventType.SIGNAL_RECEIVED,
            data=e.data,
        )
        for e in history
        if e.seq >= cut and e.type == EventType.SIGNAL_RECEIVED
    ]
    return RetryPlan(
        run=run,
        cut=cut,
        events=kept,
        tasks=_open_attempts(run.run_id, kept, now),
        timers=_open_timers(run.run_id, kept),
        inbox=signals,
    )


def _cut(history: Sequence[Event]) -> int:
    """The sequence number of the first event the retry drops."""
    if not history or history[-1].type != EventType.RUN_FAILED:
        raise ValueError("a failed run's history ends with run_failed")
    cut = history[-1].seq
    last_forward = max((e.seq for e in history if e.type in _FORWARD), default=0)
    for event in history:
        if event.seq > last_forward and (
            event.type in _FAILURES or event.type == EventType.COMPENSATION_SCHEDULED
        ):
            cut = event.seq
            if event.type in (EventType.CHILD_FAILED, EventType.CHILD_CANCELLED):
                cut = _child_started(history, event.command_id, cut)
            break
    # A child open at the cut would report to the failed run, never to the retry: start it
    # again by cutting before it (which may leave another child open: cut again).
    while (opened := _open_children(history, cut)) is not None:
        cut = opened
    return cut


def _child_started(history: Sequence[Event], command_id: int | None, default: int) -> int:
    for event in history:
        if event.type == EventType.CHILD_STARTED and event.command_id == command_id:
            return event.seq
    return default


def _open_children(history: Sequence[Event], cut: int) -> int | None:
    """The ``child_started`` seq of the earliest child without an outcome before ``cut``."""
    ended = {e.command_id for e in history if e.seq < cut and e.type in _CHILD_ENDS}
    return min(
        (
            e.seq
            for e in history
            if e.seq < cut and e.type == EventType.CHILD_STARTED and e.command_id not in ended
        ),
        default=None,
    )


def _open_attempts(run_id: str, kept: Sequence[Event], now: float) -> list[OutboxTask]:
    """The attempts scheduled in ``kept`` with no outcome in it, to send again now."""
    latest: dict[int, Event] = {}
    ended: set[tuple[int | None, int | None]] = set()
    for event in kept:
        if event.type in _SCHEDULED and event.command_id is not None:
            latest[event.command_id] = event
        elif event.type in _OUTCOMES:
            ended.add((event.command_id, event.attempt))
    tasks = []
    for command_id, event in sorted(latest.items()):
        attempt = event.attempt or 1
        if (command_id, attempt) in ended:
            continue
        data = event.data
        target = data.get("target_activity_id")
        tasks.append(
            OutboxTask(
                task_id=task_id_for(run_id, command_id, attempt),
                run_id=run_id,
                command_id=command_id,
                attempt=attempt,
                task_name=str(data["task"]),
                args=list(data.get("args") or []),
                kwargs=dict(data.get("kwargs") or {}),
                kind="compensation"
                if event.type == EventType.COMPENSATION_SCHEDULED
                else "activity",
                queue=data.get("queue"),
                available_at=now,
                timeout_seconds=data.get("timeout"),
                target_activity_id=None if target is None else int(target),
            )
        )
    return tasks


def _open_timers(run_id: str, kept: Sequence[Event]) -> list[Timer]:
    """The timers started in ``kept`` that did not fire in it (a past one fires at once)."""
    fired = {e.command_id for e in kept if e.type == EventType.TIMER_FIRED}
    return [
        Timer(run_id=run_id, command_id=e.command_id, fire_at=float(e.data["fire_at"]))
        for e in kept
        if e.type == EventType.TIMER_STARTED
        and e.command_id is not None
        and e.command_id not in fired
    ]
