"""The records a workflow step produces and the journal stores: runs to create, inbox items,
outbox tasks and timers. They sit in the model because both the engine, which decides them,
and the journal, which keeps them, speak them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.model.deadlines import check_timeout
from orchestrator.model.events import EventType


@dataclass(frozen=True, kw_only=True)
class NewRun:
    """A run to create. ``args`` must already be JSON-safe (see
    :mod:`orchestrator.model.payloads`)."""

    run_id: str
    workflow: str
    version: str
    args: list[Any]
    parent_run_id: str | None = None
    parent_command_id: int | None = None
    correlation_id: str | None = None
    continued_from_run_id: str | None = None
    #: What happens to this run, as a child, when its parent ends: "cancel" or "abandon".
    parent_close_policy: str = "cancel"
    #: The run's key and limit under its workflow's concurrency limit (see
    #: :mod:`orchestrator.model.limits`); a keyed run starts ``queued`` until admitted.
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    #: Seconds after its creation when the run's chain (it and its continuations) fails with
    #: ``WorkflowTimeout`` if it is still open (``None``: never); the journal keeps the
    #: deadline. See :mod:`orchestrator.model.deadlines`.
    execution_timeout: float | None = None
    #: The failed run this one retries (see :mod:`orchestrator.journal.retry`).
    retried_from_run_id: str | None = None
    #: The W3C trace context (``traceparent``, ``tracestate``) the run is traced under.
    trace_context: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if (self.parent_run_id is None) != (self.parent_command_id is None):
            raise ValueError(f"run {self.run_id}: parent_run_id and parent_command_id go together")
        if (self.concurrency_key is None) != (self.concurrency_limit is None):
            raise ValueError(f"run {self.run_id}: concurrency_key and _limit go together")
        if self.parent_close_policy not in ("cancel", "abandon"):
            raise ValueError(
                f"run {self.run_id}: parent_close_policy must be 'cancel' or 'abandon', "
                f"not {self.parent_close_policy!r}"
            )
        if self.execution_timeout is not None:
            check_timeout(self.execution_timeout, f"run {self.run_id}: execution timeout")


@dataclass(frozen=True, kw_only=True)
class InboxItem:
    """A fact from outside the run, waiting to be absorbed into its history.

    ``dedupe_key`` is unique per run: inserting the same key twice keeps the first.
    ``id`` and ``at`` are assigned by the journal (insertion order and time).
    """

    dedupe_key: str
    type: EventType
    command_id: int | None = None
    attempt: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    at: float | None = None


@dataclass(frozen=True, kw_only=True)
class OutboxTask:
    """A Celery task to publish for an activity (or compensation) attempt.

    Inserted in the transaction that records its ``*_scheduled`` event. ``task_id`` is
    deterministic (run, command, attempt) so a re-publish is recognised as the same attempt.
    """

    task_id: str
    run_id: str
    command_id: int
    attempt: int
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    kind: str = "activity"
    queue: str | None = None
    available_at: float = 0.0
    timeout_seconds: float | None = None
    target_activity_id: int | None = None
    #: Published before and taken for lost by the dispatcher: an older message of the same
    #: attempt may still be queued, so the worker that takes this one records its start
    #: before running it.
    resent: bool = False
    #: Seconds the attempt may go without a heartbeat before it times out (``None``: no limit).
    heartbeat_timeout: float | None = None


@dataclass(frozen=True, kw_only=True)
class Timer:
    """A durable timer: at ``fire_at`` the dispatcher puts ``timer_fired`` into the inbox."""

    run_id: str
    command_id: int
    fire_at: float


def task_id_for(run_id: str, command_id: int, attempt: int) -> str:
    """The deterministic Celery task id of an activity attempt."""
    return f"{run_id}:{command_id}:{attempt}"
