"""Traces of a run in ``continuum dev``, one process, collected in memory by the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Orchestrator, WorkflowContext
from orchestrator.cli import dev
from orchestrator.runtime import tracing
from tests import span_file
from tests.traces import check_run_trace, from_sdk

app = Celery("traced")
app.conf.update(task_serializer="json", accept_content=["json"])
orc = Orchestrator(app, queue="traced-orchestrator")


@app.task(name="traced.double")
def double(n: int) -> int:
    return n * 2


@orc.workflow(name="traced")
async def traced(ctx: WorkflowContext, n: int) -> int:
    n = await ctx.activity(double, n)
    return await ctx.activity(double, n)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """A tracer provider for this test only, exporting to memory (and Celery instrumented)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield spans
    finally:
        span_file.stop(provider, instrumentor)


def test_tracing_is_off_without_a_tracer_provider() -> None:
    assert tracing.tracer() is None
    assert tracing.start_run("traced", "r1") is None


def test_a_run_in_dev_is_one_trace(exporter: InMemorySpanExporter, tmp_path: Path) -> None:
    lines: list[Any] = []
    code = dev.run(
        orc,
        journal_url=f"sqlite:///{tmp_path / 'dev.sqlite3'}",
        start="traced",
        args=[3],
        echo=lines.append,
    )
    assert code == 0, lines
    assert "result: 12" in lines
    spans = [from_sdk(s) for s in exporter.get_finished_spans()]
    by_id = check_run_trace(spans, "traced", ["traced.double", "traced.double"])
    # Celery's own spans compose: each activity's run span descends from its attempt span.
    runs = [s for s in spans if s.name == "run/traced.double"]
    assert len(runs) == 2
    for span in runs:
        publish = by_id[span.parent_id or ""]
        assert publish.name == "apply_async/traced.double"
        assert by_id[publish.parent_id or ""].name == "activity traced.double"
    run_ids = {s.attributes.get("continuum.run_id") for s in spans if s.name.startswith("step")}
    assert len(run_ids) == 1
