"""The worker bootstep: what a worker of an app with an orchestrator does when it starts.

It consumes the replay queues of the workflow versions it has loaded, registers those versions
in the journal's node registry (with a heartbeat, so runs of a version no live node has wait
for one that does), puts the start guard before every task's body, and refuses pickle.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from celery import bootsteps

from orchestrator.celery.host import Host
from orchestrator.celery.serializers import check_serializers

log = logging.getLogger(__name__)


def guard(task: Any, check: Callable[[Any], None]) -> None:
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


def bootstep(orc: Host, before_start: Callable[[Any], None]) -> type[bootsteps.StartStopStep]:
    """The bootstep class for a worker of ``orc``'s app."""

    class OrchestratorStep(bootsteps.StartStopStep):  # type: ignore[misc]
        """Makes a worker of the app consume the replay queues of the workflow versions it has
        loaded, register those versions (with a heartbeat) and refuse pickle."""

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            check_serializers(worker.app)
            for task in list(worker.app.tasks.values()):
                if not task.name.startswith(("celery.", "orchestrator.")):
                    guard(task, before_start)
            self.versions = [
                (name, version)
                for name, versions in orc.registry.versions().items()
                for version in versions
            ]
            for name, version in self.versions:
                worker.app.amqp.queues.select_add(orc.settings.replay_queue(name, version))
            orc.publisher.serve(frozenset(worker.app.amqp.queues.consume_from))
            orc.publisher.events.serve(worker)
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
