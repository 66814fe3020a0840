"""Queries, signal-with-start, execution timeouts and heartbeat timeouts on real processes:
Postgres, Redis, a ``celery worker`` and a ``continuum dispatcher``."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator import (
    EventType,
    NotPublished,
    RunStatus,
    UnknownRun,
    WorkflowFailed,
    WorkflowTimeout,
)
from orchestrator.model.deadlines import HEARTBEAT_TIMEOUT, WORKFLOW_TIMEOUT
from tests.integration.cluster import Cluster, wait_for
from tests.integration.test_cli import cli
from tests.invariants import check_history


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- queries -------------------------------------------------------------------------------
def test_a_query_follows_the_values_a_run_publishes(cluster: Cluster) -> None:
    orc = cluster.orc
    run_id = orc.start("publishing", 3).run_id
    assert orc.query(run_id, "progress", timeout=30) is not None
    wait_for(lambda: orc.query(run_id, "progress") == "waiting", 30, "the run to wait for go")

    queried = cli(cluster, "query", run_id, "progress")
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout) == "waiting"

    orc.signal(run_id, "go")
    assert orc.result(run_id, timeout=30) == 3
    assert orc.query(run_id, "progress") == "done"
    history = orc.history(run_id)
    check_history(history)
    values = [e.data["value"] for e in history if e.type is EventType.VALUE_PUBLISHED]
    assert values == [{"done": i, "of": 3} for i in range(3)] + ["waiting", "done"]


def test_query_bad_input_is_a_clear_error(cluster: Cluster) -> None:
    orc = cluster.orc
    with pytest.raises(UnknownRun, match="no-such-run"):
        orc.query("no-such-run", "progress")
    unknown = cli(cluster, "query", "no-such-run", "progress")
    assert unknown.returncode == 1
    assert "unknown run 'no-such-run'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    run_id = orc.start("publishing", 1).run_id
    began = time.monotonic()
    with pytest.raises(NotPublished, match="eta"):
        orc.query(run_id, "eta", timeout=0.5)
    assert time.monotonic() - began >= 0.5
    missing = cli(cluster, "query", run_id, "eta")
    assert missing.returncode == 1 and "no value under 'eta'" in missing.stderr


def test_publishing_a_value_json_cannot_carry_fails_the_run(cluster: Cluster) -> None:
    run_id = cluster.orc.start("publishing_badly").run_id
    with pytest.raises(WorkflowFailed) as caught:
        cluster.orc.result(run_id, timeout=30)
    assert caught.value.error_type == "orchestrator.errors.PayloadError"
    assert "value published under 'state'" in caught.value.remote_message
    assert not [e for e in cluster.orc.history(run_id) if e.type is EventType.VALUE_PUBLISHED]


# -- signal-with-start ---------------------------------------------------------------------
def test_racing_signal_with_starts_make_one_run_that_receives_every_signal(
    cluster: Cluster,
) -> None:
    orc = cluster.orc
    run_id, threads = unique("sws"), 8
    barrier = threading.Barrier(threads)

    def call(i: int) -> str:
        barrier.wait(timeout=10)
        handle = orc.signal_with_start(
            "collector", threads, run_id=run_id, signal="item", payload=i
        )
        return handle.run_id

    with ThreadPoolExecutor(threads) as pool:
        handles = list(pool.map(call, range(threads)))

    assert handles == [run_id] * threads
    assert sorted(orc.result(run_id, timeout=30)) == list(range(threads))
    history = orc.history(run_id)
    check_history(history)
    assert sum(e.type is EventType.RUN_STARTED for e in history) == 1
    assert sum(e.type is EventType.SIGNAL_RECEIVED for e in history) == threads
    assert orc.list_runs(workflow="collector", limit=1000).count(orc.describe(run_id)) == 1


def test_signal_with_start_bad_input_writes_nothing(cluster: Cluster) -> None:
    orc = cluster.orc
    run_id = unique("sws-bad")
    with pytest.raises(TypeError, match="JSON"):
        orc.signal_with_start("collector", 1, run_id=run_id, signal="item", payload=object())
    with pytest.raises(ValueError, match="signal name"):
        orc.signal_with_start("collector", 1, run_id=run_id, signal="")
    with pytest.raises(ValueError, match="timeout"):
        orc.signal_with_start("collector", 1, run_id=run_id, signal="item", timeout=0)
    with pytest.raises(UnknownRun):
        orc.describe(run_id)


# -- execution timeouts --------------------------------------------------------------------
def test_a_run_still_open_at_its_timeout_fails_and_its_child_is_cancelled(
    cluster: Cluster,
) -> None:
    orc = cluster.orc
    began = time.monotonic()
    run_id = orc.start("sleepy_parent", 600, timeout=1.5).run_id
    with pytest.raises(WorkflowTimeout) as caught:
        orc.result(run_id, timeout=30)
    assert time.monotonic() - began >= 1.5
    assert isinstance(caught.value, WorkflowFailed)
    assert caught.value.error_type == WORKFLOW_TIMEOUT
    assert "within 1.5 seconds" in caught.value.remote_message
    info = orc.describe(run_id)
    assert info.status is RunStatus.FAILED
    kinds = [e.type for e in orc.history(run_id)]
    assert kinds[-2:] == [EventType.RUN_TIMED_OUT, EventType.RUN_FAILED]

    child = f"{run_id}-child"
    wait_for(
        lambda: orc.describe(child).status is RunStatus.CANCELLED, 30, "the child to be cancelled"
    )


def test_an_execution_timeout_spans_continue_as_new(cluster: Cluster) -> None:
    orc = cluster.orc
    run_id = orc.start("forever", 0, timeout=2).run_id
    with pytest.raises(WorkflowTimeout):
        orc.result(run_id, timeout=30)
    first = orc.journal.describe(run_id)
    assert first is not None and first.status is RunStatus.CONTINUED
    tip = orc.describe(run_id)
    assert tip.run_id != run_id and tip.status is RunStatus.FAILED
    assert tip.error is not None and tip.error["type"] == WORKFLOW_TIMEOUT


@pytest.mark.parametrize("timeout", [0, -3])
def test_a_timeout_that_is_not_positive_starts_nothing(cluster: Cluster, timeout: float) -> None:
    run_id = unique("bad-timeout")
    with pytest.raises(ValueError, match="timeout must be a positive"):
        cluster.orc.start("sleeper", 1, run_id=run_id, timeout=timeout)
    with pytest.raises(UnknownRun):
        cluster.orc.describe(run_id)


# -- heartbeats ----------------------------------------------------------------------------
def test_an_attempt_that_stops_heartbeating_is_retried_and_resumes_from_its_details(
    cluster: Cluster,
) -> None:
    orc = cluster.orc
    key = unique("beat")
    run_id = orc.start("beating", key, 5.0).run_id
    assert orc.result(run_id, timeout=60) == {"attempt": 2, "resumed_from": {"done": 5}}

    history = orc.history(run_id)
    check_history(history)
    attempts = [(e.type, e.attempt) for e in history if e.command_id == 1]
    assert attempts == [
        (EventType.ACTIVITY_SCHEDULED, 1),
        (EventType.ACTIVITY_TIMED_OUT, 1),
        (EventType.ACTIVITY_SCHEDULED, 2),
        (EventType.ACTIVITY_COMPLETED, 2),
    ]
    timed_out = next(e for e in history if e.type is EventType.ACTIVITY_TIMED_OUT)
    assert timed_out.data["error"]["type"] == HEARTBEAT_TIMEOUT
    assert cluster.executions(key) == 2
    # The silent first attempt learns at its next heartbeat that it was superseded.
    wait_for(lambda: cluster.executions(f"{key}-cancelled") == 1, 30, "the old attempt to stop")
