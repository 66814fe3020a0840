"""The first tests: run the workflow for real, then read what its run recorded."""

from orchestrator import Orchestrator

from hello import hello, orc


def test_hello_greets_loudly(workflows: Orchestrator) -> None:
    handle = orc.start(hello, "world")
    assert handle.result(timeout=10) == "HELLO, WORLD!"


def test_the_history_records_each_step(workflows: Orchestrator) -> None:
    handle = orc.start(hello, "history", run_id="hello-history")
    handle.result(timeout=10)
    steps = [event.type.value for event in orc.history("hello-history")]
    assert steps == [
        "run_started",
        "activity_scheduled",
        "activity_completed",
        "timer_started",
        "timer_fired",
        "activity_scheduled",
        "activity_completed",
        "run_completed",
    ]
