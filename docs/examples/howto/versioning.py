"""Versioning: ``ctx.patched`` for a change in place, ``version=`` for a new definition."""

from typing import Any

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

app = Celery("versioning")
orc = Orchestrator(app)


@app.task
def charge(order: str) -> str:
    return f"charged {order}"


@app.task
def send_receipt(order: str) -> str:
    return f"receipt for {order}"


# --8<-- [start:patched]
@orc.workflow(name="checkout")
async def checkout(ctx: WorkflowContext, order: str) -> list[str]:
    done = [await ctx.activity(charge, order)]
    # Runs recorded before this change replay without the receipt; new runs send it.
    if ctx.patched("send-receipt"):
        done.append(await ctx.activity(send_receipt, order))
    return done


# --8<-- [end:patched]


# --8<-- [start:versions]
@orc.workflow(name="invoice", version="1")
async def invoice_v1(ctx: WorkflowContext, order: str) -> dict[str, Any]:
    return {"order": order, "layout": "plain"}


@orc.workflow(name="invoice", version="2")
async def invoice_v2(ctx: WorkflowContext, order: str) -> dict[str, Any]:
    return {"order": order, "layout": "letterhead"}


# --8<-- [end:versions]


def test_a_new_run_takes_the_patched_path_and_records_it(workflows: Orchestrator) -> None:
    handle = orc.start(checkout, "o-9")
    assert handle.result(timeout=10) == ["charged o-9", "receipt for o-9"]
    markers = [e.data for e in orc.history(handle.run_id) if e.type.value == "marker_recorded"]
    assert [m["name"] for m in markers] == ["send-receipt"]


# --8<-- [start:client]
def test_a_start_by_name_takes_the_newest_version_unless_told(workflows: Orchestrator) -> None:
    newest = orc.start("invoice", "o-1")
    pinned = orc.start("invoice", "o-2", version="1")
    assert newest.result(timeout=10)["layout"] == "letterhead"
    assert pinned.result(timeout=10)["layout"] == "plain"
    assert orc.describe(pinned.run_id).version == "1"


# --8<-- [end:client]
