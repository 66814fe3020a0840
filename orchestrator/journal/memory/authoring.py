"""The in-memory journal's operations for queries, signal-with-start, execution timeouts and
heartbeats (see the :class:`~orchestrator.journal.protocol.Journal` protocol for their
contract). Each runs under the journal's one lock, so each is one atomic step."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from orchestrator.journal.authoring import (
    heartbeat_timed_out_item,
    newest_first,
    newest_published,
    run_timed_out_item,
)
from orchestrator.journal.memory.rows import RunRow, TaskRow, overdue
from orchestrator.journal.protocol import Beat, Delivery, Published, RunRef, collect_dispatch
from orchestrator.model import payloads
from orchestrator.model.events import EventType
from orchestrator.model.records import InboxItem, NewRun, task_id_for


class AuthoringOps:
    """Mixed into :class:`~orchestrator.journal.memory.journal.InMemoryJournal`, whose state
    these methods read and write."""

    _lock: threading.RLock
    _clock: Callable[[], float]
    _runs: dict[str, RunRow]
    _tasks: dict[str, TaskRow]

    def create_run(self, run: NewRun) -> bool:
        raise NotImplementedError

    def _deliver(self, run_id: str, item: InboxItem, task_id: str | None, now: float) -> Delivery:
        raise NotImplementedError

    # -- queries ----------------------------------------------------------------------------
    def latest_published(self, run_id: str, name: str) -> Published | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            links = {
                r.new.run_id: (r.new.continued_from_run_id, r.created_at)
                for r in self._runs.values()
                if r.chain == run.chain
            }
            rows = [
                (run_id, row.seq, row.data)
                for run_id in links
                for row in self._runs[run_id].events
                if row.type is EventType.VALUE_PUBLISHED
            ]
            return newest_published(newest_first(links), rows, name)

    # -- signal-with-start ------------------------------------------------------------------
    def start_or_deliver(self, run: NewRun, item: InboxItem) -> tuple[bool, Delivery]:
        with self._lock:
            payloads.encode(item.data, f"{item.type} inbox item")  # refused before any write
            now = self._clock()
            if not self.create_run(run):
                return False, self._deliver(run.run_id, item, None, now)
            delivery = self._deliver(run.run_id, item, None, now)
            return True, Delivery(accepted=delivery.accepted, dispatch=self._runs[run.run_id].ref())

    # -- execution timeouts -----------------------------------------------------------------
    def expire_runs(self, limit: int = 100) -> list[RunRef]:
        with self._lock:
            now = self._clock()
            due = sorted(
                (r for r in self._runs.values() if r.deadline_at is not None),
                key=lambda r: r.deadline_at or 0.0,
            )
            refs: list[RunRef] = []
            for root in [r for r in due if (r.deadline_at or 0.0) <= now][:limit]:
                timeout = (root.deadline_at or now) - root.created_at
                root.deadline_at = None
                item = run_timed_out_item(root.new.run_id, timeout)
                for run in self._runs.values():
                    if run.chain == root.chain and not run.status.terminal:
                        collect_dispatch(refs, self._deliver(run.new.run_id, item, None, now))
            return refs

    # -- heartbeats -------------------------------------------------------------------------
    def record_heartbeat(self, task_id: str, details: Any = None) -> Beat | None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.finished:
                return None
            text = None if details is None else payloads.encode(details, "heartbeat details")
            timeout = task.spec.heartbeat_timeout
            if timeout is not None:
                task.heartbeat_deadline_at = self._clock() + timeout
            if text is not None:
                task.heartbeat_details = text
            return Beat(heartbeat_timeout=timeout)

    def heartbeat_details(self, run_id: str, command_id: int, attempt: int) -> Any:
        with self._lock:
            for earlier in range(attempt, 0, -1):
                task = self._tasks.get(task_id_for(run_id, command_id, earlier))
                if task is not None and task.heartbeat_details is not None:
                    return payloads.decode(task.heartbeat_details)
            return None

    def expire_heartbeats(self, limit: int = 100) -> list[RunRef]:
        with self._lock:
            now = self._clock()
            silent = overdue(self._tasks.values(), lambda t: t.heartbeat_deadline_at, now, limit)
            refs: list[RunRef] = []
            for task in silent:
                spec = task.spec
                item = heartbeat_timed_out_item(
                    spec.command_id, spec.attempt, spec.kind, spec.task_name, spec.heartbeat_timeout
                )
                collect_dispatch(refs, self._deliver(spec.run_id, item, spec.task_id, now))
                task.finished = True
            return refs
