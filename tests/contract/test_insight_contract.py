"""Operators' reads over many runs, on every backend: keyset pages of runs, counts per status,
and the aggregates the metrics endpoint exports."""

from __future__ import annotations

import pytest

from orchestrator.journal.insight import DURATION_BUCKETS, RunCursor, bucket_of
from orchestrator.journal.protocol import Batch, Journal
from orchestrator.model.events import RunStatus
from orchestrator.model.records import InboxItem, Timer
from tests.builders import completed, new_run, task
from tests.conftest import FakeClock
from tests.contract.test_journal_contract import claim, create, suspend


def _runs(journal: Journal, clock: FakeClock, n: int, **kw: object) -> list[str]:
    ids = []
    for i in range(n):
        run_id = f"{kw.get('prefix', 'run')}-{i:02d}"
        create(journal, run_id, workflow=str(kw.get("workflow", "wf")))
        ids.append(run_id)
        if i % 2 == 0:
            clock.advance(1)  # two runs share each creation time: the run id breaks the tie
    return ids


def test_pages_walk_every_run_once_newest_first(journal: Journal, clock: FakeClock) -> None:
    ids = _runs(journal, clock, 7)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = journal.page_runs(after=after, limit=3)
        seen += [r.run_id for r in page.runs]
        pages += 1
        if page.next is None:
            break
        after = RunCursor.decode(page.next.encode())  # through its text form, as a link does
    assert pages == 3
    expected = sorted(ids, key=lambda r: (journal.describe(r).created_at, r), reverse=True)  # type: ignore[union-attr]
    assert seen == expected


def test_a_full_last_page_has_no_next(journal: Journal, clock: FakeClock) -> None:
    _runs(journal, clock, 4)
    first = journal.page_runs(limit=2)
    assert first.next is not None
    second = journal.page_runs(after=first.next, limit=2)
    assert len(second.runs) == 2 and second.next is None


def test_pages_filter_by_status_workflow_and_prefix(journal: Journal, clock: FakeClock) -> None:
    _runs(journal, clock, 3, prefix="ord_1", workflow="order")
    _runs(journal, clock, 2, prefix="ord%1", workflow="refund")
    suspend(journal, "ord_1-01")

    def ids(**kw: object) -> set[str]:
        return {r.run_id for r in journal.page_runs(**kw).runs}  # type: ignore[arg-type]

    assert ids(workflow="refund") == {"ord%1-00", "ord%1-01"}
    assert ids(status=RunStatus.SUSPENDED) == {"ord_1-01"}
    assert ids(status=RunStatus.RUNNABLE, workflow="order") == {"ord_1-00", "ord_1-02"}
    # The prefix is literal: "_" and "%" match only themselves.
    assert ids(prefix="ord_") == {"ord_1-00", "ord_1-01", "ord_1-02"}
    assert ids(prefix="ord%") == {"ord%1-00", "ord%1-01"}
    assert ids(prefix="nope") == set()


def test_count_runs_per_workflow_and_status(journal: Journal, clock: FakeClock) -> None:
    _runs(journal, clock, 3, prefix="a", workflow="order")
    _runs(journal, clock, 1, prefix="b", workflow="refund")
    suspend(journal, "a-00")
    assert journal.count_runs() == {
        ("order", RunStatus.RUNNABLE): 2,
        ("order", RunStatus.SUSPENDED): 1,
        ("refund", RunStatus.RUNNABLE): 1,
    }
    assert journal.count_runs(workflow="refund") == {("refund", RunStatus.RUNNABLE): 1}


def test_cursor_text_round_trips_and_refuses_garbage() -> None:
    cursor = RunCursor(created_at=1_700_000_000.123456789, run_id="a:b/c")
    assert RunCursor.decode(cursor.encode()) == cursor
    for bad in ["", "x~r", "1.0", "1.0~", "nan~r", "inf~r"]:
        with pytest.raises(ValueError, match="invalid page cursor"):
            RunCursor.decode(bad)


def test_stats_count_runs_pending_work_and_ended_attempts(
    journal: Journal, clock: FakeClock
) -> None:
    start = clock()
    create(journal, "r1")
    create(journal, "r2", workflow="other")
    charge = task("r1", command_id=1)
    delayed = task("r1", command_id=2, available_at=start + 5)
    suspend(
        journal,
        "r1",
        tasks=[charge, delayed],
        timers=[Timer(run_id="r1", command_id=3, fire_at=start + 5)],
    )
    assert journal.mark_started(charge.task_id).value == "started"
    clock.advance(0.3)
    assert journal.deliver("r1", completed(1, "ok"), task_id=charge.task_id).accepted
    clock.advance(10)  # the timer and the delayed task are now overdue

    stats = journal.stats()
    assert stats.now == clock()
    assert stats.runs == {("wf", RunStatus.RUNNABLE): 1, ("other", RunStatus.RUNNABLE): 1}
    # r2 has been runnable since it was created; r1 since the outcome arrived.
    assert stats.runnable_oldest_at == pytest.approx(start)
    assert stats.outbox_unpublished == 1
    assert stats.timers_overdue == 1
    [attempt] = stats.attempts
    assert (attempt.task, attempt.outcome, attempt.count) == ("shop.charge", "completed", 1)
    assert attempt.seconds_sum == pytest.approx(0.3)
    assert attempt.buckets[bucket_of(0.3)] == 1 and sum(attempt.buckets) == 1
    assert len(attempt.buckets) == len(DURATION_BUCKETS) + 1


def test_stats_tell_failed_and_timed_out_attempts_apart(journal: Journal, clock: FakeClock) -> None:
    create(journal, "r1")
    first, second = task("r1", command_id=1), task("r1", command_id=2, timeout_seconds=1.0)
    suspend(journal, "r1", tasks=[first, second])
    failed = InboxItem(
        dedupe_key="outcome:1:1",
        type="activity_failed",  # type: ignore[arg-type]
        command_id=1,
        attempt=1,
        data={"error": {"type": "E", "message": "m", "traceback": None}},
    )
    assert journal.deliver("r1", failed, task_id=first.task_id).accepted
    journal.mark_started(second.task_id)
    clock.advance(2)
    journal.expire_tasks()
    outcomes = {(a.outcome, a.count) for a in journal.stats().attempts}
    assert outcomes == {("failed", 1), ("timed_out", 1)}


def test_stats_skip_attempts_that_the_run_outlived(journal: Journal) -> None:
    create(journal, "r1")
    suspend(journal, "r1", tasks=[task("r1", command_id=1)])
    journal.deliver("r1", InboxItem(dedupe_key="cancel", type="cancel_requested"))  # type: ignore[arg-type]
    journal.commit(claim(journal, "r1").lease, Batch(status=RunStatus.CANCELLED))
    stats = journal.stats()
    assert stats.attempts == []
    assert stats.runs == {("wf", RunStatus.CANCELLED): 1}
    assert stats.runnable_oldest_at is None


def test_new_run_builder_is_what_pages_return(journal: Journal) -> None:
    assert journal.create_run(new_run("solo", args=[1, {"a": 2}]))
    [info] = journal.page_runs().runs
    assert (info.run_id, info.args) == ("solo", [1, {"a": 2}])
