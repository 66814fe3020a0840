"""``schedules``: what idle schedules cost a dispatcher, and how late slots fire.

First the dispatcher's CPU time and single passes are sampled (as ``idle`` samples them) on
the fresh database, then again once ``SCHEDULES`` schedules exist that are not due (a yearly
cron each): a pass should cost about the same, since only due schedules are read. Then one
schedule fires every ``EVERY`` seconds (``overlap="allow"``) for ``SLOTS`` slots; each slot's
lateness is its run's creation time minus the slot, read from the journal.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime

from bench import idle
from bench.cluster import STATS_SETTLE, Cluster
from bench.plan import Sizes
from bench.stats import Figures, ratio

NAMES = ("schedules",)
SCHEDULES = 1000
SLOTS = 200
EVERY = 0.25


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    figures = Figures()
    time.sleep(STATS_SETTLE)
    before = [idle._sample(cluster, sizes) for _ in range(sizes.repeats)]
    for n in range(SCHEDULES):
        cluster.orc.schedule(f"idle-{n}", cluster.module.sequence, 1, cron="0 3 1 1 *")
    time.sleep(STATS_SETTLE)
    after = [idle._sample(cluster, sizes) for _ in range(sizes.repeats)]
    for (cpu0, _, tick0), (cpu1, _, tick1) in zip(before, after, strict=True):
        figures.add("no schedules: dispatcher CPU", "ms/s", cpu0)
        figures.add(f"{SCHEDULES} idle schedules: dispatcher CPU", "ms/s", cpu1)
        figures.add("no schedules: one dispatcher pass", "ms", tick0)
        figures.add(f"{SCHEDULES} idle schedules: one dispatcher pass", "ms", tick1)
        figures.add("ratio with/without, dispatcher CPU", "x", ratio(cpu1, cpu0))
    for name, value in _lateness(cluster).items():
        figures.add(f"slot lateness over {SLOTS} slots, {name}", "ms", value)
    return {"schedules": figures}


def _lateness(cluster: Cluster) -> dict[str, float]:
    """p50 and p99 of how late the runs of ``SLOTS`` slots were created, in ms."""
    cluster.orc.schedule("lateness", cluster.module.sequence, 1, every=EVERY, overlap="allow")
    cluster.wait_count(
        "SELECT count(*) FROM runs WHERE run_id LIKE 'lateness@%%'",
        n=SLOTS,
        timeout=SLOTS * EVERY + 60,
        what=f"{SLOTS} slots fired",
    )
    cluster.orc.pause_schedule("lateness")
    runs = cluster.orc.list_runs(workflow="bench.sequence", limit=SLOTS * 2)
    late = sorted(
        (r.created_at.timestamp() - _slot(r.run_id)) * 1000
        for r in runs
        if r.run_id.startswith("lateness@") and r.created_at is not None
    )[:SLOTS]
    cuts = statistics.quantiles(late, n=100)
    print(f"  schedules: lateness p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms", file=sys.stderr)
    return {"p50": cuts[49], "p99": cuts[98]}


def _slot(run_id: str) -> float:
    """The slot in a scheduled run's id (see :func:`orchestrator.model.schedules.slot_stamp`)."""
    stamp = run_id.partition("@")[2].rstrip("Z")
    shape = "%Y%m%dT%H%M%S.%f" if "." in stamp else "%Y%m%dT%H%M%S"
    return datetime.strptime(stamp, shape).replace(tzinfo=UTC).timestamp()
