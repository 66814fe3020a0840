"""Signal-with-start: deliver a signal to a run, starting the run first unless it exists, as
one step.

The run and the signal are written in one transaction
(:meth:`~orchestrator.journal.protocol.Journal.start_or_deliver`): a run it creates holds the
signal from its first replay on, and concurrent calls for one run id create one run and
deliver every signal, each once. A run that exists is signalled as ``orc.signal`` does it
(its chain's live tip; :class:`~orchestrator.RunClosed` when it has ended).
"""

from __future__ import annotations

from typing import Any

from orchestrator.client.runs import Client
from orchestrator.model.ids import check_run_id


def signal_with_start(
    client: Client,
    workflow: Any,
    *args: Any,
    run_id: str,
    signal: str,
    payload: Any = None,
    version: str | None = None,
    timeout: float | None = None,
    signal_id: str | None = None,
) -> str:
    """Start ``workflow(*args)`` as ``run_id`` unless that run exists, and deliver signal
    ``signal`` with ``payload`` to it. Everything is checked before anything is written.
    Returns the run id."""
    run, _ = client.new_run(workflow, args, check_run_id(run_id), version, timeout)
    item = client.signal_item(signal, payload, signal_id)
    if client.journal.describe(run.run_id) is not None:
        client.check_reused(run)  # an id of another workflow's run is refused, nothing sent
    created, delivery = client.journal.start_or_deliver(run, item)
    if delivery.dispatch is not None:
        client.publisher.publish_replays([delivery.dispatch])
    if not created and not delivery.accepted:
        # The run continued as new (or ended): its chain's tip takes the signal, or says why
        # it cannot. The item's dedupe key keeps a second delivery out.
        client.deliver(run.run_id, item, f"signal {signal!r}")
    return run.run_id
