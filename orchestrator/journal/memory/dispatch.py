"""The in-memory journal's dispatcher operations and version registry (see the
:class:`~orchestrator.journal.protocol.Journal` protocol for their contract): due timers,
timed-out and unpublished tasks, runs that need a replay, and the nodes' loaded versions.
Each runs under the journal's one lock, so each is one atomic step."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from orchestrator.journal.inbox import timed_out_item, timer_key
from orchestrator.journal.memory.rows import ACTIVE, RunRow, TaskRow, overdue
from orchestrator.journal.protocol import Delivery, RunRef, collect_dispatch
from orchestrator.model.events import EventType, RunStatus
from orchestrator.model.records import InboxItem, OutboxTask


class MemoryDispatch:
    """Mixed into :class:`~orchestrator.journal.memory.journal.InMemoryJournal`, whose state
    these methods read and write."""

    _lock: threading.RLock
    _clock: Callable[[], float]
    _runs: dict[str, RunRow]
    _tasks: dict[str, TaskRow]
    _timers: dict[tuple[str, int], float]
    _nodes: dict[tuple[str, str, str], float]

    def _deliver(self, run_id: str, item: InboxItem, task_id: str | None, now: float) -> Delivery:
        raise NotImplementedError

    # -- the dispatcher ---------------------------------------------------------------------
    def fire_due_timers(self, limit: int = 100) -> list[RunRef]:
        with self._lock:
            now = self._clock()
            due = sorted(
                (fire_at, key)
                for key, fire_at in self._timers.items()
                if fire_at <= now and key[0] in self._runs
            )
            refs: list[RunRef] = []
            for _, (run_id, command_id) in due[:limit]:
                del self._timers[(run_id, command_id)]
                item = InboxItem(
                    dedupe_key=timer_key(command_id),
                    type=EventType.TIMER_FIRED,
                    command_id=command_id,
                )
                collect_dispatch(refs, self._deliver(run_id, item, None, now))
            return refs

    def expire_tasks(self, limit: int = 100) -> list[RunRef]:
        with self._lock:
            now = self._clock()
            refs: list[RunRef] = []
            for task in overdue(self._tasks.values(), lambda t: t.deadline_at, now, limit):
                spec = task.spec
                item = timed_out_item(
                    spec.command_id, spec.attempt, spec.kind, spec.task_name, spec.timeout_seconds
                )
                collect_dispatch(refs, self._deliver(spec.run_id, item, spec.task_id, now))
                task.finished = True
            return refs

    def take_unpublished(self, *, republish_after: float, limit: int = 100) -> list[OutboxTask]:
        with self._lock:
            now = self._clock()

            def due(t: TaskRow) -> bool:
                if t.finished:
                    return False
                if t.published_at is None:
                    return t.spec.available_at <= now
                return t.started_at is None and t.published_at <= now - republish_after

            taken = sorted(filter(due, self._tasks.values()), key=lambda t: t.spec.available_at)
            out = []
            for task in taken[:limit]:
                out.append(replace(task.read(), resent=task.published_at is not None))
                task.published_at = now
            return out

    def take_runnable(
        self, *, redispatch_after: float, limit: int = 100, node_ttl: float | None = None
    ) -> list[RunRef]:
        with self._lock:
            now = self._clock()
            live = None if node_ttl is None else self._live_versions(now, node_ttl)

            def needs_replay(run: RunRow) -> bool:
                if run.status is RunStatus.RUNNABLE:
                    return run.lease_free(now)
                if run.status is RunStatus.RUNNING:
                    return run.lease_expires_at is not None and run.lease_expires_at <= now
                return run.status is RunStatus.BLOCKED

            taken = [
                run
                for run in self._runs.values()
                if needs_replay(run)
                and (run.dispatched_at is None or run.dispatched_at <= now - redispatch_after)
                and (live is None or (run.new.workflow, run.new.version) in live)
            ][:limit]
            for run in taken:
                run.dispatched_at = now
            return [run.ref() for run in taken]

    # -- the version registry ---------------------------------------------------------------
    def register_node(
        self, node_id: str, versions: Sequence[tuple[str, str]], *, node_ttl: float
    ) -> int:
        with self._lock:
            now = self._clock()
            live_before = self._live_versions(now, node_ttl)
            for key in [k for k in self._nodes if k[0] == node_id]:
                del self._nodes[key]
            wanted = set(versions)
            self._nodes.update(((node_id, w, v), now) for w, v in wanted)
            revived = 0
            for run in self._runs.values():
                version = (run.new.workflow, run.new.version)
                if run.status in ACTIVE and version in wanted - live_before:
                    run.dispatched_at = None
                    revived += 1
            return revived

    def unregister_node(self, node_id: str) -> None:
        with self._lock:
            for key in [k for k in self._nodes if k[0] == node_id]:
                del self._nodes[key]

    def live_versions(self, *, node_ttl: float) -> set[tuple[str, str]]:
        with self._lock:
            return self._live_versions(self._clock(), node_ttl)

    def _live_versions(self, now: float, ttl: float) -> set[tuple[str, str]]:
        return {(w, v) for (_, w, v), beat in self._nodes.items() if beat > now - ttl}
