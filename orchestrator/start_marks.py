"""Start marks recorded late: only for an activity body still running after a short delay.

A start mark (:meth:`~orchestrator.journal.Journal.mark_started`) is a commit before the body
runs. It makes a second copy of the attempt skip it, keeps the dispatcher from taking the
message for lost, and starts the attempt's deadline, so that a worker killed in the body
leaves a timeout and a journaled retry behind. Without a timeout, only the first two remain,
and neither needs the mark at once when the message is the attempt's first (not re-published,
redelivered or retried) and was taken early: no other copy exists until the dispatcher
re-publishes, which it does only for a start still unrecorded ``republish_after`` seconds
after the publish. Such a message carries ``mark_by``, half that window after its publish.
Its body runs at once, and its start is recorded only if it is still running
``mark_start_after`` seconds later, or at ``mark_by``. Most bodies end sooner, and the
outcome's transaction is then the attempt's only commit.

A worker killed before the mark leaves the attempt unstarted: the dispatcher re-publishes it
and the same attempt runs again, as it would after the broker redelivered the message of a
worker killed in a started attempt with no timeout.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time

from orchestrator.journal import Journal, TaskStart

log = logging.getLogger(__name__)


class LateStartMarks:
    """The start marks one worker process owes, each recorded from one thread when due."""

    def __init__(self, journal: Journal, delay: float) -> None:
        self.journal = journal
        self.delay = delay
        self._pid = -1  # the thread runs in the process that runs tasks (after a fork)
        self._starting = threading.Lock()
        self._cond = threading.Condition()
        self._due: list[tuple[float, str]] = []
        self._owed: set[str] = set()

    def defer(self, task_id: str, mark_by: float | None) -> bool:
        """Owe the start of ``task_id`` if ``mark_by`` leaves the time to (``False``: record
        it now)."""
        now = time.time()
        if self.delay <= 0 or mark_by is None or mark_by <= now:
            return False
        with self._running():
            self._owed.add(task_id)
            heapq.heappush(self._due, (min(now + self.delay, mark_by), task_id))
            self._cond.notify()
        return True

    def settle(self, task_id: str) -> None:
        """The body of ``task_id`` ended: its start is owed no more."""
        with self._cond:
            self._owed.discard(task_id)

    def _running(self) -> threading.Condition:
        with self._starting:
            if self._pid != os.getpid():
                self._cond = threading.Condition()
                self._due, self._owed = [], set()
                thread = threading.Thread(target=self._run, name="orchestrator-start-marks")
                thread.daemon = True
                thread.start()
                self._pid = os.getpid()
        return self._cond

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._due or self._due[0][0] > time.time():
                    cond.wait(self._due[0][0] - time.time() if self._due else None)
                _, task_id = heapq.heappop(self._due)
                if task_id not in self._owed:
                    continue  # the body ended in time
            try:
                start = self.journal.mark_started(task_id)
            except Exception:
                log.exception("task %s: its start could not be recorded; trying again", task_id)
                with cond:
                    if task_id in self._owed:
                        retry_at = time.time() + max(self.delay, 0.1)
                        heapq.heappush(self._due, (retry_at, task_id))
                continue
            with cond:
                self._owed.discard(task_id)
            if start is not TaskStart.STARTED:
                log.info("task %s: start not recorded, its attempt is %s", task_id, start.value)
