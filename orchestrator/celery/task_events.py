"""Celery's task events for activities run in place, so that Flower lists them as it lists
a task that came by message.

A worker with task events on (``-E``, or ``worker_send_task_events``) sends, for each task
message, ``task-received`` when it takes it, ``task-started`` when a pool process starts it
and ``task-succeeded``, ``task-failed`` or ``task-retried`` when it ends. An activity run in
place (:mod:`orchestrator.celery.in_place`) has no message, so the worker's consumer sends
none of these: :class:`InPlaceEvents` sends the same events, under the activity's task id
and name, from the process that runs it. Whether events are on is read when the worker
starts; turning them on later from a monitor (``celery control enable_events``) reaches the
worker's consumer, not its pool processes, and does not change this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, states
from celery.utils.saferepr import saferepr

from orchestrator.model.records import OutboxTask

log = logging.getLogger(__name__)


class InPlaceEvents:
    """Sends the task events of activities run in place by this worker process."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        #: The worker's node name, set by :meth:`serve` when it sends task events.
        self.hostname: str | None = None

    def serve(self, worker: Any) -> None:
        """Send events for the activities ``worker`` runs in place, if it sends task events."""
        if worker.task_events:
            self.hostname = worker.hostname

    @contextmanager
    def running(self, task: OutboxTask) -> Iterator[_Outcome]:
        """Within: ``task`` runs in place. ``task-received`` and ``task-started`` are sent on
        entering; the ``_Outcome`` yielded sends how it ended."""
        found = self.app.tasks.get(task.task_name)
        if self.hostname is None or found is None or not found.send_events:
            yield _Outcome(None)
            return
        with self.app.events.default_dispatcher(hostname=self.hostname) as dispatcher:

            def send(kind: str, **fields: Any) -> None:
                try:
                    dispatcher.send(kind, uuid=task.task_id, **fields)
                except Exception:  # a monitor's loss: the activity runs and reports regardless
                    log.warning("%s of %s not sent", kind, task.task_id, exc_info=True)

            send(
                "task-received",
                name=task.task_name,
                args=saferepr(task.args),
                kwargs=saferepr(task.kwargs),
                root_id=task.task_id,
                parent_id=None,
                retries=0,
                eta=None,
                expires=None,
            )
            send("task-started")
            yield _Outcome(send)


class _Outcome:
    """Sends the event of how a task run in place ended (nothing when events are off)."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._began = time.monotonic()

    def ended(self, result: Any) -> None:
        """``result`` is the ``EagerResult`` of the task's ``apply``."""
        if self._send is None:
            return
        value = result.result
        if result.state == states.SUCCESS:
            self._send(
                "task-succeeded", result=saferepr(value), runtime=time.monotonic() - self._began
            )
        elif result.state == states.RETRY:
            cause = getattr(value, "exc", None) or value
            self._send("task-retried", exception=saferepr(cause), traceback=result.traceback)
        elif result.state == states.FAILURE:
            self._send("task-failed", exception=saferepr(value), traceback=result.traceback)
