"""Admission under concurrency limits, in memory: the same rules as on SQL
(:mod:`orchestrator.journal.sql.admission`), over the journal's rows, under its one lock."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from orchestrator.journal.memory.rows import EventRow, RunRow
from orchestrator.journal.protocol import RunRef
from orchestrator.model import limits
from orchestrator.model.events import RunStatus
from orchestrator.model.records import NewRun


def hold(row: RunRow) -> RunRow:
    """A new run as stored: queued (no replay in flight, the reason shown) when it waits for
    admission."""
    if limits.starts_queued(row.new):
        for name, value in limits.queued_columns(row.new).items():
            setattr(row, name, RunStatus(value) if name == "status" else value)
    return row


def admit(rows: Iterable[RunRow], key: str, now: float) -> list[RunRef]:
    """Admit ``key``'s oldest queued runs while it has fewer open runs than their limit."""
    mine = [row for row in rows if row.new.concurrency_key == key]
    open_runs = sum(1 for row in mine if row.status in limits.OPEN)
    queued = sorted(
        (row for row in mine if row.status is RunStatus.QUEUED),
        key=lambda row: (row.created_at, row.new.parent_command_id or 0, row.new.run_id),
    )
    refs: list[RunRef] = []
    for row in queued:
        if open_runs >= (row.new.concurrency_limit or 0):
            break  # first in, first out: no later run jumps the queue
        row.status, row.dispatched_at, row.reason, row.updated_at = (
            RunStatus.RUNNABLE,
            now,
            None,
            now,
        )
        open_runs += 1
        refs.append(row.ref())
    return refs


def inherit(run: RunRow, continuation: NewRun) -> NewRun:
    """``continuation`` with the key and limit of ``run``, whose place it takes."""
    if run.new.concurrency_key is None:
        return continuation
    return dataclasses.replace(
        continuation,
        concurrency_key=run.new.concurrency_key,
        concurrency_limit=run.new.concurrency_limit,
    )


def cancel_queued(row: RunRow, reason: Any, now: float) -> None:
    """End a queued run ``cancelled`` at once (see
    :func:`~orchestrator.model.limits.cancels_queued`); its waiters are the caller's to wake."""
    events = limits.queued_cancellation(reason)
    row.events += [EventRow.of(row.last_seq + n, e, now) for n, e in enumerate(events, 1)]
    row.last_seq += len(events)
    row.status, row.reason, row.closed_at, row.updated_at = RunStatus.CANCELLED, reason, now, now
    row.dispatched_at = None
    row.inbox.clear()
