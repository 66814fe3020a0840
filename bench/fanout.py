"""``fanout``: one workflow gathering many no-op activities at once.

Wall time runs from ``orc.start`` to ``orc.result`` returning. The worker's peak memory is
the largest peak resident set among its pool children during the run (the peak counters are
reset just before it starts), and its rise over that child's size at the start: what one
wide run costs the processes replaying it.
"""

from __future__ import annotations

import sys
import time

from bench import probes
from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures

NAMES = ("fanout",)


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    figures = Figures()
    orc, width = cluster.orc, sizes.fanout_width
    for rep in range(sizes.repeats):
        memory = probes.PoolMemory(cluster.worker_pgrp)
        worker0 = probes.group_cpu(cluster.worker_pgrp)
        began = time.perf_counter()
        run_id = orc.start(cluster.module.fanout, width, run_id=f"fanout-{rep}").run_id
        result = orc.result(run_id, timeout=60 + width * 0.5)
        wall = time.perf_counter() - began
        if result != width:
            raise RuntimeError(f"fanout returned {result!r}, expected {width}")
        worker_cpu = probes.group_cpu(cluster.worker_pgrp) - worker0
        events = len(orc.history(run_id))
        figures.add("wall time, start to result()", "s", wall)
        figures.add("activities/s", "1/s", width / wall)
        figures.add("worker peak RSS (largest pool child)", "MiB", memory.peak_mib())
        figures.add("  rise during the run", "MiB", memory.growth_mib())
        figures.add("worker CPU per activity", "ms", worker_cpu * 1000 / width)
        figures.add("history events", "events", events)
        print(f"  fanout repetition {rep + 1}/{sizes.repeats}: {wall:.1f} s", file=sys.stderr)
    return {"fanout": figures}
