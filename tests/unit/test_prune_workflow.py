"""The built-in ``continuum.prune`` workflow on the in-memory journal: registered on every
orchestrator, its arguments refused at ``start`` and ``schedule`` with nothing written, its
cutoff taken from the run's start, and its task pruning the orchestrator's journal (the
test kit's own, in a ``WorkflowEnvironment``).

It runs against a real worker on SQLite in the retention page's example
(``docs/examples/howto/retention.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Celery

from orchestrator import Orchestrator, WorkflowContext
from orchestrator.celery import prune
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.model.errors import UnknownRun, UnknownWorkflow
from orchestrator.testing import WorkflowEnvironment
from tests.builders import offline
from tests.conftest import FakeClock
from tests.unit.test_retention import finished

DAY = 86400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def orc(clock: FakeClock) -> Orchestrator:
    app = Celery("prune", broker="memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    return offline(Orchestrator(app, journal=InMemoryJournal(clock=clock), eager_start=False))


def test_every_orchestrator_has_the_workflow_and_its_task(orc: Orchestrator) -> None:
    assert orc.registry.has(prune.WORKFLOW, prune.VERSION)
    assert prune.TASK in orc.app.tasks


REFUSED: list[tuple[tuple[Any, ...], type[Exception], str]] = [
    (("1w",), ValueError, "continuum.prune older_than: '1w' is not a duration"),
    (("30",), ValueError, "'30' is not a duration: write a whole number and one unit"),
    ((-1,), ValueError, "older_than must be a finite number of seconds >= 0, not -1"),
    ((None,), TypeError, "older_than must be a duration .* or seconds, not None"),
    ((), TypeError, r"takes \(older_than, workflow=None\), not 0 arguments"),
    (("30d", "order", 1), TypeError, "not 3 arguments"),
    (("30d", 5), TypeError, "workflow must be a workflow name or None, not 5"),
    (("30d", ""), TypeError, "workflow must be a workflow name or None, not ''"),
]


@pytest.mark.parametrize(("args", "error", "message"), REFUSED)
def test_bad_arguments_are_refused_at_the_call_with_nothing_written(
    orc: Orchestrator, args: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        orc.start("continuum.prune", *args, run_id="p1")
    with pytest.raises(error, match=message):
        orc.schedule("prune-nightly", "continuum.prune", *args, cron="0 3 * * *")
    with pytest.raises(error, match=message):
        orc.signal_with_start("continuum.prune", *args, run_id="p2", signal="go")
    assert orc.list_runs() == []
    assert orc.list_schedules() == []


def test_good_arguments_are_taken(orc: Orchestrator) -> None:
    info = orc.schedule("prune-nightly", "continuum.prune", "30d", cron="0 3 * * *")
    assert (info.spec.workflow, info.spec.args) == ("continuum.prune", ["30d"])
    orc.schedule("prune-orders", "continuum.prune", 3600, "order", every=3600)
    assert orc.start("continuum.prune", 0.5, None).describe().args == [0.5, None]
    # Another workflow's arguments are its own business.
    with pytest.raises(UnknownWorkflow):
        orc.start("continuum.prunes", "1w")


def test_the_cutoff_is_the_runs_start_less_the_age(orc: Orchestrator) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(*args: Any) -> int:
        calls.append(args)
        return 7

    start = datetime(2030, 1, 31, 3, 0, tzinfo=UTC)
    with WorkflowEnvironment(orc, {prune.TASK: fake}, start_time=start) as env:
        assert env.result(env.start("continuum.prune", "30d", "order")) == 7
        assert env.result(env.start("continuum.prune", 90)) == 7
    assert calls == [
        (start.timestamp() - 30 * DAY, "order"),
        (start.timestamp() - 90, None),
    ]


def test_in_the_test_kit_it_prunes_the_environments_journal(
    orc: Orchestrator, clock: FakeClock
) -> None:
    @orc.workflow(name="noop")
    async def noop(ctx: WorkflowContext) -> None:
        return None

    outside = orc.journal
    assert isinstance(outside, InMemoryJournal)
    finished(outside, "outside")
    clock.advance(10 * DAY)
    with WorkflowEnvironment(orc) as env:
        old = env.start(noop)
        env.result(old)
        env.advance(7200)
        new = env.start(noop)
        env.result(new)
        assert env.result(env.start("continuum.prune", "1h")) == 1
        assert env.describe(new) is not None
        with pytest.raises(UnknownRun):
            env.describe(old)
    assert outside.describe("outside") is not None


def test_the_task_prunes_the_orchestrators_journal(orc: Orchestrator, clock: FakeClock) -> None:
    journal = orc.journal
    assert isinstance(journal, InMemoryJournal)
    for run_id in ("a", "b", "c"):
        finished(journal, run_id)
    clock.advance(10)
    finished(journal, "new")

    assert orc.app.tasks[prune.TASK](clock() - 5) == 3
    assert [info.run_id for info in orc.list_runs()] == ["new"]
    assert orc.app.tasks[prune.TASK](clock() - 5) == 0
