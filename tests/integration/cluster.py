"""Real processes for integration tests: a database, a Celery worker and a dispatcher.

Processes are started the way a user starts them (``celery -A ... worker``,
``continuum -A ... dispatcher``), each in its own process group so a test can ``kill -9``
the whole worker (pool children included).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis
import sqlalchemy as sa

from orchestrator.journal.sql import migrate, schema

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP = "tests.integration.wfapp"
SERVER = os.environ.get("CONTINUUM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER = os.environ.get("CONTINUUM_TEST_BROKER", "redis://127.0.0.1:6379/0")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Cluster:
    """One journal database and the processes that serve it."""

    def __init__(self, workdir: Path, app: str = APP, broker: str = BROKER) -> None:
        self.app = app
        self.broker = broker
        self.name = f"continuum_it_{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.effects = workdir / "effects"
        self.effects.mkdir()
        base = SERVER.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"
        with psycopg.connect(SERVER.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        migrate.upgrade(self.url)
        self.env = {
            **os.environ,
            "ORCHESTRATOR_JOURNAL_URL": self.url,
            "CELERY_BROKER_URL": broker,
            "CONTINUUM_TEST_PREFIX": self.name,
            "CONTINUUM_TEST_EFFECTS": str(self.effects),
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update(
            {
                k: self.env[k]
                for k in (
                    "ORCHESTRATOR_JOURNAL_URL",
                    "CELERY_BROKER_URL",
                    "CONTINUUM_TEST_PREFIX",
                    "CONTINUUM_TEST_EFFECTS",
                )
            }
        )
        self.module = importlib.import_module(app)
        self.orc = self.module.orc
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.dispatchers: dict[str, subprocess.Popen[bytes]] = {}

    # -- processes --------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start_worker(
        self, name: str = "w1", concurrency: int = 2, queues: str | None = None, **env: str
    ) -> None:
        log = self.workdir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self.workers[name] = self._spawn(
            name,
            [
                str(BIN / "celery"),
                "-A",
                self.app,
                "worker",
                "-l",
                "info",
                "-c",
                str(concurrency),
                "-n",
                f"{name}-{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *(["-Q", queues] if queues else []),
            ],
            {**self.env, "CONTINUUM_TEST_NODE": name, **env},
        )
        wait_for(lambda: b" ready." in log.read_bytes()[offset:], 30, f"worker {name} ready")

    def start_dispatcher(self, name: str = "d1", **env: str) -> None:
        log = self.workdir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self.dispatchers[name] = self._spawn(
            name, [str(BIN / "continuum"), "-A", self.app, "dispatcher"], {**self.env, **env}
        )
        wait_for(
            lambda: b"dispatcher started" in log.read_bytes()[offset:],
            30,
            f"dispatcher {name} started",
        )

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the process's whole group (a prefork worker's children too) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in [*self.workers.values(), *self.dispatchers.values()]:
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)
        self.orc.journal.close()
        with psycopg.connect(SERVER.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        # The cluster's queues (and messages a test left in them) and their bindings, and the
        # messages a killed worker took from them and never acknowledged (kombu keeps those in
        # one hash for the whole Redis, each naming the queue it came from).
        broker = redis.Redis.from_url(self.broker)
        try:
            for key in broker.scan_iter(f"*{self.name}*"):
                broker.delete(key)
            for tag, entry in broker.hgetall("unacked").items():
                if self.name.encode() in entry:
                    broker.hdel("unacked", tag)
                    broker.zrem("unacked_index", tag)
        finally:
            broker.close()

    # -- observations -----------------------------------------------------------------------
    def started(self, task_id: str) -> bool:
        """Whether the journal recorded the start of the task (an activity attempt)."""
        with self.orc.journal.engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.tasks.c.started_at).where(schema.tasks.c.task_id == task_id)
            ).first()
        return row is not None and row.started_at is not None

    def executions(self, key: str) -> int:
        """How many times activities recorded ``key`` (side effects, not journal events)."""
        path = self.effects / key
        return len(path.read_text().splitlines()) if path.exists() else 0
