"""OpenTelemetry traces of runs: one trace per run, whatever processes step it.

Off, and free, unless ``opentelemetry-api`` is installed and the process has configured a
tracer provider (``trace.set_tracer_provider``): every entry point first asks
:func:`tracer`, which is ``None`` then, and nothing else of OpenTelemetry is imported or run.

When on, a trace has these spans:

- ``workflow <name>``: made when the run is started, as a child of whatever span is current
  in the starting process (a web request's, say), and ended there. Its context is journaled
  with the run (``trace_context``), so every later span of the run descends from it.
- ``step <name>``: one per replay step, in the process that takes it, from its replay to the
  publishing of what it decided.
- ``activity <task name>``: one per attempt sent, a child of the step that scheduled it,
  current while the message is sent and carried in its headers (W3C ``traceparent``). With
  ``opentelemetry-instrumentation-celery`` the Celery spans of the message (``apply_async``,
  then ``run`` in the worker) are its children. An attempt run in place is spanned for the
  whole of its run.
- A child run's ``workflow <name>`` span is a child of its parent's step; a continuation and
  a retry keep their original's trace context.

A run started with tracing off (or from a process with none) is not traced.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchestrator.model.events import RunInfo
from orchestrator.model.records import NewRun

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

_state: dict[str, Any] = {}
_NOTHING: AbstractContextManager[Any] = nullcontext()


def tracer() -> Tracer | None:
    """The tracer of the configured provider, or ``None`` when tracing is off."""
    if "trace" not in _state:
        try:
            from opentelemetry import trace as module
        except ImportError:
            module = None  # type: ignore[assignment]
        _state["trace"] = module
    trace = _state["trace"]
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if provider is _state.get("provider"):
        return _state.get("tracer")
    found = None
    if not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        found = provider.get_tracer("continuum")
    _state["provider"], _state["tracer"] = provider, found
    return found


def _parent(carrier: dict[str, str] | None) -> Context | None:
    from opentelemetry import propagate

    return None if carrier is None else propagate.extract(carrier)


def _carrier(span: Span) -> dict[str, str]:
    from opentelemetry import propagate, trace

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def start_run(
    workflow: str, run_id: str, parent: dict[str, str] | None = None
) -> dict[str, str] | None:
    """The ``workflow <name>`` span of a new run, made and ended now: its trace context, to
    journal with the run (``None`` when tracing is off). Its parent is ``parent`` (a trace
    context) or else the current span."""
    found = tracer()
    if found is None:
        return None
    span = found.start_span(f"workflow {workflow}", context=_parent(parent))
    span.set_attribute("continuum.run_id", run_id)
    span.set_attribute("continuum.workflow", workflow)
    span.end()
    return _carrier(span)


class StepSpans:
    """The ``step`` spans a process has open, one per run whose step it is taking.

    :meth:`begin` opens one when a step's replay begins; :meth:`publishing` makes it current
    while the step's tasks are sent, then ends it. A step that is not committed leaves its
    span unended (it is dropped, not exported) until the run's next step here replaces it.
    """

    def __init__(self) -> None:
        self._open: dict[str, Span] = {}

    def begin(self, run: RunInfo) -> None:
        """Open the step span of ``run`` (nothing when tracing is off or it is not traced)."""
        found = tracer()
        if found is None or run.trace_context is None:
            return
        span = found.start_span(f"step {run.workflow}", context=_parent(run.trace_context))
        span.set_attribute("continuum.run_id", run.run_id)
        self._open[run.run_id] = span

    def children(self, run_id: str, children: list[NewRun]) -> list[NewRun]:
        """``children`` (started by ``run_id``'s step) with their trace contexts: each has a
        ``workflow <name>`` span, a child of the step's."""
        span = self._open.get(run_id) if self._open else None
        if span is None:
            return children
        parent = _carrier(span)
        return [replace(c, trace_context=start_run(c.workflow, c.run_id, parent)) for c in children]

    def publishing(self, run_id: str, status: str, last_seq: int) -> AbstractContextManager[Any]:
        """Within: the step span of ``run_id`` is current; it ends on leaving."""
        span = self._open.pop(run_id, None) if self._open else None
        if span is None:
            return _NOTHING
        from opentelemetry import trace

        span.set_attribute("continuum.status", status)
        span.set_attribute("continuum.last_seq", last_seq)
        return trace.use_span(span, end_on_exit=True)


def attempt_span(
    task_name: str, task_id: str, headers: dict[str, Any], parent: Context | None = None
) -> AbstractContextManager[Any]:
    """A context manager spanning one activity attempt (``activity <task name>``) as a child
    of ``parent`` or of the current span, current within, its context injected into the
    message ``headers``. A no-op when tracing is off or no run's trace is current."""
    found = tracer()
    if found is None:
        return _NOTHING
    from opentelemetry import propagate, trace

    if parent is None and not trace.get_current_span().get_span_context().is_valid:
        return _NOTHING
    span = found.start_span(f"activity {task_name}", context=parent, kind=trace.SpanKind.PRODUCER)
    span.set_attribute("celery.task_id", task_id)
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return trace.use_span(span, end_on_exit=True)


def current() -> Context | None:
    """The current context, to parent a span made later (``None`` when tracing is off)."""
    if tracer() is None:
        return None
    from opentelemetry import context

    return context.get_current()
