"""Concurrency limits: at most N runs of a workflow (per key) open at once.

A limited run carries its key and its limit from the start (``NewRun.concurrency_key`` and
``concurrency_limit``); the journal holds it back in status ``queued`` while the key has that
many runs open, and admits the oldest waiting run when one of them ends, in the transaction
that ends it. Start order is the order of ``created_at``; children a step starts at one
instant go in the order the parent started them (their ``parent_command_id``). The key is
the workflow's name with the value of ``concurrency_key(*args)``, so two workflows never
share a limit. A child's key and limit are set where the parent starts it
(:meth:`~orchestrator.engine.context.WorkflowContext.start_child`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.records import NewRun

#: The longest value a key function may return.
KEY_LIMIT = 200


@dataclass(frozen=True)
class ConcurrencyLimit:
    """``limit`` runs of ``workflow`` open at once, per value of ``key(*args)`` when given."""

    workflow: str
    limit: int
    key: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(
                f"workflow {self.workflow!r}: concurrency must be a whole number of runs, "
                f"1 or more, not {self.limit!r}"
            )
        if self.key is not None and not callable(self.key):
            raise TypeError(
                f"workflow {self.workflow!r}: concurrency_key must be a function of the run's "
                f"arguments, not {self.key!r}"
            )

    def key_for(self, args: list[Any]) -> str:
        """The journal's key of a run started with ``args``: a clear error when the key
        function raises or returns something other than a short string."""
        value = None
        if self.key is not None:
            try:
                value = self.key(*args)
            except Exception as exc:
                raise ValueError(
                    f"workflow {self.workflow!r}: concurrency_key raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(value, str):
                raise TypeError(
                    f"workflow {self.workflow!r}: concurrency_key must return a string, "
                    f"not {value!r}"
                )
            if len(value) > KEY_LIMIT:
                raise ValueError(
                    f"workflow {self.workflow!r}: concurrency_key returned {len(value)} "
                    f"characters; at most {KEY_LIMIT}"
                )
        return json.dumps([self.workflow, value])


def describe_key(key: str) -> str:
    """A journal key as people read it: ``workflow 'x'`` or ``workflow 'x' key 'k'``."""
    try:
        workflow, value = json.loads(key)
    except (ValueError, TypeError):
        return repr(key)
    return f"workflow {workflow!r}" + ("" if value is None else f" key {value!r}")


def queued_reason(key: str, limit: int) -> str:
    """Why a queued run waits (``describe`` shows it)."""
    return (
        f"queued: {describe_key(key)} has its limit of {limit} open run"
        f"{'' if limit == 1 else 's'}; admitted in start order as they end"
    )


#: Statuses of a run that holds one of its key's places (queued runs wait for one).
OPEN = frozenset({RunStatus.RUNNABLE, RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.BLOCKED})


def starts_queued(run: NewRun) -> bool:
    """Whether a new run waits for admission: it is limited and not a continuation (which
    takes over the place of the run it continues, ended in the same transaction)."""
    return run.concurrency_key is not None and run.continued_from_run_id is None


def queued_columns(run: NewRun) -> dict[str, Any]:
    """What a new queued run is stored with: no replay in flight, the reason it waits."""
    assert run.concurrency_key is not None and run.concurrency_limit is not None
    return {
        "status": RunStatus.QUEUED.value,
        "dispatched_at": None,
        "reason": queued_reason(run.concurrency_key, run.concurrency_limit),
    }


def delivered_status(status: RunStatus, item_type: EventType) -> RunStatus:
    """A run's status once an inbox item reached it: a suspended run has work again; a queued
    one goes on waiting (its cancellation ends it at once, see :func:`cancels_queued`)."""
    return RunStatus.RUNNABLE if status is RunStatus.SUSPENDED else status


def cancels_queued(status: RunStatus, item_type: EventType) -> bool:
    """Whether the item is the cancellation of a queued run, which the journal ends at once,
    ``cancelled``, none of its code run (a queued child's parent is told, as of any child's
    end)."""
    return status is RunStatus.QUEUED and item_type == EventType.CANCEL_REQUESTED


def queued_cancellation(reason: Any) -> list[NewEvent]:
    """The history a queued run's cancellation appends to its ``run_started``."""
    return [
        NewEvent(type=EventType.CANCEL_REQUESTED, data={"reason": reason}),
        NewEvent(type=EventType.RUN_CANCELLED, data={"reason": reason}),
    ]


def run_fields(limit: ConcurrencyLimit | None, args: list[Any]) -> dict[str, Any]:
    """The ``NewRun`` fields of a run of a workflow with ``limit`` (none when unlimited)."""
    if limit is None:
        return {}
    return {"concurrency_key": limit.key_for(args), "concurrency_limit": limit.limit}


def of(
    workflow: str, concurrency: int | None, key: Callable[..., Any] | None
) -> ConcurrencyLimit | None:
    """The limit ``@orc.workflow(concurrency=, concurrency_key=)`` declares (``None``: none);
    a clear error for a key without a limit."""
    if concurrency is None:
        if key is not None:
            raise ValueError(
                f"workflow {workflow!r}: concurrency_key needs concurrency=N, the runs allowed "
                "per key"
            )
        return None
    return ConcurrencyLimit(workflow, concurrency, key)
