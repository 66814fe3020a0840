"""The journal on SQL: SQLAlchemy Core over psycopg 3 (Postgres) or sqlite3 (embedded).

Each public method owns one transaction; the bodies that other methods reuse take a
connection (``_deliver_x``) so they compose into the caller's commit. Postgres-only features
sit behind the dialect: row locks with ``SKIP LOCKED`` (SQLite serialises writers with
``BEGIN IMMEDIATE`` instead, see :mod:`orchestrator.sql_engine`) and ``LISTEN/NOTIFY``
(SQLite waits with a bounded poll).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from orchestrator import payloads, schema, sql_engine
from orchestrator.errors import LeaseLost
from orchestrator.events import Event, EventType, RunInfo, RunStatus, timestamp
from orchestrator.journal import (
    INHERITED_BY_CONTINUATION,
    Batch,
    Claimed,
    Committed,
    Delivery,
    InboxItem,
    Lease,
    NewRun,
    OutboxTask,
    RunRef,
    cancel_item,
    child_outcome_item,
    timed_out_item,
    timer_key,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

runs, events, inbox, tasks, timers, nodes = (
    schema.runs,
    schema.events,
    schema.inbox,
    schema.tasks,
    schema.timers,
    schema.nodes,
)

CLOSED_CHANNEL = "continuum_closed"
WAKEUP_CHANNEL = "continuum_wakeup"

_TERMINAL = tuple(s.value for s in RunStatus if s.terminal)
_lease_free = sa.or_(runs.c.lease_owner.is_(None), runs.c.lease_expires_at <= sa.bindparam("now"))

# The hot path's statements, built once: executing them only looks up their compiled form,
# where building them anew on every call costs more CPU than Postgres spends running them.
_run_param: sa.BindParameter[str] = sa.bindparam("p_run_id")
_task_param: sa.BindParameter[str] = sa.bindparam("p_task_id")
_LOCK_FOR_DELIVERY = (
    sa.select(
        runs.c.status,
        runs.c.lease_owner,
        runs.c.lease_expires_at,
        runs.c.dispatched_at,
        runs.c.workflow,
        runs.c.version,
    )
    .where(runs.c.run_id == _run_param)
    .with_for_update()
)
_LOCK_FOR_COMMIT = (
    sa.select(runs.c.lease_owner, runs.c.lease_token, runs.c.last_seq, runs.c.status)
    .where(runs.c.run_id == _run_param)
    .with_for_update()
)
_FINISH_AWAITED_TASK = (
    tasks.update()
    .where(tasks.c.task_id == _task_param, tasks.c.run_id == _run_param, sa.not_(tasks.c.finished))
    .values(finished=True)
    .returning(tasks.c.task_id)
)
_START_TASK = (
    tasks.update()
    .where(tasks.c.task_id == _task_param, sa.not_(tasks.c.finished), tasks.c.started_at.is_(None))
    .values(
        started_at=sa.bindparam("p_now"),
        deadline_at=sa.bindparam("p_now") + tasks.c.timeout_seconds,
    )
    .returning(tasks.c.task_id)
)
_PENDING_INBOX = (
    sa.select(inbox)
    .where(inbox.c.run_id == _run_param, sa.not_(inbox.c.absorbed))
    .order_by(inbox.c.id)
)
_ANY_PENDING_INBOX = (
    sa.select(inbox.c.id).where(inbox.c.run_id == _run_param, sa.not_(inbox.c.absorbed)).limit(1)
)
_HISTORY = (
    sa.select(events)
    .where(events.c.run_id == _run_param, events.c.seq > sa.bindparam("p_after"))
    .order_by(events.c.seq)
)


class SqlJournal:
    """A :class:`~orchestrator.journal.Journal` on Postgres or SQLite."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        pool_size: int = 5,
        stall_timeout: float = 5.0,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self.url = sql_engine.normalise_url(url)
        self.engine = sql_engine.create(self.url, pool_size=pool_size, stall_timeout=stall_timeout)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.reconnect_timeout = reconnect_timeout
        self._clock = clock
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_lock = threading.Lock()
        # A forked worker child must not share its parent's sockets.
        os.register_at_fork(after_in_child=self._forget_connections)

    def _forget_connections(self) -> None:
        self.engine.dispose(close=False)
        self._listener = None

    def close(self) -> None:
        """Close pooled connections (and the wake-up listener)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.engine.dispose()

    # -- helpers ----------------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.postgres else sqlite
        return dialect.insert(table)

    def _notify(self, conn: Connection, channel: str, payload: str = "") -> None:
        if self.postgres:
            conn.execute(sa.select(sa.func.pg_notify(channel, payload)))

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _retrying(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one transaction, again while it fails for a passing reason.

        Passing reasons: Postgres broke a deadlock by aborting it (commits that reach across
        runs, a child telling its parent and a parent cancelling its children, lock two run
        rows in opposite orders), or the connection was lost (a server restart, a session
        ended by the server). The aborted side rolled back whole, so running it again is
        safe; one whose COMMIT was lost with its connection may have committed, and running
        it again is refused by the same guards that make every write idempotent (dedupe
        keys, the lease's token). Gives up after ``reconnect_timeout`` seconds.
        """
        deadline = time.monotonic() + self.reconnect_timeout
        pause = 0.01
        while True:
            try:
                with self._tx() as conn:
                    return body(conn)
            except sa_exc.DBAPIError as exc:
                if not _passing(exc) or time.monotonic() + pause > deadline:
                    raise
                log.warning("journal transaction failed (%s); trying again", exc.orig)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, run: NewRun) -> bool:
        now = self._clock()
        with self._tx() as conn:
            return self._insert_run_x(conn, run, now)

    def _insert_run_x(self, conn: Connection, run: NewRun, now: float) -> bool:
        inserted = conn.execute(
            self._insert(runs)
            .values(
                run_id=run.run_id,
                workflow=run.workflow,
                version=run.version,
                status=RunStatus.RUNNABLE.value,
                args=payloads.encode(run.args, "workflow arguments"),
                parent_run_id=run.parent_run_id,
                parent_command_id=run.parent_command_id,
                parent_close_policy=run.parent_close_policy,
                correlation_id=run.correlation_id or run.run_id,
                continued_from_run_id=run.continued_from_run_id,
                lease_token=0,
                last_seq=1,
                dispatched_at=now,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["run_id"])
            .returning(runs.c.run_id)
        ).first()
        if inserted is None:
            return False
        data = {"workflow": run.workflow, "version": run.version, "args": run.args}
        conn.execute(
            events.insert().values(
                run_id=run.run_id,
                seq=1,
                type=EventType.RUN_STARTED.value,
                data=payloads.encode(data, "run_started"),
                at=now,
            )
        )
        return True

    def resolve_tip(self, run_id: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(runs.c.correlation_id, runs.c.status).where(runs.c.run_id == run_id)
            ).first()
            if row is None:
                return None
            if row.status != RunStatus.CONTINUED.value:
                return run_id
            tip = conn.execute(
                sa.select(runs.c.run_id)
                .where(
                    runs.c.correlation_id == row.correlation_id,
                    runs.c.status != RunStatus.CONTINUED.value,
                )
                .order_by(runs.c.created_at.desc())
                .limit(1)
            ).scalar()
        return tip or run_id

    def describe(self, run_id: str) -> RunInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return None if row is None else _run_info(row)

    def history(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self.engine.connect() as conn:
            return _history(conn, run_id, after_seq)

    def list_runs(
        self, *, status: RunStatus | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id).limit(limit)
        if status is not None:
            query = query.where(runs.c.status == RunStatus(status).value)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        with self.engine.connect() as conn:
            return [_run_info(row) for row in conn.execute(query)]

    def wait_closed(self, run_id: str, timeout: float | None) -> RunInfo | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.postgres:
            return self._poll_closed(run_id, deadline)
        with psycopg.connect(self._conninfo(), autocommit=True) as conn:
            conn.execute(f"LISTEN {CLOSED_CHANNEL}")
            while True:
                info = self.describe(run_id)
                if info is None or info.status.terminal:
                    return info
                wait = 5.0 if deadline is None else min(5.0, deadline - time.monotonic())
                if wait <= 0:
                    return None
                # A notification is only a hint: the loop re-reads the run either way,
                # which also covers a notification lost with a dropped connection.
                for note in conn.notifies(timeout=wait):
                    if note.payload == run_id:
                        break

    def _poll_closed(self, run_id: str, deadline: float | None) -> RunInfo | None:
        pause = 0.005
        while True:
            info = self.describe(run_id)
            if info is None or info.status.terminal:
                return info
            if deadline is not None and time.monotonic() >= deadline:
                return None
            remaining = 0.5 if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(pause, remaining)))
            pause = min(pause * 2, 0.5)

    def _conninfo(self) -> str:
        url = self.engine.url
        params = url.translate_connect_args(username="user", database="dbname")
        params.update({k: v for k, v in url.query.items() if isinstance(v, str)})
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})

    # -- the lease holder -------------------------------------------------------------------
    def claim(self, run_id: str, owner: str, ttl: float, after_seq: int = 0) -> Claimed | None:
        return self._retrying(
            lambda conn: self._claim_x(conn, run_id, owner, ttl, after_seq, self._clock())
        )

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
            claim = (owner, ttl)
            claimed = self._deliver_or_claim_x(
                conn, run_id, item, task_id, now, claim_for=claim, after_seq=after_seq
            )
            if not isinstance(claimed, Claimed):
                return claimed, None, None
            batch = decide(claimed) if decide is not None else None
            if batch is None:
                return Delivery(accepted=True), claimed, None
            committed = self._commit_x(conn, claimed.lease, batch, release=True, held=claimed)
            return Delivery(accepted=True), claimed, committed

        return self._retrying(body)

    def _claim_x(
        self, conn: Connection, run_id: str, owner: str, ttl: float, after_seq: int, now: float
    ) -> Claimed | None:
        row = conn.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .where(runs.c.status.in_(schema.ACTIVE_STATUSES))
            .where(_lease_free)
            .values(
                lease_owner=owner,
                lease_token=runs.c.lease_token + 1,
                lease_expires_at=now + ttl,
                status=RunStatus.RUNNING.value,
                updated_at=now,
            )
            .returning(*runs.c),
            {"now": now},
        ).first()
        if row is None:
            return None
        return self._claimed_x(conn, row, owner, now + ttl, after_seq)

    def _claimed_x(
        self, conn: Connection, row: Any, owner: str, expires_at: float, after_seq: int
    ) -> Claimed:
        """What a claim returns, read in the claiming transaction."""
        run_id = row.run_id
        # A caller with a cached replayer up to date needs no history at all.
        history = [] if after_seq >= row.last_seq else _history(conn, run_id, after_seq)
        pending = conn.execute(_PENDING_INBOX, {"p_run_id": run_id})
        items = [_inbox_item(r) for r in pending]
        lease = Lease(run_id=run_id, owner=owner, token=row.lease_token, expires_at=expires_at)
        return Claimed(
            lease=lease, run=_run_info(row), history=history, inbox=items, last_seq=row.last_seq
        )

    def commit(self, lease: Lease, batch: Batch, *, release: bool = True) -> Committed:
        return self._retrying(lambda conn: self._commit_x(conn, lease, batch, release))

    def _commit_x(
        self,
        conn: Connection,
        lease: Lease,
        batch: Batch,
        release: bool,
        held: Claimed | None = None,
    ) -> Committed:
        """``held`` is a claim made earlier in this transaction: the run's row is locked by
        it already, and no inbox item can have arrived since (a delivery locks the row)."""
        now = self._clock()
        if held is None:
            row = self._locked_run(conn, lease)
            seq, prior = row.last_seq, row.status
        else:
            seq, prior = held.last_seq, RunStatus.RUNNING.value
        if batch.events:
            rows = []
            for event in batch.events:
                seq += 1
                rows.append(
                    {
                        "run_id": lease.run_id,
                        "seq": seq,
                        "type": EventType(event.type).value,
                        "command_id": event.command_id,
                        "attempt": event.attempt,
                        "data": payloads.encode(event.data, f"{event.type} event"),
                        "at": now if event.at is None else event.at,
                    }
                )
            conn.execute(events.insert(), rows)
        if batch.absorbed:
            conn.execute(
                inbox.update()
                .where(inbox.c.run_id == lease.run_id, inbox.c.id.in_(list(batch.absorbed)))
                .values(absorbed=True)
            )
        if batch.tasks:
            conn.execute(tasks.insert(), [_task_row(t, now) for t in batch.tasks])
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
                dispatch.append(_ref_of(child))
        status = RunStatus(batch.status or prior)
        values: dict[str, Any] = {"last_seq": seq, "updated_at": now}
        if batch.continuation is not None:
            if self._insert_run_x(conn, batch.continuation, now):
                dispatch.append(_ref_of(batch.continuation))
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
            self._drop_leftovers(conn, lease.run_id)
            pending = False
        elif held is None:
            pending = self._has_pending_inbox(conn, lease.run_id)
        else:
            absorbed = set(batch.absorbed)
            pending = any(item.id not in absorbed for item in held.inbox)
        if release:
            values.update(lease_owner=None, lease_expires_at=None)
            if status is RunStatus.BLOCKED:
                values["dispatched_at"] = now
            elif pending or status is RunStatus.RUNNING:
                values["status"] = RunStatus.RUNNABLE.value
            else:
                values["dispatched_at"] = None
        ended = conn.execute(
            runs.update().where(runs.c.run_id == lease.run_id).values(**values).returning(*runs.c)
        ).one()
        cancelled = any(e.type == EventType.CANCEL_REQUESTED for e in batch.events)
        if cancelled or (status.terminal and status is not RunStatus.CONTINUED):
            reason = batch.reason if status.terminal else _cancel_reason(batch)
            dispatch += self._cancel_children_x(conn, lease.run_id, reason, now)
        if status.terminal and status is not RunStatus.CONTINUED and ended.parent_run_id:
            info = _run_info(ended)
            item = child_outcome_item(info, status)
            _collect(dispatch, self._deliver_x(conn, ended.parent_run_id, item, None, now))
        if status.terminal:
            self._notify(conn, CLOSED_CHANNEL, lease.run_id)
        if batch.timers or any(t.available_at > now for t in batch.tasks):
            self._notify(conn, WAKEUP_CHANNEL)
        return Committed(last_seq=seq, pending_inbox=pending, dispatch=dispatch)

    def _cancel_children_x(
        self, conn: Connection, run_id: str, reason: str | None, now: float
    ) -> list[RunRef]:
        children = conn.execute(
            sa.select(runs.c.run_id).where(
                runs.c.parent_run_id == run_id,
                runs.c.parent_close_policy == "cancel",
                runs.c.status.not_in(_TERMINAL),
            )
        ).scalars()
        refs: list[RunRef] = []
        item = cancel_item(reason or f"parent {run_id} was cancelled or ended")
        for child in list(children):
            _collect(refs, self._deliver_x(conn, child, item, None, now))
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
        row = conn.execute(_LOCK_FOR_COMMIT, {"p_run_id": lease.run_id}).first()
        if row is None or row.lease_owner != lease.owner or row.lease_token != lease.token:
            raise LeaseLost(lease.run_id, lease.owner, lease.token)
        return row

    def _has_pending_inbox(self, conn: Connection, run_id: str) -> bool:
        return conn.execute(_ANY_PENDING_INBOX, {"p_run_id": run_id}).first() is not None

    def _drop_leftovers(self, conn: Connection, run_id: str) -> None:
        conn.execute(inbox.delete().where(inbox.c.run_id == run_id))
        conn.execute(timers.delete().where(timers.c.run_id == run_id))
        conn.execute(
            tasks.update()
            .where(tasks.c.run_id == run_id, sa.not_(tasks.c.finished))
            .values(finished=True)
        )

    # -- facts from outside -----------------------------------------------------------------
    def deliver(self, run_id: str, item: InboxItem, *, task_id: str | None = None) -> Delivery:
        return self._retrying(
            lambda conn: self._deliver_x(conn, run_id, item, task_id, self._clock())
        )

    def _deliver_x(
        self, conn: Connection, run_id: str, item: InboxItem, task_id: str | None, now: float
    ) -> Delivery:
        delivery = self._deliver_or_claim_x(conn, run_id, item, task_id, now)
        assert isinstance(delivery, Delivery)
        return delivery

    def _deliver_or_claim_x(
        self,
        conn: Connection,
        run_id: str,
        item: InboxItem,
        task_id: str | None,
        now: float,
        claim_for: tuple[str, float] | None = None,
        after_seq: int = 0,
    ) -> Delivery | Claimed:
        """Insert one inbox item. With ``claim_for`` (owner, ttl), a run that would be
        dispatched is claimed instead, in the same row update, and the claim is returned."""
        row = conn.execute(_LOCK_FOR_DELIVERY, {"p_run_id": run_id}).first()
        if row is None or row.status in _TERMINAL:
            return Delivery(accepted=False)
        if task_id is not None:
            # The attempt's outcome and the task's end are one: its dedupe key is the task's.
            params = {"p_task_id": task_id, "p_run_id": run_id}
            if conn.execute(_FINISH_AWAITED_TASK, params).first() is None:
                return Delivery(accepted=False)  # not an attempt this run is waiting for
        inserted = conn.execute(
            self._insert(inbox)
            .values(
                run_id=run_id,
                dedupe_key=item.dedupe_key,
                type=EventType(item.type).value,
                command_id=item.command_id,
                attempt=item.attempt,
                data=payloads.encode(item.data, f"{item.type} inbox item"),
                at=now,
                absorbed=False,
            )
            .on_conflict_do_nothing(index_elements=["run_id", "dedupe_key"])
            .returning(inbox.c.id)
        ).first()
        if inserted is None:
            return Delivery(accepted=False)
        status = row.status
        if status == RunStatus.SUSPENDED.value:
            status = RunStatus.RUNNABLE.value
        lease_free = row.lease_owner is None or row.lease_expires_at <= now
        dispatch = status != RunStatus.BLOCKED.value and lease_free and row.dispatched_at is None
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if dispatch:
            values["dispatched_at"] = now
        if dispatch and claim_for is not None:
            owner, ttl = claim_for
            values.update(
                lease_owner=owner,
                lease_token=runs.c.lease_token + 1,
                lease_expires_at=now + ttl,
                status=RunStatus.RUNNING.value,
            )
            claimed = conn.execute(
                runs.update().where(runs.c.run_id == run_id).values(**values).returning(*runs.c)
            ).one()
            return self._claimed_x(conn, claimed, owner, now + ttl, after_seq)
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(**values))
        ref = RunRef(run_id=run_id, workflow=row.workflow, version=row.version)
        return Delivery(accepted=True, dispatch=ref if dispatch else None)

    def mark_started(self, task_id: str) -> bool:
        return self._retrying(lambda conn: self._mark_started_x(conn, task_id))

    def _mark_started_x(self, conn: Connection, task_id: str) -> bool:
        params = {"p_task_id": task_id, "p_now": self._clock()}
        return conn.execute(_START_TASK, params).first() is not None

    # -- the dispatcher ---------------------------------------------------------------------
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
                _collect(refs, self._deliver_x(conn, run_id, item, None, now))
        return refs

    def expire_tasks(self, limit: int = 100) -> list[RunRef]:
        now = self._clock()
        with self._tx() as conn:
            expired = conn.execute(
                sa.select(
                    tasks.c.task_id,
                    tasks.c.run_id,
                    tasks.c.command_id,
                    tasks.c.attempt,
                    tasks.c.kind,
                    tasks.c.task_name,
                    tasks.c.timeout_seconds,
                )
                .join(runs, runs.c.run_id == tasks.c.run_id)
                .where(sa.not_(tasks.c.finished), tasks.c.deadline_at <= now)
                .order_by(tasks.c.deadline_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=runs)
            ).all()
            refs: list[RunRef] = []
            for task in expired:
                item = timed_out_item(
                    task.command_id, task.attempt, task.kind, task.task_name, task.timeout_seconds
                )
                delivery = self._deliver_x(conn, task.run_id, item, task.task_id, now)
                conn.execute(
                    tasks.update().where(tasks.c.task_id == task.task_id).values(finished=True)
                )
                _collect(refs, delivery)
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
        return [_outbox_task(r) for r in rows]

    def take_runnable(
        self, *, redispatch_after: float, limit: int = 100, node_ttl: float | None = None
    ) -> list[RunRef]:
        now = self._clock()
        needs_replay = sa.or_(
            sa.and_(runs.c.status == RunStatus.RUNNABLE.value, _lease_free),
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
        with self.engine.connect() as conn:
            timer = conn.execute(sa.select(sa.func.min(timers.c.fire_at))).scalar()
            task = conn.execute(
                sa.select(sa.func.min(tasks.c.available_at)).where(
                    sa.not_(tasks.c.finished), tasks.c.published_at.is_(None)
                )
            ).scalar()
        due = [t for t in (timer, task) if t is not None]
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
                    self._listener = psycopg.connect(self._conninfo(), autocommit=True)
                    self._listener.execute(f"LISTEN {WAKEUP_CHANNEL}")
                for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                    break
            except psycopg.OperationalError:
                self._listener = None
                time.sleep(min(timeout, 1.0))


_CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
#: Connection exceptions, the server shutting down or not yet up, a session it ended.
_LOST = ("08", "57P01", "57P02", "57P03", "25P03")


def _passing(exc: sa_exc.DBAPIError) -> bool:
    """Whether a failed transaction may succeed when run again (see ``_retrying``)."""
    if exc.connection_invalidated or isinstance(exc.orig, _CONFLICTS):
        return True
    if not isinstance(exc.orig, psycopg.OperationalError):
        return False
    sqlstate = exc.orig.sqlstate
    return sqlstate is None or sqlstate.startswith(_LOST)


def _ref_of(run: NewRun) -> RunRef:
    return RunRef(run_id=run.run_id, workflow=run.workflow, version=run.version)


def _cancel_reason(batch: Batch) -> str | None:
    for event in batch.events:
        if event.type == EventType.CANCEL_REQUESTED:
            reason = event.data.get("reason")
            return None if reason is None else str(reason)
    return None


def _collect(refs: list[RunRef], delivery: Delivery) -> None:
    if delivery.dispatch is not None and delivery.dispatch not in refs:
        refs.append(delivery.dispatch)


def _history(conn: Connection, run_id: str, after_seq: int) -> list[Event]:
    rows = conn.execute(_HISTORY, {"p_run_id": run_id, "p_after": after_seq})
    return [
        Event(
            run_id=r.run_id,
            seq=r.seq,
            type=EventType(r.type),
            command_id=r.command_id,
            attempt=r.attempt,
            data=payloads.decode(r.data),
            at=timestamp(r.at),
        )
        for r in rows
    ]


def _run_info(row: Row[Any]) -> RunInfo:
    return RunInfo(
        run_id=row.run_id,
        workflow=row.workflow,
        version=row.version,
        status=RunStatus(row.status),
        result=payloads.decode(row.result),
        error=None if row.error is None else json.loads(row.error),
        reason=row.reason,
        parent_run_id=row.parent_run_id,
        parent_command_id=row.parent_command_id,
        correlation_id=row.correlation_id,
        continued_from_run_id=row.continued_from_run_id,
        continued_to_run_id=row.continued_to_run_id,
        created_at=timestamp(row.created_at),
        closed_at=None if row.closed_at is None else timestamp(row.closed_at),
        args=payloads.decode(row.args),
        parent_close_policy=row.parent_close_policy,
    )


def _inbox_item(row: Row[Any]) -> InboxItem:
    return InboxItem(
        dedupe_key=row.dedupe_key,
        type=EventType(row.type),
        command_id=row.command_id,
        attempt=row.attempt,
        data=payloads.decode(row.data),
        id=row.id,
        at=row.at,
    )


def _task_row(task: OutboxTask, now: float) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "run_id": task.run_id,
        "command_id": task.command_id,
        "attempt": task.attempt,
        "kind": task.kind,
        "task_name": task.task_name,
        "args": payloads.encode(task.args, f"arguments of {task.task_name}"),
        "kwargs": payloads.encode(task.kwargs, f"keyword arguments of {task.task_name}"),
        "queue": task.queue,
        "timeout_seconds": task.timeout_seconds,
        "target_activity_id": task.target_activity_id,
        "available_at": task.available_at,
        "created_at": now,
        "published_at": now if task.available_at <= now else None,
        "finished": False,
    }


def _outbox_task(row: Row[Any]) -> OutboxTask:
    return OutboxTask(
        task_id=row.task_id,
        run_id=row.run_id,
        command_id=row.command_id,
        attempt=row.attempt,
        task_name=row.task_name,
        args=payloads.decode(row.args),
        kwargs=payloads.decode(row.kwargs),
        kind=row.kind,
        queue=row.queue,
        available_at=row.available_at,
        timeout_seconds=row.timeout_seconds,
        target_activity_id=row.target_activity_id,
    )


__all__ = ["SqlJournal"]
