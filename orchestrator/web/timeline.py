"""A run's timeline, drawn from its history: one row per activity, timer, child and
compensation, one bar per attempt, placed in percent of the run's span.

Pure: events in, rows out, so the page renders it as plain HTML and CSS (no chart library,
no JavaScript), and tests read it without a browser. A compensation's row comes right after
the row of the activity it undoes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.model.events import Event, EventType

_ENDS = {
    EventType.ACTIVITY_COMPLETED: "completed",
    EventType.ACTIVITY_FAILED: "failed",
    EventType.ACTIVITY_TIMED_OUT: "timed_out",
    EventType.COMPENSATION_COMPLETED: "completed",
    EventType.COMPENSATION_FAILED: "failed",
    EventType.TIMER_FIRED: "fired",
    EventType.CHILD_COMPLETED: "completed",
    EventType.CHILD_FAILED: "failed",
    EventType.CHILD_CANCELLED: "cancelled",
}
_STARTS = {
    EventType.ACTIVITY_SCHEDULED: "activity",
    EventType.COMPENSATION_SCHEDULED: "compensation",
    EventType.TIMER_STARTED: "timer",
    EventType.CHILD_STARTED: "child",
}
_MARKS = {EventType.SIGNAL_RECEIVED: "signal", EventType.CANCEL_REQUESTED: "cancel"}


@dataclass
class Bar:
    """One attempt (or timer, or child run): seconds from the run's start to its end (the
    end of the view while it is still open)."""

    start: float
    end: float | None
    state: str  # running, completed, failed, timed_out, fired, cancelled, pending
    attempt: int | None = None
    title: str = ""
    left: float = 0.0  # percent of the span
    width: float = 0.0

    @property
    def seconds(self) -> float | None:
        """How long it took (``None`` while open)."""
        return None if self.end is None else self.end - self.start


@dataclass
class Row:
    """A line of the timeline: what it is, and its bars (or point marks)."""

    kind: str  # activity, compensation, timer, child, signal, cancel
    label: str
    #: The full name (a task's dotted path) and a glimpse of the arguments, to tell rows apart.
    name: str = ""
    args: str = ""
    command_id: int | None = None
    detail: str = ""
    link: str | None = None  # a child's run id
    undoes: int | None = None  # a compensation's target activity (command id)
    bars: list[Bar] = field(default_factory=list)

    @property
    def state(self) -> str:
        """The state of its latest bar."""
        return self.bars[-1].state if self.bars else "pending"


@dataclass
class Timeline:
    """Rows, the span they share (seconds), and axis ticks as (percent, label)."""

    rows: list[Row]
    span: float
    ticks: list[tuple[float, str]]
    open: bool


def build(history: list[Event], now: datetime) -> Timeline:
    """The timeline of ``history``; bars still open run to ``now`` (or the run's end)."""
    if not history:
        return Timeline(rows=[], span=0.0, ticks=[], open=False)
    t0 = history[0].at
    rows: dict[tuple[str, int], Row] = {}
    open_bars: dict[tuple[str, int, int | None], Bar] = {}
    marks: dict[str, Row] = {}
    ended_at: float | None = None
    for event in history:
        at = (event.at - t0).total_seconds()
        kind = _STARTS.get(event.type)
        if kind is not None and event.command_id is not None:
            row = rows.get((kind, event.command_id))
            if row is None:
                row = rows[(kind, event.command_id)] = _row(kind, event)
            bar = Bar(start=at, end=None, state="running", attempt=event.attempt)
            if kind == "timer":
                bar.state = "pending"
            row.bars.append(bar)
            open_bars[(kind, event.command_id, _attempt_key(kind, event))] = bar
        elif event.type in _ENDS and event.command_id is not None:
            kind = _kind_of_end(event.type)
            bar_or_none = open_bars.pop((kind, event.command_id, _attempt_key(kind, event)), None)
            if bar_or_none is not None:
                bar_or_none.end, bar_or_none.state = at, _ENDS[event.type]
                bar_or_none.title = _error_line(event)
        elif event.type in _MARKS:
            name = _MARKS[event.type]
            row = marks.setdefault(name, Row(kind=name, label=_mark_label(name)))
            label = str(event.data.get("name", "")) if name == "signal" else "cancel requested"
            row.bars.append(Bar(start=at, end=at, state=name, title=label))
        elif event.type.value.startswith("run_") and event.type is not EventType.RUN_STARTED:
            ended_at = at
    horizon = ended_at if ended_at is not None else max((now - t0).total_seconds(), 0.0)
    for bar in open_bars.values():
        bar.state = "cancelled" if ended_at is not None and bar.state == "running" else bar.state
    ordered = _ordered(list(rows.values())) + list(marks.values())
    span = max([horizon] + [b.end or b.start for r in ordered for b in r.bars] + [0.001])
    for row in ordered:
        for bar in row.bars:
            end = bar.end if bar.end is not None else horizon
            bar.left = 100.0 * bar.start / span
            bar.width = max(100.0 * (end - bar.start) / span, 0.0)
    return Timeline(rows=ordered, span=span, ticks=_ticks(span), open=ended_at is None)


def _attempt_key(kind: str, event: Event) -> int | None:
    return event.attempt if kind in ("activity", "compensation") else None


def _kind_of_end(kind: EventType) -> str:
    name = kind.value
    if name.startswith("compensation_"):
        return "compensation"
    return name.split("_", 1)[0]  # activity, timer, child


def _row(kind: str, event: Event) -> Row:
    data = event.data
    if kind in ("activity", "compensation"):
        target = data.get("target_activity_id")
        task = str(data.get("task", "?"))
        return Row(
            kind=kind,
            label=task.rsplit(".", 1)[-1],
            name=task,
            args=_glimpse(data.get("args")),
            command_id=event.command_id,
            undoes=int(target) if isinstance(target, int) else None,
        )
    if kind == "timer":
        seconds = data.get("seconds")
        detail = (
            f"set for {format_seconds(float(seconds))}" if isinstance(seconds, int | float) else ""
        )
        return Row(kind=kind, label="timer", command_id=event.command_id, detail=detail)
    child = data.get("child_run_id")
    return Row(
        kind=kind,
        label=str(data.get("workflow", "child")),
        name=f"child run {child}",
        args=_glimpse(data.get("args")),
        command_id=event.command_id,
        link=str(child) if child else None,
    )


def _glimpse(args: Any) -> str:
    """The arguments in a few characters: enough to tell two calls of one task apart."""
    if not isinstance(args, list) or not args:
        return ""
    text = ", ".join(a if isinstance(a, str) else json.dumps(a, default=str) for a in args)
    return text if len(text) <= 48 else text[:47] + "…"


def _mark_label(name: str) -> str:
    return "signals" if name == "signal" else "cancellation"


def _error_line(event: Event) -> str:
    error = event.data.get("error")
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('message')}"
    return ""


def _ordered(rows: list[Row]) -> list[Row]:
    """Rows by command id, each compensation right after the activity it undoes."""
    rows.sort(key=lambda r: r.command_id or 0)
    undoing: dict[int, list[Row]] = {}
    kept: list[Row] = []
    for row in rows:
        if row.kind == "compensation" and row.undoes is not None:
            undoing.setdefault(row.undoes, []).append(row)
        else:
            kept.append(row)
    placed = {r.command_id for r in kept if r.kind == "activity"}
    out: list[Row] = []
    for row in kept:
        out.append(row)
        if row.kind == "activity" and row.command_id is not None:
            out += undoing.pop(row.command_id, [])
    return out + [r for cmd, group in undoing.items() if cmd not in placed for r in group]


def _ticks(span: float) -> list[tuple[float, str]]:
    return [(100.0 * i / 4, format_seconds(span * i / 4)) for i in range(5)]


def format_seconds(seconds: float) -> str:
    """A duration for people: ``850 ms``, ``4.2 s``, ``3 m 05 s``, ``2 h 10 m``, ``3 d 4 h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
