"""The :class:`~orchestrator.runtime.publisher.Publisher` over a Celery app's broker.

Activities go out as the app's own tasks, under their own names, queues and routes, so Flower
and routing work as usual; replays go to the replay queue of the run's workflow version. In a
worker the publisher may keep one activity back to run in place
(:mod:`orchestrator.celery.in_place`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from celery import Celery, states
from celery.exceptions import Retry

from orchestrator.celery.headers import activity_headers
from orchestrator.celery.in_place import InPlace
from orchestrator.celery.task_events import InPlaceEvents
from orchestrator.journal.protocol import RunRef
from orchestrator.model.records import OutboxTask
from orchestrator.model.settings import Settings
from orchestrator.runtime import tracing

#: The name of the task that advances a run (registered by :mod:`orchestrator.celery.install`).
REPLAY_TASK = "orchestrator.replay"


class CeleryPublisher:
    """Publishes activity tasks and replays on ``app``'s broker; in a worker, it may keep an
    activity back to run in place (:mod:`orchestrator.celery.in_place`)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.in_place = InPlace(settings.eager_activities)
        self._local = threading.local()
        self.events = InPlaceEvents(app)

    def publish_tasks(self, tasks: Sequence[OutboxTask]) -> None:
        """Send activity and compensation tasks. Their results are not stored in the
        result backend: the journal keeps each outcome, and a second copy would cost a
        write per attempt (and, in a client, a subscription to a result nobody awaits)."""
        sent = self.in_place.keep(tasks)
        if len(sent) < len(tasks):
            self._local.kept_context = tracing.current()  # the step that kept it, traced
        if not sent:
            return
        mark_by = self._mark_by()
        with self.app.producer_or_acquire() as producer:
            for task in sent:
                headers = activity_headers(task, mark_by)
                with tracing.attempt_span(task.task_name, task.task_id, headers):
                    self._send(task, headers, producer=producer)

    def _send(self, task: OutboxTask, headers: dict[str, Any], **options: Any) -> None:
        if task.queue:
            options["queue"] = task.queue
        self.app.send_task(
            task.task_name,
            args=task.args,
            kwargs=task.kwargs,
            task_id=task.task_id,
            headers=headers,
            serializer="json",
            ignore_result=True,
            **options,
        )

    def _mark_by(self) -> float:
        """Until when no other copy of a first message sent now can exist (see
        :mod:`orchestrator.celery.start_marks`)."""
        return time.time() + self.settings.republish_after / 2

    def run_kept(self) -> None:
        """Run the activities this thread kept back (:meth:`InPlace.run_kept`)."""
        self.in_place.run_kept(self.run_in_place, self.publish_tasks)

    def run_in_place(self, task: OutboxTask) -> None:
        """Run ``task`` here, as a worker runs its message. A task's own ``self.retry()``
        is sent through the broker, with its countdown, as it would be from any worker
        (Celery's eager retry would run it again at once)."""
        headers = activity_headers(task, self._mark_by())
        parent, self._local.kept_context = getattr(self._local, "kept_context", None), None
        with (
            tracing.attempt_span(task.task_name, task.task_id, headers, parent),
            self.events.running(task) as outcome,
        ):
            result = self.app.tasks[task.task_name].apply(
                args=task.args,
                kwargs=task.kwargs,
                task_id=task.task_id,
                headers=headers,
                throw=False,
                ignore_result=True,
            )
            outcome.ended(result)
        retry = result.result
        if result.state == states.RETRY and isinstance(retry, Retry):
            when = {"eta" if isinstance(retry.when, datetime) else "countdown": retry.when}
            self._send(task, activity_headers(task, None), retries=1, **when)

    def serve(self, consumed: frozenset[str]) -> None:
        """Let this process, a worker consuming ``consumed``, run activities in place, unless
        the app sets a time limit for every task (``apply`` enforces none)."""
        conf = self.app.conf
        if not (conf.task_time_limit or conf.task_soft_time_limit):
            self.in_place.serve(functools.partial(self.may_run_here, consumed))

    def may_run_here(self, consumed: frozenset[str], task: OutboxTask) -> bool:
        """Whether a worker consuming ``consumed`` would be sent ``task`` and could run
        it in place: registered, routed to one of its queues, with no time or rate limit of
        its own (``apply`` enforces neither)."""
        found = self.app.tasks.get(task.task_name)
        if found is None or found.rate_limit or found.time_limit or found.soft_time_limit:
            return False
        options = {"queue": task.queue} if task.queue else {}
        try:
            route = self.app.amqp.router.route(options, task.task_name, task.args, task.kwargs)
        except Exception:  # a route a worker could not send to: leave it to publish
            return False
        queue = route.get("queue")
        return getattr(queue, "name", queue) in consumed

    def publish_replays(self, runs: Sequence[RunRef]) -> None:
        with self.app.producer_or_acquire() as producer:
            for run in runs:
                self.app.send_task(
                    REPLAY_TASK,
                    args=[run.run_id],
                    queue=self.settings.replay_queue(run.workflow, run.version),
                    serializer="json",
                    argsrepr=f"{run.workflow} v{run.version} {run.run_id}",
                    ignore_result=True,
                    producer=producer,
                )
