"""The journal contract: one protocol, the records it speaks, and the guarantees it keeps.

A run's history is written only by the holder of the run's lease. Facts from outside
(activity outcomes, fired timers, signals, ...) go into the run's *inbox*, idempotently by
a dedupe key; the lease holder absorbs the inbox into the history in the same transaction
that appends its own decisions, so the history is exactly what the replayer saw.

Every method is one transaction. Methods that write a run's history check the caller's
lease (owner and fencing token) under a lock on the run's row and raise
:class:`~orchestrator.model.errors.LeaseLost`, writing nothing, when it is no longer theirs.
Times are epoch seconds from the journal's clock (a constructor argument, for tests).

Replay-in-flight bookkeeping (``dispatched_at`` on the run): set by ``create_run``,
``deliver`` (when it asks the caller to dispatch), the dispatcher's ``take_*`` methods and a
timer or deadline firing; cleared by a releasing commit that leaves the run ``suspended`` or
terminal; set to now by one that leaves it ``blocked`` (so a blocked run is retried only
after ``redispatch_after``). Outbox tasks due at commit time are recorded as published then:
the committer publishes them right after the commit, and the dispatcher re-publishes any
that no worker started within ``republish_after``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.journal.families import Family
from orchestrator.journal.insight import JournalStats, RunCursor, RunHistory, RunPage
from orchestrator.model.events import Event, EventType, NewEvent, RunInfo, RunStatus
from orchestrator.model.records import InboxItem, NewRun, OutboxTask, Timer
from orchestrator.model.schedules import ScheduleInfo, ScheduleSpec


class TaskStart(enum.Enum):
    """What :meth:`Journal.mark_started` found, and so whether a copy of a task runs."""

    #: This call started the attempt: run it.
    STARTED = "started"
    #: Started before and not ended: a copy. Run it only as a redelivery of the message (the
    #: worker that took it first died) or as the task's own Celery retry.
    RUNNING = "running"
    #: Ended (its outcome journaled, timed out, no longer awaited) or unknown: nothing would
    #: take its outcome, so it does not run.
    ENDED = "ended"


@dataclass(frozen=True, kw_only=True)
class Lease:
    """The right to write one run's history, proved on every write by ``owner`` and ``token``."""

    run_id: str
    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class Batch:
    """Everything one replay decided, committed in one transaction.

    ``absorbed`` are the inbox item ids whose events are among ``events`` (they are marked
    absorbed); ``status`` is the run's status after the commit (``None`` keeps it);
    ``children`` are child runs to insert (their ``child_started`` is among ``events``);
    ``continuation`` is the run that continues this one (status ``continued``).
    """

    events: Sequence[NewEvent] = ()
    absorbed: Sequence[int] = ()
    tasks: Sequence[OutboxTask] = ()
    timers: Sequence[Timer] = ()
    children: Sequence[NewRun] = ()
    continuation: NewRun | None = None
    status: RunStatus | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """A successful claim: the lease, the run, history after ``after_seq``, and the inbox."""

    lease: Lease
    run: RunInfo
    history: list[Event]
    inbox: list[InboxItem]
    last_seq: int


@dataclass(frozen=True, kw_only=True)
class Committed:
    """What a commit did: the last sequence number, whether inbox items are still waiting,
    and the runs it made runnable that the committer should dispatch (new children, the
    continuation, a parent told of its child's end, children told to cancel)."""

    last_seq: int
    pending_inbox: bool
    dispatch: Sequence[RunRef] = ()


@dataclass(frozen=True, kw_only=True)
class RunRef:
    """Enough of a run to publish its replay task (routing needs the workflow and version)."""

    run_id: str
    workflow: str
    version: str


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """The outcome of an inbox insert.

    ``accepted``: the item was new (not a duplicate) and the run can still take it.
    ``dispatch``: the caller should publish a replay for ``run`` now (no replay was in flight).
    """

    accepted: bool
    dispatch: RunRef | None = None


@dataclass(frozen=True, kw_only=True)
class Retried:
    """A retry made by :meth:`Journal.retry_run`: the new run, to dispatch (a replay is
    marked in flight for it), and the attempts open at the cut, recorded as published now,
    to publish (see :mod:`orchestrator.journal.retry`)."""

    run: RunRef
    tasks: Sequence[OutboxTask] = ()


#: Inbox items a run that continues as new hands, unabsorbed, to its continuation: they were
#: sent to the chain, not to one generation of it.
INHERITED_BY_CONTINUATION = (
    EventType.SIGNAL_RECEIVED,
    EventType.CANCEL_REQUESTED,
    EventType.RUN_TIMED_OUT,
)


@dataclass(frozen=True, kw_only=True)
class Published:
    """A value a run published with ``ctx.publish`` (see :meth:`Journal.latest_published`)."""

    run_id: str
    seq: int
    value: Any


@dataclass(frozen=True, kw_only=True)
class Beat:
    """A heartbeat recorded (see :meth:`Journal.record_heartbeat`): the attempt's
    ``heartbeat_timeout`` (``None``: it has none), which paces the next beat."""

    heartbeat_timeout: float | None


def collect_dispatch(refs: list[RunRef], delivery: Delivery) -> None:
    """Add the run a delivery asks to dispatch to ``refs``, once."""
    if delivery.dispatch is not None and delivery.dispatch not in refs:
        refs.append(delivery.dispatch)


class Journal(Protocol):
    """Durable storage of runs, histories, inboxes, the outbox and timers."""

    def close(self) -> None:
        """Release connections and listeners (a no-op where there are none)."""
        ...

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, run: NewRun) -> bool:
        """Insert the run (status ``runnable``, a replay marked in flight) and its
        ``run_started`` event (seq 1), in one transaction.

        Idempotent by run id: returns ``False`` and changes nothing when the id exists.
        """
        ...

    def describe(self, run_id: str) -> RunInfo | None:
        """The run's summary, or ``None`` for an unknown id."""
        ...

    def resolve_tip(self, run_id: str) -> str | None:
        """The live tip of ``run_id``'s continue-as-new chain (itself when it has no
        successor; ``None`` for an unknown id). One lookup, not a walk along the chain.
        A run's successors are its continuation and its retry (``retried_to_run_id``)."""
        ...

    def retry_run(self, run_id: str) -> Retried:
        """Retry the failed run ``run_id``, in one transaction under a lock on its row: insert
        the retry (:func:`~orchestrator.journal.retry.plan_retry`: runnable, a replay marked
        in flight, the original's history up to the failure, the open attempts' outbox tasks
        and timers, the signals taken after the failure in its inbox) and set the original's
        ``retried_to_run_id``. The original's status stays ``failed``. Raises
        :class:`~orchestrator.model.errors.UnknownRun` for an unknown id and
        :class:`~orchestrator.model.errors.NotRetryable` for a run that is not failed or was
        retried already; nothing is written then."""
        ...

    def history(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events with ``seq > after_seq``, in order."""
        ...

    def list_runs(
        self, *, status: RunStatus | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        """Runs, newest first, optionally filtered."""
        ...

    def wait_closed(self, run_id: str, timeout: float | None) -> RunInfo | None:
        """Block until the run is terminal (its info) or ``timeout`` seconds pass (``None``).

        Waits on a notification where the backend has one, with a bounded poll otherwise;
        never a tight loop.
        """
        ...

    # -- the lease holder -------------------------------------------------------------------
    def claim(self, run_id: str, owner: str, ttl: float, after_seq: int = 0) -> Claimed | None:
        """Take the run's lease: a CAS that succeeds only when the lease is free or expired
        and the run has work (status ``runnable``, ``running`` under an expired lease, or
        ``blocked``). The fencing token goes up by one on every successful claim; the run
        becomes ``running``. Returns the history after ``after_seq`` and the whole inbox,
        read in the same transaction; ``None`` when the claim fails.
        """
        ...

    def claim_and_commit(
        self,
        run_id: str,
        *,
        owner: str,
        ttl: float,
        after_seq: int = 0,
        decide: Callable[[Claimed], Batch | None],
    ) -> tuple[Claimed | None, Committed | None]:
        """:meth:`claim`, then hand the claim to ``decide`` inside the same transaction, the
        run's row still locked; a batch it returns is committed there too, releasing the
        lease: one transaction for the whole step. ``decide`` may be called again if the
        transaction is retried. Returns the claim (``None`` when it failed) and the commit if
        one was made; a claim with no commit is the caller's to commit or release.
        """
        ...

    def start_and_claim(
        self,
        run: NewRun,
        *,
        owner: str,
        ttl: float,
        decide: Callable[[Claimed], Batch | None],
    ) -> tuple[bool, Claimed | None, Committed | None]:
        """:meth:`create_run`, then :meth:`claim_and_commit` of the new run in the same
        transaction: a start that takes the run's first step itself commits once. Returns
        whether the run was created (``False``: its id is taken, and nothing was done), the
        claim and the commit if one was made. ``decide`` may be called before the run is
        inserted (so that the step can be written with it); when the id turns out taken, what
        it decided is dropped.
        """
        ...

    def commit(self, lease: Lease, batch: Batch, *, release: bool = True) -> Committed:
        """Append ``batch`` under ``lease``, in one transaction: lock the run row, check owner
        and token (:class:`LeaseLost`, nothing written, when they changed), assign the next
        sequence numbers, insert events, outbox tasks and timers, delete absorbed inbox items,
        set status/result/error/reason. On ``release`` the lease is cleared; a run left with
        inbox items is then ``runnable`` (``pending_inbox``) for its next replay. A terminal
        status drops the run's remaining inbox items, timers and unfinished tasks, except that a
        continuation inherits the unabsorbed signals and cancellation
        (:data:`INHERITED_BY_CONTINUATION`).

        In the same transaction: ``children`` and ``continuation`` runs are inserted (with
        their ``run_started``; a continuation sets ``continued_to_run_id``); absorbing a
        ``cancel_requested``, or ending, delivers ``cancel_requested`` to the run's unfinished
        children whose policy is ``cancel``; a child's end (other than ``continued``) is
        delivered to its parent's inbox (:func:`child_outcome_item`). Runs so made runnable
        are returned in ``Committed.dispatch``.
        """
        ...

    def release(self, lease: Lease, *, reason: str | None = None) -> None:
        """Give the lease up without writing history (no-op when it is no longer ours); a
        ``running`` run goes back to ``runnable``, its replay still marked in flight.
        ``reason`` (e.g. the node lacks the run's workflow version) is shown by describe."""
        ...

    # -- facts from outside -----------------------------------------------------------------
    def deliver(self, run_id: str, item: InboxItem, *, task_id: str | None = None) -> Delivery:
        """Insert ``item`` into the run's inbox, idempotently by its dedupe key, and make the
        run ``runnable`` (unless it is ``blocked``). A terminal or unknown run takes nothing.
        With ``task_id`` (an attempt's outcome) the item is taken only while that outbox task
        of this run is unfinished, and the task is then marked finished in the same
        transaction: a late outcome of a superseded attempt, or one for an attempt that was
        never scheduled, is not accepted.
        When no replay is in flight and the lease is free, marks one in flight and returns
        the run in ``dispatch`` for the caller to publish.
        """
        ...

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
        """:meth:`deliver`, and in the same transaction, where ``deliver`` would ask for a
        dispatch, :meth:`claim` for ``owner`` instead (the hot path: no broker hop).

        With ``decide``, the claim is handed to it inside the transaction, the run's row still
        locked; a batch it returns is committed there too, releasing the lease: one
        transaction for the whole step. ``decide`` may be called again if the transaction is
        retried. Returns the delivery (with no ``dispatch`` when claimed), the claim, and the
        commit if one was made.
        """
        ...

    def mark_started(self, task_id: str) -> TaskStart:
        """Record that a worker is about to run the task (its start-to-close deadline starts
        now): a CAS, so one copy of an attempt runs. Anything but ``STARTED`` writes nothing.
        """
        ...

    def renew_unstarted(self, task_id: str) -> bool:
        """Say that the task, run in place with its start unrecorded, is still running: its
        publish time becomes now, so the dispatcher does not take it for lost for another
        ``republish_after`` seconds (see :mod:`orchestrator.celery.in_place`). ``False`` (nothing
        written) when it has started or ended.
        """
        ...

    # -- the dispatcher ---------------------------------------------------------------------
    def fire_due_timers(self, limit: int = 100) -> list[RunRef]:
        """Move due timers into their runs' inboxes (``timer_fired``); the runs to dispatch."""
        ...

    def expire_tasks(self, limit: int = 100) -> list[RunRef]:
        """Started tasks past their deadline are finished and become inbox items under their
        :func:`outcome_key` (so a late outcome is dropped): ``activity_timed_out`` for an
        activity, ``compensation_failed`` with a ``TimeoutError`` for a compensation. Returns
        the runs to dispatch.
        """
        ...

    def take_unpublished(self, *, republish_after: float, limit: int = 100) -> list[OutboxTask]:
        """Unfinished outbox tasks to (re)publish, marking them published now: delayed ones
        (retry backoff) that became due, and published ones not started within
        ``republish_after`` seconds (their message was lost, or the publisher crashed after the
        commit), these ``resent``. Rows locked by another dispatcher are skipped.
        """
        ...

    def take_runnable(
        self, *, redispatch_after: float, limit: int = 100, node_ttl: float | None = None
    ) -> list[RunRef]:
        """Runs that need a replay and have none in flight (or its message is older than
        ``redispatch_after``): runnable with a free lease, running with an expired lease,
        blocked ones to retry. Marks a replay in flight. Rows locked elsewhere are skipped.
        With ``node_ttl``, only runs whose workflow version a node has registered within
        ``node_ttl`` seconds are taken (the others wait for such a node).
        """
        ...

    # -- the version registry ---------------------------------------------------------------
    def register_node(
        self, node_id: str, versions: Sequence[tuple[str, str]], *, node_ttl: float
    ) -> int:
        """Record (heartbeat) the workflow versions ``node_id`` can replay, forgetting the
        ones it no longer has. Runs of versions that no live node had before are made
        dispatchable at once; returns how many."""
        ...

    def unregister_node(self, node_id: str) -> None:
        """Forget a node (it is shutting down)."""
        ...

    def live_versions(self, *, node_ttl: float) -> set[tuple[str, str]]:
        """The (workflow, version) pairs some node registered within ``node_ttl`` seconds."""
        ...

    def next_wakeup(self) -> float | None:
        """The earliest time a timer fires or a delayed task becomes due (``None``: none)."""
        ...

    def wait_wakeup(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds, returning early when a commit added a timer or a
        delayed task (Postgres ``NOTIFY``); a plain bounded sleep where there is no signal."""
        ...

    # -- schedules (see orchestrator.model.schedules) ----------------------------------------
    def put_schedule(self, spec: ScheduleSpec) -> ScheduleInfo:
        """Create the schedule, or rewrite the one of the same id, in one transaction (two
        writers of one new id: one creates, the other rewrites). A new schedule waits for its
        first slot after now; a rewrite keeps its pause, its last run and, when its timing
        (cron, every, timezone) is unchanged, the slot it waits for, so a deployment that
        writes its schedules on every start loses no slot. Wakes waiting dispatchers."""
        ...

    def get_schedule(self, schedule_id: str) -> ScheduleInfo | None:
        """The schedule, or ``None`` for an unknown id."""
        ...

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule, by id."""
        ...

    def pause_schedule(self, schedule_id: str, paused: bool) -> ScheduleInfo | None:
        """Pause (``True``) or resume (``False``) the schedule, in one transaction; ``None``
        for an unknown id. A resumed schedule waits for its first slot after now: the slots
        that passed while it was paused are not fired."""
        ...

    def delete_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule (its runs stay); ``False`` for an unknown id."""
        ...

    def trigger_schedule(self, schedule_id: str) -> RunRef | None:
        """Start the schedule's run now, in one transaction with the schedule's row locked,
        whatever its slots, pause or overlap policy (an operator asked), under
        :func:`~orchestrator.model.schedules.manual_run_id`, and record it as the schedule's
        last run. The run to dispatch; ``None`` for an unknown id."""
        ...

    def fire_due_schedules(self, limit: int = 100) -> list[RunRef]:
        """Fire the unpaused schedules whose awaited slot has come, each in one transaction
        with its row locked (rows locked by another dispatcher are skipped): the latest slot
        passed is fired when it is within the schedule's catch-up window and, under
        ``overlap="skip"``, the schedule's last run (its continue-as-new chain) has ended; the
        schedule then waits for its first slot after now. Firing creates the run
        :func:`~orchestrator.model.schedules.slot_run_id`, idempotently, so a slot fired
        twice starts one run. Returns the runs created, to dispatch."""
        ...

    # -- authoring: queries, signal-with-start, execution and heartbeat timeouts -----------
    def latest_published(self, run_id: str, name: str) -> Published | None:
        """The value last published under ``name`` (a ``value_published`` event) by the
        continue-as-new chain of ``run_id``: its newest generation that published one, its
        last such event. ``None`` when none did (or the run is unknown). A read, no lock."""
        ...

    def start_or_deliver(self, run: NewRun, item: InboxItem) -> tuple[bool, Delivery]:
        """Signal-with-start: in one transaction, insert ``run`` (as :meth:`create_run`)
        with ``item`` already in its inbox, or, when its id exists, :meth:`deliver` ``item``
        to it. Concurrent calls for one run id serialise on the id: exactly one creates the
        run, every item is delivered once. Returns whether this call created the run, and
        the delivery (for a created run: accepted, and the run to dispatch)."""
        ...

    def expire_runs(self, limit: int = 100) -> list[RunRef]:
        """Execution timeouts: for each run whose ``deadline_at`` has passed (a chain's
        deadline is kept on the run that began it), deliver ``run_timed_out`` to the open run
        of its chain, if any, and clear the deadline, in one transaction (rows locked
        elsewhere skipped). Returns the runs to dispatch."""
        ...

    def record_heartbeat(self, task_id: str, details: Any = None) -> Beat | None:
        """An activity attempt is alive: its heartbeat deadline moves to now plus its
        ``heartbeat_timeout`` and ``details`` (when not ``None``) replace the ones it
        recorded before. ``None``, and nothing written, when the attempt is no longer
        current (finished: its outcome journaled, timed out, or its run ended) or unknown.
        One statement; it takes no run lock."""
        ...

    def heartbeat_details(self, run_id: str, command_id: int, attempt: int) -> Any:
        """The details last recorded by the activity's attempts up to ``attempt`` (the
        newest attempt that recorded some), or ``None``."""
        ...

    def expire_heartbeats(self, limit: int = 100) -> list[RunRef]:
        """Unfinished attempts past their heartbeat deadline (silent longer than their
        ``heartbeat_timeout``, counted from their start or last heartbeat) are finished and
        become inbox items under their :func:`outcome_key`: ``activity_timed_out`` (or
        ``compensation_failed``) with a ``HeartbeatTimeout`` error. One transaction, rows
        locked elsewhere skipped. Returns the runs to dispatch."""
        ...

    # -- data lifecycle (see orchestrator.journal.families) ----------------------------------
    def prune(
        self, *, closed_before: float, workflow: str | None = None, limit: int = 500
    ) -> list[str]:
        """Delete finished families whose every run closed before ``closed_before`` (epoch
        seconds), oldest first, with every row their runs own (history, inbox, outbox tasks,
        timers), in one transaction of about ``limit`` runs (a family is never split, so one
        larger than ``limit`` is deleted alone). ``workflow`` takes only families whose
        top-level run is of that workflow. Returns the run ids deleted; ``[]`` when none is
        left. A family with a run still open, or closed since the cutoff, is kept whole.

        Runs locked by another transaction are skipped (``SKIP LOCKED``), so several
        dispatchers prune side by side and a prune never waits for a run's writer.
        """
        ...

    def prunable(
        self,
        *,
        closed_before: float,
        workflow: str | None = None,
        limit: int = 100,
        after: tuple[float, str] | None = None,
    ) -> list[Family]:
        """The families :meth:`prune` would delete, up to ``limit`` of them, after the one
        whose ``key`` is ``after``: pages for an export or a dry run. Writes nothing."""
        ...

    def histories(self, run_ids: Sequence[str]) -> list[RunHistory]:
        """The runs ``run_ids`` with their whole histories, in the order given (a repeated id
        once; an unknown one, or one deleted meanwhile, left out): an export's page in two
        reads, however many runs it holds. Histories are read before runs, so a run returned
        has every event it had then; a run still open may have gained events since."""
        ...

    def create_run_in(self, connection: Any, run: NewRun) -> bool:
        """:meth:`create_run` in the caller's open transaction on ``connection`` (a
        SQLAlchemy ``Connection`` or a psycopg 3 ``Connection`` to this journal's Postgres
        database): the run exists only if the caller commits, and it is left for the
        dispatcher, woken by a notification that Postgres delivers at that commit. Idempotent
        by run id (``False``, nothing written, when the id exists).

        A journal that cannot share the caller's transaction (in memory, SQLite), a closed
        connection, one in autocommit mode, in a failed transaction, or to another database
        raise :class:`~orchestrator.model.errors.TransactionalStartError`, writing nothing.
        """
        ...

    # -- operators' views -------------------------------------------------------------------
    def page_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        prefix: str | None = None,
        after: RunCursor | None = None,
        limit: int = 50,
    ) -> RunPage:
        """Runs newest first (creation time, then run id, both descending), filtered by
        status, workflow and run id prefix, starting after the cursor ``after``: paging by
        keyset, so a page costs the same however deep it is. One read; ``next`` is set when
        more runs may follow.
        """
        ...

    def count_runs(self, *, workflow: str | None = None) -> dict[tuple[str, RunStatus], int]:
        """How many runs there are per (workflow, status), optionally of one workflow only:
        one aggregate read."""
        ...

    def stats(self) -> JournalStats:
        """The aggregates the metrics endpoint exports (see
        :class:`~orchestrator.journal.insight.JournalStats`): a few aggregate queries, each
        exact as of its own read (not one snapshot; they may run side by side)."""
        ...
