"""The journal in memory: the same contract as the SQL journal, held in one process.

Its rows, and why they keep payloads as JSON text, are in :mod:`orchestrator.journal.memory.rows`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from orchestrator.journal.families import Family, check_limit, take
from orchestrator.journal.inbox import cancel_item, child_outcome_item
from orchestrator.journal.insight import RunHistory, attempt_outcome
from orchestrator.journal.memory import admission, retention
from orchestrator.journal.memory.authoring import AuthoringOps
from orchestrator.journal.memory.dispatch import MemoryDispatch
from orchestrator.journal.memory.insight import MemoryInsight
from orchestrator.journal.memory.rows import (
    ACTIVE,
    EventRow,
    InboxRow,
    RunRow,
    TaskRow,
    read_history,
    task_row,
)
from orchestrator.journal.memory.schedules import MemorySchedules, ScheduleRow
from orchestrator.journal.protocol import (
    INHERITED_BY_CONTINUATION,
    Batch,
    Claimed,
    Committed,
    Delivery,
    Lease,
    Retried,
    RunRef,
    TaskStart,
    collect_dispatch,
)
from orchestrator.journal.retry import plan_retry
from orchestrator.model import payloads
from orchestrator.model.deadlines import deadline
from orchestrator.model.errors import LeaseLost, NotRetryable, TransactionalStartError, UnknownRun
from orchestrator.model.events import Event, EventType, NewEvent, RunInfo, RunStatus
from orchestrator.model.limits import cancels_queued, delivered_status
from orchestrator.model.records import InboxItem, NewRun


class InMemoryJournal(MemoryDispatch, MemorySchedules, AuthoringOps, MemoryInsight):
    """A :class:`~orchestrator.journal.protocol.Journal` held in memory, for fast tests of
    replay logic.

    It keeps the contract to the letter, so that code tested against it behaves the same on
    SQLite and Postgres: the contract suite (``tests/contract``) runs on all three. One lock
    guards all state, which makes every method one atomic step; ``wait_closed`` and
    ``wait_wakeup`` sleep on conditions of that lock. Nothing survives the process.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()  # commit() is reused inside the one-step calls
        self._closed = threading.Condition(self._lock)
        self._woken = threading.Condition(self._lock)
        self._wakeups = 0
        self._runs: dict[str, RunRow] = {}
        self._tasks: dict[str, TaskRow] = {}
        self._timers: dict[tuple[str, int], float] = {}
        self._nodes: dict[tuple[str, str, str], float] = {}  # (node, workflow, version) -> beat
        self._inbox_ids = itertools.count(1)
        self._schedules: dict[str, ScheduleRow] = {}

    # -- runs -------------------------------------------------------------------------------
    def close(self) -> None:
        """Nothing to release: the state lives in this object."""

    def create_run(self, run: NewRun) -> bool:
        with self._lock:
            return self._insert(self._new_run(run, self._clock()))

    def _new_run(self, run: NewRun, now: float) -> RunRow:
        """The run as stored, not yet inserted (so a payload error leaves nothing behind)."""
        args = payloads.encode(run.args, "workflow arguments")
        started = NewEvent(
            type=EventType.RUN_STARTED,
            data={"workflow": run.workflow, "version": run.version, "args": run.args},
        )
        row = RunRow(
            new=run,
            args=args,
            created_at=now,
            dispatched_at=now,
            updated_at=now,
            events=[EventRow.of(1, started, now)],
            deadline_at=deadline(run, now),
        )
        return admission.hold(row)

    def describe(self, run_id: str) -> RunInfo | None:
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else run.info()

    def resolve_tip(self, run_id: str) -> str | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            if not run.succeeded:
                return run_id
            live = [r for r in self._runs.values() if r.chain == run.chain and not r.succeeded]
            return max(live, key=lambda r: r.created_at).new.run_id if live else run_id

    def retry_run(self, run_id: str) -> Retried:
        with self._lock:
            now = self._clock()
            run = self._runs.get(run_id)
            if run is None:
                raise UnknownRun(run_id)
            plan = plan_retry(run.info(), read_history(run, 0), now)
            new = self._new_run(plan.run, now)
            new.events = [EventRow.of(e.seq, _recorded(e), now) for e in plan.events]
            new.last_seq = plan.cut - 1
            tasks = [task_row(task, now) for task in plan.tasks]
            if not self._insert(new):
                raise NotRetryable(run_id, run.status.value, new.new.run_id)
            self._tasks.update((row.spec.task_id, row) for row in tasks)
            self._timers.update(((t.run_id, t.command_id), t.fire_at) for t in plan.timers)
            for item in plan.inbox:
                self._deliver(new.new.run_id, item, None, now)
            run.retried_to_run_id = new.new.run_id
            if plan.timers:
                self._wake()
            return Retried(run=new.ref(), tasks=[row.read() for row in tasks])

    def history(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            run = self._runs.get(run_id)
            return [] if run is None else read_history(run, after_seq)

    def list_runs(
        self, *, status: RunStatus | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        with self._lock:
            found = [
                r
                for r in self._runs.values()
                if (status is None or r.status is RunStatus(status))
                and (workflow is None or r.new.workflow == workflow)
            ]
            found.sort(key=lambda r: (-r.created_at, r.new.run_id))
            return [r.info() for r in found[:limit]]

    def wait_closed(self, run_id: str, timeout: float | None) -> RunInfo | None:
        def closed() -> bool:
            run = self._runs.get(run_id)
            return run is None or run.status.terminal

        with self._lock:
            if not self._closed.wait_for(closed, timeout):
                return None
            run = self._runs.get(run_id)
            return None if run is None else run.info()

    # -- the lease holder -------------------------------------------------------------------
    def claim(self, run_id: str, owner: str, ttl: float, after_seq: int = 0) -> Claimed | None:
        with self._lock:
            return self._claim(run_id, owner, ttl, after_seq, self._clock())

    def claim_and_commit(
        self,
        run_id: str,
        *,
        owner: str,
        ttl: float,
        after_seq: int = 0,
        decide: Callable[[Claimed], Batch | None],
    ) -> tuple[Claimed | None, Committed | None]:
        with self._lock:
            claimed = self._claim(run_id, owner, ttl, after_seq, self._clock())
            return claimed, None if claimed is None else self._decided(claimed, decide)

    def start_and_claim(
        self,
        run: NewRun,
        *,
        owner: str,
        ttl: float,
        decide: Callable[[Claimed], Batch | None],
    ) -> tuple[bool, Claimed | None, Committed | None]:
        with self._lock:
            if not self.create_run(run):
                return False, None, None
            return (True, *self.claim_and_commit(run.run_id, owner=owner, ttl=ttl, decide=decide))

    def _decided(
        self, claimed: Claimed, decide: Callable[[Claimed], Batch | None] | None
    ) -> Committed | None:
        batch = decide(claimed) if decide is not None else None
        return None if batch is None else self.commit(claimed.lease, batch)

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
        with self._lock:
            now = self._clock()
            delivery = self._deliver(run_id, item, task_id, now)
            if delivery.dispatch is None:
                return delivery, None, None
            claimed = self._claim(run_id, owner, ttl, after_seq, now)
            if claimed is None:
                return delivery, None, None
            return Delivery(accepted=True), claimed, self._decided(claimed, decide)

    def _claim(
        self, run_id: str, owner: str, ttl: float, after_seq: int, now: float
    ) -> Claimed | None:
        run = self._runs.get(run_id)
        if run is None or run.status not in ACTIVE or not run.lease_free(now):
            return None
        run.lease_owner = owner
        run.lease_token += 1
        run.lease_expires_at = now + ttl
        run.status = RunStatus.RUNNING
        run.updated_at = now
        lease = Lease(run_id=run_id, owner=owner, token=run.lease_token, expires_at=now + ttl)
        return Claimed(
            lease=lease,
            run=run.info(),
            history=read_history(run, after_seq),
            inbox=[row.read() for row in run.inbox.values()],
            last_seq=run.last_seq,
        )

    def commit(self, lease: Lease, batch: Batch, *, release: bool = True) -> Committed:
        with self._lock:
            now = self._clock()
            run = self._leased(lease)
            # Everything that can fail is prepared before the first write.
            rows = [EventRow.of(run.last_seq + i, e, now) for i, e in enumerate(batch.events, 1)]
            tasks = [task_row(task, now) for task in batch.tasks]
            children = [self._new_run(child, now) for child in batch.children]
            continuation = None
            if batch.continuation is not None:
                continuation = self._new_run(admission.inherit(run, batch.continuation), now)
            result, error = run.result, run.error
            if batch.status is not None:
                result = payloads.encode(batch.result, "workflow result")
                error = None if batch.error is None else json.dumps(batch.error)
            self._refuse_duplicates(lease.run_id, batch)

            run.events += rows
            run.last_seq += len(rows)
            for item_id in batch.absorbed:
                run.inbox.pop(item_id, None)
            self._tasks.update((row.spec.task_id, row) for row in tasks)
            self._timers.update(((t.run_id, t.command_id), t.fire_at) for t in batch.timers)
            dispatch = [child.ref() for child in children if self._insert(child)]
            if continuation is not None:
                if self._insert(continuation):
                    dispatch.append(continuation.ref())
                run.continued_to_run_id = continuation.new.run_id
            if batch.status is not None:
                run.status, run.reason = RunStatus(batch.status), batch.reason
            run.result, run.error = result, error
            status = run.status
            run.updated_at = now
            if status.terminal:
                run.closed_at = now
                if continuation is not None:
                    self._hand_over(run, self._runs[continuation.new.run_id])
                self._drop_leftovers(run)
                if run.new.concurrency_key is not None:
                    dispatch += admission.admit(self._runs.values(), run.new.concurrency_key, now)
            pending = bool(run.inbox)
            if release:
                self._release_after_commit(run, pending, now)
            dispatch += self._tell_relatives(run, status, batch, now)
            if status.terminal:
                self._closed.notify_all()
            if batch.timers or any(t.available_at > now for t in batch.tasks):
                self._wake()
            return Committed(last_seq=run.last_seq, pending_inbox=pending, dispatch=dispatch)

    @staticmethod
    def _release_after_commit(run: RunRow, pending: bool, now: float) -> None:
        run.lease_owner = run.lease_expires_at = None
        if run.status is RunStatus.BLOCKED:
            run.dispatched_at = now  # retried after ``redispatch_after``, not at once
        elif pending or run.status is RunStatus.RUNNING:
            run.status = RunStatus.RUNNABLE  # the committer dispatches the next replay
        else:
            run.dispatched_at = None  # nothing to replay until the next fact arrives

    def _tell_relatives(
        self, run: RunRow, status: RunStatus, batch: Batch, now: float
    ) -> list[RunRef]:
        """Deliver a cancel request to children, and a child's end to its parent."""
        refs: list[RunRef] = []
        ended = status.terminal and status is not RunStatus.CONTINUED
        cancels = [e for e in batch.events if e.type == EventType.CANCEL_REQUESTED]
        if cancels or ended:
            reason = batch.reason if status.terminal else cancels[0].data.get("reason")
            refs += self._cancel_children(run, None if reason is None else str(reason), now)
        if ended:
            collect_dispatch(refs, self._tell_parent(run, status, now))
        return refs

    def _tell_parent(self, run: RunRow, status: RunStatus, now: float) -> Delivery:
        """Deliver ``run``'s end to its parent, if it has one."""
        if run.new.parent_run_id is None:
            return Delivery(accepted=True)
        item = child_outcome_item(run.info(), status)
        return self._deliver(run.new.parent_run_id, item, None, now)

    def _leased(self, lease: Lease) -> RunRow:
        run = self._runs.get(lease.run_id)
        if run is None or run.lease_owner != lease.owner or run.lease_token != lease.token:
            raise LeaseLost(lease.run_id, lease.owner, lease.token)
        return run

    def _refuse_duplicates(self, run_id: str, batch: Batch) -> None:
        """A task id or timer that exists already fails the commit (a primary key in SQL)."""
        task_ids = [t.task_id for t in batch.tasks]
        timer_keys = [(t.run_id, t.command_id) for t in batch.timers]
        if len(set(task_ids)) < len(task_ids) or any(i in self._tasks for i in task_ids):
            raise ValueError(f"run {run_id}: commit repeats an outbox task id {task_ids}")
        if len(set(timer_keys)) < len(timer_keys) or any(k in self._timers for k in timer_keys):
            raise ValueError(f"run {run_id}: commit repeats a timer {timer_keys}")

    def _insert(self, run: RunRow) -> bool:
        if run.new.run_id in self._runs:
            return False
        self._runs[run.new.run_id] = run
        if run.status is RunStatus.QUEUED and run.new.concurrency_key is not None:
            admission.admit(self._runs.values(), run.new.concurrency_key, run.created_at)
        return True

    @staticmethod
    def _hand_over(run: RunRow, successor: RunRow) -> None:
        for item_id, row in list(run.inbox.items()):
            if row.item.type in INHERITED_BY_CONTINUATION:
                successor.inbox[item_id] = run.inbox.pop(item_id)
                successor.keys.add(row.item.dedupe_key)

    def _drop_leftovers(self, run: RunRow) -> None:
        run_id = run.new.run_id
        run.inbox.clear()
        for key in [k for k in self._timers if k[0] == run_id]:
            del self._timers[key]
        for task in self._tasks.values():
            if task.spec.run_id == run_id:
                task.finished = True

    def _cancel_children(self, parent: RunRow, reason: str | None, now: float) -> list[RunRef]:
        parent_id = parent.new.run_id
        item = cancel_item(reason or f"parent {parent_id} was cancelled or ended")
        refs: list[RunRef] = []
        for child in list(self._runs.values()):
            new = child.new
            if (
                new.parent_run_id == parent_id
                and new.parent_close_policy == "cancel"
                and not child.status.terminal
            ):
                collect_dispatch(refs, self._deliver(new.run_id, item, None, now))
        return refs

    def release(self, lease: Lease, *, reason: str | None = None) -> None:
        with self._lock:
            run = self._runs.get(lease.run_id)
            if run is None or run.lease_owner != lease.owner or run.lease_token != lease.token:
                return
            run.lease_owner = run.lease_expires_at = None
            run.updated_at = self._clock()
            if reason is not None:
                run.reason = reason
            if run.status is RunStatus.RUNNING:
                run.status = RunStatus.RUNNABLE

    # -- facts from outside -----------------------------------------------------------------
    def deliver(self, run_id: str, item: InboxItem, *, task_id: str | None = None) -> Delivery:
        with self._lock:
            return self._deliver(run_id, item, task_id, self._clock())

    def _deliver(self, run_id: str, item: InboxItem, task_id: str | None, now: float) -> Delivery:
        run = self._runs.get(run_id)
        if run is None or run.status.terminal:
            return Delivery(accepted=False)
        data = payloads.encode(item.data, f"{item.type} inbox item")
        if item.dedupe_key in run.keys:
            return Delivery(accepted=False)
        if cancels_queued(run.status, item.type):
            admission.cancel_queued(run, item.data.get("reason"), now)
            self._closed.notify_all()
            told = self._tell_parent(run, RunStatus.CANCELLED, now)
            return Delivery(accepted=True, dispatch=told.dispatch)
        task = self._tasks.get(task_id) if task_id is not None else None
        if task_id is not None and (task is None or task.finished or task.spec.run_id != run_id):
            return Delivery(accepted=False)  # not an attempt this run is waiting for
        item_id = next(self._inbox_ids)
        stored = replace(item, type=EventType(item.type), id=item_id, at=now)
        run.inbox[item_id] = InboxRow(stored, data)
        run.keys.add(item.dedupe_key)
        if task is not None:
            task.finished = True
            task.outcome, task.finished_at = attempt_outcome(item.type), now
        run.status = delivered_status(run.status, item.type)
        run.updated_at = now
        dispatch = (
            run.status not in (RunStatus.BLOCKED, RunStatus.QUEUED)
            and run.lease_free(now)
            and run.dispatched_at is None
        )
        if dispatch:
            run.dispatched_at = now
        return Delivery(accepted=True, dispatch=run.ref() if dispatch else None)

    def mark_started(self, task_id: str) -> TaskStart:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.finished:
                return TaskStart.ENDED
            if task.started_at is not None:
                return TaskStart.RUNNING
            task.started_at = now = self._clock()
            timeout = task.spec.timeout_seconds
            task.deadline_at = None if timeout is None else now + timeout
            beat = task.spec.heartbeat_timeout
            task.heartbeat_deadline_at = None if beat is None else now + beat
            return TaskStart.STARTED

    def renew_unstarted(self, task_id: str) -> bool:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.finished or task.started_at is not None:
                return False
            task.published_at = self._clock()
            return True

    def next_wakeup(self) -> float | None:
        with self._lock:
            due = list(self._timers.values())
            due += [
                t.spec.available_at
                for t in self._tasks.values()
                if not t.finished and t.published_at is None
            ]
            due += [] if (slot := self._next_slot()) is None else [slot]
            return min(due, default=None)

    def wait_wakeup(self, timeout: float) -> None:
        if timeout <= 0:
            return
        with self._lock:
            seen = self._wakeups
            self._woken.wait_for(lambda: self._wakeups != seen, timeout)

    def _wake(self) -> None:
        self._wakeups += 1
        self._woken.notify_all()

    # -- data lifecycle ---------------------------------------------------------------------
    def prune(
        self, *, closed_before: float, workflow: str | None = None, limit: int = 500
    ) -> list[str]:
        check_limit(limit)
        with self._lock:
            found = retention.families(self._runs, closed_before=closed_before, workflow=workflow)
            pruned = [run_id for family in take(found, limit) for run_id in family.run_ids]
            gone = set(pruned)
            for run_id in pruned:
                del self._runs[run_id]
            for task_id in [t for t, row in self._tasks.items() if row.spec.run_id in gone]:
                del self._tasks[task_id]
            for key in [k for k in self._timers if k[0] in gone]:
                del self._timers[key]
            return pruned

    def prunable(
        self,
        *,
        closed_before: float,
        workflow: str | None = None,
        limit: int = 100,
        after: tuple[float, str] | None = None,
    ) -> list[Family]:
        check_limit(limit)
        with self._lock:
            found = retention.families(
                self._runs, closed_before=closed_before, workflow=workflow, after=after
            )
            return found[:limit]

    def histories(self, run_ids: Sequence[str]) -> list[RunHistory]:
        with self._lock:
            found = [self._runs.get(run_id) for run_id in dict.fromkeys(run_ids)]
            return [
                RunHistory(info=run.info(), events=tuple(read_history(run, 0)))
                for run in found
                if run is not None
            ]

    def create_run_in(self, connection: object, run: NewRun) -> bool:
        raise TransactionalStartError(
            "the in-memory journal has no transaction of yours to join; connection= needs a "
            "Postgres journal"
        )


def _recorded(event: Event) -> NewEvent:
    """A recorded event, to record again as it was (its time included)."""
    return NewEvent(
        type=event.type,
        command_id=event.command_id,
        attempt=event.attempt,
        data=event.data,
        at=event.at.timestamp(),
    )


__all__ = ["InMemoryJournal"]
