"""Starting a run in the caller's transaction (``orc.start(..., connection=conn)``).

An application that writes its own rows and starts a workflow about them wants both or
neither: a crash between two commits loses one. So the run is inserted through the caller's
own connection, in the transaction the caller has open, and exists only if the caller
commits. Nobody can publish its first replay before that commit (nobody knows when it comes),
so the run is inserted with no replay in flight, and a ``NOTIFY`` on the dispatchers'
wake-up channel is sent in the same transaction: Postgres delivers notifications when, and
only if, the transaction commits, and the dispatcher that wakes takes the run as it takes
any runnable run. Only a Postgres journal can share a caller's transaction.

Before writing, the connection is checked: open, in a transaction (or about to open one
implicitly, as Django's and psycopg's non-autocommit connections do), and to this journal's
own database, recognised by the server's start time, the database's name and the ``runs``
table its search path finds. Anything else is a :class:`TransactionalStartError` and
nothing is written.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy.engine import Connection

from orchestrator.journal.sql.connection import WAKEUP_CHANNEL, SqlConnection
from orchestrator.journal.sql.rows import CREATE_RUN, run_row, started_row, step_rows
from orchestrator.model.errors import TransactionalStartError
from orchestrator.model.records import NewRun

#: What tells one database from another: the same server (started at the same instant),
#: database and ``runs`` table.
IDENTITY = (
    "SELECT current_database(), pg_postmaster_start_time()::text, to_regclass('runs')::oid::bigint"
)
NOTIFY = "SELECT pg_notify(%(channel)s, '')"


class ForeignTransactions(SqlConnection):
    """:meth:`~orchestrator.journal.protocol.Journal.create_run_in` on SQL."""

    def create_run_in(self, connection: Any, run: NewRun) -> bool:
        if not self.postgres:
            raise TransactionalStartError(
                "a SQLite journal cannot join a transaction of another connection; "
                "connection= needs a Postgres journal"
            )
        now = self._clock()
        # No replay in flight: the dispatcher takes the run once the caller commits.
        row = {**run_row(run, now), "dispatched_at": None}
        params = {**row, **step_rows([started_row(run, now)], [])}
        if isinstance(connection, Connection):
            return self._insert_sqlalchemy(connection, params)
        if isinstance(connection, psycopg.Connection):
            return self._insert_psycopg(connection, params)
        raise TransactionalStartError(
            "connection= takes a SQLAlchemy Connection or a psycopg 3 Connection, not "
            f"{type(connection).__module__}.{type(connection).__qualname__}"
        )

    def _insert_sqlalchemy(self, conn: Connection, params: dict[str, Any]) -> bool:
        if conn.closed or conn.invalidated:
            raise TransactionalStartError("the SQLAlchemy connection is closed")
        if conn.dialect.name != "postgresql":
            raise TransactionalStartError(
                f"the connection is to a {conn.dialect.name} database, not the journal's"
            )
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        raw = conn.connection.dbapi_connection
        if autocommit or getattr(raw, "autocommit", False):
            raise TransactionalStartError(
                "the connection is in autocommit mode, so there is no transaction to join"
            )
        if isinstance(raw, psycopg.Connection):
            _check_status(raw)
        self._check_same_database(_identity(lambda: conn.exec_driver_sql(IDENTITY).one()))
        created = conn.execute(CREATE_RUN, params).first() is not None
        conn.exec_driver_sql(NOTIFY, {"channel": WAKEUP_CHANNEL})
        return created

    def _insert_psycopg(self, conn: psycopg.Connection[Any], params: dict[str, Any]) -> bool:
        if conn.closed:
            raise TransactionalStartError("the psycopg connection is closed")
        _check_status(conn)
        if conn.autocommit and conn.info.transaction_status != pq.TransactionStatus.INTRANS:
            raise TransactionalStartError(
                "the psycopg connection is in autocommit mode with no transaction open: "
                "call orc.start inside `with conn.transaction():`"
            )
        self._check_same_database(_identity(lambda: conn.execute(IDENTITY).fetchone()))
        statement, values = self._create_run_text
        created = conn.execute(statement, values.construct_params(params)).fetchone() is not None
        conn.execute(NOTIFY, {"channel": WAKEUP_CHANNEL})
        return created

    @cached_property
    def _create_run_text(self) -> tuple[str, Any]:
        """CREATE_RUN as SQL text for a psycopg connection, and its compiled form (which
        orders its parameters)."""
        compiled = CREATE_RUN.compile(dialect=self.engine.dialect)
        return str(compiled), compiled

    def _check_same_database(self, theirs: tuple[Any, ...]) -> None:
        """Refuse a connection to a database other than the journal's (read afresh when the
        cached identity differs: the server may have restarted since)."""
        for fresh in (False, True):
            if fresh:
                self.__dict__.pop("_own_identity", None)
            if self._own_identity == theirs:
                return
        raise TransactionalStartError(
            f"the connection is to database {theirs[0]!r}, not to the journal's "
            f"({self._own_identity[0]!r} on its server)"
        )

    @cached_property
    def _own_identity(self) -> tuple[Any, ...]:
        with self.engine.connect() as conn:
            return tuple(conn.exec_driver_sql(IDENTITY).one())


def _check_status(conn: psycopg.Connection[Any]) -> None:
    status = conn.info.transaction_status
    if status == pq.TransactionStatus.INERROR:
        raise TransactionalStartError(
            "the connection's transaction has failed; roll it back before starting a run"
        )
    if status not in (pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS):
        raise TransactionalStartError(f"the connection is not usable (status {status.name})")


def _identity(read: Any) -> tuple[Any, ...]:
    try:
        return tuple(read())
    except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
        raise TransactionalStartError(f"the connection could not be read ({exc})") from exc


__all__ = ["ForeignTransactions"]
