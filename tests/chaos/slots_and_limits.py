"""What the chaos suite checks of schedules and concurrency limits, from the journal alone.

Schedules (DESIGN §10, ``docs/pages/how-to/schedules.md``): a slot starts at most one run, whose
id is the schedule's id and the slot; a dispatcher pass at ``now`` fires the latest slot at or
before ``now`` when it is due and at most ``catchup_window`` old, and moves on to the next slot
(slots between are skipped: after downtime only the latest missed one is fired). So, exactly:

- no two runs of a schedule share a slot, and every slot is one of the schedule's;
- a slot's run was created at or after the slot, before the next slot and at most the catch-up
  window after it (the latest due slot is fired, never an older one, never early);
- a slot with no run was reached by no dispatcher pass: every dispatcher was down (killed, or
  its passes failing against a Postgres or Redis restart and backing off) from the slot until
  its run could no longer be fired (the next slot, or the catch-up window's end), but for the
  time a pass takes once a dispatcher is back; or, under ``overlap="skip"``, the schedule's
  previous run was still open when the slot came.

Limits: a limited run holds a place from its admission to its end. A queued run takes no step,
so the first outcome of an activity it journals (an execution ran, or timed out) comes after
its admission; its end is its terminal event. At no moment may more than the limit of a key's
runs be between those two.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestrator.model.events import Event, EventType
from orchestrator.model.schedules import slot_run_id

#: Events that end a run.
TERMINAL_EVENTS = (
    EventType.RUN_COMPLETED,
    EventType.RUN_FAILED,
    EventType.RUN_CANCELLED,
    EventType.RUN_CONTINUED,
)
#: Outcomes of an activity attempt: journaled only by a step of an admitted run.
ACTIVITY_OUTCOMES = (
    EventType.ACTIVITY_COMPLETED,
    EventType.ACTIVITY_FAILED,
    EventType.ACTIVITY_TIMED_OUT,
)
#: Seconds a dispatcher back from downtime may take before its pass reads the clock to fire
#: schedules (it fires timers and expires tasks first, under load).
PASS_TIME = 0.5
#: Seconds before a logged failure of a pass that the pass may have been going on.
FAILED_PASS_LEAD = 1.0
#: Seconds a run's end may be committed after its terminal event's time (the step reads the
#: clock, then commits; one worker lingers 0.5 s before its commits on purpose).
COMMIT_LAG = 1.0

Interval = tuple[float, float]


# -- schedules -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """What decides a schedule's slots and which of them are due."""

    every: float
    catchup_window: float
    overlap: str

    @property
    def reach(self) -> float:
        """How long after a slot a pass may still fire it."""
        return min(self.every, self.catchup_window)


@dataclass(frozen=True)
class SlotRun:
    """A run a schedule's slot started, as the journal has it."""

    run_id: str
    created_at: float
    #: When its terminal event was journaled (``None``: it has not ended).
    closed_at: float | None


@dataclass
class SlotReport:
    """The slots of one schedule between its first slot and ``until``, and what became of
    them."""

    schedule_id: str
    slots: int = 0
    fired: int = 0
    skipped_overlap: int = 0
    missed_down: int = 0
    lateness: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        late = sorted(self.lateness) or [math.nan]
        return (
            f"{self.schedule_id}: {self.slots} slots, {self.fired} fired, "
            f"{self.skipped_overlap} skipped (previous run open), {self.missed_down} missed "
            f"(no dispatcher up); lateness p50 {late[len(late) // 2]:.3f}s "
            f"max {late[-1]:.3f}s; problems {len(self.problems)}"
        )


def slot_of(schedule_id: str, run_id: str) -> float | None:
    """The slot in a slot run's id (``None``: not one of the schedule's slot runs)."""
    sid, at, stamp = run_id.partition("@")
    if sid != schedule_id or not at or stamp.startswith("manual"):
        return None
    pattern = "%Y%m%dT%H%M%S.%fZ" if "." in stamp else "%Y%m%dT%H%M%SZ"
    return datetime.strptime(stamp, pattern).replace(tzinfo=UTC).timestamp()


def covered(span: Interval, intervals: list[Interval]) -> bool:
    """Whether the union of ``intervals`` covers ``span`` whole."""
    start, end = span
    for a, b in sorted(intervals):
        if a > start:
            break
        start = max(start, b)
        if start >= end:
            return True
    return start >= end


def check_slots(
    schedule_id: str,
    timing: Timing,
    first: float,
    until: float,
    runs: Iterable[SlotRun],
    down: list[Interval],
) -> SlotReport:
    """Check a schedule's slot runs (see the module's text). Slots from ``first`` whose reach
    ended before ``until`` (when the schedule was paused) must be accounted for; ``down``: the
    intervals during which no dispatcher could make a pass."""
    report = SlotReport(schedule_id)
    by_slot: dict[float, SlotRun] = {}
    counts: Counter[float] = Counter()
    for run in runs:
        slot = slot_of(schedule_id, run.run_id)
        if slot is None:
            report.problems.append(f"{run.run_id}: not a slot run of {schedule_id}")
            continue
        counts[slot] += 1
        by_slot[slot] = run
        k = slot / timing.every
        if abs(k - round(k)) > 1e-6 or slot < first:
            report.problems.append(f"{run.run_id}: not one of the schedule's slots")
        late = run.created_at - slot
        report.lateness.append(late)
        if not 0 <= late < timing.reach:
            report.problems.append(
                f"{run.run_id}: fired {late:+.3f}s after its slot (a pass fires the latest "
                f"due slot, within {timing.reach}s)"
            )
    report.problems += [
        f"{schedule_id}: slot {slot} fired {n} times" for slot, n in counts.items() if n > 1
    ]
    report.fired = len(by_slot)

    n = 0
    while (slot := round(first + n * timing.every, 3)) + timing.reach <= until:
        n += 1
        report.slots += 1
        if slot in by_slot:
            continue
        previous = max((s for s in by_slot if s < slot), default=None)
        if timing.overlap == "skip" and previous is not None:
            closed = by_slot[previous].closed_at
            if closed is None or closed + COMMIT_LAG > slot:
                report.skipped_overlap += 1
                continue
        if covered((slot, slot + timing.reach - PASS_TIME), down):
            report.missed_down += 1
            continue
        report.problems.append(
            f"{schedule_id}: slot {slot_run_id(schedule_id, slot)} lost: a dispatcher "
            f"could make a pass in [{slot:.3f}, {slot + timing.reach:.3f}); down: "
            f"{[(round(a, 3), round(b, 3)) for a, b in down if b > slot - 10 and a < slot + 10]}"
        )
    return report


# -- when no dispatcher could make a pass ----------------------------------------------------
_FAILED = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*dispatcher pass failed \((\d+) in a row\)"
)


def backoff(failures: int) -> float:
    """How long a dispatcher waits after ``failures`` failed passes in a row (as
    :meth:`orchestrator.runtime.dispatcher.Dispatcher.run` does)."""
    return min(30.0, 0.5 * 2.0 ** min(failures, 6))


def failed_passes(log: str) -> list[Interval]:
    """The intervals a dispatcher's log shows it could not make a pass: each failed pass,
    from shortly before it was logged to the end of the backoff that followed."""
    out = []
    for line in log.splitlines():
        found = _FAILED.match(line)
        if found:
            at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((at - FAILED_PASS_LEAD, at + backoff(int(found.group(2)))))
    return out


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """The intervals in both unions."""
    return [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b if max(x0, y0) < min(x1, y1)]


def nobody_up(per_dispatcher: dict[str, list[Interval]]) -> list[Interval]:
    """The intervals every dispatcher was down at once."""
    lists = list(per_dispatcher.values())
    if not lists:
        return []
    out = lists[0]
    for other in lists[1:]:
        out = intersect(out, other)
    merged: list[Interval] = []
    for a, b in sorted(out):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


# -- limits ----------------------------------------------------------------------------------
def place_held(history: list[Event]) -> Interval | None:
    """From the first outcome of an activity the run journaled to its end (``None``: no
    outcome, or no end)."""
    first = next((e for e in history if e.type in ACTIVITY_OUTCOMES), None)
    end = next((e for e in history if e.type in TERMINAL_EVENTS), None)
    if first is None or end is None:
        return None
    return first.at.timestamp(), end.at.timestamp()


def most_at_once(intervals: list[Interval]) -> tuple[int, float | None]:
    """The most intervals open at one moment, and the first such moment (an end at the same
    instant as a start comes first)."""
    moments = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak, current, when = 0, 0, None
    for at, change in moments:
        current += change
        if current > peak:
            peak, when = current, at
    return peak, when
