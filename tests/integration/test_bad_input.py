"""Bad input gets a clear error naming what was wrong, and nothing is written."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from orchestrator import (
    Orchestrator,
    PayloadError,
    UnknownRun,
    UnknownWorkflow,
    WorkflowContext,
)
from orchestrator.model.errors import ConfigurationError
from tests.integration.cluster import Cluster


def run_count(cluster: Cluster) -> int:
    return len(cluster.orc.list_runs(limit=100_000))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda orc, rid: orc.start("sequential", object(), run_id=rid),
            PayloadError,
            "arguments of workflow sequential cannot be carried as JSON",
        ),
        (
            lambda orc, rid: orc.start("sequential", float("nan"), run_id=rid),
            PayloadError,
            "cannot be carried as JSON",
        ),
        (
            lambda orc, rid: orc.start("sequential", "x" * 2_000_000, run_id=rid),
            PayloadError,
            "over the limit",
        ),
        (
            lambda orc, rid: orc.start("no-such-workflow", run_id=rid),
            UnknownWorkflow,
            "unknown workflow 'no-such-workflow'",
        ),
        (
            lambda orc, rid: orc.start("sequential", 1, version="99", run_id=rid),
            UnknownWorkflow,
            "version '99'",
        ),
        (
            lambda orc, rid: orc.start("sequential", 1, run_id="bad id; DROP TABLE runs"),
            ValueError,
            "invalid run id",
        ),
        (
            lambda orc, rid: orc.start("sequential", 1, run_id="line\nbreak"),
            ValueError,
            "invalid run id",
        ),
        (lambda orc, rid: orc.describe(rid), UnknownRun, "unknown run"),
        (lambda orc, rid: orc.result(rid, timeout=0.1), UnknownRun, "unknown run"),
        (lambda orc, rid: orc.list_runs(status="sleeping"), ValueError, "unknown status"),
    ],
    ids=[
        "object-arg",
        "nan-arg",
        "huge-arg",
        "unknown-workflow",
        "unknown-version",
        "sql-in-run-id",
        "control-char-run-id",
        "describe-unknown",
        "result-unknown",
        "bad-status",
    ],
)
def test_bad_client_input_is_refused_and_writes_nothing(
    cluster: Cluster,
    call: Callable[[Orchestrator, str], Any],
    error: type[Exception],
    message: str,
) -> None:
    run_id = f"bad-{uuid.uuid4().hex[:8]}"
    before = run_count(cluster)
    with pytest.raises(error, match=message.replace("(", r"\(")):
        call(cluster.orc, run_id)
    assert run_count(cluster) == before
    assert cluster.orc.journal.describe(run_id) is None


def test_a_pickle_configured_app_is_refused(cluster: Cluster) -> None:
    app = Celery("pickled", broker="memory://")
    app.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    orc = Orchestrator(app, journal=cluster.orc.journal)

    @orc.workflow(name="pickled-wf")
    async def wf(ctx: WorkflowContext) -> None:
        return None

    before = run_count(cluster)
    with pytest.raises(ConfigurationError, match="pickle"):
        orc.start(wf)
    assert run_count(cluster) == before


def test_a_plain_function_is_not_a_workflow(cluster: Cluster) -> None:
    def not_async(ctx: WorkflowContext) -> None:
        return None

    with pytest.raises(TypeError, match="must be an 'async def' function"):
        cluster.orc.workflow(name="sync-wf")(not_async)
