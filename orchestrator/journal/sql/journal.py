"""The journal on SQL: SQLAlchemy Core over psycopg 3 (Postgres) or sqlite3 (embedded).

Each public method owns one transaction; the bodies that other methods reuse take a
connection (``_x`` suffix, e.g. ``_deliver_x``) so they compose into the caller's commit.
Postgres-only features sit behind the dialect: row locks with ``SKIP LOCKED`` (SQLite
serialises writers with ``BEGIN IMMEDIATE`` instead, see :mod:`~orchestrator.journal.sql.engines`)
and ``LISTEN/NOTIFY`` (SQLite waits with a bounded poll). The module's neighbours in this
package: :mod:`~orchestrator.journal.sql.connection` (pool, retried transactions,
notifications), :mod:`~orchestrator.journal.sql.dispatch` (the dispatcher's queries),
:mod:`~orchestrator.journal.sql.commit` (a step's commit) and
:mod:`~orchestrator.journal.sql.rows` (rows to records, and the hot path's statements).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchestrator.journal.protocol import (
    Batch,
    Claimed,
    Committed,
    Delivery,
    Lease,
    RunRef,
    TaskStart,
)
from orchestrator.journal.sql import admission
from orchestrator.journal.sql.authoring import AuthoringQueries
from orchestrator.journal.sql.commit import NotAwaited, step_events, step_values
from orchestrator.journal.sql.insight import SqlInsight, finish_params
from orchestrator.journal.sql.retention import RetentionQueries
from orchestrator.journal.sql.retries import RunRetries
from orchestrator.journal.sql.rows import (
    CLAIM,
    CLAIM_FOR_DELIVERY,
    CLAIM_FOR_DELIVERY_READING,
    CLAIM_FOR_DELIVERY_RESERVING,
    CLAIM_READING,
    FINISH_AWAITED_TASK,
    LOCK_FOR_DELIVERY,
    PENDING_INBOX,
    RENEW_TASK,
    START_TASK,
    TASK_FINISHED,
    TERMINAL,
    WRITE_RUN,
    claim_params,
    claim_values,
    claimed_history,
    inbox,
    inbox_item,
    inbox_row,
    read_history,
    run_info,
    run_row,
    runs,
    started_claim,
    started_row,
    stored_run,
    task_row,
)
from orchestrator.journal.sql.schedules import ScheduleQueries
from orchestrator.journal.sql.transactional import ForeignTransactions
from orchestrator.model import payloads
from orchestrator.model.events import Event, RunInfo, RunStatus
from orchestrator.model.limits import cancels_queued, delivered_status
from orchestrator.model.records import InboxItem, NewRun


class SqlJournal(
    RunRetries,
    ScheduleQueries,
    AuthoringQueries,
    RetentionQueries,
    ForeignTransactions,
    SqlInsight,
):
    """A :class:`~orchestrator.journal.protocol.Journal` on Postgres or SQLite: runs, the lease
    holder's claims and commits, and facts from outside. Connections and transactions are
    :class:`~orchestrator.journal.sql.connection.SqlConnection`'s, the dispatcher's queries
    :class:`~orchestrator.journal.sql.dispatch.DispatcherQueries`', the writing of a step
    :class:`~orchestrator.journal.sql.commit.StepCommits`'."""

    @cached_property
    def _insert_inbox(self) -> Any:
        """The inbox insert, built once; its values come from each call's parameters."""
        return (
            self._insert(inbox)
            .on_conflict_do_nothing(index_elements=["run_id", "dedupe_key"])
            .returning(inbox.c.id)
        )

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, run: NewRun) -> bool:
        now = self._clock()
        with self._tx(autocommit=True) as conn:
            return self._insert_run_x(conn, run, now)

    def resolve_tip(self, run_id: str) -> str | None:
        with self._tx(autocommit=True) as conn:
            row = conn.execute(
                sa.select(runs.c.correlation_id, runs.c.status, runs.c.retried_to_run_id).where(
                    runs.c.run_id == run_id
                )
            ).first()
            if row is None:
                return None
            if row.status != RunStatus.CONTINUED.value and row.retried_to_run_id is None:
                return run_id
            tip = conn.execute(
                sa.select(runs.c.run_id)
                .where(
                    runs.c.correlation_id == row.correlation_id,
                    runs.c.status != RunStatus.CONTINUED.value,
                    runs.c.retried_to_run_id.is_(None),
                )
                .order_by(runs.c.created_at.desc())
                .limit(1)
            ).scalar()
        return tip or run_id

    def describe(self, run_id: str) -> RunInfo | None:
        with self._tx(autocommit=True) as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return None if row is None else run_info(row)

    def history(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self._tx(autocommit=True) as conn:
            return read_history(conn, run_id, after_seq)

    def list_runs(
        self, *, status: RunStatus | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id).limit(limit)
        if status is not None:
            query = query.where(runs.c.status == RunStatus(status).value)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        with self._tx(autocommit=True) as conn:
            return [run_info(row) for row in conn.execute(query)]

    def wait_closed(self, run_id: str, timeout: float | None) -> RunInfo | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        watcher = self._closed_watcher
        with watcher.watching(run_id) if watcher else nullcontext(threading.Event()) as news:
            pause = 0.005
            while True:
                left = 5.0 if deadline is None else max(0.0, deadline - time.monotonic())
                listening = watcher is not None and watcher.listening(min(left, 1.0))
                news.clear()  # before reading: an end committed after the read sets it
                info = self.describe(run_id)
                if info is None or info.status.terminal:
                    return info
                left = 5.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return None
                # Listening, a notification wakes us; otherwise (SQLite, or the listener is
                # reconnecting) the run is read again after a growing pause.
                news.wait(min(5.0 if listening else pause, left))
                pause = min(pause * 2, 0.5)

    # -- the lease holder -------------------------------------------------------------------
    def claim(self, run_id: str, owner: str, ttl: float, after_seq: int = 0) -> Claimed | None:
        def body(conn: Connection) -> Claimed | None:
            held = self._claim_x(conn, run_id, owner, ttl, after_seq, self._clock())
            if held is None:
                return None
            self._write_claim_x(conn, held)
            return held.claimed

        return self._retrying(body)

    def claim_and_commit(
        self,
        run_id: str,
        *,
        owner: str,
        ttl: float,
        after_seq: int = 0,
        decide: Callable[[Claimed], Batch | None],
    ) -> tuple[Claimed | None, Committed | None]:
        def body(conn: Connection) -> tuple[Claimed | None, Committed | None]:
            held = self._claim_x(conn, run_id, owner, ttl, after_seq, self._clock())
            if held is None:
                return None, None
            return held.claimed, self._decided_x(conn, held, decide)

        return self._retrying(body)

    def start_and_claim(
        self,
        run: NewRun,
        *,
        owner: str,
        ttl: float,
        decide: Callable[[Claimed], Batch | None],
    ) -> tuple[bool, Claimed | None, Committed | None]:
        now = self._clock()
        lease = Lease(run_id=run.run_id, owner=owner, token=1, expires_at=now + ttl)
        row, started = run_row(run, now, lease), started_row(run, now)
        claimed = started_claim(row, started, lease)
        step = decide
        if self.postgres:
            # Decided before the run is inserted (and dropped if its id is taken), a first
            # step that only schedules work is written by the insert itself: one statement.
            batch, at = decide(claimed), self._clock()
            if batch is not None and _fits_start(batch, at):
                return self._retrying(
                    lambda conn: self._start_with_step_x(conn, row, started, claimed, batch, at),
                    autocommit=True,
                )

            def decided(_: Claimed) -> Batch | None:
                return batch

            step = decided

        def body(conn: Connection) -> tuple[bool, Claimed | None, Committed | None]:
            if not self._create_run_x(conn, row, [started]):
                return False, None, None
            return True, claimed, self._decided_x(conn, _Held(claimed, unwritten={}), step)

        return self._retrying(body)

    def _start_with_step_x(
        self,
        conn: Connection,
        row: dict[str, Any],
        started: dict[str, Any],
        claimed: Claimed,
        batch: Batch,
        at: float,
    ) -> tuple[bool, Claimed | None, Committed | None]:
        """Insert the run (``row`` and its ``started`` event) as its first step, ``batch``
        decided at ``at``, leaves it."""
        event_rows = [started, *step_events(claimed.run.run_id, 1, batch, at)]
        seq = len(event_rows)
        values = step_values(batch, RunStatus.SUSPENDED, seq, at, pending=False, release=True)
        task_rows = [task_row(t, at) for t in batch.tasks]
        if not self._create_run_x(conn, {**row, **values}, event_rows, task_rows):
            return False, None, None
        return True, claimed, Committed(last_seq=seq, pending_inbox=False, dispatch=[])

    def _decided_x(
        self,
        conn: Connection,
        held: _Held,
        decide: Callable[[Claimed], Batch | None] | None,
        unstored: _Unstored | None = None,
    ) -> Committed | None:
        """What ``decide`` makes of a claim taken in this transaction, committed here with
        the claim's own values; without a batch to commit, the claim alone is written.

        ``unstored`` is the claim's only inbox item, an activity's outcome neither inserted
        nor its task finished yet (see ``_claim_for_delivery_x``): when the batch consumes
        it, the step's write finishes the task; otherwise the task is finished and the item
        inserted here."""
        claimed = held.claimed
        batch = decide(claimed) if decide is not None else None
        finishing = None
        if unstored is not None:
            if batch is not None and unstored.row["id"] in batch.absorbed:
                # Consumed: there is no row to absorb, and the claim's inbox holds nothing
                # that is still pending.
                batch = dataclasses.replace(
                    batch, absorbed=[i for i in batch.absorbed if i != unstored.row["id"]]
                )
                claimed = dataclasses.replace(claimed, inbox=[])
                finishing = unstored.finishing(claimed.run.run_id)
            else:
                self._finish_awaited_x(conn, unstored.finishing(claimed.run.run_id))
                if self._insert_inbox_x(conn, unstored.row) is None:
                    raise NotAwaited  # its dedupe key was taken after all: as if inserted first
        if batch is None:
            self._write_claim_x(conn, held)
            return None
        return self._commit_x(
            conn,
            claimed.lease,
            batch,
            release=True,
            held=claimed,
            finishing=finishing,
            unwritten=held.unwritten,
        )

    def _write_claim_x(self, conn: Connection, held: _Held) -> None:
        if held.unwritten:
            conn.execute(WRITE_RUN, {**held.unwritten, "p_run_id": held.claimed.run.run_id})

    def _finish_awaited_x(self, conn: Connection, params: dict[str, Any]) -> None:
        """End the task an outcome is for (``params``: :func:`finish_params`);
        :class:`NotAwaited` if it has ended already."""
        if conn.execute(FINISH_AWAITED_TASK, params).first() is None:
            raise NotAwaited

    def deliver_and_claim(
        self,
        run_id: str,
        item: InboxItem,
        *,
        task_id: str | None = None,
        owner: str,
        ttl: float,
        after_seq: int = 0,
        decide: Callable[[Claimed], Batch | None] | None = None,
    ) -> tuple[Delivery, Claimed | None, Committed | None]:
        def body(conn: Connection) -> tuple[Delivery, Claimed | None, Committed | None]:
            now = self._clock()
            found = self._claim_for_delivery_x(
                conn, run_id, item, task_id, owner, ttl, now, after_seq
            )
            if found is None:  # the run is not free: deliver only
                return self._deliver_x(conn, run_id, item, task_id, now), None, None
            held, unstored = found
            committed = self._decided_x(conn, held, decide, unstored)
            return Delivery(accepted=True), held.claimed, committed

        try:
            return self._retrying(body)
        except NotAwaited:
            return Delivery(accepted=False), None, None

    def _claim_for_delivery_x(
        self,
        conn: Connection,
        run_id: str,
        item: InboxItem,
        task_id: str | None,
        owner: str,
        ttl: float,
        now: float,
        after_seq: int,
    ) -> tuple[_Held, _Unstored | None] | None:
        """The hot path: a run that the delivery would dispatch is claimed first, in one
        statement, then the awaited task finished and the item inserted. ``None`` when the
        run cannot be claimed now; :class:`NotAwaited`, which rolls the claim back with the
        transaction, when the run does not take the item (a task it does not wait for, a
        dedupe key it has).

        An activity's outcome that is the run's only inbox item is neither inserted nor its
        task finished yet: its row's values (with the id the claim reserved) come back for
        ``_decided_x``, which stores it only if the step does not consume it. The task is
        finished in this transaction either way, and the run's row stays locked until it
        commits, so a second delivery finds the task finished and its dedupe key unused."""
        reserve = self.postgres and task_id is not None
        params = claim_params(run_id, now, after_seq)
        statement = CLAIM_FOR_DELIVERY
        if self.postgres:
            statement = CLAIM_FOR_DELIVERY_RESERVING if reserve else CLAIM_FOR_DELIVERY_READING
        row = conn.execute(statement, params).first()
        if row is None:
            return None
        data = payloads.encode(item.data, f"{item.type} inbox item")
        values = inbox_row(run_id, item, data, now)
        unstored = None
        if reserve and task_id is not None and not row.inbox_pending:
            values["id"] = item_id = int(row.reserved_inbox_id)
            unstored = _Unstored(row=values, task_id=task_id)
        else:
            if task_id is not None:
                self._finish_awaited_x(conn, finish_params(task_id, run_id, item.type, now))
            inserted = self._insert_inbox_x(conn, values)
            if inserted is None:
                raise NotAwaited
            item_id = inserted
        only = None
        if not row.inbox_pending:
            only = [dataclasses.replace(item, id=item_id, at=now, data=payloads.decode(data))]
        held = self._claimed_x(
            conn, row, owner, now, now + ttl, after_seq, inbox=only, dispatched=True
        )
        return held, unstored

    def _claim_x(
        self,
        conn: Connection,
        run_id: str,
        owner: str,
        ttl: float,
        after_seq: int,
        now: float,
        inbox: list[InboxItem] | None = None,
    ) -> _Held | None:
        params = claim_params(run_id, now, after_seq)
        row = conn.execute(CLAIM_READING if self.postgres else CLAIM, params).first()
        if row is None:
            return None
        return self._claimed_x(conn, row, owner, now, now + ttl, after_seq, inbox)

    def _claimed_x(
        self,
        conn: Connection,
        row: Any,
        owner: str,
        now: float,
        expires_at: float,
        after_seq: int,
        inbox: list[InboxItem] | None = None,
        dispatched: bool = False,
    ) -> _Held:
        """What a claim returns, read in the claiming transaction (``inbox``, when the
        caller knows it already), and the values it sets on the run's row, not written yet.
        On Postgres the claim's row carries the history too."""
        run = stored_run(row)
        unwritten = claim_values(owner, run.lease_token + 1, expires_at, now, dispatched)
        vars(run).update(unwritten)  # the run as the claim leaves it
        run_id = run.run_id
        history = claimed_history(run_id, row.history_json) if self.postgres else []
        if after_seq >= run.last_seq:
            history = []  # a caller with a cached replayer up to date needs none
        elif not history or history[-1].seq != run.last_seq:
            # A history read by the claim's own statement is short when the claim waited
            # for the run's row: the statement's snapshot predates the commit it waited
            # for, the row it returns does not. Read again (a new statement sees it all).
            history = read_history(conn, run_id, after_seq)
        if inbox is None:
            pending = conn.execute(PENDING_INBOX, {"p_run_id": run_id})
            inbox = [inbox_item(r) for r in pending]
        lease = Lease(run_id=run_id, owner=owner, token=run.lease_token, expires_at=expires_at)
        claimed = Claimed(
            lease=lease, run=run_info(run), history=history, inbox=inbox, last_seq=run.last_seq
        )
        return _Held(claimed, unwritten)

    # -- facts from outside -----------------------------------------------------------------
    def deliver(self, run_id: str, item: InboxItem, *, task_id: str | None = None) -> Delivery:
        return self._retrying(
            lambda conn: self._deliver_x(conn, run_id, item, task_id, self._clock())
        )

    def _deliver_x(
        self, conn: Connection, run_id: str, item: InboxItem, task_id: str | None, now: float
    ) -> Delivery:
        """Insert one inbox item; the delivery asks for a dispatch when the run is free and
        no replay of it is in flight."""
        row = conn.execute(LOCK_FOR_DELIVERY, {"p_run_id": run_id}).first()
        if row is None or row.status in TERMINAL:
            return Delivery(accepted=False)
        if cancels_queued(RunStatus(row.status), item.type):
            ended = admission.cancel_queued_x(conn, run_id, item.data.get("reason"), now)
            self._close_x(conn, run_id)
            told = self._tell_parent_x(conn, ended, RunStatus.CANCELLED, now)
            return Delivery(accepted=True, dispatch=told.dispatch)
        if task_id is not None:
            # The attempt's outcome and the task's end are one: its dedupe key is the task's.
            params = finish_params(task_id, run_id, item.type, now)
            if conn.execute(FINISH_AWAITED_TASK, params).first() is None:
                return Delivery(accepted=False)  # not an attempt this run is waiting for
        data = payloads.encode(item.data, f"{item.type} inbox item")
        if self._insert_inbox_x(conn, inbox_row(run_id, item, data, now)) is None:
            return Delivery(accepted=False)
        status = delivered_status(RunStatus(row.status), item.type).value
        lease_free = row.lease_owner is None or row.lease_expires_at <= now
        waiting = (RunStatus.BLOCKED.value, RunStatus.QUEUED.value)
        dispatch = status not in waiting and lease_free and row.dispatched_at is None
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if dispatch:
            values["dispatched_at"] = now
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(**values))
        ref = RunRef(run_id=run_id, workflow=row.workflow, version=row.version)
        return Delivery(accepted=True, dispatch=ref if dispatch else None)

    def _insert_inbox_x(self, conn: Connection, values: dict[str, Any]) -> int | None:
        """Insert an inbox row (see :func:`_inbox_values`); its id, or ``None`` when the run
        has that dedupe key already."""
        inserted = conn.execute(self._insert_inbox, values).first()
        return None if inserted is None else int(inserted.id)

    def mark_started(self, task_id: str) -> TaskStart:
        return self._retrying(lambda conn: self._mark_started_x(conn, task_id), autocommit=True)

    def _mark_started_x(self, conn: Connection, task_id: str) -> TaskStart:
        params = {"p_task_id": task_id, "p_now": self._clock()}
        if conn.execute(START_TASK, params).first() is not None:
            return TaskStart.STARTED
        # A copy (rare): a second statement tells a running attempt from an ended one.
        finished = conn.execute(TASK_FINISHED, params).scalar()
        return TaskStart.ENDED if finished is None or finished else TaskStart.RUNNING

    def renew_unstarted(self, task_id: str) -> bool:
        params = {"p_task_id": task_id, "p_now": self._clock()}
        return self._retrying(
            lambda conn: conn.execute(RENEW_TASK, params).first() is not None, autocommit=True
        )


def _fits_start(batch: Batch, now: float) -> bool:
    """Whether a first step writes nothing but events, tasks to send now and the run, left
    waiting (see CREATE_RUN): no timers, children, continuation, end or later task."""
    return (
        batch.status is RunStatus.SUSPENDED
        and not (batch.timers or batch.children or batch.absorbed)
        and batch.continuation is None
        and all(task.available_at <= now for task in batch.tasks)
    )


@dataclasses.dataclass(frozen=True)
class _Held:
    """A claim taken in this transaction, and the values it sets on the run's row (see
    :func:`~orchestrator.journal.sql.rows.claim_values`), written with the step that follows it in
    the transaction, or alone when there is none."""

    claimed: Claimed
    unwritten: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Unstored:
    """An activity's outcome held back from the inbox, and the task it ends."""

    row: dict[str, Any]
    task_id: str

    def finishing(self, run_id: str) -> dict[str, Any]:
        """The parameters that end the task with this outcome."""
        return finish_params(self.task_id, run_id, self.row["type"], self.row["at"])


__all__ = ["SqlJournal"]
