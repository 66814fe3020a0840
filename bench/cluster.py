"""The system under measurement: a fresh journal database, a Celery worker and a dispatcher.

Processes are started the way a user starts them (``celery -A bench.app worker``,
``continuum -A bench.app dispatcher``), each leading its own process group, so its CPU time
and memory can be summed over the group and the whole group can be stopped. Every scenario
gets a fresh database and fresh processes (:meth:`Cluster.fresh`), so one scenario's rows,
waiting runs and worker memory do not colour the next one's figures. Nothing global is
touched: the database has a unique name and is dropped at the end, and every Redis key the
app writes carries a unique prefix and is deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import redis

from bench import counters
from orchestrator.journal.sql import migrate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = "bench.app"
SERVER = os.environ.get("CONTINUUM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER = os.environ.get("CONTINUUM_BENCH_BROKER", "redis://127.0.0.1:6379/0")
#: Pool processes per worker unless told otherwise: Celery's own default, one per core.
CONCURRENCY = os.cpu_count() or 1
#: Seconds after which Postgres has flushed every idle backend's transaction counters
#: (busy backends flush at most once a second, idle ones within 10 s).
STATS_SETTLE = 11.0


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Process:
    """One benchmark process (the leader of its own process group) and its log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pgrp(self) -> int:
        return self.popen.pid

    def wait_logged(self, marker: bytes, timeout: float) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None:
                tail = self.log.read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{tail}")
            return marker in self.log.read_bytes()

        wait_for(seen, timeout, f"{self.name} to start (see {self.log})")

    def stop(self) -> None:
        """SIGTERM the group (a warm shutdown), then SIGKILL whatever is left of it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgrp, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgrp, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


class Cluster:
    """A journal database and the processes serving it, for one benchmark run."""

    def __init__(
        self, workdir: Path, concurrency: int = CONCURRENCY, eager_activities: int = 0
    ) -> None:
        self.concurrency = concurrency
        token = uuid.uuid4().hex[:8]
        self.dbname = f"continuum_bench_{token}"
        self.prefix = f"continuum-bench-{token}"
        self.url = f"{SERVER.rsplit('/', 1)[0]}/{self.dbname}"
        self.logs = workdir / "logs"
        self.counts = workdir / "counts"
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.counts.mkdir(parents=True, exist_ok=True)
        for stale in self.counts.glob("*.count"):
            stale.unlink()
        self.env = {
            **os.environ,
            "ORCHESTRATOR_JOURNAL_URL": self.url,
            "CONTINUUM_BENCH_PREFIX": self.prefix,
            "CONTINUUM_BENCH_BROKER": BROKER,
            "CONTINUUM_BENCH_EAGER_ACTIVITIES": str(eager_activities),
            counters.COUNTS_ENV: str(self.counts),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        # The app reads its configuration at import, so this process sets it first.
        os.environ.update({k: self.env[k] for k in self.env if k != "PYTHONPATH"})
        from bench import app

        self.module: ModuleType = app
        self.orc = app.orc
        self.worker: Process | None = None
        self.dispatcher: Process | None = None
        self._db: psycopg.Connection[Any] | None = None
        self._created = False

    # -- lifecycle --------------------------------------------------------------------------
    def fresh(self, label: str) -> None:
        """A new, migrated database and newly started worker and dispatcher."""
        self.stop_processes()
        self._drop_database()
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self._created = True
        migrate.upgrade(self.url)
        self._db = psycopg.connect(self.url)
        self.start_processes(label)

    def start_processes(self, label: str) -> None:
        """Start a worker and a dispatcher on the database as it is (see :meth:`fresh`)."""
        self.stop_processes()
        self.worker = Process(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                APP,
                "worker",
                "-P",
                "prefork",
                "-c",
                str(self.concurrency),
                "-l",
                "info",
                "-n",
                f"{self.prefix}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            self.env,
            self.logs / f"{label}-worker.log",
        )
        self.dispatcher = Process(
            "dispatcher",
            [str(BIN / "continuum"), "-A", APP, "dispatcher"],
            self.env,
            self.logs / f"{label}-dispatcher.log",
        )
        self.worker.wait_logged(b" ready.", 60)
        self.dispatcher.wait_logged(b"dispatcher started", 60)
        self._warm_up()

    def _warm_up(self) -> None:
        """One workflow and one plain task, so imports and connections are not measured."""
        run = self.orc.start(self.module.sequence, 1)
        self.orc.result(run.run_id, timeout=60)
        self.module.chain_end.delay().get(timeout=60)

    def close(self) -> None:
        """Stop the processes, drop the database and delete this run's Redis keys."""
        try:
            self.stop_processes()
        finally:
            try:
                self._drop_database()
            finally:
                self._delete_redis_keys()

    def stop_processes(self) -> None:
        """Stop the worker and the dispatcher (a scenario that drives the journal itself)."""
        for proc in (self.dispatcher, self.worker):
            if proc is not None:
                proc.stop()
        self.worker = self.dispatcher = None

    def _drop_database(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self.orc.journal.close()
        if self._created:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            self._created = False

    def _delete_redis_keys(self) -> None:
        client = redis.Redis.from_url(BROKER)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
        finally:
            client.close()

    @staticmethod
    def _admin() -> psycopg.Connection[Any]:
        return psycopg.connect(SERVER, autocommit=True)

    # -- observations -----------------------------------------------------------------------
    def commits(self) -> int:
        """Committed transactions of the journal database so far (all its clients).

        Read from another database's connection, so reading does not count itself.
        Postgres flushes a backend's counters at most once a second while it is busy and
        within ~10 s once it is idle: callers that need exact deltas wait ``STATS_SETTLE``
        seconds after the work they count, before each reading.
        """
        with self._admin() as conn:
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
        return int(row[0]) if row else 0

    def backend_pids(self) -> list[int]:
        """Server processes of the journal database's current connections (on this machine)."""
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.dbname,)
            ).fetchall()
        return [int(row[0]) for row in rows]

    def scalar(self, query: str, *params: Any) -> Any:
        """One value from the journal database, read in a transaction that is rolled back
        (so polling adds no commits to the counts)."""
        assert self._db is not None
        try:
            row = self._db.execute(query, params).fetchone()
        finally:
            self._db.rollback()
        return None if row is None else row[0]

    def wait_count(self, query: str, *params: Any, n: int, timeout: float, what: str) -> None:
        """Poll a ``count(*)`` query until it reaches ``n``."""
        wait_for(lambda: self.scalar(query, *params) >= n, timeout, what)

    def counted(self) -> dict[str, int]:
        """Messages published, by kind, and SQL statements sent so far by all benchmark
        processes (see :mod:`bench.counters`)."""
        return counters.totals(self.counts)

    @property
    def worker_pgrp(self) -> int:
        assert self.worker is not None
        return self.worker.pgrp

    @property
    def dispatcher_pgrp(self) -> int:
        assert self.dispatcher is not None
        return self.dispatcher.pgrp
