"""What an Orchestrator connects to its app's Celery signals."""

from celery import Celery
from celery.signals import task_failure, task_postrun, task_retry, task_success

from orchestrator import Orchestrator


def test_each_orchestrator_in_a_process_receives_its_tasks_outcomes() -> None:
    # Celery identifies a bound method by its function alone: without a uid of its own, the
    # second app's receivers would be taken for the first's and dropped.
    signals = (task_success, task_failure, task_retry, task_postrun)
    before = [len(signal.receivers) for signal in signals]
    Orchestrator(Celery("first"))
    Orchestrator(Celery("second"))
    assert [len(signal.receivers) - n for signal, n in zip(signals, before, strict=True)] == [
        2,
        2,
        2,
        4,  # each app's outcomes and heartbeat receivers
    ]
