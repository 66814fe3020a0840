"""The reference deployment: an order workflow over ordinary Celery tasks.

Run it with ``celery -A tasks worker`` (activities and replays) and
``continuum -A tasks dispatcher`` (timers, retries, recovery); start an order with
``continuum -A tasks start order --args '["o-1", 100, ["apple"]]'``, or try it all in one
process with no servers: ``continuum -A tasks dev --start order --args ...``. Settings come from
``celeryconfig`` (environment variables with local defaults).

Activities stand in for calls to an inventory, payment and shipping service. They are
at-least-once, so each derives its ids from its arguments: a retried or redelivered attempt
returns the same reservation, charge or shipment instead of making a second one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from orchestrator import Orchestrator, RetryPolicy, WorkflowContext

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
def pack(order_id: str, items: list[Any]) -> dict[str, Any]:
    """Pack the order's items into a parcel."""
    _work()
    return {"parcel_id": _ref("pcl", order_id, items), "items": len(items)}


@app.task
def ship(order_id: str, parcel_id: str) -> dict[str, Any]:
    """Hand the parcel to the carrier."""
    _work()
    tracking = _ref("trk", order_id, parcel_id)
    logger.info("shipped %s as %s", order_id, tracking)
    return {"tracking_number": tracking}


class OrderRejected(Exception):
    """A reviewer rejected the order, or nobody approved it in time."""


#: Orders at or above this amount (in cents) wait for an ``approve`` signal.
APPROVAL_THRESHOLD = 50_000
APPROVAL_TIMEOUT = timedelta(hours=24)
CHARGE_RETRY = RetryPolicy(max_attempts=3, initial_interval=1.0, non_retryable=("ValueError",))


@orc.workflow(name="shipment", version="1")
async def shipment(ctx: WorkflowContext, order_id: str, items: list[Any]) -> dict[str, Any]:
    """Pack and ship: a child workflow, so the warehouse side has its own history."""
    parcel = await ctx.activity(pack, order_id, items, timeout=60)
    sent = await ctx.activity(ship, order_id, parcel["parcel_id"], timeout=60)
    return {"parcel_id": parcel["parcel_id"], "tracking_number": sent["tracking_number"]}


@orc.workflow(name="order", version="1")
async def order(
    ctx: WorkflowContext, order_id: str, amount: int, items: list[Any]
) -> dict[str, Any]:
    """Reserve, charge, get approval for large orders, ship through a child workflow.

    Each step that changes the world registers its undo as a saga compensation: if a later
    step fails (payment refused, approval denied or timed out, shipping failed) or the order is
    cancelled, the charge is refunded and the stock released, newest first, and the error
    propagates. A durable timer holds the order briefly before shipping (survives restarts).
    """
    async with ctx.saga() as saga:
        reservation = await ctx.activity(reserve_stock, order_id, items, timeout=30)
        saga.compensate_with(release_stock.s(reservation["reservation_id"]))
        payment = await ctx.activity(charge, order_id, amount, retry=CHARGE_RETRY, timeout=30)
        saga.compensate_with(refund.s(payment["charge_id"]))
        approved: Any = True
        if amount >= APPROVAL_THRESHOLD:
            approved = await ctx.wait_signal("approve", timeout=APPROVAL_TIMEOUT)
            if not approved:
                reason = "timed out" if approved is None else "rejected"
                raise OrderRejected(f"order {order_id} was not approved ({reason})")
        await ctx.sleep(1)
        sent = await ctx.child(shipment, order_id, items)
    return {
        "order_id": order_id,
        "status": "shipped",
        "reservation_id": reservation["reservation_id"],
        "charge_id": payment["charge_id"],
        "amount": payment["amount"],
        "approved": approved,
        "tracking_number": sent["tracking_number"],
        "shipped_at": ctx.now().isoformat(),
    }


PLAN_PRICES = {"basic": 900, "pro": 2900}


@orc.workflow(name="subscription", version="1")
async def subscription(
    ctx: WorkflowContext,
    customer_id: str,
    plan: str,
    period_seconds: float,
    periods_left: int,
    billed: int = 0,
) -> dict[str, Any]:
    """Bill once per period until cancelled (a ``cancel`` signal) or out of periods.

    A long-lived workflow: each period continues as a new run, so no history grows without
    bound; signals and cancellation sent to the first run's id reach the current one.
    """
    if plan not in PLAN_PRICES:
        raise ValueError(f"unknown plan {plan!r}; one of {sorted(PLAN_PRICES)}")
    await ctx.activity(
        charge, f"{customer_id}-{billed + 1}", PLAN_PRICES[plan], retry=CHARGE_RETRY, timeout=30
    )
    billed += 1
    stop = await ctx.wait_signal("cancel", timeout=period_seconds)
    if stop is not None or periods_left <= 1:
        return {
            "customer_id": customer_id,
            "plan": plan,
            "periods_billed": billed,
            "cancelled": stop is not None,
        }
    return await ctx.continue_as_new(customer_id, plan, period_seconds, periods_left - 1, billed)


@app.task
def count_orders(day: str) -> dict[str, Any]:
    """Stands in for the nightly report's query (one row per day, so a repeat is harmless)."""
    logger.info("report for %s", day)
    return {"day": day, "report": _ref("report", day)}


@orc.workflow(name="nightly_report", version="1", concurrency=1)
async def nightly_report(ctx: WorkflowContext) -> dict[str, Any]:
    """The day's report, started every night at 02:00 UTC by the ``nightly-report`` schedule
    (one at a time: a slow night does not overlap the next)."""
    day = (ctx.now() - timedelta(days=1)).date().isoformat()
    return await ctx.activity(count_orders, day, retry=RetryPolicy(max_attempts=3), timeout=300)


@worker_ready.connect
def install_schedules(sender: Any = None, **_: Any) -> None:
    """Write the deployment's schedules when a worker of this app starts: the write is
    idempotent and keeps the slot a schedule waits for, so every worker may do it."""
    if getattr(sender, "app", None) is not app:
        return  # a worker of another app in the same process
    try:
        orc.schedule("nightly-report", nightly_report, cron="0 2 * * *", timezone="UTC")
    except Exception:
        logger.exception("the nightly-report schedule could not be written")
