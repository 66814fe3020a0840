"""Forged or malformed messages are dropped with a log line: nothing written, no worker crash."""

from __future__ import annotations

import uuid

import pytest

from orchestrator import RunStatus
from orchestrator.celery import headers
from orchestrator.celery.publisher import REPLAY_TASK
from tests.integration.cluster import Cluster, wait_for


def log_has(cluster: Cluster, text: str) -> bool:
    return text in (cluster.workdir / "w1.log").read_text(errors="replace")


def test_forged_messages_change_nothing(cluster: Cluster) -> None:
    app, orc = cluster.module.app, cluster.orc
    waiting = orc.start("approval", 600)
    wait_for(
        lambda: orc.describe(waiting.run_id).status is RunStatus.SUSPENDED, 30, "the run to wait"
    )
    before = orc.history(waiting.run_id)
    queue = orc.settings.replay_queue("approval", "1")

    # A replay request for a run that does not exist, and one whose argument is not a run id.
    app.send_task(REPLAY_TASK, args=["no-such-run"], queue=queue)
    app.send_task(REPLAY_TASK, args=[{"run": "x'; DROP TABLE runs; --"}], queue=queue)

    def forged_outcome(run_id: str, command: int, attempt: int, task_id: str) -> None:
        app.send_task(
            "tests.integration.wfapp.add",
            args=[1, 2],
            task_id=task_id,
            headers={
                headers.RUN: run_id,
                headers.COMMAND: command,
                headers.ATTEMPT: attempt,
                headers.KIND: "activity",
            },
        )

    run_id = waiting.run_id
    forged_outcome(run_id, 1, 7, f"{run_id}:1:7")  # an attempt never scheduled
    forged_outcome(run_id, 1, 1, "chosen-by-the-sender")  # id not matching its headers
    forged_outcome("no-such-run", 1, 1, "no-such-run:1:1")
    forged_outcome(run_id, "one", 1, f"{run_id}:one:1")  # malformed header

    wait_for(lambda: log_has(cluster, "malformed run id"), 30, "the malformed replay logged")
    wait_for(lambda: log_has(cluster, "does not match its orchestrator headers"), 30, "id check")
    wait_for(lambda: log_has(cluster, "malformed orchestrator headers"), 30, "header check")
    # The worker is still healthy and the waiting run is untouched.
    assert orc.start("sequential", 2).result(timeout=30) == 1
    assert orc.history(run_id) == before
    assert orc.describe(run_id).status is RunStatus.SUSPENDED
    assert orc.journal.describe("no-such-run") is None
    orc.cancel(run_id)


@pytest.mark.parametrize("name", ["x'; DROP TABLE runs; --", "名前", "a" * 200])
def test_signal_names_are_data_not_code(cluster: Cluster, name: str) -> None:
    run_id = f"sig-{uuid.uuid4().hex[:8]}"
    handle = cluster.orc.start("approval", 0.5, run_id=run_id)
    cluster.orc.signal(handle.run_id, name, {"note": "kept verbatim"})
    handle.result(timeout=30)
    [received] = [e for e in cluster.orc.history(run_id) if e.type.value == "signal_received"]
    assert received.data == {"name": name, "payload": {"note": "kept verbatim"}}


@pytest.mark.parametrize("name", ["", "line\nbreak", "tab\there", "a" * 201, 7])
def test_malformed_signal_names_are_refused(cluster: Cluster, name: object) -> None:
    handle = cluster.orc.start("approval", 0.2)
    with pytest.raises(ValueError, match="invalid signal name"):
        cluster.orc.signal(handle.run_id, name, None)  # type: ignore[arg-type]
    handle.result(timeout=30)
    assert all(e.type.value != "signal_received" for e in cluster.orc.history(handle.run_id))
