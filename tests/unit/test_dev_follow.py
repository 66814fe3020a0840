"""``continuum dev`` prints every step of the run it follows, the last ones included.

The steps are read from the history, then the run's status: a run that ends between the two
reads has its last steps committed with its end, and they are printed before its result.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.cli.dev import _follow
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Batch
from orchestrator.model.events import EventType, NewEvent, RunInfo, RunStatus
from tests.builders import new_run


class EndsWhileRead(InMemoryJournal):
    """A journal whose run completes its last step just as its status is first read."""

    def __init__(self) -> None:
        super().__init__()
        self.finish: Any = None

    def describe(self, run_id: str) -> RunInfo | None:
        finish, self.finish = self.finish, None
        if finish is not None:
            finish()
        return super().describe(run_id)


@pytest.fixture
def sigterm() -> Iterator[list[int]]:
    """SIGTERM (how dev stops its worker) recorded instead of ending the test process."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    yield received
    signal.signal(signal.SIGTERM, previous)


def test_the_steps_committed_with_the_runs_end_are_printed_before_its_result(
    sigterm: list[int],
) -> None:
    journal = EndsWhileRead()
    assert journal.create_run(new_run("r"))
    lease = journal.claim("r", "w", 60)
    assert lease is not None
    scheduled = NewEvent(
        type=EventType.ACTIVITY_SCHEDULED, command_id=1, attempt=1, data={"task": "hello.shout"}
    )
    journal.commit(lease.lease, Batch(events=[scheduled]), release=False)

    def finish() -> None:
        done = Batch(
            events=[
                NewEvent(
                    type=EventType.ACTIVITY_COMPLETED,
                    command_id=1,
                    attempt=1,
                    data={"result": "HI"},
                ),
                NewEvent(type=EventType.RUN_COMPLETED, data={"result": "HI"}),
            ],
            status=RunStatus.COMPLETED,
            result="HI",
        )
        journal.commit(lease.lease, done)

    journal.finish = finish
    lines: list[str] = []

    _follow(SimpleNamespace(journal=journal), "r", threading.Event(), {"code": 0}, lines.append)  # type: ignore[arg-type]

    assert lines == ['  done           shout "HI"', 'result: "HI"']
    assert sigterm == [signal.SIGTERM]
