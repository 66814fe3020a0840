"""The test kit's broker: a publisher that queues work, and the runner of activities in-process.

The driver and the dispatcher publish as they do in production; here nothing leaves the
process: replays and tasks wait in two queues that the environment drains, one item at a
time (a loop, not a recursion, so a run of a thousand steps does not deepen the stack).
An activity runs as a worker would run it: its start is recorded (the start-to-close
deadline begins), the task function (or its replacement) is called, and its outcome is
delivered to the run's inbox under the attempt's dedupe key, where the driver replays it at
once.
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.journal.inbox import outcome_key
from orchestrator.journal.protocol import Journal, RunRef, TaskStart
from orchestrator.model import payloads
from orchestrator.model.errors import PayloadError, describe_exception
from orchestrator.model.events import EventType
from orchestrator.model.records import InboxItem, OutboxTask
from orchestrator.runtime.dispatcher import BATCH
from orchestrator.runtime.driver import Driver

Activity = Callable[..., Any]


class QueuePublisher:
    """A :class:`~orchestrator.runtime.publisher.Publisher` that keeps what it is given, in
    order, for the environment to run."""

    def __init__(self) -> None:
        self.tasks: deque[OutboxTask] = deque()
        self.replays: deque[RunRef] = deque()

    def publish_tasks(self, tasks: Sequence[OutboxTask]) -> None:
        self.tasks.extend(tasks)

    def publish_replays(self, runs: Sequence[RunRef]) -> None:
        self.replays.extend(runs)


class ActivityRunner:
    """Runs activity and compensation tasks in this process, by task name: a replacement
    given to the environment, else the app's own task (called as Celery calls it directly,
    ``task(*args, **kwargs)``)."""

    def __init__(
        self,
        journal: Journal,
        driver: Driver,
        publisher: QueuePublisher,
        clock: Callable[[], float],
        tasks: Mapping[str, Activity],
        replacements: Mapping[str, Activity],
        max_payload_bytes: int,
    ) -> None:
        self.journal = journal
        self.driver = driver
        self.publisher = publisher
        self.clock = clock
        self.tasks = tasks
        self.replacements = replacements
        self.max_payload_bytes = max_payload_bytes
        #: How many times each task name was called (replacements included).
        self.calls: dict[str, int] = {}

    def find(self, name: str) -> Activity:
        """The callable that runs task ``name``; a clear error when there is none."""
        found = (
            self.replacements.get(name)
            or self.replacements.get(name.rpartition(".")[2])
            or self.tasks.get(name)
        )
        if found is None:
            raise LookupError(
                f"activity {name!r} is neither a task of the app nor a replacement given in "
                "WorkflowEnvironment(activities={...})"
            )
        return found

    def run(self, task: OutboxTask) -> None:
        """One attempt, start to outcome. A copy of an attempt that started or ended already
        is skipped, as a worker skips it."""
        fn = self.find(task.task_name)
        if self.journal.mark_started(task.task_id) is not TaskStart.STARTED:
            return
        self.calls[task.task_name] = self.calls.get(task.task_name, 0) + 1
        began = self.clock()
        failed, data = self._call(fn, task)
        if self.clock() > began:
            # An attempt that took more (virtual) time than its timeout has timed out
            # already; its own outcome then comes late and is not taken, as in production.
            self.publisher.publish_replays(self.journal.expire_tasks(BATCH))
        item = InboxItem(
            dedupe_key=outcome_key(task.command_id, task.attempt),
            type=_outcome_type(task.kind, failed),
            command_id=task.command_id,
            attempt=task.attempt,
            data=data,
        )
        delivery = self.driver.deliver(task.run_id, item, task_id=task.task_id)
        if delivery.dispatch is not None:
            self.publisher.publish_replays([delivery.dispatch])

    def _call(self, fn: Activity, task: OutboxTask) -> tuple[bool, dict[str, Any]]:
        try:
            result = fn(*task.args, **task.kwargs)
        except Exception as exc:
            return True, {"error": describe_exception(exc, traceback.format_exc())}
        try:
            what = f"result of {task.task_name}"
            return False, {"result": payloads.roundtrip(result, what, self.max_payload_bytes)}
        except PayloadError as exc:
            return True, {"error": describe_exception(exc)}


def _outcome_type(kind: str, failed: bool) -> EventType:
    if kind == "compensation":
        return EventType.COMPENSATION_FAILED if failed else EventType.COMPENSATION_COMPLETED
    return EventType.ACTIVITY_FAILED if failed else EventType.ACTIVITY_COMPLETED
