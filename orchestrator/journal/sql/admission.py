"""Admission under concurrency limits, on SQL: the queued runs of a key that may start now.

Admission runs in the transaction that makes room (a run of the key ending) or that adds a
contender (a queued run inserted), with no polling: a key's admissions are serialised by a
transaction-scoped advisory lock on Postgres (SQLite serialises all writers already), so two
runs of one key ending at once cannot both count the same free place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchestrator.journal.protocol import RunRef
from orchestrator.journal.sql import schema
from orchestrator.model import limits, payloads
from orchestrator.model.events import RunStatus
from orchestrator.model.limits import OPEN
from orchestrator.model.records import NewRun

runs = schema.runs
_key: sa.BindParameter[str] = sa.bindparam("p_key")
#: Queued runs looked at per admission: more than any close frees.
_BATCH = 50

LOCK_KEY = sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(_key, 0)))
OPEN_RUNS = sa.select(sa.func.count()).where(
    runs.c.concurrency_key == _key, runs.c.status.in_([s.value for s in sorted(OPEN)])
)
OLDEST_QUEUED = (
    sa.select(runs.c.run_id, runs.c.concurrency_limit)
    .where(runs.c.concurrency_key == _key, runs.c.status == RunStatus.QUEUED.value)
    .order_by(runs.c.created_at, runs.c.parent_command_id.nulls_first(), runs.c.run_id)
    .limit(_BATCH)
)
LAST_SEQ = sa.select(runs.c.last_seq).where(runs.c.run_id == sa.bindparam("p_run_id"))
KEY_OF = sa.select(runs.c.concurrency_key, runs.c.concurrency_limit).where(
    runs.c.run_id == sa.bindparam("p_run_id")
)


def admit_x(conn: Connection, key: str, now: float, *, postgres: bool) -> list[RunRef]:
    """Admit ``key``'s oldest queued runs while it has fewer open runs than their limit: they
    become ``runnable`` with a replay in flight, returned for the caller to dispatch."""
    if postgres:
        conn.execute(LOCK_KEY, {"p_key": key})
    open_runs = int(conn.execute(OPEN_RUNS, {"p_key": key}).scalar_one())
    chosen: list[str] = []
    for row in conn.execute(OLDEST_QUEUED, {"p_key": key}):
        if open_runs + len(chosen) >= row.concurrency_limit:
            break  # first in, first out: no later run jumps the queue
        chosen.append(row.run_id)
    if not chosen:
        return []
    admitted = conn.execute(
        runs.update()
        .where(runs.c.run_id.in_(chosen), runs.c.status == RunStatus.QUEUED.value)
        .values(status=RunStatus.RUNNABLE.value, dispatched_at=now, reason=None, updated_at=now)
        .returning(runs.c.run_id, runs.c.workflow, runs.c.version)
    )
    return [RunRef(run_id=r.run_id, workflow=r.workflow, version=r.version) for r in admitted]


def inherit_x(conn: Connection, run_id: str, continuation: NewRun) -> NewRun:
    """``continuation`` with the concurrency key and limit of the run it continues, whose
    place it takes."""
    row: Any = conn.execute(KEY_OF, {"p_run_id": run_id}).first()
    if row is None or row.concurrency_key is None:
        return continuation
    return dataclasses.replace(
        continuation, concurrency_key=row.concurrency_key, concurrency_limit=row.concurrency_limit
    )


def cancel_queued_x(conn: Connection, run_id: str, reason: Any, now: float) -> Any:
    """End a queued run ``cancelled`` at once (see
    :func:`~orchestrator.model.limits.cancels_queued`): its cancellation and end appended to
    its history; its row as it ended is returned. Its leftovers, waiters and parent are the
    caller's (the journal's ``_close_x`` and ``_tell_parent_x``)."""
    last_seq = int(conn.execute(LAST_SEQ, {"p_run_id": run_id}).scalar_one())
    conn.execute(
        schema.events.insert(),
        [
            {
                "run_id": run_id,
                "seq": last_seq + n,
                "type": event.type.value,
                "command_id": None,
                "attempt": None,
                "data": payloads.encode(event.data, f"{event.type} event"),
                "at": now,
            }
            for n, event in enumerate(limits.queued_cancellation(reason), 1)
        ],
    )
    return conn.execute(
        runs.update()
        .where(runs.c.run_id == run_id)
        .values(
            status=RunStatus.CANCELLED.value,
            reason=reason,
            last_seq=last_seq + 2,
            closed_at=now,
            updated_at=now,
            dispatched_at=None,
        )
        .returning(*runs.c)
    ).one()
