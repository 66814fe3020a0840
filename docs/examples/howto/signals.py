"""Signals: a run waits for a message from outside, with a deadline."""

from typing import Any

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

app = Celery("signals")
orc = Orchestrator(app)


# --8<-- [start:workflow]
@orc.workflow(name="expense")
async def expense(ctx: WorkflowContext, amount: int, wait_seconds: float) -> dict[str, Any]:
    """Wait for a reviewer's ``decision`` signal; no answer in time counts as a refusal."""
    decision = await ctx.wait_signal("decision", timeout=wait_seconds)
    if decision is None:
        return {"amount": amount, "approved": False, "why": "no answer in time"}
    return {"amount": amount, "approved": decision["approve"], "why": decision["note"]}


# --8<-- [end:workflow]


# --8<-- [start:client]
def test_a_signal_delivers_the_decision(workflows: Orchestrator) -> None:
    handle = orc.start(expense, 120, 3600, run_id="expense-1")
    orc.signal("expense-1", "decision", {"approve": True, "note": "within budget"})
    assert handle.result(timeout=10) == {"amount": 120, "approved": True, "why": "within budget"}


def test_no_signal_in_time_resolves_to_none(workflows: Orchestrator) -> None:
    handle = orc.start(expense, 9000, 0.5)
    assert handle.result(timeout=10)["why"] == "no answer in time"


# --8<-- [end:client]


def test_a_signal_sent_before_the_wait_is_kept(workflows: Orchestrator) -> None:
    # Signals are journaled in the run's inbox and wait, in order, until the code asks.
    handle = orc.start(expense, 50, 3600)
    orc.signal(handle.run_id, "decision", {"approve": False, "note": "duplicate"})
    assert handle.result(timeout=10)["why"] == "duplicate"
