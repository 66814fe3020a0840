"""The history model: event types, run statuses and the frozen records users read.

A run's history is a list of :class:`Event`; its summary is a :class:`RunInfo`.
Both are made typed at the journal's edge and never change after that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """Every kind of fact a history can hold (snake_case, as stored)."""

    RUN_STARTED = "run_started"
    ACTIVITY_SCHEDULED = "activity_scheduled"
    ACTIVITY_COMPLETED = "activity_completed"
    ACTIVITY_FAILED = "activity_failed"
    ACTIVITY_TIMED_OUT = "activity_timed_out"
    TIMER_STARTED = "timer_started"
    TIMER_FIRED = "timer_fired"
    SIGNAL_RECEIVED = "signal_received"
    CANCEL_REQUESTED = "cancel_requested"
    CHILD_STARTED = "child_started"
    CHILD_COMPLETED = "child_completed"
    CHILD_FAILED = "child_failed"
    CHILD_CANCELLED = "child_cancelled"
    COMPENSATION_SCHEDULED = "compensation_scheduled"
    COMPENSATION_COMPLETED = "compensation_completed"
    COMPENSATION_FAILED = "compensation_failed"
    MARKER_RECORDED = "marker_recorded"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_CONTINUED = "run_continued"
    VALUE_PUBLISHED = "value_published"
    RUN_TIMED_OUT = "run_timed_out"


#: Events written by the run's own decisions (replay checks code against them).
COMMAND_EVENTS = frozenset(
    {
        EventType.ACTIVITY_SCHEDULED,
        EventType.TIMER_STARTED,
        EventType.CHILD_STARTED,
        EventType.COMPENSATION_SCHEDULED,
        EventType.MARKER_RECORDED,
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_CONTINUED,
        EventType.VALUE_PUBLISHED,
    }
)

TERMINAL_EVENTS = frozenset(
    {
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_CONTINUED,
    }
)


class RunStatus(StrEnum):
    """Where a run stands. ``blocked`` runs wait for code (or a node) that can replay them."""

    RUNNABLE = "runnable"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CONTINUED = "continued"
    BLOCKED = "blocked"
    #: Held back by its workflow's concurrency limit until a run of the same key ends.
    QUEUED = "queued"

    @property
    def terminal(self) -> bool:
        """Whether the run has ended for good."""
        return self in _TERMINAL_STATUSES


def parse_status(value: str | RunStatus) -> RunStatus:
    """The status named ``value``; ``ValueError`` listing the statuses when there is none."""
    try:
        return RunStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise ValueError(f"unknown status {value!r}; one of: {known}") from None


_TERMINAL_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CONTINUED}
)


def timestamp(at: float) -> datetime:
    """Epoch seconds (as stored) to an aware UTC datetime (as shown)."""
    return datetime.fromtimestamp(at, UTC)


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event about to be appended: the journal assigns its sequence number.

    ``at`` is set by the replayer (workflow time must be the same on every replay);
    when it is ``None`` the journal stamps the append time.
    """

    type: EventType
    command_id: int | None = None
    attempt: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float | None = None


@dataclass(frozen=True, kw_only=True)
class Event:
    """One recorded fact of a run's history."""

    run_id: str
    seq: int
    type: EventType
    command_id: int | None
    attempt: int | None
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """A run's summary, as ``orc.describe`` returns it."""

    run_id: str
    workflow: str
    version: str
    status: RunStatus
    result: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    parent_run_id: str | None = None
    parent_command_id: int | None = None
    correlation_id: str | None = None
    continued_from_run_id: str | None = None
    continued_to_run_id: str | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None
    args: list[Any] = field(default_factory=list)
    parent_close_policy: str = "cancel"
    #: The failed run this one retries, and the run that retries this one.
    retried_from_run_id: str | None = None
    retried_to_run_id: str | None = None
    #: The W3C trace context the run is traced under (``None``: not traced).
    trace_context: dict[str, str] | None = None
