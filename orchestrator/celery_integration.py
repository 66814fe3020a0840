"""Everything that touches Celery: the publisher, the replay task, outcome capture, the bootstep.

Activities are the app's own tasks, sent under their own names (routes, queues and Flower work
as usual) with a deterministic task id and headers naming run, command and attempt. Their
outcomes are caught with Celery's task signals in the worker that ran them and delivered to the
run's inbox, exactly once per attempt (the inbox's dedupe key). The replay task
``orchestrator.replay`` is JSON-only, ``acks_late`` and keeps no result.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps, states
from celery.exceptions import Ignore, Retry
from celery.signals import task_failure, task_postrun, task_retry, task_success

from orchestrator import faults, payloads
from orchestrator.client import check_run_id
from orchestrator.config import Settings
from orchestrator.errors import ConfigurationError, PayloadError, describe_exception
from orchestrator.events import EventType
from orchestrator.in_place import InPlace
from orchestrator.journal import (
    InboxItem,
    OutboxTask,
    RunRef,
    TaskStart,
    outcome_key,
    task_id_for,
)

if TYPE_CHECKING:
    from orchestrator.facade import Orchestrator

log = logging.getLogger(__name__)

REPLAY_TASK = "orchestrator.replay"
HEADER_RUN = "continuum_run_id"
HEADER_COMMAND = "continuum_command_id"
HEADER_ATTEMPT = "continuum_attempt"
HEADER_KIND = "continuum_kind"
HEADER_MARK_BY = "continuum_mark_by"

_PICKLE = {"pickle", "application/x-python-serialize"}


def check_serializers(app: Celery) -> None:
    """Refuse an app that sends or accepts pickle: orchestrator messages are JSON only."""
    conf = app.conf
    accepted = {str(c) for c in (conf.accept_content or ())}
    if str(conf.task_serializer) in _PICKLE or accepted & _PICKLE:
        raise ConfigurationError(
            f"Celery app {app.main!r} is configured for pickle (task_serializer="
            f"{conf.task_serializer!r}, accept_content={sorted(accepted)!r}); the orchestrator "
            "sends and accepts JSON only: set task_serializer='json' and accept_content=['json']"
        )


def activity_headers(task: OutboxTask, mark_by: float | None) -> dict[str, Any]:
    """The headers of an activity's message, naming its run, command and attempt. The first
    message of an attempt with no timeout carries ``mark_by``, until when no other copy of
    it can exist (see :mod:`orchestrator.start_marks`)."""
    headers: dict[str, Any] = {
        HEADER_RUN: task.run_id,
        HEADER_COMMAND: task.command_id,
        HEADER_ATTEMPT: task.attempt,
        HEADER_KIND: task.kind,
    }
    if mark_by is not None and not task.resent and task.timeout_seconds is None:
        headers[HEADER_MARK_BY] = mark_by
    return headers


class CeleryPublisher:
    """The :class:`~orchestrator.publisher.Publisher` over a Celery app's broker. In a worker
    it may keep an activity back to run in place (:mod:`orchestrator.in_place`)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.in_place = InPlace(settings.eager_activities)

    def publish_tasks(self, tasks: Sequence[OutboxTask]) -> None:
        """Send activity and compensation tasks. Their results are not stored in the
        result backend: the journal keeps each outcome, and a second copy would cost a
        write per attempt (and, in a client, a subscription to a result nobody awaits)."""
        tasks = self.in_place.keep(tasks)
        if not tasks:
            return
        mark_by = self._mark_by()
        with self.app.producer_or_acquire() as producer:
            for task in tasks:
                self._send(task, activity_headers(task, mark_by), producer=producer)

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
        :mod:`orchestrator.start_marks`)."""
        return time.time() + self.settings.republish_after / 2

    def run_kept(self) -> None:
        """Run the activities this thread kept back (:meth:`InPlace.run_kept`)."""
        self.in_place.run_kept(self.run_in_place, self.publish_tasks)

    def run_in_place(self, task: OutboxTask) -> None:
        """Run ``task`` here, as a worker runs its message. A task's own ``self.retry()``
        is sent through the broker, with its countdown, as it would be from any worker
        (Celery's eager retry would run it again at once)."""
        result = self.app.tasks[task.task_name].apply(
            args=task.args,
            kwargs=task.kwargs,
            task_id=task.task_id,
            headers=activity_headers(task, self._mark_by()),
            throw=False,
            ignore_result=True,
        )
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


def install(app: Celery, orc: Orchestrator) -> None:
    """Register the replay task, the outcome signals and the worker bootstep on ``app``."""

    @app.task(  # type: ignore[untyped-decorator]
        name=REPLAY_TASK,
        ignore_result=True,
        acks_late=True,
        serializer="json",
        shared=False,
    )
    def replay(run_id: Any) -> None:
        """Advance one run of a durable workflow (claim, replay, commit, publish)."""
        try:
            check_run_id(run_id)
        except ValueError:
            log.warning("replay request for a malformed run id %.80r dropped", run_id)
            return
        try:
            with orc.publisher.in_place.keeping():
                orc.driver.advance(run_id)
        finally:
            orc.publisher.run_kept()

    def mine(task: Any) -> dict[str, Any] | None:
        if getattr(task, "app", None) is not app:
            return None
        request = task.request
        run_id = getattr(request, HEADER_RUN, None)
        if run_id is None:
            run_id = (getattr(request, "headers", None) or {}).get(HEADER_RUN)
            if run_id is None:
                return None
            headers = request.headers
        else:
            headers = {
                h: getattr(request, h, None)
                for h in (HEADER_COMMAND, HEADER_ATTEMPT, HEADER_KIND, HEADER_MARK_BY)
            }
        try:
            meta = {
                "run_id": str(run_id),
                "command_id": int(headers[HEADER_COMMAND]),
                "attempt": int(headers[HEADER_ATTEMPT]),
                "kind": str(headers.get(HEADER_KIND) or "activity"),
                "task_id": request.id,
            }
        except (KeyError, TypeError, ValueError):
            log.warning("task %s carries malformed orchestrator headers; ignored", request.id)
            return None
        mark_by = headers.get(HEADER_MARK_BY)
        meta["mark_by"] = float(mark_by) if isinstance(mark_by, (int, float)) else None
        if request.id != task_id_for(meta["run_id"], meta["command_id"], meta["attempt"]):
            log.warning(
                "task %s: its id does not match its orchestrator headers; ignored", request.id
            )
            return None
        return meta

    def before_start(task: Any) -> None:
        """Runs in the worker just before an activity's body: the attempt's start is
        recorded (its start-to-close deadline begins) and a copy of an attempt that already
        started, ended or is no longer awaited is skipped. A copy exists when the dispatcher
        re-published a message it took for lost that was only slow, or when the broker
        redelivers one whose worker died before acknowledging it (acks_late): that worker may
        have died in the body, so a redelivered copy of a started attempt runs, but one of an
        ended attempt does not, its outcome being journaled already. The first message of an
        attempt, taken early, has its start recorded late (:mod:`orchestrator.start_marks`);
        an attempt run in place whose task acknowledges late is renewed instead, since no
        message of it exists for a broker to redeliver (:mod:`orchestrator.in_place`)."""
        meta = mine(task)
        if meta is None:
            return
        request = task.request
        again = request.retries or (request.delivery_info or {}).get("redelivered")
        renew = bool(request.is_eager and task.acks_late)
        if not again and orc.start_marks.defer(meta["task_id"], meta["mark_by"], renew=renew):
            return
        start = orc.journal.mark_started(meta["task_id"])
        if start is TaskStart.STARTED:
            return
        if start is TaskStart.RUNNING and again:
            return  # the task's own Celery retry, or its broker's redelivery (acks_late)
        log.info("task %s skipped: its attempt is %s", request.id, start.value)
        raise Ignore()

    def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
        meta = mine(sender)
        if meta is None:
            return
        try:
            data = {
                "result": payloads.roundtrip(
                    result, f"result of {sender.name}", orc.settings.max_payload_bytes
                )
            }
        except PayloadError as exc:
            deliver_outcome(orc, meta, failed=True, data={"error": describe_exception(exc)})
            return
        deliver_outcome(orc, meta, failed=False, data=data)

    def on_failure(
        sender: Any = None, exception: BaseException | None = None, einfo: Any = None, **_: Any
    ) -> None:
        meta = mine(sender)
        if meta is None or exception is None:
            return
        tb = getattr(einfo, "traceback", None) or "".join(traceback.format_exception(exception))
        deliver_outcome(orc, meta, failed=True, data={"error": describe_exception(exception, tb)})

    def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
        """A task run in place asked for a retry: ``run_in_place`` sends it, rather than
        Celery's ``apply`` running it again at once."""
        in_place = getattr(request, "is_eager", False) and orc.publisher.in_place.running()
        if in_place and isinstance(reason, Retry) and mine(sender):
            reason.sig = None

    def on_postrun(sender: Any = None, **_: Any) -> None:
        meta = mine(sender)
        if meta is not None:
            orc.start_marks.settle(meta["task_id"])
            orc.publisher.run_kept()

    task_success.connect(on_success, weak=False)
    task_failure.connect(on_failure, weak=False)
    task_retry.connect(on_retry, weak=False)
    task_postrun.connect(on_postrun, weak=False)
    app.steps["worker"].add(_bootstep(orc, before_start))


def deliver_outcome(
    orc: Orchestrator, meta: dict[str, Any], *, failed: bool, data: dict[str, Any]
) -> None:
    """Journal one attempt's outcome and, if the run is free, replay it here and now (and
    keep back an activity it schedules, to run in place: :mod:`orchestrator.in_place`)."""
    compensation = meta["kind"] == "compensation"
    if failed:
        kind = EventType.COMPENSATION_FAILED if compensation else EventType.ACTIVITY_FAILED
    else:
        kind = EventType.COMPENSATION_COMPLETED if compensation else EventType.ACTIVITY_COMPLETED
    faults.point("worker.before_outcome")
    item = InboxItem(
        dedupe_key=outcome_key(meta["command_id"], meta["attempt"]),
        type=kind,
        command_id=meta["command_id"],
        attempt=meta["attempt"],
        data=data,
    )
    with orc.publisher.in_place.keeping():
        delivery = orc.driver.deliver(meta["run_id"], item, task_id=meta["task_id"])
    if not delivery.accepted:
        log.info(
            "outcome of %s not journaled: already journaled, its attempt superseded or never "
            "scheduled, or its run ended",
            meta["task_id"],
        )
    if delivery.dispatch is not None:
        orc.publisher.publish_replays([delivery.dispatch])


def _guard(task: Any, check: Callable[[Any], None]) -> None:
    """Make ``check(task)`` run before the body of ``task`` (its class's ``before_start``,
    the hook Celery's tracer calls inside the task's error handling, where ``Ignore`` skips
    the body), keeping a ``before_start`` the task defines itself."""
    cls = type(task)
    if getattr(cls, "_continuum_guarded", False):
        return
    own = cls.before_start

    def before_start(self: Any, task_id: str, args: Any, kwargs: Any) -> None:
        check(self)
        own(self, task_id, args, kwargs)

    cls.before_start = before_start
    cls._continuum_guarded = True
    task.__trace__ = None  # built again, with the hook


def _bootstep(
    orc: Orchestrator, before_start: Callable[[Any], None]
) -> type[bootsteps.StartStopStep]:
    class OrchestratorStep(bootsteps.StartStopStep):  # type: ignore[misc]
        """Makes a worker of the app consume the replay queues of the workflow versions it has
        loaded, register those versions (with a heartbeat) and refuse pickle."""

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            check_serializers(worker.app)
            for task in list(worker.app.tasks.values()):
                if not task.name.startswith(("celery.", "orchestrator.")):
                    _guard(task, before_start)
            self.versions = [
                (name, version)
                for name, versions in orc.registry.versions().items()
                for version in versions
            ]
            for name, version in self.versions:
                worker.app.amqp.queues.select_add(orc.settings.replay_queue(name, version))
            orc.publisher.serve(frozenset(worker.app.amqp.queues.consume_from))
            self.node_id = f"{worker.hostname}:{os.getpid()}"
            self.stopping = threading.Event()
            self.thread: threading.Thread | None = None
            super().__init__(worker, **kwargs)

        def start(self, worker: Any) -> None:
            log.info("orchestrator: workflow versions loaded %s", self.versions)
            self.heartbeat()
            self.thread = threading.Thread(
                target=self.beat, name="orchestrator-heartbeat", daemon=True
            )
            self.thread.start()

        def heartbeat(self) -> None:
            revived = orc.journal.register_node(
                self.node_id, self.versions, node_ttl=orc.settings.node_ttl
            )
            if revived:
                log.info("orchestrator: %d runs waiting for these versions dispatched", revived)

        def beat(self) -> None:
            while not self.stopping.wait(orc.settings.heartbeat_interval):
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("orchestrator: heartbeat failed")

        def stop(self, worker: Any) -> None:
            self.stopping.set()
            try:
                orc.journal.unregister_node(self.node_id)
            except Exception:
                log.exception("orchestrator: could not unregister node %s", self.node_id)

    return OrchestratorStep
