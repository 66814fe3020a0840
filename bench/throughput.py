"""``w10`` and ``commits``: many short sequential workflows at once, against plain chains.

One repetition starts ``w10_runs`` workflows of ``w10_steps`` no-op activities as fast as the
client can, and waits for all of them. Latency is each run's journaled ``created_at`` (taken
in the start call) to its ``closed_at`` (the commit that completed it), read back afterwards
instead of blocking on hundreds of result calls. The same repetition then starts as many
plain Celery chains of as many no-op tasks on the same worker; a chain's last task returns
the time it ran, kept in the Redis result backend, and its latency runs from its
``apply_async`` to that time. Both sides are thus timed from the start call to the moment
the outcome is written to the store the caller reads it from.

The ``commits`` figures are taken around the workflow half of the same repetition:
transactions committed in the journal database (every client's, the dispatcher's idle passes
and the worker heartbeats included), messages published and SQL statements sent (counted by
each process, see :mod:`bench.counters`), CPU time of the worker's and the dispatcher's
process groups, of this client and of the Postgres server processes serving the journal
database's connections (connections opened and closed within the window are missed), and
the worker processes' peak resident memory.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from celery.result import ResultSet

from bench import probes
from bench.cluster import STATS_SETTLE, Cluster
from bench.counters import KINDS
from bench.plan import Sizes
from bench.stats import Figures, percentile, ratio

MESSAGES = [k for k in KINDS if k != "sql"]

NAMES = ("w10", "commits")
WORKFLOW = "bench.sequence"


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    out = {name: Figures() for name in NAMES if name in wanted}
    for rep in range(sizes.repeats):
        wf = workflows(cluster, sizes, rep, settle="commits" in wanted)
        if "commits" in out:
            _record_costs(out["commits"], wf, sizes)
        if "w10" in out:
            chains = _chains(cluster, sizes)
            _record_comparison(out["w10"], wf, chains, sizes)
        print(
            f"  w10 repetition {rep + 1}/{sizes.repeats}: "
            f"{wf['throughput']:.1f} workflows/s, p50 {wf['p50'] * 1000:.0f} ms",
            file=sys.stderr,
        )
    return out


def workflows(cluster: Cluster, sizes: Sizes, rep: int, *, settle: bool) -> dict[str, Any]:
    orc, n = cluster.orc, sizes.w10_runs
    prefix = f"w10-{rep}-"
    if settle:
        time.sleep(STATS_SETTLE)
    commits0 = cluster.commits()
    counted0 = cluster.counted()
    worker0 = probes.group_cpu(cluster.worker_pgrp)
    dispatcher0 = probes.group_cpu(cluster.dispatcher_pgrp)
    client0 = probes.self_cpu()
    postgres0 = probes.cpu_by_pid(cluster.backend_pids())
    memory = probes.PoolMemory(cluster.worker_pgrp)

    began = time.time()
    ids = [f"{prefix}{i}" for i in range(n)]
    for run_id in ids:
        orc.start(cluster.module.sequence, sizes.w10_steps, run_id=run_id)
    # By id, not by prefix: LIKE cannot use the key's index, and a scan of a full journal's
    # runs every poll would be measured as the workflows' cost (see bench.growth).
    cluster.wait_count(
        "SELECT count(*) FROM runs WHERE run_id = ANY(%s) AND closed_at IS NOT NULL",
        ids,
        n=n,
        timeout=60 + n * sizes.w10_steps * 0.1,
        what=f"{n} workflows to finish",
    )
    worker_cpu = probes.group_cpu(cluster.worker_pgrp) - worker0
    dispatcher_cpu = probes.group_cpu(cluster.dispatcher_pgrp) - dispatcher0
    client_cpu = probes.self_cpu() - client0
    postgres_cpu = probes.cpu_delta(postgres0, probes.cpu_by_pid(cluster.backend_pids()))
    counted1 = cluster.counted()
    peak_rss, rss_growth = memory.peak_mib(), memory.growth_mib()

    runs = [r for r in orc.list_runs(workflow=WORKFLOW, limit=n) if r.run_id.startswith(prefix)]
    if len(runs) != n or any(r.status.value != "completed" for r in runs):
        raise RuntimeError(f"expected {n} completed workflows, found {len(runs)} or failures")
    latencies = [(r.closed_at - r.created_at).total_seconds() for r in runs]
    wall = max(r.closed_at.timestamp() for r in runs) - began
    if settle:
        time.sleep(STATS_SETTLE)
    return {
        "throughput": n / wall,
        "wall": wall,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "commits": cluster.commits() - commits0 if settle else None,
        "counted": {k: counted1[k] - counted0[k] for k in counted1},
        "worker_cpu": worker_cpu,
        "dispatcher_cpu": dispatcher_cpu,
        "client_cpu": client_cpu,
        "postgres_cpu": postgres_cpu,
        "peak_rss": peak_rss,
        "rss_growth": rss_growth,
    }


def _chains(cluster: Cluster, sizes: Sizes) -> dict[str, Any]:
    n, steps = sizes.w10_runs, sizes.w10_steps
    counted0 = cluster.counted()
    worker0 = probes.group_cpu(cluster.worker_pgrp)
    began = time.time()
    sent, results = [], []
    for _ in range(n):
        sent.append(time.time())
        results.append(cluster.module.plain_chain(steps).apply_async())
    finished = ResultSet(results).get(timeout=60 + n * steps * 0.1)
    worker_cpu = probes.group_cpu(cluster.worker_pgrp) - worker0
    counted1 = cluster.counted()
    latencies = [done - start for done, start in zip(finished, sent, strict=True)]
    wall = max(finished) - began
    return {
        "throughput": n / wall,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "published": sum(counted1[k] - counted0[k] for k in MESSAGES),
        "worker_cpu": worker_cpu,
    }


def _record_comparison(
    figures: Figures, wf: dict[str, Any], chains: dict[str, Any], sizes: Sizes
) -> None:
    n, steps = sizes.w10_runs, sizes.w10_steps
    figures.add("workflows/s", "1/s", wf["throughput"])
    figures.add("activities/s", "1/s", wf["throughput"] * steps)
    figures.add("latency p50, start to closed", "ms", wf["p50"] * 1000)
    figures.add("latency p99, start to closed", "ms", wf["p99"] * 1000)
    figures.add("plain chains/s", "1/s", chains["throughput"])
    figures.add("plain chain tasks/s", "1/s", chains["throughput"] * steps)
    figures.add("plain chain latency p50", "ms", chains["p50"] * 1000)
    figures.add("plain chain latency p99", "ms", chains["p99"] * 1000)
    figures.add("ratio W10/chain, throughput", "x", ratio(wf["throughput"], chains["throughput"]))
    figures.add("ratio W10/chain, latency p50", "x", ratio(wf["p50"], chains["p50"]))
    figures.add("plain chain: worker CPU per chain", "ms", chains["worker_cpu"] * 1000 / n)
    figures.add("plain chain: messages per task", "msg", chains["published"] / (n * steps))


def _record_costs(figures: Figures, wf: dict[str, Any], sizes: Sizes) -> None:
    n, steps = sizes.w10_runs, sizes.w10_steps
    counted = wf["counted"]
    figures.add("Postgres commits per workflow", "tx", wf["commits"] / n)
    figures.add("Postgres commits per activity step", "tx", wf["commits"] / (n * steps))
    messages = sum(counted[k] for k in MESSAGES)
    figures.add("Celery messages per step", "msg", messages / (n * steps))
    figures.add("  of which replay requests", "msg", counted["replay"] / (n * steps))
    figures.add("  of which activity tasks", "msg", counted["activity"] / (n * steps))
    figures.add("SQL statements per step (all processes)", "stmt", counted["sql"] / (n * steps))
    figures.add("worker CPU per workflow", "ms", wf["worker_cpu"] * 1000 / n)
    figures.add("dispatcher CPU per workflow", "ms", wf["dispatcher_cpu"] * 1000 / n)
    figures.add("client CPU per workflow (start, polls)", "ms", wf["client_cpu"] * 1000 / n)
    figures.add("Postgres server CPU per workflow", "ms", wf["postgres_cpu"] * 1000 / n)
    figures.add("worker peak RSS (largest pool child)", "MiB", wf["peak_rss"])
    figures.add("  rise during the phase", "MiB", wf["rss_growth"])
