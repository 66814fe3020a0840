"""Records the journal tests build over and over: a run to create, an outbox task, an
activity's outcome; and an Orchestrator that publishes nowhere."""

from __future__ import annotations

from typing import Any

from orchestrator import Orchestrator
from orchestrator.journal.inbox import outcome_key
from orchestrator.model.events import EventType
from orchestrator.model.records import InboxItem, NewRun, OutboxTask, task_id_for
from orchestrator.runtime.publisher import RecordingPublisher


def new_run(run_id: str = "r1", workflow: str = "wf", version: str = "1", **kw: Any) -> NewRun:
    return NewRun(run_id=run_id, workflow=workflow, version=version, args=kw.pop("args", []), **kw)


def task(run_id: str = "r1", command_id: int = 1, attempt: int = 1, **kw: Any) -> OutboxTask:
    return OutboxTask(
        task_id=task_id_for(run_id, command_id, attempt),
        run_id=run_id,
        command_id=command_id,
        attempt=attempt,
        task_name="shop.charge",
        args=kw.pop("args", ["order-1", 100]),
        kwargs=kw.pop("kwargs", {"currency": "EUR"}),
        **kw,
    )


def completed(cmd: int, result: Any = None, attempt: int = 1) -> InboxItem:
    """An activity attempt's result, as a worker delivers it."""
    return InboxItem(
        dedupe_key=outcome_key(cmd, attempt),
        type=EventType.ACTIVITY_COMPLETED,
        command_id=cmd,
        attempt=attempt,
        data={"result": result},
    )


def failed(cmd: int, error: dict[str, Any], attempt: int = 1) -> InboxItem:
    """An activity attempt's failure, as a worker delivers it."""
    return InboxItem(
        dedupe_key=outcome_key(cmd, attempt),
        type=EventType.ACTIVITY_FAILED,
        command_id=cmd,
        attempt=attempt,
        data={"error": error},
    )


def offline(orc: Orchestrator) -> Orchestrator:
    """``orc`` with its messages recorded, not sent: whatever broker the test's app names,
    Celery sends to ``$CELERY_BROKER_URL`` when it is set (the integration tests set it)."""
    orc.__dict__["publisher"] = RecordingPublisher()
    return orc
