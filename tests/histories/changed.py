"""The reference ``order`` workflow after a careless edit: it charges before it reserves.

Loaded with ``continuum -A tests.histories.changed replay ...`` to show that CI catches a
change that would block every order already running.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from orchestrator import Orchestrator, WorkflowContext

app = Celery("changed", set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], broker_url="memory://")
orc = Orchestrator(app)


@orc.workflow(name="order", version="1")
async def order(ctx: WorkflowContext, order_id: str, amount: int, items: list[Any]) -> Any:
    """Charges first: the histories recorded by the real workflow reserve first."""
    payment = await ctx.activity("tasks.charge", order_id, amount)
    reservation = await ctx.activity("tasks.reserve_stock", order_id, items)
    return {"charge": payment, "reservation": reservation}
