"""Signals, cancellation, child workflows, continue-as-new chains and sagas, end to end."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from orchestrator import Cancelled, EventType, RunClosed, RunStatus, UnknownWorkflow
from orchestrator.model.records import NewRun
from tests.integration.cluster import Cluster, wait_for
from tests.invariants import check_history


def waiting_for(cluster: Cluster, run_id: str, what: str) -> bool:
    info = cluster.orc.describe(run_id)
    return info.status is RunStatus.SUSPENDED and what in (info.reason or "")


def test_signals_sent_early_are_kept_in_order_and_a_timeout_returns_none(
    cluster: Cluster,
) -> None:
    early = cluster.orc.start("approval", 30)
    cluster.orc.signal(early.run_id, "approve", {"by": "ann"})
    cluster.orc.signal(early.run_id, "approve", {"by": "bob"})
    assert early.result(timeout=30) == [{"by": "ann"}, {"by": "bob"}]
    check_history(cluster.orc.history(early.run_id))

    late = cluster.orc.start("approval", 0.5)
    assert late.result(timeout=30) == [None, None]
    kinds = [e.type for e in cluster.orc.history(late.run_id)]
    assert kinds.count(EventType.TIMER_FIRED) == 2
    with pytest.raises(RunClosed, match="has already ended"):
        cluster.orc.signal(late.run_id, "approve", 1)
    assert EventType.SIGNAL_RECEIVED not in [e.type for e in cluster.orc.history(late.run_id)]


def test_continue_as_new_chain_reaches_the_tip(cluster: Cluster) -> None:
    handle = cluster.orc.start("counter", 3, 0)
    assert handle.result(timeout=30) == 3 + 2 + 1 + 0
    tip = cluster.orc.describe(handle.run_id)
    assert tip.run_id != handle.run_id
    assert tip.status is RunStatus.COMPLETED
    assert tip.correlation_id == handle.run_id
    chain = [tip]
    while chain[-1].continued_from_run_id:
        chain.append(cluster.orc.journal.describe(chain[-1].continued_from_run_id))
    assert [r.run_id for r in chain][-1] == handle.run_id
    assert len(chain) == 4
    for run in chain:
        history = cluster.orc.journal.history(run.run_id)
        check_history(history)
        if run.continued_to_run_id:
            successor = cluster.orc.journal.describe(run.continued_to_run_id)
            assert successor.continued_from_run_id == run.run_id
            assert history[-1].type is EventType.RUN_CONTINUED


def test_a_long_chain_resolves_its_tip_in_one_lookup(cluster: Cluster) -> None:
    handle = cluster.orc.start("ticker", 300)
    assert handle.result(timeout=120) == 0
    began = time.perf_counter()
    for _ in range(20):
        tip = cluster.orc.describe(handle.run_id)
    per_lookup = (time.perf_counter() - began) / 20
    assert tip.status is RunStatus.COMPLETED
    assert cluster.orc.journal.describe(handle.run_id).status is RunStatus.CONTINUED
    # One indexed lookup, not 300 row hops: generous bound, to catch a walk along the chain.
    assert per_lookup < 0.05


def test_parent_waits_for_a_signal_to_its_root_then_gathers_three_children(
    cluster: Cluster,
) -> None:
    handle = cluster.orc.start("parent")
    wait_for(lambda: waiting_for(cluster, handle.run_id, "signal 'go'"), 30, "the signal wait")
    cluster.orc.signal(handle.run_id, "go", "now")
    assert handle.result(timeout=60) == {"go": "now", "results": [3, 3, [0, 2, 4, 6]]}
    tip = cluster.orc.describe(handle.run_id)
    assert tip.continued_from_run_id == handle.run_id
    history = cluster.orc.history(handle.run_id)
    assert history[0].run_id == tip.run_id
    check_history(history)
    started = [e for e in history if e.type is EventType.CHILD_STARTED]
    completed = [e for e in history if e.type is EventType.CHILD_COMPLETED]
    assert len(started) == len(completed) == 3
    for event in started:
        child = cluster.orc.journal.describe(event.data["child_run_id"])
        assert child.parent_run_id == tip.run_id
        assert child.parent_command_id == event.command_id
    # The counter child continued twice; its chain's tip is still the parent's child.
    counter = started[1].data["child_run_id"]
    counter_tip = cluster.orc.describe(counter)
    assert counter_tip.run_id != counter and counter_tip.parent_run_id == tip.run_id


def test_a_failed_child_raises_child_failed_in_the_parent(cluster: Cluster) -> None:
    handle = cluster.orc.start("failing_child")
    assert handle.result(timeout=30) == "ChildFailed: the order is invalid"


def test_saga_compensates_in_reverse_order_exactly_once(cluster: Cluster) -> None:
    key = f"saga-{uuid.uuid4().hex[:6]}"
    handle = cluster.orc.start("saga", key, 2)
    with pytest.raises(Exception, match="ship failed"):
        handle.result(timeout=60)
    order = (cluster.effects / f"{key}.order").read_text().split()
    assert order == ["reserve", "charge", "ship", "undo-charge", "undo-reserve"]
    assert cluster.executions(f"{key}-undo-charge") == 1
    assert cluster.executions(f"{key}-undo-reserve") == 1
    assert cluster.executions(f"{key}-undo-ship") == 0
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    compensations = [e for e in history if e.type is EventType.COMPENSATION_SCHEDULED]
    assert [e.data["task"].rsplit(".", 1)[-1] for e in compensations] == ["undo", "undo"]
    assert [e.data["args"][1] for e in compensations] == ["charge", "reserve"]
    assert [e.data["target_activity_id"] for e in compensations] == [2, 1]
    assert sum(e.type is EventType.COMPENSATION_COMPLETED for e in history) == 2


def test_cancelling_a_parent_cancels_its_child_and_runs_compensations(
    cluster: Cluster,
) -> None:
    key = f"cancel-{uuid.uuid4().hex[:6]}"
    handle = cluster.orc.start("cancellable", key)
    wait_for(lambda: waiting_for(cluster, handle.run_id, "gather"), 30, "the gather")
    cluster.orc.cancel(handle.run_id, "customer changed their mind")
    with pytest.raises(Cancelled):
        handle.result(timeout=60)
    info = cluster.orc.describe(handle.run_id)
    assert info.status is RunStatus.CANCELLED
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    child_id = next(e for e in history if e.type is EventType.CHILD_STARTED).data["child_run_id"]
    child = wait_for(
        lambda: (c := cluster.orc.describe(child_id)).status.terminal and c, 30, "the child"
    )
    assert child.status is RunStatus.CANCELLED
    check_history(cluster.orc.history(child_id))
    assert cluster.executions(f"{key}-undo-reserve") == 1
    with pytest.raises(RunClosed):
        cluster.orc.cancel(handle.run_id)


def test_each_run_is_replayed_only_where_its_version_is_loaded(cluster: Cluster) -> None:
    cluster.start_worker("w2", CONTINUUM_TEST_VERSIONS="2")
    try:
        wait_for(
            lambda: ("versioned", "2") in cluster.orc.journal.live_versions(node_ttl=3),
            30,
            "w2 to register version 2",
        )
        old = [cluster.orc.start("versioned") for _ in range(4)]
        new = [cluster.orc.start("versioned", version="2") for _ in range(4)]
        assert [h.result(timeout=60) for h in old] == [{"version": "1", "node": "w1"}] * 4
        assert [h.result(timeout=60) for h in new] == [{"version": "2", "node": "w2"}] * 4
        for handle in old + new:
            check_history(cluster.orc.history(handle.run_id))
    finally:
        cluster.kill(cluster.workers.pop("w2"), signal.SIGTERM)

    # No node has version 2 now: starting it is refused, and a run of it waits, visibly.
    with pytest.raises(UnknownWorkflow, match="version '2'"):
        cluster.orc.start("versioned", version="2")
    waiting = f"wait-{uuid.uuid4().hex[:8]}"
    cluster.orc.journal.create_run(
        NewRun(run_id=waiting, workflow="versioned", version="2", args=[])
    )
    info = wait_for(
        lambda: (i := cluster.orc.describe(waiting)).reason and i, 10, "a visible reason"
    )
    assert info.reason == "waiting for a node with workflow 'versioned' version '2'"
    cluster.start_worker("w2", CONTINUUM_TEST_VERSIONS="1,2")
    try:
        assert cluster.orc.result(waiting, timeout=60) == {"version": "2", "node": "w2"}
    finally:
        cluster.kill(cluster.workers.pop("w2"), signal.SIGTERM)
