"""The one error tree of the library.

Every error a user can meet derives from :class:`OrchestratorError`, except
:class:`Cancelled`, which derives from ``BaseException`` so that a workflow's
``except Exception`` cannot swallow a cancellation by accident.
Constructors take the ids involved and build the message, so every error names
the run (and command) it is about.
"""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """Root of every error raised by the orchestrator."""


class ConfigurationError(OrchestratorError):
    """The app or the orchestrator is configured in a way that cannot work."""


class PayloadError(OrchestratorError, TypeError):
    """A value that must cross a process boundary cannot be carried as JSON (or is too big)."""


class UnknownWorkflow(OrchestratorError, LookupError):
    """No workflow of that name (and version) is registered."""

    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"{name!r} version {version!r}" if version else repr(name)
        super().__init__(f"unknown workflow {what}: register it with @orc.workflow")
        self.name = name
        self.version = version


class UnknownRun(OrchestratorError, LookupError):
    """No run has that id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"unknown run {run_id!r}")
        self.run_id = run_id


class RunClosed(OrchestratorError):
    """The run has already ended; what was sent to it was not delivered."""

    def __init__(self, run_id: str, status: str, what: str) -> None:
        super().__init__(f"run {run_id} has already ended ({status}); {what} was not delivered")
        self.run_id = run_id
        self.status = status


class LeaseLost(OrchestratorError):
    """The writer's lease on a run was taken over: nothing it tried to write was written."""

    def __init__(self, run_id: str, owner: str, token: int) -> None:
        super().__init__(
            f"run {run_id}: lease (owner {owner}, token {token}) was lost; nothing was written"
        )
        self.run_id = run_id
        self.owner = owner
        self.token = token


class NonDeterminismError(OrchestratorError):
    """The workflow code issued a command that its recorded history does not have."""

    def __init__(self, run_id: str, command_id: int | None, detail: str) -> None:
        where = f" at command {command_id}" if command_id is not None else ""
        super().__init__(f"run {run_id}: nondeterminism{where}: {detail}")
        self.run_id = run_id
        self.command_id = command_id
        self.detail = detail


class RemoteError(OrchestratorError):
    """An error that happened in another process, carried as type, message and traceback."""

    def __init__(self, message: str, *, error: dict[str, Any]) -> None:
        super().__init__(message)
        self.error = error

    @property
    def error_type(self) -> str:
        """Qualified name of the original exception's type."""
        return str(self.error.get("type", ""))

    @property
    def remote_message(self) -> str:
        """The original exception's message."""
        return str(self.error.get("message", ""))

    @property
    def remote_traceback(self) -> str | None:
        """The original traceback, as text, if it was captured."""
        tb = self.error.get("traceback")
        return str(tb) if tb else None


class ActivityFailed(RemoteError):
    """An activity's last attempt failed (or timed out); raised at the workflow's await."""

    def __init__(
        self, run_id: str, command_id: int, task_name: str, attempt: int, error: dict[str, Any]
    ) -> None:
        super().__init__(
            f"run {run_id}: activity {task_name} (command {command_id}) failed on attempt "
            f"{attempt}: {error.get('type')}: {error.get('message')}",
            error=error,
        )
        self.run_id = run_id
        self.command_id = command_id
        self.task_name = task_name
        self.attempt = attempt


class ChildFailed(RemoteError):
    """A child workflow failed; raised in the parent at the await of the child."""

    def __init__(
        self, run_id: str, command_id: int, child_run_id: str, error: dict[str, Any]
    ) -> None:
        super().__init__(
            f"run {run_id}: child {child_run_id} (command {command_id}) failed: "
            f"{error.get('type')}: {error.get('message')}",
            error=error,
        )
        self.run_id = run_id
        self.command_id = command_id
        self.child_run_id = child_run_id


class WorkflowFailed(RemoteError):
    """The run ended ``failed``; raised by ``orc.result``."""

    def __init__(self, run_id: str, error: dict[str, Any]) -> None:
        super().__init__(
            f"run {run_id} failed: {error.get('type')}: {error.get('message')}", error=error
        )
        self.run_id = run_id


class Cancelled(BaseException):
    """The run was cancelled: raised at the workflow's current await, and by ``orc.result``.

    A ``BaseException`` so that ``except Exception`` in workflow code does not swallow it.
    """

    def __init__(self, run_id: str = "", reason: str | None = None) -> None:
        super().__init__(f"run {run_id} cancelled" + (f": {reason}" if reason else ""))
        self.run_id = run_id
        self.reason = reason


class WorkflowTimeout(WorkflowFailed):
    """The run (with its continuations) was still open when its execution timeout passed
    (``orc.start(..., timeout=)``): it ended ``failed`` with an error of this type, and
    ``orc.result`` raises this (a :class:`WorkflowFailed`)."""


class NotPublished(OrchestratorError, LookupError):
    """``orc.query``: the run has published no value under that name (yet)."""

    def __init__(self, run_id: str, name: str) -> None:
        super().__init__(f"run {run_id} has published no value under {name!r}")
        self.run_id = run_id
        self.name = name


class ActivityCancelled(OrchestratorError):
    """Raised by ``orchestrator.heartbeat()`` in an activity attempt that is no longer
    current: its outcome was journaled or it timed out (a retry may be running), or its run
    ended or was cancelled. Nothing would take the attempt's result: let it propagate.

    An ``Exception``, not a ``BaseException``: Celery's worker treats the latter as fatal."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"activity attempt {task_id} is no longer current (it ended, timed out, or its "
            "run ended or was cancelled): stop its work"
        )
        self.task_id = task_id


#: The module name under which this module's error types are journaled.
_JOURNALED_MODULE = "orchestrator.errors"


def describe_exception(exc: BaseException, traceback_text: str | None = None) -> dict[str, Any]:
    """The portable form of an exception: type, message and traceback as text, never a pickle."""
    cls = type(exc)
    # This module's errors keep the name histories have always recorded for them.
    module = _JOURNALED_MODULE if cls.__module__ == __name__ else cls.__module__
    qualname = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    described: dict[str, Any] = {"type": qualname, "message": str(exc), "traceback": traceback_text}
    notes = getattr(exc, "__notes__", None)
    if notes:
        described["notes"] = [str(n) for n in notes]
    return described


class NotRetryable(OrchestratorError, ValueError):
    """Only a failed run can be retried, and only once (its retry is retried next)."""

    def __init__(self, run_id: str, status: str, retried_to: str | None = None) -> None:
        if retried_to is not None:
            why = f"it was retried already, as run {retried_to}"
        else:
            why = f"it is {status}, and only a failed run can be retried"
        super().__init__(f"run {run_id} cannot be retried: {why}")
        self.run_id = run_id
        self.status = status
        self.retried_to = retried_to


class TransactionalStartError(ConfigurationError):
    """A run cannot be started in the caller's transaction on that connection (see
    ``orc.start(..., connection=)``); nothing was written."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"cannot start a run in the caller's transaction: {problem}")
