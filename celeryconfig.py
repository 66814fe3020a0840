"""Celery and orchestrator settings of the reference deployment (``tasks``).

Every value that differs between machines comes from the environment, with defaults that
suit a local Postgres and Redis; nothing secret lives here. The non-default settings, and why:

- ``task_serializer`` / ``result_serializer`` / ``accept_content`` = JSON only: the
  orchestrator refuses a pickle-configured app, and JSON keeps activity payloads readable in
  the journal and safe to accept from the broker.
- ``orchestrator_journal_url``: the Postgres journal of record. Without it the orchestrator
  would fall back to a SQLite file in the working directory, which is for development only.
- ``worker_prefetch_multiplier = 1``: activities and replays vary a lot in length; a worker
  should not hoard messages that an idle worker could run now.
- ``task_acks_late = True``: a message is acknowledged after its task ran, so a worker killed
  mid-task leaves it to be redelivered instead of losing it (activities are at-least-once).
- ``worker_send_task_events`` / ``task_send_sent_event``: task events, so Flower shows
  activities and replays as they are sent, started and finished.
- ``worker_cancel_long_running_tasks_on_connection_loss = False``: an activity that is
  running when the broker connection drops finishes, and its outcome reaches the journal
  (Postgres, not the broker); a copy the broker redelivers after that is skipped, the
  attempt having ended. Said explicitly because Celery warns of a future default that
  cancels them.
- ``orchestrator_eager_activities = 5``: a worker that journals an activity's outcome runs
  the next activity it scheduled itself, up to five in a row per message, saving a broker
  hop and a pool hand-off for each. The other activities of a step are still sent, so
  parallel ones spread over the workers; and an activity run in place sends the same task
  events as one that came by message, so Flower shows it all the same.
- ``broker_connection_retry_on_startup = True``: keep retrying while the broker is still
  starting (containers come up in any order) and silence Celery 5's deprecation warning.
"""

from __future__ import annotations

import os

broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
result_backend = os.environ.get("CELERY_RESULT_BACKEND") or None

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

orchestrator_journal_url = os.environ.get(
    "ORCHESTRATOR_JOURNAL_URL", "postgresql://postgres@127.0.0.1:5432/continuum"
)

worker_prefetch_multiplier = 1
task_acks_late = True

worker_send_task_events = True
task_send_sent_event = True

worker_cancel_long_running_tasks_on_connection_loss = False

orchestrator_eager_activities = 5

broker_connection_retry_on_startup = True
