"""The dispatcher: the safety net that makes every runnable run move, whatever crashed.

Each pass fires due timers, times out activities past their deadline, dispatches runs that
need a replay and have none in flight (or whose lease expired), and re-publishes outbox tasks
that were never confirmed or never started. Every step takes rows with ``SKIP LOCKED``, so
several dispatchers run side by side safely. Between passes it sleeps until the next due
timer, a notification from the journal, retention's next look (see
:mod:`orchestrator.runtime.retention`), or ``poll_interval``. Due schedules are fired in
the same pass, as timers are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from orchestrator.journal.protocol import Journal, RunRef
from orchestrator.model.settings import Settings
from orchestrator.runtime.publisher import Publisher
from orchestrator.runtime.retention import Retention

log = logging.getLogger(__name__)

BATCH = 200


class Dispatcher:
    """Runs dispatcher passes over one journal."""

    def __init__(
        self,
        journal: Journal,
        publisher: Publisher,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        wait: Callable[[float], None] | None = None,
    ) -> None:
        self.journal = journal
        self.publisher = publisher
        self.settings = settings
        self._clock = clock
        self._wait: Callable[[float], None] = wait or journal.wait_wakeup
        self.retention = Retention(journal, settings.retention, clock=clock)

    def tick(self) -> int:
        """One pass; returns how many things it did."""
        refs: list[RunRef] = []
        refs += self.journal.fire_due_timers(BATCH)
        refs += self.journal.expire_tasks(BATCH)
        refs += self.journal.fire_due_schedules(BATCH)
        refs += self.journal.expire_heartbeats(BATCH)
        refs += self.journal.expire_runs(BATCH)
        refs += self.journal.take_runnable(
            redispatch_after=self.settings.redispatch_after,
            limit=BATCH,
            node_ttl=self.settings.node_ttl,
        )
        unique = list(dict.fromkeys(refs))
        if unique:
            self.publisher.publish_replays(unique)
        tasks = self.journal.take_unpublished(
            republish_after=self.settings.republish_after, limit=BATCH
        )
        if tasks:
            self.publisher.publish_tasks(tasks)
        done = len(unique) + len(tasks)
        done += self.retention.tick()
        if done:
            log.debug("dispatcher: %d replays, %d tasks published", len(unique), len(tasks))
        return done

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set; errors are logged and retried with backoff."""
        failures = 0
        while not stop.is_set():
            try:
                busy = self.tick() > 0
                failures = 0
            except Exception:
                failures += 1
                log.exception("dispatcher pass failed (%d in a row)", failures)
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if busy:
                continue
            self._sleep()

    def _sleep(self) -> None:
        timeout = self.settings.poll_interval
        try:
            wakeup = self.journal.next_wakeup()
        except Exception:
            wakeup = None
        looks = [w for w in (wakeup, self.retention.next_look) if w is not None]
        if looks:
            timeout = max(0.0, min(timeout, min(looks) - self._clock()))
        if timeout > 0:
            self._wait(timeout)
