"""A step's commit on SQL: the events, tasks, timers, children and continuation a replay
decided, the run's row updated and its lease released, in the caller's transaction; and what
an ended run leaves behind (its inbox, timers and unfinished tasks), its waiters and the
children that end with it.

On Postgres the step's events and tasks ride on the run's update, and a run's end is one
statement (:data:`~orchestrator.journal.sql.rows.WRITE_STEP`,
:data:`~orchestrator.journal.sql.rows.CLOSE_RUN`).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchestrator.journal.inbox import cancel_item, child_outcome_item
from orchestrator.journal.protocol import (
    INHERITED_BY_CONTINUATION,
    Batch,
    Claimed,
    Committed,
    Delivery,
    Lease,
    RunRef,
    collect_dispatch,
)
from orchestrator.journal.sql import admission
from orchestrator.journal.sql.connection import CLOSED_CHANNEL, WAKEUP_CHANNEL
from orchestrator.journal.sql.dispatch import DispatcherQueries
from orchestrator.journal.sql.rows import (
    ABSORB,
    ANY_PENDING_INBOX,
    CHILDREN_TO_CANCEL,
    CLOSE_RUN,
    CREATE_RUN,
    LOCK_FOR_COMMIT,
    UPDATE_RUN,
    WRITE_STEP,
    WRITE_STEP_FINISHING,
    events,
    inbox,
    ref_of,
    run_info,
    run_row,
    runs,
    started_row,
    step_rows,
    stored_run,
    task_row,
    tasks,
    timers,
)
from orchestrator.model import payloads
from orchestrator.model.errors import LeaseLost
from orchestrator.model.events import EventType, RunStatus
from orchestrator.model.limits import starts_queued
from orchestrator.model.records import NewRun


class NotAwaited(Exception):
    """The outcome is not one the run waits for (found by the delivery's claim or by the step's
    write): the hot path's claim is rolled back with its transaction."""


class StepCommits(DispatcherQueries):
    """The lease holder's commit of a step and release of its lease, and the inserting of
    runs, which a start and a step share (see
    :class:`~orchestrator.journal.sql.journal.SqlJournal`)."""

    def _insert_run_x(
        self, conn: Connection, run: NewRun, now: float, lease: Lease | None = None
    ) -> bool:
        """Insert ``run`` and its ``run_started`` event: ``False`` when its id is taken. With
        ``lease``, the run is inserted already claimed; a limited one queued, then admitted if
        its key has room."""
        created = self._create_run_x(conn, run_row(run, now, lease), [started_row(run, now)])
        if created and lease is None and run.concurrency_key and starts_queued(run):
            admission.admit_x(conn, run.concurrency_key, now, postgres=self.postgres)
        return created

    def _create_run_x(
        self,
        conn: Connection,
        row: dict[str, Any],
        event_rows: list[dict[str, Any]],
        task_rows: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Insert a run's ``row`` (see :func:`~orchestrator.journal.sql.rows.run_row`) with its
        first events and tasks: ``False``, and nothing written, when its id is taken. One statement
        on Postgres (:data:`~orchestrator.journal.sql.rows.CREATE_RUN`)."""
        if self.postgres:
            params = {**row, **step_rows(event_rows, task_rows or [])}
            return conn.execute(CREATE_RUN, params).first() is not None
        inserted = conn.execute(
            self._insert(runs)
            .values(row)
            .on_conflict_do_nothing(index_elements=["run_id"])
            .returning(runs.c.run_id)
        ).first()
        if inserted is None:
            return False
        conn.execute(events.insert(), event_rows)
        if task_rows:
            conn.execute(tasks.insert(), task_rows)
        return True

    def commit(self, lease: Lease, batch: Batch, *, release: bool = True) -> Committed:
        return self._retrying(lambda conn: self._commit_x(conn, lease, batch, release))

    def _commit_x(
        self,
        conn: Connection,
        lease: Lease,
        batch: Batch,
        release: bool,
        held: Claimed | None = None,
        finishing: dict[str, Any] | None = None,
        unwritten: dict[str, Any] | None = None,
    ) -> Committed:
        """``held`` is a claim made earlier in this transaction: the run's row is locked by
        it already, and no inbox item can have arrived since (a delivery locks the row);
        ``unwritten``, the values it sets on the row, are written by this step's update.
        ``finishing`` ends the task whose outcome the batch consumes (the parameters of
        :func:`~orchestrator.journal.sql.insight.finish_params`), by the step's write
        (Postgres); :class:`NotAwaited` if it has ended already."""
        now = self._clock()
        if held is None:
            row = self._locked_run(conn, lease)
            seq, prior = row.last_seq, row.status
        else:
            seq, prior = held.last_seq, RunStatus.RUNNING.value
        event_rows = step_events(lease.run_id, seq, batch, now)
        seq += len(event_rows)
        task_rows = [task_row(t, now) for t in batch.tasks]
        if not self.postgres:
            if event_rows:
                conn.execute(events.insert(), event_rows)
            if task_rows:
                conn.execute(tasks.insert(), task_rows)
        if batch.absorbed:
            params = {"p_run_id": lease.run_id, "p_ids": list(batch.absorbed), "absorbed": True}
            conn.execute(ABSORB, params)
        if batch.timers:
            conn.execute(
                timers.insert(),
                [
                    {"run_id": t.run_id, "command_id": t.command_id, "fire_at": t.fire_at}
                    for t in batch.timers
                ],
            )
        dispatch: list[RunRef] = []
        for child in batch.children:
            if self._insert_run_x(conn, child, now):
                dispatch.append(ref_of(child))
        status = RunStatus(batch.status or prior)
        if batch.continuation is not None and self._insert_run_x(
            conn, admission.inherit_x(conn, lease.run_id, batch.continuation), now
        ):
            dispatch.append(ref_of(batch.continuation))
        if status.terminal:
            if batch.continuation is not None:
                conn.execute(
                    inbox.update()
                    .where(
                        inbox.c.run_id == lease.run_id,
                        sa.not_(inbox.c.absorbed),
                        inbox.c.type.in_([t.value for t in INHERITED_BY_CONTINUATION]),
                    )
                    .values(run_id=batch.continuation.run_id)
                )
            pending = False
        elif held is None:
            pending = self._has_pending_inbox(conn, lease.run_id)
        else:
            absorbed = set(batch.absorbed)
            pending = any(item.id not in absorbed for item in held.inbox)
        values = {
            **(unwritten or {}),
            **step_values(batch, status, seq, now, pending=pending, release=release),
            "p_run_id": lease.run_id,
        }
        if self.postgres:
            values.update(step_rows(event_rows, task_rows))
            statement = WRITE_STEP
            if finishing is not None:
                values.update(finishing)
                statement = WRITE_STEP_FINISHING
            written = conn.execute(statement, values).one()
            if finishing is not None and not written.task_finished:
                raise NotAwaited
        else:
            written = conn.execute(UPDATE_RUN, values).one()
        ended = stored_run(written)
        # The run's children it cancels as it ends: read as its leftovers are dropped.
        children = self._close_x(conn, lease.run_id) if status.terminal else None
        if status.terminal and ended.concurrency_key is not None:
            dispatch += admission.admit_x(conn, ended.concurrency_key, now, postgres=self.postgres)
        cancelled = any(e.type == EventType.CANCEL_REQUESTED for e in batch.events)
        if cancelled or (status.terminal and status is not RunStatus.CONTINUED):
            reason = batch.reason if status.terminal else _cancel_reason(batch)
            dispatch += self._cancel_children_x(conn, lease.run_id, reason, now, children)
        if status.terminal and status is not RunStatus.CONTINUED:
            collect_dispatch(dispatch, self._tell_parent_x(conn, ended, status, now))
        if batch.timers or any(t.available_at > now for t in batch.tasks):
            self._notify(conn, WAKEUP_CHANNEL)
        return Committed(last_seq=seq, pending_inbox=pending, dispatch=dispatch)

    def _tell_parent_x(
        self, conn: Connection, ended: Any, status: RunStatus, now: float
    ) -> Delivery:
        """Deliver the end of the run whose row is ``ended`` to its parent, if it has one."""
        if ended.parent_run_id is None:
            return Delivery(accepted=True)
        item = child_outcome_item(run_info(ended), status)
        return self._deliver_x(conn, ended.parent_run_id, item, None, now)

    def _cancel_children_x(
        self,
        conn: Connection,
        run_id: str,
        reason: str | None,
        now: float,
        children: list[str] | None = None,
    ) -> list[RunRef]:
        """Deliver a cancel request to ``run_id``'s children that end with it (``children``,
        when the caller has read them already)."""
        if children is None:
            children = list(conn.execute(CHILDREN_TO_CANCEL, {"p_run_id": run_id}).scalars())
        refs: list[RunRef] = []
        item = cancel_item(reason or f"parent {run_id} was cancelled or ended")
        for child in children:
            collect_dispatch(refs, self._deliver_x(conn, child, item, None, now))
        return refs

    def release(self, lease: Lease, *, reason: str | None = None) -> None:
        now = self._clock()
        with self._tx() as conn:
            conn.execute(
                runs.update()
                .where(
                    runs.c.run_id == lease.run_id,
                    runs.c.lease_owner == lease.owner,
                    runs.c.lease_token == lease.token,
                )
                .values(
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                    reason=reason if reason is not None else runs.c.reason,
                    status=sa.case(
                        (runs.c.status == RunStatus.RUNNING.value, RunStatus.RUNNABLE.value),
                        else_=runs.c.status,
                    ),
                )
            )

    def _locked_run(self, conn: Connection, lease: Lease) -> Any:
        row = conn.execute(LOCK_FOR_COMMIT, {"p_run_id": lease.run_id}).first()
        if row is None or row.lease_owner != lease.owner or row.lease_token != lease.token:
            raise LeaseLost(lease.run_id, lease.owner, lease.token)
        return row

    def _has_pending_inbox(self, conn: Connection, run_id: str) -> bool:
        return conn.execute(ANY_PENDING_INBOX, {"p_run_id": run_id}).first() is not None

    def _close_x(self, conn: Connection, run_id: str) -> list[str]:
        """Drop what an ended run leaves behind, tell its waiters it ended, and return its
        children that end with it (one statement on Postgres)."""
        if self.postgres:
            row = conn.execute(CLOSE_RUN, {"p_run_id": run_id, "p_channel": CLOSED_CHANNEL}).one()
            return list(row.children or ())
        conn.execute(inbox.delete().where(inbox.c.run_id == run_id))
        conn.execute(timers.delete().where(timers.c.run_id == run_id))
        conn.execute(
            tasks.update()
            .where(tasks.c.run_id == run_id, sa.not_(tasks.c.finished))
            .values(finished=True)
        )
        return list(conn.execute(CHILDREN_TO_CANCEL, {"p_run_id": run_id}).scalars())


def _cancel_reason(batch: Batch) -> str | None:
    for event in batch.events:
        if event.type == EventType.CANCEL_REQUESTED:
            reason = event.data.get("reason")
            return None if reason is None else str(reason)
    return None


__all__ = ["NotAwaited", "StepCommits"]


def step_events(run_id: str, seq: int, batch: Batch, now: float) -> list[dict[str, Any]]:
    """The rows of a step's events, numbered on from ``seq``, the run's last."""
    return [
        {
            "run_id": run_id,
            "seq": seq + n,
            "type": EventType(event.type).value,
            "command_id": event.command_id,
            "attempt": event.attempt,
            "data": payloads.encode(event.data, f"{event.type} event"),
            "at": now if event.at is None else event.at,
        }
        for n, event in enumerate(batch.events, start=1)
    ]


def step_values(
    batch: Batch, status: RunStatus, seq: int, now: float, *, pending: bool, release: bool
) -> dict[str, Any]:
    """The columns a step sets on its run's row: the run at ``status``, its history up to
    ``seq``, the lease released (with ``release``) and a replay due when inbox items are
    ``pending``."""
    values: dict[str, Any] = {"last_seq": seq, "updated_at": now}
    if batch.continuation is not None:
        values["continued_to_run_id"] = batch.continuation.run_id
    if batch.status is not None:
        values.update(
            status=status.value,
            result=payloads.encode(batch.result, "workflow result"),
            error=None if batch.error is None else json.dumps(batch.error),
            reason=batch.reason,
        )
    if status.terminal:
        values["closed_at"] = now
    if release:
        values.update(lease_owner=None, lease_expires_at=None)
        if status is RunStatus.BLOCKED:
            values["dispatched_at"] = now
        elif pending or status is RunStatus.RUNNING:
            values["status"] = RunStatus.RUNNABLE.value
        else:
            values["dispatched_at"] = None
    return values
