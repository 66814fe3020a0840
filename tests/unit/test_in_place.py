"""Which activities a worker keeps back to run in place, and how many it runs per message."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.celery.in_place import InPlace
from orchestrator.model.records import OutboxTask
from orchestrator.model.settings import Settings
from tests.builders import task


def served(limit: int) -> InPlace:
    """A worker's ``InPlace`` that may run any task but those named ``elsewhere``."""
    in_place = InPlace(limit)
    in_place.serve(lambda t: t.task_name != "elsewhere")
    return in_place


def test_only_a_worker_journaling_an_outcome_keeps_a_task_back() -> None:
    tasks = [task(command_id=1)]
    assert InPlace(3).keep(tasks) == tasks  # not a worker: served by no bootstep
    in_place = served(3)
    assert in_place.keep(tasks) == tasks  # a worker, but not in a step of its own
    with in_place.keeping():
        assert in_place.keep(tasks) == []


def test_a_limit_of_zero_keeps_nothing_back() -> None:
    in_place = served(0)
    tasks = [task(command_id=1)]
    with in_place.keeping():
        assert in_place.keep(tasks) == tasks


def test_one_eligible_task_of_a_step_is_kept_and_the_others_published() -> None:
    in_place = served(3)
    other = replace(task(command_id=1), task_name="elsewhere")
    first, second = task(command_id=2), task(command_id=3)
    with in_place.keeping():
        assert in_place.keep([other, first, second]) == [other, second]
        assert in_place.keep([task(command_id=4)]) == [task(command_id=4)]
    ran: list[OutboxTask] = []
    in_place.run_kept(ran.append, pytest.fail)
    assert ran == [first]


def test_the_loop_runs_at_most_the_limit_of_tasks_per_message() -> None:
    in_place = served(3)
    published: list[OutboxTask] = []
    ran: list[int] = []

    def run(t: OutboxTask) -> None:
        """As a task run in place does: its outcome's step schedules the next one."""
        ran.append(t.command_id)
        in_place.run_kept(pytest.fail, pytest.fail)  # its own postrun: a no-op in the loop
        with in_place.keeping():
            published.extend(in_place.keep([task(command_id=t.command_id + 1)]))

    with in_place.keeping():
        assert in_place.keep([task(command_id=1)]) == []
    in_place.run_kept(run, published.extend)
    assert ran == [1, 2, 3]
    assert [t.command_id for t in published] == [4]
    # The next message starts a new count.
    with in_place.keeping():
        assert in_place.keep([task(command_id=4)]) == []
    in_place.run_kept(run, published.extend)
    assert ran == [1, 2, 3, 4, 5, 6]


def test_a_task_kept_by_a_run_that_raised_is_published() -> None:
    in_place = served(3)
    published: list[OutboxTask] = []

    def run(t: OutboxTask) -> None:
        with in_place.keeping():
            in_place.keep([task(command_id=t.command_id + 1)])
        raise RuntimeError("the broker went away")

    with in_place.keeping():
        in_place.keep([task(command_id=1)])
    with pytest.raises(RuntimeError):
        in_place.run_kept(run, published.extend)
    assert [t.command_id for t in published] == [2]
    assert not in_place.running()


@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_eager_activities_must_be_a_whole_number(value: object) -> None:
    with pytest.raises(ValueError, match="orchestrator_eager_activities must be a whole number"):
        Settings(eager_activities=value)  # type: ignore[arg-type]
