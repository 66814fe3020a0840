"""The schedules' part of the journal contract, on every backend (in-memory, SQLite, Postgres).

What a caller relies on: a schedule is kept as written and rewritten without losing its slot;
a due slot starts exactly one run, whose id is the slot's, however many dispatchers fire it
at once; after downtime only the latest missed slot inside the catch-up window is fired;
``overlap="skip"`` waits for the previous run's chain to end; a paused schedule fires nothing
and, resumed, does not make up for the slots it missed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.journal.protocol import Batch, Journal
from orchestrator.model.events import EventType, NewEvent, RunStatus
from orchestrator.model.schedules import ScheduleSpec, manual_run_id, slot_run_id
from tests.builders import new_run
from tests.conftest import FakeClock
from tests.contract.test_journal_contract import all_at_once, claim, ref

START = 1_700_000_000.0  # the FakeClock's start: 2023-11-14T22:13:20Z, a multiple of 10 and 100


def spec(schedule_id: str = "s1", **kw: Any) -> ScheduleSpec:
    kw.setdefault("every", None if "cron" in kw else 10.0)
    return ScheduleSpec(
        schedule_id=schedule_id, workflow="wf", version="1", args=kw.pop("args", [1]), **kw
    )


def at(when: float) -> datetime:
    return datetime.fromtimestamp(when, UTC)


def end(journal: Journal, run_id: str) -> None:
    lease = claim(journal, run_id).lease
    batch = Batch(events=[NewEvent(type=EventType.RUN_COMPLETED)], status=RunStatus.COMPLETED)
    journal.commit(lease, batch)


# -- create, read, rewrite, delete ------------------------------------------------------------
def test_a_schedule_is_kept_as_written_and_waits_for_its_first_slot(journal: Journal) -> None:
    written = journal.put_schedule(spec(args=["a", {"b": 2}], overlap="allow"))

    assert written.spec == spec(args=["a", {"b": 2}], overlap="allow")
    assert (written.paused, written.next_fire_at) == (False, at(START + 10))
    assert (written.last_slot_at, written.last_run_id) == (None, None)
    assert journal.get_schedule("s1") == written
    journal.put_schedule(spec("s0"))
    assert [s.schedule_id for s in journal.list_schedules()] == ["s0", "s1"]
    assert journal.get_schedule("nope") is None


def test_a_rewrite_keeps_the_awaited_slot_unless_the_timing_changes(
    journal: Journal, clock: FakeClock
) -> None:
    journal.put_schedule(spec())
    clock.advance(4)
    rewritten = journal.put_schedule(spec(args=[2]))
    assert (rewritten.spec.args, rewritten.next_fire_at) == ([2], at(START + 10))

    retimed = journal.put_schedule(spec(every=8.0))
    assert retimed.next_fire_at == at(START + 8)  # the first multiple of 8 s after now


def test_a_deleted_schedule_is_gone_and_its_runs_stay(journal: Journal, clock: FakeClock) -> None:
    journal.put_schedule(spec())
    clock.advance(10)
    [fired] = journal.fire_due_schedules()

    assert journal.delete_schedule("s1")
    assert not journal.delete_schedule("s1")
    assert journal.get_schedule("s1") is None
    assert journal.describe(fired.run_id) is not None
    clock.advance(10)
    assert journal.fire_due_schedules() == []


def test_a_cron_schedule_keeps_its_timezone(journal: Journal) -> None:
    # 02:00 in Paris is 01:00 UTC in November (and would be 00:00 UTC in July).
    written = journal.put_schedule(spec(cron="0 2 * * *", timezone="Europe/Paris"))
    assert written.next_fire_at == datetime(2023, 11, 15, 1, 0, tzinfo=UTC)
    assert journal.next_wakeup() == written.next_fire_at.timestamp()


# -- firing -----------------------------------------------------------------------------------
def test_a_due_slot_starts_one_run_named_after_it(journal: Journal, clock: FakeClock) -> None:
    journal.put_schedule(spec(args=["x"]))
    clock.advance(9)
    assert journal.fire_due_schedules() == []

    clock.advance(1.5)
    run_id = slot_run_id("s1", START + 10)
    assert run_id == "s1@20231114T221330Z"
    assert journal.fire_due_schedules() == [ref(run_id)]
    assert journal.fire_due_schedules() == []
    info = journal.describe(run_id)
    assert info is not None and (info.status, info.args) == (RunStatus.RUNNABLE, ["x"])
    schedule = journal.get_schedule("s1")
    assert schedule is not None
    assert (schedule.last_slot_at, schedule.last_run_id) == (at(START + 10), run_id)
    assert schedule.next_fire_at == at(START + 20)


def test_dispatchers_firing_one_slot_at_once_start_one_run(
    journal: Journal, clock: FakeClock
) -> None:
    for n in range(3):
        journal.put_schedule(spec(f"s{n}", overlap="allow"))
    clock.advance(10)

    fired = [r for refs in all_at_once(lambda _: journal.fire_due_schedules()) for r in refs]

    assert sorted(r.run_id for r in fired) == [slot_run_id(f"s{n}", START + 10) for n in range(3)]
    assert len(journal.list_runs()) == 3


def test_a_slot_whose_run_exists_is_an_idempotent_start(journal: Journal, clock: FakeClock) -> None:
    journal.put_schedule(spec())
    run_id = slot_run_id("s1", START + 10)
    assert journal.create_run(new_run(run_id, args=["first"]))
    clock.advance(10)

    assert journal.fire_due_schedules() == []  # nothing new to dispatch
    info = journal.describe(run_id)
    assert info is not None and info.args == ["first"]
    schedule = journal.get_schedule("s1")
    assert schedule is not None and schedule.last_run_id == run_id


def test_after_downtime_only_the_latest_missed_slot_is_fired(
    journal: Journal, clock: FakeClock
) -> None:
    journal.put_schedule(spec(every=10.0, catchup_window=25))
    clock.advance(47)  # slots +10 .. +40 missed; +40 is 7 s old

    assert journal.fire_due_schedules() == [ref(slot_run_id("s1", START + 40))]
    assert [r.run_id for r in journal.list_runs()] == [slot_run_id("s1", START + 40)]
    schedule = journal.get_schedule("s1")
    assert schedule is not None and schedule.next_fire_at == at(START + 50)


def test_a_missed_slot_older_than_the_catch_up_window_is_skipped(
    journal: Journal, clock: FakeClock
) -> None:
    journal.put_schedule(spec(every=100.0, catchup_window=30))
    clock.advance(250)  # the latest slot, +200, is 50 s old

    assert journal.fire_due_schedules() == []
    schedule = journal.get_schedule("s1")
    assert schedule is not None and schedule.next_fire_at == at(START + 300)
    clock.advance(55)
    assert journal.fire_due_schedules() == [ref(slot_run_id("s1", START + 300))]


def test_overlap_skip_waits_for_the_previous_chain_to_end(
    journal: Journal, clock: FakeClock
) -> None:
    journal.put_schedule(spec())
    clock.advance(10)
    [first] = journal.fire_due_schedules()
    # The first run continues as new: its chain is still open.
    lease = claim(journal, first.run_id).lease
    successor = new_run("next", correlation_id=first.run_id, continued_from_run_id=first.run_id)
    journal.commit(
        lease,
        Batch(
            events=[NewEvent(type=EventType.RUN_CONTINUED)],
            status=RunStatus.CONTINUED,
            continuation=successor,
        ),
    )
    clock.advance(10)
    assert journal.fire_due_schedules() == []  # slot +20 skipped

    end(journal, "next")
    clock.advance(10)
    assert journal.fire_due_schedules() == [ref(slot_run_id("s1", START + 30))]


def test_overlap_allow_fires_while_the_previous_run_is_open(
    journal: Journal, clock: FakeClock
) -> None:
    journal.put_schedule(spec(overlap="allow"))
    fired = []
    for _ in range(3):
        clock.advance(10)
        fired += journal.fire_due_schedules()
    assert [r.run_id for r in fired] == [slot_run_id("s1", START + s) for s in (10, 20, 30)]


def test_a_paused_schedule_fires_nothing_and_resumed_skips_what_it_missed(
    journal: Journal, clock: FakeClock
) -> None:
    journal.put_schedule(spec())
    paused = journal.pause_schedule("s1", True)
    assert paused is not None and paused.paused
    assert journal.put_schedule(spec(args=[2])).paused  # a rewrite keeps the pause
    clock.advance(35)
    assert journal.fire_due_schedules() == []
    assert journal.next_wakeup() is None

    resumed = journal.pause_schedule("s1", False)
    assert resumed is not None and (resumed.paused, resumed.next_fire_at) == (False, at(START + 40))
    assert journal.fire_due_schedules() == []
    clock.advance(5)
    assert journal.fire_due_schedules() == [ref(slot_run_id("s1", START + 40))]
    assert journal.pause_schedule("nope", True) is None


def test_a_trigger_starts_a_run_now_whatever_the_pause(journal: Journal, clock: FakeClock) -> None:
    journal.put_schedule(spec())
    journal.pause_schedule("s1", True)
    clock.advance(3)

    fired = journal.trigger_schedule("s1")

    assert fired == ref(manual_run_id("s1", START + 3))
    schedule = journal.get_schedule("s1")
    assert schedule is not None and schedule.last_run_id == fired.run_id
    assert journal.trigger_schedule("nope") is None


def test_a_schedule_of_a_limited_workflow_starts_queued_runs(
    journal: Journal, clock: FakeClock
) -> None:
    journal.put_schedule(spec(overlap="allow", concurrency_key='["wf", null]', concurrency_limit=1))
    clock.advance(10)
    journal.fire_due_schedules()
    clock.advance(10)
    journal.fire_due_schedules()

    statuses = {r.run_id: r.status for r in journal.list_runs()}
    assert statuses == {
        slot_run_id("s1", START + 10): RunStatus.RUNNABLE,
        slot_run_id("s1", START + 20): RunStatus.QUEUED,
    }


@pytest.mark.parametrize("paused", [False, True])
def test_the_next_wakeup_is_the_earliest_unpaused_slot(journal: Journal, paused: bool) -> None:
    journal.put_schedule(spec(every=40.0))
    journal.put_schedule(spec("s2", every=20.0))
    if paused:
        journal.pause_schedule("s2", True)
    assert journal.next_wakeup() == (START + 40 if paused else START + 20)
