"""``retry_run``, on every journal: what a retry keeps of its failed original, what it starts
again, how both are linked, and that a run that cannot be retried is left as it was."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator.journal.inbox import outcome_key
from orchestrator.journal.protocol import Batch, Journal, TaskStart
from orchestrator.journal.retry import retry_run_id
from orchestrator.model.errors import NotRetryable, UnknownRun
from orchestrator.model.events import Event, EventType, NewEvent, RunStatus
from orchestrator.model.records import InboxItem, NewRun, OutboxTask, task_id_for
from tests.builders import completed, failed, new_run, task
from tests.conftest import FakeClock

ERROR = {"type": "ValueError", "message": "card declined", "traceback": None}


def step(
    journal: Journal,
    run_id: str,
    *events: NewEvent,
    tasks: tuple[OutboxTask, ...] = (),
    **batch: Any,
) -> None:
    """One step of ``run_id``: absorb its inbox, then record ``events`` (and ``tasks``)."""
    claimed = journal.claim(run_id, "w1", 60.0)
    assert claimed is not None
    absorbed = [
        NewEvent(type=i.type, command_id=i.command_id, attempt=i.attempt, data=i.data)
        for i in claimed.inbox
    ]
    batch.setdefault("status", RunStatus.SUSPENDED)
    journal.commit(
        claimed.lease,
        Batch(
            events=[*absorbed, *events],
            absorbed=[i.id for i in claimed.inbox if i.id is not None],
            tasks=tasks,
            **batch,
        ),
    )


def named(t: OutboxTask, name: str, **kw: Any) -> OutboxTask:
    return replace(t, task_name=name, **kw)


def scheduled(run_id: str, cmd: int, name: str = "shop.charge") -> NewEvent:
    t = task(run_id, cmd)
    data = {"task": name, "args": t.args, "kwargs": t.kwargs, "queue": None}
    return NewEvent(
        type=EventType.ACTIVITY_SCHEDULED,
        command_id=cmd,
        attempt=1,
        data={**data, "timeout": 30.0, "retry": {}, "delay": 0.0},
    )


def fail(journal: Journal, run_id: str) -> None:
    step(
        journal,
        run_id,
        NewEvent(type=EventType.RUN_FAILED, data={"error": ERROR}),
        status=RunStatus.FAILED,
        error=ERROR,
    )


def failed_on_second_activity(journal: Journal, run_id: str = "r1") -> None:
    """run_started, charge scheduled and completed, ship scheduled and failed, run_failed."""
    assert journal.create_run(new_run(run_id, args=["o-1"]))
    step(journal, run_id, scheduled(run_id, 1), tasks=(task(run_id, 1),))
    journal.deliver(run_id, completed(1, "ch-1"), task_id=task_id_for(run_id, 1, 1))
    ship = named(task(run_id, 2), "shop.ship")
    step(journal, run_id, scheduled(run_id, 2, "shop.ship"), tasks=(ship,))
    journal.deliver(run_id, failed(2, ERROR), task_id=ship.task_id)
    fail(journal, run_id)


def same(a: list[Event], b: list[Event]) -> list[tuple[Any, ...]]:
    """Events as what they record, whatever run holds them."""
    assert [(e.seq, e.type, e.command_id, e.attempt, e.data, e.at) for e in a] == [
        (e.seq, e.type, e.command_id, e.attempt, e.data, e.at) for e in b
    ]
    return [(e.seq, e.type) for e in a]


def test_a_retry_keeps_the_history_before_the_failure_and_sends_the_failed_attempt_again(
    journal: Journal, clock: FakeClock
) -> None:
    failed_on_second_activity(journal)
    original = journal.history("r1")
    clock.advance(60)

    retried = journal.retry_run("r1")

    new_id = retry_run_id("r1")
    assert retried.run.run_id == new_id
    assert (retried.run.workflow, retried.run.version) == ("wf", "1")
    kept = journal.history(new_id)
    assert same(kept, original[:4]) == [
        (1, EventType.RUN_STARTED),
        (2, EventType.ACTIVITY_SCHEDULED),
        (3, EventType.ACTIVITY_COMPLETED),
        (4, EventType.ACTIVITY_SCHEDULED),
    ]
    # The failed step, and only it, runs again, under the retry's own task id.
    [again] = retried.tasks
    assert (again.task_id, again.command_id, again.attempt) == (task_id_for(new_id, 2, 1), 2, 1)
    assert (again.task_name, again.args, again.kwargs) == (
        "shop.ship",
        ["order-1", 100],
        {"currency": "EUR"},
    )
    assert again.timeout_seconds == 30.0
    # The original stays failed and names its retry; the retry takes its chain's place.
    before, after = journal.describe("r1"), journal.describe(new_id)
    assert before is not None and after is not None
    assert (before.status, before.retried_to_run_id) == (RunStatus.FAILED, new_id)
    assert before.error == ERROR
    assert after.status is RunStatus.RUNNABLE
    assert (after.retried_from_run_id, after.correlation_id, after.args) == ("r1", "r1", ["o-1"])
    assert journal.resolve_tip("r1") == new_id
    assert journal.resolve_tip(new_id) == new_id
    # The new attempt is one the retry waits for, and its step appends after the kept events.
    assert journal.mark_started(again.task_id) is TaskStart.STARTED
    assert journal.deliver(new_id, completed(2, "tr-1"), task_id=again.task_id).accepted
    claimed = journal.claim(new_id, "w2", 60.0)
    assert claimed is not None and claimed.last_seq == 4
    assert [i.type for i in claimed.inbox] == [EventType.ACTIVITY_COMPLETED]
    journal.release(claimed.lease)
    step(journal, new_id, status=RunStatus.COMPLETED, result="done")
    assert [e.seq for e in journal.history(new_id)] == [1, 2, 3, 4, 5]
    assert journal.describe("r1").status is RunStatus.FAILED  # type: ignore[union-attr]


def test_a_workflow_that_raised_is_retried_from_its_last_fact(journal: Journal) -> None:
    assert journal.create_run(new_run("r1"))
    step(journal, "r1", scheduled("r1", 1), tasks=(task("r1", 1),))
    journal.deliver("r1", completed(1, "ch-1"), task_id=task_id_for("r1", 1, 1))
    fail(journal, "r1")

    retried = journal.retry_run("r1")

    assert retried.tasks == []
    assert [e.type for e in journal.history(retried.run.run_id)] == [
        EventType.RUN_STARTED,
        EventType.ACTIVITY_SCHEDULED,
        EventType.ACTIVITY_COMPLETED,
    ]


def test_a_saga_is_retried_from_before_its_compensations(journal: Journal) -> None:
    assert journal.create_run(new_run("r1"))
    step(journal, "r1", scheduled("r1", 1), tasks=(task("r1", 1),))
    journal.deliver("r1", completed(1, "ch-1"), task_id=task_id_for("r1", 1, 1))
    undo = named(task("r1", 2), "shop.refund", kind="compensation", target_activity_id=1)
    compensation = NewEvent(
        type=EventType.COMPENSATION_SCHEDULED,
        command_id=2,
        attempt=1,
        data={"task": "shop.refund", "args": [], "kwargs": {}, "target_activity_id": 1},
    )
    step(journal, "r1", compensation, tasks=(undo,))
    journal.deliver(
        "r1",
        InboxItem(
            dedupe_key=outcome_key(2, 1),
            type=EventType.COMPENSATION_COMPLETED,
            command_id=2,
            attempt=1,
        ),
        task_id=undo.task_id,
    )
    fail(journal, "r1")

    retried = journal.retry_run("r1")

    assert retried.tasks == []
    assert [e.seq for e in journal.history(retried.run.run_id)] == [1, 2, 3]


def test_the_retry_of_a_continuation_is_its_chains_tip(journal: Journal) -> None:
    assert journal.create_run(new_run("r1"))
    nxt = new_run("r2", correlation_id="r1", continued_from_run_id="r1")
    step(
        journal,
        "r1",
        NewEvent(type=EventType.RUN_CONTINUED, data={"next_run_id": "r2"}),
        status=RunStatus.CONTINUED,
        continuation=nxt,
    )
    fail(journal, "r2")
    assert journal.resolve_tip("r1") == "r2"

    retried = journal.retry_run("r2")

    assert journal.resolve_tip("r1") == retried.run.run_id
    assert journal.resolve_tip("r2") == retried.run.run_id
    info = journal.describe(retried.run.run_id)
    assert info is not None
    assert (info.correlation_id, info.continued_from_run_id) == ("r1", "r1")


def test_open_timers_are_set_again_and_later_signals_handed_over(
    journal: Journal, clock: FakeClock
) -> None:
    assert journal.create_run(new_run("r1"))
    timer = NewEvent(
        type=EventType.TIMER_STARTED, command_id=1, data={"fire_at": clock() + 10, "seconds": 10}
    )
    step(journal, "r1", timer, timers=())
    journal.deliver(
        "r1",
        InboxItem(dedupe_key="s1", type=EventType.SIGNAL_RECEIVED, data={"name": "go"}),
    )
    fail(journal, "r1")  # the workflow raised on the signal: the cut is run_failed

    new_id = journal.retry_run("r1").run.run_id
    assert [e.type for e in journal.history(new_id)][-1] == EventType.SIGNAL_RECEIVED
    clock.advance(11)
    assert [r.run_id for r in journal.fire_due_timers()] == []  # a replay is in flight
    claimed = journal.claim(new_id, "w1", 60.0)
    assert claimed is not None
    assert [i.type for i in claimed.inbox] == [EventType.TIMER_FIRED]


@pytest.mark.parametrize("status", [RunStatus.SUSPENDED, RunStatus.COMPLETED])
def test_only_a_failed_run_is_retried_and_nothing_is_written_otherwise(
    journal: Journal, status: RunStatus
) -> None:
    assert journal.create_run(new_run("r1"))
    step(journal, "r1", status=status)
    with pytest.raises(NotRetryable, match=f"run r1 cannot be retried: it is {status.value}"):
        journal.retry_run("r1")
    assert journal.describe(retry_run_id("r1")) is None
    assert journal.describe("r1").retried_to_run_id is None  # type: ignore[union-attr]
    assert journal.resolve_tip("r1") == "r1"


def test_a_run_is_retried_once_and_an_unknown_run_not_at_all(journal: Journal) -> None:
    failed_on_second_activity(journal)
    new_id = journal.retry_run("r1").run.run_id
    with pytest.raises(NotRetryable, match=f"retried already, as run {new_id}"):
        journal.retry_run("r1")
    with pytest.raises(UnknownRun, match="nope"):
        journal.retry_run("nope")
    assert len(journal.list_runs()) == 2


def test_a_retried_retry_is_the_tip(journal: Journal) -> None:
    failed_on_second_activity(journal)
    first = journal.retry_run("r1").run.run_id
    fail(journal, first)
    second = journal.retry_run(first).run.run_id
    assert journal.resolve_tip("r1") == second
    assert journal.describe(second).retried_from_run_id == first  # type: ignore[union-attr]


def test_a_failed_child_is_started_again(journal: Journal) -> None:
    assert journal.create_run(new_run("r1"))
    child = NewRun(
        run_id="c1", workflow="wf", version="1", args=[], parent_run_id="r1", parent_command_id=1
    )
    started = NewEvent(
        type=EventType.CHILD_STARTED, command_id=1, data={"workflow": "wf", "child_run_id": "c1"}
    )
    step(journal, "r1", started, children=[child])
    fail(journal, "c1")  # tells its parent
    fail(journal, "r1")
    assert EventType.CHILD_FAILED in [e.type for e in journal.history("r1")]

    retried = journal.retry_run("r1")

    assert [e.type for e in journal.history(retried.run.run_id)] == [EventType.RUN_STARTED]
