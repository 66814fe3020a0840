"""Retention as dispatchers apply it (in-memory journal, fake clock), the setting that turns
it on, and the ages operators write (``30d``, ``12h``) or give in seconds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from orchestrator import Orchestrator
from orchestrator.journal import pruning
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Batch
from orchestrator.model.durations import age_seconds, parse_duration
from orchestrator.model.errors import TransactionalStartError
from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.settings import Settings
from orchestrator.runtime import retention
from orchestrator.runtime.dispatcher import Dispatcher
from orchestrator.runtime.publisher import RecordingPublisher
from tests.builders import new_run
from tests.conftest import FakeClock

DAY = 86400.0


def finished(journal: InMemoryJournal, run_id: str) -> None:
    assert journal.create_run(new_run(run_id))
    claimed = journal.claim(run_id, "w", 60)
    assert claimed is not None
    done = Batch(events=[NewEvent(type=EventType.RUN_COMPLETED)], status=RunStatus.COMPLETED)
    journal.commit(claimed.lease, done)


def dispatcher(journal: Any, clock: FakeClock, **settings: Any) -> Dispatcher:
    return Dispatcher(journal, RecordingPublisher(), Settings(**settings), clock=clock)


def test_a_dispatcher_prunes_runs_closed_longer_ago_than_the_retention(clock: FakeClock) -> None:
    journal = InMemoryJournal(clock=clock)
    finished(journal, "old")
    clock.advance(20)
    finished(journal, "new")
    clock.advance(1)
    passes = dispatcher(journal, clock, retention=10)

    assert passes.tick() == 1
    assert journal.describe("old") is None
    assert journal.describe("new") is not None

    clock.advance(retention.EVERY / 2)
    assert passes.tick() == 0  # "new" is old enough, but the next look is not due yet
    assert journal.describe("new") is not None
    clock.advance(retention.EVERY / 2)
    assert passes.tick() == 1
    assert journal.describe("new") is None


def test_without_retention_every_run_is_kept(clock: FakeClock) -> None:
    journal = InMemoryJournal(clock=clock)
    finished(journal, "old")
    clock.advance(1000 * DAY)
    assert dispatcher(journal, clock).tick() == 0
    assert journal.describe("old") is not None


def test_a_failing_prune_does_not_stop_the_dispatchers_other_work(clock: FakeClock) -> None:
    class Refusing(InMemoryJournal):
        def prune(self, **_: Any) -> list[str]:
            raise PermissionError("permission denied for table events")

    refusing = Refusing(clock=clock)
    refusing.create_run(new_run("r1"))
    refusing.register_node("n1", [("wf", "1")], node_ttl=30)
    passes = dispatcher(refusing, clock, retention=0, redispatch_after=1)
    clock.advance(2)
    assert passes.tick() == 1  # r1 dispatched all the same
    assert passes.publisher.replays[0].run_id == "r1"  # type: ignore[attr-defined]


def old_runs(clock: FakeClock, n: int) -> InMemoryJournal:
    """A journal of ``n`` runs finished ten seconds ago."""
    journal = InMemoryJournal(clock=clock)
    for i in range(n):
        finished(journal, f"r{i}")
    clock.advance(10)
    return journal


def slow_timer() -> Callable[[], float]:
    """A monotonic timer each reading of which is 0.15 s later: every prune is slow."""
    elapsed = [0.0]

    def timer() -> float:
        elapsed[0] += 0.15
        return elapsed[0]

    return timer


def test_the_batch_adapts_and_pruning_rests_in_proportion_to_its_work(clock: FakeClock) -> None:
    journal = old_runs(clock, 60)
    slow = retention.Retention(journal, 5, clock=clock, timer=slow_timer())
    slow.batch = 20
    assert slow.tick() == 20  # one transaction, then the pass's budget is spent
    assert slow.batch == 10
    assert slow.tick() == 0  # resting: 0.45 s of work, so REST times as long
    clock.advance(0.45 * retention.REST - 0.01)
    assert slow.tick() == 0
    clock.advance(0.01)
    assert slow.tick() == 10
    assert len(journal.list_runs(limit=100)) == 30


def test_a_dispatcher_with_runs_left_to_prune_wakes_for_its_next_look(clock: FakeClock) -> None:
    journal = old_runs(clock, 40)
    waits: list[float] = []
    stop = threading.Event()

    def wait(timeout: float) -> None:
        waits.append(round(timeout, 6))
        clock.advance(timeout)
        if not journal.list_runs(limit=1) and timeout == 1.0:
            stop.set()

    passes = Dispatcher(
        journal,
        RecordingPublisher(),
        Settings(retention=5, poll_interval=1.0),
        clock=clock,
        wait=wait,
    )
    # Each look spends 0.45 s on one prune of 10, then rests.
    passes.retention = retention.Retention(journal, 5, clock=clock, timer=slow_timer())
    passes.retention.batch = 10
    passes.run(stop)

    # Woken for each next look while runs are left (not after the poll interval), then
    # back to the poll interval once none is.
    assert waits == [round(0.45 * retention.REST, 6)] * 4 + [1.0]


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), "7d", True])
def test_a_retention_that_is_not_seconds_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="orchestrator_retention must be a number of seconds"):
        Settings(retention=value)
    with pytest.raises(ValueError, match="orchestrator_retention"):
        Settings.resolve({"orchestrator_retention": value})


def test_a_retention_of_zero_or_more_is_taken() -> None:
    assert Settings(retention=0).retention == 0
    assert Settings.resolve({"orchestrator_retention": 30 * DAY}).retention == 30 * DAY
    assert Settings().retention is None


def test_prune_all_goes_on_until_none_is_left_or_the_budget_has_passed(clock: FakeClock) -> None:
    journal = InMemoryJournal(clock=clock)
    for i in range(7):
        finished(journal, f"r{i}")
    clock.advance(10)
    readings = iter([0.0, 0.5, 1.0, 1.5])

    def pruned(**kw: Any) -> int:
        return pruning.prune_all(journal, closed_before=clock(), limit=2, **kw)

    assert pruned(budget=1.0, timer=lambda: next(readings)) == 4  # a batch at 0.5, one at 1.0
    assert pruned() == 3
    assert pruned() == 0
    assert journal.list_runs() == []


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("0s", 0)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "1.5h", "1w", "1d12h", "ten days"])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "seconds"), [("30d", 30 * DAY), (" 90m", 5400), (0, 0), (1.5, 1.5)]
)
def test_an_age_is_a_duration_or_seconds(value: Any, seconds: float) -> None:
    assert age_seconds(value, "older_than") == seconds


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("1w", "older_than: '1w' is not a duration"),
        (-1, "older_than must be a finite number of seconds >= 0"),
        (float("inf"), "older_than must be a finite number of seconds >= 0"),
        (True, "older_than must be a duration .* or seconds, not True"),
        (None, "older_than must be a duration .* or seconds, not None"),
        ([30], "older_than must be a duration .* or seconds, not \\[30\\]"),
    ],
)
def test_an_age_that_is_neither_is_refused(value: Any, error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        age_seconds(value, "older_than")


def test_an_in_memory_orchestrator_refuses_a_callers_transaction() -> None:
    app = Celery("tx", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"])
    journal = InMemoryJournal()
    orc = Orchestrator(app, journal=journal)

    @orc.workflow(name="noop")
    async def noop(ctx: Any) -> None:
        return None

    with pytest.raises(TransactionalStartError, match="needs a Postgres journal"):
        orc.start(noop, run_id="r1", connection=object())
    assert journal.describe("r1") is None


def test_the_retention_grants_add_deletes_to_the_runtimes() -> None:
    from click.testing import CliRunner

    from orchestrator.cli.main import main

    printed = CliRunner().invoke(main, ["db", "grant-retention", "pruner", "--print"])
    assert printed.exit_code == 0, printed.output
    assert 'GRANT DELETE ON TABLE events TO "pruner";' in printed.output
    assert 'GRANT SELECT, INSERT ON TABLE events TO "pruner";' in printed.output
    refused = CliRunner().invoke(main, ["db", "grant-retention", "a; DROP", "--print"])
    assert refused.exit_code == 1 and "invalid role name" in refused.output
