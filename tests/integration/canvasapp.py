"""The Celery app of the canvas tests: small tasks to compose, with a Redis result backend so
the same canvas can run as plain Celery (``apply_async().get()``) and under Continuum
(``orc.start_canvas``) on the same worker.

Configured from the environment the test cluster sets (broker, journal, key prefix, effects
directory). :func:`make` builds another instance on another broker, for a test that runs its
own Redis. Every Redis key the app writes starts with the prefix, so the cluster deletes
exactly its own keys.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from celery import Celery

from orchestrator import Orchestrator

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("CONTINUUM_TEST_PREFIX", "canvas-itest")


class CanvasBoom(Exception):
    """An error of the app's own, to see it surface by its qualified name."""


def effects() -> Path:
    return Path(os.environ.get("CONTINUUM_TEST_EFFECTS", "/tmp"))


def record(key: str, value: Any) -> None:
    """Append ``value`` as one JSON line under ``key`` in the effects directory."""
    with (effects() / key).open("a") as fh:
        fh.write(json.dumps(value) + "\n")


def recorded(key: str) -> list[Any]:
    path = effects() / key
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def make(broker: str, prefix: str, journal_url: str | None = None) -> tuple[Celery, Orchestrator]:
    """The app and its orchestrator on ``broker``, its keys and queues named by ``prefix``."""
    app = Celery("canvasapp", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=f"{prefix}-default",
        broker_transport_options={"global_keyprefix": f"{prefix}:"},
        result_backend_transport_options={"global_keyprefix": f"{prefix}:"},
        result_expires=600,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
    )
    orc = Orchestrator(
        app,
        journal_url,
        queue=f"{prefix}-orchestrator",
        poll_interval=0.2,
        lease_ttl=10,
        redispatch_after=2,
        republish_after=4,
        heartbeat_interval=1,
        node_ttl=3,
    )
    _tasks(app)
    return app, orc


def _tasks(app: Celery) -> None:
    task = app.task

    @task(name="canvas.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @task(name="canvas.mul", shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    @task(name="canvas.tsum", shared=False)
    def tsum(values: list[int]) -> int:
        return sum(values)

    @task(name="canvas.collect", shared=False)
    def collect(*args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs] if kwargs else list(args)

    @task(name="canvas.boom", shared=False)
    def boom(*_: Any, message: str = "boom") -> None:
        raise ValueError(message)

    @task(name="canvas.custom", shared=False)
    def custom(*_: Any) -> None:
        raise CanvasBoom("custom failure")

    @task(name="canvas.where", bind=True, shared=False)
    def where(self: Any, *_: Any) -> str:
        return str((self.request.delivery_info or {}).get("routing_key"))

    @task(name="canvas.mark", shared=False)
    def mark(*args: Any, key: str) -> None:
        """A ``link`` callback: records what it was given."""
        record(key, list(args))

    @task(name="canvas.on_error_id", shared=False)
    def on_error_id(task_id: Any, *, key: str) -> None:
        """An old-style error callback: given the failed task's id."""
        record(key, ["id", isinstance(task_id, str)])

    @task(name="canvas.on_error_full", shared=False)
    def on_error_full(request: Any, exc: BaseException, traceback: Any, key: str) -> None:
        """A new-style error callback: given the request, the exception and the traceback."""
        message = re.sub(r"Dependency \S+ raised", "Dependency <id> raised", str(exc))
        record(key, [type(exc).__name__, message, isinstance(request.id, str)])

    @task(
        name="canvas.flaky",
        shared=False,
        autoretry_for=(ValueError,),
        retry_kwargs={"max_retries": 3, "countdown": 0},
    )
    def flaky(key: str) -> int:
        """Fails with ``ValueError`` on its first call; Celery's ``autoretry_for`` retries it.
        Returns how many times it was called."""
        record(key, ["call"])
        calls = len(recorded(key))
        if calls < 2:
            raise ValueError(f"call {calls}")
        return calls

    @task(name="canvas.slow", shared=False)
    def slow(x: Any, seconds: float, key: str) -> Any:
        """Records its start, sleeps, returns ``x``."""
        record(key, ["start", x])
        time.sleep(seconds)
        return x

    @task(name="canvas.gate", shared=False)
    def gate(x: Any, key: str) -> Any:
        """Records its start and waits (up to a minute) for the file ``<key>.open``."""
        record(key, ["start", x])
        deadline = time.monotonic() + 60
        while not (effects() / f"{key}.open").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return x


app, orc = make(BROKER, PREFIX)
