"""Traces of a run stepped by real worker processes, each exporting its spans to one file."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import span_file
from tests.integration.cluster import Cluster, wait_for
from tests.traces import check_run_trace


@pytest.fixture
def traces(cluster: Cluster) -> Iterator[Path]:
    """The cluster's worker replaced by one that traces (with Celery instrumented) to a file,
    which this process writes to as well."""
    path = cluster.workdir / "spans.jsonl"
    cluster.kill(cluster.workers.pop("w1"), signal.SIGTERM)
    cluster.start_worker("traced", CONTINUUM_TEST_TRACES=str(path))
    here = span_file.export_to(str(path))
    try:
        yield path
    finally:
        span_file.stop(*here)
        cluster.kill(cluster.workers.pop("traced"), signal.SIGTERM)
        cluster.start_worker("w1")


def test_a_run_is_one_trace_across_processes(cluster: Cluster, traces: Path) -> None:
    handle = cluster.orc.start("sequential", 3)
    assert handle.result(timeout=30) == 3

    def finished() -> list[span_file.Span] | None:
        # The worker ends a task's Celery span after the outcome it journaled ended the run.
        spans = [s for s in span_file.read(traces) if s.trace_id]
        runs = [s for s in spans if s.name == "run/tests.integration.wfapp.add"]
        return spans if len(runs) == 3 else None

    spans = wait_for(finished, 30, "the worker's spans")
    mine = [s for s in spans if s.trace_id == _trace_of(spans, handle.run_id)]
    by_id = check_run_trace(mine, "sequential", ["tests.integration.wfapp.add"] * 3)
    # Steps were taken in this process (the start) and in the worker (the outcomes).
    assert len([s for s in mine if s.name == "step sequential"]) >= 3
    for run in (s for s in mine if s.name.startswith("run/")):
        publish = by_id[run.parent_id or ""]
        assert publish.name == "apply_async/tests.integration.wfapp.add"
        assert by_id[publish.parent_id or ""].name == "activity tests.integration.wfapp.add"


def _trace_of(spans: list[span_file.Span], run_id: str) -> str:
    [root] = [
        s
        for s in spans
        if s.name == "workflow sequential" and s.attributes.get("continuum.run_id") == run_id
    ]
    return root.trace_id
