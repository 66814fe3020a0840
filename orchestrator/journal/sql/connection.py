"""The journal's connections to its database: the pool, transactions that are run again
when they fail for a passing reason, and LISTEN/NOTIFY (Postgres only; SQLite polls)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from orchestrator.journal.sql import engines
from orchestrator.journal.sql.watch import ClosedWatcher

T = TypeVar("T")
log = logging.getLogger(__name__)

CLOSED_CHANNEL = "continuum_closed"
WAKEUP_CHANNEL = "continuum_wakeup"


class SqlConnection:
    """What every journal operation on SQL stands on (see
    :class:`~orchestrator.journal.sql.journal.SqlJournal`)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        pool_size: int = 5,
        stall_timeout: float = 5.0,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self.url = engines.normalise_url(url)
        self.engine = engines.create(self.url, pool_size=pool_size, stall_timeout=stall_timeout)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.reconnect_timeout = reconnect_timeout
        self._clock = clock
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_lock = threading.Lock()
        self._closed_watcher = (
            ClosedWatcher(self._listening_connection, CLOSED_CHANNEL) if self.postgres else None
        )
        # A forked worker child must not share its parent's sockets.
        os.register_at_fork(after_in_child=self._forget_connections)

    def _forget_connections(self) -> None:
        self.engine.dispose(close=False)
        self._listener = None

    def close(self) -> None:
        """Close pooled connections (and the wake-up listener)."""
        if self._closed_watcher is not None:
            self._closed_watcher.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.postgres else sqlite
        return dialect.insert(table)

    def _notify(self, conn: Connection, channel: str, payload: str = "") -> None:
        if self.postgres:
            conn.execute(sa.select(sa.func.pg_notify(channel, payload)))

    @contextmanager
    def _tx(self, autocommit: bool = False) -> Iterator[Connection]:
        """A transaction; for ``autocommit`` on Postgres, none: a single statement is atomic
        on its own, reads that need no common snapshot need none, and BEGIN and COMMIT (or
        ROLLBACK) would be two more round trips."""
        if autocommit and self.postgres:
            with self.engine.connect() as conn:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
            return
        with self.engine.begin() as conn:
            yield conn

    def _retrying(self, body: Callable[[Connection], T], *, autocommit: bool = False) -> T:
        """Run ``body`` in one transaction, again while it fails for a passing reason.

        Passing reasons: Postgres broke a deadlock by aborting it (commits that reach across
        runs, a child telling its parent and a parent cancelling its children, lock two run
        rows in opposite orders), or the connection was lost (a server restart, a session
        ended by the server). The aborted side rolled back whole, so running it again is
        safe; one whose COMMIT was lost with its connection may have committed, and running
        it again is refused by the same guards that make every write idempotent (dedupe
        keys, the lease's token). Gives up after ``reconnect_timeout`` seconds.
        """
        deadline = time.monotonic() + self.reconnect_timeout
        pause = 0.01
        while True:
            try:
                with self._tx(autocommit) as conn:
                    return body(conn)
            except sa_exc.DBAPIError as exc:
                if not _passing(exc) or time.monotonic() + pause > deadline:
                    raise
                log.warning("journal transaction failed (%s); trying again", exc.orig)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _listening_connection(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool, for LISTEN."""
        return psycopg.connect(self._conninfo(), autocommit=True)

    def _conninfo(self) -> str:
        url = self.engine.url
        params = url.translate_connect_args(username="user", database="dbname")
        params.update({k: v for k, v in url.query.items() if isinstance(v, str)})
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


_CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
#: Connection exceptions, the server shutting down or not yet up, a session it ended.
_LOST = ("08", "57P01", "57P02", "57P03", "25P03")


def _passing(exc: sa_exc.DBAPIError) -> bool:
    """Whether a failed transaction may succeed when run again (see ``_retrying``)."""
    if exc.connection_invalidated or isinstance(exc.orig, _CONFLICTS):
        return True
    if not isinstance(exc.orig, psycopg.OperationalError):
        return False
    sqlstate = exc.orig.sqlstate
    return sqlstate is None or sqlstate.startswith(_LOST)
