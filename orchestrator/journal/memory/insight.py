"""The in-memory journal's pages of runs and aggregates (operators' views of many runs)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from orchestrator.journal.insight import (
    JournalStats,
    RunCursor,
    RunPage,
    attempt_stats,
    bucket_of,
)
from orchestrator.journal.memory.rows import RunRow, TaskRow
from orchestrator.model.events import RunStatus


class MemoryInsight:
    """Reads over all of an :class:`~orchestrator.journal.memory.journal.InMemoryJournal`'s
    rows, each under its lock (one atomic step, as the SQL journal's one transaction)."""

    _lock: threading.RLock
    _clock: Callable[[], float]
    _runs: dict[str, RunRow]
    _tasks: dict[str, TaskRow]
    _timers: dict[tuple[str, int], float]

    def page_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        prefix: str | None = None,
        after: RunCursor | None = None,
        limit: int = 50,
    ) -> RunPage:
        def wanted(r: RunRow) -> bool:
            return (
                (status is None or r.status is RunStatus(status))
                and (workflow is None or r.new.workflow == workflow)
                and (prefix is None or r.new.run_id.startswith(prefix))
                and (after is None or (r.created_at, r.new.run_id) < _key(after))
            )

        with self._lock:
            found = sorted(
                (r for r in self._runs.values() if wanted(r)),
                key=lambda r: (r.created_at, r.new.run_id),
                reverse=True,
            )
            page = found[:limit]
            cursor = None
            if len(found) > limit:
                cursor = RunCursor(created_at=page[-1].created_at, run_id=page[-1].new.run_id)
            return RunPage(runs=[r.info() for r in page], next=cursor)

    def count_runs(self, *, workflow: str | None = None) -> dict[tuple[str, RunStatus], int]:
        counts: dict[tuple[str, RunStatus], int] = {}
        with self._lock:
            for r in self._runs.values():
                if workflow is None or r.new.workflow == workflow:
                    key = (r.new.workflow, r.status)
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def stats(self) -> JournalStats:
        with self._lock:
            now = self._clock()
            runnable = [r.updated_at for r in self._runs.values() if r.status is RunStatus.RUNNABLE]
            rows: list[tuple[str, str, int, int, float]] = []
            for t in self._tasks.values():
                if t.outcome is None or t.finished_at is None:
                    continue
                began = _began(t)
                seconds = max(0.0, t.finished_at - began)
                rows.append((t.spec.task_name, t.outcome, bucket_of(seconds), 1, seconds))
            return JournalStats(
                now=now,
                runs=self.count_runs(),
                runnable_oldest_at=min(runnable) if runnable else None,
                attempts=attempt_stats(rows),
                outbox_unpublished=sum(
                    1
                    for t in self._tasks.values()
                    if not t.finished and t.published_at is None and t.spec.available_at <= now
                ),
                timers_overdue=sum(1 for at in self._timers.values() if at <= now),
            )


def _key(cursor: RunCursor) -> tuple[float, str]:
    return (cursor.created_at, cursor.run_id)


def _began(task: TaskRow) -> float:
    """When the attempt began: its recorded start, else its publication, else its due time."""
    began: Any = task.started_at
    if began is None:
        began = task.published_at if task.published_at is not None else task.spec.available_at
    return float(began)
