"""``continuum runs export|prune`` run as an operator runs them: a subprocess with only the
journal URL in its environment, on SQLite and Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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

    dry = continuum(url, "runs", "prune", "--older-than", "1d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would prune 2 runs in 1 families" in dry.stdout
    assert run_ids(url) == {"old", "old-child", "new"}

    pruned = continuum(url, "runs", "prune", "--older-than", "1d")
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 2 runs" in pruned.stdout
    assert run_ids(url) == {"new"}
    assert continuum(url, "runs", "export", "--older-than", "1d").stdout == ""


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
