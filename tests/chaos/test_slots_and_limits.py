"""The chaos suite's checks of schedules and limits catch what they are meant to catch: a slot
fired twice, fired late or early, lost while a dispatcher was up; a limit exceeded."""

from __future__ import annotations

from orchestrator.model.schedules import slot_run_id
from tests.chaos.slots_and_limits import (
    SlotRun,
    Timing,
    backoff,
    check_slots,
    covered,
    failed_passes,
    most_at_once,
    nobody_up,
)

FIRST = 1_700_000_000.0
ALLOW = Timing(every=2.0, catchup_window=60.0, overlap="allow")
SKIP = Timing(every=1.0, catchup_window=60.0, overlap="skip")


def run(sid: str, slot: float, late: float = 0.1, closed: float | None = None) -> SlotRun:
    return SlotRun(slot_run_id(sid, slot), slot + late, closed)


def test_every_slot_fired_once_is_clean() -> None:
    runs = [run("t", FIRST + 2 * k) for k in range(10)]
    report = check_slots("t", ALLOW, FIRST, FIRST + 20, runs, [])
    assert report.problems == []
    assert (report.slots, report.fired) == (10, 10)


def test_a_slot_fired_twice_is_a_problem() -> None:
    runs = [run("t", FIRST + 2 * k) for k in range(5)] + [run("t", FIRST + 4, late=0.3)]
    problems = check_slots("t", ALLOW, FIRST, FIRST + 10, runs, []).problems
    assert any("fired 2 times" in p for p in problems), problems


def test_a_slot_fired_after_the_next_one_came_or_off_the_grid_is_a_problem() -> None:
    late = check_slots("t", ALLOW, FIRST, FIRST + 2, [run("t", FIRST, late=2.5)], [])
    assert any("after its slot" in p for p in late.problems), late.problems
    early = check_slots("t", ALLOW, FIRST, FIRST + 2, [run("t", FIRST, late=-0.1)], [])
    assert any("after its slot" in p for p in early.problems), early.problems
    odd = check_slots("t", ALLOW, FIRST, FIRST + 4, [run("t", FIRST + 1)], [])
    assert any("not one of the schedule's slots" in p for p in odd.problems), odd.problems


def test_a_missing_slot_is_lost_unless_no_dispatcher_was_up_through_it() -> None:
    runs = [run("t", FIRST + 2 * k) for k in range(5) if k != 2]
    lost = check_slots("t", ALLOW, FIRST, FIRST + 10, runs, [])
    assert [p for p in lost.problems if "lost" in p], lost.problems
    # Down over part of the slot's interval only: a pass could still fire it.
    partly = check_slots("t", ALLOW, FIRST, FIRST + 10, runs, [(FIRST + 3.9, FIRST + 5.0)])
    assert [p for p in partly.problems if "lost" in p], partly.problems
    down = check_slots("t", ALLOW, FIRST, FIRST + 10, runs, [(FIRST + 3.5, FIRST + 5.8)])
    assert down.problems == [] and down.missed_down == 1


def test_a_skipped_slot_needs_the_previous_run_open() -> None:
    runs = [run("s", FIRST, closed=FIRST + 1.5), run("s", FIRST + 2, closed=FIRST + 2.2)]
    ok = check_slots("s", SKIP, FIRST, FIRST + 3, runs, [])
    assert ok.problems == [] and ok.skipped_overlap == 1
    # Closed (and committed, within COMMIT_LAG) before the slot at + 2: that slot is lost.
    runs = [run("s", FIRST, closed=FIRST + 0.2), run("s", FIRST + 3, closed=FIRST + 3.2)]
    lost = check_slots("s", SKIP, FIRST, FIRST + 4, runs, [])
    assert [p for p in lost.problems if "lost" in p], lost.problems


def test_down_intervals_from_logs_faults_and_both_dispatchers() -> None:
    log = "[2024-01-01 00:00:10,000 pid=1 ERROR x] dispatcher pass failed (3 in a row)\n"
    [(a, b)] = failed_passes(log)
    assert b - a == 1.0 + backoff(3) == 5.0
    both = nobody_up({"d1": [(0.0, 10.0)], "d2": [(5.0, 7.0), (9.0, 12.0)]})
    assert both == [(5.0, 7.0), (9.0, 10.0)]
    assert covered((5.5, 6.5), both) and not covered((6.5, 9.5), both)
    assert covered((1.0, 3.0), [(0.0, 2.0), (2.0, 4.0)])
    assert nobody_up({"d1": [(0.0, 2.0), (1.0, 3.0)], "d2": [(0.0, 4.0)]}) == [(0.0, 3.0)]


def test_the_most_runs_at_once() -> None:
    assert most_at_once([(0, 1), (1, 2), (2, 3)])[0] == 1  # an end frees the place first
    assert most_at_once([(0, 3), (1, 2), (1.5, 4), (3.5, 5)]) == (3, 1.5)
