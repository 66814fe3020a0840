"""Sagas: undo the steps already done when a later one fails."""

from typing import Any

from celery import Celery
from orchestrator import Orchestrator, RetryPolicy, WorkflowContext, WorkflowFailed

app = Celery("sagas")
orc = Orchestrator(app)


@app.task
def book_flight(trip: str) -> str:
    return f"flight-{trip}"


@app.task
def cancel_flight(booking: str) -> None: ...


@app.task
def book_hotel(trip: str) -> str:
    return f"hotel-{trip}"


@app.task
def cancel_hotel(booking: str) -> None: ...


@app.task
def book_car(trip: str) -> str:
    raise RuntimeError(f"no car left for {trip}")


# --8<-- [start:workflow]
@orc.workflow(name="trip")
async def trip(ctx: WorkflowContext, trip_id: str) -> dict[str, Any]:
    async with ctx.saga() as saga:
        flight = await ctx.activity(book_flight, trip_id)
        saga.compensate_with(cancel_flight.s(flight))
        hotel = await ctx.activity(book_hotel, trip_id)
        saga.compensate_with(cancel_hotel, hotel, retry=RetryPolicy(max_attempts=5))
        car = await ctx.activity(book_car, trip_id)  # fails: hotel, then flight, are undone
    return {"flight": flight, "hotel": hotel, "car": car}


# --8<-- [end:workflow]


# --8<-- [start:client]
def test_a_failed_step_undoes_the_steps_before_it(workflows: Orchestrator) -> None:
    handle = orc.start(trip, "t-1")
    try:
        handle.result(timeout=10)
        raise AssertionError("the trip should have failed")
    except WorkflowFailed as failed:
        assert failed.error_type.endswith("ActivityFailed")  # the error that ended the run
        assert "no car left for t-1" in failed.remote_message
    undone = [
        e.data["task"]
        for e in orc.history(handle.run_id)
        if e.type.value == "compensation_scheduled"
    ]
    assert undone == ["sagas.cancel_hotel", "sagas.cancel_flight"]


# --8<-- [end:client]
