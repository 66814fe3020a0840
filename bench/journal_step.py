"""``step``: what Continuum itself adds to one activity step, timed in this process.

Celery, the broker and the pool cost the same for any task; what an activity step adds is
at most the attempt's start (``Journal.mark_started``: before the body for an activity with a
timeout or a re-sent copy, late or never for the others) and the outcome's transaction
(``Driver.deliver``: deliver, claim, replay from the cached state, commit). This scenario
runs exactly those calls, in the order a worker makes them, for ``w10_runs`` workflows of
``w10_steps`` activities against the scenario's fresh database, with the worker and the
dispatcher stopped (so nothing else reads or writes it) and a publisher that only records.
It reports CPU time and wall time per step, the SQL statements sent per step, and what the
steps wrote: updates of the runs table (and how many of them were HOT, writing no index) and
bytes of WAL (server-wide, read with nothing else running on the journal's database).

Being free of the broker and of the other processes' scheduling, these figures move far
less from run to run than the end-to-end ones, which makes them the ones to compare when
the hot path changes.
"""

from __future__ import annotations

import sys
import time

from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures
from orchestrator.client.runs import Client
from orchestrator.journal.inbox import outcome_key
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model.events import EventType
from orchestrator.model.records import InboxItem, OutboxTask
from orchestrator.runtime.driver import Driver
from orchestrator.runtime.publisher import RecordingPublisher

NAMES = ("step",)


def run(cluster: Cluster, sizes: Sizes, wanted: set[str], prefix: str = "") -> dict[str, Figures]:
    """The figures; ``prefix`` starts the run ids (to measure again on the same database)."""
    cluster.stop_processes()
    orc = cluster.orc
    journal = SqlJournal(cluster.url)
    publisher = RecordingPublisher()
    driver = Driver(journal, orc.registry, publisher, orc.settings, owner="bench-step")
    client = Client(journal, orc.registry, publisher, orc.settings)
    figures = Figures()
    try:
        warm = _start(client, driver, publisher, f"{prefix}warm-", sizes.w10_steps, 5)
        _steps(journal, driver, warm, publisher)
        for rep in range(sizes.repeats):
            first = _start(
                client, driver, publisher, f"{prefix}s{rep}-", sizes.w10_steps, sizes.w10_runs
            )
            written0 = _written(cluster, journal)
            sql0 = cluster.counted()["sql"]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            steps = _steps(journal, driver, first, publisher)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            sql = cluster.counted()["sql"] - sql0
            written = _written(cluster, journal)
            updates, hot, wal = (b - a for a, b in zip(written0, written, strict=True))
            if steps != sizes.w10_runs * sizes.w10_steps:
                raise RuntimeError(f"expected {sizes.w10_runs * sizes.w10_steps} steps: {steps}")
            figures.add("CPU per step (start + outcome)", "ms", cpu * 1000 / steps)
            figures.add("wall time per step", "ms", wall * 1000 / steps)
            figures.add("SQL statements per step", "stmt", sql / steps)
            figures.add("updates of the runs table per step", "rows", updates / steps)
            figures.add("  of which HOT (no index written)", "rows", hot / steps)
            figures.add("WAL per step", "B", wal / steps)
            print(
                f"  step repetition {rep + 1}/{sizes.repeats}: "
                f"{cpu * 1000 / steps:.2f} ms CPU, {wall * 1000 / steps:.2f} ms per step",
                file=sys.stderr,
            )
    finally:
        journal.close()
    return {"step": figures}


def _written(cluster: Cluster, journal: SqlJournal) -> tuple[int, int, int]:
    """Updates of the runs table, HOT ones, and the WAL position so far. The journal's
    connections are closed first: a backend that ends flushes its table counters, where an
    idle one holds them for up to ten seconds."""
    journal.engine.dispose()
    upd = cluster.scalar("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'runs'")
    hot = cluster.scalar("SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'runs'")
    wal = cluster.scalar("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    return int(upd), int(hot), int(wal)


def _start(
    client: Client,
    driver: Driver,
    publisher: RecordingPublisher,
    prefix: str,
    length: int,
    runs: int,
) -> list[OutboxTask]:
    """Start ``runs`` workflows and replay each up to its first activity (not timed)."""
    publisher.take()
    for i in range(runs):
        driver.advance(client.start("bench.sequence", length, run_id=f"{prefix}{i}"))
    return publisher.take()[0]


def _steps(
    journal: SqlJournal, driver: Driver, tasks: list[OutboxTask], publisher: RecordingPublisher
) -> int:
    """Carry every activity through as a worker does, until no workflow has one left;
    returns the number of activity steps."""
    steps = 0
    while tasks:
        for task in tasks:
            journal.mark_started(task.task_id)
            item = InboxItem(
                dedupe_key=outcome_key(task.command_id, task.attempt),
                type=EventType.ACTIVITY_COMPLETED,
                command_id=task.command_id,
                attempt=task.attempt,
                data={"result": None},
            )
            driver.deliver(task.run_id, item, task_id=task.task_id)
            steps += 1
        tasks = publisher.take()[0]
    return steps
