"""Retention's contract on every journal: ``prune`` deletes finished families whole, with
every row their runs owned, and never a run whose family is still open; ``prunable`` pages
through what it would delete, and ``histories`` reads it for an export; ``create_run_in`` is
refused where no transaction can be shared.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Journal, TaskStart
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.journal.sql.retention import OWNED, grant_statements
from orchestrator.model.errors import TransactionalStartError
from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.records import Timer
from tests.builders import completed, new_run, task
from tests.conftest import RUNTIME_ROLE, FakeClock
from tests.contract.test_journal_contract import claim, commit, create, signal, suspend


@pytest.fixture(autouse=True)
def _retention_grants(request: pytest.FixtureRequest, journal: Journal) -> None:
    """The runtime role keeps history append-only; pruning runs as a role given the
    retention grants too, which this proves are enough."""
    if "postgres_runtime" in request.node.callspec.params.values():
        owner = sa.create_engine(request.getfixturevalue("postgres_url"))
        with owner.begin() as conn:
            for statement in grant_statements(RUNTIME_ROLE):
                conn.execute(sa.text(statement))
        owner.dispose()


def finish(journal: Journal, run_id: str, status: RunStatus = RunStatus.COMPLETED) -> None:
    event = {
        RunStatus.COMPLETED: EventType.RUN_COMPLETED,
        RunStatus.FAILED: EventType.RUN_FAILED,
        RunStatus.CANCELLED: EventType.RUN_CANCELLED,
    }[status]
    info = journal.describe(run_id)
    if info is not None and info.status is RunStatus.SUSPENDED:
        journal.deliver(run_id, signal(f"wake-{run_id}"))  # so that it can be claimed
    commit(journal, run_id, events=[NewEvent(type=event)], status=status)


def rows_of(journal: Journal, run_ids: list[str]) -> dict[str, int]:
    """How many rows each table holds for these runs (the in-memory journal's own rows)."""
    if isinstance(journal, SqlJournal):
        with journal.engine.connect() as conn:
            return {
                table.name: conn.execute(
                    sa.select(sa.func.count()).where(table.c.run_id.in_(run_ids))
                ).scalar_one()
                for table in (*OWNED, journal_runs())
            }
    assert isinstance(journal, InMemoryJournal)
    wanted = set(run_ids)
    return {
        "runs": sum(r in wanted for r in journal._runs),
        "tasks": sum(t.spec.run_id in wanted for t in journal._tasks.values()),
        "timers": sum(k[0] in wanted for k in journal._timers),
    }


def journal_runs() -> sa.Table:
    from orchestrator.journal.sql import schema

    return schema.runs


def with_history(journal: Journal, run_id: str) -> None:
    """A run with an activity done (a finished task, an absorbed outcome), a signal, and a
    timer, then completed: every kind of row a run owns."""
    create(journal, run_id)
    suspend(
        journal,
        run_id,
        events=[NewEvent(type=EventType.ACTIVITY_SCHEDULED, command_id=1)],
        tasks=[task(run_id, 1)],
        timers=[Timer(run_id=run_id, command_id=2, fire_at=1e12)],
    )
    journal.mark_started(task(run_id, 1).task_id)
    assert journal.deliver(run_id, completed(1), task_id=task(run_id, 1).task_id).accepted
    journal.deliver(run_id, signal("sig-1", name="go"))
    claimed = claim(journal, run_id)
    ids = [i.id for i in claimed.inbox if i.id is not None]
    journal.commit(claimed.lease, _absorb(ids))
    finish(journal, run_id)


def _absorb(ids: list[int]) -> Any:
    from orchestrator.journal.protocol import Batch

    events = [
        NewEvent(type=EventType.ACTIVITY_COMPLETED, command_id=1, attempt=1),
        NewEvent(type=EventType.SIGNAL_RECEIVED),
    ]
    return Batch(events=events, absorbed=ids, status=RunStatus.SUSPENDED)


def test_prune_deletes_a_finished_run_with_every_row_it_owned(
    journal: Journal, clock: FakeClock
) -> None:
    with_history(journal, "old")
    create(journal, "open")
    suspend(journal, "open", tasks=[task("open", 1)])
    assert rows_of(journal, ["old"])["runs"] == 1
    assert rows_of(journal, ["old"])["tasks"] == 1
    clock.advance(10)

    assert journal.prune(closed_before=clock()) == ["old"]

    assert journal.describe("old") is None
    assert journal.history("old") == []
    assert set(rows_of(journal, ["old"]).values()) == {0}
    assert journal.mark_started(task("old", 1).task_id) is TaskStart.ENDED
    assert not journal.deliver("old", signal("late")).accepted
    # The open run is untouched.
    assert journal.describe("open") is not None
    assert [e.seq for e in journal.history("open")] == [1]
    assert rows_of(journal, ["open"])["tasks"] == 1
    assert journal.prune(closed_before=clock()) == []


def test_prune_keeps_runs_closed_at_or_after_the_cutoff(journal: Journal, clock: FakeClock) -> None:
    create(journal, "a")
    finish(journal, "a", RunStatus.FAILED)
    closed = clock()
    clock.advance(5)
    create(journal, "b")
    finish(journal, "b", RunStatus.CANCELLED)

    assert journal.prune(closed_before=closed) == []
    assert journal.prune(closed_before=closed + 1) == ["a"]
    assert journal.describe("b") is not None


def start_child(journal: Journal, parent: str, child: str, policy: str = "cancel") -> None:
    run = new_run(
        child, "child", parent_run_id=parent, parent_command_id=1, parent_close_policy=policy
    )
    suspend(
        journal,
        parent,
        events=[NewEvent(type=EventType.CHILD_STARTED, command_id=1)],
        children=[run],
    )


def continue_as_new(journal: Journal, this: str, successor: str, root: str, **kw: Any) -> None:
    commit(
        journal,
        this,
        events=[NewEvent(type=EventType.RUN_CONTINUED)],
        status=RunStatus.CONTINUED,
        continuation=new_run(successor, correlation_id=root, continued_from_run_id=this, **kw),
    )


def test_a_finished_child_of_an_open_parent_is_kept(journal: Journal, clock: FakeClock) -> None:
    create(journal, "p")
    start_child(journal, "p", "c")
    finish(journal, "c")
    clock.advance(10)

    assert journal.prune(closed_before=clock()) == []
    assert journal.describe("c") is not None

    finish(journal, "p")  # absorbs nothing: the child's outcome stays in its inbox, dropped
    clock.advance(10)
    assert sorted(journal.prune(closed_before=clock())) == ["c", "p"]
    assert set(rows_of(journal, ["c", "p"]).values()) == {0}


def test_a_finished_link_of_an_open_chain_is_kept(journal: Journal, clock: FakeClock) -> None:
    create(journal, "r1")
    continue_as_new(journal, "r1", "r2", "r1")
    clock.advance(10)

    assert journal.prune(closed_before=clock()) == []
    assert journal.describe("r1") is not None

    continue_as_new(journal, "r2", "r3", "r1")
    finish(journal, "r3")
    clock.advance(10)
    assert sorted(journal.prune(closed_before=clock())) == ["r1", "r2", "r3"]


def test_an_open_grandchild_keeps_its_whole_family(journal: Journal, clock: FakeClock) -> None:
    create(journal, "p")
    start_child(journal, "p", "c", policy="abandon")
    start_child(journal, "c", "g", policy="abandon")
    finish(journal, "c")
    finish(journal, "p")
    clock.advance(10)

    assert journal.prune(closed_before=clock()) == []

    finish(journal, "g")
    assert journal.prune(closed_before=clock()) == []  # g closed after the cutoff
    clock.advance(10)
    assert sorted(journal.prune(closed_before=clock())) == ["c", "g", "p"]


def test_a_continued_child_goes_with_its_parents_family(journal: Journal, clock: FakeClock) -> None:
    create(journal, "p")
    start_child(journal, "p", "c1")
    continue_as_new(journal, "c1", "c2", "c1", parent_run_id="p", parent_command_id=1)
    clock.advance(10)
    assert journal.prune(closed_before=clock()) == []

    finish(journal, "c2")
    finish(journal, "p")
    clock.advance(10)
    assert sorted(journal.prune(closed_before=clock())) == ["c1", "c2", "p"]


def test_prune_takes_whole_families_oldest_first_up_to_the_limit(
    journal: Journal, clock: FakeClock
) -> None:
    for name in ("a", "b", "c"):
        create(journal, name)
        finish(journal, name)
        clock.advance(1)
    create(journal, "p")
    start_child(journal, "p", "k")
    finish(journal, "k")
    finish(journal, "p")
    clock.advance(1)

    assert journal.prune(closed_before=clock(), limit=2) == ["a", "b"]
    assert journal.prune(closed_before=clock(), limit=2) == ["c"]  # p and k go together
    assert sorted(journal.prune(closed_before=clock(), limit=1)) == ["k", "p"]
    assert journal.prune(closed_before=clock(), limit=1) == []


def test_prune_by_workflow_takes_families_whose_top_run_is_of_it(
    journal: Journal, clock: FakeClock
) -> None:
    journal.create_run(new_run("o1", "order"))
    journal.create_run(new_run("x1", "other"))
    for run_id in ("o1", "x1"):
        finish(journal, run_id)
    clock.advance(1)

    assert journal.prune(closed_before=clock(), workflow="order") == ["o1"]
    assert journal.describe("x1") is not None


def test_prunable_pages_through_what_prune_would_delete(journal: Journal, clock: FakeClock) -> None:
    for name in ("a", "b", "c"):
        create(journal, name)
        finish(journal, name)
        clock.advance(1)
    create(journal, "open-chain")
    continue_as_new(journal, "open-chain", "open-tip", "open-chain")

    first = journal.prunable(closed_before=clock(), limit=2)
    rest = journal.prunable(closed_before=clock(), limit=2, after=first[-1].key)

    assert [f.run_ids for f in first + rest] == [("a",), ("b",), ("c",)]
    assert journal.describe("a") is not None  # nothing was deleted


def test_histories_reads_runs_with_their_histories_in_the_order_given(
    journal: Journal, clock: FakeClock
) -> None:
    with_history(journal, "old")
    create(journal, "open")
    start_child(journal, "open", "child")
    each = {r: (journal.describe(r), journal.history(r)) for r in ("old", "open", "child")}

    found = journal.histories(["child", "unknown", "old", "child", "open"])

    assert [(h.info, list(h.events)) for h in found] == [
        each["child"],
        each["old"],
        each["open"],
    ]
    assert [e.type for e in found[1].events][-1] is EventType.RUN_COMPLETED
    assert journal.histories([]) == []
    clock.advance(10)
    journal.prune(closed_before=clock())
    assert journal.histories(["old"]) == []


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_a_bad_limit_is_refused(journal: Journal, limit: Any) -> None:
    with pytest.raises(ValueError, match="limit must be a positive whole number"):
        journal.prune(closed_before=0.0, limit=limit)


def test_memory_and_sqlite_journals_refuse_a_callers_transaction(journal: Journal) -> None:
    if isinstance(journal, SqlJournal) and journal.postgres:
        pytest.skip("Postgres joins the caller's transaction (tests/integration)")
    with pytest.raises(TransactionalStartError, match="needs a Postgres journal"):
        journal.create_run_in(object(), new_run("r1"))
    assert journal.describe("r1") is None
