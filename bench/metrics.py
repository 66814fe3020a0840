"""``metrics``: one Prometheus scrape of a journal holding 100,000 runs.

The metrics are derived from the journal at each scrape (a few aggregate queries), so their
cost grows with the journal; the target is a scrape under 100 ms at 100,000 runs. The runs
are bulk-loaded with SQL, shaped as a busy deployment's: five workflows, most runs completed
with their four events and their activity attempt (one in eight failed once and was retried),
some failed, some still waiting on a timer. The worker and dispatcher are stopped, so the
scrapes are timed alone. Each scrape is the exporter's whole work: the queries, and the text
Prometheus reads.
"""

from __future__ import annotations

import statistics
import sys
import time

import psycopg

from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures, percentile
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.web import collector

NAMES = ("metrics",)
RUNS = 100_000
SCRAPES = 30

_LOAD = [
    """
    INSERT INTO runs (run_id, workflow, version, status, args, result, error, correlation_id,
                      created_at, updated_at, closed_at, last_seq)
    SELECT 'm-' || i, 'wf' || (mod(i, 5)), '1',
           CASE WHEN mod(i, 20) = 0 THEN 'failed' WHEN mod(i, 50) = 1 THEN 'suspended'
                ELSE 'completed' END,
           '["order-' || i || '", 100]',
           CASE WHEN mod(i, 20) <> 0 AND mod(i, 50) <> 1 THEN '{"ok": true}' END,
           CASE WHEN mod(i, 20) = 0 THEN '{"type": "RuntimeError", "message": "declined"}' END,
           'm-' || i, %(t0)s + i, %(t0)s + i + 2,
           CASE WHEN mod(i, 50) <> 1 THEN %(t0)s + i + 2 END, 4
    FROM generate_series(1, %(runs)s) AS i
    """,
    """
    INSERT INTO events (run_id, seq, type, command_id, attempt, data, at)
    SELECT 'm-' || i, s,
           (ARRAY['run_started', 'activity_scheduled', 'activity_completed', 'run_completed'])[s],
           CASE WHEN s IN (2, 3) THEN 1 END, CASE WHEN s IN (2, 3) THEN 1 END,
           CASE WHEN s = 2 THEN '{"task": "shop.charge", "args": ["order", 100]}'
                ELSE '{"result": "ok"}' END,
           %(t0)s + i + s * 0.5
    FROM generate_series(1, %(runs)s) AS i, generate_series(1, 4) AS s
    """,
    """
    INSERT INTO tasks (task_id, run_id, command_id, attempt, kind, task_name, args, kwargs,
                       available_at, created_at, published_at, started_at, finished, outcome,
                       finished_at)
    SELECT 'm-' || i || ':1:' || a, 'm-' || i, 1, a, 'activity', 'shop.task' || (mod(i, 7)),
           '[]', '{}', %(t0)s + i, %(t0)s + i, %(t0)s + i, %(t0)s + i + 0.01,
           mod(i, 50) <> 1 OR a = 1,
           CASE WHEN mod(i, 50) = 1 AND a = 2 THEN NULL WHEN a = 1 AND mod(i, 8) = 0 THEN 'failed'
                ELSE 'completed' END,
           CASE WHEN mod(i, 50) = 1 AND a = 2 THEN NULL
                ELSE %(t0)s + i + 0.01 + mod(i, 997) / 300.0 END
    FROM generate_series(1, %(runs)s) AS i, generate_series(1, 2) AS a
    WHERE a = 1 OR mod(i, 8) = 0 OR mod(i, 50) = 1
    """,
    """
    INSERT INTO timers (run_id, command_id, fire_at)
    SELECT 'm-' || i, 2, %(t0)s + 10 * %(runs)s FROM generate_series(1, %(runs)s) AS i
    WHERE mod(i, 50) = 1
    """,
    "ANALYZE",
]


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    cluster.stop_processes()
    t0 = time.time() - RUNS - 3600
    started = time.perf_counter()
    with psycopg.connect(cluster.url.replace("+psycopg", ""), autocommit=True) as conn:
        for statement in _LOAD:
            conn.execute(statement, {"t0": t0, "runs": RUNS})  # type: ignore[arg-type]
    print(f"metrics: {RUNS} runs loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    journal = SqlJournal(cluster.url)
    registry = collector.registry_for(journal)
    figures = Figures()
    try:
        for _ in range(sizes.repeats):
            collector.exposition(registry)  # warm: connection, statement cache
            times = []
            for _ in range(SCRAPES):
                begun = time.perf_counter()
                body, _ = collector.exposition(registry)
                times.append((time.perf_counter() - begun) * 1000)
            figures.add("scrape p50", "ms", statistics.median(times))
            figures.add("scrape p95", "ms", percentile(times, 95))
        figures.add("runs in the journal", "runs", float(_count(journal)))
        figures.add("exposition size", "KiB", len(body) / 1024)
    finally:
        journal.close()
    return {"metrics": figures}


def _count(journal: SqlJournal) -> int:
    return sum(journal.count_runs().values())
