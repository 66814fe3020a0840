"""``orc.start(..., connection=conn)`` on Postgres, with a real worker and dispatcher: the run
is written in the caller's transaction, with the caller's own rows, and runs only if the
caller commits; a connection that cannot carry it is refused with nothing written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from orchestrator.model.errors import TransactionalStartError, UnknownRun
from tests.integration.cluster import Cluster

ORDERS = "CREATE TABLE IF NOT EXISTS it_orders (id text PRIMARY KEY)"


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def engine(cluster: Cluster) -> Iterator[sa.Engine]:
    """The application's own engine on the journal's database, with its own table."""
    engine = sa.create_engine(cluster.url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql(ORDERS)
    yield engine
    engine.dispose()


def exists(cluster: Cluster, run_id: str) -> bool:
    try:
        cluster.orc.describe(run_id)
    except UnknownRun:
        return False
    return True


def order_saved(engine: sa.Engine, order_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.exec_driver_sql("SELECT 1 FROM it_orders WHERE id = %(id)s", {"id": order_id})
        return found.first() is not None


def new_id() -> str:
    return f"tx-{uuid.uuid4().hex[:10]}"


def test_a_sqlalchemy_start_runs_only_when_its_transaction_commits(
    cluster: Cluster, engine: sa.Engine
) -> None:
    kept, dropped = new_id(), new_id()
    with engine.connect() as conn:
        with conn.begin():
            conn.exec_driver_sql("INSERT INTO it_orders VALUES (%(id)s)", {"id": dropped})
            cluster.orc.start("sequential", 4, run_id=dropped, connection=conn)
            assert not exists(cluster, dropped)  # not before the caller commits
            conn.rollback()
        with conn.begin():
            conn.exec_driver_sql("INSERT INTO it_orders VALUES (%(id)s)", {"id": kept})
            handle = cluster.orc.start("sequential", 4, run_id=kept, connection=conn)

    assert handle.run_id == kept
    assert cluster.orc.result(kept, timeout=30) == 6
    assert order_saved(engine, kept)
    assert not exists(cluster, dropped) and not order_saved(engine, dropped)
    types = [e.type.value for e in cluster.orc.history(kept)]
    assert types[0] == "run_started" and types.count("activity_completed") == 4


def test_a_session_start_runs_with_the_sessions_commit(cluster: Cluster, engine: sa.Engine) -> None:
    from sqlalchemy.orm import Session

    run_id = new_id()
    with Session(engine) as session, session.begin():
        session.execute(sa.text("INSERT INTO it_orders VALUES (:id)"), {"id": run_id})
        cluster.orc.start("sequential", 3, run_id=run_id, connection=session.connection())

    assert cluster.orc.result(run_id, timeout=30) == 3
    assert order_saved(engine, run_id)


def test_a_psycopg_start_runs_only_when_its_transaction_commits(
    cluster: Cluster, engine: sa.Engine
) -> None:
    kept, dropped = new_id(), new_id()
    # As Django's connection is inside transaction.atomic(): not autocommit, the
    # transaction opened implicitly by the first statement.
    with psycopg.connect(libpq(cluster.url)) as conn:
        conn.execute("INSERT INTO it_orders VALUES (%s)", (dropped,))
        cluster.orc.start("sequential", 2, run_id=dropped, connection=conn)
        conn.rollback()
        cluster.orc.start("sequential", 5, run_id=kept, connection=conn)
        conn.execute("INSERT INTO it_orders VALUES (%s)", (kept,))
        assert not exists(cluster, kept)
        conn.commit()
    with psycopg.connect(libpq(cluster.url), autocommit=True) as conn, conn.transaction():
        other = new_id()
        cluster.orc.start("sequential", 1, run_id=other, connection=conn)

    assert cluster.orc.result(kept, timeout=30) == 10
    assert cluster.orc.result(other, timeout=30) == 0
    assert order_saved(engine, kept)
    assert not exists(cluster, dropped) and not order_saved(engine, dropped)


def test_starting_twice_in_one_transaction_makes_one_run(cluster: Cluster) -> None:
    run_id = new_id()
    with psycopg.connect(libpq(cluster.url)) as conn:
        for _ in range(2):
            cluster.orc.start("sequential", 2, run_id=run_id, connection=conn)
        conn.commit()
    assert cluster.orc.result(run_id, timeout=30) == 1
    assert [e.type.value for e in cluster.orc.history(run_id)].count("run_started") == 1


def _closed_psycopg(cluster: Cluster) -> Any:
    conn = psycopg.connect(libpq(cluster.url))
    conn.close()
    return conn


def _closed_sqlalchemy(cluster: Cluster) -> Any:
    engine = sa.create_engine(cluster.url.replace("postgresql://", "postgresql+psycopg://", 1))
    conn = engine.connect()
    conn.close()
    return conn


def _autocommit(cluster: Cluster) -> Any:
    return psycopg.connect(libpq(cluster.url), autocommit=True)


def _failed(cluster: Cluster) -> Any:
    conn = psycopg.connect(libpq(cluster.url))
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1/0")
    return conn


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_closed_psycopg, "psycopg connection is closed"),
        (_closed_sqlalchemy, "SQLAlchemy connection is closed"),
        (_autocommit, "autocommit mode"),
        (_failed, "transaction has failed"),
        (lambda _: object(), "takes a SQLAlchemy Connection or a psycopg 3 Connection"),
    ],
)
def test_a_connection_that_cannot_carry_the_start_is_refused(
    cluster: Cluster, make: Any, message: str
) -> None:
    run_id = new_id()
    conn = make(cluster)
    try:
        with pytest.raises(TransactionalStartError, match=message):
            cluster.orc.start("sequential", 1, run_id=run_id, connection=conn)
    finally:
        if hasattr(conn, "close"):
            conn.close()
    assert not exists(cluster, run_id)


def test_a_connection_to_another_database_is_refused(cluster: Cluster, postgres_url: str) -> None:
    run_id = new_id()
    with psycopg.connect(libpq(postgres_url)) as conn:
        with pytest.raises(TransactionalStartError, match="not to the journal's"):
            cluster.orc.start("sequential", 1, run_id=run_id, connection=conn)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    assert not exists(cluster, run_id)
