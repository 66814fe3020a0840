"""``idle``: what an idle dispatcher costs, with no runs and with many runs waiting.

The dispatcher's passes should cost the same whether or not thousands of runs wait for a
signal: nothing about them is due. Each repetition samples the dispatcher process's CPU time
and the journal database's commits over ``idle_seconds``, then times single dispatcher
passes (``Dispatcher.tick``) run in this process against the same database. That is done on
the fresh database, then again after ``idle_runs`` workflows were started and all of them
are suspended waiting for a signal (started through ``orc.start``, the real path).
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench import probes
from bench.cluster import STATS_SETTLE, Cluster
from bench.plan import Sizes
from bench.stats import Figures, ratio

NAMES = ("idle",)
STARTERS = 4


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    figures = Figures()
    time.sleep(STATS_SETTLE)  # so the warm-up's commits are not counted as idle ones
    before = [_sample(cluster, sizes) for _ in range(sizes.repeats)]
    for cpu, commits, tick in before:
        figures.add("no runs: dispatcher CPU", "ms/s", cpu)
        figures.add("no runs: journal commits", "tx/s", commits)
        figures.add("no runs: one dispatcher pass", "ms", tick)

    created = _create_waiting(cluster, sizes.idle_runs)
    figures.add(f"{sizes.idle_runs} waiting runs: created, start to suspended", "runs/s", created)
    time.sleep(STATS_SETTLE)  # likewise for the creation's commits

    after = [_sample(cluster, sizes) for _ in range(sizes.repeats)]
    for cpu, commits, tick in after:
        figures.add(f"{sizes.idle_runs} waiting: dispatcher CPU", "ms/s", cpu)
        figures.add(f"{sizes.idle_runs} waiting: journal commits", "tx/s", commits)
        figures.add(f"{sizes.idle_runs} waiting: one dispatcher pass", "ms", tick)
    for (cpu0, _, tick0), (cpu1, _, tick1) in zip(before, after, strict=True):
        figures.add("ratio after/before, dispatcher CPU", "x", ratio(cpu1, cpu0))
        figures.add("ratio after/before, dispatcher pass", "x", ratio(tick1, tick0))
    return {"idle": figures}


def _sample(cluster: Cluster, sizes: Sizes) -> tuple[float, float, float]:
    """(dispatcher CPU ms per second, journal commits per second, median pass in ms)."""
    cpu0, commits0 = probes.group_cpu(cluster.dispatcher_pgrp), cluster.commits()
    began = time.monotonic()
    time.sleep(sizes.idle_seconds)
    elapsed = time.monotonic() - began
    cpu = (probes.group_cpu(cluster.dispatcher_pgrp) - cpu0) * 1000 / elapsed
    commits = (cluster.commits() - commits0) / elapsed

    dispatcher = cluster.orc.dispatcher()
    dispatcher.tick()  # connect first; the pass itself is what is timed
    passes = []
    for _ in range(sizes.idle_ticks):
        began = time.perf_counter()
        dispatcher.tick()
        passes.append(time.perf_counter() - began)
    tick = statistics.median(passes) * 1000
    print(
        f"  idle sample: dispatcher {cpu:.1f} ms CPU/s, pass {tick:.2f} ms, {commits:.1f} tx/s",
        file=sys.stderr,
    )
    return cpu, commits, tick


def _create_waiting(cluster: Cluster, n: int) -> float:
    """Start ``n`` waiting workflows; returns how many per second reached ``suspended``."""
    orc, waiter = cluster.orc, cluster.module.waiter
    began = time.perf_counter()
    with ThreadPoolExecutor(STARTERS) as pool:
        list(pool.map(lambda i: orc.start(waiter, run_id=f"idle-{i}"), range(n)))
    cluster.wait_count(
        "SELECT count(*) FROM runs WHERE workflow = %s AND status = 'suspended'",
        "bench.waiter",
        n=n,
        timeout=120 + n * 0.1,
        what=f"{n} runs to wait for their signal",
    )
    elapsed = time.perf_counter() - began
    print(f"  idle: {n} waiting runs in {elapsed:.1f} s", file=sys.stderr)
    return n / elapsed
