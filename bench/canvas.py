"""``canvas_chain`` and ``canvas_chord``: an existing Celery canvas run by
``orc.start_canvas`` against the same canvas run by ``apply_async``, on the same worker.

``canvas_chain`` starts ``w10_runs`` chains of ``w10_steps`` tasks passing a counter along,
as fast as the client can, first as durable runs (waited for through the journal: each run's
``closed_at``), then as plain chains (their results waited for in the Redis result backend);
throughput is chains per second from the first start to the last finish. ``canvas_chord``
runs one chord of ``CHORD_WIDTH`` header tasks and a summing body both ways, start to result.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from celery import chain, chord
from celery.result import ResultSet

from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures, ratio

NAMES = ("canvas_chain", "canvas_chord")
CHORD_WIDTH = 100


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    out = {name: Figures() for name in NAMES if name in wanted}
    for rep in range(sizes.repeats):
        if "canvas_chain" in out:
            durable, plain = _chains(cluster, sizes, rep)
            figures = out["canvas_chain"]
            figures.add("start_canvas chains/s", "1/s", durable)
            figures.add("apply_async chains/s", "1/s", plain)
            figures.add("ratio start_canvas/apply_async, throughput", "x", ratio(durable, plain))
            print(
                f"  canvas_chain {rep + 1}: {durable:.1f} vs {plain:.1f} chains/s", file=sys.stderr
            )
        if "canvas_chord" in out:
            durable, plain = _chords(cluster, rep)
            figures = out["canvas_chord"]
            figures.add(f"start_canvas chord of {CHORD_WIDTH}, start to result", "s", durable)
            figures.add(f"apply_async chord of {CHORD_WIDTH}, start to get()", "s", plain)
            figures.add("ratio start_canvas/apply_async, wall time", "x", ratio(durable, plain))
            print(f"  canvas_chord {rep + 1}: {durable:.2f} s vs {plain:.2f} s", file=sys.stderr)
    return out


def _chain(cluster: Cluster, steps: int) -> Any:
    inc = cluster.module.inc
    return chain(inc.s(0), *(inc.s() for _ in range(steps - 1)))


def _chains(cluster: Cluster, sizes: Sizes, rep: int) -> tuple[float, float]:
    n, steps, orc = sizes.w10_runs, sizes.w10_steps, cluster.orc
    prefix = f"canvas-{rep}-"
    began = time.time()
    for i in range(n):
        orc.start_canvas(_chain(cluster, steps), run_id=f"{prefix}{i}")
    cluster.wait_count(
        "SELECT count(*) FROM runs WHERE run_id LIKE %s AND closed_at IS NOT NULL",
        prefix + "%",
        n=n,
        timeout=60 + n * steps * 0.1,
        what=f"{n} canvases to finish",
    )
    runs = [orc.describe(f"{prefix}{i}") for i in range(n)]
    if any(r.status.value != "completed" or r.result != steps for r in runs):
        raise RuntimeError(f"expected {n} canvases completed with {steps}")
    durable = n / (max(r.closed_at.timestamp() for r in runs if r.closed_at) - began)

    began = time.time()
    results = [_chain(cluster, steps).apply_async() for _ in range(n)]
    if ResultSet(results).get(timeout=60 + n * steps * 0.1) != [steps] * n:
        raise RuntimeError(f"expected {n} chains returning {steps}")
    return durable, n / (time.time() - began)


def _chords(cluster: Cluster, rep: int) -> tuple[float, float]:
    module, orc = cluster.module, cluster.orc

    def build() -> Any:
        return chord([module.inc.s(i) for i in range(CHORD_WIDTH)], module.total.s())

    expected = sum(range(1, CHORD_WIDTH + 1))
    began = time.perf_counter()
    handle = orc.start_canvas(build(), run_id=f"canvas-chord-{rep}")
    if orc.result(handle.run_id, timeout=120) != expected:
        raise RuntimeError("the durable chord returned a wrong sum")
    durable = time.perf_counter() - began
    began = time.perf_counter()
    if build().apply_async().get(timeout=120) != expected:
        raise RuntimeError("the plain chord returned a wrong sum")
    return durable, time.perf_counter() - began
