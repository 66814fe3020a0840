"""What the tracing tests assert about the spans of one run, however they were collected."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Span:
    """A finished span, as the tests read it (ids as hex)."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]


def from_sdk(span: Any) -> Span:
    """A span of the OpenTelemetry SDK (``ReadableSpan``)."""
    parent = span.parent
    return Span(
        name=span.name,
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        parent_id=None if parent is None else f"{parent.span_id:016x}",
        attributes=dict(span.attributes or {}),
    )


def check_run_trace(spans: list[Span], workflow: str, activities: list[str]) -> dict[str, Span]:
    """The spans of one run form one trace rooted at its ``workflow`` span: every step is its
    child, every attempt a child of a step, every other span (Celery's) descends from an
    attempt. Returns the spans by id."""
    by_id = {s.span_id: s for s in spans}
    [root] = [s for s in spans if s.name == f"workflow {workflow}"]
    assert root.parent_id is None or root.parent_id not in by_id
    assert {s.trace_id for s in spans} == {root.trace_id}, "one trace for the whole run"
    steps = [s for s in spans if s.name == f"step {workflow}"]
    assert steps and all(s.parent_id == root.span_id for s in steps)
    attempts = [s for s in spans if s.name.startswith("activity ")]
    assert Counter(s.name for s in attempts) == Counter(f"activity {a}" for a in activities)
    step_ids = {s.span_id for s in steps}
    assert all(s.parent_id in step_ids for s in attempts)
    attempt_ids = {s.span_id for s in attempts}
    for span in spans:
        if span is root or span in steps or span in attempts:
            continue
        ancestor = span
        while ancestor.parent_id is not None and ancestor.span_id not in attempt_ids:
            ancestor = by_id[ancestor.parent_id]
        assert ancestor.span_id in attempt_ids, f"{span.name} does not descend from an attempt"
    return by_id
