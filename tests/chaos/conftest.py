"""Private servers and real processes for the chaos suite and the fencing tests.

Nothing here touches the shared Postgres or Redis: a cluster runs its own ``redis-server``
and (for the chaos suite) its own ``postgres`` (``initdb`` + ``pg_ctl`` in a temporary
directory) on free ports, so a test may restart them, empty them and kill them at will.
Workers and dispatchers are started the way a user starts them (``celery -A ... worker``,
``continuum -A ... dispatcher``), each in its own process group, so ``kill -9`` and
``SIGSTOP`` reach a prefork worker's pool children too.

The chaos suite takes a minute or two and loads the machine: ``-m chaos`` runs it alone,
``-m "not chaos"`` leaves it out.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from orchestrator.journal.sql import migrate
from tests.chaos import chaosapp

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP = "tests.chaos.chaosapp"
#: ``w2``'s faults: one step in ten made to take two transactions, lingering before the commit.
LINGER_HOLDING_LEASE = "driver.decide_in_transaction=raise@0.1,driver.before_commit=sleep:0.5"


def _pg_bin() -> Path:
    """Where the server binaries are: ``CONTINUUM_PG_BIN``, else what ``pg_config`` says."""
    if "CONTINUUM_PG_BIN" in os.environ:
        return Path(os.environ["CONTINUUM_PG_BIN"])
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return Path("/usr/lib/postgresql/15/bin")
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


PG_BIN = _pg_bin()
REDIS_SERVER = shutil.which("redis-server") or "redis-server"


# -- waiting ---------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail naming ``what``.
    A predicate that raises (a server restarting) counts as not yet."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:
            last, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(every)


def retrying(fn: Callable[[], T], what: str, timeout: float = 60.0, every: float = 0.25) -> T:
    """Call ``fn`` until it returns without raising (a server may be restarting), within
    ``timeout`` seconds; then its last error is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} kept failing for {timeout}s: {exc!r}") from exc
            time.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- servers ---------------------------------------------------------------------------------
class PostgresServer:
    """A private Postgres cluster in a temporary directory, on a free port.

    Postgres refuses to run as root: under root its files belong to, and its commands run
    as, the ``postgres`` user.
    """

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="continuum-chaos-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> None:
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs.update(user=self._user, group=self._user, extra_groups=[])
        with (self.base / "pg_ctl.out").open("ab") as out:
            subprocess.run(
                [str(PG_BIN / tool), *args],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=self.base,
                **kwargs,
            )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=64MB"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_for: float = 0.0) -> None:
        """Fast shutdown (every connection dropped), then start on the same port and data."""
        self.stop("fast")
        time.sleep(down_for)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    """A private ``redis-server`` without persistence: a restart starts it empty."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.ping, 30, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def restart_empty(self, down_for: float = 0.0) -> None:
        """``kill -9`` (nothing saved), then a fresh, empty server on the same port."""
        self.kill()
        time.sleep(down_for)
        self.start()


# -- processes -------------------------------------------------------------------------------
@dataclass
class Node:
    """One worker or dispatcher, restartable with the same command and environment."""

    name: str
    kind: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready: bytes
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: Set while someone (a fault, the supervisor) is taking the node down and up again.
    held: bool = False
    #: Where in the log the current process began, and how far the supervisor has read.
    offset: int = 0
    scanned: int = 0
    fatal: str | None = None
    #: Why the supervisor had to restart it, each time.
    crashes: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """One journal, one broker, and the workers and dispatchers serving them."""

    def __init__(
        self,
        workdir: Path,
        *,
        journal_url: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.effects = workdir / "effects"
        self.effects.mkdir(parents=True, exist_ok=True)
        self.prefix = f"chaos{uuid.uuid4().hex[:8]}"
        self.settings = {**chaosapp.DEFAULT_SETTINGS, **(settings or {})}
        self.nodes: dict[str, Node] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.pg: PostgresServer | None = None
        self.redis = RedisServer(workdir / "redis")
        try:
            self.redis.start()
            if journal_url is None:
                self.pg = PostgresServer()
                self.pg.start()
                journal_url = self.pg.create_database("continuum")
            self.url = journal_url
            migrate.upgrade(self.url)
        except BaseException:
            self._servers_down()
            raise
        self.env = {k: v for k, v in os.environ.items() if k != "CONTINUUM_FAULTS"}
        self.env.update(
            {
                "ORCHESTRATOR_JOURNAL_URL": self.url,
                "CELERY_BROKER_URL": self.redis.url,
                "CONTINUUM_CHAOS_PREFIX": self.prefix,
                "CONTINUUM_CHAOS_EFFECTS": str(self.effects),
                "CONTINUUM_CHAOS_SETTINGS": json.dumps(self.settings),
                "PYTHONPATH": str(ROOT),
            }
        )
        self.orc = chaosapp.client(self.redis.url, self.url, self.prefix, self.settings)
        # The test's own reads survive a Postgres restart: stale connections are replaced.
        self.db = sa.create_engine(self.url, pool_pre_ping=True, pool_size=4)

    # -- processes ----------------------------------------------------------------------------
    def add_worker(self, name: str, concurrency: int = 2, **env: str) -> Node:
        argv = [
            str(BIN / "celery"),
            "-A",
            APP,
            "worker",
            "-l",
            "info",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-n",
            f"{name}-{self.prefix}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        return self._add(name, "worker", argv, env, b" ready.")

    def add_dispatcher(self, name: str, **env: str) -> Node:
        argv = [str(BIN / "continuum"), "-A", APP, "dispatcher"]
        return self._add(name, "dispatcher", argv, env, b"dispatcher started")

    def _add(
        self, name: str, kind: str, argv: list[str], env: dict[str, str], ready: bytes
    ) -> Node:
        node = Node(
            name=name,
            kind=kind,
            argv=argv,
            env={**self.env, "CONTINUUM_CHAOS_NODE": name, **env},
            log=self.workdir / f"{name}.log",
            ready=ready,
        )
        self.nodes[name] = node
        self.start(name)
        return node

    def start(self, name: str, timeout: float = 90.0) -> None:
        """(Re)start a node and wait until it says it is ready."""
        node = self.nodes[name]
        with node.log.open("ab") as log:
            log.write(f"\n=== start {node.starts + 1} of {name} at {time.time():.3f}\n".encode())
            log.flush()
            offset = node.offset = node.scanned = node.log.stat().st_size
            node.fatal = None
            node.proc = subprocess.Popen(
                node.argv,
                cwd=ROOT,
                env=node.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node.starts += 1

        def ready() -> bool:
            if node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(f"{name} exited with {node.proc.returncode}; see {node.log}")
            return node.ready in node.log.read_bytes()[offset:]

        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=30)
                raise AssertionError(f"{name} not ready within {timeout}s; see {node.log}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[Node]:
        """Keep the supervisor off ``name`` while the caller kills and restarts it."""
        node = self.nodes[name]
        deadline = time.monotonic() + 120
        while True:
            with self.lock:
                if not node.held:
                    node.held = True
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed held by someone else")
            time.sleep(0.05)
        try:
            yield node
        finally:
            node.held = False

    def supervise(self) -> threading.Thread:
        """Restart, as a process supervisor would, any node that died on its own (or logged
        an unrecoverable error and hangs): its reason is kept in ``Node.crashes``."""
        thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        thread.start()
        return thread

    def _supervise(self) -> None:
        noticed: dict[str, float] = {}
        while not self.stopping.wait(0.25):
            for name, node in self.nodes.items():
                if node.held or node.proc is None:
                    continue
                reason = None
                if node.proc.poll() is not None:
                    reason = f"exited with {node.proc.returncode}"
                else:
                    fatal = self._fatal_line(node)
                    if fatal:
                        noticed.setdefault(name, time.monotonic())
                        if time.monotonic() - noticed[name] > 5:
                            reason = f"hung after: {fatal}"
                if reason is None:
                    continue
                noticed.pop(name, None)
                fatal = self._fatal_line(node)
                with self.holding(name):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait(timeout=30)
                    node.crashes.append(f"{reason} ({fatal or 'no error logged'})")
                    if not self.stopping.is_set():
                        with contextlib.suppress(AssertionError):
                            self.start(name)

    def _fatal_line(self, node: Node) -> str | None:
        """The first unrecoverable error the node's current process logged (read on from
        where the last call stopped)."""
        if node.fatal is None:
            with node.log.open("rb") as log:
                log.seek(node.scanned)
                chunk = log.read()
            end = chunk.rfind(b"\n") + 1
            node.scanned += end
            for line in chunk[:end].splitlines():
                if b"Unrecoverable error" in line:
                    node.fatal = line.decode(errors="replace")[:300]
                    break
        return node.fatal

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to the node's whole process group; after SIGKILL, reap it."""
        node = self.nodes[name]
        assert node.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, sig)
        if sig == signal.SIGKILL:
            node.proc.wait(timeout=30)

    def node_of_pid(self, pid: int) -> str | None:
        """The node whose process group ``pid`` belongs to (a pool child or the main)."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        for node in self.nodes.values():
            if node.alive and node.proc is not None and node.proc.pid == group:
                return node.name
        return None

    def log_text(self, name: str) -> str:
        return self.nodes[name].log.read_text(errors="replace")

    # -- reads --------------------------------------------------------------------------------
    def query(self, sql: str, timeout: float = 60.0, **params: Any) -> list[sa.Row[Any]]:
        """Rows of ``sql`` on the journal database, retried while Postgres restarts."""

        def run() -> list[sa.Row[Any]]:
            with self.db.connect() as conn:
                return list(conn.execute(sa.text(sql), params))

        return retrying(run, f"query {sql[:40]!r}", timeout)

    def leases(self) -> list[sa.Row[Any]]:
        """Live leases: run id, owner, token and expiry, and the run's last sequence number."""
        return self.query(
            "SELECT run_id, lease_owner, lease_token, lease_expires_at, last_seq FROM runs"
            " WHERE lease_owner IS NOT NULL AND lease_expires_at > :now",
            now=time.time(),
        )

    def diagnose(self, run_id: str) -> str:
        """The run's row, its outbox, and the sessions holding transactions open, for a
        failure message."""
        lines = [f"run {run_id}:"]
        for row in self.query(
            "SELECT status, lease_owner, lease_token, lease_expires_at - :now AS lease_left,"
            " :now - dispatched_at AS dispatched_ago, last_seq FROM runs WHERE run_id = :r",
            r=run_id,
            now=time.time(),
        ):
            lines.append(f"  row {dict(row._mapping)}")
        for row in self.query(
            "SELECT task_id, finished, :now - published_at AS published_ago, started_at"
            " FROM tasks WHERE run_id = :r ORDER BY created_at",
            r=run_id,
            now=time.time(),
        ):
            lines.append(f"  task {dict(row._mapping)}")
        for row in self.query(
            "SELECT a.pid, a.client_port, a.state, now() - a.xact_start AS in_transaction_for,"
            " left(a.query, 160) AS last_query,"
            " (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.granted) AS locks"
            " FROM pg_stat_activity a WHERE a.datname = current_database()"
            " AND a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid()"
        ):
            owner = self._process_of_port(row.client_port)
            lines.append(f"  session {dict(row._mapping)} of {owner}")
        return "\n".join(lines)

    def _process_of_port(self, port: int | None) -> str:
        """Which local process (and node) owns the client end of a database connection."""
        if port is None:
            return "?"
        out = subprocess.run(
            ["ss", "-Htnp", f"( sport = :{port} )"], capture_output=True, text=True, timeout=10
        ).stdout
        found = re.search(r"pid=(\d+)", out)
        if found is None:
            return "?"
        pid = int(found.group(1))
        return f"pid {pid} ({self.node_of_pid(pid)})"

    def broker_state(self) -> tuple[dict[str, int], frozenset[bytes]]:
        """Messages queued in the broker (list lengths), and the ids of those delivered but
        not acknowledged (a killed worker's stay there until the visibility timeout)."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            queued: dict[str, int] = {}
            for key in client.scan_iter(_type="list"):
                queued[key.decode()] = int(client.llen(key))
            unacked = frozenset(client.hkeys("unacked"))
            return {k: n for k, n in queued.items() if n}, unacked
        finally:
            client.close()

    def running_activities(self) -> list[str]:
        """Activity executions started and not finished by a process that is still alive."""
        from tests.chaos.invariants_db import read_executions

        alive = []
        for execution in read_executions(self.effects).open:
            with contextlib.suppress(ProcessLookupError):
                os.kill(execution.pid, 0)
                alive.append(execution.task_id)
        return alive

    def wait_quiet(self, timeout: float) -> int:
        """Wait until nothing is left to run: no message queued, no activity executing, and
        the unacknowledged messages unchanged for a second (a live worker would have run and
        acknowledged its own by then; a killed worker's stay). Returns how many stay."""
        last: frozenset[bytes] | None = None

        def quiet() -> bool:
            nonlocal last
            queued, unacked = self.broker_state()
            if queued or self.running_activities():
                last = None
                return False
            settled = unacked == last
            last = unacked
            return settled

        wait_for(quiet, timeout, "the broker to drain and the activities to end", every=1.0)
        assert last is not None
        return len(last)

    # -- teardown -----------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping.set()
        for node in self.nodes.values():
            if node.alive:
                assert node.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGCONT)
                    os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes.values():
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=20)
            # Pool children outlive a killed main process: sweep the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.orc.journal.close()
        with contextlib.suppress(Exception):
            self.db.dispose()
        self._servers_down()

    def _servers_down(self) -> None:
        self.redis.kill()
        if self.pg is not None:
            self.pg.destroy()


def lease_pid(owner: str) -> int | None:
    """The process id in a lease owner (``host:pid:object``)."""
    parts = owner.split(":")
    try:
        return int(parts[-2])
    except (IndexError, ValueError):
        return None


_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


@pytest.fixture
def chaos_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Private Postgres and Redis, two prefork workers and two dispatchers.

    ``w2`` steps one run in ten in two transactions (its replay inside the claiming one is
    made to fail) and lingers in those just before the commit, while it holds the run's
    lease, so a kill or a stop can catch it mid-replay. The logs are kept (outside pytest's
    rotating temporary directories) when the test fails. An indirect parameter overrides
    orchestrator settings.
    """
    workdir = Path(tempfile.mkdtemp(prefix="continuum-chaos-"))
    cluster = Cluster(workdir, settings=getattr(request, "param", None))
    try:
        cluster.add_worker("w1")
        cluster.add_worker("w2", CONTINUUM_FAULTS=LINGER_HOLDING_LEASE)
        cluster.add_dispatcher("d1")
        cluster.add_dispatcher("d2")
        cluster.supervise()
        yield cluster
    finally:
        cluster.stop()
        if request.node.stash.get(_PASSED, False):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nchaos logs kept in {workdir}")
