"""Activities run in place: the next activity of a run, run without a broker hop by the worker
process that has just scheduled it (what Temporal calls eager activity execution).

Off unless ``orchestrator_eager_activities`` is set. A worker process journaling an
activity's outcome, or replaying a run, may keep back one of the activities that step
scheduled instead of publishing it, and run it right after, in the same thread. The
Celery integration runs it through ``Task.apply`` with its usual task id and headers, so the
start guard, the start marks, the outcome's capture and the task signals all work as for a
delivered message. The outcome of that activity may keep back the next one, and so on: one
Celery message carries at most ``eager_activities`` of them, one after the other, in a loop
(not a recursion).

Only an activity this worker would have been sent anyway is kept: a task registered in its
app, routed to a queue it consumes, due now, and with no time or rate limit, its own or the
app's (``apply`` enforces neither). The other activities of the same step are published, so
parallel activities still spread over the workers.

What is given up: no message exists for an activity run in place, so the broker and Flower
never see it; and a carrying message whose task has a time limit of its own covers the whole
loop with it.

A worker that dies in the loop is recovered from as it would be for a message. An activity
with a timeout is retried when it times out. One without, whose task acknowledges early,
is re-published by the dispatcher if its start was not recorded yet, as a first message is
(:mod:`orchestrator.celery.start_marks`). One without, whose task acknowledges late, would have had
its message redelivered: in place, its start is never recorded, and it is renewed while it
runs instead, so the dispatcher re-publishes it once the dead worker stops renewing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from orchestrator.model.records import OutboxTask


class InPlace:
    """The activities one worker process keeps back to run itself, per thread.

    ``eligible`` says whether a task may be run here at all; it is given by the worker's
    bootstep (:meth:`serve`) and is ``None`` in any other process, which then never keeps
    a task back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.eligible: Callable[[OutboxTask], bool] | None = None
        self._local = threading.local()

    def serve(self, eligible: Callable[[OutboxTask], bool]) -> None:
        """Make this process a worker that may run the tasks ``eligible`` accepts."""
        if self.limit > 0:
            self.eligible = eligible

    @contextmanager
    def keeping(self) -> Iterator[None]:
        """Within: :meth:`keep` may keep back a task for this thread (while it journals an
        outcome or replays a run, and never while a task's own body runs)."""
        self._local.keeping = True
        try:
            yield
        finally:
            self._local.keeping = False

    def running(self) -> bool:
        """Whether this thread is running the tasks it kept back."""
        return getattr(self._local, "running", False)

    def keep(self, tasks: Sequence[OutboxTask]) -> Sequence[OutboxTask]:
        """The tasks to publish, less the one this thread keeps back, if any."""
        local = self._local
        if (
            self.eligible is None
            or not getattr(local, "keeping", False)
            or getattr(local, "kept", None) is not None
            or getattr(local, "ran", 0) >= self.limit
        ):
            return tasks
        for i, task in enumerate(tasks):
            if self.eligible(task):
                local.kept = task
                return [*tasks[:i], *tasks[i + 1 :]]
        return tasks

    def run_kept(
        self, run: Callable[[OutboxTask], None], publish: Callable[[Sequence[OutboxTask]], None]
    ) -> None:
        """Run the task this thread kept back, then the one its outcome kept back, and so
        on, up to the limit. Called by the handler of the carrying message; a call made
        while the loop runs (from a task run in place) returns at once. A task left kept
        when ``run`` raises is published."""
        local = self._local
        if self.running():
            return
        local.running = True
        local.ran = 0
        try:
            while (task := getattr(local, "kept", None)) is not None:
                local.kept = None
                local.ran += 1
                run(task)
        finally:
            left, local.kept = getattr(local, "kept", None), None
            local.running, local.ran = False, 0
            if left is not None:
                publish([left])
