"""Flower shows a run's activities under their own task names, and its replays by workflow."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.request
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
    handle = cluster.orc.start("sequential", 3)
    assert handle.result(timeout=30) == 3

    def run_tasks() -> list[dict[str, Any]]:
        tasks = get(f"{flower}/api/tasks?limit=1000") or {}
        return [
            t
            for t in tasks.values()
            if handle.run_id in (t.get("uuid") or "") or handle.run_id in (t.get("args") or "")
        ]

    def settled() -> list[dict[str, Any]] | None:
        # The run ends inside its last activity's success handler, before the worker sends
        # that task's task-succeeded event: wait for Flower to have every task's end.
        tasks = run_tasks()
        ended = all(t["state"] == "SUCCESS" for t in tasks if t["name"] != "orchestrator.replay")
        return tasks if len(tasks) >= 4 and ended else None

    tasks = wait_for(settled, 30, "Flower's tasks, ended")
    activities = [t for t in tasks if t["uuid"].startswith(handle.run_id)]
    assert sorted(t["uuid"] for t in activities) == [f"{handle.run_id}:{i}:1" for i in (1, 2, 3)]
    assert {t["name"] for t in activities} == {"tests.integration.wfapp.add"}
    assert all(t["state"] == "SUCCESS" for t in activities)
    replays = [t for t in tasks if t["name"] == "orchestrator.replay"]
    assert replays
    assert all(f"sequential v1 {handle.run_id}" in t["args"] for t in replays)
