"""The inbox items the journal itself puts into a run's inbox, and their dedupe keys: an
attempt's outcome or timeout, a fired timer, a child's end, a cancellation. One key per fact,
so each is journaled once however often it is delivered."""

from __future__ import annotations

from typing import Any

from orchestrator.model.events import EventType, RunInfo, RunStatus
from orchestrator.model.records import InboxItem


def outcome_key(command_id: int, attempt: int) -> str:
    """Dedupe key of an activity attempt's outcome: completion, failure and timeout share it,
    so exactly one of them is journaled per attempt."""
    return f"outcome:{command_id}:{attempt}"


def child_outcome_item(run: RunInfo, status: RunStatus) -> InboxItem:
    """What a child's end puts into its parent's inbox (keyed by the parent's command)."""
    assert run.parent_command_id is not None
    data: dict[str, Any] = {"child_run_id": run.run_id}
    if status is RunStatus.COMPLETED:
        kind, data["result"] = EventType.CHILD_COMPLETED, run.result
    elif status is RunStatus.FAILED:
        kind, data["error"] = EventType.CHILD_FAILED, run.error
    else:
        kind, data["reason"] = EventType.CHILD_CANCELLED, run.reason
    return InboxItem(
        dedupe_key=f"child:{run.parent_command_id}",
        type=kind,
        command_id=run.parent_command_id,
        data=data,
    )


def cancel_item(reason: str | None) -> InboxItem:
    """A cancellation request; one per run is journaled."""
    return InboxItem(dedupe_key="cancel", type=EventType.CANCEL_REQUESTED, data={"reason": reason})


def timed_out_item(
    command_id: int, attempt: int, kind: str, task_name: str, timeout: float | None
) -> InboxItem:
    """The inbox item recording that an attempt ran past its start-to-close timeout."""
    error = {
        "type": "TimeoutError",
        "message": f"{task_name} attempt {attempt} did not finish within {timeout} seconds",
        "traceback": None,
    }
    return InboxItem(
        dedupe_key=outcome_key(command_id, attempt),
        type=EventType.COMPENSATION_FAILED
        if kind == "compensation"
        else EventType.ACTIVITY_TIMED_OUT,
        command_id=command_id,
        attempt=attempt,
        data={"error": error},
    )


def timer_key(command_id: int) -> str:
    """Dedupe key of a timer's firing."""
    return f"timer:{command_id}"
