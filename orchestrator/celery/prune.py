"""The built-in ``continuum.prune`` workflow: retention as a run, which a schedule can drive.

``orc.start("continuum.prune", older_than, workflow=None)`` deletes finished families (see
:mod:`orchestrator.journal.families`) that closed more than ``older_than`` before the run
started (a duration, ``30d``, ``12h``, ``90m``, ``0s``, or seconds), optionally only those
whose top-level run is of ``workflow``, and returns how many runs it deleted. Its one
activity, the task ``continuum.prune``, prunes through the orchestrator's journal, as
``continuum runs prune`` does, for at most :data:`BUDGET` seconds. So on any journal (SQLite
and ``continuum dev`` included), ``orc.schedule("prune-nightly", "continuum.prune", "30d",
cron="0 3 * * *")`` keeps it trimmed at the hours chosen, each prune recorded as a run,
where ``orchestrator_retention`` has the dispatchers prune a little on every pass. The run
is open while it prunes, so it never deletes itself; earlier prune runs go once they are
old enough.

The cutoff is taken from the run's start (``ctx.now()``), so an attempt made again deletes
what the first would have. Arguments are checked by :func:`check_args` when the run is
started or scheduled, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from orchestrator.celery.host import Host
from orchestrator.engine.context import WorkflowContext
from orchestrator.journal import pruning
from orchestrator.model.durations import age_seconds
from orchestrator.model.retry import RetryPolicy

#: The built-in workflow's name and version, and its activity's task name.
WORKFLOW = "continuum.prune"
VERSION = "1"
TASK = "continuum.prune"
#: Seconds one prune run spends deleting at most; what is left goes to the next run.
BUDGET = 60.0
#: An attempt silent this long (its worker died) is made again.
TIMEOUT = 300.0
#: A failing prune (commonly: the workers' role lacks the retention grants) is tried again
#: twice, then the run fails with the error for an operator to see.
RETRY = RetryPolicy(max_attempts=3, initial_interval=10.0)


def check_args(args: Sequence[Any]) -> None:
    """Refuse arguments the workflow cannot run with: ``(older_than, workflow=None)``."""
    if not 1 <= len(args) <= 2:
        raise TypeError(
            f"workflow {WORKFLOW} takes (older_than, workflow=None), not {len(args)} arguments"
        )
    age_seconds(args[0], f"{WORKFLOW} older_than")
    workflow = args[1] if len(args) == 2 else None
    if workflow is not None and (not isinstance(workflow, str) or not workflow):
        raise TypeError(f"{WORKFLOW} workflow must be a workflow name or None, not {workflow!r}")


async def prune(ctx: WorkflowContext, older_than: str | float, workflow: str | None = None) -> int:
    """Delete the finished families that closed ``older_than`` before this run began (of
    ``workflow`` only, if given); how many runs were deleted."""
    check_args([older_than, workflow])
    closed_before = ctx.now().timestamp() - age_seconds(older_than, "older_than")
    deleted = await ctx.activity(TASK, closed_before, workflow, timeout=TIMEOUT, retry=RETRY)
    return int(deleted)


def install(app: Celery, orc: Host) -> None:
    """Register the built-in prune workflow and its task on ``app``."""
    orc.registry.add(prune, name=WORKFLOW, version=VERSION, check_args=check_args)

    @app.task(name=TASK, serializer="json", shared=False)  # type: ignore[untyped-decorator]
    def prune_task(closed_before: float, workflow: str | None = None) -> int:
        """Delete finished families closed before ``closed_before`` (epoch seconds), batch
        after batch, for at most :data:`BUDGET` seconds; how many runs were deleted."""
        return pruning.prune_all(
            orc.journal, closed_before=closed_before, workflow=workflow, budget=BUDGET
        )


__all__ = ["BUDGET", "TASK", "VERSION", "WORKFLOW", "check_args", "install", "prune"]
