"""Fixtures shared by the test suites: a fake clock, fresh databases, and the journals.

``journal`` is parametrized over the three backends (``memory``, ``sqlite``, ``postgres``) and
is built on the test's ``clock``: a test that asks for both gets the journal and the very clock
it reads, so ``clock.advance(...)`` moves time for that journal. Each SQL test gets its own
database: a SQLite file under ``tmp_path``, or a Postgres database cloned from a template that
was migrated once per session. ``CONTINUUM_TEST_PG`` names the Postgres server and user
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import TupleRow
from sqlalchemy.engine import URL, make_url

from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Journal
from orchestrator.journal.sql import migrate
from orchestrator.journal.sql.journal import SqlJournal

PG_SERVER_ENV = "CONTINUUM_TEST_PG"
#: A login role with only the runtime grants (``continuum db grant``), no DDL.
RUNTIME_ROLE = "continuum_runtime_test"
DEFAULT_PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class FakeClock:
    """Epoch seconds that move only when a test says so (``advance``)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds``; returns the new time."""
        with self._lock:
            self._now += seconds
            return self._now


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel, once per session (for install-from-wheel tests)."""
    out = tmp_path_factory.mktemp("dist")
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("*.whl"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite journal file of this test's own."""
    url = f"sqlite:///{tmp_path / 'journal.sqlite3'}"
    migrate.upgrade(url)
    return url


class _PostgresServer:
    """Creates and drops databases through the server's maintenance database."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self._names = itertools.count(1)

    def url_of(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def _admin(self) -> psycopg.Connection[TupleRow]:
        libpq = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(libpq, autocommit=True)

    def create(self, name: str, template: str | None = None) -> str:
        self.drop(name)
        clause = f' TEMPLATE "{template}"' if template else ""
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url_of(name)

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

    def fresh_name(self) -> str:
        return f"continuum_test_{os.getpid()}_{next(self._names)}"


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[tuple[_PostgresServer, str]]:
    server = _PostgresServer(make_url(os.environ.get(PG_SERVER_ENV, DEFAULT_PG_SERVER)))
    name = f"continuum_template_{os.getpid()}"
    url = server.create(name)
    migrate.upgrade(url)
    with server._admin() as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (RUNTIME_ROLE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE ROLE "{RUNTIME_ROLE}" LOGIN')
    migrate.grant(url, RUNTIME_ROLE)
    try:
        yield server, name
    finally:
        server.drop(name)


@pytest.fixture
def postgres_url(_postgres_template: tuple[_PostgresServer, str]) -> Iterator[str]:
    """A migrated Postgres database of this test's own, dropped after it."""
    server, template = _postgres_template
    name = server.fresh_name()
    url = server.create(name, template=template)
    try:
        yield url
    finally:
        server.drop(name)


@pytest.fixture
def postgres_runtime_url(postgres_url: str) -> str:
    """The same database as ``postgres_url``, logged in as the least-privilege runtime role."""
    return make_url(postgres_url).set(username=RUNTIME_ROLE).render_as_string(hide_password=False)


@pytest.fixture(params=["memory", "sqlite", "postgres", "postgres_runtime"])
def journal(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Journal]:
    """A fresh journal on each backend, reading time from the test's ``clock``.

    ``postgres_runtime`` connects as a role with only the runtime grants, so the whole
    contract also proves those grants are enough.
    """
    if request.param == "memory":
        yield InMemoryJournal(clock=clock)
        return
    url = request.getfixturevalue(f"{request.param}_url")
    sql = SqlJournal(url, clock=clock)
    try:
        yield sql
    finally:
        sql.close()
