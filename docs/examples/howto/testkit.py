"""Testing workflows: the test kit's environment, and recorded histories replayed in CI.

These tests need no worker: ``WorkflowEnvironment`` runs the workflows in the test's thread,
on a clock that skips ahead.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from orchestrator import NonDeterminismError, Orchestrator, WorkflowContext
from orchestrator.testing import WorkflowEnvironment, replay

app = Celery("testkit")
orc = Orchestrator(app)

APPROVAL_LIMIT = 50_000  # larger orders wait for a manager's approval


@app.task
def charge(order_id: str, amount: int) -> str:
    raise ConnectionError("the real card service is not reachable from tests")


@app.task
def ship(order_id: str, items: list[str]) -> str:
    return f"shipment-{order_id}"


@app.task
def bill(customer_id: str, plan: str) -> None: ...


@orc.workflow(name="order")
async def order(ctx: WorkflowContext, order_id: str, amount: int, items: list[str]) -> Any:
    if amount > APPROVAL_LIMIT and not await ctx.wait_signal("approve", timeout=86400):
        return {"status": "refused"}
    payment = await ctx.activity(charge, order_id, amount)
    shipment = await ctx.activity(ship, order_id, items)
    return {"status": "shipped", "payment": payment, "shipment": shipment}


@orc.workflow(name="subscription")
async def subscription(
    ctx: WorkflowContext, customer_id: str, plan: str, period: float, periods: int
) -> dict[str, Any]:
    """Bills every ``period`` seconds, ``periods`` times, until a ``cancel`` signal."""
    billed = 0
    while billed < periods:
        await ctx.activity(bill, customer_id, plan)
        billed += 1
        reason = await ctx.wait_signal("cancel", timeout=period)
        if reason is not None:
            return {"periods_billed": billed, "cancelled": reason}
    return {"periods_billed": billed}


def fake_charge(order_id: str, amount: int) -> str:
    return f"payment-{order_id}"


def test_an_approved_order_ships() -> None:
    # --8<-- [start:environment]
    with WorkflowEnvironment(orc, activities={"charge": fake_charge}) as env:
        run_id = env.start(order, "o-1", 90_000, ["piano"])
        env.signal(run_id, "approve", True)
        assert env.result(run_id)["status"] == "shipped"
        # --8<-- [end:environment]
        assert env.activities.calls == {"testkit.charge": 1, "testkit.ship": 1}


def test_an_order_nobody_approves_is_refused_a_day_later() -> None:
    with WorkflowEnvironment(orc, activities={"charge": fake_charge}) as env:
        run_id = env.start(order, "o-2", 90_000, ["piano"])
        started = env.now()
        assert env.result(run_id) == {"status": "refused"}
        assert env.now() - started == timedelta(days=1)


def test_a_subscription_cancelled_mid_period() -> None:
    with WorkflowEnvironment(orc) as env:
        # --8<-- [start:advance]
        run_id = env.start(subscription, "c-1", "basic", 30 * 86400, 12)  # monthly billing
        env.advance(timedelta(days=45))  # two charges so far
        env.signal(run_id, "cancel", "too expensive")
        assert env.result(run_id)["periods_billed"] == 2
        # --8<-- [end:advance]


# --8<-- [start:replay]
# Each the JSON of `continuum runs history RUN_ID --json`:
HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_histories_still_replay(path: Path) -> None:
    replay(orc, path.read_text())


# --8<-- [end:replay]


def test_a_change_that_would_block_running_orders_fails_the_replay() -> None:
    # The next version ships before it charges: the recorded order charged first.
    changed_app = Celery("testkit_changed")
    changed = Orchestrator(changed_app)
    changed_app.task(name="testkit.charge")(fake_charge)
    changed_app.task(name="testkit.ship")(ship.run)

    @changed.workflow(name="order")
    async def order_v1_changed(
        ctx: WorkflowContext, order_id: str, amount: int, items: list[str]
    ) -> Any:
        if amount > APPROVAL_LIMIT and not await ctx.wait_signal("approve", timeout=86400):
            return {"status": "refused"}
        shipment = await ctx.activity("testkit.ship", order_id, items)
        payment = await ctx.activity("testkit.charge", order_id, amount)
        return {"status": "shipped", "payment": payment, "shipment": shipment}

    with pytest.raises(NonDeterminismError, match=r"issued activity_scheduled testkit\.ship"):
        replay(changed, (HISTORIES / "order-approved.json").read_text())
