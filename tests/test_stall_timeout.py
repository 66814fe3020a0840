"""A process paused inside a journal transaction holds its row locks for ``stall_timeout`` at most.

Postgres ends a session left idle inside a transaction (``idle_in_transaction_session_timeout``),
which is what frees a run whose worker was stopped mid-commit. The server arms that timer only
after a Sync message, so a client whose last message was anything else leaves the session
without a deadline. Each test writes several rows at once the way the journal does, then
pauses with the transaction open, as a stopped process would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from orchestrator.journal.sql import engines
from orchestrator.journal.sql.schema import nodes
from tests.integration.cluster import wait_for

STALL = 0.5


def _insert_rows(conn: Connection) -> None:
    conn.execute(
        nodes.insert(),
        [
            {"node_id": "n", "workflow": f"wf{i}", "version": "1", "heartbeat_at": 0.0}
            for i in range(3)
        ],
    )


def _update_rows(conn: Connection) -> None:
    _insert_rows(conn)
    conn.execute(
        nodes.update()
        .where(nodes.c.workflow == sa.bindparam("wf"))
        .values(heartbeat_at=sa.bindparam("at")),
        [{"wf": f"wf{i}", "at": 1.0} for i in range(3)],
    )


@pytest.mark.parametrize("write", [_insert_rows, _update_rows], ids=["insert", "update"])
def test_a_session_paused_after_a_multi_row_write_is_ended_by_the_server(
    postgres_url: str, write: Callable[[Connection], None]
) -> None:
    engine = engines.create(postgres_url, stall_timeout=STALL)
    admin = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    try:
        with engine.connect() as conn:
            pid = conn.execute(sa.select(sa.func.pg_backend_pid())).scalar_one()
            write(conn)

            def ended() -> bool:
                with psycopg.connect(admin, autocommit=True) as watcher:
                    found: Any = watcher.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                    ).fetchone()
                return found is None

            wait_for(ended, STALL + 5, f"the server to end session {pid} after {STALL}s idle")
            with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
                conn.execute(sa.select(1))
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(nodes)).scalar() == 0
    finally:
        engine.dispose()
