"""The headers an activity's message carries, and how a worker reads them back.

An activity is the app's own task, sent under its own name; these headers name the run, the
command and the attempt it belongs to. Its Celery task id is deterministic
(:func:`~orchestrator.model.records.task_id_for`), and a message whose id does not match its
headers is not taken for one of ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from orchestrator.model.records import OutboxTask, task_id_for

log = logging.getLogger(__name__)

RUN = "continuum_run_id"
COMMAND = "continuum_command_id"
ATTEMPT = "continuum_attempt"
KIND = "continuum_kind"
MARK_BY = "continuum_mark_by"


def activity_headers(task: OutboxTask, mark_by: float | None) -> dict[str, Any]:
    """The headers of an activity's message, naming its run, command and attempt. The first
    message of an attempt with no timeout carries ``mark_by``, until when no other copy of
    it can exist (see :mod:`orchestrator.celery.start_marks`)."""
    headers: dict[str, Any] = {
        RUN: task.run_id,
        COMMAND: task.command_id,
        ATTEMPT: task.attempt,
        KIND: task.kind,
    }
    if mark_by is not None and not task.resent and task.timeout_seconds is None:
        headers[MARK_BY] = mark_by
    return headers


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """The attempt a running task is, read from its request's headers."""

    run_id: str
    command_id: int
    attempt: int
    kind: str
    task_id: str
    mark_by: float | None


def attempt_of(task: Any, app: Any) -> Attempt | None:
    """The attempt ``task`` (a task of ``app``, running) is, or ``None`` when it is not an
    activity of a run: another app's task, a plain Celery call, or forged headers."""
    if getattr(task, "app", None) is not app:
        return None
    request = task.request
    run_id = getattr(request, RUN, None)
    if run_id is None:
        run_id = (getattr(request, "headers", None) or {}).get(RUN)
        if run_id is None:
            return None
        headers = request.headers
    else:
        headers = {h: getattr(request, h, None) for h in (COMMAND, ATTEMPT, KIND, MARK_BY)}
    mark_by = headers.get(MARK_BY)
    try:
        attempt = Attempt(
            run_id=str(run_id),
            command_id=int(headers[COMMAND]),
            attempt=int(headers[ATTEMPT]),
            kind=str(headers.get(KIND) or "activity"),
            task_id=request.id,
            mark_by=float(mark_by) if isinstance(mark_by, (int, float)) else None,
        )
    except (KeyError, TypeError, ValueError):
        log.warning("task %s carries malformed orchestrator headers; ignored", request.id)
        return None
    if request.id != task_id_for(attempt.run_id, attempt.command_id, attempt.attempt):
        log.warning("task %s: its id does not match its orchestrator headers; ignored", request.id)
        return None
    return attempt
