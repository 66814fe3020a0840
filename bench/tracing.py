"""``w10_traced``: the ``w10`` workload with OpenTelemetry tracing on, to set beside ``w10``.

Every process of the run traces: the worker and the dispatcher (started with
``CONTINUUM_BENCH_TRACING``, see :mod:`bench.app`) and this client, which starts the runs
(their ``workflow`` spans, and the first step each start takes). Spans go through the SDK's
batch processor to an exporter that drops them, so what is measured is what Continuum's spans
cost the processes making them, not an exporter's I/O. Celery's own instrumentation is not
installed: its spans are Celery's cost, the same with or without Continuum.
"""

from __future__ import annotations

from typing import Any

from bench import throughput
from bench.cluster import Cluster
from bench.plan import Sizes
from bench.stats import Figures

NAMES = ("w10_traced",)
#: Set (to anything) in a process's environment, :mod:`bench.app` traces at import.
TRACING_ENV = "CONTINUUM_BENCH_TRACING"


def run(cluster: Cluster, sizes: Sizes, wanted: set[str]) -> dict[str, Figures]:
    cluster.env[TRACING_ENV] = "1"
    stop = trace_spans()
    try:
        cluster.fresh("w10_traced")  # again: its processes must start with tracing on
        measured = throughput.run(cluster, sizes, {"w10"})
    finally:
        stop()
        cluster.env.pop(TRACING_ENV)
    return {"w10_traced": measured["w10"]}


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
