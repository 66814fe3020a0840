"""What the in-memory journal holds: a row per run, event, inbox item and outbox task.

Payloads are kept as JSON text, as the SQL journal keeps them, so a value that Postgres could
not store is refused here too, and what a caller reads back is never the object it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from orchestrator.journal.protocol import RunRef
from orchestrator.model import payloads
from orchestrator.model.events import Event, EventType, NewEvent, RunInfo, RunStatus, timestamp
from orchestrator.model.records import InboxItem, NewRun, OutboxTask

#: Statuses that may need a replay.
ACTIVE = frozenset({RunStatus.RUNNABLE, RunStatus.RUNNING, RunStatus.BLOCKED})


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    type: EventType
    command_id: int | None
    attempt: int | None
    data: str
    at: float

    @classmethod
    def of(cls, seq: int, event: NewEvent, now: float) -> EventRow:
        data = payloads.encode(event.data, f"{event.type} event")
        at = now if event.at is None else event.at
        return cls(seq, EventType(event.type), event.command_id, event.attempt, data, at)

    def event(self, run_id: str) -> Event:
        return Event(
            run_id=run_id,
            seq=self.seq,
            type=self.type,
            command_id=self.command_id,
            attempt=self.attempt,
            data=payloads.decode(self.data),
            at=timestamp(self.at),
        )


@dataclass(frozen=True, slots=True)
class InboxRow:
    item: InboxItem  # its ``data`` is never read: ``data`` below is what was stored
    data: str

    def read(self) -> InboxItem:
        return replace(self.item, data=payloads.decode(self.data))


@dataclass(slots=True)
class TaskRow:
    spec: OutboxTask  # its ``args``/``kwargs`` are never read: the JSON below is what was stored
    args: str
    kwargs: str
    published_at: float | None
    started_at: float | None = None
    deadline_at: float | None = None
    finished: bool = False
    #: When the attempt times out unless it sends a heartbeat (its start or last beat plus
    #: its ``heartbeat_timeout``), and the details its beats recorded (JSON text).
    heartbeat_deadline_at: float | None = None
    heartbeat_details: str | None = None
    #: How the attempt ended (see :func:`~orchestrator.journal.insight.attempt_outcome`), and
    #: when; ``None`` while it runs, or when its run ended first.
    outcome: str | None = None
    finished_at: float | None = None

    def read(self) -> OutboxTask:
        return replace(
            self.spec, args=payloads.decode(self.args), kwargs=payloads.decode(self.kwargs)
        )


@dataclass(slots=True)
class RunRow:
    new: NewRun  # its ``args`` are never read: ``args`` below is what was stored
    args: str
    created_at: float
    status: RunStatus = RunStatus.RUNNABLE
    result: str | None = None
    error: str | None = None
    reason: str | None = None
    continued_to_run_id: str | None = None
    retried_to_run_id: str | None = None
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires_at: float | None = None
    last_seq: int = 1
    dispatched_at: float | None = None
    updated_at: float = 0.0
    closed_at: float | None = None
    #: The chain's execution deadline (kept on the run that began it; cleared once acted on).
    deadline_at: float | None = None
    events: list[EventRow] = field(default_factory=list)
    inbox: dict[int, InboxRow] = field(default_factory=dict)
    #: Dedupe keys taken, absorbed ones included (the SQL journal keeps absorbed rows).
    keys: set[str] = field(default_factory=set)

    @property
    def succeeded(self) -> bool:
        """Whether a continuation or a retry carries the run on (it is not its chain's tip)."""
        return self.status is RunStatus.CONTINUED or self.retried_to_run_id is not None

    def lease_free(self, now: float) -> bool:
        return self.lease_owner is None or (
            self.lease_expires_at is not None and self.lease_expires_at <= now
        )

    @property
    def chain(self) -> str:
        """The continue-as-new chain's id (its root's run id)."""
        return self.new.correlation_id or self.new.run_id

    def ref(self) -> RunRef:
        return RunRef(run_id=self.new.run_id, workflow=self.new.workflow, version=self.new.version)

    def info(self) -> RunInfo:
        new = self.new
        return RunInfo(
            run_id=new.run_id,
            workflow=new.workflow,
            version=new.version,
            status=self.status,
            result=payloads.decode(self.result),
            error=None if self.error is None else json.loads(self.error),
            reason=self.reason,
            parent_run_id=new.parent_run_id,
            parent_command_id=new.parent_command_id,
            correlation_id=self.chain,
            continued_from_run_id=new.continued_from_run_id,
            continued_to_run_id=self.continued_to_run_id,
            created_at=timestamp(self.created_at),
            closed_at=None if self.closed_at is None else timestamp(self.closed_at),
            args=payloads.decode(self.args),
            parent_close_policy=new.parent_close_policy,
            retried_from_run_id=new.retried_from_run_id,
            retried_to_run_id=self.retried_to_run_id,
            trace_context=new.trace_context,
        )


def read_history(run: RunRow, after_seq: int) -> list[Event]:
    # Sequence numbers run 1, 2, 3... with no gap: the events after ``after_seq`` are a slice.
    return [row.event(run.new.run_id) for row in run.events[max(0, after_seq) :]]


def task_row(task: OutboxTask, now: float) -> TaskRow:
    return TaskRow(
        spec=task,
        args=payloads.encode(task.args, f"arguments of {task.task_name}"),
        kwargs=payloads.encode(task.kwargs, f"keyword arguments of {task.task_name}"),
        # A task due now is published by the committer right after the commit.
        published_at=now if task.available_at <= now else None,
    )


def overdue(
    rows: Iterable[TaskRow], due_at: Callable[[TaskRow], float | None], now: float, limit: int
) -> list[TaskRow]:
    """Unfinished attempts whose ``due_at`` (start-to-close or heartbeat deadline) has
    passed, soonest due first, at most ``limit``."""
    due = [(when, row) for row in rows if not row.finished and (when := due_at(row)) is not None]
    return [row for when, row in sorted(due, key=lambda d: d[0]) if when <= now][:limit]
