"""Outcome capture: an activity's start is guarded and its outcome journaled, in the worker
that ran it.

Outcomes are caught with Celery's task signals and delivered to the run's inbox, exactly once
per attempt (the inbox's dedupe key). The start guard runs just before a task's body and skips
a copy of an attempt that already started, ended or is no longer awaited.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery.exceptions import Ignore, Retry

from orchestrator.celery.headers import Attempt, attempt_of
from orchestrator.celery.host import Host
from orchestrator.journal.inbox import outcome_key
from orchestrator.journal.protocol import TaskStart
from orchestrator.model import payloads
from orchestrator.model.errors import PayloadError, describe_exception
from orchestrator.model.events import EventType
from orchestrator.model.records import InboxItem
from orchestrator.runtime import faults

log = logging.getLogger(__name__)


class Outcomes:
    """The start guard and the task-signal receivers of one app's orchestrator."""

    def __init__(self, app: Any, orc: Host) -> None:
        self.app = app
        self.orc = orc

    def before_start(self, task: Any) -> None:
        """Runs in the worker just before an activity's body: the attempt's start is
        recorded (its start-to-close deadline begins) and a copy of an attempt that already
        started, ended or is no longer awaited is skipped. A copy exists when the dispatcher
        re-published a message it took for lost that was only slow, or when the broker
        redelivers one whose worker died before acknowledging it (acks_late): that worker may
        have died in the body, so a redelivered copy of a started attempt runs, but one of an
        ended attempt does not, its outcome being journaled already. The first message of an
        attempt, taken early, has its start recorded late (:mod:`orchestrator.celery.start_marks`);
        an attempt run in place whose task acknowledges late is renewed instead, since no
        message of it exists for a broker to redeliver (:mod:`orchestrator.celery.in_place`)."""
        attempt = attempt_of(task, self.app)
        if attempt is None:
            return
        request = task.request
        again = request.retries or (request.delivery_info or {}).get("redelivered")
        renew = bool(request.is_eager and task.acks_late)
        marks = self.orc.start_marks
        if not again and marks.defer(attempt.task_id, attempt.mark_by, renew=renew):
            return
        start = self.orc.journal.mark_started(attempt.task_id)
        if start is TaskStart.STARTED:
            return
        if start is TaskStart.RUNNING and again:
            return  # the task's own Celery retry, or its broker's redelivery (acks_late)
        log.info("task %s skipped: its attempt is %s", request.id, start.value)
        raise Ignore()

    def on_success(self, sender: Any = None, result: Any = None, **_: Any) -> None:
        attempt = attempt_of(sender, self.app)
        if attempt is None:
            return
        limit = self.orc.settings.max_payload_bytes
        try:
            data = {"result": payloads.roundtrip(result, f"result of {sender.name}", limit)}
        except PayloadError as exc:
            deliver_outcome(self.orc, attempt, failed=True, data={"error": describe_exception(exc)})
            return
        deliver_outcome(self.orc, attempt, failed=False, data=data)

    def on_failure(
        self,
        sender: Any = None,
        exception: BaseException | None = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        attempt = attempt_of(sender, self.app)
        if attempt is None or exception is None:
            return
        tb = getattr(einfo, "traceback", None) or "".join(traceback.format_exception(exception))
        error = describe_exception(exception, tb)
        deliver_outcome(self.orc, attempt, failed=True, data={"error": error})

    def on_retry(
        self, sender: Any = None, request: Any = None, reason: Any = None, **_: Any
    ) -> None:
        """A task run in place asked for a retry: ``run_in_place`` sends it, rather than
        Celery's ``apply`` running it again at once."""
        in_place = getattr(request, "is_eager", False) and self.orc.publisher.in_place.running()
        if in_place and isinstance(reason, Retry) and attempt_of(sender, self.app):
            reason.sig = None

    def on_postrun(self, sender: Any = None, **_: Any) -> None:
        attempt = attempt_of(sender, self.app)
        if attempt is not None:
            self.orc.start_marks.settle(attempt.task_id)
            self.orc.publisher.run_kept()


def deliver_outcome(orc: Host, attempt: Attempt, *, failed: bool, data: dict[str, Any]) -> None:
    """Journal one attempt's outcome and, if the run is free, replay it here and now (and
    keep back an activity it schedules, to run in place: :mod:`orchestrator.celery.in_place`)."""
    compensation = attempt.kind == "compensation"
    if failed:
        kind = EventType.COMPENSATION_FAILED if compensation else EventType.ACTIVITY_FAILED
    else:
        kind = EventType.COMPENSATION_COMPLETED if compensation else EventType.ACTIVITY_COMPLETED
    faults.point("worker.before_outcome")
    item = InboxItem(
        dedupe_key=outcome_key(attempt.command_id, attempt.attempt),
        type=kind,
        command_id=attempt.command_id,
        attempt=attempt.attempt,
        data=data,
    )
    with orc.publisher.in_place.keeping():
        delivery = orc.driver.deliver(attempt.run_id, item, task_id=attempt.task_id)
    if not delivery.accepted:
        log.info(
            "outcome of %s not journaled: already journaled, its attempt superseded or never "
            "scheduled, or its run ended",
            attempt.task_id,
        )
    if delivery.dispatch is not None:
        orc.publisher.publish_replays([delivery.dispatch])
