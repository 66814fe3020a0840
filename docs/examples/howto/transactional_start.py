"""Transactional start: the app's row and the run commit together, or neither does.

Runs on Postgres (``postgres_workflows`` in ``conftest.py``): the journal and the app's
``orders`` table are in one database.
"""

import psycopg
import pytest
from celery import Celery
from orchestrator import Orchestrator, UnknownRun, WorkflowContext
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

app = Celery("transactional_start")
orc = Orchestrator(app)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(primary_key=True)
    amount: Mapped[int | None] = mapped_column()


orders = Order.__table__
metadata = Base.metadata


@app.task
def charge(order_id: str) -> str:
    return f"charged {order_id}"


@orc.workflow(name="order")
async def order_workflow(ctx: WorkflowContext, order_id: str) -> str:
    return await ctx.activity(charge, order_id)


@pytest.fixture(scope="module")
def engine(postgres_workflows: Orchestrator) -> Engine:
    engine = create_engine(orc.settings.journal_url)  # the journal's database
    metadata.create_all(engine)
    return engine


def test_the_order_and_its_run_commit_together(engine: Engine) -> None:
    order_id, amount = "1001", 100
    # --8<-- [start:core]
    with engine.begin() as conn:
        conn.execute(orders.insert().values(id=order_id, amount=amount))
        orc.start(order_workflow, order_id, run_id=f"order-{order_id}", connection=conn)
    # committed here: the order and its run, or neither
    # --8<-- [end:core]
    assert orc.result("order-1001", timeout=10) == "charged 1001"


def test_a_rollback_leaves_neither(engine: Engine) -> None:
    order_id, amount = "1002", 100
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(orders.insert().values(id=order_id, amount=amount))
        orc.start(order_workflow, order_id, run_id=f"order-{order_id}", connection=conn)
        raise RuntimeError("the request failed after the start")
    with pytest.raises(UnknownRun):
        orc.describe("order-1002")
    with engine.connect() as conn:
        assert conn.scalar(select(orders.c.id).where(orders.c.id == order_id)) is None


def test_with_a_session(engine: Engine) -> None:
    order_id, amount = "1003", 250
    # --8<-- [start:session]
    with Session(engine) as session, session.begin():
        session.add(Order(id=order_id, amount=amount))
        orc.start(
            order_workflow, order_id, run_id=f"order-{order_id}", connection=session.connection()
        )
    # --8<-- [end:session]
    assert orc.result("order-1003", timeout=10) == "charged 1003"


def test_with_a_psycopg_connection(engine: Engine) -> None:
    dsn = make_url(orc.settings.journal_url).set(drivername="postgresql").render_as_string(False)
    order_id = "1004"
    # --8<-- [start:psycopg]
    with psycopg.connect(dsn) as conn:  # not autocommit: the first statement opens it
        conn.execute("INSERT INTO orders (id) VALUES (%s)", (order_id,))
        orc.start(order_workflow, order_id, run_id=order_id, connection=conn)
        conn.commit()
    # --8<-- [end:psycopg]
    assert orc.result("1004", timeout=10) == "charged 1004"
