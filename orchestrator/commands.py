"""Commands: what a workflow decides, and how each becomes an event (plus outbox rows).

A command issued during replay must match the recorded event at the same place in history
(same kind and same target); a new command becomes that event. One small class per kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.events import Event, EventType, NewEvent
from orchestrator.journal import OutboxTask, Timer, task_id_for
from orchestrator.retry import RetryPolicy


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
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    retry: RetryPolicy
    timeout: float | None
    attempt_no: int = 1
    delay: float = 0.0

    def attempt(self) -> int | None:
        return self.attempt_no

    def data(self) -> dict[str, Any]:
        return {
            "task": self.task_name,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "retry": self.retry.to_json(),
            "timeout": self.timeout,
            "delay": self.delay,
        }

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
class CancelRun(Command):
    """The workflow let a cancellation end it."""

    event_type: ClassVar[EventType] = EventType.RUN_CANCELLED
    command_id: int | None = None
    reason: str | None = None

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason}
