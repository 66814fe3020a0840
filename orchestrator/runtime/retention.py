"""Retention applied by dispatchers: finished families deleted in small transactions.

With ``orchestrator_retention`` set, a dispatcher's pass prunes families closed longer ago
than that (see :mod:`orchestrator.journal.families`), a batch per transaction, for at most
:data:`BUDGET` seconds, so that timers and dispatches are never held back for long; with more
left, it rests :data:`REST` times as long before it goes on (the dispatcher wakes for that
look), so that a backlog takes at most 40% of its time and of one database connection, and
the work beside it keeps most of the machine (``python -m bench --only growth`` measures
both sides; see the scale page of the documentation). The batch adapts to how long a transaction
takes, aiming at :data:`TARGET` seconds each: row locks are taken with ``SKIP LOCKED`` on
finished runs only, so a run's writer never waits for a prune, and a short transaction keeps
the deletes' own locks brief. When nothing is left to prune, the next look is :data:`EVERY`
seconds later. Several dispatchers share the work.

A failing prune (commonly: the dispatcher's role lacks the retention grants) is logged and
tried again :data:`EVERY` seconds later; it never stops the dispatcher's other work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from orchestrator.journal.protocol import Journal

log = logging.getLogger(__name__)

#: Seconds between looks for runs to prune once none was left.
EVERY = 60.0
#: Seconds of pruning one dispatcher pass may spend.
BUDGET = 0.1
#: Seconds of rest after each second of pruning, while runs are left to prune.
REST = 1.5
#: Seconds one prune transaction should take; the batch grows or shrinks towards it.
TARGET = 0.05
#: Bounds of the batch (runs per transaction).
SMALLEST, LARGEST = 10, 1000


class Retention:
    """Prunes what ``retention`` seconds have made old, pass by pass."""

    def __init__(
        self,
        journal: Journal,
        retention: float | None,
        *,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.retention = retention
        self.batch = 100
        self._clock = clock
        self._timer = timer
        self._next = 0.0

    @property
    def next_look(self) -> float | None:
        """When the next look is due (clock time), so that a dispatcher with nothing else
        to do wakes for it; ``None`` without retention."""
        return None if self.retention is None else self._next

    def tick(self) -> int:
        """Prune for up to :data:`BUDGET` seconds if a look is due; runs deleted."""
        if self.retention is None:
            return 0
        now = self._clock()
        if now < self._next:
            return 0
        cutoff = now - self.retention
        pruned = 0
        started = self._timer()
        while True:
            began = self._timer()
            try:
                ids = self.journal.prune(closed_before=cutoff, limit=self.batch)
            except Exception:
                log.exception("retention: prune failed; trying again in %.0f s", EVERY)
                self._next = now + EVERY
                return pruned
            took = self._timer() - began
            pruned += len(ids)
            if not ids:
                self._next = now + EVERY
                break
            self._adapt(took)
            spent = self._timer() - started
            if spent >= BUDGET:
                self._next = self._clock() + spent * REST  # more is left
                break
        if pruned:
            log.info("retention: %d finished runs deleted", pruned)
        return pruned

    def _adapt(self, took: float) -> None:
        if took > TARGET:
            self.batch = max(SMALLEST, self.batch // 2)
        elif took < TARGET / 2:
            self.batch = min(LARGEST, self.batch * 2)


__all__ = ["Retention"]
