"""Heartbeats from inside an activity's body: ``orchestrator.heartbeat(details)`` and
``orchestrator.activity_info()``.

The worker that runs an activity attempt makes it the *current* one of its thread for the
time its body runs (the Celery integration does, in :mod:`orchestrator.celery.heartbeats`).
A heartbeat is then cheap enough for a tight loop: most calls only keep the newest details
and compare two clock readings; at most one call per interval writes to the journal
(:meth:`~orchestrator.journal.protocol.Journal.record_heartbeat`), the interval being a third
of the attempt's ``heartbeat_timeout`` (:data:`UNTIMED_INTERVAL` for an attempt without one).
The first call writes at once. A write learns whether the attempt is still current: when it
is not (its outcome was journaled, it timed out and may be retried, its run ended or was
cancelled), this and every later heartbeat raises :class:`~orchestrator.ActivityCancelled`.

Outside an activity's body (the task called directly, or as a plain Celery task), a
heartbeat does nothing, so one task serves both ways; ``activity_info()`` raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.journal.protocol import Journal
from orchestrator.model import payloads
from orchestrator.model.errors import ActivityCancelled

log = logging.getLogger(__name__)

#: Seconds between the journal writes of an attempt that has no ``heartbeat_timeout``
#: (its details are still kept for its retries).
UNTIMED_INTERVAL = 10.0

_local = threading.local()


@dataclass(frozen=True, kw_only=True)
class ActivityInfo:
    """The running activity attempt, as ``orchestrator.activity_info()`` returns it.

    ``heartbeat_details`` are the details last recorded by a heartbeat of this activity
    before the body first asked (by an earlier attempt, or an earlier copy of this one), or
    ``None``: where a retry resumes the work."""

    run_id: str
    command_id: int
    attempt: int
    task_id: str
    task_name: str
    heartbeat_details: Any = None


class Current:
    """The attempt a thread runs, and the pacing of its heartbeats."""

    __slots__ = (
        "attempt",
        "cancelled",
        "clock",
        "command_id",
        "details",
        "interval",
        "journal",
        "max_payload_bytes",
        "next_write",
        "pending",
        "run_id",
        "task_id",
        "task_name",
    )

    def __init__(
        self,
        journal: Journal,
        *,
        run_id: str,
        command_id: int,
        attempt: int,
        task_id: str,
        task_name: str,
        max_payload_bytes: int = payloads.DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.run_id = run_id
        self.command_id = command_id
        self.attempt = attempt
        self.task_id = task_id
        self.task_name = task_name
        self.max_payload_bytes = max_payload_bytes
        self.next_write = 0.0  # the first heartbeat writes at once
        self.interval = UNTIMED_INTERVAL
        self.pending: Any = None
        self.cancelled = False
        self.details: tuple[Any] | None = None  # read on the first activity_info()

    def beat(self, details: Any) -> None:
        if self.cancelled:
            raise ActivityCancelled(self.task_id)
        if details is not None:
            self.pending = details
        now = self.clock()
        if now >= self.next_write:
            self._write(now)

    def _write(self, now: float) -> None:
        details, self.pending = self.pending, None
        if details is not None:
            # Refused here, nothing written; the next heartbeat writes again.
            payloads.encode(details, "heartbeat details", self.max_payload_bytes)
        try:
            beat = self.journal.record_heartbeat(self.task_id, details)
        except Exception:
            # The journal is unreachable for now: the work goes on, and so do heartbeats.
            log.warning("heartbeat of %s not recorded; trying again later", self.task_id)
            self.next_write = now + min(self.interval, 1.0)
            return
        if beat is None:
            self.cancelled = True
            raise ActivityCancelled(self.task_id)
        timeout = beat.heartbeat_timeout
        self.interval = UNTIMED_INTERVAL if timeout is None else timeout / 3
        self.next_write = now + self.interval

    def info(self) -> ActivityInfo:
        if self.details is None:
            found = self.journal.heartbeat_details(self.run_id, self.command_id, self.attempt)
            self.details = (found,)
        return ActivityInfo(
            run_id=self.run_id,
            command_id=self.command_id,
            attempt=self.attempt,
            task_id=self.task_id,
            task_name=self.task_name,
            heartbeat_details=self.details[0],
        )


def enter(current: Current) -> None:
    """Make ``current`` this thread's attempt (its body is about to run)."""
    _local.current = current


def leave() -> None:
    """This thread's attempt has ended."""
    _local.current = None


def heartbeat(details: Any = None) -> None:
    """Say that the activity attempt this body runs is alive, and record ``details`` (JSON;
    ``None`` keeps the ones recorded before) for its retries to resume from.

    Throttled: at most one journal write per third of the attempt's ``heartbeat_timeout``,
    so it may be called in a tight loop. Raises :class:`~orchestrator.ActivityCancelled` once
    the attempt is no longer current, and :class:`~orchestrator.PayloadError` when the details
    JSON cannot carry (or are over ``max_payload_bytes``) as they are written. Does nothing
    outside an activity's body."""
    current: Current | None = getattr(_local, "current", None)
    if current is not None:
        current.beat(details)


def activity_info() -> ActivityInfo:
    """The activity attempt this body runs, with the heartbeat details an earlier attempt
    recorded. Raises ``RuntimeError`` outside an activity's body."""
    current: Current | None = getattr(_local, "current", None)
    if current is None:
        raise RuntimeError(
            "activity_info() is available only in the body of a task run as a workflow's activity"
        )
    return current.info()
