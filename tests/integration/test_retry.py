"""Retry of a failed run, with real workers: fail, fix, retry, count executions."""

from __future__ import annotations

import uuid

import pytest

from orchestrator import EventType, NotRetryable, RunStatus, WorkflowFailed
from tests.integration.cluster import Cluster
from tests.integration.test_cli import cli
from tests.invariants import check_history


def failed_run(cluster: Cluster) -> tuple[str, str]:
    key = f"retry-{uuid.uuid4().hex[:8]}"
    handle = cluster.orc.start("fix_then_retry", key)
    with pytest.raises(WorkflowFailed, match="not fixed yet"):
        handle.result(timeout=30)
    assert cluster.executions(f"{key}-first") == 1
    assert cluster.executions(f"{key}-second") == 1
    return key, handle.run_id


def test_a_fixed_run_is_retried_from_its_failure(cluster: Cluster) -> None:
    key, run_id = failed_run(cluster)
    (cluster.effects / f"{key}-second.fixed").touch()  # the fix is deployed

    retry = cluster.orc.retry(run_id)

    expected = [f"{key}-first ok after 1", f"{key}-second fixed"]
    assert retry.result(timeout=30) == expected
    # The first activity ran once in all; the failed one ran again and succeeded.
    assert cluster.executions(f"{key}-first") == 1
    assert cluster.executions(f"{key}-second") == 2
    # The original's id reaches the retry; the original itself stays failed in the record.
    assert cluster.orc.result(run_id, timeout=5) == expected
    info = cluster.orc.describe(run_id)
    assert (info.run_id, info.status, info.retried_from_run_id) == (
        retry.run_id,
        RunStatus.COMPLETED,
        run_id,
    )
    original = cluster.orc.journal.describe(run_id)
    assert original is not None
    assert (original.status, original.retried_to_run_id) == (RunStatus.FAILED, retry.run_id)
    history = cluster.orc.history(run_id)
    check_history(history)
    completed = [e for e in history if e.type is EventType.ACTIVITY_COMPLETED]
    assert [(e.command_id, e.attempt) for e in completed] == [(1, 1), (2, 1)]
    assert EventType.ACTIVITY_FAILED not in {e.type for e in history}


def test_the_cli_retries_a_failed_run_and_refuses_any_other(cluster: Cluster) -> None:
    key, run_id = failed_run(cluster)
    (cluster.effects / f"{key}-second.fixed").touch()

    retried = cli(cluster, "runs", "retry", run_id)

    assert retried.returncode == 0, retried.stderr
    retry_id = retried.stdout.strip()
    assert cluster.orc.result(retry_id, timeout=30)[1] == f"{key}-second fixed"
    again = cli(cluster, "runs", "retry", run_id)  # its tip, the retry, completed
    assert again.returncode == 1
    assert f"run {retry_id} cannot be retried: it is completed" in again.stderr
    assert "Traceback" not in again.stderr
    unknown = cli(cluster, "runs", "retry", "no-such-run")
    assert unknown.returncode == 1 and "unknown run 'no-such-run'" in unknown.stderr
    with pytest.raises(NotRetryable):
        cluster.orc.retry(run_id)
    assert cluster.executions(f"{key}-second") == 2
