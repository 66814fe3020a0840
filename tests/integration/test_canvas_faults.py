"""A canvas survives under Continuum the faults that lose it under plain Celery: a worker
``kill -9``ed in the middle of a chord's header, and a broker restarted empty in the middle of a
chain. Each test runs the same canvas, with the same fault, as plain Celery too, and prints what
became of it: a recorded fact, not an assertion (Celery's settings decide it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import chain, chord
from celery.canvas import Signature

from tests.chaos.conftest import RedisServer
from tests.integration import canvasapp
from tests.integration.canvas_cluster import Tasks, running, start_worker
from tests.integration.cluster import Cluster, wait_for


def plain_celery(
    cluster: Cluster, build: Callable[[str], Signature], fault: Callable[[], None]
) -> str:
    """What plain Celery makes of ``build``'s canvas when ``fault`` strikes once its first
    task has started: its result, or the error its ``get()`` raised within 20 seconds."""
    key = f"celery-{uuid.uuid4().hex[:8]}"
    result = build(key).apply_async()
    wait_for(lambda: canvasapp.recorded(key), 30, "plain Celery's first task to start")
    fault()
    try:
        outcome: Any = result.get(timeout=20)
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    return repr(outcome)


def test_a_chord_whose_worker_is_killed_mid_header_completes(tmp_path: Path) -> None:
    with running(tmp_path) as cluster:
        t = Tasks(cluster)

        def build(key: str) -> Signature:
            return chord([t.slow(i, 2.0, key) for i in range(1, 5)], t.tsum())

        def kill_worker() -> None:
            cluster.kill(cluster.workers["w1"])
            start_worker(cluster)

        key = f"durable-{uuid.uuid4().hex[:8]}"
        handle = cluster.orc.start_canvas(build(key), timeout=5)
        wait_for(lambda: canvasapp.recorded(key), 30, "the header to start")
        kill_worker()
        assert cluster.orc.result(handle.run_id, timeout=120) == 10
        starts = [x for what, x in canvasapp.recorded(key) if what == "start"]
        assert sorted(set(starts)) == [1, 2, 3, 4]
        print(f"\nContinuum, chord killed mid-header: 10, header starts {sorted(starts)}")
        print(f"plain Celery, same fault: {plain_celery(cluster, build, kill_worker)}")


def queued(broker: str, queue: str) -> bool:
    """Whether a message waits in ``queue`` (its Redis list, whatever the key prefix)."""
    client = redis.Redis.from_url(broker)
    try:
        keys = client.scan_iter(f"*{queue}")
        return any(client.type(k) == b"list" and client.llen(k) > 0 for k in keys)
    finally:
        client.close()


def test_a_chain_whose_redis_restarts_empty_midway_completes(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    (tmp_path / "cluster").mkdir()
    try:
        with running(tmp_path / "cluster", broker=server.url) as cluster:
            t = Tasks(cluster)
            # The second step goes to a queue whose worker starts only after the restart, so
            # its message waits in Redis when Redis restarts empty.
            later = f"{cluster.name}-later"

            def build(key: str) -> Signature:
                return chain(t.slow(1, 0.2, key), t.add(10).set(queue=later))

            def restart_redis() -> None:
                wait_for(lambda: queued(server.url, later), 30, "the second step to be queued")
                server.kill()
                server.start()
                cluster.start_worker("w2", queues=later)

            key = f"durable-{uuid.uuid4().hex[:8]}"
            handle = cluster.orc.start_canvas(build(key))
            wait_for(lambda: canvasapp.recorded(key), 30, "the first step to start")
            restart_redis()
            assert cluster.orc.result(handle.run_id, timeout=120) == 11
            cluster.kill(cluster.workers.pop("w2"))
            print("\nContinuum, chain with Redis restarted empty midway: 11")
            print(f"plain Celery, same fault: {plain_celery(cluster, build, restart_redis)}")
    finally:
        server.kill()
