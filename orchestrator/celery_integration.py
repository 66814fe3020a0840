"""Everything that touches Celery: the publisher, the replay task, outcome capture, the bootstep.

Activities are the app's own tasks, sent under their own names (routes, queues and Flower work
as usual) with a deterministic task id and headers naming run, command and attempt. Their
outcomes are caught with Celery's task signals in the worker that ran them and delivered to the
run's inbox, exactly once per attempt (the inbox's dedupe key). The replay task
``orchestrator.replay`` is JSON-only, ``acks_late`` and keeps no result.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps
from celery.exceptions import Ignore
from celery.signals import task_failure, task_postrun, task_success

from orchestrator import faults, payloads
from orchestrator.client import check_run_id
from orchestrator.config import Settings
from orchestrator.errors import ConfigurationError, PayloadError, describe_exception
from orchestrator.events import EventType
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


class CeleryPublisher:
    """The :class:`~orchestrator.publisher.Publisher` over a Celery app's broker."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def publish_tasks(self, tasks: Sequence[OutboxTask]) -> None:
        """Send activity and compensation tasks. Their results are not stored in the
        result backend: the journal keeps each outcome, and a second copy would cost a
        write per attempt (and, in a client, a subscription to a result nobody awaits).

        The first message of an attempt with no timeout carries ``mark_by``, until when no
        other copy of it can exist (see :mod:`orchestrator.start_marks`)."""
        mark_by = time.time() + self.settings.republish_after / 2
        with self.app.producer_or_acquire() as producer:
            for task in tasks:
                options: dict[str, Any] = {}
                if task.queue:
                    options["queue"] = task.queue
                headers: dict[str, Any] = {
                    HEADER_RUN: task.run_id,
                    HEADER_COMMAND: task.command_id,
                    HEADER_ATTEMPT: task.attempt,
                    HEADER_KIND: task.kind,
                }
                if not task.resent and task.timeout_seconds is None:
                    headers[HEADER_MARK_BY] = mark_by
                self.app.send_task(
                    task.task_name,
                    args=task.args,
                    kwargs=task.kwargs,
                    task_id=task.task_id,
                    headers=headers,
                    serializer="json",
                    ignore_result=True,
                    producer=producer,
                    **options,
                )

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
        orc.driver.advance(run_id)

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
        attempt, taken early, has its start recorded late (:mod:`orchestrator.start_marks`)."""
        meta = mine(task)
        if meta is None:
            return
        request = task.request
        again = request.retries or (request.delivery_info or {}).get("redelivered")
        if not again and orc.start_marks.defer(meta["task_id"], meta["mark_by"]):
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

    def on_postrun(sender: Any = None, **_: Any) -> None:
        meta = mine(sender)
        if meta is not None:
            orc.start_marks.settle(meta["task_id"])

    task_success.connect(on_success, weak=False)
    task_failure.connect(on_failure, weak=False)
    task_postrun.connect(on_postrun, weak=False)
    app.steps["worker"].add(_bootstep(orc, before_start))


def deliver_outcome(
    orc: Orchestrator, meta: dict[str, Any], *, failed: bool, data: dict[str, Any]
) -> None:
    """Journal one attempt's outcome and, if the run is free, replay it here and now."""
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
