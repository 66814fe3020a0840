"""Schedules and concurrency limits on real processes: two dispatchers, a worker, Postgres.

Every slot of a schedule starts one run and one execution of its activity, however many
dispatchers fire it; a paused schedule fires nothing while another keeps firing; after
downtime shorter than the catch-up window, the latest missed slot is fired once and the
others are skipped. A workflow limited to N runs never has more than N open at once (read
from the histories afterwards), and a per-key limit lets different keys run side by side.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orchestrator import Cancelled, Event, EventType, RunInfo, RunStatus
from tests.integration.cluster import Cluster, wait_for

EVERY = 2.0


@pytest.fixture
def two_dispatchers(cluster: Cluster) -> Iterator[Cluster]:
    """The session's cluster with a second dispatcher, stopped again afterwards."""
    for name in ("d1", "d2"):
        proc = cluster.dispatchers.get(name)
        if proc is None or proc.poll() is not None:
            cluster.start_dispatcher(name)
    try:
        yield cluster
    finally:
        d1 = cluster.dispatchers["d1"]
        if d1.poll() is not None:
            cluster.start_dispatcher("d1")
        d2 = cluster.dispatchers.pop("d2")
        if d2.poll() is None:
            cluster.kill(d2, signal.SIGTERM)


def fired(cluster: Cluster, schedule_id: str) -> dict[float, RunInfo]:
    """The runs a schedule's slots started, by slot (manual triggers left out)."""
    runs = cluster.orc.list_runs(workflow="tick", limit=10_000)
    out: dict[float, RunInfo] = {}
    for info in runs:
        sid, _, stamp = info.run_id.partition("@")
        if sid == schedule_id and not stamp.startswith("manual"):
            slot = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
            assert slot not in out
            out[slot] = info
    return out


def all_done(cluster: Cluster, runs: dict[float, RunInfo]) -> None:
    for info in runs.values():
        assert cluster.orc.result(info.run_id, timeout=30) == info.run_id
        assert cluster.executions(info.run_id) == 1, info.run_id
        starts = [e for e in cluster.orc.history(info.run_id) if e.type == EventType.RUN_STARTED]
        assert len(starts) == 1


def test_a_two_second_schedule_fires_once_per_slot_on_two_dispatchers(
    two_dispatchers: Cluster,
) -> None:
    cluster, sid = two_dispatchers, f"tick-{uuid.uuid4().hex[:8]}"
    first = cluster.orc.schedule(sid, "tick", every=EVERY, overlap="allow").next_fire_at
    wait_for(lambda: len(fired(cluster, sid)) >= 10, 40, "ten slots fired")
    cluster.orc.pause_schedule(sid)

    runs = fired(cluster, sid)
    slots = sorted(runs)
    assert slots[0] == first.timestamp()
    assert slots == [slots[0] + EVERY * n for n in range(len(slots))]  # none missed
    all_done(cluster, runs)
    lateness = [runs[s].created_at.timestamp() - s for s in slots if runs[s].created_at]
    assert max(lateness) < EVERY, lateness
    cluster.orc.delete_schedule(sid)


def test_a_paused_schedule_fires_nothing_while_another_fires(two_dispatchers: Cluster) -> None:
    cluster = two_dispatchers
    paused, control = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("paused", "control"))
    cluster.orc.schedule(paused, "tick", every=EVERY, overlap="allow")
    wait_for(lambda: fired(cluster, paused), 10, "the schedule's first slot")
    cluster.orc.pause_schedule(paused)
    before = set(fired(cluster, paused))

    cluster.orc.schedule(control, "tick", every=EVERY, overlap="allow")
    wait_for(lambda: len(fired(cluster, control)) >= 3, 15, "three slots of another schedule")
    assert set(fired(cluster, paused)) == before

    cluster.orc.resume_schedule(paused)
    wait_for(lambda: len(fired(cluster, paused)) > len(before), 10, "a slot after resuming")
    for sid in (paused, control):
        cluster.orc.delete_schedule(sid)


def test_dispatchers_down_for_less_than_the_catch_up_window_fire_the_missed_slot_once(
    two_dispatchers: Cluster,
) -> None:
    cluster, sid, every = two_dispatchers, f"catchup-{uuid.uuid4().hex[:8]}", 6.0
    cluster.orc.schedule(sid, "tick", every=every, catchup_window=30, overlap="allow")
    last = wait_for(lambda: max(fired(cluster, sid), default=None), 15, "the first slot")
    for name in ("d1", "d2"):
        cluster.kill(cluster.dispatchers[name])
    down_at = time.time()
    # Down past two more slots (last + 6 and last + 12), then back within the next one.
    wait_for(lambda: time.time() > last + 2 * every + 0.5, 20, "two slots to pass")
    assert set(fired(cluster, sid)) <= {last}
    for name in ("d1", "d2"):
        cluster.start_dispatcher(name)

    caught_up = last + 2 * every
    wait_for(lambda: caught_up in fired(cluster, sid), 10, "the missed slot to be fired")
    runs = fired(cluster, sid)
    assert last + every not in runs  # the older missed slot is skipped
    created = runs[caught_up].created_at
    assert created is not None and created.timestamp() > down_at
    cluster.orc.delete_schedule(sid)
    all_done(cluster, runs)


def open_intervals(history: list[Event]) -> tuple[float, float]:
    """Part of the time a run held a place: from its first activity's outcome (journaled once
    it ran, so after the run was admitted; the first step's own events carry the run's start
    time, as workflow time does) to its end."""
    first = next(e for e in history if e.type == EventType.ACTIVITY_COMPLETED)
    end = next(e for e in history if e.type == EventType.RUN_COMPLETED)
    return first.at.timestamp(), end.at.timestamp()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    moments = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = current = 0
    for _, change in moments:  # an end sorts before a start at the same instant
        current += change
        peak = max(peak, current)
    return peak


def test_a_workflow_limited_to_three_never_runs_more_at_once(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [
        cluster.orc.start("limited", f"lim-{tag}-{n}", 0.3, run_id=f"lim-{tag}-{n}").run_id
        for n in range(20)
    ]
    waiting = cluster.orc.start("limited", f"lim-{tag}-x", 0.3, run_id=f"lim-{tag}-x").run_id
    info = cluster.orc.describe(waiting)
    assert info.status is RunStatus.QUEUED
    assert info.reason is not None and "limit of 3 open runs" in info.reason
    cluster.orc.cancel(waiting, "not needed")

    for run_id in ids:
        assert cluster.orc.result(run_id, timeout=60) == f"{run_id} done"
    with pytest.raises(Cancelled):
        cluster.orc.result(waiting, timeout=30)
    assert cluster.executions(f"lim-{tag}-x") == 0
    intervals = [open_intervals(cluster.orc.history(run_id)) for run_id in ids]
    assert most_at_once(intervals) == 3
    assert all(cluster.executions(run_id) == 1 for run_id in ids)


def test_children_of_a_limited_workflow_never_run_more_than_its_limit(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    parent = cluster.orc.start("limited_children", f"kid-{tag}", 8, 0.3).run_id

    assert cluster.orc.result(parent, timeout=60) == [f"kid-{tag}-{i} done" for i in range(8)]
    kids = [
        e.data["child_run_id"]
        for e in cluster.orc.history(parent)
        if e.type == EventType.CHILD_STARTED
    ]
    assert len(kids) == 8
    assert most_at_once([open_intervals(cluster.orc.history(kid)) for kid in kids]) == 3
    assert all(cluster.executions(f"kid-{tag}-{i}") == 1 for i in range(8))


def test_a_per_key_limit_lets_different_keys_run_side_by_side(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    starts = [(customer, n) for n in range(2) for customer in ("ann", "bob")]
    ids = {
        (customer, n): cluster.orc.start(
            "limited_by_key", customer, f"key-{tag}-{customer}-{n}", 1.0
        ).run_id
        for customer, n in starts
    }
    for run_id in ids.values():
        cluster.orc.result(run_id, timeout=60)
    spans = {k: open_intervals(cluster.orc.history(run_id)) for k, run_id in ids.items()}

    for customer in ("ann", "bob"):
        assert most_at_once([spans[(customer, n)] for n in range(2)]) == 1
    assert most_at_once(list(spans.values())) == 2
