"""The durable core end to end: real Postgres, Redis, ``celery worker`` and dispatcher."""

from __future__ import annotations

import json
import signal
import time
import uuid

import pytest
import redis
import sqlalchemy as sa

from orchestrator import EventType, RunStatus, WorkflowFailed
from orchestrator.journal.sql import schema
from orchestrator.journal.sql.rows import outbox_task
from tests.integration.cluster import BROKER, Cluster, wait_for
from tests.invariants import check_history


def types(cluster: Cluster, run_id: str) -> list[tuple[str, int | None, int | None]]:
    return [(e.type.value, e.command_id, e.attempt) for e in cluster.orc.history(run_id)]


def finished(cluster: Cluster, run_id: str) -> None:
    check_history(cluster.orc.history(run_id))


def test_ten_sequential_activities(cluster: Cluster) -> None:
    handle = cluster.orc.start("sequential", 10)
    assert handle.result(timeout=30) == sum(range(10))
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    scheduled = [e for e in history if e.type is EventType.ACTIVITY_SCHEDULED]
    completed = [e for e in history if e.type is EventType.ACTIVITY_COMPLETED]
    assert [e.command_id for e in scheduled] == list(range(1, 11))
    assert [e.data["result"] for e in completed] == [sum(range(i + 1)) for i in range(10)]
    assert history[-1].type is EventType.RUN_COMPLETED
    assert cluster.orc.describe(handle.run_id).status is RunStatus.COMPLETED


def test_gather_of_fifty(cluster: Cluster) -> None:
    handle = cluster.orc.start("fanout", 50)
    assert handle.result(timeout=30) == [2 * i for i in range(50)]
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    assert sum(e.type is EventType.ACTIVITY_SCHEDULED for e in history) == 50
    assert sum(e.type is EventType.ACTIVITY_COMPLETED for e in history) == 50


def test_retry_succeeds_on_third_attempt(cluster: Cluster) -> None:
    key = f"flaky-{uuid.uuid4().hex[:6]}"
    handle = cluster.orc.start("retrying", key, 2)
    assert handle.result(timeout=30) == f"{key} ok after 3"
    history = cluster.orc.history(handle.run_id)
    check_history(history)
    attempts = [(e.type, e.attempt) for e in history if e.command_id == 1]
    assert attempts == [
        (EventType.ACTIVITY_SCHEDULED, 1),
        (EventType.ACTIVITY_FAILED, 1),
        (EventType.ACTIVITY_SCHEDULED, 2),
        (EventType.ACTIVITY_FAILED, 2),
        (EventType.ACTIVITY_SCHEDULED, 3),
        (EventType.ACTIVITY_COMPLETED, 3),
    ]
    failure = next(e for e in history if e.type is EventType.ACTIVITY_FAILED)
    assert failure.data["error"]["type"] == "RuntimeError"
    assert "failure 1 of 2" in failure.data["error"]["message"]
    assert "Traceback" in failure.data["error"]["traceback"]
    assert cluster.executions(key) == 3


def test_durable_sleep(cluster: Cluster) -> None:
    began = time.monotonic()
    handle = cluster.orc.start("sleeper", 1.0)
    assert handle.result(timeout=30) >= 1.0
    assert time.monotonic() - began >= 1.0
    kinds = [t for t, _, _ in types(cluster, handle.run_id)]
    assert kinds == ["run_started", "timer_started", "timer_fired", "run_completed"]


def test_failing_workflow_reports_the_remote_error(cluster: Cluster) -> None:
    handle = cluster.orc.start("failing")
    with pytest.raises(WorkflowFailed) as caught:
        handle.result(timeout=30)
    assert caught.value.error_type == "ValueError"
    assert caught.value.remote_message == "the order is invalid"
    assert "failing" in (caught.value.remote_traceback or "")
    info = cluster.orc.describe(handle.run_id)
    assert info.status is RunStatus.FAILED
    finished(cluster, handle.run_id)


def test_start_is_idempotent(cluster: Cluster) -> None:
    run_id = f"idem-{uuid.uuid4().hex[:8]}"
    first = cluster.orc.start("sequential", 3, run_id=run_id)
    second = cluster.orc.start("sequential", 3, run_id=run_id)
    assert first.run_id == second.run_id == run_id
    assert first.result(timeout=30) == 3
    third = cluster.orc.start("sequential", 3, run_id=run_id)
    assert third.result(timeout=5) == 3
    history = cluster.orc.history(run_id)
    check_history(history)
    assert sum(e.type is EventType.RUN_STARTED for e in history) == 1
    assert sum(e.type is EventType.ACTIVITY_SCHEDULED for e in history) == 3


def first_activity(
    cluster: Cluster, run_id: str, result: str
) -> list[tuple[EventType, int | None]]:
    """Once the run returned ``result``: the events and attempts of its first activity."""
    assert cluster.orc.result(run_id, timeout=60) == result
    history = cluster.orc.history(run_id)
    check_history(history)
    return [(e.type, e.attempt) for e in history if e.command_id == 1]


def test_worker_killed_mid_activity_is_retried_after_timeout(cluster: Cluster) -> None:
    key = f"slow-{uuid.uuid4().hex[:6]}"
    handle = cluster.orc.start("killable", key, 3.0)
    wait_for(lambda: cluster.executions(key) == 1, 30, "the activity to start")
    # The start of an activity with a timeout is recorded before its body runs.
    task_id = f"{handle.run_id}:1:1"
    wait_for(lambda: cluster.started(task_id), 10, "the start to be journaled")
    cluster.kill(cluster.workers["w1"], signal.SIGKILL)
    cluster.start_worker("w1")
    assert first_activity(cluster, handle.run_id, f"{key} done") == [
        (EventType.ACTIVITY_SCHEDULED, 1),
        (EventType.ACTIVITY_TIMED_OUT, 1),
        (EventType.ACTIVITY_SCHEDULED, 2),
        (EventType.ACTIVITY_COMPLETED, 2),
    ]
    assert cluster.executions(key) == 2


def test_a_worker_killed_before_recording_the_start_leaves_the_attempt_republished(
    cluster: Cluster,
) -> None:
    # The start of an activity with no timeout is recorded late: with this long delay, when
    # the dispatcher's re-publish window is half gone (5 s here).
    cluster.kill(cluster.workers["w1"], signal.SIGTERM)
    cluster.start_worker("w1", CONTINUUM_TEST_MARK_START_AFTER="60")
    key = f"slow-{uuid.uuid4().hex[:6]}"
    try:
        handle = cluster.orc.start("unbounded", key, 3.0)
        wait_for(lambda: cluster.executions(key) == 1, 30, "the activity to start")
        assert not cluster.started(f"{handle.run_id}:1:1")
    finally:
        cluster.kill(cluster.workers["w1"], signal.SIGKILL)
        cluster.start_worker("w1")
    # Nothing says the attempt started: the dispatcher takes its message for lost and
    # publishes it again, and the same attempt runs to the end.
    assert first_activity(cluster, handle.run_id, f"{key} done") == [
        (EventType.ACTIVITY_SCHEDULED, 1),
        (EventType.ACTIVITY_COMPLETED, 1),
    ]
    assert cluster.executions(key) == 2


def copy_taken(cluster: Cluster, task_id: str, attempt: str, key: str) -> None:
    """Wait until w1 took a second copy of ``task_id``: skipped, its attempt being
    ``attempt``, or run (a second execution under ``key``)."""
    skipped = f"task {task_id} skipped: its attempt is {attempt}".encode()
    wait_for(
        lambda: skipped in (cluster.workdir / "w1.log").read_bytes() or cluster.executions(key) > 1,
        30,
        "the copy to be taken",
    )


def test_a_resent_copy_of_an_attempt_started_late_is_skipped(cluster: Cluster) -> None:
    key = f"slow-{uuid.uuid4().hex[:6]}"
    handle = cluster.orc.start("unbounded", key, 3.0)
    task_id = f"{handle.run_id}:1:1"
    wait_for(lambda: cluster.executions(key) == 1, 30, "the activity to start")
    wait_for(lambda: cluster.started(task_id), 10, "the start to be recorded, a moment later")
    # The dispatcher's copy of a message it took for lost, taken by the worker's other
    # process while the first still runs the attempt.
    with cluster.orc.journal.engine.connect() as conn:
        row = conn.execute(sa.select(schema.tasks).where(schema.tasks.c.task_id == task_id)).one()
    cluster.orc.publisher.publish_tasks([outbox_task(row, resent=True)])
    copy_taken(cluster, task_id, "running", key)
    assert first_activity(cluster, handle.run_id, f"{key} done") == [
        (EventType.ACTIVITY_SCHEDULED, 1),
        (EventType.ACTIVITY_COMPLETED, 1),
    ]
    assert cluster.executions(key) == 1


def unacknowledged(cluster: Cluster, task_id: str) -> str | None:
    """The delivery tag of the task's message if a worker took it and has not acknowledged it."""
    broker = redis.Redis.from_url(BROKER)
    try:
        for tag, entry in broker.hgetall("unacked").items():
            if json.loads(entry)[0]["headers"]["id"] == task_id:
                return tag.decode()
    finally:
        broker.close()
    return None


def test_a_redelivered_copy_of_an_ended_attempt_does_not_run(cluster: Cluster) -> None:
    # The worker journals the outcome, then dies before acknowledging the message (acks_late).
    cluster.kill(cluster.workers["w1"], signal.SIGTERM)
    cluster.start_worker("w1", CONTINUUM_FAULTS="driver.after_commit=sleep:60")
    key = f"late-{uuid.uuid4().hex[:6]}"
    try:
        handle = cluster.orc.start("acking_late", key)
        task_id = f"{handle.run_id}:1:1"
        assert handle.result(timeout=30) == f"{key} done"
        tag = wait_for(lambda: unacknowledged(cluster, task_id), 10, "the message held unacked")
        cluster.kill(cluster.workers["w1"], signal.SIGKILL)
        history = cluster.orc.history(handle.run_id)
        # What the broker does once the visibility timeout has passed: the message goes back
        # to its queue, marked redelivered.
        with cluster.module.app.connection_for_write() as conn:
            conn.default_channel.qos.restore_by_tag(tag, leftmost=True)
    finally:
        cluster.kill(cluster.workers["w1"], signal.SIGKILL)
        cluster.start_worker("w1")
    copy_taken(cluster, task_id, "ended", key)
    assert cluster.executions(key) == 1
    assert cluster.orc.history(handle.run_id) == history
    wait_for(lambda: unacknowledged(cluster, task_id) is None, 30, "the copy to be acknowledged")


def test_dispatcher_killed_and_restarted_mid_run(cluster: Cluster) -> None:
    handle = cluster.orc.start("sleeper", 1.5)
    wait_for(lambda: ("timer_started", 1, None) in types(cluster, handle.run_id), 30, "the timer")
    cluster.kill(cluster.dispatchers["d1"], signal.SIGKILL)
    # Only a dispatcher fires timers: with none running, the run must still be waiting.
    time.sleep(2.0)
    assert cluster.orc.describe(handle.run_id).status is RunStatus.SUSPENDED
    cluster.start_dispatcher("d1")
    assert handle.result(timeout=30) >= 1.5
    finished(cluster, handle.run_id)


def test_nondeterministic_change_blocks_the_run_until_fixed(cluster: Cluster) -> None:
    handle = cluster.orc.start("changing", 2.0)
    wait_for(lambda: ("timer_started", 2, None) in types(cluster, handle.run_id), 30, "the timer")
    before = cluster.orc.history(handle.run_id)
    cluster.kill(cluster.workers["w1"], signal.SIGTERM)
    cluster.start_worker("w1", CONTINUUM_TEST_VARIANT="changed")
    try:
        info = wait_for(
            lambda: (i := cluster.orc.describe(handle.run_id)).status is RunStatus.BLOCKED and i,
            30,
            "the run to be blocked",
        )
        assert "nondeterminism" in (info.reason or "")
        assert "add" in (info.reason or "") and "noop" in (info.reason or "")
        assert cluster.orc.history(handle.run_id) == before
    finally:
        cluster.kill(cluster.workers["w1"], signal.SIGTERM)
        cluster.start_worker("w1")
    # The right code is back: the blocked run is retried and completes.
    assert handle.result(timeout=60) == "done"
    finished(cluster, handle.run_id)
