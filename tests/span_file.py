"""Spans written to a file, one JSON object a line, by every process of a test's cluster.

A worker of the integration app (``tests/integration/wfapp.py``) given
``CONTINUUM_TEST_TRACES`` installs :func:`export_to` at import: a tracer provider that writes
each span as it ends, and Celery's instrumentation. The test reads the file back with
:func:`read`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from tests.traces import Span, from_sdk

__all__ = ["FileSpanExporter", "Span", "export_to", "read", "stop"]


class FileSpanExporter(SpanExporter):
    """Appends each span to ``path`` as one line (short appends: processes do not interleave)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(from_sdk(s).__dict__, default=str) + "\n" for s in spans)
        with self._lock, open(self.path, "a") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def export_to(path: str) -> tuple[TracerProvider, CeleryInstrumentor]:
    """Make this process trace to ``path``, Celery included."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    trace.set_tracer_provider(provider)
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    return provider, instrumentor


def read(path: Path) -> list[Span]:
    """The spans written to ``path`` so far."""
    if not path.exists():
        return []
    return [Span(**json.loads(line)) for line in path.read_text().splitlines() if line]


def stop(provider: TracerProvider, instrumentor: CeleryInstrumentor) -> None:
    """Undo :func:`export_to`: tracing is off again in this process."""
    from opentelemetry.util._once import Once

    instrumentor.uninstrument()
    provider.shutdown()
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
