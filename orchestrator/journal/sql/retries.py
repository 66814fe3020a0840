"""The retry of a failed run on SQL: one transaction under the original's row lock.

What the retry keeps and starts again is decided by
:func:`~orchestrator.journal.retry.plan_retry`; this writes it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orchestrator.journal.protocol import Retried
from orchestrator.journal.retry import plan_retry
from orchestrator.journal.sql.commit import StepCommits
from orchestrator.journal.sql.connection import WAKEUP_CHANNEL
from orchestrator.journal.sql.rows import (
    inbox,
    inbox_row,
    read_history,
    ref_of,
    run_info,
    run_row,
    runs,
    task_row,
    timers,
)
from orchestrator.model import payloads
from orchestrator.model.errors import NotRetryable, UnknownRun
from orchestrator.model.events import Event, EventType


class RunRetries(StepCommits):
    """:meth:`retry_run` (see :class:`~orchestrator.journal.sql.journal.SqlJournal`)."""

    def retry_run(self, run_id: str) -> Retried:
        return self._retrying(lambda conn: self._retry_run_x(conn, run_id))

    def _retry_run_x(self, conn: Connection, run_id: str) -> Retried:
        now = self._clock()
        row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id).with_for_update()).first()
        if row is None:
            raise UnknownRun(run_id)
        info = run_info(row)
        plan = plan_retry(info, read_history(conn, run_id, 0), now)
        new_id = plan.run.run_id
        values = {**run_row(plan.run, now), "last_seq": plan.cut - 1}
        task_rows = [task_row(task, now) for task in plan.tasks]
        if not self._create_run_x(
            conn, values, [_event_row(new_id, e) for e in plan.events], task_rows
        ):
            raise NotRetryable(run_id, info.status.value, new_id)
        if plan.timers:
            conn.execute(
                timers.insert(),
                [
                    {"run_id": t.run_id, "command_id": t.command_id, "fire_at": t.fire_at}
                    for t in plan.timers
                ],
            )
            self._notify(conn, WAKEUP_CHANNEL)
        for item in plan.inbox:
            data = payloads.encode(item.data, f"{item.type} inbox item")
            conn.execute(inbox.insert(), inbox_row(new_id, item, data, now))
        conn.execute(
            runs.update()
            .where(runs.c.run_id == run_id)
            .values(retried_to_run_id=new_id, updated_at=now)
        )
        return Retried(run=ref_of(plan.run), tasks=plan.tasks)


def _event_row(run_id: str, event: Event) -> dict[str, Any]:
    """``event`` as a row of the run ``run_id`` (the columns of EVENT_COLUMNS)."""
    return {
        "run_id": run_id,
        "seq": event.seq,
        "type": EventType(event.type).value,
        "command_id": event.command_id,
        "attempt": event.attempt,
        "data": payloads.encode(event.data, f"{event.type} event"),
        "at": event.at.timestamp(),
    }
