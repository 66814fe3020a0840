"""SQLAlchemy engines for the journal: psycopg 3 on Postgres, serialised writers on SQLite.

SQLite's default deferred transactions deadlock when two writers upgrade their read locks
at once, so every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, others
wait ``busy_timeout``); WAL lets readers go on meanwhile. Postgres URLs are normalised to the
psycopg 3 driver.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` to the psycopg 3 driver; others unchanged."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create(url: str, *, pool_size: int = 5, stall_timeout: float = 5.0) -> Engine:
    """An engine for ``url`` with the transaction behaviour the journal relies on.

    On Postgres, a session idle inside a transaction for ``stall_timeout`` seconds is ended
    by the server: a process paused while it holds a run's row lock (SIGSTOP, a VM freeze,
    a partition) would otherwise keep the run from every other node for as long as it is
    paused, lease or no lease. Its transaction rolls back, so it wrote nothing.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _serialise_sqlite_writers(engine)
        return engine
    options = f"-c idle_in_transaction_session_timeout={max(1, round(stall_timeout * 1000))}"
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        connect_args={"options": options},
    )
    engine.dialect.use_insertmanyvalues_wo_returning = True
    event.listen(engine, "do_executemany", _one_at_a_time)
    return engine


def _one_at_a_time(cursor: Any, statement: str, parameters: Any, _context: Any) -> bool:
    for params in parameters:
        cursor.execute(statement, params)
    return True


def _serialise_sqlite_writers(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
