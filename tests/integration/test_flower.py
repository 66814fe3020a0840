"""Flower shows a run's activities under their own task names, and its replays by workflow."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.cluster import APP, BIN, ROOT, Cluster, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


AUTH = "tester:not-a-secret"


def get(url: str) -> Any:
    token = base64.b64encode(AUTH.encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


@pytest.fixture
def flower(cluster: Cluster) -> Iterator[str]:
    port = free_port()
    log = (cluster.workdir / "flower.log").open("ab")
    proc = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            APP,
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--basic-auth={AUTH}",
        ],
        cwd=ROOT,
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/api/workers?refresh=1"), 30, "Flower to see the worker")
        yield base
    finally:
        cluster.kill(proc)


def test_flower_lists_a_runs_tasks_by_name(cluster: Cluster, flower: str) -> None:
    # The sequence's activities are sent by its start and its outcomes' workers; a signal
    # is what sends a replay task.
    handle = cluster.orc.start("sequential", 3)
    waiting = cluster.orc.start("approval", 30)
    cluster.orc.signal(waiting.run_id, "approve", 1)
    cluster.orc.signal(waiting.run_id, "approve", 2)
    assert handle.result(timeout=30) == 3
    assert waiting.result(timeout=30) == [1, 2]

    def run_tasks(run_id: str) -> list[dict[str, Any]]:
        tasks = get(f"{flower}/api/tasks?limit=1000") or {}
        return [
            t
            for t in tasks.values()
            if run_id in (t.get("uuid") or "") or run_id in (t.get("args") or "")
        ]

    def settled() -> list[dict[str, Any]] | None:
        # The run ends inside its last activity's success handler, before the worker sends
        # that task's task-succeeded event: wait for Flower to have every task's end.
        tasks = run_tasks(handle.run_id)
        ended = all(t["state"] == "SUCCESS" for t in tasks)
        return tasks if len(tasks) >= 3 and ended else None

    activities = wait_for(settled, 30, "Flower's tasks, ended")
    assert sorted(t["uuid"] for t in activities) == [f"{handle.run_id}:{i}:1" for i in (1, 2, 3)]
    assert {t["name"] for t in activities} == {"tests.integration.wfapp.add"}
    replays = wait_for(lambda: run_tasks(waiting.run_id), 30, "Flower's replay tasks")
    assert {t["name"] for t in replays} == {"orchestrator.replay"}
    assert all(f"approval v1 {waiting.run_id}" in t["args"] for t in replays)


def test_flower_lists_activities_run_in_place(cluster: Cluster, flower: str, queue: str) -> None:
    """They come by no message, but their worker sends the same task events for them."""
    key = f"flower-{uuid.uuid4().hex[:8]}"
    handle = cluster.orc.start("placed", key, [queue] * 4)
    assert handle.result(timeout=30) == ["message", "in place", "in place", "in place"]

    def settled() -> dict[str, dict[str, Any]] | None:
        tasks = get(f"{flower}/api/tasks?limit=1000") or {}
        mine = {t["uuid"]: t for t in tasks.values() if handle.run_id in (t.get("uuid") or "")}
        ended = all(t["state"] == "SUCCESS" for t in mine.values())
        return mine if len(mine) == 4 and ended else None

    tasks = wait_for(settled, 30, "Flower's tasks of the run, ended")
    assert sorted(tasks) == [f"{handle.run_id}:{i}:1" for i in (1, 2, 3, 4)]
    for task in tasks.values():
        assert task["name"] == "tests.integration.wfapp.placed"
        assert task["worker"].startswith("eager-")
        assert task["received"] and task["started"] and task["succeeded"]
        assert key in task["args"]
    assert {t["result"] for t in tasks.values()} == {"'message'", "'in place'"}
