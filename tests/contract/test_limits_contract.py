"""Concurrency limits in the journal contract, on every backend.

A limited run beyond its key's limit is stored ``queued`` (with the reason it waits) and is
invisible to claims and the dispatcher; the commit that ends one of the key's runs admits the
oldest queued one in the same transaction and hands it back to dispatch; a continuation takes
its predecessor's place; a queued run can be cancelled.
"""

from __future__ import annotations

from typing import Any

from orchestrator.journal.inbox import cancel_item
from orchestrator.journal.protocol import Batch, Journal
from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.limits import ConcurrencyLimit
from tests.builders import new_run
from tests.conftest import FakeClock
from tests.contract.test_journal_contract import (
    all_at_once,
    claim,
    signal,
    status,
)

KEY = ConcurrencyLimit("wf", 2).key_for([])


def start(journal: Journal, clock: FakeClock, run_id: str, key: str = KEY, limit: int = 2) -> None:
    clock.advance(1)  # start order is creation order
    assert journal.create_run(new_run(run_id, concurrency_key=key, concurrency_limit=limit))


def end(journal: Journal, run_id: str, **batch: Any) -> list[str]:
    """Complete the run; the runs its commit hands back to dispatch."""
    batch.setdefault("events", [NewEvent(type=EventType.RUN_COMPLETED)])
    batch.setdefault("status", RunStatus.COMPLETED)
    committed = journal.commit(claim(journal, run_id).lease, Batch(**batch))
    return [r.run_id for r in committed.dispatch]


def statuses(journal: Journal) -> dict[str, RunStatus]:
    return {r.run_id: r.status for r in journal.list_runs()}


def test_runs_beyond_the_limit_wait_queued_and_say_why(journal: Journal, clock: FakeClock) -> None:
    for run_id in ("a", "b", "c"):
        start(journal, clock, run_id)

    assert statuses(journal) == {
        "a": RunStatus.RUNNABLE,
        "b": RunStatus.RUNNABLE,
        "c": RunStatus.QUEUED,
    }
    info = journal.describe("c")
    assert info is not None and info.reason is not None
    assert "workflow 'wf'" in info.reason and "limit of 2" in info.reason
    assert journal.claim("c", "w1", 60) is None
    clock.advance(100)
    taken = journal.take_runnable(redispatch_after=30)
    assert sorted(r.run_id for r in taken) == ["a", "b"]


def test_a_run_ending_admits_the_oldest_queued_one_in_its_commit(
    journal: Journal, clock: FakeClock
) -> None:
    for run_id in ("a", "b", "c", "d", "e"):
        start(journal, clock, run_id)

    assert end(journal, "b") == ["c"]
    info = journal.describe("c")
    assert info is not None and (info.status, info.reason) == (RunStatus.RUNNABLE, None)
    assert status(journal, "d") is RunStatus.QUEUED
    # Failing and being cancelled end a run as well.
    assert end(journal, "a", events=[], status=RunStatus.FAILED, error={"type": "E"}) == ["d"]
    assert end(journal, "c", events=[], status=RunStatus.CANCELLED) == ["e"]
    assert end(journal, "d") == []
    assert claim(journal, "e").run.status is RunStatus.RUNNING


def test_keys_are_limited_apart(journal: Journal, clock: FakeClock) -> None:
    limit = ConcurrencyLimit("wf", 1, key=lambda customer: customer)
    for run_id, customer in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")):
        start(journal, clock, run_id, key=limit.key_for([customer]), limit=1)

    assert statuses(journal) == {
        "a1": RunStatus.RUNNABLE,
        "a2": RunStatus.QUEUED,
        "b1": RunStatus.RUNNABLE,
        "b2": RunStatus.QUEUED,
    }
    assert end(journal, "b1") == ["b2"]
    assert status(journal, "a2") is RunStatus.QUEUED


def test_runs_ending_at_once_never_admit_past_the_limit(journal: Journal, clock: FakeClock) -> None:
    open_runs = [f"open{n}" for n in range(4)]
    for run_id in [*open_runs, *(f"q{n}" for n in range(6))]:
        start(journal, clock, run_id, limit=4)

    admitted = all_at_once(lambda n: end(journal, open_runs[n]), n=4)

    assert sorted(r for refs in admitted for r in refs) == ["q0", "q1", "q2", "q3"]
    assert [s for s in statuses(journal).values()].count(RunStatus.RUNNABLE) == 4


def test_a_continuation_keeps_its_predecessors_place(journal: Journal, clock: FakeClock) -> None:
    start(journal, clock, "a", limit=1)
    start(journal, clock, "b", limit=1)
    continuation = new_run("a2", correlation_id="a", continued_from_run_id="a")

    dispatched = end(
        journal,
        "a",
        events=[NewEvent(type=EventType.RUN_CONTINUED)],
        status=RunStatus.CONTINUED,
        continuation=continuation,
    )

    assert dispatched == ["a2"]
    assert (status(journal, "a2"), status(journal, "b")) == (RunStatus.RUNNABLE, RunStatus.QUEUED)
    assert end(journal, "a2") == ["b"]  # the continuation holds the key's place to its end


def test_a_queued_run_takes_signals_and_its_cancellation_ends_it_at_once(
    journal: Journal, clock: FakeClock
) -> None:
    start(journal, clock, "a", limit=1)
    start(journal, clock, "b", limit=1)

    signalled = journal.deliver("b", signal("s1", name="go"))
    assert (signalled.accepted, signalled.dispatch) == (True, None)
    assert status(journal, "b") is RunStatus.QUEUED

    cancelled = journal.deliver("b", cancel_item("not needed"))

    assert (cancelled.accepted, cancelled.dispatch) == (True, None)
    info = journal.wait_closed("b", timeout=5)
    assert info is not None and (info.status, info.reason) == (RunStatus.CANCELLED, "not needed")
    assert [(e.seq, e.type) for e in journal.history("b")] == [
        (1, EventType.RUN_STARTED),
        (2, EventType.CANCEL_REQUESTED),
        (3, EventType.RUN_CANCELLED),
    ]
    assert journal.history("b")[2].data == {"reason": "not needed"}
    assert not journal.deliver("b", cancel_item("again")).accepted
    assert status(journal, "a") is RunStatus.RUNNABLE
    start(journal, clock, "c", limit=1)
    assert end(journal, "a") == ["c"]  # the cancelled run held no place


def test_children_of_one_step_queue_in_the_order_they_were_started(
    journal: Journal, clock: FakeClock
) -> None:
    clock.advance(1)
    assert journal.create_run(new_run("p"))
    # Run ids that sort against the order the parent started them in.
    kids = [
        new_run(
            f"k{9 - n}",
            parent_run_id="p",
            parent_command_id=n + 1,
            concurrency_key=KEY,
            concurrency_limit=1,
        )
        for n in range(4)
    ]
    journal.commit(claim(journal, "p").lease, Batch(children=kids), release=True)
    assert [status(journal, k.run_id) for k in kids] == [RunStatus.RUNNABLE] + [
        RunStatus.QUEUED
    ] * 3

    assert end(journal, "k9") == ["k8"]
    assert end(journal, "k8") == ["k7"]
    assert end(journal, "k7") == ["k6"]


def test_a_queued_childs_cancellation_reaches_its_parent(
    journal: Journal, clock: FakeClock
) -> None:
    start(journal, clock, "other", limit=1)
    clock.advance(1)
    assert journal.create_run(new_run("p"))
    child = new_run(
        "kid", parent_run_id="p", parent_command_id=3, concurrency_key=KEY, concurrency_limit=1
    )
    waiting = Batch(children=[child], status=RunStatus.SUSPENDED)
    journal.commit(claim(journal, "p").lease, waiting, release=True)
    assert status(journal, "kid") is RunStatus.QUEUED

    delivery = journal.deliver("kid", cancel_item("not needed"))

    assert delivery.accepted and delivery.dispatch is not None
    assert delivery.dispatch.run_id == "p"
    assert status(journal, "kid") is RunStatus.CANCELLED
    inbox = claim(journal, "p").inbox
    assert [(i.type, i.command_id, i.data.get("reason")) for i in inbox] == [
        (EventType.CHILD_CANCELLED, 3, "not needed")
    ]
