"""A claim that waited for another transaction on the run's row sees what that one committed.

In READ COMMITTED, an UPDATE that waits for a row lock re-checks its WHERE clause against the
row's new version, but the rest of the statement (subqueries included) still reads the
snapshot taken when the statement began. A claim that reads the run's history or inbox inside
its own statement would hand the replay a history without the events the transaction it waited
for had just committed. Each test holds the run's row in one journal's commit, paused just
before COMMIT, claims from another journal meanwhile, and checks what the claim hands over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from orchestrator.journal.protocol import Batch, Claimed
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.records import InboxItem
from tests.builders import completed, new_run, task
from tests.integration.cluster import wait_for


def marker(n: int) -> NewEvent:
    return NewEvent(type=EventType.MARKER_RECORDED, command_id=n, data={})


@contextmanager
def paused_before_commit(
    postgres_url: str, holder: SqlJournal, work: Callable[[], Any]
) -> Iterator[Callable[[], None]]:
    """Runs ``work`` (a transaction of ``holder``'s that locks r1's row) in a thread, paused
    just before its COMMIT. Yields a function that waits until another session waits for a
    lock, then lets the commit finish."""
    inside, resume = threading.Event(), threading.Event()

    def pause(_conn: Any) -> None:
        if not resume.is_set():
            inside.set()
            resume.wait(30)

    sa.event.listen(holder.engine, "commit", pause)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    writer = threading.Thread(target=run, daemon=True)
    writer.start()
    assert inside.wait(10), "the holder's transaction never reached COMMIT"

    def release_when_waited_on() -> None:
        dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn, autocommit=True) as admin:
            wait_for(
                lambda: admin.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()[0],
                10,
                "the claim to wait for the run's row",
            )
        resume.set()

    try:
        yield release_when_waited_on
    finally:
        resume.set()
        writer.join(30)
        sa.event.remove(holder.engine, "commit", pause)
    assert not failures, failures


def claim(journal: SqlJournal, owner: str = "holder") -> Claimed:
    claimed = journal.claim("r1", owner, ttl=30)
    assert claimed is not None
    return claimed


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(work()), daemon=True)
    thread.start()
    return thread, results


@pytest.fixture
def journals(postgres_url: str) -> Iterator[tuple[SqlJournal, SqlJournal]]:
    holder, other = SqlJournal(postgres_url), SqlJournal(postgres_url)
    try:
        holder.create_run(new_run("r1"))
        yield holder, other
    finally:
        holder.close()
        other.close()


@pytest.mark.timeout(60)
def test_a_replay_claim_that_waited_sees_the_events_just_committed(
    postgres_url: str, journals: tuple[SqlJournal, SqlJournal]
) -> None:
    holder, other = journals

    def step() -> Any:  # claims, journals a marker and leaves the run runnable
        return holder.claim_and_commit(
            "r1", owner="holder", ttl=30, decide=lambda _: Batch(events=[marker(1)])
        )

    with paused_before_commit(postgres_url, holder, step) as go:
        claimer, claims = in_thread(lambda: other.claim("r1", "other", ttl=30))
        go()
        claimer.join(30)
    [claimed] = claims
    assert claimed is not None
    assert [e.seq for e in claimed.history] == [1, 2]
    assert claimed.last_seq == 2


@pytest.mark.timeout(60)
def test_a_delivery_claim_that_waited_sees_the_events_just_committed(
    postgres_url: str, journals: tuple[SqlJournal, SqlJournal]
) -> None:
    holder, other = journals
    charge = task()
    holder.commit(claim(holder).lease, Batch(tasks=[charge], status=RunStatus.SUSPENDED))
    outcome = completed(1, "ch_1")

    def consume(claimed: Claimed) -> Batch:
        [item] = claimed.inbox
        event = NewEvent(type=item.type, command_id=1, attempt=1, data=item.data)
        return Batch(events=[event], absorbed=[item.id or 0], status=RunStatus.SUSPENDED)

    def step() -> Any:  # the outcome's own step, in the transaction that delivers it
        return holder.deliver_and_claim(
            "r1", outcome, task_id=charge.task_id, owner="holder", ttl=30, decide=consume
        )

    seen: list[Claimed] = []
    signal = InboxItem(dedupe_key="s1", type=EventType.SIGNAL_RECEIVED, data={})
    with paused_before_commit(postgres_url, holder, step) as go:
        deliverer, _ = in_thread(
            lambda: other.deliver_and_claim("r1", signal, owner="other", ttl=30, decide=seen.append)
        )
        go()
        deliverer.join(30)
    [claimed] = seen
    assert [e.seq for e in claimed.history] == [1, 2]
    assert [i.dedupe_key for i in claimed.inbox] == ["s1"]


@pytest.mark.timeout(60)
def test_a_replay_claim_that_waited_sees_the_inbox_just_committed(
    postgres_url: str, journals: tuple[SqlJournal, SqlJournal]
) -> None:
    holder, other = journals
    item = InboxItem(dedupe_key="s1", type=EventType.SIGNAL_RECEIVED, data={"n": 1})
    with paused_before_commit(postgres_url, holder, lambda: holder.deliver("r1", item)) as go:
        claimer, claims = in_thread(lambda: other.claim("r1", "other", ttl=30))
        go()
        claimer.join(30)
    [claimed] = claims
    assert claimed is not None
    assert [i.dedupe_key for i in claimed.inbox] == ["s1"]
