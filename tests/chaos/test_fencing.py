"""Fencing: a writer whose lease was taken over writes nothing, at every level.

(a) the journal on real Postgres, time moved by hand: a paused holder's commit is refused;
(b) the late outcome of a superseded activity attempt is refused;
(c) real processes: a worker stopped (SIGSTOP) inside a replay is overtaken by another
worker, and when it resumes its commit is fenced off and logged.
And the checker the chaos suite relies on (:mod:`tests.chaos.invariants_db`) is shown to
report each kind of damage it looks for.

The last tests are regression tests for the bugs the chaos suite found.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from orchestrator import RetryPolicy, WorkflowContext
from orchestrator.client.runs import Client
from orchestrator.engine.registry import Registry
from orchestrator.journal.protocol import Batch, RunRef, TaskStart
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model.errors import LeaseLost
from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.records import NewRun, Timer, task_id_for
from orchestrator.model.settings import Settings
from orchestrator.runtime.driver import Driver
from orchestrator.runtime.publisher import RecordingPublisher
from tests.builders import completed, new_run, task
from tests.chaos.conftest import Cluster, lease_pid, retrying, wait_for
from tests.chaos.invariants_db import Executions, check_runs, read_executions
from tests.conftest import FakeClock
from tests.invariants import check_history


def scheduled(command_id: int, attempt: int, by: str) -> NewEvent:
    return NewEvent(
        type=EventType.ACTIVITY_SCHEDULED,
        command_id=command_id,
        attempt=attempt,
        data={"task": "shop.charge", "by": by},
    )


def table(url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


# -- (a) the journal ---------------------------------------------------------------------------
def test_a_paused_lease_holder_is_fenced_off_and_writes_nothing(
    postgres_url: str, clock: FakeClock
) -> None:
    journal = SqlJournal(postgres_url, clock=clock)
    try:
        assert journal.create_run(new_run("r1"))
        a = journal.claim("r1", "node-a", ttl=3)
        assert a is not None
        clock.advance(1)
        assert journal.claim("r1", "node-b", ttl=3) is None  # A's lease is live
        clock.advance(2.5)  # A pauses past its lease
        b = journal.claim("r1", "node-b", ttl=3)
        assert b is not None and b.lease.token == a.lease.token + 1

        # B decides while holding the lease, and A, resumed, tries to commit its own decision.
        journal.commit(
            b.lease,
            Batch(
                events=[scheduled(1, 1, "b")],
                tasks=[task(args=["b"], kwargs={}, timeout_seconds=10)],
            ),
            release=False,
        )
        stale = Batch(
            events=[
                scheduled(1, 1, "a"),
                NewEvent(type=EventType.TIMER_STARTED, command_id=2, data={"by": "a"}),
                NewEvent(type=EventType.RUN_COMPLETED, data={"result": "a"}),
            ],
            tasks=[task(args=["a"], kwargs={}, timeout_seconds=10)],
            timers=[Timer(run_id="r1", command_id=2, fire_at=clock())],
            status=RunStatus.COMPLETED,
            result="a",
        )
        with pytest.raises(LeaseLost):
            journal.commit(a.lease, stale)
        journal.commit(b.lease, Batch(status=RunStatus.SUSPENDED))
        with pytest.raises(LeaseLost):  # and again once B has released the run
            journal.commit(a.lease, stale)
        journal.release(a.lease)  # a no-op: the lease is not A's

        history = journal.history("r1")
        check_history(history)
        assert [(e.type, e.data.get("by")) for e in history] == [
            (EventType.RUN_STARTED, None),
            (EventType.ACTIVITY_SCHEDULED, "b"),
        ]
        info = journal.describe("r1")
        assert info is not None
        assert (info.status, info.result) == (RunStatus.SUSPENDED, None)
        assert table(postgres_url, "SELECT task_id, args FROM tasks") == [
            (task_id_for("r1", 1, 1), '["b"]')
        ]
        assert table(postgres_url, "SELECT * FROM timers") == []
        clock.advance(60)
        assert journal.fire_due_timers() == []
        report = check_runs(postgres_url, ["r1"])
        assert report.problems == []
    finally:
        journal.close()


# -- (b) a superseded attempt ------------------------------------------------------------------
async def charging(ctx: WorkflowContext) -> Any:
    policy = RetryPolicy(max_attempts=2, initial_interval=1.0)
    return await ctx.activity("shop.charge", 100, retry=policy, timeout=5)


def test_the_late_outcome_of_a_timed_out_attempt_is_not_journaled(
    postgres_url: str, clock: FakeClock
) -> None:
    journal = SqlJournal(postgres_url, clock=clock)
    registry = Registry()
    registry.add(charging, name="charging", version="1")
    publisher = RecordingPublisher()
    settings = Settings(journal_url=postgres_url, lease_ttl=3)
    driver = Driver(journal, registry, publisher, settings, owner="w1", clock=clock)
    first, second = task_id_for("r1", 1, 1), task_id_for("r1", 1, 2)
    try:
        journal.create_run(NewRun(run_id="r1", workflow="charging", version="1", args=[]))
        driver.advance("r1")
        assert [t.task_id for t in publisher.take()[0]] == [first]
        assert journal.mark_started(first) is TaskStart.STARTED

        clock.advance(6)  # attempt 1 outlives its start-to-close timeout
        assert journal.expire_tasks() == [RunRef(run_id="r1", workflow="charging", version="1")]
        driver.advance("r1")  # attempt 1 timed out: attempt 2 is scheduled, after its backoff
        clock.advance(1)
        assert [t.task_id for t in journal.take_unpublished(republish_after=4)] == [second]

        late = completed(1, "late")
        assert not journal.deliver("r1", late, task_id=first).accepted
        assert not journal.deliver("r1", late).accepted
        assert journal.mark_started(second) is TaskStart.STARTED
        on_time = completed(1, "ch_2", attempt=2)
        assert journal.deliver("r1", on_time, task_id=second).accepted
        driver.advance("r1")

        history = journal.history("r1")
        check_history(history)
        assert [(e.type, e.attempt) for e in history] == [
            (EventType.RUN_STARTED, None),
            (EventType.ACTIVITY_SCHEDULED, 1),
            (EventType.ACTIVITY_TIMED_OUT, 1),
            (EventType.ACTIVITY_SCHEDULED, 2),
            (EventType.ACTIVITY_COMPLETED, 2),
            (EventType.RUN_COMPLETED, None),
        ]
        assert "late" not in str([e.data for e in history])
        info = journal.describe("r1")
        assert info is not None
        assert (info.status, info.result) == (RunStatus.COMPLETED, "ch_2")
        assert check_runs(postgres_url, ["r1"]).problems == []
    finally:
        journal.close()


# -- (c) real processes ------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_a_worker_stopped_inside_a_replay_is_fenced_off_when_it_resumes(
    postgres_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path / "cluster", journal_url=postgres_url)
    try:
        # w1 steps in two transactions (its replay inside the claiming one fails) and
        # pauses 2s in every replay just before committing, holding the run's lease.
        faults = "driver.decide_in_transaction=raise,driver.before_commit=sleep:2"
        cluster.add_worker("w1", CONTINUUM_FAULTS=faults)
        cluster.add_dispatcher("d1")
        handle = cluster.orc.start("chaos.seq", 2, 40, 0.0)

        def held_by_w1() -> Any:
            for row in cluster.leases():
                pid = lease_pid(row.lease_owner)
                if row.run_id == handle.run_id and pid and cluster.node_of_pid(pid) == "w1":
                    return row
            return None

        lease = wait_for(held_by_w1, 30, "w1 to hold the run's lease", every=0.01)
        cluster.signal("w1", signal.SIGSTOP)
        stopped = time.monotonic()
        [row] = cluster.query(
            "SELECT lease_owner, lease_token, last_seq FROM runs WHERE run_id = :r",
            r=handle.run_id,
        )
        assert (row.lease_owner, row.lease_token, row.last_seq) == (
            lease.lease_owner,
            lease.lease_token,
            lease.last_seq,
        ), "w1 committed before it was stopped"

        # Past the lease's ttl, another worker takes the run over and finishes it.
        cluster.add_worker("w2")
        assert cluster.orc.result(handle.run_id, timeout=60) == 40 + 0 + 1
        assert time.monotonic() - stopped >= cluster.settings["lease_ttl"]
        before = cluster.orc.history(handle.run_id)
        [after_takeover] = cluster.query(
            "SELECT lease_token FROM runs WHERE run_id = :r", r=handle.run_id
        )
        assert after_takeover.lease_token > lease.lease_token

        # w1 resumes: its decision is refused (LeaseLost) and logged; nothing is written.
        cluster.signal("w1", signal.SIGCONT)
        line = f"run {handle.run_id}: lease lost before commit; another node carries on"
        wait_for(lambda: line in cluster.log_text("w1"), 30, "w1 to log the lost lease")
        assert cluster.orc.history(handle.run_id) == before
        check_history(before)
        assert [e.type for e in before].count(EventType.ACTIVITY_SCHEDULED) == 2

        executions = read_executions(cluster.effects)
        report = check_runs(cluster.url, [handle.run_id], executions)
        assert report.problems == []
        assert report.executions == report.attempts == 2
    finally:
        cluster.stop()


# -- the checker itself ------------------------------------------------------------------------
def test_the_db_invariants_report_broken_links_leftovers_and_extra_executions(
    postgres_url: str,
) -> None:
    """The checker the chaos suite relies on does fail: each kind of damage is reported."""
    journal = SqlJournal(postgres_url)

    def run(run_id: str, *events: NewEvent, **batch: Any) -> None:
        journal.create_run(NewRun(run_id=run_id, workflow="wf", version="1", args=[]))
        claimed = journal.claim(run_id, "w1", ttl=30)
        assert claimed is not None
        journal.commit(claimed.lease, Batch(events=list(events), **batch))

    def completed_event(command_id: int, attempt: int) -> NewEvent:
        return NewEvent(type=EventType.ACTIVITY_COMPLETED, command_id=command_id, attempt=attempt)

    try:
        child = NewRun(
            run_id="c", workflow="wf", version="1", args=[], parent_run_id="p", parent_command_id=1
        )
        started = NewEvent(
            type=EventType.CHILD_STARTED,
            command_id=1,
            data={"child_run_id": "c", "workflow": "wf"},
        )
        run("p", started, children=[child], status=RunStatus.SUSPENDED)
        journal.create_run(
            NewRun(
                run_id="o",
                workflow="wf",
                version="1",
                args=[],
                parent_run_id="p",
                parent_command_id=5,
            )
        )
        successor = NewRun(
            run_id="y",
            workflow="wf",
            version="1",
            args=[],
            correlation_id="x",
            continued_from_run_id="x",
        )
        run(
            "x",
            NewEvent(type=EventType.RUN_CONTINUED, data={"args": [], "next_run_id": "y"}),
            continuation=successor,
            status=RunStatus.CONTINUED,
        )
        run(
            "t",
            NewEvent(type=EventType.RUN_COMPLETED, data={"result": 1}),
            status=RunStatus.COMPLETED,
            result=1,
        )
        run(
            "a",
            scheduled(1, 1, "a"),
            completed_event(1, 1),
            scheduled(2, 1, "a"),
            completed_event(2, 1),
            status=RunStatus.SUSPENDED,
        )
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET parent_command_id = 2 WHERE run_id = 'c'"))
            conn.execute(sa.text("UPDATE runs SET continued_from_run_id = NULL WHERE run_id = 'y'"))
            conn.execute(
                sa.text(
                    "INSERT INTO inbox (run_id, dedupe_key, type, data, at, absorbed)"
                    " VALUES ('t', 'late', 'signal_received', '{}', 0, false)"
                )
            )
        engine.dispose()
        executions = Executions()
        executions.started.update({"a:1:1": 2, "a:9:1": 1})
        executions.finished.update({"a:1:1": 2, "a:9:1": 1})

        problems = "\n".join(check_runs(postgres_url, ["p", "x", "t", "a"], executions).problems)

        assert "p: child c points to (p, 2), not to command 1" in problems
        assert "c: parent p has no child_started (command 2)" in problems
        assert "o: parent p has no child_started (command 5)" in problems
        assert "x: successor y continues None" in problems
        assert "t: ended completed with 1 inbox rows" in problems
        assert "a: command 1 executed 2 times, but 1 attempts are journaled" in problems
        assert "a: command 2 attempt 1 has an outcome journaled but no execution" in problems
        assert "a: 1 executions of a:9:1, an attempt never journaled" in problems
        assert len(problems.splitlines()) == 8, problems
    finally:
        journal.close()


# -- library bugs found by the chaos suite -----------------------------------------------------
@pytest.fixture
def one_worker(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Starts a cluster of one single-process worker (w1) and a dispatcher (d1), with the
    given settings; stops it after the test."""
    clusters: list[Cluster] = []

    def start(**settings: Any) -> Cluster:
        cluster = Cluster(tmp_path / "cluster", journal_url=postgres_url, settings=settings)
        clusters.append(cluster)
        cluster.add_worker("w1", concurrency=1)
        cluster.add_dispatcher("d1")
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


def wait_started(cluster: Cluster, task_id: str) -> None:
    wait_for(
        lambda: read_executions(cluster.effects).started[task_id],
        30,
        "the activity to start",
        every=0.005,
    )


async def relay(ctx: WorkflowContext, generation: int) -> Any:
    if generation == 0:
        return await ctx.continue_as_new(1)
    return await ctx.wait_signal("go", timeout=60)


@dataclass
class Chain:
    """A journal, a client and a driver in this process, with ``relay`` registered."""

    journal: SqlJournal
    client: Client
    driver: Driver

    def send(self, fact: str, run_id: str) -> EventType:
        """Send a signal or a cancellation; the event it must become."""
        if fact == "signal":
            self.client.signal(run_id, "go", "payload", signal_id="s1")
            return EventType.SIGNAL_RECEIVED
        self.client.cancel(run_id, "no longer needed")
        return EventType.CANCEL_REQUESTED


@pytest.fixture
def chain(postgres_url: str, clock: FakeClock) -> Iterator[Chain]:
    journal = SqlJournal(postgres_url, clock=clock)
    registry = Registry()
    registry.add(relay, name="relay", version="1")
    publisher = RecordingPublisher()
    settings = Settings(journal_url=postgres_url)
    driver = Driver(journal, registry, publisher, settings, owner="w1", clock=clock)
    try:
        yield Chain(journal, Client(journal, registry, publisher, settings), driver)
    finally:
        journal.close()


@pytest.mark.parametrize("fact", ["signal", "cancel"])
def test_a_fact_sent_to_a_run_about_to_continue_as_new_reaches_the_continuation(
    chain: Chain, fact: str
) -> None:
    run_id = chain.client.start("relay", 0, run_id="root")
    expected = chain.send(fact, run_id)  # returns normally: accepted for the chain
    chain.driver.advance(run_id)  # generation 0 continues as new
    tip = chain.journal.resolve_tip(run_id)
    assert tip is not None and tip != run_id
    chain.driver.advance(tip)  # generation 1 waits for the signal
    kinds = [e.type for e in chain.journal.history(tip)]
    assert expected in kinds, (
        f"{fact} lost: root history {[e.type.value for e in chain.journal.history(run_id)]}, "
        f"tip history {[k.value for k in kinds]}"
    )


def test_a_signal_arriving_during_the_replay_that_continues_reaches_the_continuation(
    chain: Chain,
) -> None:
    journal = chain.journal
    root = chain.client.start("relay", 0, run_id="root")
    claimed = journal.claim(root, "w1", ttl=30)
    assert claimed is not None and claimed.inbox == []
    chain.send("signal", root)  # the root is still the tip
    successor = "root-2"
    journal.commit(
        claimed.lease,
        Batch(
            events=[
                NewEvent(type=EventType.RUN_CONTINUED, data={"args": [1], "next_run_id": successor})
            ],
            continuation=NewRun(
                run_id=successor,
                workflow="relay",
                version="1",
                args=[1],
                correlation_id=root,
                continued_from_run_id=root,
            ),
            status=RunStatus.CONTINUED,
        ),
    )
    chain.driver.advance(successor)
    kinds = [e.type for e in journal.history(successor)]
    assert EventType.SIGNAL_RECEIVED in kinds, f"signal lost: continuation has {kinds}"


@pytest.mark.parametrize("fact", ["signal", "cancel"])
def test_a_fact_sent_as_the_run_continues_as_new_reaches_the_continuation(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, fact: str
) -> None:
    """The client looked the chain's tip up just before the tip continued as new: its
    delivery is refused by the ended run and must go on to the continuation."""
    deliver = chain.journal.deliver

    def continue_first(run_id: str, item: Any, **kw: Any) -> Any:
        if run_id == "root":
            chain.driver.advance(run_id)  # generation 0 continues as new meanwhile
        return deliver(run_id, item, **kw)

    root = chain.client.start("relay", 0, run_id="root")
    monkeypatch.setattr(chain.journal, "deliver", continue_first)
    expected = chain.send(fact, root)
    tip = chain.journal.resolve_tip(root)
    assert tip is not None and tip != root
    chain.driver.advance(tip)
    kinds = [e.type for e in chain.journal.history(tip)]
    assert expected in kinds, f"{fact} lost: the continuation has {[k.value for k in kinds]}"


@pytest.mark.timeout(60)
def test_a_writer_paused_inside_its_commit_does_not_hold_the_run_past_its_lease(
    postgres_url: str,
) -> None:
    ttl = 1.0
    holder, other = SqlJournal(postgres_url), SqlJournal(postgres_url)
    inside, resume = threading.Event(), threading.Event()

    def pause_in_commit(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO EVENTS" in statement.upper() and not resume.is_set():
            inside.set()  # the run's row is locked by this transaction now
            resume.wait(30)

    failures: list[BaseException] = []

    def commit(lease: Any) -> None:
        try:
            holder.commit(lease, Batch(events=[scheduled(1, 1, "a")], status=RunStatus.SUSPENDED))
        except BaseException as exc:
            failures.append(exc)

    try:
        holder.create_run(new_run("r1"))
        claimed = holder.claim("r1", "node-a", ttl=ttl)
        assert claimed is not None
        sa.event.listen(holder.engine, "before_cursor_execute", pause_in_commit)
        writer = threading.Thread(target=commit, args=(claimed.lease,), daemon=True)
        writer.start()
        assert inside.wait(10), "the commit never reached its insert"
        time.sleep(ttl + 0.5)  # the holder's lease has expired; it is still paused

        taken: list[Any] = []
        began = time.monotonic()
        runnable = other.take_runnable(redispatch_after=0.0)
        claimer = threading.Thread(
            target=lambda: taken.append(other.claim("r1", "node-b", ttl=ttl)), daemon=True
        )
        claimer.start()
        claimer.join(timeout=10)
        waited = time.monotonic() - began
        resume.set()  # the paused writer goes on
        writer.join(timeout=30)
        claimer.join(timeout=30)
        assert taken and taken[0] is not None and waited < 10, (
            f"run not taken over while its writer was paused: the dispatcher was handed "
            f"{runnable}, another node's claim waited {waited:.1f}s; the writer then "
            f"{'failed: ' + repr(failures[0]) if failures else 'committed'}"
        )
    finally:
        resume.set()
        holder.close()
        other.close()


@pytest.mark.timeout(180)
def test_an_activity_queued_longer_than_republish_after_runs_once(
    one_worker: Callable[..., Cluster],
) -> None:
    # One process: the second activity of the fan-out waits 3s behind the first.
    cluster = one_worker(republish_after=2)
    handle = cluster.orc.start("chaos.fan", 2, 3.0)
    assert cluster.orc.result(handle.run_id, timeout=60) == [0, 2]
    # Any re-published copy still queued or running is counted too.
    cluster.wait_quiet(60)
    executions = read_executions(cluster.effects)
    report = check_runs(cluster.url, [handle.run_id], executions)
    assert report.attempts == 2
    assert report.problems == [], report.problems
    assert executions.total == 2, dict(executions.started)


@pytest.mark.timeout(180)
def test_an_attempt_killed_just_after_it_started_times_out_and_is_retried(
    one_worker: Callable[..., Cluster],
) -> None:
    cluster = one_worker()
    handle = cluster.orc.start("chaos.seq", 1, 7, 3.0)
    wait_started(cluster, task_id_for(handle.run_id, 1, 1))
    cluster.signal("w1", signal.SIGKILL)  # a few milliseconds into the activity
    cluster.start("w1")
    assert cluster.orc.result(handle.run_id, timeout=60) == 7
    history = cluster.orc.history(handle.run_id)
    executions = read_executions(cluster.effects)
    report = check_runs(cluster.url, [handle.run_id], executions)
    assert report.problems == [], (report.problems, [(e.type, e.attempt) for e in history])
    assert (EventType.ACTIVITY_TIMED_OUT, 1) in [(e.type, e.attempt) for e in history]


@pytest.mark.timeout(180)
def test_an_outcome_survives_a_journal_connection_dropped_during_the_activity(
    one_worker: Callable[..., Cluster],
) -> None:
    cluster = one_worker()
    handle = cluster.orc.start("chaos.seq", 1, 11, 2.0)
    # The start is journaled before the body runs: the 2s activity is under way.
    wait_started(cluster, task_id_for(handle.run_id, 1, 1))
    # The database drops every session (as a restart would); the server stays up.
    cluster.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    # (The test's own sessions were dropped too: its first read may fail.)
    result = retrying(lambda: cluster.orc.result(handle.run_id, timeout=60), "result", 90)
    assert result == 11
    cluster.wait_quiet(60)
    history = [(e.type, e.attempt) for e in cluster.orc.history(handle.run_id)]
    executions = read_executions(cluster.effects)
    assert history[1:3] == [
        (EventType.ACTIVITY_SCHEDULED, 1),
        (EventType.ACTIVITY_COMPLETED, 1),
    ], f"the finished execution's outcome was not journaled: {history}"
    assert executions.total == 1, dict(executions.started)
