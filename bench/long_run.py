"""``long``: one workflow of thousands of sequential no-op activities.

If a step's cost grows with the history behind it (a full replay per step, a query that
reads the whole history), the last steps are slower than the first. The time per step is
taken from the journal: the spacing of ``activity_completed`` events (each stamped when the
replay that absorbed it decided) over the first and the last ``long_window`` steps.
"""

from __future__ import annotations

import sys
import time

from bench import probes
from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures, ratio
from orchestrator import EventType

NAMES = ("long",)


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    figures = Figures()
    orc, steps, window = cluster.orc, sizes.long_steps, sizes.long_window
    for rep in range(sizes.repeats):
        worker0 = probes.group_cpu(cluster.worker_pgrp)
        began = time.perf_counter()
        run_id = orc.start(cluster.module.sequence, steps, run_id=f"long-{rep}").run_id
        orc.result(run_id, timeout=120 + steps * 0.5)
        wall = time.perf_counter() - began
        worker_cpu = probes.group_cpu(cluster.worker_pgrp) - worker0
        done = [
            e.at.timestamp() for e in orc.history(run_id) if e.type is EventType.ACTIVITY_COMPLETED
        ]
        if len(done) != steps:
            raise RuntimeError(f"expected {steps} completed activities, found {len(done)}")
        first = (done[window] - done[0]) / window
        last = (done[-1] - done[-1 - window]) / window
        figures.add(f"time per step, first {window}", "ms", first * 1000)
        figures.add(f"time per step, last {window}", "ms", last * 1000)
        figures.add("ratio last/first", "x", ratio(last, first))
        figures.add("wall time, start to result()", "s", wall)
        figures.add("worker CPU per step (whole run)", "ms", worker_cpu * 1000 / steps)
        print(
            f"  long repetition {rep + 1}/{sizes.repeats}: {wall:.1f} s, "
            f"{first * 1000:.1f} -> {last * 1000:.1f} ms/step",
            file=sys.stderr,
        )
    return {"long": figures}
