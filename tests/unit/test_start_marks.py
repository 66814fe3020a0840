"""Start marks recorded late, against the in-memory journal (real threads, short delays)."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.celery.start_marks import LateStartMarks
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Batch, TaskStart
from orchestrator.model.events import RunStatus
from tests.builders import new_run, task

DEADLINE = 10.0


class Marks(InMemoryJournal):
    """The in-memory journal, keeping the task id of each start mark asked of it."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.failures = failures
        self.changed = threading.Condition()

    def mark_started(self, task_id: str) -> TaskStart:
        with self.changed:
            self.asked.append(task_id)
            self.changed.notify_all()
            if self.failures:
                self.failures -= 1
                raise ConnectionError("journal unreachable")
        return super().mark_started(task_id)

    def renew_unstarted(self, task_id: str) -> bool:
        with self.changed:
            self.asked.append(f"renew {task_id}")
            self.changed.notify_all()
        return super().renew_unstarted(task_id)

    def wait_asked(self, count: int) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.asked) >= count, DEADLINE), self.asked
            return list(self.asked)


@pytest.fixture
def journal() -> Marks:
    journal = Marks()
    journal.create_run(new_run("r1"))
    claimed = journal.claim("r1", "w1", 60)
    assert claimed is not None
    journal.commit(
        claimed.lease,
        Batch(tasks=[task(command_id=1), task(command_id=2)], status=RunStatus.SUSPENDED),
    )
    return journal


def test_a_body_that_ends_within_the_delay_leaves_no_start_mark(journal: Marks) -> None:
    marks = LateStartMarks(journal, 0.05, renew_every=60)
    quick, slow = task(command_id=1).task_id, task(command_id=2).task_id
    assert marks.defer(quick, mark_by=time.time() + 60)
    marks.settle(quick)
    assert marks.defer(slow, mark_by=time.time() + 60)
    # The slow one's mark was due after the quick one's: only it was recorded.
    assert journal.wait_asked(1) == [slow]
    assert journal.mark_started(quick) is TaskStart.STARTED
    assert journal.mark_started(slow) is TaskStart.RUNNING  # a copy taken now is skipped


def test_mark_by_comes_before_the_delay(journal: Marks) -> None:
    marks = LateStartMarks(journal, 60, renew_every=60)
    slow = task(command_id=1).task_id
    assert marks.defer(slow, mark_by=time.time() + 0.05)
    assert journal.wait_asked(1) == [slow]


@pytest.mark.parametrize(
    ("delay", "mark_by"),
    [(0, 60.0), (1, None), (1, -1.0)],
    ids=["marks-disabled", "no-mark-by", "mark-by-passed"],
)
def test_a_start_with_no_time_to_wait_is_left_to_the_caller(
    journal: Marks, delay: float, mark_by: float | None
) -> None:
    marks = LateStartMarks(journal, delay, renew_every=60)
    when = None if mark_by is None else time.time() + mark_by
    assert not marks.defer(task(command_id=1).task_id, mark_by=when)


def test_a_mark_that_fails_is_tried_again() -> None:
    journal = Marks(failures=1)
    journal.create_run(new_run("r1"))
    marks = LateStartMarks(journal, 0.05, renew_every=60)
    slow = task(command_id=1).task_id
    assert marks.defer(slow, mark_by=time.time() + 60)
    assert journal.wait_asked(2) == [slow, slow]


def test_a_task_run_in_place_acked_late_is_renewed_until_it_ends(journal: Marks) -> None:
    marks = LateStartMarks(journal, 0.01, renew_every=0.05)
    slow = task(command_id=1).task_id
    assert marks.defer(slow, mark_by=time.time() + 0.05, renew=True)
    assert journal.wait_asked(3) == [f"renew {slow}"] * 3
    marks.settle(slow)
    asked = len(journal.wait_asked(3))
    time.sleep(0.2)  # a renewal due in 0.05 s would be asked by now, were it still owed
    assert journal.asked == [f"renew {slow}"] * asked
    assert journal.mark_started(slow) is TaskStart.STARTED  # its start was never recorded


def test_renewals_stop_once_the_task_started_elsewhere(journal: Marks) -> None:
    marks = LateStartMarks(journal, 0.01, renew_every=0.05)
    slow = task(command_id=1).task_id
    assert marks.defer(slow, mark_by=time.time() + 0.05, renew=True)
    journal.wait_asked(1)
    assert journal.mark_started(slow) is TaskStart.STARTED  # a re-published copy ran
    journal.wait_asked(3)
    time.sleep(0.2)  # a renewal due in 0.05 s would be asked by now, were it still owed
    assert journal.asked == [f"renew {slow}", slow, f"renew {slow}"]
