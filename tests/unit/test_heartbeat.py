"""``orchestrator.heartbeat()`` and ``activity_info()`` in an activity's body, on the in-memory
journal: throttled writes, the end of an attempt seen by its heartbeats, details for retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import orchestrator
from orchestrator import ActivityCancelled, PayloadError
from orchestrator.journal.inbox import cancel_item
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Batch, Beat
from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.records import OutboxTask
from orchestrator.runtime import heartbeat
from tests.builders import new_run, task
from tests.conftest import FakeClock


class Counting(InMemoryJournal):
    """Counts the heartbeats that reach the journal."""

    writes = 0

    def record_heartbeat(self, task_id: str, details: Any = None) -> Beat | None:
        self.writes += 1
        return super().record_heartbeat(task_id, details)


@pytest.fixture
def journal() -> Counting:
    return Counting(clock=FakeClock())


@pytest.fixture(autouse=True)
def _outside() -> Iterator[None]:
    yield
    heartbeat.leave()


def scheduled(journal: InMemoryJournal, *attempts: OutboxTask) -> None:
    journal.create_run(new_run("r1"))
    claimed = journal.claim("r1", "w", 60)
    assert claimed is not None
    journal.commit(claimed.lease, Batch(tasks=attempts, status=RunStatus.SUSPENDED))
    for attempt in attempts:
        journal.mark_started(attempt.task_id)


def enter(journal: InMemoryJournal, attempt: OutboxTask, clock: FakeClock, **kw: Any) -> None:
    heartbeat.enter(
        heartbeat.Current(
            journal,
            run_id=attempt.run_id,
            command_id=attempt.command_id,
            attempt=attempt.attempt,
            task_id=attempt.task_id,
            task_name=attempt.task_name,
            clock=clock,
            **kw,
        )
    )


def test_outside_an_activity_a_heartbeat_does_nothing_and_activity_info_raises() -> None:
    orchestrator.heartbeat({"ignored": True})
    with pytest.raises(RuntimeError, match="only in the body"):
        orchestrator.activity_info()


def test_heartbeats_write_at_most_once_per_third_of_the_timeout(journal: Counting) -> None:
    attempt = task(heartbeat_timeout=30)
    scheduled(journal, attempt)
    clock = FakeClock()
    enter(journal, attempt, clock)

    for i in range(10_000):
        orchestrator.heartbeat(i)
    assert journal.writes == 1  # the first, at once
    assert journal.heartbeat_details("r1", 1, 1) == 0
    clock.advance(9.9)
    orchestrator.heartbeat(10_000)
    assert journal.writes == 1
    clock.advance(0.1)
    orchestrator.heartbeat()  # no new details: the newest ones given are written
    assert journal.writes == 2
    assert journal.heartbeat_details("r1", 1, 1) == 10_000


def test_an_attempt_without_a_heartbeat_timeout_writes_every_untimed_interval(
    journal: Counting,
) -> None:
    attempt = task()
    scheduled(journal, attempt)
    clock = FakeClock()
    enter(journal, attempt, clock)
    orchestrator.heartbeat("a")
    clock.advance(heartbeat.UNTIMED_INTERVAL - 1)
    orchestrator.heartbeat("b")
    clock.advance(1)
    orchestrator.heartbeat("c")
    assert journal.writes == 2
    assert journal.heartbeat_details("r1", 1, 1) == "c"


def test_a_heartbeat_of_an_attempt_no_longer_current_raises_activity_cancelled(
    journal: Counting,
) -> None:
    attempt = task(heartbeat_timeout=3)
    scheduled(journal, attempt)
    clock = FakeClock()
    enter(journal, attempt, clock)
    orchestrator.heartbeat()
    # Its run was cancelled and ended: every unfinished task of it ends with it.
    journal.deliver("r1", cancel_item("stop"))
    claimed = journal.claim("r1", "w", 60)
    assert claimed is not None
    journal.commit(
        claimed.lease,
        Batch(events=[NewEvent(type=EventType.RUN_CANCELLED)], status=RunStatus.CANCELLED),
    )

    clock.advance(1)
    with pytest.raises(ActivityCancelled, match=attempt.task_id):
        orchestrator.heartbeat()
    writes = journal.writes
    with pytest.raises(ActivityCancelled):
        orchestrator.heartbeat()  # known already: no write
    assert journal.writes == writes
    assert isinstance(ActivityCancelled("x"), Exception)  # Celery's worker survives it


def test_details_over_the_payload_limit_are_refused_and_nothing_is_written(
    journal: Counting,
) -> None:
    attempt = task(heartbeat_timeout=30)
    scheduled(journal, attempt)
    enter(journal, attempt, FakeClock(), max_payload_bytes=100)

    with pytest.raises(PayloadError, match=r"heartbeat details is \d+ bytes"):
        orchestrator.heartbeat("x" * 200)
    with pytest.raises(PayloadError, match="heartbeat details cannot be carried"):
        orchestrator.heartbeat(object())
    assert journal.writes == 0
    orchestrator.heartbeat("small")  # the next heartbeat writes
    assert journal.heartbeat_details("r1", 1, 1) == "small"


def test_a_retry_reads_the_details_its_earlier_attempt_recorded(journal: Counting) -> None:
    first, second = task(attempt=1, heartbeat_timeout=30), task(attempt=2, heartbeat_timeout=30)
    scheduled(journal, first, second)
    clock = FakeClock()
    enter(journal, first, clock)
    assert orchestrator.activity_info().heartbeat_details is None
    orchestrator.heartbeat({"page": 7})
    heartbeat.leave()

    enter(journal, second, clock)
    info = orchestrator.activity_info()
    assert (info.attempt, info.heartbeat_details) == (2, {"page": 7})
    assert (info.run_id, info.command_id, info.task_id) == ("r1", 1, second.task_id)
