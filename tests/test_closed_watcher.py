"""Waiting for runs to end on Postgres: every waiting thread of a process shares one listening
connection, and a waiter outlives that connection being cut off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from orchestrator.journal.protocol import Batch, Lease
from orchestrator.journal.sql.connection import CLOSED_CHANNEL
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model.events import RunStatus
from tests.builders import new_run
from tests.integration.cluster import wait_for


@pytest.fixture
def journal(postgres_url: str) -> Iterator[SqlJournal]:
    sql = SqlJournal(postgres_url)
    try:
        yield sql
    finally:
        sql.close()


@pytest.fixture
def admin(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    url = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def listeners(admin: psycopg.Connection[Any]) -> list[int]:
    """The backends of this database whose session listens for ended runs."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
        (f"LISTEN {CLOSED_CHANNEL}",),
    ).fetchall()
    return [row[0] for row in rows]


def started(journal: SqlJournal, run_id: str) -> Lease:
    assert journal.create_run(new_run(run_id))
    claimed = journal.claim(run_id, "w", 60.0)
    assert claimed is not None
    return claimed.lease


def test_threads_waiting_for_many_runs_share_one_listening_connection(
    journal: SqlJournal, admin: psycopg.Connection[Any]
) -> None:
    leases = [started(journal, f"r{i}") for i in range(8)]
    with ThreadPoolExecutor(len(leases)) as pool:
        waiters = [pool.submit(journal.wait_closed, lease.run_id, 20.0) for lease in leases]
        wait_for(lambda: listeners(admin), 10, "the listener")
        for i, lease in enumerate(leases):
            journal.commit(lease, Batch(status=RunStatus.COMPLETED, result=i))
        infos = [waiter.result(timeout=10) for waiter in waiters]
        assert len(listeners(admin)) == 1
    assert [(info.status, info.result) for info in infos if info] == [
        (RunStatus.COMPLETED, i) for i in range(8)
    ]


def test_a_waiter_is_told_of_the_end_after_its_listener_was_cut_off(
    journal: SqlJournal, admin: psycopg.Connection[Any]
) -> None:
    lease = started(journal, "r1")
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(journal.wait_closed, "r1", 30.0)
        (first,) = wait_for(lambda: listeners(admin), 10, "the listener")
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        wait_for(lambda: [p for p in listeners(admin) if p != first], 10, "a new listener")
        ended = time.monotonic()
        journal.commit(lease, Batch(status=RunStatus.COMPLETED, result="done"))
        info = waiter.result(timeout=10)
        # Woken by the new listener, not by the five-second re-read.
        assert time.monotonic() - ended < 2.5
    assert info is not None and info.result == "done"
