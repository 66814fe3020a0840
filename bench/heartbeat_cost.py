"""``python -m bench.heartbeat_cost``: what ``orchestrator.heartbeat()`` costs per call in a
tight loop, when throttled (no journal write), in the body of an activity attempt.

The attempt is made current on an in-memory journal with a heartbeat timeout of an hour, so
after the first call (which writes) every call is throttled; the loop's own cost (an empty
call of the same shape) is measured too and subtracted. Prints nanoseconds per call, best
of five rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator import heartbeat as beat
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Batch
from orchestrator.model.events import RunStatus
from orchestrator.model.records import NewRun, OutboxTask
from orchestrator.runtime import heartbeat

CALLS = 1_000_000
ROUNDS = 5


def _current() -> None:
    journal = InMemoryJournal()
    journal.create_run(NewRun(run_id="r1", workflow="wf", version="1", args=[]))
    claimed = journal.claim("r1", "bench", 60)
    assert claimed is not None
    attempt = OutboxTask(
        task_id="r1:1:1",
        run_id="r1",
        command_id=1,
        attempt=1,
        task_name="bench.work",
        args=[],
        kwargs={},
        heartbeat_timeout=3600.0,
    )
    journal.commit(claimed.lease, Batch(tasks=[attempt], status=RunStatus.SUSPENDED))
    heartbeat.enter(
        heartbeat.Current(
            journal, run_id="r1", command_id=1, attempt=1, task_id="r1:1:1", task_name="work"
        )
    )
    beat({"done": 0})  # the one write; every call below is throttled


def _best(fn: Callable[[int], None]) -> float:
    """Best seconds per call of ``fn(i)`` over ``ROUNDS`` rounds of ``CALLS`` calls."""
    best = float("inf")
    for _ in range(ROUNDS):
        began = time.perf_counter()
        for i in range(CALLS):
            fn(i)
        best = min(best, (time.perf_counter() - began) / CALLS)
    return best


def _empty(_: object = None) -> None:
    return None


def main() -> None:
    _current()
    with_details = _best(lambda i: beat(i))
    without = _best(lambda _: beat())
    loop = _best(lambda i: _empty(i))
    heartbeat.leave()
    print(f"heartbeat(i), throttled: {(with_details - loop) * 1e9:.0f} ns per call")
    print(f"heartbeat(),  throttled: {(without - loop) * 1e9:.0f} ns per call")
    print(f"(the loop and a call of a no-op: {loop * 1e9:.0f} ns, subtracted)")


if __name__ == "__main__":
    main()
