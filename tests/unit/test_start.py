"""A start takes the new run's first step in the starting process when it can, and leaves it
to a worker (a replay message) when it cannot."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator import WorkflowContext
from orchestrator.client.runs import Client
from orchestrator.engine.registry import Registry
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import RunRef
from orchestrator.model.events import EventType, RunStatus
from orchestrator.model.settings import Settings
from orchestrator.runtime.driver import Driver
from orchestrator.runtime.publisher import RecordingPublisher
from tests.invariants import check_history


async def one_step(ctx: WorkflowContext, n: int) -> int:
    return await ctx.activity("math.double", n)


class FailingClaims(InMemoryJournal):
    """A journal whose next ``failures`` claims fail, as a lost connection would."""

    failures = 0

    def claim_and_commit(self, run_id: str, **kw: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection lost")
        return super().claim_and_commit(run_id, **kw)


def client(
    journal: InMemoryJournal, *, eager: bool = True
) -> tuple[Client, Registry, RecordingPublisher]:
    registry = Registry()
    registry.add(one_step, name="one", version="1")
    publisher = RecordingPublisher()
    settings = Settings()
    driver = Driver(journal, registry, publisher, replace(settings, cache_size=0), owner="starter")
    return (
        Client(journal, registry, publisher, settings, driver=driver if eager else None),
        registry,
        publisher,
    )


def kinds(journal: InMemoryJournal, run_id: str) -> list[EventType]:
    history = journal.history(run_id)
    check_history(history)
    return [e.type for e in history]


def test_a_start_schedules_the_first_activity_itself_and_sends_no_replay() -> None:
    journal = InMemoryJournal()
    starter, _, publisher = client(journal)
    run_id = starter.start("one", 21, run_id="r1")
    assert kinds(journal, run_id) == [EventType.RUN_STARTED, EventType.ACTIVITY_SCHEDULED]
    assert [(t.task_name, t.args) for t in publisher.tasks] == [("math.double", [21])]
    assert publisher.replays == []
    info = journal.describe(run_id)
    assert info is not None and info.status is RunStatus.SUSPENDED
    assert starter.driver is not None and len(starter.driver.cache) == 0


@pytest.mark.parametrize("eager", [True, False])
def test_a_second_start_of_the_same_run_sends_nothing(eager: bool) -> None:
    journal = InMemoryJournal()
    starter, _, publisher = client(journal, eager=eager)
    starter.start("one", 21, run_id="r1")
    history = journal.history("r1")
    publisher.take()
    assert starter.start("one", 21, run_id="r1") == "r1"
    assert publisher.take() == ([], [])
    assert journal.history("r1") == history


def test_without_eager_start_a_worker_takes_the_first_step() -> None:
    journal = InMemoryJournal()
    starter, _, publisher = client(journal, eager=False)
    starter.start("one", 21, run_id="r1")
    assert kinds(journal, "r1") == [EventType.RUN_STARTED]
    assert publisher.replays == [RunRef(run_id="r1", workflow="one", version="1")]
    assert publisher.tasks == []


def test_a_first_step_that_fails_at_start_is_left_to_a_worker() -> None:
    journal = FailingClaims()
    starter, registry, publisher = client(journal)
    journal.failures = 1
    assert starter.start("one", 21, run_id="r1") == "r1"
    assert publisher.take() == ([], [RunRef(run_id="r1", workflow="one", version="1")])
    assert kinds(journal, "r1") == [EventType.RUN_STARTED]

    worker = Driver(journal, registry, publisher, Settings(), owner="worker")
    assert worker.advance("r1") is RunStatus.SUSPENDED
    assert kinds(journal, "r1") == [EventType.RUN_STARTED, EventType.ACTIVITY_SCHEDULED]
    assert [t.task_name for t in publisher.tasks] == ["math.double"]


def test_a_workflow_loaded_only_on_a_worker_is_started_there() -> None:
    journal = InMemoryJournal()
    starter, _, publisher = client(journal)
    journal.register_node("worker-1", [("remote", "2")], node_ttl=30.0)
    starter.start("remote", 1, run_id="r1", version="2")
    assert publisher.replays == [RunRef(run_id="r1", workflow="remote", version="2")]
    assert kinds(journal, "r1") == [EventType.RUN_STARTED]


def test_eager_start_must_be_a_boolean() -> None:
    with pytest.raises(TypeError, match="orchestrator_eager_start must be True or False, not 'no'"):
        Settings(eager_start="no")  # type: ignore[arg-type]
