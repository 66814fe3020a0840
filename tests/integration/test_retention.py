"""Retention applied by a real dispatcher process (``continuum -A app dispatcher`` with
``orchestrator_retention`` set) on Postgres: finished families disappear whole, an open
family stays with its finished child."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestrator.journal.sql import schema
from orchestrator.model.events import EventType, RunStatus
from tests.integration.cluster import Cluster, wait_for

APP = "tests.integration.retentionapp"
#: Seconds a finished family is kept by the pruning dispatcher.
RETENTION = 2.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A journal of its own, a worker and a dispatcher that keeps every run; this process's
    environment is given back afterwards (the cluster points it at its journal)."""
    saved = dict(os.environ)
    c = Cluster(tmp_path, app=APP)
    try:
        c.start_worker()
        c.start_dispatcher()
        yield c
    finally:
        c.stop()
        os.environ.clear()
        os.environ.update(saved)


def gone(cluster: Cluster, run_id: str) -> bool:
    journal = cluster.orc.journal
    return journal.describe(run_id) is None and journal.history(run_id) == []


def waits_for_go(cluster: Cluster, run_id: str) -> bool:
    """Whether the run's child has finished and the run waits for its signal."""
    journal = cluster.orc.journal
    info = journal.describe(run_id)
    seen = {e.type for e in journal.history(run_id)}
    return (
        info is not None
        and info.status is RunStatus.SUSPENDED
        and EventType.CHILD_COMPLETED in seen
    )


def test_a_dispatcher_deletes_finished_families_and_keeps_an_open_one(cluster: Cluster) -> None:
    orc, journal = cluster.orc, cluster.orc.journal
    finished = [
        orc.start("adding", 3, run_id="alone"),
        orc.start("nesting", 2, run_id="nested"),
        orc.start("chaining", 1, run_id="chain"),
    ]
    assert [h.result(timeout=30) for h in finished] == [3, 1, 2]
    opened = orc.start("waiting", run_id="open")
    wait_for(lambda: waits_for_go(cluster, "open"), 30, "the open run to wait, its child done")
    runs = {info.run_id: info for info in journal.list_runs(limit=100)}
    family = {"open", "open-child"}
    doomed = set(runs) - family
    assert len(doomed) == 5  # alone; nested and its child; chain and its continuation
    assert all(runs[r].closed_at is not None for r in doomed | {"open-child"})
    assert runs["open"].closed_at is None

    # A dispatcher looks for runs to prune when it starts, then a minute after it last found
    # none: start it once every finished run is past the retention, so its first look counts.
    last = max(info.closed_at.timestamp() for info in runs.values() if info.closed_at)
    wait_for(lambda: time.time() > last + RETENTION, 10, "the runs to outlive the retention")
    cluster.start_dispatcher("pruner", CONTINUUM_TEST_RETENTION=str(RETENTION))

    wait_for(lambda: all(gone(cluster, r) for r in doomed), 30, "the finished families deleted")
    with journal.engine.connect() as conn:
        owned = sa.select(sa.func.count()).where(schema.tasks.c.run_id.in_(doomed))
        assert conn.execute(owned).scalar_one() == 0  # their activities' outbox rows too
    for run_id in family:
        assert journal.describe(run_id) is not None
        assert journal.history(run_id) != []
    assert waits_for_go(cluster, "open")
    orc.signal(opened.run_id, "go", 7)
    assert opened.result(timeout=30) == [1, 7]
