"""Commands: what a workflow decides, and how each becomes an event (plus outbox rows).

A command issued during replay must match the recorded event at the same place in history
(same kind and same target); a new command becomes that event. One small class per kind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.model.events import Event, EventType, NewEvent
from orchestrator.model.records import NewRun, OutboxTask, Timer, task_id_for
from orchestrator.model.retry import RetryPolicy


@dataclass(frozen=True, kw_only=True)
class Command:
    """A decision of the workflow (or of the engine on its behalf, e.g. a retry)."""

    event_type: ClassVar[EventType]
    command_id: int | None

    def to_event(self, at: float) -> NewEvent:
        """The event recording this command."""
        return NewEvent(
            type=self.event_type,
            command_id=self.command_id,
            attempt=self.attempt(),
            data=self.data(),
            at=at,
        )

    def attempt(self) -> int | None:
        """The attempt the event records (activities only)."""
        return None

    def data(self) -> dict[str, Any]:
        """The event's data."""
        return {}

    def target(self) -> str:
        """What replay compares besides the kind (task name, marker id, ...)."""
        return ""

    def recorded_target(self, event: Event) -> str:
        """The same thing, read from a recorded event."""
        return ""

    def matches(self, event: Event) -> bool:
        """Whether the recorded ``event`` is this command (kind, id, target, attempt)."""
        return (
            event.type == self.event_type
            and event.command_id == self.command_id
            and event.attempt == self.attempt()
            and self.recorded_target(event) == self.target()
        )

    def describe(self) -> str:
        """A short human name, for errors and ``reason``."""
        target = self.target()
        return (
            f"{self.event_type.value}"
            + (f" {target}" if target else "")
            + (f" (command {self.command_id})" if self.command_id is not None else "")
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleActivity(Command):
    """Run a Celery task (one attempt of it)."""

    event_type: ClassVar[EventType] = EventType.ACTIVITY_SCHEDULED
    kind: ClassVar[str] = "activity"
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    retry: RetryPolicy
    timeout: float | None
    attempt_no: int = 1
    delay: float = 0.0
    heartbeat_timeout: float | None = None

    def attempt(self) -> int | None:
        return self.attempt_no

    def data(self) -> dict[str, Any]:
        data = {
            "task": self.task_name,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "retry": self.retry.to_json(),
            "timeout": self.timeout,
            "delay": self.delay,
        }
        if self.heartbeat_timeout is not None:
            data["heartbeat_timeout"] = self.heartbeat_timeout
        return data

    def target(self) -> str:
        return self.task_name

    def recorded_target(self, event: Event) -> str:
        return str(event.data.get("task", ""))

    def outbox(self, run_id: str, at: float) -> OutboxTask:
        """The outbox row that delivers this attempt."""
        assert self.command_id is not None
        return OutboxTask(
            task_id=task_id_for(run_id, self.command_id, self.attempt_no),
            run_id=run_id,
            command_id=self.command_id,
            attempt=self.attempt_no,
            task_name=self.task_name,
            args=self.args,
            kwargs=self.kwargs,
            queue=self.queue,
            available_at=at + self.delay,
            timeout_seconds=self.timeout,
            kind=self.kind,
            target_activity_id=self.target_activity(),
            heartbeat_timeout=self.heartbeat_timeout,
        )

    def target_activity(self) -> int | None:
        """The activity a compensation undoes (``None`` for an activity)."""
        return None


@dataclass(frozen=True, kw_only=True)
class ScheduleCompensation(ScheduleActivity):
    """Run a saga's compensation task: an activity that undoes ``target_activity_id``."""

    event_type: ClassVar[EventType] = EventType.COMPENSATION_SCHEDULED
    kind: ClassVar[str] = "compensation"
    target_activity_id: int | None = None

    def data(self) -> dict[str, Any]:
        return {**super().data(), "target_activity_id": self.target_activity_id}

    def target_activity(self) -> int | None:
        return self.target_activity_id


@dataclass(frozen=True, kw_only=True)
class StartChild(Command):
    """Start a child workflow run (inserted with the parent's ``child_started``)."""

    event_type: ClassVar[EventType] = EventType.CHILD_STARTED
    workflow: str
    version: str
    args: list[Any]
    child_run_id: str
    parent_close_policy: str = "cancel"
    #: The child's place under its workflow's concurrency limit (see
    #: :mod:`orchestrator.model.limits`); not journaled, as the key is the arguments' function.
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    def data(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "version": self.version,
            "args": self.args,
            "child_run_id": self.child_run_id,
            "parent_close_policy": self.parent_close_policy,
        }

    def target(self) -> str:
        return self.workflow

    def recorded_target(self, event: Event) -> str:
        return str(event.data.get("workflow", ""))

    def new_run(self, parent_run_id: str) -> NewRun:
        """The child run to insert."""
        return NewRun(
            run_id=self.child_run_id,
            workflow=self.workflow,
            version=self.version,
            args=self.args,
            parent_run_id=parent_run_id,
            parent_command_id=self.command_id,
            parent_close_policy=self.parent_close_policy,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
        )


@dataclass(frozen=True, kw_only=True)
class StartTimer(Command):
    """A durable timer."""

    event_type: ClassVar[EventType] = EventType.TIMER_STARTED
    fire_at: float
    seconds: float

    def data(self) -> dict[str, Any]:
        return {"fire_at": self.fire_at, "seconds": self.seconds}

    def timer(self, run_id: str) -> Timer:
        """The timer row the dispatcher fires."""
        assert self.command_id is not None
        return Timer(run_id=run_id, command_id=self.command_id, fire_at=self.fire_at)


@dataclass(frozen=True, kw_only=True)
class RecordMarker(Command):
    """A code-change marker (``ctx.patched``)."""

    event_type: ClassVar[EventType] = EventType.MARKER_RECORDED
    name: str

    def data(self) -> dict[str, Any]:
        return {"name": self.name}

    def target(self) -> str:
        return self.name

    def recorded_target(self, event: Event) -> str:
        return str(event.data.get("name", ""))


@dataclass(frozen=True, kw_only=True)
class PublishValue(Command):
    """A value published under a name for queries (``ctx.publish``): the newest one under
    each name is what ``orc.query`` returns."""

    event_type: ClassVar[EventType] = EventType.VALUE_PUBLISHED
    name: str
    value: Any = None

    def data(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}

    def target(self) -> str:
        return self.name

    def recorded_target(self, event: Event) -> str:
        return str(event.data.get("name", ""))


@dataclass(frozen=True, kw_only=True)
class CompleteRun(Command):
    """The workflow returned."""

    event_type: ClassVar[EventType] = EventType.RUN_COMPLETED
    command_id: int | None = None
    result: Any = None

    def data(self) -> dict[str, Any]:
        return {"result": self.result}


@dataclass(frozen=True, kw_only=True)
class FailRun(Command):
    """The workflow raised."""

    event_type: ClassVar[EventType] = EventType.RUN_FAILED
    command_id: int | None = None
    error: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"error": self.error}


@dataclass(frozen=True, kw_only=True)
class ContinueRun(Command):
    """End this run and carry on in a new one with fresh history (``ctx.continue_as_new``)."""

    event_type: ClassVar[EventType] = EventType.RUN_CONTINUED
    command_id: int | None = None
    args: list[Any] = field(default_factory=list)
    next_run_id: str = ""

    def data(self) -> dict[str, Any]:
        return {"args": self.args, "next_run_id": self.next_run_id}


def next_run_id(run_id: str) -> str:
    """The deterministic id of the run that continues ``run_id``."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"continuum:continue:{run_id}").hex


@dataclass(frozen=True, kw_only=True)
class CancelRun(Command):
    """The workflow let a cancellation end it."""

    event_type: ClassVar[EventType] = EventType.RUN_CANCELLED
    command_id: int | None = None
    reason: str | None = None

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason}
