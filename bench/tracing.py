"""``w10_untraced`` and ``w10_traced``: the ``w10`` workload with OpenTelemetry tracing off
and on, in alternation, so that a busy machine's swings fall on both alike.

Each repetition measures one ``w10`` repetition with tracing off, then one with it on, each on
a fresh database with freshly started processes. With tracing on, every process traces: the
worker and the dispatcher (started with ``CONTINUUM_BENCH_TRACING``, see :mod:`bench.app`)
and this client, which starts the runs (their ``workflow`` spans, and the first step each
start takes). Spans go through the SDK's batch processor to an exporter that drops them, so
what is measured is what Continuum's spans cost the processes making them, not an exporter's
I/O. Celery's own instrumentation is not installed: its spans are Celery's cost, the same
with or without Continuum.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from bench import throughput
from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures

NAMES = ("w10_untraced", "w10_traced")
#: Set (to anything) in a process's environment, :mod:`bench.app` traces at import.
TRACING_ENV = "CONTINUUM_BENCH_TRACING"


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    out = {name: Figures() for name in NAMES}
    once = dataclasses.replace(sizes, repeats=1)
    for rep in range(sizes.repeats):
        print(f"  tracing off, then on: pair {rep + 1}/{sizes.repeats}", file=sys.stderr)
        cluster.fresh("w10_untraced")
        _merge(out["w10_untraced"], throughput.run(cluster, once, {"w10"})["w10"])
        cluster.env[TRACING_ENV] = "1"
        stop = trace_spans()
        try:
            cluster.fresh("w10_traced")  # its processes start with tracing on
            _merge(out["w10_traced"], throughput.run(cluster, once, {"w10"})["w10"])
        finally:
            stop()
            cluster.env.pop(TRACING_ENV)
    return out


def _merge(into: Figures, measured: Figures) -> None:
    for figure in measured:
        for value in figure.values:
            into.add(figure.label, figure.unit, value)


def trace_spans() -> Any:
    """Make this process trace, its spans dropped by the exporter; returns how to stop."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.util._once import Once

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)

    def stop() -> None:
        provider.shutdown()
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]

    return stop
