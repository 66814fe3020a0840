"""The journal contract, one suite for every backend (in-memory, SQLite, Postgres).

What is asserted is what a caller relies on: who holds a run's lease, which facts reach its
history (once, in order, with contiguous sequence numbers), what the dispatcher is handed and
when. The races run on real threads, so on SQLite and Postgres they go through the real locks.
Time is the test's ``FakeClock``; only ``wait_closed``/``wait_wakeup`` use real (bounded) time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from orchestrator.journal.inbox import cancel_item, outcome_key, timer_key
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import (
    Batch,
    Claimed,
    Committed,
    Delivery,
    Journal,
    Lease,
    RunRef,
    TaskStart,
)
from orchestrator.model.errors import LeaseLost, PayloadError
from orchestrator.model.events import Event, EventType, NewEvent, RunInfo, RunStatus, timestamp
from orchestrator.model.records import InboxItem, OutboxTask, Timer, task_id_for
from tests.builders import completed, new_run, task
from tests.conftest import FakeClock

T = TypeVar("T")
THREADS = 8


# -- helpers -------------------------------------------------------------------------------
def create(journal: Journal, run_id: str = "r1", **kw: Any) -> None:
    assert journal.create_run(new_run(run_id, **kw))


def ref(run_id: str, workflow: str = "wf", version: str = "1") -> RunRef:
    return RunRef(run_id=run_id, workflow=workflow, version=version)


def claim(
    journal: Journal, run_id: str = "r1", owner: str = "w1", ttl: float = 60.0, after_seq: int = 0
) -> Claimed:
    claimed = journal.claim(run_id, owner, ttl, after_seq)
    assert claimed is not None, f"{owner} could not claim {run_id}"
    return claimed


def commit(journal: Journal, run_id: str = "r1", **batch: Any) -> Committed:
    """Claim the run and commit one batch, releasing the lease."""
    return journal.commit(claim(journal, run_id).lease, Batch(**batch))


def suspend(journal: Journal, run_id: str = "r1", **batch: Any) -> Committed:
    return commit(journal, run_id, status=RunStatus.SUSPENDED, **batch)


def marker(n: int, **data: Any) -> NewEvent:
    return NewEvent(type=EventType.MARKER_RECORDED, command_id=n, data=data)


def signal(key: str, **data: Any) -> InboxItem:
    return InboxItem(dedupe_key=key, type=EventType.SIGNAL_RECEIVED, data=data)


def seqs(journal: Journal, run_id: str = "r1") -> list[int]:
    return [e.seq for e in journal.history(run_id)]


def status(journal: Journal, run_id: str = "r1") -> RunStatus:
    info = journal.describe(run_id)
    assert info is not None
    return info.status


def all_at_once(fn: Callable[[int], T], n: int = THREADS) -> list[T]:
    """``fn(0) .. fn(n - 1)`` on ``n`` threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def call(i: int) -> T:
        barrier.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(call, i) for i in range(n)]
        return [f.result(timeout=30) for f in futures]


# -- runs ----------------------------------------------------------------------------------
def test_create_run_records_a_runnable_run_and_its_run_started_event(
    journal: Journal, clock: FakeClock
) -> None:
    assert journal.create_run(new_run("r1", "order", "2", args=[1, {"a": "b"}]))

    assert journal.describe("r1") == RunInfo(
        run_id="r1",
        workflow="order",
        version="2",
        status=RunStatus.RUNNABLE,
        correlation_id="r1",
        created_at=timestamp(clock()),
        args=[1, {"a": "b"}],
    )
    assert journal.history("r1") == [
        Event(
            run_id="r1",
            seq=1,
            type=EventType.RUN_STARTED,
            command_id=None,
            attempt=None,
            data={"args": [1, {"a": "b"}], "workflow": "order", "version": "2"},
            at=timestamp(clock()),
        )
    ]


def test_create_run_is_idempotent_by_run_id(journal: Journal, clock: FakeClock) -> None:
    create(journal, "r1", args=[1])
    before = (journal.describe("r1"), journal.history("r1"))
    clock.advance(5)

    assert not journal.create_run(new_run("r1", "other", "9", args=[2]))
    assert (journal.describe("r1"), journal.history("r1")) == before


def test_create_run_keeps_lineage_fields(journal: Journal) -> None:
    create(
        journal,
        "c1",
        parent_run_id="p1",
        parent_command_id=3,
        correlation_id="chain",
        continued_from_run_id="c0",
        parent_close_policy="abandon",
    )
    info = journal.describe("c1")
    assert info is not None
    assert (info.parent_run_id, info.parent_command_id, info.correlation_id) == ("p1", 3, "chain")
    assert (info.continued_from_run_id, info.parent_close_policy) == ("c0", "abandon")


def test_create_run_refuses_arguments_json_cannot_carry(journal: Journal) -> None:
    with pytest.raises(PayloadError):
        journal.create_run(new_run("r1", args=[object()]))
    assert journal.describe("r1") is None
    assert journal.create_run(new_run("r1", args=[1]))


def test_unknown_runs_read_as_absent(journal: Journal) -> None:
    assert journal.describe("nope") is None
    assert journal.history("nope") == []
    assert journal.resolve_tip("nope") is None
    assert journal.claim("nope", "w1", 60) is None
    assert journal.wait_closed("nope", 0.01) is None


def test_list_runs_newest_first_filtered_and_limited(journal: Journal, clock: FakeClock) -> None:
    create(journal, "a", workflow="x")
    clock.advance(1)
    create(journal, "b", workflow="y")
    clock.advance(1)
    create(journal, "c", workflow="x")
    claim(journal, "b")

    def ids(**kw: Any) -> list[str]:
        return [info.run_id for info in journal.list_runs(**kw)]

    assert ids() == ["c", "b", "a"]
    assert ids(workflow="x") == ["c", "a"]
    assert ids(limit=2) == ["c", "b"]
    assert ids(status=RunStatus.RUNNING) == ["b"]
    assert ids(status=RunStatus.RUNNABLE, workflow="y") == []


# -- claim ---------------------------------------------------------------------------------
def test_claim_takes_the_lease_and_reads_history_and_inbox(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    t0 = clock()
    journal.deliver("r1", signal("s1", n=1))
    clock.advance(1)
    journal.deliver("r1", signal("s2", n=2))

    claimed = claim(journal, "r1", "w1", ttl=30)

    assert claimed.lease == Lease(run_id="r1", owner="w1", token=1, expires_at=clock() + 30)
    assert claimed.run.status is RunStatus.RUNNING
    assert claimed.history == journal.history("r1")
    assert claimed.last_seq == 1
    assert [(i.dedupe_key, i.type, i.data, i.at) for i in claimed.inbox] == [
        ("s1", EventType.SIGNAL_RECEIVED, {"n": 1}, t0),
        ("s2", EventType.SIGNAL_RECEIVED, {"n": 2}, t0 + 1),
    ]
    first, second = (i.id for i in claimed.inbox)
    assert first is not None and second is not None and first < second
    assert status(journal) is RunStatus.RUNNING
    assert journal.claim("r1", "w2", 30) is None


def test_claim_reads_history_after_the_given_seq(journal: Journal) -> None:
    create(journal)
    commit(journal, events=[marker(1), marker(2)])

    claimed = claim(journal, after_seq=2)

    assert [e.seq for e in claimed.history] == [3]
    assert claimed.last_seq == 3


def test_a_claim_hands_over_history_and_inbox_exactly_as_stored(journal: Journal) -> None:
    create(journal)
    nested = {"text": 'naïve "quoted" \u2603', "list": [1, 2.5, None, True], "big": 2**53 + 1}
    commit(journal, events=[marker(1, **nested), marker(2)])
    journal.deliver("r1", signal("s-b", n=1, text="é"))
    journal.deliver("r1", signal("s-a", n=2))

    claimed = claim(journal)

    assert claimed.history == journal.history("r1")
    assert claimed.history[1].data == nested
    assert [(i.dedupe_key, i.data) for i in claimed.inbox] == [
        ("s-b", {"n": 1, "text": "é"}),
        ("s-a", {"n": 2}),
    ]
    assert all(isinstance(i.id, int) and i.at is not None for i in claimed.inbox)


def test_claim_succeeds_once_the_lease_expires_and_raises_the_token(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    assert claim(journal, owner="w1", ttl=10).lease.token == 1
    clock.advance(9)
    assert journal.claim("r1", "w2", 10) is None
    clock.advance(1)
    assert claim(journal, owner="w2", ttl=10).lease.token == 2


def test_claim_needs_work_suspended_and_ended_runs_are_not_claimed(journal: Journal) -> None:
    create(journal)
    suspend(journal)
    assert journal.claim("r1", "w1", 60) is None

    journal.deliver("r1", signal("s1"))
    commit(journal, status=RunStatus.BLOCKED, reason="no code")
    claimed = claim(journal)  # a blocked run is claimed to retry it
    journal.commit(claimed.lease, Batch(status=RunStatus.COMPLETED))
    assert journal.claim("r1", "w1", 60) is None


def test_concurrent_claims_exactly_one_wins_and_the_token_rises_by_one(journal: Journal) -> None:
    create(journal)
    for round_ in range(1, 4):
        results = all_at_once(lambda i: journal.claim("r1", f"w{i}", 60))
        winners = [c for c in results if c is not None]
        assert len(winners) == 1, f"round {round_}: {len(winners)} claims succeeded"
        assert winners[0].lease.token == round_
        journal.release(winners[0].lease)


# -- commit --------------------------------------------------------------------------------
def test_commit_appends_events_with_the_next_seqs(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    lease = claim(journal).lease
    clock.advance(5)

    first = journal.commit(
        lease,
        Batch(events=[marker(1, k="v"), NewEvent(type=EventType.MARKER_RECORDED, at=123.0)]),
        release=False,
    )
    second = journal.commit(lease, Batch(events=[marker(3)]))

    assert (first.last_seq, first.pending_inbox) == (3, False)
    assert (second.last_seq, second.pending_inbox) == (4, False)
    history = journal.history("r1")
    assert [e.seq for e in history] == [1, 2, 3, 4]
    assert history[1] == Event(
        run_id="r1",
        seq=2,
        type=EventType.MARKER_RECORDED,
        command_id=1,
        attempt=None,
        data={"k": "v"},
        at=timestamp(clock()),
    )
    assert history[2].at == timestamp(123.0)
    assert journal.history("r1", after_seq=3) == history[3:]


def test_commit_without_a_status_leaves_the_run_runnable_on_release(journal: Journal) -> None:
    create(journal)
    commit(journal, events=[marker(1)])
    assert status(journal) is RunStatus.RUNNABLE
    assert claim(journal).lease.token == 2


def test_commit_absorbs_inbox_items_and_their_keys_stay_taken(journal: Journal) -> None:
    create(journal)
    journal.deliver("r1", signal("s1"))
    journal.deliver("r1", signal("s2"))
    claimed = claim(journal)
    item = claimed.inbox[0]
    assert item.id is not None

    committed = journal.commit(
        claimed.lease,
        Batch(
            events=[NewEvent(type=item.type, data=item.data)],
            absorbed=[item.id],
            status=RunStatus.SUSPENDED,
        ),
    )

    assert committed.pending_inbox
    assert status(journal) is RunStatus.RUNNABLE
    assert [i.dedupe_key for i in claim(journal).inbox] == ["s2"]
    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=False)


def test_commit_leaving_inbox_items_keeps_the_replay_in_flight(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)  # a replay is in flight from here on
    lease = claim(journal).lease
    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=True)  # the holder will see it

    committed = journal.commit(lease, Batch(status=RunStatus.SUSPENDED))

    assert committed.pending_inbox  # so the committer dispatches the next replay itself
    assert status(journal) is RunStatus.RUNNABLE
    assert journal.take_runnable(redispatch_after=60) == []
    clock.advance(60)
    assert journal.take_runnable(redispatch_after=60) == [ref("r1")]


def test_suspended_run_is_dispatched_by_the_next_delivery_once(journal: Journal) -> None:
    create(journal)
    committed = suspend(journal)
    assert (committed.pending_inbox, status(journal)) == (False, RunStatus.SUSPENDED)

    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=True, dispatch=ref("r1"))
    assert status(journal) is RunStatus.RUNNABLE
    assert journal.deliver("r1", signal("s2")) == Delivery(accepted=True)


def test_blocked_run_keeps_its_reason_and_is_retried_after_redispatch_after(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    clock.advance(100)  # the replay marked in flight at creation is long gone
    commit(journal, status=RunStatus.BLOCKED, reason="nondeterminism at command 3")
    info = journal.describe("r1")
    assert info is not None
    assert (info.status, info.reason) == (RunStatus.BLOCKED, "nondeterminism at command 3")

    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=True)
    assert status(journal) is RunStatus.BLOCKED
    assert journal.take_runnable(redispatch_after=30) == []
    clock.advance(30)
    assert journal.take_runnable(redispatch_after=30) == [ref("r1")]
    assert [i.dedupe_key for i in claim(journal).inbox] == ["s1"]


def test_commit_stores_tasks_and_timers(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    now = clock()
    due = task(command_id=1, timeout_seconds=5.0, queue="payments")
    delayed = task(command_id=2, available_at=now + 30, kind="compensation", target_activity_id=1)
    suspend(
        journal, tasks=[due, delayed], timers=[Timer(run_id="r1", command_id=3, fire_at=now + 10)]
    )

    assert journal.next_wakeup() == now + 10
    # The due task counts as published at the commit: its committer publishes it.
    assert journal.take_unpublished(republish_after=60) == []
    clock.advance(30)
    assert journal.take_unpublished(republish_after=60) == [delayed]
    assert journal.next_wakeup() == now + 10


def test_commit_with_a_terminal_status_drops_inbox_timers_and_tasks(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    pending = task(command_id=1, available_at=clock() + 5, timeout_seconds=5)
    running = task(command_id=2, timeout_seconds=5)
    suspend(
        journal,
        tasks=[pending, running],
        timers=[Timer(run_id="r1", command_id=3, fire_at=clock() + 5)],
    )
    assert journal.mark_started(running.task_id) is TaskStart.STARTED
    journal.deliver("r1", signal("s1"))
    claimed = claim(journal)
    clock.advance(1)

    committed = journal.commit(
        claimed.lease,
        Batch(
            events=[NewEvent(type=EventType.RUN_COMPLETED)],
            status=RunStatus.COMPLETED,
            result={"ok": 1},
        ),
    )

    assert (committed.last_seq, committed.pending_inbox) == (2, False)
    info = journal.describe("r1")
    assert info is not None
    assert (info.status, info.result, info.closed_at) == (
        RunStatus.COMPLETED,
        {"ok": 1},
        timestamp(clock()),
    )
    assert journal.next_wakeup() is None
    clock.advance(3600)
    assert journal.fire_due_timers() == []
    assert journal.expire_tasks() == []
    assert journal.take_unpublished(republish_after=1) == []
    assert journal.mark_started(pending.task_id) is TaskStart.ENDED
    assert journal.take_runnable(redispatch_after=0) == []
    assert journal.claim("r1", "w1", 60) is None
    assert journal.deliver("r1", signal("s2")) == Delivery(accepted=False)


def test_failed_run_keeps_its_error(journal: Journal) -> None:
    create(journal)
    error = {"type": "ValueError", "message": "bad order", "traceback": "Traceback ..."}
    commit(journal, status=RunStatus.FAILED, error=error)
    info = journal.describe("r1")
    assert info is not None
    assert (info.status, info.error, info.result) == (RunStatus.FAILED, error, None)


def test_stale_lease_holder_gets_lease_lost_and_writes_nothing(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    stale = claim(journal, owner="w1", ttl=10).lease
    clock.advance(10)
    fresh = claim(journal, owner="w2", ttl=10).lease

    with pytest.raises(LeaseLost) as lost:
        journal.commit(
            stale,
            Batch(
                events=[marker(1), NewEvent(type=EventType.RUN_COMPLETED)],
                tasks=[task()],
                timers=[Timer(run_id="r1", command_id=2, fire_at=clock())],
                status=RunStatus.COMPLETED,
                result="stale",
            ),
        )

    assert (lost.value.run_id, lost.value.owner, lost.value.token) == ("r1", "w1", 1)
    assert seqs(journal) == [1]
    assert status(journal) is RunStatus.RUNNING
    assert journal.next_wakeup() is None
    clock.advance(3600)
    assert journal.take_unpublished(republish_after=0) == []
    assert journal.fire_due_timers() == []
    journal.release(stale)  # a no-op: the lease is w2's
    assert journal.commit(fresh, Batch(events=[marker(1)])).last_seq == 2


def test_the_fencing_token_not_the_owner_name_proves_the_lease(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    before_restart = claim(journal, owner="node-1", ttl=10).lease
    clock.advance(10)
    after_restart = claim(journal, owner="node-1", ttl=10).lease

    with pytest.raises(LeaseLost):
        journal.commit(before_restart, Batch(events=[marker(1)]))
    assert seqs(journal) == [1]
    assert journal.commit(after_restart, Batch(events=[marker(1)])).last_seq == 2


def test_expired_lease_not_taken_over_still_commits(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    lease = claim(journal, ttl=10).lease
    clock.advance(60)
    assert journal.commit(lease, Batch(events=[marker(1)])).last_seq == 2


def test_commit_after_release_raises_lease_lost(journal: Journal) -> None:
    create(journal)
    lease = claim(journal).lease
    journal.release(lease)
    with pytest.raises(LeaseLost):
        journal.commit(lease, Batch(events=[marker(1)]))
    assert seqs(journal) == [1]


def test_commit_that_cannot_be_stored_writes_nothing(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    lease = claim(journal).lease
    with pytest.raises(PayloadError):
        journal.commit(
            lease,
            Batch(
                events=[marker(1), NewEvent(type=EventType.RUN_COMPLETED)],
                tasks=[task()],
                timers=[Timer(run_id="r1", command_id=2, fire_at=clock() + 1)],
                status=RunStatus.COMPLETED,
                result=object(),
            ),
        )
    assert seqs(journal) == [1]
    assert status(journal) is RunStatus.RUNNING
    assert journal.next_wakeup() is None
    assert journal.take_unpublished(republish_after=0) == []
    assert journal.commit(lease, Batch(events=[marker(1)])).last_seq == 2


# -- children, cancellation, continue-as-new -----------------------------------------------
def start_children(journal: Journal, **policies: str) -> None:
    """Parent ``p`` starts one child per keyword (its ``parent_close_policy``) and suspends."""
    children = [
        new_run(
            child_id,
            "child",
            args=[5],
            parent_run_id="p",
            parent_command_id=n,
            parent_close_policy=policy,
        )
        for n, (child_id, policy) in enumerate(policies.items(), 1)
    ]
    committed = suspend(
        journal,
        "p",
        events=[
            NewEvent(type=EventType.CHILD_STARTED, command_id=c.parent_command_id) for c in children
        ],
        children=children,
    )
    assert list(committed.dispatch) == [ref(c.run_id, "child") for c in children]


def test_commit_inserts_children_as_runnable_runs_in_flight(journal: Journal) -> None:
    create(journal, "p")
    start_children(journal, c1="cancel")

    info = journal.describe("c1")
    assert info is not None
    assert (info.status, info.args, info.parent_run_id, info.parent_command_id) == (
        RunStatus.RUNNABLE,
        [5],
        "p",
        1,
    )
    assert [e.type for e in journal.history("c1")] == [EventType.RUN_STARTED]
    assert journal.take_runnable(redispatch_after=60) == []


@pytest.mark.parametrize(
    ("end", "batch", "event_type", "data"),
    [
        ("completed", {"result": "done"}, EventType.CHILD_COMPLETED, {"result": "done"}),
        ("failed", {"error": {"type": "E"}}, EventType.CHILD_FAILED, {"error": {"type": "E"}}),
        ("cancelled", {"reason": "stop"}, EventType.CHILD_CANCELLED, {"reason": "stop"}),
    ],
)
def test_a_childs_end_reaches_its_parents_inbox(
    journal: Journal, end: str, batch: dict[str, Any], event_type: EventType, data: dict[str, Any]
) -> None:
    create(journal, "p")
    start_children(journal, c1="cancel")

    committed = commit(journal, "c1", status=RunStatus(end), **batch)

    assert list(committed.dispatch) == [ref("p")]
    [item] = claim(journal, "p").inbox
    assert (item.dedupe_key, item.type, item.command_id) == ("child:1", event_type, 1)
    assert item.data == {"child_run_id": "c1", **data}


def test_absorbing_a_cancel_request_cancels_children_with_the_cancel_policy(
    journal: Journal,
) -> None:
    create(journal, "p")
    start_children(journal, c1="cancel", c2="abandon")
    suspend(journal, "c1")
    suspend(journal, "c2")
    journal.deliver("p", cancel_item("stop"))
    claimed = claim(journal, "p")
    [item] = claimed.inbox
    assert item.id is not None

    committed = journal.commit(
        claimed.lease,
        Batch(
            events=[NewEvent(type=item.type, data=item.data)],
            absorbed=[item.id],
            status=RunStatus.SUSPENDED,
        ),
    )

    assert list(committed.dispatch) == [ref("c1", "child")]
    [cancel] = claim(journal, "c1").inbox
    assert (cancel.dedupe_key, cancel.type, cancel.data) == (
        "cancel",
        EventType.CANCEL_REQUESTED,
        {"reason": "stop"},
    )
    assert journal.claim("c2", "w1", 60) is None


def test_a_parents_end_cancels_its_unfinished_children(journal: Journal) -> None:
    create(journal, "p")
    start_children(journal, c1="cancel")
    journal.deliver("p", signal("s1"))

    commit(journal, "p", status=RunStatus.COMPLETED)

    [cancel] = claim(journal, "c1").inbox
    assert cancel.type is EventType.CANCEL_REQUESTED
    assert "p" in str(cancel.data["reason"])


def test_continue_as_new_links_the_chain_and_resolve_tip_follows_it(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal, "r1", parent_run_id="p", parent_command_id=1)
    create(journal, "p")
    for this, successor in (("r1", "r2"), ("r2", "r3")):
        clock.advance(1)
        continuation = new_run(
            successor,
            args=[successor],
            parent_run_id="p",
            parent_command_id=1,
            correlation_id="r1",
            continued_from_run_id=this,
        )
        committed = commit(
            journal,
            this,
            events=[NewEvent(type=EventType.RUN_CONTINUED)],
            status=RunStatus.CONTINUED,
            continuation=continuation,
        )
        assert list(committed.dispatch) == [ref(successor)]

    first, last = journal.describe("r1"), journal.describe("r3")
    assert first is not None and last is not None
    assert (first.status, first.continued_to_run_id) == (RunStatus.CONTINUED, "r2")
    assert first.closed_at is not None
    assert (last.continued_from_run_id, last.correlation_id, last.args) == ("r2", "r1", ["r3"])
    assert [journal.resolve_tip(r) for r in ("r1", "r2", "r3")] == ["r3", "r3", "r3"]
    assert journal.resolve_tip("p") == "p"
    assert claim(journal, "p").inbox == []  # continuing is not ending


def test_a_continuation_inherits_the_signals_and_cancellation_its_predecessor_did_not_absorb(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    lease = claim(journal).lease
    # Sent to the chain while its tip decides to continue: not the ending run's to absorb.
    assert journal.deliver("r1", signal("s1", name="go")).accepted
    assert journal.deliver("r1", cancel_item("stop")).accepted
    outcome = InboxItem(
        dedupe_key=outcome_key(1, 1), type=EventType.ACTIVITY_COMPLETED, command_id=1, attempt=1
    )
    assert journal.deliver("r1", outcome).accepted
    continuation = new_run("r2", correlation_id="r1", continued_from_run_id="r1")
    batch = Batch(
        events=[NewEvent(type=EventType.RUN_CONTINUED)],
        status=RunStatus.CONTINUED,
        continuation=continuation,
    )
    journal.commit(lease, batch)

    inherited = claim(journal, "r2").inbox
    assert [(i.type, i.dedupe_key) for i in inherited] == [
        (EventType.SIGNAL_RECEIVED, "s1"),
        (EventType.CANCEL_REQUESTED, cancel_item(None).dedupe_key),
    ]
    assert inherited[0].data == {"name": "go"}
    assert journal.claim("r1", "w2", 60) is None  # the predecessor keeps nothing to do
    # A retried send of the same signal is recognised by the continuation.
    assert not journal.deliver("r2", signal("s1", name="go")).accepted


# -- release -------------------------------------------------------------------------------
def test_release_returns_the_run_with_its_replay_still_in_flight(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    lease = claim(journal).lease

    journal.release(lease, reason="version 1 is not loaded here")

    info = journal.describe("r1")
    assert info is not None
    assert (info.status, info.reason) == (RunStatus.RUNNABLE, "version 1 is not loaded here")
    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=True)
    assert journal.take_runnable(redispatch_after=60) == []
    clock.advance(60)
    assert journal.take_runnable(redispatch_after=60) == [ref("r1")]
    assert claim(journal).lease.token == 2


def test_release_by_a_former_holder_changes_nothing(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    stale = claim(journal, owner="w1", ttl=1).lease
    clock.advance(1)
    fresh = claim(journal, owner="w2").lease

    journal.release(stale)

    assert status(journal) is RunStatus.RUNNING
    assert journal.claim("r1", "w3", 60) is None
    assert journal.commit(fresh, Batch(events=[marker(1)])).last_seq == 2


# -- deliver -------------------------------------------------------------------------------
def test_deliver_to_an_unknown_or_ended_run_is_not_accepted(journal: Journal) -> None:
    assert journal.deliver("nope", signal("s1")) == Delivery(accepted=False)
    create(journal)
    commit(journal, status=RunStatus.CANCELLED, reason="stop")
    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=False)


def test_deliver_keeps_the_first_item_of_a_dedupe_key(journal: Journal) -> None:
    create(journal)
    assert journal.deliver("r1", signal("s1", n=1)).accepted
    assert not journal.deliver("r1", signal("s1", n=2)).accepted
    assert journal.deliver("r2-unknown", signal("s1")) == Delivery(accepted=False)
    assert [(i.dedupe_key, i.data) for i in claim(journal).inbox] == [("s1", {"n": 1})]


def test_concurrent_deliveries_of_one_key_are_journaled_once(journal: Journal) -> None:
    create(journal)
    suspend(journal)

    deliveries = all_at_once(lambda i: journal.deliver("r1", signal("once", sender=i)))

    assert sum(d.accepted for d in deliveries) == 1
    assert [d.dispatch for d in deliveries if d.dispatch is not None] == [ref("r1")]
    claimed = claim(journal)
    assert len(claimed.inbox) == 1
    [item] = claimed.inbox
    assert item.id is not None
    journal.commit(
        claimed.lease,
        Batch(
            events=[NewEvent(type=item.type, data=item.data)],
            absorbed=[item.id],
            status=RunStatus.SUSPENDED,
        ),
    )
    signals = [e for e in journal.history("r1") if e.type is EventType.SIGNAL_RECEIVED]
    assert len(signals) == 1


def test_deliver_while_the_lease_is_held_leaves_the_holder_to_see_it(journal: Journal) -> None:
    create(journal)
    lease = claim(journal).lease
    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=True)
    assert status(journal) is RunStatus.RUNNING
    assert journal.commit(lease, Batch(status=RunStatus.SUSPENDED)).pending_inbox


def test_deliver_dispatches_only_when_no_lease_is_live(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    claim(journal, ttl=10)
    # A node registering the run's version forgets the replay in flight.
    assert journal.register_node("n1", [("wf", "1")], node_ttl=60) == 1

    assert journal.deliver("r1", signal("s1")) == Delivery(accepted=True)
    clock.advance(10)
    assert journal.deliver("r1", signal("s2")) == Delivery(accepted=True, dispatch=ref("r1"))


def test_deliver_with_a_task_id_finishes_the_task(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    charge = task(timeout_seconds=10)
    suspend(journal, tasks=[charge])
    outcome = completed(1, "ch_1")

    assert journal.deliver("r1", outcome, task_id=charge.task_id).dispatch == ref("r1")

    assert journal.mark_started(charge.task_id) is TaskStart.ENDED
    clock.advance(3600)
    assert journal.take_unpublished(republish_after=60) == []
    assert journal.expire_tasks() == []


def test_an_outcome_for_an_attempt_the_run_is_not_waiting_for_is_refused(
    journal: Journal,
) -> None:
    create(journal)
    charge = task()
    suspend(journal, tasks=[charge])
    forged = completed(1, "forged", attempt=7)
    assert not journal.deliver("r1", forged, task_id=task_id_for("r1", 1, 7)).accepted
    create(journal, "r2")
    stolen = completed(1, "wrong run")
    assert not journal.deliver("r2", stolen, task_id=charge.task_id).accepted
    assert [e.type for e in journal.history("r2")] == [EventType.RUN_STARTED]
    assert status(journal, "r1") is RunStatus.SUSPENDED  # nothing waits in its inbox
    assert status(journal, "r2") is RunStatus.RUNNABLE


def test_mark_started_once_per_unfinished_task(journal: Journal) -> None:
    create(journal)
    suspend(journal, tasks=[task()])
    assert journal.mark_started("unknown") is TaskStart.ENDED
    assert journal.mark_started(task().task_id) is TaskStart.STARTED
    assert journal.mark_started(task().task_id) is TaskStart.RUNNING
    assert journal.deliver("r1", completed(1, "ch_1"), task_id=task().task_id).accepted
    assert journal.mark_started(task().task_id) is TaskStart.ENDED


def test_a_task_renewed_unstarted_is_not_taken_for_lost(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    quiet, renewed, started = (task(command_id=i) for i in (1, 2, 3))
    suspend(journal, tasks=[quiet, renewed, started])
    assert journal.mark_started(started.task_id) is TaskStart.STARTED
    clock.advance(40)
    assert journal.renew_unstarted(renewed.task_id)
    assert not journal.renew_unstarted(started.task_id)
    assert not journal.renew_unstarted("unknown")
    clock.advance(30)
    assert journal.take_unpublished(republish_after=60) == [replace(quiet, resent=True)]
    clock.advance(30)
    assert journal.take_unpublished(republish_after=60) == [replace(renewed, resent=True)]
    assert journal.deliver("r1", completed(1, "ch_1"), task_id=quiet.task_id).accepted
    assert not journal.renew_unstarted(quiet.task_id)


# -- timers and timeouts -------------------------------------------------------------------
def test_timers_fire_only_when_due(journal: Journal, clock: FakeClock) -> None:
    create(journal)
    suspend(journal, timers=[Timer(run_id="r1", command_id=4, fire_at=clock() + 30)])

    clock.advance(29)
    assert journal.fire_due_timers() == []
    clock.advance(1)
    assert journal.fire_due_timers() == [ref("r1")]
    assert journal.fire_due_timers() == []
    assert journal.next_wakeup() is None

    [item] = claim(journal).inbox
    assert (item.dedupe_key, item.type, item.command_id) == (
        timer_key(4),
        EventType.TIMER_FIRED,
        4,
    )


def test_fire_due_timers_takes_the_oldest_first_up_to_the_limit(
    journal: Journal, clock: FakeClock
) -> None:
    for run_id, delay in (("a", 20), ("b", 10)):
        create(journal, run_id)
        suspend(
            journal, run_id, timers=[Timer(run_id=run_id, command_id=1, fire_at=clock() + delay)]
        )
    clock.advance(30)
    assert journal.fire_due_timers(limit=1) == [ref("b")]
    assert journal.fire_due_timers(limit=1) == [ref("a")]


def test_a_timer_firing_under_a_held_lease_waits_for_the_holder(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    lease = claim(journal).lease
    journal.commit(
        lease, Batch(timers=[Timer(run_id="r1", command_id=1, fire_at=clock() + 1)]), release=False
    )
    clock.advance(1)
    assert journal.fire_due_timers() == []
    assert journal.commit(lease, Batch(status=RunStatus.SUSPENDED)).pending_inbox


def test_a_started_activity_past_its_deadline_times_out_once(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    charge, never_started = (
        task(command_id=1, timeout_seconds=10),
        task(command_id=2, timeout_seconds=1),
    )
    suspend(journal, tasks=[charge, never_started])
    assert journal.mark_started(charge.task_id) is TaskStart.STARTED

    clock.advance(9)
    assert journal.expire_tasks() == []
    clock.advance(1)
    assert journal.expire_tasks() == [ref("r1")]
    assert journal.expire_tasks() == []

    [item] = claim(journal).inbox
    assert (item.dedupe_key, item.type, item.command_id, item.attempt) == (
        outcome_key(1, 1),
        EventType.ACTIVITY_TIMED_OUT,
        1,
        1,
    )
    assert item.data["error"]["type"] == "TimeoutError"
    assert item.data["error"]["message"]
    assert item.data["error"]["traceback"] is None
    late = InboxItem(dedupe_key=outcome_key(1, 1), type=EventType.ACTIVITY_COMPLETED, attempt=1)
    assert not journal.deliver("r1", late, task_id=charge.task_id).accepted
    assert journal.mark_started(charge.task_id) is TaskStart.ENDED


def test_an_expired_task_is_finished_even_when_its_outcome_was_already_journaled(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    answered, silent = task(command_id=1, timeout_seconds=5), task(command_id=2, timeout_seconds=9)
    suspend(journal, tasks=[answered, silent])
    assert journal.mark_started(answered.task_id) is TaskStart.STARTED
    assert journal.mark_started(silent.task_id) is TaskStart.STARTED
    outcome = InboxItem(dedupe_key=outcome_key(1, 1), type=EventType.ACTIVITY_FAILED, attempt=1)
    assert journal.deliver("r1", outcome).accepted  # without its task id: the task stays open
    clock.advance(10)

    assert journal.expire_tasks(limit=1) == []  # its timeout is a duplicate outcome
    assert journal.expire_tasks(limit=1) == []  # the run's replay is in flight already
    assert [i.type for i in claim(journal).inbox] == [
        EventType.ACTIVITY_FAILED,
        EventType.ACTIVITY_TIMED_OUT,
    ]


def test_a_compensation_past_its_deadline_fails_with_a_timeout(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    refund = task(command_id=5, kind="compensation", timeout_seconds=3, target_activity_id=1)
    suspend(journal, tasks=[refund])
    assert journal.mark_started(refund.task_id) is TaskStart.STARTED
    clock.advance(3)

    assert journal.expire_tasks() == [ref("r1")]

    [item] = claim(journal).inbox
    assert (item.dedupe_key, item.type) == (outcome_key(5, 1), EventType.COMPENSATION_FAILED)
    assert item.data["error"]["type"] == "TimeoutError"


# -- the dispatcher ------------------------------------------------------------------------
def test_take_unpublished_republishes_tasks_not_started_in_time(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    lost, started = task(command_id=1), task(command_id=2)
    suspend(journal, tasks=[lost, started])
    assert journal.mark_started(started.task_id) is TaskStart.STARTED

    clock.advance(59)
    assert journal.take_unpublished(republish_after=60) == []
    clock.advance(1)
    # A copy of a message taken for lost: the original may still be queued.
    assert journal.take_unpublished(republish_after=60) == [replace(lost, resent=True)]
    assert journal.take_unpublished(republish_after=60) == []
    clock.advance(60)
    assert journal.take_unpublished(republish_after=60) == [replace(lost, resent=True)]


def test_take_unpublished_publishes_delayed_tasks_when_due_up_to_the_limit(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    now = clock()
    retries = [task(command_id=n, available_at=now + 10 * n) for n in (1, 2, 3)]
    suspend(journal, tasks=retries)
    assert journal.next_wakeup() == now + 10

    assert journal.take_unpublished(republish_after=60) == []
    clock.advance(30)
    assert journal.take_unpublished(republish_after=60, limit=2) == retries[:2]
    assert journal.next_wakeup() == now + 30
    assert journal.take_unpublished(republish_after=60, limit=2) == retries[2:]
    assert journal.next_wakeup() is None


def test_take_runnable_leaves_a_replay_in_flight_for_redispatch_after(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    assert journal.take_runnable(redispatch_after=60) == []
    clock.advance(59)
    assert journal.take_runnable(redispatch_after=60) == []
    clock.advance(1)
    assert journal.take_runnable(redispatch_after=60) == [ref("r1")]
    assert journal.take_runnable(redispatch_after=60) == []


def test_take_runnable_takes_runs_that_need_a_replay(journal: Journal, clock: FakeClock) -> None:
    for run_id in ("free", "live", "expired", "blocked", "suspended", "done"):
        create(journal, run_id)
    claim(journal, "live", ttl=100)
    claim(journal, "expired", ttl=10)
    commit(journal, "blocked", status=RunStatus.BLOCKED)
    suspend(journal, "suspended")
    commit(journal, "done", status=RunStatus.COMPLETED)
    clock.advance(10)

    taken = journal.take_runnable(redispatch_after=0)

    assert sorted(r.run_id for r in taken) == ["blocked", "expired", "free"]
    assert journal.take_runnable(redispatch_after=1) == []


def test_take_runnable_respects_the_limit(journal: Journal, clock: FakeClock) -> None:
    for n in range(3):
        create(journal, f"r{n}")
    clock.advance(60)
    first = journal.take_runnable(redispatch_after=60, limit=2)
    rest = journal.take_runnable(redispatch_after=60, limit=2)
    assert len(first) == 2 and len(rest) == 1
    assert sorted(r.run_id for r in first + rest) == ["r0", "r1", "r2"]


def test_registered_versions_gate_take_runnable_and_revive_waiting_runs(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal, "a", version="1")
    create(journal, "b", version="1")
    create(journal, "c", version="2")
    clock.advance(60)
    assert journal.take_runnable(redispatch_after=60, node_ttl=30) == []

    assert journal.register_node("n1", [("wf", "1")], node_ttl=30) == 2
    assert journal.live_versions(node_ttl=30) == {("wf", "1")}
    assert sorted(r.run_id for r in journal.take_runnable(redispatch_after=60, node_ttl=30)) == [
        "a",
        "b",
    ]
    assert journal.register_node("n2", [("wf", "1")], node_ttl=30) == 0
    assert journal.register_node("n1", [("wf", "2")], node_ttl=30) == 1
    assert journal.live_versions(node_ttl=30) == {("wf", "1"), ("wf", "2")}
    assert journal.take_runnable(redispatch_after=60, node_ttl=30) == [ref("c", version="2")]
    journal.unregister_node("n2")
    assert journal.live_versions(node_ttl=30) == {("wf", "2")}
    clock.advance(30)
    assert journal.live_versions(node_ttl=30) == set()


def test_next_wakeup_is_the_earliest_timer_or_delayed_task(
    journal: Journal, clock: FakeClock
) -> None:
    assert journal.next_wakeup() is None
    create(journal)
    now = clock()
    suspend(
        journal,
        tasks=[task(command_id=1), task(command_id=2, available_at=now + 20)],
        timers=[Timer(run_id="r1", command_id=3, fire_at=now + 40)],
    )
    assert journal.next_wakeup() == now + 20


def test_wait_wakeup_returns_within_its_timeout(journal: Journal) -> None:
    started = time.monotonic()
    journal.wait_wakeup(0.05)
    journal.wait_wakeup(0)
    assert time.monotonic() - started < 1.0


# -- waiting for the end -------------------------------------------------------------------
def test_wait_closed_returns_when_another_thread_ends_the_run(journal: Journal) -> None:
    create(journal)
    lease = claim(journal).lease
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(journal.wait_closed, "r1", 10.0)
        journal.commit(lease, Batch(status=RunStatus.COMPLETED, result=42))
        info = waiter.result(timeout=5)
    assert info is not None
    assert (info.status, info.result) == (RunStatus.COMPLETED, 42)
    assert time.monotonic() - started < 5


def test_wait_closed_times_out_with_none(journal: Journal) -> None:
    create(journal)
    started = time.monotonic()
    assert journal.wait_closed("r1", 0.05) is None
    assert 0.04 <= time.monotonic() - started < 2


def test_wait_closed_on_an_ended_run_returns_at_once(journal: Journal) -> None:
    create(journal)
    commit(journal, status=RunStatus.FAILED, error={"type": "E"})
    info = journal.wait_closed("r1", 0)
    assert info is not None and info.status is RunStatus.FAILED


# -- many writers --------------------------------------------------------------------------
def test_many_writers_leave_every_history_contiguous_and_complete(journal: Journal) -> None:
    runs, commits_each = [f"r{n}" for n in range(4)], 6
    for run_id in runs:
        create(journal, run_id)
    tokens: dict[str, list[int]] = {run_id: [] for run_id in runs}
    tokens_lock = threading.Lock()

    def writer(i: int) -> None:
        deadline = time.monotonic() + 20
        for k in range(commits_each):
            run_id = runs[(i + k) % len(runs)]
            while (claimed := journal.claim(run_id, f"w{i}", 60)) is None:
                assert time.monotonic() < deadline, f"w{i} starved on {run_id}"
                time.sleep(0.001)
            with tokens_lock:
                tokens[run_id].append(claimed.lease.token)
            batch = Batch(
                events=[marker(1, writer=i, k=k, part=0), marker(2, writer=i, k=k, part=1)]
            )
            journal.commit(claimed.lease, batch)

    all_at_once(writer)

    written: set[tuple[int, int, int]] = set()
    for run_id in runs:
        history = journal.history(run_id)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        written |= {(e.data["writer"], e.data["k"], e.data["part"]) for e in history[1:]}
        assert sorted(tokens[run_id]) == list(range(1, len(tokens[run_id]) + 1))
    expected = {
        (i, k, part) for i in range(THREADS) for k in range(commits_each) for part in (0, 1)
    }
    assert written == expected
    assert sum(len(journal.history(r)) - 1 for r in runs) == len(expected)


def test_deliver_and_claim_is_one_step_for_a_free_run(journal: Journal) -> None:
    create(journal)
    charge = task()
    suspend(journal, tasks=[charge])
    outcome = completed(1, "ch_1")
    delivery, claimed, committed = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w1", ttl=30, after_seq=0
    )
    assert committed is None
    assert delivery == Delivery(accepted=True)
    assert claimed is not None
    assert claimed.lease.owner == "w1"
    assert [i.dedupe_key for i in claimed.inbox] == [outcome_key(1, 1)]
    assert [e.type for e in claimed.history] == [EventType.RUN_STARTED]
    assert status(journal) is RunStatus.RUNNING
    # A second outcome while the lease is held is journaled for the holder, not claimed.
    again, none, _ = journal.deliver_and_claim("r1", signal("s1"), owner="w2", ttl=30, after_seq=0)
    assert again == Delivery(accepted=True) and none is None
    # A duplicate is neither journaled nor claimed.
    dup, nothing, _ = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w2", ttl=30
    )
    assert not dup.accepted and nothing is None


def test_deliver_and_claim_of_an_outcome_not_awaited_claims_and_writes_nothing(
    journal: Journal,
) -> None:
    create(journal)
    suspend(journal, tasks=[task()])
    stray = completed(2, "stray")
    delivery, claimed, committed = journal.deliver_and_claim(
        "r1", stray, task_id=task(command_id=2).task_id, owner="w1", ttl=30
    )
    assert delivery == Delivery(accepted=False) and claimed is None and committed is None
    assert status(journal) is RunStatus.SUSPENDED
    # Nothing was left behind: the awaited outcome makes the next claim, and is all it finds.
    outcome = completed(1)
    _, claimed, _ = journal.deliver_and_claim(
        "r1", outcome, task_id=task().task_id, owner="w2", ttl=30
    )
    assert claimed is not None and claimed.lease.token == 2
    assert [i.dedupe_key for i in claimed.inbox] == [outcome_key(1, 1)]


def test_deliver_and_claim_hands_over_earlier_inbox_items_first(journal: Journal) -> None:
    create(journal)
    charge = task()
    suspend(journal, tasks=[charge])
    outcome = completed(1, ("ch", 1))
    journal.deliver("r1", signal("s1"))  # a replay of r1 is on its way now
    # The node that could replay it went away and came back: r1 is dispatchable again, with
    # the signal waiting; the outcome's deliverer claims it and gets both, in order.
    assert journal.register_node("n1", [("wf", "1")], node_ttl=60) == 1
    _, claimed, _ = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w1", ttl=30
    )
    assert claimed is not None
    assert [i.dedupe_key for i in claimed.inbox] == ["s1", outcome_key(1, 1)]
    # The payload reads as it will on every later replay: as JSON carries it.
    assert claimed.inbox[-1].data == {"result": ["ch", 1]} and claimed.inbox[-1].id is not None


def test_deliver_and_claim_of_a_signal_claims_a_free_run_once_per_key(journal: Journal) -> None:
    create(journal)
    suspend(journal)
    delivery, claimed, _ = journal.deliver_and_claim("r1", signal("s1"), owner="w1", ttl=30)
    assert delivery == Delivery(accepted=True) and claimed is not None
    assert [i.dedupe_key for i in claimed.inbox] == ["s1"] and claimed.lease.token == 2
    journal.commit(claimed.lease, Batch())  # s1 left in the inbox, for the next claim
    # Free and dispatchable again (its node came back), with s1 waiting: a repeat of s1 is
    # refused and claims nothing; a new signal claims the run and finds both.
    assert journal.register_node("n1", [("wf", "1")], node_ttl=60) == 1
    again, none, _ = journal.deliver_and_claim("r1", signal("s1"), owner="w2", ttl=30)
    assert again == Delivery(accepted=False) and none is None
    _, claimed, _ = journal.deliver_and_claim("r1", signal("s2"), owner="w2", ttl=30)
    assert claimed is not None and claimed.lease.token == 3
    assert [i.dedupe_key for i in claimed.inbox] == ["s1", "s2"]


def test_deliver_and_claim_commits_what_decide_returns_in_the_same_step(
    journal: Journal,
) -> None:
    create(journal)
    charge = task()
    suspend(journal, tasks=[charge])
    outcome = completed(1, "ch_1")
    seen: list[Claimed] = []

    def decide(claimed: Claimed) -> Batch:
        seen.append(claimed)
        [item] = claimed.inbox
        return Batch(
            events=[NewEvent(type=item.type, command_id=1, attempt=1, data=item.data)],
            absorbed=[item.id or 0],
            status=RunStatus.COMPLETED,
            result="done",
        )

    delivery, claimed, committed = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w1", ttl=30, decide=decide
    )
    assert delivery.accepted and claimed is not None and len(seen) == 1
    assert committed is not None and committed.last_seq == 2
    info = journal.describe("r1")
    assert info is not None and info.status is RunStatus.COMPLETED and info.result == "done"
    assert [e.type for e in journal.history("r1")] == [
        EventType.RUN_STARTED,
        EventType.ACTIVITY_COMPLETED,
    ]
    # A decide that declines leaves the claim with the caller and writes no history.
    create(journal, "r2")
    suspend(journal, "r2", tasks=[task("r2")])
    item2 = completed(1, 2)
    _, held, none = journal.deliver_and_claim(
        "r2", item2, task_id=task("r2").task_id, owner="w1", ttl=30, decide=lambda c: None
    )
    assert held is not None and none is None
    assert status(journal, "r2") is RunStatus.RUNNING
    assert len(journal.history("r2")) == 1


def test_claim_and_commit_commits_what_decide_returns_in_the_claiming_step(
    journal: Journal,
) -> None:
    create(journal)
    journal.deliver("r1", signal("s1", name="go"))
    seen: list[Claimed] = []

    def decide(claimed: Claimed) -> Batch:
        seen.append(claimed)
        [item] = claimed.inbox
        return Batch(
            events=[NewEvent(type=item.type, data=item.data)],
            absorbed=[item.id or 0],
            tasks=[task()],
            status=RunStatus.SUSPENDED,
        )

    claimed, committed = journal.claim_and_commit("r1", owner="w1", ttl=30, decide=decide)
    assert claimed is not None and len(seen) == 1 and claimed.lease.token == 1
    assert [e.type for e in claimed.history] == [EventType.RUN_STARTED]
    assert committed is not None and committed.last_seq == 2
    assert not committed.pending_inbox
    assert status(journal) is RunStatus.SUSPENDED
    assert [e.type for e in journal.history("r1")] == [
        EventType.RUN_STARTED,
        EventType.SIGNAL_RECEIVED,
    ]
    # The lease was released with the commit: the next claim takes it at once.
    journal.deliver("r1", signal("s2"))
    assert claim(journal, owner="w2").lease.token == 2


def test_claim_and_commit_leaves_a_declined_claim_with_the_caller_and_a_held_run_alone(
    journal: Journal,
) -> None:
    create(journal)
    held, none = journal.claim_and_commit("r1", owner="w1", ttl=30, decide=lambda c: None)
    assert held is not None and none is None
    assert status(journal) is RunStatus.RUNNING
    assert seqs(journal) == [1]

    def never(claimed: Claimed) -> Batch:
        raise AssertionError("decide called for a run that was not claimed")

    assert journal.claim_and_commit("r1", owner="w2", ttl=30, decide=never) == (None, None)
    journal.commit(held.lease, Batch(status=RunStatus.COMPLETED))
    assert journal.claim_and_commit("r1", owner="w2", ttl=30, decide=never) == (None, None)


def test_start_and_claim_creates_the_run_and_commits_its_first_step_at_once(
    journal: Journal,
) -> None:
    seen: list[Claimed] = []

    def decide(claimed: Claimed) -> Batch:
        seen.append(claimed)
        return Batch(events=[marker(1)], tasks=[task()], status=RunStatus.SUSPENDED)

    created, claimed, committed = journal.start_and_claim(
        new_run("r1"), owner="w1", ttl=30, decide=decide
    )
    assert created and claimed is not None and len(seen) == 1
    assert (claimed.lease.token, claimed.last_seq, claimed.inbox) == (1, 1, [])
    assert [e.type for e in claimed.history] == [EventType.RUN_STARTED]
    assert claimed.history[0].data["args"] == new_run("r1").args
    assert committed is not None and committed.last_seq == 2
    assert status(journal) is RunStatus.SUSPENDED
    assert [e.type for e in journal.history("r1")] == [
        EventType.RUN_STARTED,
        EventType.MARKER_RECORDED,
    ]
    assert [t.task_id for t in journal.take_unpublished(republish_after=0)] == [task().task_id]
    # The lease was released with the commit: the next claim takes it at once.
    journal.deliver("r1", signal("s1"))
    assert claim(journal, owner="w2").lease.token == 2


def test_start_and_claim_of_a_taken_id_does_nothing(journal: Journal) -> None:
    create(journal, args=["first"])
    before = journal.history("r1")

    def decide(claimed: Claimed) -> Batch:
        # It may be asked before the id is found taken; what it decides is then dropped.
        return Batch(events=[marker(1)], tasks=[task()], status=RunStatus.SUSPENDED)

    assert journal.start_and_claim(
        new_run("r1", args=["second"]), owner="w1", ttl=30, decide=decide
    ) == (False, None, None)
    assert journal.history("r1") == before
    assert status(journal) is RunStatus.RUNNABLE
    assert journal.take_unpublished(republish_after=0) == []


def test_start_and_claim_leaves_a_declined_first_step_with_the_caller(journal: Journal) -> None:
    created, held, none = journal.start_and_claim(
        new_run("r1", args=[{"n": 1}, "x"], correlation_id="chain-1"),
        owner="w1",
        ttl=30,
        decide=lambda c: None,
    )
    assert created and held is not None and none is None
    assert status(journal) is RunStatus.RUNNING
    # What the claim hands over is the run and history as stored.
    assert held.run == journal.describe("r1")
    assert held.history == journal.history("r1")
    assert journal.claim("r1", "w2", 30) is None
    journal.commit(held.lease, Batch(events=[marker(1)], status=RunStatus.SUSPENDED))
    assert seqs(journal) == [1, 2]


def test_a_start_whose_first_step_fails_leaves_no_run_behind(journal: Journal) -> None:
    if isinstance(journal, InMemoryJournal):
        pytest.skip("the in-memory journal has no transactions to roll back")

    def broken(claimed: Claimed) -> Batch:
        raise RuntimeError("replay broke")

    with pytest.raises(RuntimeError, match="replay broke"):
        journal.start_and_claim(new_run("r1"), owner="w1", ttl=30, decide=broken)
    assert journal.describe("r1") is None
    assert journal.history("r1") == []
    create(journal)  # the id is free for the start that takes over


def suspended_on_a_charge(journal: Journal) -> OutboxTask:
    """Run r1, suspended on one activity: its task."""
    create(journal)
    charge = task()
    suspend(journal, tasks=[charge])
    return charge


def consume(claimed: Claimed) -> Batch:
    """A step that journals the claim's only inbox item (an outcome) and waits again."""
    [item] = claimed.inbox
    event = NewEvent(type=item.type, command_id=1, attempt=1, data=item.data)
    return Batch(events=[event], absorbed=[item.id or 0], status=RunStatus.SUSPENDED)


def test_an_outcome_its_own_step_leaves_unconsumed_waits_in_the_inbox(journal: Journal) -> None:
    create(journal)
    charge = task()
    suspend(journal, tasks=[charge])
    seen: list[Claimed] = []

    def keep_waiting(claimed: Claimed) -> Batch:
        seen.append(claimed)
        return Batch(status=RunStatus.SUSPENDED)

    outcome = completed(1, "ch_1")
    _, claimed, committed = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w1", ttl=30, decide=keep_waiting
    )
    assert claimed is not None and committed is not None and committed.pending_inbox
    [handed] = seen[0].inbox
    # The next claim is handed the same item, under the same id; a second copy is refused.
    assert [(i.id, i.dedupe_key, i.data) for i in claim(journal, owner="w2").inbox] == [
        (handed.id, outcome.dedupe_key, outcome.data)
    ]
    again = journal.deliver("r1", outcome, task_id=charge.task_id)
    assert not again.accepted


def test_an_outcome_its_own_step_consumes_leaves_nothing_pending(journal: Journal) -> None:
    charge = suspended_on_a_charge(journal)
    outcome = completed(1, "ch_1")
    _, _, committed = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w1", ttl=30, decide=consume
    )
    assert committed is not None and not committed.pending_inbox
    assert status(journal) is RunStatus.SUSPENDED
    assert journal.claim("r1", "w2", 30) is None  # nothing left to do
    assert not journal.deliver("r1", outcome, task_id=charge.task_id).accepted
    assert [e.type for e in journal.history("r1")][-1] is EventType.ACTIVITY_COMPLETED
    # The next claim is handed the next fact only, not the consumed outcome again.
    journal.deliver("r1", signal("s1"))
    assert [i.dedupe_key for i in claim(journal, owner="w2").inbox] == ["s1"]


def test_a_second_copy_of_an_outcome_is_refused_even_by_a_step_that_would_consume_it(
    journal: Journal,
) -> None:
    charge = suspended_on_a_charge(journal)
    outcome = completed(1, "ch_1")
    first, _, _ = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w1", ttl=30, decide=consume
    )
    second, claimed, committed = journal.deliver_and_claim(
        "r1", outcome, task_id=charge.task_id, owner="w2", ttl=30, decide=consume
    )

    assert first.accepted and not second.accepted
    assert claimed is None and committed is None
    assert [e.type for e in journal.history("r1")].count(EventType.ACTIVITY_COMPLETED) == 1
    assert status(journal) is RunStatus.SUSPENDED
    journal.deliver("r1", signal("s1"))
    assert claim(journal, owner="w3").lease.token == 3  # the refused claim was rolled back
