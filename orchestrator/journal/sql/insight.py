"""The SQL journal's pages of runs and aggregates (operators' views of many runs).

Pages are keyset reads on ``ix_runs_created_at`` (or ``ix_runs_workflow_created_at``); the
aggregates are a handful of ``GROUP BY`` and ``count`` queries, the dispatcher's partial
indexes serving the ones about pending work.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from orchestrator.journal.insight import (
    DURATION_BUCKETS,
    AttemptStats,
    JournalStats,
    RunCursor,
    RunPage,
    attempt_outcome,
    attempt_stats,
)
from orchestrator.journal.sql.connection import SqlConnection
from orchestrator.journal.sql.rows import run_info, runs, tasks, timers
from orchestrator.model.events import EventType, RunStatus

_began = sa.func.coalesce(tasks.c.started_at, tasks.c.published_at, tasks.c.available_at)
_ended = (
    sa.select(
        tasks.c.task_name,
        tasks.c.outcome,
        (tasks.c.finished_at - _began).label("seconds"),
    )
    .where(tasks.c.outcome.is_not(None), tasks.c.finished_at.is_not(None))
    # OFFSET keeps Postgres from inlining the subquery, which would compute each duration
    # once per bucket it is compared with, instead of once.
    .offset(0)
    .subquery("ended")
)
_bucket = sa.case(
    *[(_ended.c.seconds <= bound, i) for i, bound in enumerate(DURATION_BUCKETS)],
    else_=len(DURATION_BUCKETS),
).label("bucket")
#: Ended attempts per task, outcome and duration bucket: one scan of the tasks table.
ATTEMPTS = sa.select(
    _ended.c.task_name,
    _ended.c.outcome,
    _bucket,
    sa.func.count(),
    sa.func.coalesce(sa.func.sum(_ended.c.seconds), 0.0),
).group_by(_ended.c.task_name, _ended.c.outcome, _bucket)


def finish_params(task_id: str, run_id: str, kind: EventType | str, at: float) -> dict[str, Any]:
    """The parameters of ``FINISH_AWAITED_TASK``: the task, and how and when it ended."""
    return {
        "p_task_id": task_id,
        "p_run_id": run_id,
        "p_outcome": attempt_outcome(kind),
        "p_finished_at": at,
    }


class SqlInsight(SqlConnection):
    """Reads over many runs; each one transaction (read only)."""

    def page_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        prefix: str | None = None,
        after: RunCursor | None = None,
        limit: int = 50,
    ) -> RunPage:
        query = (
            sa.select(runs)
            .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
            .limit(limit + 1)
        )
        if status is not None:
            query = query.where(runs.c.status == RunStatus(status).value)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if prefix:
            query = query.where(runs.c.run_id.startswith(prefix, autoescape=True))
        if after is not None:
            query = query.where(
                sa.or_(
                    runs.c.created_at < after.created_at,
                    sa.and_(runs.c.created_at == after.created_at, runs.c.run_id < after.run_id),
                )
            )
        with self._tx(autocommit=True) as conn:
            rows = conn.execute(query).all()
        cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            cursor = RunCursor(created_at=float(last.created_at), run_id=last.run_id)
        return RunPage(runs=[run_info(row) for row in rows[:limit]], next=cursor)

    def count_runs(self, *, workflow: str | None = None) -> dict[tuple[str, RunStatus], int]:
        with self._tx(autocommit=True) as conn:
            return self._count_runs_x(conn, workflow)

    def _count_runs_x(self, conn: Any, workflow: str | None) -> dict[tuple[str, RunStatus], int]:
        query = sa.select(runs.c.workflow, runs.c.status, sa.func.count()).group_by(
            runs.c.workflow, runs.c.status
        )
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        return {(w, RunStatus(s)): int(n) for w, s, n in conn.execute(query)}

    def stats(self) -> JournalStats:
        now = self._clock()
        if not self.postgres:  # SQLite takes one transaction at a time: one after the other
            return dataclasses.replace(self._pending_work(now), attempts=self._attempts())
        # The two aggregates that read whole tables run side by side, on two connections.
        with ThreadPoolExecutor(max_workers=1) as pool:
            attempts = pool.submit(self._attempts)
            stats = self._pending_work(now)
            return dataclasses.replace(stats, attempts=attempts.result())

    def _attempts(self) -> list[AttemptStats]:
        with self._tx(autocommit=True) as conn:
            return attempt_stats(tuple(row) for row in conn.execute(ATTEMPTS))

    def _pending_work(self, now: float) -> JournalStats:
        """Everything but the attempts: the runs, and the work waiting."""
        with self._tx(autocommit=True) as conn:
            oldest = conn.execute(
                sa.select(sa.func.min(runs.c.updated_at)).where(
                    runs.c.status == RunStatus.RUNNABLE.value
                )
            ).scalar()
            unpublished = conn.execute(
                sa.select(sa.func.count()).where(
                    sa.not_(tasks.c.finished),
                    tasks.c.published_at.is_(None),
                    tasks.c.available_at <= now,
                )
            ).scalar()
            overdue = conn.execute(
                sa.select(sa.func.count()).where(timers.c.fire_at <= now)
            ).scalar()
            return JournalStats(
                now=now,
                runs=self._count_runs_x(conn, None),
                runnable_oldest_at=None if oldest is None else float(oldest),
                outbox_unpublished=int(unpublished or 0),
                timers_overdue=int(overdue or 0),
            )
