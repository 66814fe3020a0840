"""Start marks recorded late: only for an activity body still running after a short delay.

A start mark (:meth:`~orchestrator.journal.protocol.Journal.mark_started`) is a commit
before the body runs. It makes a second copy of the attempt skip it, keeps the dispatcher
from taking the message for lost, and starts the attempt's deadline, so that a worker killed
in the body leaves a timeout and a journaled retry behind. Without a timeout, only the first
two remain, and neither needs the mark at once when the message is the attempt's first (not
re-published, redelivered or retried) and was taken early: no other copy exists until the
dispatcher re-publishes, which it does only for a start still unrecorded ``republish_after``
seconds after the publish. Such a message carries ``mark_by``, half that window after its
publish. Its body runs at once, and its start is recorded only if it is still running
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

from orchestrator.journal.protocol import Journal, TaskStart

log = logging.getLogger(__name__)


class LateStartMarks:
    """The start marks one worker process owes, each recorded from one thread when due.

    A task run in place whose message would have been acknowledged late owes renewals
    instead (:mod:`orchestrator.celery.in_place`): no message of it exists for the broker to
    redeliver if this process dies, so its start is never recorded, and while its body runs
    it is renewed every ``renew_every`` seconds, which keeps the dispatcher from re-publishing
    it until this process is gone."""

    def __init__(self, journal: Journal, delay: float, renew_every: float) -> None:
        self.journal = journal
        self.delay = delay
        self.renew_every = renew_every
        self._pid = -1  # the thread runs in the process that runs tasks (after a fork)
        self._starting = threading.Lock()
        self._cond = threading.Condition()
        self._due: list[tuple[float, str]] = []
        self._owed: dict[str, bool] = {}  # task id: whether it is renewed (not marked)

    def defer(self, task_id: str, mark_by: float | None, *, renew: bool = False) -> bool:
        """Owe the start of ``task_id`` (or, with ``renew``, its renewals) if ``mark_by``
        leaves the time to (``False``: record it now)."""
        now = time.time()
        if mark_by is None or mark_by <= now or (self.delay <= 0 and not renew):
            return False
        with self._running():
            self._owed[task_id] = renew
            due = mark_by if renew else min(now + self.delay, mark_by)
            heapq.heappush(self._due, (due, task_id))
            self._cond.notify()
        return True

    def settle(self, task_id: str) -> None:
        """The body of ``task_id`` ended: its start is owed no more."""
        with self._cond:
            self._owed.pop(task_id, None)

    def _running(self) -> threading.Condition:
        with self._starting:
            if self._pid != os.getpid():
                self._cond = threading.Condition()
                self._due, self._owed = [], {}
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
                renew = self._owed.get(task_id)
                if renew is None:
                    continue  # the body ended in time
            try:
                next_at = self._renew(task_id) if renew else self._mark(task_id)
            except Exception:
                log.exception("task %s: its start could not be recorded; trying again", task_id)
                next_at = time.time() + max(self.delay, 0.1)
            with cond:
                if next_at is not None and task_id in self._owed:
                    heapq.heappush(self._due, (next_at, task_id))
                else:
                    self._owed.pop(task_id, None)

    def _mark(self, task_id: str) -> float | None:
        """Record the start of ``task_id``: nothing is owed after it."""
        start = self.journal.mark_started(task_id)
        if start is not TaskStart.STARTED:
            log.info("task %s: start not recorded, its attempt is %s", task_id, start.value)
        return None

    def _renew(self, task_id: str) -> float | None:
        """When to renew ``task_id`` next (``None``: it has started or ended elsewhere)."""
        return time.time() + self.renew_every if self.journal.renew_unstarted(task_id) else None
