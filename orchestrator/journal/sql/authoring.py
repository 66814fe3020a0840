"""The SQL journal's operations for queries, signal-with-start, execution timeouts and
heartbeats (see the :class:`~orchestrator.journal.protocol.Journal` protocol for their
contract).

A heartbeat is one statement on the attempt's task row and takes no lock on its run, so a
long activity that beats often never competes with its run's steps. The dispatcher's passes
take rows with ``SKIP LOCKED``, as its other passes do.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchestrator.journal.authoring import (
    heartbeat_timed_out_item,
    newest_first,
    newest_published,
    run_timed_out_item,
)
from orchestrator.journal.insight import attempt_outcome
from orchestrator.journal.protocol import Beat, Delivery, Published, RunRef, collect_dispatch
from orchestrator.journal.sql.connection import SqlConnection
from orchestrator.journal.sql.rows import (
    TERMINAL,
    events,
    inbox_row,
    overdue_tasks,
    ref_of,
    run_row,
    runs,
    started_row,
    tasks,
)
from orchestrator.model import payloads
from orchestrator.model.events import EventType
from orchestrator.model.records import InboxItem, NewRun

_task_param: sa.BindParameter[str] = sa.bindparam("p_task_id")
_now_param: sa.BindParameter[float] = sa.bindparam("p_now", type_=sa.Float)
_beat = (
    tasks.update()
    .where(tasks.c.task_id == _task_param, sa.not_(tasks.c.finished))
    .returning(tasks.c.heartbeat_timeout)
)
#: A heartbeat: the attempt's deadline moves on (it stays NULL without a heartbeat_timeout).
BEAT = _beat.values(heartbeat_deadline_at=_now_param + tasks.c.heartbeat_timeout)
#: A heartbeat that records details too.
BEAT_WITH_DETAILS = _beat.values(
    heartbeat_deadline_at=_now_param + tasks.c.heartbeat_timeout,
    heartbeat_details=sa.bindparam("p_details", type_=sa.Text),
)
#: Ends a silent attempt, unless a heartbeat moved its deadline since it was read.
FINISH_SILENT = (
    tasks.update()
    .where(
        tasks.c.task_id == _task_param,
        sa.not_(tasks.c.finished),
        tasks.c.heartbeat_deadline_at <= _now_param,
    )
    .values(finished=True, outcome=sa.bindparam("p_outcome"), finished_at=_now_param)
    .returning(tasks.c.task_id)
)


class AuthoringQueries(SqlConnection):
    """Mixed into :class:`~orchestrator.journal.sql.journal.SqlJournal`, whose bodies of
    run insertion and delivery these reuse in their own transactions."""

    def _deliver_x(
        self, conn: Connection, run_id: str, item: InboxItem, task_id: str | None, now: float
    ) -> Delivery:
        raise NotImplementedError

    def _create_run_x(
        self,
        conn: Connection,
        row: dict[str, Any],
        event_rows: list[dict[str, Any]],
        task_rows: list[dict[str, Any]] | None = None,
    ) -> bool:
        raise NotImplementedError

    def _insert_inbox_x(self, conn: Connection, values: dict[str, Any]) -> int | None:
        raise NotImplementedError

    # -- queries ----------------------------------------------------------------------------
    def latest_published(self, run_id: str, name: str) -> Published | None:
        with self._tx(autocommit=True) as conn:
            chain = conn.execute(
                sa.select(runs.c.correlation_id).where(runs.c.run_id == run_id)
            ).scalar()
            if chain is None:
                return None
            generations = conn.execute(
                sa.select(runs.c.run_id, runs.c.continued_from_run_id, runs.c.created_at).where(
                    runs.c.correlation_id == chain
                )
            )
            links = {r.run_id: (r.continued_from_run_id, r.created_at) for r in generations}
            published = conn.execute(
                sa.select(events.c.run_id, events.c.seq, events.c.data)
                .join(runs, runs.c.run_id == events.c.run_id)
                .where(
                    runs.c.correlation_id == chain,
                    events.c.type == EventType.VALUE_PUBLISHED.value,
                )
            ).all()
        rows = [(row.run_id, row.seq, row.data) for row in published]
        return newest_published(newest_first(links), rows, name)

    # -- signal-with-start ------------------------------------------------------------------
    def start_or_deliver(self, run: NewRun, item: InboxItem) -> tuple[bool, Delivery]:
        now = self._clock()
        row, started = run_row(run, now), started_row(run, now)
        data = payloads.encode(item.data, f"{item.type} inbox item")

        def body(conn: Connection) -> tuple[bool, Delivery]:
            # A concurrent insert of the same id makes this one wait for its commit, then
            # do nothing: the item is then delivered to the run that transaction created.
            if not self._create_run_x(conn, row, [started]):
                return False, self._deliver_x(conn, run.run_id, item, None, now)
            self._insert_inbox_x(conn, inbox_row(run.run_id, item, data, now))
            return True, Delivery(accepted=True, dispatch=ref_of(run))

        return self._retrying(body)

    # -- execution timeouts -----------------------------------------------------------------
    def expire_runs(self, limit: int = 100) -> list[RunRef]:
        def body(conn: Connection) -> list[RunRef]:
            now = self._clock()
            due = conn.execute(
                sa.select(
                    runs.c.run_id, runs.c.correlation_id, runs.c.deadline_at, runs.c.created_at
                )
                .where(runs.c.deadline_at <= now)
                .order_by(runs.c.deadline_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            refs: list[RunRef] = []
            for root in due:
                conn.execute(
                    runs.update().where(runs.c.run_id == root.run_id).values(deadline_at=None)
                )
                item = run_timed_out_item(root.run_id, root.deadline_at - root.created_at)
                open_runs = conn.execute(
                    sa.select(runs.c.run_id).where(
                        runs.c.correlation_id == root.correlation_id,
                        runs.c.status.not_in(TERMINAL),
                    )
                ).scalars()
                for open_run in list(open_runs):
                    collect_dispatch(refs, self._deliver_x(conn, open_run, item, None, now))
            return refs

        return self._retrying(body)

    # -- heartbeats -------------------------------------------------------------------------
    def record_heartbeat(self, task_id: str, details: Any = None) -> Beat | None:
        params: dict[str, Any] = {"p_task_id": task_id, "p_now": self._clock()}
        statement = BEAT
        if details is not None:
            params["p_details"] = payloads.encode(details, "heartbeat details")
            statement = BEAT_WITH_DETAILS

        def body(conn: Connection) -> Beat | None:
            row = conn.execute(statement, params).first()
            return None if row is None else Beat(heartbeat_timeout=row.heartbeat_timeout)

        return self._retrying(body, autocommit=True)

    def heartbeat_details(self, run_id: str, command_id: int, attempt: int) -> Any:
        with self._tx(autocommit=True) as conn:
            text = conn.execute(
                sa.select(tasks.c.heartbeat_details)
                .where(
                    tasks.c.run_id == run_id,
                    tasks.c.command_id == command_id,
                    tasks.c.attempt <= attempt,
                    tasks.c.heartbeat_details.is_not(None),
                )
                .order_by(tasks.c.attempt.desc())
                .limit(1)
            ).scalar()
        return payloads.decode(text)

    def expire_heartbeats(self, limit: int = 100) -> list[RunRef]:
        def body(conn: Connection) -> list[RunRef]:
            now = self._clock()
            silent = overdue_tasks(
                tasks.c.heartbeat_deadline_at, tasks.c.heartbeat_timeout, now, limit
            )
            refs: list[RunRef] = []
            for task in conn.execute(silent).all():
                item = heartbeat_timed_out_item(
                    task.command_id, task.attempt, task.kind, task.task_name, task.allowed
                )
                params = {
                    "p_task_id": task.task_id,
                    "p_now": now,
                    "p_outcome": attempt_outcome(item.type),
                }
                if conn.execute(FINISH_SILENT, params).first() is None:
                    continue  # it beat, or ended, since it was read
                collect_dispatch(refs, self._deliver_x(conn, task.run_id, item, None, now))
            return refs

        return self._retrying(body)
