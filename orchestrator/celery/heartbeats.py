"""Makes the activity attempt a worker runs the current one of its thread while its body
runs, so that ``orchestrator.heartbeat()`` and ``orchestrator.activity_info()`` find it
(:mod:`orchestrator.runtime.heartbeat`)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

from orchestrator.celery.headers import attempt_of
from orchestrator.celery.host import Host
from orchestrator.runtime import heartbeat


def install(app: Celery, orc: Host) -> None:
    """Connect the task signals that enter and leave an attempt (in place too: ``apply``
    sends them as a worker does)."""

    def on_prerun(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return  # another app's task: its own receiver enters or leaves
        attempt = attempt_of(sender, app)
        if attempt is None:
            heartbeat.leave()
            return
        heartbeat.enter(
            heartbeat.Current(
                orc.journal,
                run_id=attempt.run_id,
                command_id=attempt.command_id,
                attempt=attempt.attempt,
                task_id=attempt.task_id,
                task_name=str(sender.name),
                max_payload_bytes=orc.settings.max_payload_bytes,
            )
        )

    def on_postrun(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            heartbeat.leave()

    task_prerun.connect(on_prerun, weak=False)
    task_postrun.connect(on_postrun, weak=False)
