"""Retention as a scheduled run: the built-in ``continuum.prune`` workflow, on SQLite."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from orchestrator import Orchestrator, UnknownRun, WorkflowContext

app = Celery("retention")
orc = Orchestrator(app)


@orc.workflow(name="greet")
async def greet(ctx: WorkflowContext, name: str) -> str:
    return f"hello {name}"


@orc.workflow(name="wait_for_go")
async def wait_for_go(ctx: WorkflowContext) -> str:
    return await ctx.wait_signal("go")


def test_a_prune_run_deletes_finished_runs_older_than_its_age(workflows: Orchestrator) -> None:
    # --8<-- [start:schedule]
    orc.schedule("prune-nightly", "continuum.prune", "30d", cron="0 3 * * *")
    # --8<-- [end:schedule]
    old = [orc.start(greet, name) for name in ("ada", "alan")]
    for handle in old:
        handle.result(timeout=10)
    closed = max(handle.describe().closed_at for handle in old)
    while datetime.now(UTC) < closed + timedelta(seconds=2):  # until they are 2 seconds old
        time.sleep(0.05)
    waiting = orc.start(wait_for_go)
    newer = orc.start(greet, "grace")
    newer.result(timeout=10)

    # --8<-- [start:run]
    prune = orc.start("continuum.prune", "2s")  # or in seconds: orc.start("continuum.prune", 2)
    assert prune.result(timeout=30) == 2  # how many runs it deleted
    # --8<-- [end:run]
    with pytest.raises(UnknownRun):
        orc.describe(old[0].run_id)
    remaining = {info.run_id for info in orc.list_runs()}
    assert remaining == {waiting.run_id, newer.run_id, prune.run_id}
    # Each prune is a run; earlier ones go once they are old enough, open runs never.
    assert orc.start("continuum.prune", 0).result(timeout=30) == 2  # newer, and the first prune
    assert {info.workflow for info in orc.list_runs()} == {"wait_for_go", "continuum.prune"}
    orc.signal(waiting.run_id, "go", "now")
    assert waiting.result(timeout=10) == "now"
    orc.delete_schedule("prune-nightly")


def test_an_age_that_is_not_one_is_refused_at_the_call(workflows: Orchestrator) -> None:
    with pytest.raises(ValueError, match="'1w' is not a duration"):
        orc.schedule("prune-weekly", "continuum.prune", "1w", cron="0 3 * * 0")
    with pytest.raises(ValueError, match="must be a finite number of seconds >= 0"):
        orc.start("continuum.prune", -60)
    assert "prune-weekly" not in {s.schedule_id for s in orc.list_schedules()}
