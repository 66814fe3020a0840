"""What an :class:`~orchestrator.Orchestrator` adds to its Celery app: the replay task, the
outcome signals and the worker bootstep.

The replay task ``orchestrator.replay`` is JSON-only, ``acks_late`` and keeps no result.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import task_failure, task_postrun, task_retry, task_success

from orchestrator.celery import heartbeats
from orchestrator.celery.bootstep import bootstep
from orchestrator.celery.host import Host
from orchestrator.celery.outcomes import Outcomes
from orchestrator.celery.publisher import REPLAY_TASK
from orchestrator.model.ids import check_run_id

log = logging.getLogger(__name__)


def install(app: Celery, orc: Host) -> None:
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

    outcomes = Outcomes(app, orc)
    # Celery tells receivers apart by their function, so the bound methods of two apps'
    # Outcomes would be one receiver, and the second app's connect a no-op: name each.
    uid = f"orchestrator.outcomes.{id(outcomes)}"
    task_success.connect(outcomes.on_success, weak=False, dispatch_uid=f"{uid}.success")
    task_failure.connect(outcomes.on_failure, weak=False, dispatch_uid=f"{uid}.failure")
    task_retry.connect(outcomes.on_retry, weak=False, dispatch_uid=f"{uid}.retry")
    task_postrun.connect(outcomes.on_postrun, weak=False, dispatch_uid=f"{uid}.postrun")
    app.steps["worker"].add(bootstep(orc, outcomes.before_start))
    heartbeats.install(app, orc)
