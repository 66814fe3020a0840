"""``w1``: the round trip of one workflow with one activity, one run at a time.

Timed as a caller sees it: from ``orc.start`` to ``orc.result`` returning. The journal's own
``created_at`` to ``closed_at`` of the same runs is reported too, which leaves out what the
result call adds (it opens a connection and waits on a notification). For scale, the same
number of single plain Celery tasks is timed from ``delay()`` to ``get()`` on the same worker
and result backend.
"""

from __future__ import annotations

import sys
import time

from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures, percentile, ratio

NAMES = ("w1",)
WORKFLOW = "bench.sequence"


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    figures = Figures()
    orc, n = cluster.orc, sizes.w1_runs
    for rep in range(sizes.repeats):
        prefix = f"w1-{rep}-"
        round_trips = []
        for i in range(n):
            began = time.perf_counter()
            run_id = orc.start(cluster.module.sequence, 1, run_id=f"{prefix}{i}").run_id
            orc.result(run_id, timeout=60)
            round_trips.append(time.perf_counter() - began)
        runs = [r for r in orc.list_runs(workflow=WORKFLOW, limit=n) if r.run_id.startswith(prefix)]
        journaled = [(r.closed_at - r.created_at).total_seconds() for r in runs]

        tasks = []
        for _ in range(n):
            began = time.perf_counter()
            cluster.module.chain_end.delay().get(timeout=60)
            tasks.append(time.perf_counter() - began)

        p50 = percentile(round_trips, 50)
        figures.add("latency p50, start to result()", "ms", p50 * 1000)
        figures.add("latency p99, start to result()", "ms", percentile(round_trips, 99) * 1000)
        figures.add(
            "latency p50, created to closed (journal)", "ms", percentile(journaled, 50) * 1000
        )
        figures.add("plain task p50, delay() to get()", "ms", percentile(tasks, 50) * 1000)
        figures.add("plain task p99, delay() to get()", "ms", percentile(tasks, 99) * 1000)
        figures.add("ratio W1/plain task, p50", "x", ratio(p50, percentile(tasks, 50)))
        print(
            f"  w1 repetition {rep + 1}/{sizes.repeats}: p50 {p50 * 1000:.1f} ms",
            file=sys.stderr,
        )
    return {"w1": figures}
