"""The run page's timeline, drawn from a history: bars per attempt, in the run's span, each
compensation beside the activity it undoes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("starlette")

from orchestrator.model.events import Event, EventType, timestamp
from orchestrator.web import timeline

T0 = timestamp(1_700_000_000.0)


def ev(
    seq: int,
    at: float,
    kind: EventType,
    cmd: int | None = None,
    attempt: int | None = None,
    **data: Any,
) -> Event:
    return Event(
        run_id="r",
        seq=seq,
        type=kind,
        command_id=cmd,
        attempt=attempt,
        data=data,
        at=T0 + timedelta(seconds=at),
    )


def saga_history() -> list[Event]:
    E = EventType
    return [
        ev(1, 0, E.RUN_STARTED),
        ev(2, 0, E.ACTIVITY_SCHEDULED, 1, 1, task="reserve"),
        ev(3, 1, E.ACTIVITY_COMPLETED, 1, 1),
        ev(4, 1, E.ACTIVITY_SCHEDULED, 2, 1, task="charge"),
        ev(5, 2, E.ACTIVITY_FAILED, 2, 1, error={"type": "E", "message": "boom"}),
        ev(6, 3, E.ACTIVITY_SCHEDULED, 2, 2, task="charge"),
        ev(7, 4, E.ACTIVITY_COMPLETED, 2, 2),
        ev(8, 4, E.SIGNAL_RECEIVED, name="approve"),
        ev(9, 4, E.TIMER_STARTED, 3, fire_at=0, seconds=2),
        ev(10, 6, E.TIMER_FIRED, 3),
        ev(11, 6, E.ACTIVITY_SCHEDULED, 4, 1, task="ship"),
        ev(12, 7, E.ACTIVITY_FAILED, 4, 1, error={"type": "RuntimeError", "message": "no truck"}),
        ev(13, 7, E.COMPENSATION_SCHEDULED, 5, 1, task="refund", target_activity_id=2),
        ev(14, 7, E.COMPENSATION_SCHEDULED, 6, 1, task="release", target_activity_id=1),
        ev(15, 8, E.COMPENSATION_COMPLETED, 5, 1),
        ev(16, 8, E.COMPENSATION_COMPLETED, 6, 1),
        ev(17, 8, E.RUN_FAILED, error={"type": "RuntimeError", "message": "no truck"}),
    ]


def test_one_bar_per_attempt_and_compensations_beside_what_they_undo() -> None:
    chart = timeline.build(saga_history(), now=T0 + timedelta(seconds=100))
    assert [(r.kind, r.label) for r in chart.rows] == [
        ("activity", "reserve"),
        ("compensation", "release"),
        ("activity", "charge"),
        ("compensation", "refund"),
        ("timer", "timer"),
        ("activity", "ship"),
        ("signal", "signals"),
    ]
    charge = chart.rows[2]
    assert [(b.state, b.attempt, b.seconds) for b in charge.bars] == [
        ("failed", 1, 1.0),
        ("completed", 2, 1.0),
    ]
    assert charge.bars[0].title == "E: boom"
    assert chart.rows[5].state == "failed"
    # Placed in percent of the run's span (it ended at +8 s, not at "now").
    assert chart.span == 8.0 and not chart.open
    assert charge.bars[1].left == pytest.approx(37.5) and charge.bars[1].width == pytest.approx(
        12.5
    )
    assert chart.rows[4].bars[0].state == "fired"


def test_an_open_run_draws_open_bars_up_to_now() -> None:
    history = saga_history()[:6]
    chart = timeline.build(history, now=T0 + timedelta(seconds=10))
    assert chart.open and chart.span == 10.0
    running = chart.rows[1].bars[-1]
    assert running.state == "running" and running.end is None
    assert running.left == pytest.approx(30.0) and running.width == pytest.approx(70.0)


def test_durations_read_as_people_say_them() -> None:
    assert [
        timeline.format_seconds(s) for s in (0.0123, 4.25, 185, 7800, 3 * 86400 + 4 * 3600)
    ] == [
        "12 ms",
        "4.2 s",
        "3 m 05 s",
        "2 h 10 m",
        "3 d 4 h",
    ]


def test_a_failed_runs_error_line_names_the_cause_not_the_run_again() -> None:
    from orchestrator.model.events import RunInfo, RunStatus
    from orchestrator.web.runview import error_line

    message = "run r-1: activity tasks.charge (command 2) failed on attempt 1: ValueError: no\nmore"
    info = RunInfo(
        run_id="r-1",
        workflow="order",
        version="1",
        status=RunStatus.FAILED,
        error={"type": "orchestrator.errors.ActivityFailed", "message": message},
    )
    assert error_line(info) == (
        "ActivityFailed: activity tasks.charge (command 2) failed on attempt 1: ValueError: no"
    )
