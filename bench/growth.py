"""``growth``: whether the journal stays fast as it fills with finished runs.

The same figures are taken on the scenario's fresh journal and again after ``growth_runs``
finished runs (ten events and four finished outbox tasks each, their family closed a day to
a month ago) were bulk-loaded into it: the ``step`` figure (what one activity step costs the
journal, in this process; see :mod:`bench.journal_step`), the runs list's first page with and
without a status or workflow filter, ``describe`` and ``history`` of one run, and one
dispatcher pass; and the ``w10`` workflows per second end to end (a real worker and
dispatcher, see :mod:`bench.throughput`). Then prune throughput: runs deleted per second by
``Journal.prune`` alone, and by a dispatcher applying retention (in a process of its own,
paced as :mod:`orchestrator.runtime.retention` paces it) while the ``step`` loop, then a
``w10`` repetition end to end, runs beside it (each load taken alone and beside the pruning
by turns, so that drift on the machine is not counted as the pruning's cost).

The rows are loaded by ``INSERT ... SELECT`` over ``generate_series``, with the tables'
indexes dropped and built again afterwards, then vacuumed, analysed and checkpointed, as a
bulk load is done: so the indexes are compact, where years of inserts would have left them
looser. Run ids are md5 hashes, spread over the keys as uuid4 run ids are. Every statement
the dispatcher pass, the runs list, ``describe``, ``history`` and a prune ran is written with
its ``EXPLAIN (ANALYZE, BUFFERS)`` on the full journal to ``bench/results/growth-explain.txt``.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg
from sqlalchemy import event

from bench import journal_step, throughput
from bench.cluster import ROOT, Cluster
from bench.plan import Sizes
from bench.stats import Figures, ratio
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model.events import RunStatus
from orchestrator.model.settings import Settings
from orchestrator.runtime.dispatcher import Dispatcher
from orchestrator.runtime.publisher import RecordingPublisher

NAMES = ("growth",)
#: Timed calls of each read, on distinct runs where the read takes one.
READS = 50
#: Seconds prune throughput is measured over.
PRUNE_SECONDS = 10.0
EXPLAIN_FILE = ROOT / "bench" / "results" / "growth-explain.txt"
DAY = 86400.0
TABLES = ("runs", "events", "tasks")

Read = Callable[[SqlJournal], object]


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    figures = Figures()
    reps = max(1, sizes.repeats)
    w10_empty = statistics.median(_w10(cluster, sizes, rep) for rep in range(reps))
    cluster.stop_processes()
    step_sizes = replace(sizes, repeats=max(1, sizes.repeats))
    empty = _measure(cluster, step_sizes, "e-")
    began = time.perf_counter()
    _fill(cluster, sizes.growth_runs)
    print(f"  growth: loaded in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    full = _measure(cluster, step_sizes, "f-")
    n = f"{sizes.growth_runs:,}"
    for label, (unit, value) in empty.items():
        figures.add(f"empty: {label}", unit, value)
        figures.add(f"{n} runs: {label}", unit, full[label][1])
        figures.add(f"ratio {n} runs / empty: {label}", "x", ratio(full[label][1], value))
    _explain(cluster)
    alone = _prune_rate(cluster.url, PRUNE_SECONDS)
    figures.add("prune alone", "runs/s", alone)
    print(f"  growth: prune alone {alone:,.0f} runs/s", file=sys.stderr)
    # Each load alone and beside a pruning dispatcher by turns, so that drift on the machine
    # is shared by both.
    one = replace(sizes, repeats=1)
    step_alone, step_beside, step_rate = _by_turns(
        reps,
        lambda rep: _step_wall(cluster, one, f"pa{rep}-"),
        lambda rep: _step_wall(cluster, one, f"pb{rep}-"),
        cluster,
    )
    figures.add("step wall time alone, by turns", "ms", step_alone)
    figures.add("step wall time with prune beside it", "ms", step_beside)
    figures.add("prune beside the step loop", "runs/s", step_rate)
    figures.add(
        "step throughput lost to prune beside it", "%", 100 * (1 - step_alone / step_beside)
    )
    cluster.start_processes("growth-full")
    w10_full, w10_beside, w10_rate = _by_turns(
        reps,
        lambda rep: _w10(cluster, sizes, 10 + rep),
        lambda rep: _w10(cluster, sizes, 20 + rep),
        cluster,
    )
    figures.add("empty: W10 end to end", "wf/s", w10_empty)
    figures.add(f"{n} runs: W10 end to end", "wf/s", w10_full)
    figures.add(f"ratio {n} runs / empty: W10 end to end", "x", ratio(w10_full, w10_empty))
    figures.add("prune beside W10 end to end", "runs/s", w10_rate)
    figures.add("W10 end to end with prune beside it", "wf/s", w10_beside)
    figures.add("W10 throughput lost to prune beside it", "%", 100 * (1 - w10_beside / w10_full))
    return {"growth": figures}


def _w10(cluster: Cluster, sizes: Sizes, rep: int) -> float:
    """Workflows per second of one W10 repetition, end to end (see :mod:`bench.throughput`)."""
    found = throughput.workflows(cluster, sizes, 100 + rep, settle=False)["throughput"]
    print(f"  growth: W10 end to end {found:.1f} wf/s", file=sys.stderr)
    return float(found)


def _measure(cluster: Cluster, sizes: Sizes, prefix: str) -> dict[str, tuple[str, float]]:
    """Every figure once (a median over its repetitions), on the journal as it is."""
    step = journal_step.run(cluster, sizes, {"step"}, prefix=prefix)["step"].items
    found: dict[str, tuple[str, float]] = {
        "step CPU": ("ms", step["CPU per step (start + outcome)"].median),
        "step wall time": ("ms", step["wall time per step"].median),
    }
    journal = SqlJournal(cluster.url)
    try:
        ids = _some_run_ids(cluster, READS)
        reads: dict[str, Read] = {
            "runs list, first page": lambda j: j.list_runs(limit=50),
            "runs list, first page of failed": lambda j: j.list_runs(
                status=RunStatus.FAILED, limit=50
            ),
            "runs list, first page of cancelled": lambda j: j.list_runs(
                status=RunStatus.CANCELLED, limit=50
            ),
            "runs list, first page of one workflow": lambda j: j.list_runs(
                workflow="bench.sequence", limit=50
            ),
        }
        for label, read in reads.items():
            found[label] = ("ms", _timed(journal, [read] * READS))
        found["describe one run"] = ("ms", _timed(journal, [_describe(i) for i in ids]))
        found["history of one run"] = ("ms", _timed(journal, [_history(i) for i in ids]))
        dispatcher = Dispatcher(journal, RecordingPublisher(), cluster.orc.settings)
        found["one dispatcher pass"] = ("ms", _timed(journal, [lambda _: dispatcher.tick()] * 20))
    finally:
        journal.close()
    for label, (unit, value) in found.items():
        print(f"  growth ({prefix}): {label} {value:.3f} {unit}", file=sys.stderr)
    return found


def _describe(run_id: str) -> Read:
    return lambda journal: journal.describe(run_id)


def _history(run_id: str) -> Read:
    return lambda journal: journal.history(run_id)


def _timed(journal: SqlJournal, calls: list[Read]) -> float:
    """Median milliseconds of the calls (one untimed call first, to connect)."""
    calls[0](journal)
    took = []
    for call in calls:
        began = time.perf_counter()
        call(journal)
        took.append(time.perf_counter() - began)
    return statistics.median(took) * 1000


def _some_run_ids(cluster: Cluster, n: int) -> list[str]:
    """``n`` runs picked at random (mostly loaded ones, once there are any)."""
    assert cluster._db is not None
    try:
        cluster._db.execute("SELECT setseed(0.7)")
        rows = cluster._db.execute("SELECT run_id FROM runs ORDER BY random() LIMIT %s", (n,))
        return [str(row[0]) for row in rows.fetchall()]
    finally:
        cluster._db.rollback()


# -- the bulk load ---------------------------------------------------------------------------
_RUNS = """
INSERT INTO runs (run_id, workflow, version, status, args, result, error, reason,
    parent_run_id, parent_command_id, correlation_id, continued_from_run_id,
    continued_to_run_id, lease_owner, lease_token, lease_expires_at, last_seq, dispatched_at,
    created_at, updated_at, closed_at, parent_close_policy)
SELECT id, CASE WHEN i %% 10 = 0 THEN 'bench.fanout' ELSE 'bench.sequence' END, '1',
    CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 200 = 1 THEN 'cancelled' ELSE 'completed' END,
    '[4]', CASE WHEN i %% 50 = 0 THEN NULL ELSE '6' END,
    CASE WHEN i %% 50 = 0 THEN '{"type": "RuntimeError", "message": "no", "traceback": null}' END,
    NULL, NULL, NULL, id, NULL, NULL, NULL, 1, NULL, 10, NULL,
    at, at + 5, at + 5, 'cancel'
FROM (SELECT i, md5('g' || i) AS id, %(start)s::float8 + i * %(spacing)s::float8 AS at
      FROM generate_series(1, %(n)s::int) i) g
"""
_EVENTS = """
INSERT INTO events (run_id, seq, type, command_id, attempt, data, at)
SELECT md5('g' || i), s,
    CASE WHEN s = 1 THEN 'run_started' WHEN s = 10 THEN 'run_completed'
         WHEN s %% 2 = 0 THEN 'activity_scheduled' ELSE 'activity_completed' END,
    CASE WHEN s BETWEEN 2 AND 9 THEN s / 2 END, CASE WHEN s BETWEEN 2 AND 9 THEN 1 END,
    CASE WHEN s = 1 THEN '{"workflow": "bench.sequence", "version": "1", "args": [4]}'
         WHEN s %% 2 = 0 THEN '{"task": "bench.app.noop", "args": [], "kwargs": {}}'
         ELSE '{"result": null}' END,
    %(start)s::float8 + i * %(spacing)s::float8 + s * 0.4
FROM generate_series(%(low)s::int, %(high)s::int) i, generate_series(1, 10) s
"""
_TASKS = """
INSERT INTO tasks (task_id, run_id, command_id, attempt, kind, task_name, args, kwargs, queue,
    timeout_seconds, target_activity_id, available_at, created_at, published_at, started_at,
    deadline_at, finished)
SELECT md5('g' || i) || ':' || c || ':1', md5('g' || i), c, 1, 'activity', 'bench.app.noop',
    '[]', '{}', NULL, NULL, NULL, at, at, at, at, NULL, true
FROM (SELECT i, %(start)s::float8 + i * %(spacing)s::float8 AS at
      FROM generate_series(1, %(n)s::int) i) g,
     generate_series(1, 4) c
"""


def _fill(cluster: Cluster, n: int) -> None:
    """``n`` finished runs, closed between a month and a day ago, with their rows."""
    now = time.time()
    start, spacing = now - 30 * DAY, (29 * DAY) / n
    params = {"n": n, "start": start, "spacing": spacing}
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        with _without_indexes(conn):
            _step(conn, "runs", _RUNS, params)
            chunk = max(1, n // 4)
            for low in range(1, n + 1, chunk):
                high = min(n, low + chunk - 1)
                _step(
                    conn, f"events {low:,}-{high:,}", _EVENTS, {**params, "low": low, "high": high}
                )
            _step(conn, "tasks", _TASKS, params)
        for table in TABLES:
            _step(conn, f"vacuum analyze {table}", f"VACUUM ANALYZE {table}", {})
        # The load leaves gigabytes of dirty pages: written out now, not by the checkpointer
        # while the full journal's figures are taken.
        _step(conn, "checkpoint", "CHECKPOINT", {})


def _step(conn: psycopg.Connection[Any], what: str, sql: str, params: dict[str, Any]) -> None:
    began = time.perf_counter()
    conn.execute(sql, params)  # type: ignore[arg-type]
    print(f"  growth: {what} in {time.perf_counter() - began:.1f} s", file=sys.stderr)


@contextmanager
def _without_indexes(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Drop the tables' indexes and keys for the load, and build them again after it."""
    tables = list(TABLES)
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype IN ('p', 'u') AND conrelid::regclass::text = ANY(%s)",
        (tables,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        (tables,),
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    for table, name, _ in constraints:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    yield
    for table, name, definition in constraints:
        _step(conn, f"{name}", f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}', {})
    for name, definition in indexes:
        _step(conn, name, definition, {})


# -- prune throughput ------------------------------------------------------------------------
def _prune_rate(url: str, seconds: float, stop: threading.Event | None = None) -> float:
    """Runs deleted per second by back-to-back prunes of 500 runs closed over a day ago,
    for ``seconds`` or until ``stop`` is set."""
    stop = stop or threading.Event()
    journal = SqlJournal(url)
    try:
        cutoff = time.time() - DAY
        journal.prune(closed_before=cutoff, limit=10)  # connect first
        pruned, began = 0, time.perf_counter()
        ended = began
        while time.perf_counter() - began < seconds and not stop.is_set():
            ids = journal.prune(closed_before=cutoff, limit=500)
            if not ids:
                break  # nothing left: the rate is over the time it took
            pruned += len(ids)
            ended = time.perf_counter()
        return ratio(pruned, ended - began)
    finally:
        journal.close()


def _step_wall(cluster: Cluster, sizes: Sizes, prefix: str) -> float:
    """Wall time per step of one ``step`` repetition (ms)."""
    step = journal_step.run(cluster, sizes, {"step"}, prefix=prefix)["step"].items
    return float(step["wall time per step"].median)


def _by_turns(
    reps: int,
    alone: Callable[[int], float],
    beside: Callable[[int], float],
    cluster: Cluster,
) -> tuple[float, float, float]:
    """Medians of ``alone`` and of ``beside`` (run with a pruning dispatcher beside it), taken
    by turns, and of the rate it pruned at: (alone, beside, runs/s)."""
    alone_found, beside_found, rates = [], [], []
    for rep in range(reps):
        alone_found.append(alone(rep))
        rate, found = _beside(cluster, lambda rep=rep: beside(rep))
        rates.append(rate)
        beside_found.append(found)
    medians = (statistics.median(x) for x in (alone_found, beside_found, rates))
    return next(medians), next(medians), next(medians)


def _beside(cluster: Cluster, load: Callable[[], float]) -> tuple[float, float]:
    """Run ``load`` while a dispatcher applying retention runs in a process of its own:
    (runs/s it pruned, what ``load`` returned)."""
    seconds = 600.0  # stopped when the load is done
    pruner = subprocess.Popen(
        [sys.executable, "-m", "bench.growth", "prune", cluster.url, str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it connect and start
        measured = load()
    finally:
        pruner.terminate()
        out, _ = pruner.communicate(timeout=120)
    rate = json.loads(out.strip().splitlines()[-1])["rate"] if out.strip() else float("nan")
    return rate, measured


# -- EXPLAIN of every statement --------------------------------------------------------------
def _explain(cluster: Cluster) -> None:
    """Run a dispatcher pass, the runs list's reads, describe, history and one prune while
    recording their statements, then write each one's plan on the full journal."""
    journal = SqlJournal(cluster.url)
    statements: list[tuple[str, str, Any]] = []
    label = ["?"]

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if not many and statement.lstrip().upper().startswith(
            ("SELECT", "UPDATE", "DELETE", "WITH")
        ):
            statements.append((label[0], statement, params))

    run_id = _some_run_ids(cluster, 1)[0]
    calls: list[tuple[str, Read]] = [
        (
            "dispatcher pass",
            lambda j: Dispatcher(j, RecordingPublisher(), cluster.orc.settings).tick(),
        ),
        ("runs list", lambda j: j.list_runs(limit=50)),
        ("runs list, status filter", lambda j: j.list_runs(status=RunStatus.FAILED, limit=50)),
        ("runs list, workflow filter", lambda j: j.list_runs(workflow="bench.sequence", limit=50)),
        ("describe", _describe(run_id)),
        ("history", _history(run_id)),
    ]
    # The prune's deletes are rolled back, so that their plans are read with the rows there.
    pruning = _RolledBack(cluster.url)
    for connected in (journal, pruning):
        connected.list_runs(limit=1)  # connect before recording
    calls.append(("prune (retention)", lambda _: pruning.prune(closed_before=time.time() - DAY)))
    for engine in (journal.engine, pruning.engine):
        event.listen(engine, "before_cursor_execute", record)
    try:
        for name, call in calls:
            label[0] = name
            call(journal)
    finally:
        for engine in (journal.engine, pruning.engine):
            event.remove(engine, "before_cursor_execute", record)
        journal.close()
        pruning.close()
    lines = []
    seen = set()
    with psycopg.connect(cluster.url) as conn:
        for name, statement, params in statements:
            if (name, statement) in seen:
                continue
            seen.add((name, statement))
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()  # type: ignore[arg-type]
            conn.rollback()
            text = " ".join(statement.split())
            text = text if len(text) <= 800 else text[:800] + " ..."
            lines += [f"-- {name}", text, *(row[0] for row in plan), ""]
    EXPLAIN_FILE.parent.mkdir(parents=True, exist_ok=True)
    EXPLAIN_FILE.write_text("\n".join(lines))
    print(f"  growth: plans written to {EXPLAIN_FILE}", file=sys.stderr)


class _RolledBack(SqlJournal):
    """A journal whose every transaction is rolled back: what it would do, undone."""

    def _retrying(self, body: Callable[[Any], Any], *, autocommit: bool = False) -> Any:
        with self.engine.connect() as conn:
            try:
                return body(conn)
            finally:
                conn.rollback()


def _prune_for(url: str, seconds: float) -> None:
    """``python -m bench.growth prune URL SECONDS``: the pruning process beside the steps, a
    dispatcher applying a retention of one day (its passes, its pacing of retention, its
    sleeps: see :mod:`orchestrator.runtime.retention`). SIGTERM ends it, and it prints the
    rate it pruned at."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGALRM, lambda *_: stop.set())
    signal.setitimer(signal.ITIMER_REAL, seconds)
    journal = SqlJournal(url)
    dispatcher = Dispatcher(journal, RecordingPublisher(), Settings(retention=DAY))
    pruned = [0]
    tick = dispatcher.retention.tick

    def counted() -> int:
        n = tick()
        pruned[0] += n
        return n

    dispatcher.retention.tick = counted  # type: ignore[method-assign]
    began = time.perf_counter()
    try:
        dispatcher.run(stop)
    finally:
        journal.close()
    print(json.dumps({"rate": pruned[0] / (time.perf_counter() - began)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["prune"]:
        _prune_for(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.growth prune URL SECONDS")
