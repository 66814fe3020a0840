"""Pruning a backlog: :meth:`Journal.prune <orchestrator.journal.protocol.Journal.prune>`
batch after batch until nothing is left or a time budget has passed.

``continuum runs prune`` and the built-in ``continuum.prune`` workflow's task prune this way.
Dispatchers pace themselves instead, a little on every pass, so as never to hold back their
timers (:mod:`orchestrator.runtime.retention`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator.journal.protocol import Journal

#: Runs per prune transaction.
BATCH = 500


def prune_all(
    journal: Journal,
    *,
    closed_before: float,
    workflow: str | None = None,
    limit: int = BATCH,
    budget: float | None = None,
    timer: Callable[[], float] = time.monotonic,
) -> int:
    """Delete the families :meth:`Journal.prune` takes, ``limit`` runs a transaction, until
    none is left or, with ``budget`` (seconds), until that has passed (the batch under way
    then is finished: each is one short transaction). Returns how many runs were deleted."""
    deadline = None if budget is None else timer() + budget
    pruned = 0
    while ids := journal.prune(closed_before=closed_before, workflow=workflow, limit=limit):
        pruned += len(ids)
        if deadline is not None and timer() >= deadline:
            break
    return pruned


__all__ = ["BATCH", "prune_all"]
