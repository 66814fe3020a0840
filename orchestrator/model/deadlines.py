"""Deadlines that end work from outside it: a run's execution timeout and an activity
attempt's heartbeat timeout.

Both are enforced by the dispatcher, which puts a fact into the run's inbox when one passes:
``run_timed_out`` (the run then fails with ``WorkflowTimeout``) or an attempt's
``activity_timed_out`` whose error is a ``HeartbeatTimeout`` (retried by the activity's policy
as any timeout is). The error types are journaled under the names the library's errors use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.model.retry import to_seconds

if TYPE_CHECKING:
    from orchestrator.model.records import NewRun

#: The type of a run's error when its execution timeout passed.
WORKFLOW_TIMEOUT = "orchestrator.errors.WorkflowTimeout"
#: The type of an attempt's error when it went silent for longer than its heartbeat timeout.
HEARTBEAT_TIMEOUT = "orchestrator.errors.HeartbeatTimeout"
#: Dedupe key of a run's execution timeout (one per run).
RUN_TIMEOUT_KEY = "timeout"


def check_timeout(value: Any, what: str) -> float:
    """``value`` as a positive, finite number of seconds; a clear error naming ``what``
    otherwise (zero would end the work before it began)."""
    try:
        seconds = to_seconds(value, what)  # a TypeError names what it is not
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError(f"{what} must be a positive, finite number of seconds, not {value!r}")
    return seconds


def deadline(run: NewRun, now: float) -> float | None:
    """When the chain ``run`` begins, created at ``now``, times out (``None``: never)."""
    return None if run.execution_timeout is None else now + run.execution_timeout


def heartbeat_timeout_error(task_name: str, attempt: int, timeout: float | None) -> dict[str, Any]:
    """The error of an attempt that sent no heartbeat for ``timeout`` seconds."""
    return {
        "type": HEARTBEAT_TIMEOUT,
        "message": (
            f"{task_name} attempt {attempt} sent no heartbeat for {timeout} seconds "
            "(its heartbeat_timeout)"
        ),
        "traceback": None,
    }
