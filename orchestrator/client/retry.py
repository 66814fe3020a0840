"""Retrying a failed run from a client: the journal writes the retry, the client sends it.

What a retry keeps and runs again is :mod:`orchestrator.journal.retry`'s to say; here the
run id is resolved to its chain's live tip (a retried run's tip is its retry, so retrying
the original again retries the latest failure) and what the retry needs is published: its
replay, and the attempts that were open when the original failed. If this process dies
before publishing, the dispatcher sends both, as it does for any commit.
"""

from __future__ import annotations

from orchestrator.client.runs import Client


def retry(client: Client, run_id: str) -> str:
    """Retry the failed run ``run_id`` (its chain's live tip); returns the retry's run id.

    :class:`~orchestrator.model.errors.NotRetryable` when the tip is not failed;
    :class:`~orchestrator.model.errors.UnknownRun` for an unknown id.
    """
    retried = client.journal.retry_run(client.tip(run_id))
    if retried.tasks:
        client.publisher.publish_tasks(retried.tasks)
    client.publisher.publish_replays([retried.run])
    return retried.run.run_id
