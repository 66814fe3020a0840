"""What the Celery publisher puts on the broker for an activity (memory broker, no worker)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from celery import Celery

from orchestrator.celery.headers import MARK_BY
from orchestrator.celery.publisher import CeleryPublisher
from orchestrator.model.records import OutboxTask
from orchestrator.model.settings import Settings
from tests.builders import task


def published(settings: Settings, *tasks: OutboxTask) -> list[Any]:
    """The messages ``tasks`` become on the broker, in order."""
    app = Celery("published", broker="memory://", backend="cache+memory://")
    app.conf.task_default_queue = "activities"
    CeleryPublisher(app, settings).publish_tasks(tasks)
    messages = []
    with app.connection_for_read() as conn, conn.SimpleQueue("activities") as queue:
        for _ in tasks:
            message = queue.get(timeout=5)
            message.ack()
            messages.append(message)
    return messages


def test_an_activity_is_sent_under_its_own_name_and_its_result_is_left_to_the_journal() -> None:
    [message] = published(Settings(), task("r1", 2, 3))
    headers = message.headers
    assert (headers["task"], headers["id"]) == ("shop.charge", "r1:2:3")
    assert message.payload[0] == ["order-1", 100]
    # The journal keeps the outcome: the worker stores no copy in the result backend.
    assert headers["ignore_result"] is True


def test_only_an_attempts_first_message_without_a_timeout_may_start_unrecorded() -> None:
    before = time.time()
    first, timed, resent = (
        m.headers
        for m in published(
            Settings(republish_after=60),
            task("r1", 1, 1),
            task("r1", 2, 1, timeout_seconds=5),
            task("r1", 3, 1, resent=True),
        )
    )
    after = time.time()
    # Half the dispatcher's wait before it re-publishes.
    assert before + 30 <= first[MARK_BY] <= after + 30
    # A timeout starts with the start: a killed worker leaves a timeout and a retry behind.
    assert MARK_BY not in timed
    # A copy: the original may still be queued, so the start is recorded before the body.
    assert MARK_BY not in resent


def test_a_worker_runs_in_place_only_what_it_would_be_sent_and_could_limit() -> None:
    app = Celery("in-place", broker="memory://")
    app.conf.update(task_default_queue="activities", task_routes={"shop.refund": "refunds"})
    limits: dict[str, dict[str, Any]] = {"shop.charge": {}, "shop.refund": {}}
    limits["shop.slow"] = {"time_limit": 5}
    for name, options in limits.items():

        def body(*args: Any) -> None:
            return None

        app.task(name=name, **options)(body)
    publisher = CeleryPublisher(app, Settings(eager_activities=3))
    publisher.serve(frozenset({"activities"}))
    eligible = publisher.in_place.eligible
    assert eligible is not None
    assert eligible(task())
    assert not eligible(replace(task(), queue="elsewhere"))  # a queue this worker does not consume
    assert not eligible(replace(task(), task_name="shop.refund"))  # routed elsewhere
    assert not eligible(replace(task(), task_name="shop.slow"))  # a time limit of its own
    assert not eligible(replace(task(), task_name="shop.unknown"))  # not registered here

    app.conf.task_time_limit = 60  # every task limited: nothing runs in place
    limited = CeleryPublisher(app, Settings(eager_activities=3))
    limited.serve(frozenset({"activities"}))
    assert limited.in_place.eligible is None
