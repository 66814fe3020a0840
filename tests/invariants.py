"""History invariants every integration test checks on the runs it made."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.model.events import TERMINAL_EVENTS, Event, EventType

_OUTCOMES = {
    EventType.ACTIVITY_COMPLETED: EventType.ACTIVITY_SCHEDULED,
    EventType.ACTIVITY_FAILED: EventType.ACTIVITY_SCHEDULED,
    EventType.ACTIVITY_TIMED_OUT: EventType.ACTIVITY_SCHEDULED,
    EventType.COMPENSATION_COMPLETED: EventType.COMPENSATION_SCHEDULED,
    EventType.COMPENSATION_FAILED: EventType.COMPENSATION_SCHEDULED,
    EventType.TIMER_FIRED: EventType.TIMER_STARTED,
}


def check_history(history: Sequence[Event]) -> None:
    """Raise AssertionError naming the first broken invariant of one run's history."""
    assert history, "empty history"
    run_id = history[0].run_id
    seqs = [e.seq for e in history]
    assert seqs == list(range(1, len(history) + 1)), f"{run_id}: sequence numbers {seqs}"
    assert history[0].type is EventType.RUN_STARTED, f"{run_id}: first event {history[0].type}"
    scheduled: set[tuple[EventType, int | None, int | None]] = set()
    answered: set[tuple[EventType, int | None, int | None]] = set()
    for event in history:
        if event.type in (EventType.ACTIVITY_SCHEDULED, EventType.COMPENSATION_SCHEDULED):
            key = (event.type, event.command_id, event.attempt)
            assert key not in scheduled, f"{run_id}: {key} scheduled twice"
            scheduled.add(key)
        elif event.type is EventType.TIMER_STARTED:
            scheduled.add((event.type, event.command_id, None))
        cause = _OUTCOMES.get(event.type)
        if cause is not None:
            attempt = None if cause is EventType.TIMER_STARTED else event.attempt
            key = (cause, event.command_id, attempt)
            assert key in scheduled, f"{run_id}: {event.type} seq {event.seq} answers nothing"
            assert key not in answered, f"{run_id}: {key} answered twice (seq {event.seq})"
            answered.add(key)
    terminal = [e for e in history if e.type in TERMINAL_EVENTS]
    assert len(terminal) <= 1, f"{run_id}: {len(terminal)} terminal events"
    if terminal:
        assert terminal[0] is history[-1], f"{run_id}: events after {terminal[0].type}"
