"""``continuum runs export|prune`` run as an operator runs them: a subprocess with only the
journal URL in its environment, on SQLite and Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from orchestrator.cli import common
from orchestrator.cli.main import main
from orchestrator.journal.protocol import Batch
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model.events import EventType, NewEvent, RunStatus
from tests.builders import new_run

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0


def continuum(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_JOURNAL_URL": url, "PYTHONPATH": str(ROOT)}
    env.pop("CONTINUUM_APP", None)
    return subprocess.run(
        [str(Path(sys.executable).parent / "continuum"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def finish(journal: SqlJournal, run_id: str) -> None:
    journal.create_run(new_run(run_id, "order", args=[run_id]))
    claimed = journal.claim(run_id, "w", 60)
    assert claimed is not None
    end = [NewEvent(type=EventType.RUN_COMPLETED, data={"result": run_id})]
    journal.commit(claimed.lease, Batch(events=end, status=RunStatus.COMPLETED, result=run_id))


@pytest.fixture(params=["sqlite_url", "postgres_url"])
def url(request: pytest.FixtureRequest) -> str:
    """A journal holding an old family (a top-level run and its child, finished two days
    ago) and a run finished now."""
    url: str = request.getfixturevalue(request.param)
    old = SqlJournal(url, clock=lambda: time.time() - 2 * DAY)
    try:
        old.create_run(new_run("old", "order"))
        claimed = old.claim("old", "w", 60)
        assert claimed is not None
        child = new_run("old-child", "child", parent_run_id="old", parent_command_id=1)
        started = [NewEvent(type=EventType.CHILD_STARTED, command_id=1)]
        old.commit(
            claimed.lease, Batch(events=started, children=[child], status=RunStatus.SUSPENDED)
        )
        claimed = old.claim("old-child", "w", 60)
        assert claimed is not None
        done = Batch(events=[NewEvent(type=EventType.RUN_COMPLETED)], status=RunStatus.COMPLETED)
        old.commit(claimed.lease, done)
        claimed = old.claim("old", "w", 60)  # woken by its child's end
        assert claimed is not None
        failed = Batch(
            events=[NewEvent(type=EventType.RUN_FAILED)],
            status=RunStatus.FAILED,
            error={"type": "X", "message": "no"},
        )
        old.commit(claimed.lease, failed)
    finally:
        old.close()
    new = SqlJournal(url)
    try:
        finish(new, "new")
    finally:
        new.close()
    return url


def run_ids(url: str) -> set[str]:
    journal = SqlJournal(url)
    try:
        return {info.run_id for info in journal.list_runs(limit=100)}
    finally:
        journal.close()


def test_export_then_prune_archives_and_deletes_the_old_family(url: str) -> None:
    exported = continuum(url, "runs", "export", "--older-than", "1d")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert {line["run_id"] for line in lines} == {"old", "old-child"}
    parent = next(line for line in lines if line["run_id"] == "old")
    assert parent["status"] == "failed" and parent["error"]["message"] == "no"
    types = [e["type"] for e in parent["history"]]
    assert types == ["run_started", "child_started", "run_failed"]
    assert [e["seq"] for e in parent["history"]] == list(range(1, len(parent["history"]) + 1))
    assert lines == [described(url, run_id) for run_id in ("old", "old-child")]

    dry = continuum(url, "runs", "prune", "--older-than", "1d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would prune 2 runs in 1 families" in dry.stdout
    assert run_ids(url) == {"old", "old-child", "new"}

    pruned = continuum(url, "runs", "prune", "--older-than", "1d")
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 2 runs" in pruned.stdout
    assert run_ids(url) == {"new"}
    assert continuum(url, "runs", "export", "--older-than", "1d").stdout == ""


def described(url: str, run_id: str) -> dict[str, Any]:
    """A run's fields and history as ``describe`` and ``history`` give them, in JSON."""
    journal = SqlJournal(url)
    try:
        info = journal.describe(run_id)
        assert info is not None
        line = {**common.run_dict(info), "history": [asdict(e) for e in journal.history(run_id)]}
    finally:
        journal.close()
    decoded: dict[str, Any] = json.loads(json.dumps(line, default=common.json_default))
    return decoded


def statements_of_export(url: str) -> tuple[int, int]:
    """How many runs ``runs export --older-than 1d`` writes, and the SQL statements it takes."""
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", counted)
    try:
        env = {"ORCHESTRATOR_JOURNAL_URL": url, "CONTINUUM_APP": None}
        exported = CliRunner().invoke(main, ["runs", "export", "--older-than", "1d"], env=env)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", counted)
    assert exported.exit_code == 0, exported.output
    return len(exported.output.splitlines()), count


def test_export_reads_a_page_of_runs_in_the_same_few_statements_however_many(url: str) -> None:
    few = statements_of_export(url)
    assert few[0] == 2
    old = SqlJournal(url, clock=lambda: time.time() - 2 * DAY)
    try:
        for i in range(40):
            finish(old, f"more-{i}")
    finally:
        old.close()
    many = statements_of_export(url)
    assert many[0] == 42
    # One page: the families (tips, their children), then the runs and their histories.
    assert many[1] == few[1] <= 8


def test_prune_by_workflow_and_zero_age(url: str) -> None:
    pruned = continuum(url, "runs", "prune", "--older-than", "0s", "--workflow", "nothing")
    assert "pruned 0 runs" in pruned.stdout
    pruned = continuum(url, "runs", "prune", "--older-than", "0s", "--workflow", "order")
    assert "pruned 3 runs" in pruned.stdout, pruned.stderr
    assert run_ids(url) == set()


def test_an_older_than_that_is_not_a_duration_is_refused(url: str) -> None:
    # Every form is checked in tests/unit/test_retention.py; here, that both commands refuse.
    for command, duration in (("prune", "1w"), ("export", "30"), ("prune", "1d2h")):
        refused = continuum(url, "runs", command, "--older-than", duration)
        assert refused.returncode == 2
        assert "is not a duration" in refused.stderr and "--older-than" in refused.stderr
        assert refused.stdout == ""
    assert run_ids(url) == {"old", "old-child", "new"}
