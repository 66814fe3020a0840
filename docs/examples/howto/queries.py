"""Queries and signal-with-start: a run publishes its state; a client starts and signals at once."""

from typing import Any

import pytest
from celery import Celery
from orchestrator import NotPublished, Orchestrator, UnknownRun, WorkflowContext

app = Celery("queries")
orc = Orchestrator(app)

imported: list[tuple[str, int, int]] = []


@app.task
def import_rows(path: str, start: int, count: int) -> None:
    imported.append((path, start, count))


# --8<-- [start:publish]
@orc.workflow(name="import")
async def import_file(ctx: WorkflowContext, path: str, rows: int) -> int:
    for start in range(0, rows, 1000):
        ctx.publish("progress", {"done": start, "of": rows})
        await ctx.activity(import_rows, path, start, 1000)
    ctx.publish("progress", {"done": rows, "of": rows})
    return rows


# --8<-- [end:publish]


@orc.workflow(name="cart")
async def cart(ctx: WorkflowContext, customer_id: str) -> list[dict[str, Any]]:
    """Collects ``add_item`` signals until ``checkout``."""
    items = []
    while True:
        item = await ctx.wait_signal("add_item", timeout=1.5)
        if item is None:
            return items
        items.append(item)


def test_a_query_reads_the_newest_value(workflows: Orchestrator) -> None:
    run_id = orc.start(import_file, "orders.csv", 3000).run_id
    # --8<-- [start:query]
    orc.query(run_id, "progress", timeout=10)  # wait up to 10 s for a first one
    orc.result(run_id, timeout=10)
    assert orc.query(run_id, "progress") == {"done": 3000, "of": 3000}  # the newest value
    # --8<-- [end:query]
    assert [start for _, start, _ in imported] == [0, 1000, 2000]


def test_a_query_with_nothing_published_raises(workflows: Orchestrator) -> None:
    run_id = orc.start(import_file, "empty.csv", 0).run_id
    orc.result(run_id, timeout=10)
    with pytest.raises(NotPublished):
        orc.query(run_id, "no-such-name")
    with pytest.raises(UnknownRun):
        orc.query("no-such-run", "progress")


def test_signal_with_start_starts_once_and_delivers_every_signal(workflows: Orchestrator) -> None:
    customer_id = "c-42"
    # --8<-- [start:signal_with_start]
    handle = orc.signal_with_start(
        cart,
        customer_id,  # the workflow and its arguments, as for orc.start
        run_id=f"cart-{customer_id}",
        signal="add_item",
        payload={"sku": "A-12", "qty": 1},
    )
    # --8<-- [end:signal_with_start]
    again = orc.signal_with_start(
        cart, customer_id, run_id=f"cart-{customer_id}", signal="add_item", payload={"sku": "B-7"}
    )
    assert again.run_id == handle.run_id == "cart-c-42"
    assert handle.result(timeout=10) == [{"sku": "A-12", "qty": 1}, {"sku": "B-7"}]
