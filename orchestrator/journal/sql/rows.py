"""How the journal's records map to SQL rows, and the statements of its hot path.

The hot path's statements are built once: executing them only looks up their compiled
form, where building them anew on every call costs more CPU than Postgres spends running
them. The functions turn rows into the journal's records and back.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Row

from orchestrator.journal.protocol import Claimed, Lease, RunRef
from orchestrator.journal.sql import schema
from orchestrator.model import limits, payloads
from orchestrator.model.deadlines import deadline
from orchestrator.model.events import Event, EventType, RunInfo, RunStatus, timestamp
from orchestrator.model.records import InboxItem, NewRun, OutboxTask

runs, events, inbox, tasks, timers, nodes = (
    schema.runs,
    schema.events,
    schema.inbox,
    schema.tasks,
    schema.timers,
    schema.nodes,
)

TERMINAL = tuple(s.value for s in RunStatus if s.terminal)
LEASE_FREE = sa.or_(runs.c.lease_owner.is_(None), runs.c.lease_expires_at <= sa.bindparam("now"))

_run_param: sa.BindParameter[str] = sa.bindparam("p_run_id")
_task_param: sa.BindParameter[str] = sa.bindparam("p_task_id")
LOCK_FOR_DELIVERY = (
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


def claim_values(
    owner: str, token: int, expires_at: float, now: float, dispatched: bool = False
) -> dict[str, Any]:
    """What a claim sets on the run's row: lease ``token`` for ``owner`` until ``expires_at``
    (and, for a delivery's claim, a replay in flight: ``dispatched``).

    A claim locks and reads the row (CLAIM and its variants) and writes these values with the
    step it commits in the same transaction (or with WRITE_RUN when it commits none): one new
    version of the row per step, not two. A step that leaves ``status`` as it found it (an
    outcome whose run goes on waiting) then changes no indexed column, so Postgres can make
    it a HOT update, which writes none of the table's indexes."""
    return {
        "lease_owner": owner,
        "lease_token": token,
        "lease_expires_at": expires_at,
        "status": RunStatus.RUNNING.value,
        "updated_at": now,
        **({"dispatched_at": now} if dispatched else {}),
    }


#: The run's history after ``p_after``, as a JSON array of rows (see :func:`claimed_history`).
#: Only a hint: read in the statement's snapshot, it lacks what a transaction the claim waited
#: for committed, where the row the claim returns has it; its reader checks it against the
#: row's ``last_seq``. There is no such check for an inbox, which is read apart.
_event_json = sa.func.json_build_array(
    events.c.seq, events.c.type, events.c.command_id, events.c.attempt, events.c.data, events.c.at
)
_HISTORY_JSON = (
    sa.select(sa.func.json_agg(postgresql.aggregate_order_by(_event_json, events.c.seq)))
    .where(events.c.run_id == runs.c.run_id, events.c.seq > sa.bindparam("p_after"))
    .correlate(runs)
    .scalar_subquery()
    .label("history_json")
)
#: On Postgres, the hot path's statements return the run's row as one JSON object (read by
#: :func:`stored_run`): the driver and SQLAlchemy spend work on each column of a result, on
#: every execution, and a run has twenty.
RUN_JSON = sa.func.row_to_json(sa.literal_column(runs.name)).label("run_json")


def one_of(column: sa.Column[Any], values: tuple[str, ...]) -> sa.ColumnElement[bool]:
    """``column IN values`` with the (constant) values written into the statement: an IN of
    bound values is rendered again on every execution."""
    return column.in_([sa.literal_column(f"'{value}'") for value in values])


def _locking(select: sa.Select[Any]) -> sa.Select[Any]:
    """``select`` locking the run's row as an UPDATE of it would (the lock a claim's write
    takes; SQLite's transactions hold the whole database already)."""
    return select.with_for_update(key_share=True)


_INBOX_PENDING = (
    sa.exists().where(inbox.c.run_id == runs.c.run_id, sa.not_(inbox.c.absorbed))
).label("inbox_pending")
#: The hot path's claim: a run that a delivery would dispatch (not blocked, not ended, lease
#: free, no replay in flight) is locked and read, with whether other inbox items wait. Its
#: claim also sets ``dispatched_at``.
_DELIVERABLE = (
    runs.c.run_id == _run_param,
    one_of(
        runs.c.status,
        (RunStatus.RUNNABLE.value, RunStatus.RUNNING.value, RunStatus.SUSPENDED.value),
    ),
    LEASE_FREE,
    runs.c.dispatched_at.is_(None),
)
CLAIM_FOR_DELIVERY = _locking(sa.select(*runs.c, _INBOX_PENDING).where(*_DELIVERABLE))
#: On Postgres, the claim for a delivery returns the history after ``p_after`` too (the
#: claimer's cached replayer may be behind, or in another process).
CLAIM_FOR_DELIVERY_READING = _locking(
    sa.select(RUN_JSON, _INBOX_PENDING, _HISTORY_JSON).where(*_DELIVERABLE)
)
#: On Postgres, the claim for an activity's outcome also reserves the outcome's inbox id: an
#: outcome that the step it lands in consumes is then never stored in the inbox (its task,
#: finished in the same transaction, is what keeps a second copy out).
CLAIM_FOR_DELIVERY_RESERVING = CLAIM_FOR_DELIVERY_READING.add_columns(
    sa.func.nextval(sa.func.pg_get_serial_sequence("inbox", "id")).label("reserved_inbox_id")
)
#: A replay's claim: a run that is active and whose lease is free is locked and read.
_CLAIMABLE = (
    runs.c.run_id == _run_param,
    one_of(runs.c.status, schema.ACTIVE_STATUSES),
    LEASE_FREE,
)
CLAIM = _locking(sa.select(*runs.c).where(*_CLAIMABLE))
#: On Postgres, the claim also returns the history the claimer reads next.
CLAIM_READING = _locking(sa.select(RUN_JSON, _HISTORY_JSON).where(*_CLAIMABLE))
#: The columns a new run is inserted with (see :func:`run_row`; the rest take defaults).
NEW_RUN_COLUMNS = (
    "run_id",
    "workflow",
    "version",
    "status",
    "args",
    "result",
    "error",
    "reason",
    "parent_run_id",
    "parent_command_id",
    "parent_close_policy",
    "correlation_id",
    "continued_from_run_id",
    "lease_owner",
    "lease_token",
    "lease_expires_at",
    "last_seq",
    "dispatched_at",
    "created_at",
    "updated_at",
    "concurrency_key",
    "concurrency_limit",
    "deadline_at",
    "retried_from_run_id",
    "trace_context",
)


LOCK_FOR_COMMIT = (
    sa.select(runs.c.lease_owner, runs.c.lease_token, runs.c.last_seq, runs.c.status)
    .where(runs.c.run_id == _run_param)
    .with_for_update()
)
FINISH_AWAITED_TASK = (
    tasks.update()
    .where(tasks.c.task_id == _task_param, tasks.c.run_id == _run_param, sa.not_(tasks.c.finished))
    .values(
        finished=True, outcome=sa.bindparam("p_outcome"), finished_at=sa.bindparam("p_finished_at")
    )
    .returning(tasks.c.task_id)
)
_unstarted_task = (
    tasks.update()
    .where(tasks.c.task_id == _task_param, sa.not_(tasks.c.finished), tasks.c.started_at.is_(None))
    .returning(tasks.c.task_id)
)
START_TASK = _unstarted_task.values(
    started_at=sa.bindparam("p_now"),
    deadline_at=sa.bindparam("p_now") + tasks.c.timeout_seconds,
    heartbeat_deadline_at=sa.bindparam("p_now") + tasks.c.heartbeat_timeout,
)
RENEW_TASK = _unstarted_task.values(published_at=sa.bindparam("p_now"))
TASK_FINISHED = sa.select(tasks.c.finished).where(tasks.c.task_id == _task_param)
#: The values (SET columns) of WRITE_RUN, UPDATE_RUN, WRITE_STEP, WRITE_STEP_FINISHING and
#: ABSORB come from each call's parameters.
WRITE_RUN = runs.update().where(runs.c.run_id == _run_param)
UPDATE_RUN = WRITE_RUN.returning(*runs.c)
#: The columns of a step's new events and tasks (see :func:`task_row`).
EVENT_COLUMNS = ("run_id", "seq", "type", "command_id", "attempt", "data", "at")
TASK_COLUMNS = (
    "task_id",
    "run_id",
    "command_id",
    "attempt",
    "kind",
    "task_name",
    "args",
    "kwargs",
    "queue",
    "timeout_seconds",
    "target_activity_id",
    "available_at",
    "created_at",
    "published_at",
    "finished",
    "heartbeat_timeout",
)


def _insert_json(
    table: sa.Table,
    columns: tuple[str, ...],
    param: str,
    only_if: sa.ColumnElement[bool] | None = None,
) -> sa.CTE:
    """An INSERT of the rows given as one JSON array of objects (parameter ``param``), none
    unless ``only_if`` holds, when given.

    Its shape does not depend on how many rows it inserts, so it is compiled once, and one
    JSON string costs far less to encode than an array per column. The rows' values are
    read as unbounded types, so the insert into the table's columns is what checks them (an
    over-long value is refused, as a plain INSERT refuses it).
    """

    def unbounded(column: sa.Column[Any]) -> Any:
        return sa.String() if isinstance(column.type, sa.String) else column.type

    rows = (
        sa.func.json_to_recordset(sa.cast(sa.bindparam(param, type_=sa.Text), postgresql.JSON))
        .table_valued(*[sa.column(name, unbounded(table.c[name])) for name in columns])
        .render_derived(with_types=True)
    )
    select = sa.select(*[rows.c[name] for name in columns])
    if only_if is not None:
        select = select.where(only_if)
    return table.insert().from_select(list(columns), select).cte(f"new_{table.name}")


#: On Postgres, a step's events and tasks are inserted by the run's update itself: one round
#: trip instead of three. Parameters: UPDATE_RUN's, and :func:`step_rows`.
WRITE_STEP = (
    WRITE_RUN.returning(RUN_JSON)
    .add_cte(_insert_json(events, EVENT_COLUMNS, "p_events"))
    .add_cte(_insert_json(tasks, TASK_COLUMNS, "p_tasks"))
)


_finished_task = FINISH_AWAITED_TASK.cte("finished_task")
#: The same, ending the task whose outcome the step consumes (``task_finished``: whether it
#: did; a second copy of the outcome finds the task ended already).
WRITE_STEP_FINISHING = WRITE_STEP.add_cte(_finished_task).returning(
    sa.select(sa.func.count()).select_from(_finished_task).scalar_subquery().label("task_finished")
)


_new_run = (
    postgresql.insert(runs)
    .values({name: sa.bindparam(name) for name in NEW_RUN_COLUMNS})
    .on_conflict_do_nothing(index_elements=["run_id"])
    .returning(runs.c.run_id)
    .cte("new_run")
)
_run_created = sa.exists(sa.select(_new_run.c.run_id))
#: On Postgres, a run with its first events (its ``run_started``, and the step a start takes
#: with it, if any) and tasks, in one statement that needs no transaction around it; nothing
#: is written when the run id is taken. Parameters: NEW_RUN_COLUMNS, and :func:`step_rows`.
CREATE_RUN = (
    sa.select(_new_run.c.run_id)
    .add_cte(_insert_json(events, EVENT_COLUMNS, "p_events", only_if=_run_created))
    .add_cte(_insert_json(tasks, TASK_COLUMNS, "p_tasks", only_if=_run_created))
)


def step_rows(event_rows: list[dict[str, Any]], task_rows: list[dict[str, Any]]) -> dict[str, str]:
    """WRITE_STEP's parameters for these rows."""
    return {
        "p_events": json.dumps(event_rows, allow_nan=False),
        "p_tasks": json.dumps(task_rows, allow_nan=False),
    }


#: The children of a run that are cancelled when it ends (or is cancelled).
_children_to_cancel = sa.and_(
    runs.c.parent_run_id == _run_param,
    runs.c.parent_close_policy == "cancel",
    runs.c.status.not_in(TERMINAL),
)
CHILDREN_TO_CANCEL = sa.select(runs.c.run_id).where(_children_to_cancel)
#: On Postgres, what an ended run leaves behind is dropped (its inbox and timers deleted, its
#: tasks marked finished so late outcomes are refused), its waiters notified, and the children
#: it may have to cancel read, in one statement. Parameters: ``p_run_id``, ``p_channel``.
CLOSE_RUN = (
    sa.select(
        sa.func.pg_notify(sa.bindparam("p_channel"), _run_param).label("notified"),
        sa.select(sa.func.array_agg(runs.c.run_id))
        .where(_children_to_cancel)
        .scalar_subquery()
        .label("children"),
    )
    .add_cte(inbox.delete().where(inbox.c.run_id == _run_param).cte("dropped_inbox"))
    .add_cte(timers.delete().where(timers.c.run_id == _run_param).cte("dropped_timers"))
    .add_cte(
        tasks.update()
        .where(tasks.c.run_id == _run_param, sa.not_(tasks.c.finished))
        .values(finished=True)
        .cte("finished_tasks")
    )
)
ABSORB = inbox.update().where(
    inbox.c.run_id == _run_param, inbox.c.id.in_(sa.bindparam("p_ids", expanding=True))
)
PENDING_INBOX = (
    sa.select(inbox)
    .where(inbox.c.run_id == _run_param, sa.not_(inbox.c.absorbed))
    .order_by(inbox.c.id)
)
ANY_PENDING_INBOX = (
    sa.select(inbox.c.id).where(inbox.c.run_id == _run_param, sa.not_(inbox.c.absorbed)).limit(1)
)
HISTORY = (
    sa.select(events)
    .where(events.c.run_id == _run_param, events.c.seq > sa.bindparam("p_after"))
    .order_by(events.c.seq)
)


def ref_of(run: NewRun) -> RunRef:
    return RunRef(run_id=run.run_id, workflow=run.workflow, version=run.version)


def _event(
    run_id: str,
    seq: int,
    type_: str,
    command_id: int | None,
    attempt: int | None,
    data: str,
    at: float,
) -> Event:
    """An event from its stored columns."""
    return Event(
        run_id=run_id,
        seq=seq,
        type=EventType(type_),
        command_id=command_id,
        attempt=attempt,
        data=payloads.decode(data),
        at=timestamp(at),
    )


def read_history(conn: Connection, run_id: str, after_seq: int) -> list[Event]:
    return [event_of(r) for r in conn.execute(HISTORY, {"p_run_id": run_id, "p_after": after_seq})]


def event_of(row: Row[Any]) -> Event:
    """An event from a row of the ``events`` table."""
    return _event(row.run_id, row.seq, row.type, row.command_id, row.attempt, row.data, row.at)


def claim_params(run_id: str, now: float, after_seq: int) -> dict[str, Any]:
    """The parameters of the claims (CLAIM and CLAIM_FOR_DELIVERY, and their variants)."""
    return {"p_run_id": run_id, "now": now, "p_after": after_seq}


def claimed_history(run_id: str, rows: list[list[Any]] | None) -> list[Event]:
    """The events of a claim's ``history_json`` (rows of seq, type, command_id, attempt,
    data, at)."""
    return [_event(run_id, *row) for row in rows or ()]


def stored_run(row: Row[Any]) -> SimpleNamespace:
    """The run's columns of a row that returned them: from its ``run_json`` (see RUN_JSON)
    where it has one, else its own."""
    run = getattr(row, "run_json", None)
    if run is None:
        run = {column.name: row._mapping[column.name] for column in runs.c}
    return SimpleNamespace(**run)


def run_info(row: Row[Any] | SimpleNamespace) -> RunInfo:
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
        retried_from_run_id=row.retried_from_run_id,
        retried_to_run_id=row.retried_to_run_id,
        trace_context=None if row.trace_context is None else json.loads(row.trace_context),
    )


def inbox_item(row: Row[Any]) -> InboxItem:
    return InboxItem(
        dedupe_key=row.dedupe_key,
        type=EventType(row.type),
        command_id=row.command_id,
        attempt=row.attempt,
        data=payloads.decode(row.data),
        id=row.id,
        at=row.at,
    )


def run_row(run: NewRun, now: float, lease: Lease | None = None) -> dict[str, Any]:
    """The row of a new run: the columns of NEW_RUN_COLUMNS. A run inserted with its
    ``lease`` is ``running``, its first step under way (it needs no dispatch); one under a
    concurrency limit starts ``queued`` (see :func:`~orchestrator.model.limits.starts_queued`)."""
    queued = lease is None and limits.starts_queued(run)
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "version": run.version,
        "status": (RunStatus.RUNNING if lease else RunStatus.RUNNABLE).value,
        "args": payloads.encode(run.args, "workflow arguments"),
        "result": None,
        "error": None,
        "reason": None,
        "parent_run_id": run.parent_run_id,
        "parent_command_id": run.parent_command_id,
        "parent_close_policy": run.parent_close_policy,
        "correlation_id": run.correlation_id or run.run_id,
        "continued_from_run_id": run.continued_from_run_id,
        "lease_owner": lease.owner if lease else None,
        "lease_token": lease.token if lease else 0,
        "lease_expires_at": lease.expires_at if lease else None,
        "last_seq": 1,
        "dispatched_at": None if lease else now,
        "created_at": now,
        "updated_at": now,
        "concurrency_key": run.concurrency_key,
        "concurrency_limit": run.concurrency_limit,
        **(limits.queued_columns(run) if queued else {}),
        "deadline_at": deadline(run, now),
        "retried_from_run_id": run.retried_from_run_id,
        "trace_context": None if run.trace_context is None else json.dumps(run.trace_context),
    }


def started_row(run: NewRun, now: float) -> dict[str, Any]:
    """The row of a new run's ``run_started`` event (the columns of EVENT_COLUMNS)."""
    return {
        "run_id": run.run_id,
        "seq": 1,
        "type": EventType.RUN_STARTED.value,
        "command_id": None,
        "attempt": None,
        "data": payloads.encode(
            {"workflow": run.workflow, "version": run.version, "args": run.args}, "run_started"
        ),
        "at": now,
    }


def started_claim(row: dict[str, Any], started: dict[str, Any], lease: Lease) -> Claimed:
    """The claim of a run inserted as ``row`` (see :func:`run_row`) with ``lease``, as a
    claim's read would return it: the run as stored, its ``run_started`` event (``started``,
    see :func:`started_row`), and no inbox (nobody sees the run before it is inserted)."""
    run = SimpleNamespace(**row, continued_to_run_id=None, retried_to_run_id=None, closed_at=None)
    return Claimed(
        lease=lease,
        run=run_info(run),
        history=[_event(*(started[c] for c in EVENT_COLUMNS))],
        inbox=[],
        last_seq=1,
    )


def inbox_row(run_id: str, item: InboxItem, data: str, now: float) -> dict[str, Any]:
    """The inbox row of ``item``, its payload encoded as ``data``."""
    return {
        "run_id": run_id,
        "dedupe_key": item.dedupe_key,
        "type": EventType(item.type).value,
        "command_id": item.command_id,
        "attempt": item.attempt,
        "data": data,
        "at": now,
        "absorbed": False,
    }


def task_row(task: OutboxTask, now: float) -> dict[str, Any]:
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
        "heartbeat_timeout": task.heartbeat_timeout,
    }


def outbox_task(row: Row[Any], *, resent: bool = False) -> OutboxTask:
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
        resent=resent,
        heartbeat_timeout=row.heartbeat_timeout,
    )


def overdue_tasks(
    due_at: sa.Column[Any], allowed: sa.Column[Any], now: float, limit: int
) -> sa.Select[Any]:
    """Unfinished attempts whose ``due_at`` (start-to-close or heartbeat deadline) has passed,
    soonest due first, with ``allowed`` (the timeout they outlived), their runs' rows locked;
    rows another dispatcher holds are skipped."""
    return (
        sa.select(
            tasks.c.task_id,
            tasks.c.run_id,
            tasks.c.command_id,
            tasks.c.attempt,
            tasks.c.kind,
            tasks.c.task_name,
            allowed.label("allowed"),
        )
        .join(runs, runs.c.run_id == tasks.c.run_id)
        .where(sa.not_(tasks.c.finished), due_at <= now)
        .order_by(due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=runs)
    )
