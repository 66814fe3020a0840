"""What the Celery publisher puts on the broker for an activity (memory broker, no worker)."""

from __future__ import annotations

from celery import Celery

from orchestrator.celery_integration import CeleryPublisher
from orchestrator.config import Settings
from tests.builders import task


def test_an_activity_is_sent_under_its_own_name_and_its_result_is_left_to_the_journal() -> None:
    app = Celery("published", broker="memory://", backend="cache+memory://")
    app.conf.task_default_queue = "activities"
    CeleryPublisher(app, Settings()).publish_tasks([task("r1", 2, 3)])
    with app.connection_for_read() as conn, conn.SimpleQueue("activities") as queue:
        message = queue.get(timeout=5)
        message.ack()
    headers = message.headers
    assert (headers["task"], headers["id"]) == ("shop.charge", "r1:2:3")
    assert message.payload[0] == ["order-1", 100]
    # The journal keeps the outcome: the worker stores no copy in the result backend.
    assert headers["ignore_result"] is True
