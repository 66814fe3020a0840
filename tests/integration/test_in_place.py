"""Activities run in place (``orchestrator_eager_activities``) by a real worker."""

from __future__ import annotations

import time
import uuid

from orchestrator import EventType
from tests.integration.cluster import Cluster, wait_for
from tests.invariants import check_history


def runs(cluster: Cluster, key: str) -> list[tuple[str, str, float]]:
    """Each execution of ``placed``: the worker, how it ran, when."""
    out = []
    path = cluster.effects / key
    for line in path.read_text().splitlines() if path.exists() else []:
        node, *how, at = line.split()
        out.append((node, " ".join(how), float(at)))
    return out


def test_a_worker_runs_the_next_activities_in_place_up_to_its_limit(
    cluster: Cluster, queue: str
) -> None:
    key = f"in-place-{uuid.uuid4().hex[:8]}"
    handle = cluster.orc.start("placed", key, [queue] * 6)
    expected = ["message", "in place", "in place", "in place", "message", "in place"]
    assert handle.result(timeout=30) == expected
    assert [(node, how) for node, how, _ in runs(cluster, key)] == [
        ("eager", how) for how in expected
    ]
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    assert [e.attempt for e in history if e.type is EventType.ACTIVITY_COMPLETED] == [1] * 6


def test_an_activity_routed_to_another_worker_is_published(cluster: Cluster, queue: str) -> None:
    key = f"routed-{uuid.uuid4().hex[:8]}"
    handle = cluster.orc.start("placed", key, [queue, None, queue, queue])
    assert handle.result(timeout=30) == ["message", "message", "message", "in place"]
    assert [node for node, _, _ in runs(cluster, key)] == ["eager", "w1", "eager", "eager"]


def test_a_retry_asked_in_place_is_sent_through_the_broker_after_its_countdown(
    cluster: Cluster, queue: str
) -> None:
    key = f"retried-{uuid.uuid4().hex[:8]}"
    handle = cluster.orc.start("placed", key, [queue, queue], 1.0)
    assert handle.result(timeout=30) == ["message", "message"]
    executions = runs(cluster, key)
    assert [how for _, how, _ in executions] == ["message", "message", "in place", "message"]
    assert executions[3][2] - executions[2][2] >= 1.0
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    assert [e.attempt for e in history if e.type is EventType.ACTIVITY_COMPLETED] == [1, 1]


def test_an_activity_run_in_place_and_acked_late_is_not_republished_while_it_runs(
    cluster: Cluster, queue: str
) -> None:
    """Its start is never recorded: renewals keep the dispatcher from taking it for lost."""
    key = f"renewed-{uuid.uuid4().hex[:8]}"
    republish_after = cluster.orc.settings.republish_after
    handle = cluster.orc.start("placed", key, [queue, queue], 0.0, republish_after + 2, True)
    assert handle.result(timeout=republish_after + 20) == ["message", "in place"]
    assert [how for _, how, _ in runs(cluster, key)] == ["message", "in place"]
    assert not cluster.started(f"{handle.run_id}:2:1")  # renewed, not marked late


def test_a_worker_killed_in_an_activity_run_in_place_and_acked_late_leaves_it_republished(
    cluster: Cluster, queue: str
) -> None:
    """No message of it exists for the broker to redeliver: the dispatcher re-publishes
    the same attempt once the dead worker no longer renews it."""
    key = f"killed-{uuid.uuid4().hex[:8]}"
    handle = cluster.orc.start("placed", key, [queue, queue], 0.0, 4.0, True)
    wait_for(lambda: len(runs(cluster, key)) == 2, 15, "the second activity run in place")
    time.sleep(2 * cluster.orc.settings.mark_start_after)  # past when a start mark is due
    cluster.kill(cluster.workers["eager"])
    cluster.start_worker("eager", concurrency=1, queues=queue, CONTINUUM_TEST_EAGER_ACTIVITIES="3")
    assert handle.result(timeout=cluster.orc.settings.republish_after + 30) == [
        "message",
        "message",
    ]
    assert [how for _, how, _ in runs(cluster, key)] == ["message", "in place", "message"]
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    assert [e.attempt for e in history if e.type is EventType.ACTIVITY_COMPLETED] == [1, 1]
