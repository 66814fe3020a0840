"""The journal's operations for queries, signal-with-start, execution timeouts and heartbeats,
on every backend (in-memory, SQLite, Postgres, Postgres as the runtime role).

Time is the test's ``FakeClock``; the signal-with-start race runs on real threads, so on
SQLite and Postgres it goes through the real locks.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.journal.inbox import outcome_key
from orchestrator.journal.protocol import Batch, Beat, Journal, Published, TaskStart
from orchestrator.model.deadlines import HEARTBEAT_TIMEOUT, WORKFLOW_TIMEOUT
from orchestrator.model.errors import PayloadError
from orchestrator.model.events import EventType, NewEvent, RunStatus
from tests.builders import new_run, task
from tests.conftest import FakeClock
from tests.contract.test_journal_contract import (
    THREADS,
    all_at_once,
    claim,
    commit,
    create,
    ref,
    seqs,
    signal,
    status,
    suspend,
)


def published(name: str, value: Any, command_id: int = 1) -> NewEvent:
    return NewEvent(
        type=EventType.VALUE_PUBLISHED,
        command_id=command_id,
        data={"name": name, "value": value},
    )


def continue_to(journal: Journal, this: str, successor: str, root: str = "r1") -> None:
    continuation = new_run(successor, correlation_id=root, continued_from_run_id=this)
    commit(
        journal,
        this,
        events=[NewEvent(type=EventType.RUN_CONTINUED)],
        status=RunStatus.CONTINUED,
        continuation=continuation,
    )


# -- queries -------------------------------------------------------------------------------
def test_latest_published_is_the_newest_value_under_the_name(journal: Journal) -> None:
    create(journal)
    commit(journal, events=[published("state", "a", 1), published("other", 1, 2)])
    commit(journal, events=[published("state", {"step": 2}, 3)])

    assert journal.latest_published("r1", "state") == Published(
        run_id="r1", seq=4, value={"step": 2}
    )
    assert journal.latest_published("r1", "other") == Published(run_id="r1", seq=3, value=1)
    assert journal.latest_published("r1", "never") is None
    assert journal.latest_published("unknown", "state") is None


def test_latest_published_reads_back_along_a_continue_as_new_chain(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    commit(journal, events=[published("state", "gen 1")])
    continue_to(journal, "r1", "r2")
    continue_to(journal, "r2", "r3")  # no clock advance: the chain's links order it
    for run_id in ("r1", "r2", "r3"):
        assert journal.latest_published(run_id, "state") == Published(
            run_id="r1", seq=2, value="gen 1"
        )

    suspend(journal, "r3", events=[published("state", "gen 3")])
    assert journal.latest_published("r1", "state") == Published(run_id="r3", seq=2, value="gen 3")


# -- signal-with-start ---------------------------------------------------------------------
def test_start_or_deliver_creates_the_run_with_the_item_in_its_inbox(journal: Journal) -> None:
    created, delivery = journal.start_or_deliver(new_run("r1"), signal("s1", name="go"))

    assert created and delivery.accepted and delivery.dispatch == ref("r1")
    assert status(journal) is RunStatus.RUNNABLE
    assert seqs(journal) == [1]
    claimed = claim(journal)
    assert [(i.type, i.dedupe_key, i.data) for i in claimed.inbox] == [
        (EventType.SIGNAL_RECEIVED, "s1", {"name": "go"})
    ]


def test_start_or_deliver_of_an_existing_run_delivers_only(journal: Journal) -> None:
    create(journal, args=["first"])
    suspend(journal)
    created, delivery = journal.start_or_deliver(
        new_run("r1", args=["second"]), signal("s1", name="go")
    )

    assert not created and delivery.accepted and delivery.dispatch == ref("r1")
    info = journal.describe("r1")
    assert info is not None and info.args == ["first"]
    assert [i.dedupe_key for i in claim(journal).inbox] == ["s1"]
    # The same item again is a duplicate.
    assert not journal.start_or_deliver(new_run("r1"), signal("s1", name="go"))[1].accepted


def test_concurrent_start_or_deliver_creates_one_run_and_delivers_every_item(
    journal: Journal,
) -> None:
    outcomes = all_at_once(
        lambda i: journal.start_or_deliver(new_run("r1"), signal(f"s{i}", name="go", n=i))
    )

    assert sum(created for created, _ in outcomes) == 1
    assert all(delivery.accepted for _, delivery in outcomes)
    assert seqs(journal) == [1]
    inbox = claim(journal).inbox
    assert sorted(i.data["n"] for i in inbox) == list(range(THREADS))


def test_start_or_deliver_writes_nothing_for_an_item_json_cannot_carry(journal: Journal) -> None:
    with pytest.raises(PayloadError):
        journal.start_or_deliver(new_run("r1"), signal("s1", name="go", payload=object()))
    assert journal.describe("r1") is None


# -- execution timeouts --------------------------------------------------------------------
def test_a_run_still_open_at_its_deadline_is_told_once(journal: Journal, clock: FakeClock) -> None:
    assert journal.create_run(new_run("r1", execution_timeout=10))
    suspend(journal)

    clock.advance(9.5)
    assert journal.expire_runs() == []
    clock.advance(0.5)
    assert journal.expire_runs() == [ref("r1")]
    assert journal.expire_runs() == []

    [item] = claim(journal).inbox
    assert (item.type, item.dedupe_key) == (EventType.RUN_TIMED_OUT, "timeout")
    assert item.data["error"]["type"] == WORKFLOW_TIMEOUT
    assert "within 10 seconds" in item.data["error"]["message"]


def test_a_chains_deadline_reaches_its_open_continuation(
    journal: Journal, clock: FakeClock
) -> None:
    assert journal.create_run(new_run("r1", execution_timeout=10))
    continue_to(journal, "r1", "r2")
    suspend(journal, "r2")

    clock.advance(10)
    assert journal.expire_runs() == [ref("r2")]
    assert [i.type for i in claim(journal, "r2").inbox] == [EventType.RUN_TIMED_OUT]


def test_a_run_that_ended_before_its_deadline_is_left_alone(
    journal: Journal, clock: FakeClock
) -> None:
    assert journal.create_run(new_run("r1", execution_timeout=10))
    commit(journal, events=[NewEvent(type=EventType.RUN_COMPLETED)], status=RunStatus.COMPLETED)
    assert journal.create_run(new_run("r2"))  # no deadline

    clock.advance(60)
    assert journal.expire_runs() == []
    assert seqs(journal) == [1, 2]


def test_a_timeout_not_yet_absorbed_passes_to_the_continuation(
    journal: Journal, clock: FakeClock
) -> None:
    assert journal.create_run(new_run("r1", execution_timeout=5))
    lease = claim(journal).lease
    clock.advance(5)
    journal.expire_runs()  # the run is leased: the fact waits in its inbox
    continuation = new_run("r2", correlation_id="r1", continued_from_run_id="r1")
    journal.commit(
        lease,
        Batch(
            events=[NewEvent(type=EventType.RUN_CONTINUED)],
            status=RunStatus.CONTINUED,
            continuation=continuation,
        ),
    )
    assert [i.type for i in claim(journal, "r2").inbox] == [EventType.RUN_TIMED_OUT]


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf")])
def test_a_run_with_a_timeout_that_is_not_positive_is_refused_when_made(timeout: float) -> None:
    with pytest.raises(ValueError, match="execution timeout"):
        new_run("r1", execution_timeout=timeout)


# -- heartbeats ----------------------------------------------------------------------------
def test_a_started_attempt_silent_past_its_heartbeat_timeout_times_out_once(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    beating = task(command_id=1, heartbeat_timeout=3)
    suspend(journal, tasks=[beating])
    assert journal.mark_started(beating.task_id) is TaskStart.STARTED

    clock.advance(2)
    assert journal.record_heartbeat(beating.task_id, {"done": 10}) == Beat(heartbeat_timeout=3)
    clock.advance(2.5)  # 4.5 s after the start, 2.5 s after the heartbeat
    assert journal.expire_heartbeats() == []
    assert journal.expire_tasks() == []
    clock.advance(0.5)
    assert journal.expire_heartbeats() == [ref("r1")]
    assert journal.expire_heartbeats() == []

    [item] = claim(journal).inbox
    assert (item.type, item.dedupe_key, item.command_id, item.attempt) == (
        EventType.ACTIVITY_TIMED_OUT,
        outcome_key(1, 1),
        1,
        1,
    )
    assert item.data["error"]["type"] == HEARTBEAT_TIMEOUT
    assert "no heartbeat for 3" in item.data["error"]["message"]
    # The attempt is no longer current: its heartbeats and its late outcome are refused.
    assert journal.record_heartbeat(beating.task_id) is None
    assert journal.mark_started(beating.task_id) is TaskStart.ENDED
    # ... and the metrics count it as an attempt that timed out.
    assert {(a.outcome, a.count) for a in journal.stats().attempts} == {("timed_out", 1)}


def test_an_attempt_that_never_beats_times_out_from_its_start(
    journal: Journal, clock: FakeClock
) -> None:
    create(journal)
    silent, untimed = task(command_id=1, heartbeat_timeout=3), task(command_id=2)
    suspend(journal, tasks=[silent, untimed])
    journal.mark_started(silent.task_id)
    journal.mark_started(untimed.task_id)
    assert journal.record_heartbeat(untimed.task_id) == Beat(heartbeat_timeout=None)

    clock.advance(3)
    assert journal.expire_heartbeats() == [ref("r1")]
    assert [i.command_id for i in claim(journal).inbox] == [1]


def test_heartbeats_of_an_ended_or_unknown_attempt_are_refused(journal: Journal) -> None:
    create(journal)
    beating = task(command_id=1, heartbeat_timeout=3)
    commit(journal, tasks=[beating])
    commit(journal, events=[NewEvent(type=EventType.RUN_CANCELLED)], status=RunStatus.CANCELLED)

    assert journal.record_heartbeat(beating.task_id, 1) is None
    assert journal.record_heartbeat("r1:9:1") is None


def test_heartbeat_details_are_those_of_the_newest_attempt_that_recorded_some(
    journal: Journal,
) -> None:
    create(journal)
    first, second, third = (task(command_id=1, attempt=n, heartbeat_timeout=30) for n in (1, 2, 3))
    suspend(journal, tasks=[first, second, third])
    assert journal.heartbeat_details("r1", 1, 3) is None

    journal.record_heartbeat(first.task_id, {"page": 4})
    journal.record_heartbeat(first.task_id)  # keeps the details
    assert journal.heartbeat_details("r1", 1, 2) == {"page": 4}
    journal.record_heartbeat(second.task_id, {"page": 9})
    assert journal.heartbeat_details("r1", 1, 3) == {"page": 9}
    assert journal.heartbeat_details("r1", 1, 1) == {"page": 4}
    assert journal.heartbeat_details("r1", 2, 3) is None


def test_heartbeat_details_json_cannot_carry_are_refused_and_nothing_written(
    journal: Journal,
) -> None:
    create(journal)
    beating = task(command_id=1, heartbeat_timeout=30)
    suspend(journal, tasks=[beating])
    journal.record_heartbeat(beating.task_id, "kept")

    with pytest.raises(PayloadError, match="heartbeat details"):
        journal.record_heartbeat(beating.task_id, {"x": object()})
    assert journal.heartbeat_details("r1", 1, 1) == "kept"
