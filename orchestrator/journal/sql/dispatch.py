"""The dispatcher's side of the SQL journal: due timers, activity deadlines, the outbox to
(re-)publish, runs to dispatch, the version registry, and waiting for the next of these.

Each pass takes rows with ``FOR UPDATE SKIP LOCKED``, so several dispatchers share the work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchestrator.journal.inbox import timed_out_item, timer_key
from orchestrator.journal.protocol import Delivery, RunRef, collect_dispatch
from orchestrator.journal.sql import schema
from orchestrator.journal.sql.connection import WAKEUP_CHANNEL, SqlConnection
from orchestrator.journal.sql.rows import (
    LEASE_FREE,
    nodes,
    outbox_task,
    overdue_tasks,
    runs,
    tasks,
    timers,
)
from orchestrator.journal.sql.schedules import NEXT_SLOT
from orchestrator.model.events import EventType, RunStatus
from orchestrator.model.records import InboxItem, OutboxTask


class DispatcherQueries(SqlConnection):
    """The dispatcher's operations of :class:`~orchestrator.journal.protocol.Journal`."""

    def _deliver_x(
        self, conn: Connection, run_id: str, item: InboxItem, task_id: str | None, now: float
    ) -> Delivery:
        """Insert one inbox item in the caller's transaction (the journal's own delivery)."""
        raise NotImplementedError

    def fire_due_timers(self, limit: int = 100) -> list[RunRef]:
        now = self._clock()
        with self._tx() as conn:
            due = conn.execute(
                sa.select(timers.c.run_id, timers.c.command_id)
                .join(runs, runs.c.run_id == timers.c.run_id)
                .where(timers.c.fire_at <= now)
                .order_by(timers.c.fire_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=runs)
            ).all()
            refs: list[RunRef] = []
            for run_id, command_id in due:
                conn.execute(
                    timers.delete().where(
                        timers.c.run_id == run_id, timers.c.command_id == command_id
                    )
                )
                item = InboxItem(
                    dedupe_key=timer_key(command_id),
                    type=EventType.TIMER_FIRED,
                    command_id=command_id,
                )
                collect_dispatch(refs, self._deliver_x(conn, run_id, item, None, now))
        return refs

    def expire_tasks(self, limit: int = 100) -> list[RunRef]:
        now = self._clock()
        with self._tx() as conn:
            overdue = overdue_tasks(tasks.c.deadline_at, tasks.c.timeout_seconds, now, limit)
            refs: list[RunRef] = []
            for task in conn.execute(overdue).all():
                item = timed_out_item(
                    task.command_id, task.attempt, task.kind, task.task_name, task.allowed
                )
                delivery = self._deliver_x(conn, task.run_id, item, task.task_id, now)
                conn.execute(
                    tasks.update().where(tasks.c.task_id == task.task_id).values(finished=True)
                )
                collect_dispatch(refs, delivery)
        return refs

    def take_unpublished(self, *, republish_after: float, limit: int = 100) -> list[OutboxTask]:
        now = self._clock()
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(tasks)
                .where(sa.not_(tasks.c.finished))
                .where(
                    sa.or_(
                        sa.and_(tasks.c.published_at.is_(None), tasks.c.available_at <= now),
                        sa.and_(
                            tasks.c.started_at.is_(None),
                            tasks.c.published_at <= now - republish_after,
                        ),
                    )
                )
                .order_by(tasks.c.available_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if rows:
                conn.execute(
                    tasks.update()
                    .where(tasks.c.task_id.in_([r.task_id for r in rows]))
                    .values(published_at=now)
                )
        return [outbox_task(r, resent=r.published_at is not None) for r in rows]

    def take_runnable(
        self, *, redispatch_after: float, limit: int = 100, node_ttl: float | None = None
    ) -> list[RunRef]:
        now = self._clock()
        needs_replay = sa.or_(
            sa.and_(runs.c.status == RunStatus.RUNNABLE.value, LEASE_FREE),
            sa.and_(runs.c.status == RunStatus.RUNNING.value, runs.c.lease_expires_at <= now),
            runs.c.status == RunStatus.BLOCKED.value,
        )
        not_in_flight = sa.or_(
            runs.c.dispatched_at.is_(None), runs.c.dispatched_at <= now - redispatch_after
        )
        query = (
            sa.select(runs.c.run_id, runs.c.workflow, runs.c.version)
            .where(runs.c.status.in_(schema.ACTIVE_STATUSES), needs_replay, not_in_flight)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if node_ttl is not None:
            query = query.where(
                sa.exists().where(
                    nodes.c.workflow == runs.c.workflow,
                    nodes.c.version == runs.c.version,
                    nodes.c.heartbeat_at > now - node_ttl,
                )
            )
        with self._tx() as conn:
            rows = conn.execute(query, {"now": now}).all()
            if rows:
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id.in_([r.run_id for r in rows]))
                    .values(dispatched_at=now)
                )
        return [RunRef(run_id=r.run_id, workflow=r.workflow, version=r.version) for r in rows]

    def register_node(
        self, node_id: str, versions: Sequence[tuple[str, str]], *, node_ttl: float
    ) -> int:
        now = self._clock()
        wanted = set(versions)
        with self._tx() as conn:
            live_before = self._live_versions_x(conn, now, node_ttl)
            conn.execute(nodes.delete().where(nodes.c.node_id == node_id))
            if wanted:
                conn.execute(
                    nodes.insert(),
                    [
                        {"node_id": node_id, "workflow": w, "version": v, "heartbeat_at": now}
                        for w, v in sorted(wanted)
                    ],
                )
            revived = 0
            for workflow, version in sorted(wanted - live_before):
                revived += conn.execute(
                    runs.update()
                    .where(
                        runs.c.status.in_(schema.ACTIVE_STATUSES),
                        runs.c.workflow == workflow,
                        runs.c.version == version,
                    )
                    .values(dispatched_at=None)
                ).rowcount
        return revived

    def unregister_node(self, node_id: str) -> None:
        with self._tx() as conn:
            conn.execute(nodes.delete().where(nodes.c.node_id == node_id))

    def live_versions(self, *, node_ttl: float) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            return self._live_versions_x(conn, self._clock(), node_ttl)

    def _live_versions_x(self, conn: Connection, now: float, ttl: float) -> set[tuple[str, str]]:
        rows = conn.execute(
            sa.select(nodes.c.workflow, nodes.c.version)
            .where(nodes.c.heartbeat_at > now - ttl)
            .distinct()
        )
        return {(r.workflow, r.version) for r in rows}

    def next_wakeup(self) -> float | None:
        # One read-only transaction, rolled back: not worth saving round trips in a pass,
        # and autocommit would count each statement as a commit.
        with self.engine.connect() as conn:
            timer = conn.execute(sa.select(sa.func.min(timers.c.fire_at))).scalar()
            task = conn.execute(
                sa.select(sa.func.min(tasks.c.available_at)).where(
                    sa.not_(tasks.c.finished), tasks.c.published_at.is_(None)
                )
            ).scalar()
            slot = conn.execute(NEXT_SLOT).scalar()
        due = [t for t in (timer, task, slot) if t is not None]
        return min(due) if due else None

    def wait_wakeup(self, timeout: float) -> None:
        if timeout <= 0:
            return
        if not self.postgres:
            time.sleep(timeout)
            return
        with self._listener_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = self._listening_connection()
                    self._listener.execute(f"LISTEN {WAKEUP_CHANNEL}")
                for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                    break
            except psycopg.OperationalError:
                self._listener = None
                time.sleep(min(timeout, 1.0))
