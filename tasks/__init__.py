"""The reference deployment: an order workflow over ordinary Celery tasks.

Run it with ``celery -A tasks worker`` (activities and replays) and
``continuum -A tasks dispatcher`` (timers, retries, recovery); start an order with
``continuum -A tasks start order --args '["o-1", 100, ["apple"]]'``. Settings come from
``celeryconfig`` (environment variables with local defaults).

Activities stand in for calls to an inventory, payment and shipping service. They are
at-least-once, so each derives its ids from its arguments: a retried or redelivered attempt
returns the same reservation, charge or shipment instead of making a second one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from celery import Celery

from orchestrator import ActivityFailed, Orchestrator, RetryPolicy, WorkflowContext

logger = logging.getLogger(__name__)

app = Celery("tasks")
app.config_from_object("celeryconfig")
orc = Orchestrator(app)

#: Largest amount (in cents) the simulated payment provider accepts.
CHARGE_LIMIT = 1_000_000


def _ref(prefix: str, *parts: Any) -> str:
    """A stable id for an external effect, so repeating an attempt repeats the same effect."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
    return f"{prefix}-{digest}"


def _work(seconds: float = 0.05) -> None:
    """Stand-in for the latency of a remote call."""
    time.sleep(seconds)


@app.task
def reserve_stock(order_id: str, items: list[Any]) -> dict[str, Any]:
    """Hold ``items`` in the warehouse for this order."""
    if not items:
        raise ValueError(f"order {order_id} has no items to reserve")
    _work()
    reservation_id = _ref("res", order_id, items)
    logger.info("reserved %d item(s) for %s as %s", len(items), order_id, reservation_id)
    return {"reservation_id": reservation_id, "items": items}


@app.task
def charge(order_id: str, amount: int) -> dict[str, Any]:
    """Take payment; an amount the provider refuses fails the activity."""
    if not 0 < amount <= CHARGE_LIMIT:
        raise ValueError(f"payment refused for {order_id}: amount {amount} out of range")
    _work()
    charge_id = _ref("ch", order_id, amount)
    logger.info("charged %d for %s as %s", amount, order_id, charge_id)
    return {"charge_id": charge_id, "amount": amount}


@app.task
def release_stock(reservation_id: str) -> dict[str, Any]:
    """Give back a reservation (compensates ``reserve_stock``); releasing twice is harmless."""
    _work()
    logger.info("released %s", reservation_id)
    return {"reservation_id": reservation_id, "released": True}


@app.task
def refund(charge_id: str) -> dict[str, Any]:
    """Return a payment (compensates ``charge``); refunding twice is harmless."""
    _work()
    logger.info("refunded %s", charge_id)
    return {"charge_id": charge_id, "refunded": True}


@app.task
def ship(order_id: str) -> dict[str, Any]:
    """Hand the order to the carrier."""
    _work()
    tracking = _ref("trk", order_id)
    logger.info("shipped %s as %s", order_id, tracking)
    return {"tracking_number": tracking}


@orc.workflow(name="order", version="1")
async def order(
    ctx: WorkflowContext, order_id: str, amount: int, items: list[Any]
) -> dict[str, Any]:
    """Reserve, charge, wait for the packing slot, ship.

    Payment is the step that fails for transient reasons, so it is retried and bounded by a
    timeout. If it still fails, the reservation is released before the failure propagates,
    so stock is never held for an order that was not paid.
    """
    reservation = await ctx.activity(reserve_stock, order_id, items)
    try:
        payment = await ctx.activity(
            charge, order_id, amount, retry=RetryPolicy(max_attempts=3), timeout=30
        )
    except ActivityFailed:
        await ctx.activity(release_stock, reservation["reservation_id"])
        raise
    # A durable timer: the wait survives worker and dispatcher restarts.
    await ctx.sleep(1)
    shipment = await ctx.activity(ship, order_id)
    return {
        "order_id": order_id,
        "status": "shipped",
        "reservation_id": reservation["reservation_id"],
        "charge_id": payment["charge_id"],
        "amount": payment["amount"],
        "tracking_number": shipment["tracking_number"],
        "shipped_at": ctx.now().isoformat(),
    }
