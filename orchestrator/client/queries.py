"""Queries: the values a run published with ``ctx.publish``, read by ``orc.query``.

A published value is a journaled event, so a query reads history and never disturbs the run.
The run id resolves to its chain: the newest value published under the name by the newest
generation that published one, so a run that continued as new answers with its last
generation's value until the next generation publishes its own.
"""

from __future__ import annotations

import math
import time
from typing import Any

from orchestrator.client.runs import Client
from orchestrator.model.errors import NotPublished, UnknownRun
from orchestrator.model.events import RunStatus

#: Longest pause between two reads while waiting for a first value.
MAX_PAUSE = 0.5


def query(client: Client, run_id: str, name: str, timeout: float | None = None) -> Any:
    """The value last published under ``name`` by the run (its chain); with ``timeout``,
    wait up to that many seconds for a first one. :class:`~orchestrator.NotPublished` (a
    ``LookupError``) when there is none, :class:`~orchestrator.UnknownRun` for an unknown id."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"query needs the name a value was published under, not {name!r}")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout < 0
    ):
        raise ValueError(f"query timeout must be a number of seconds >= 0, not {timeout!r}")
    tip = client.tip(run_id)
    deadline = time.monotonic() + (timeout or 0.0)
    pause = 0.01
    while True:
        found = client.journal.latest_published(tip, name)
        if found is not None:
            return found.value
        left = deadline - time.monotonic()
        if left <= 0 or _ended(client, run_id):
            raise NotPublished(run_id, name)
        time.sleep(min(pause, left))
        pause = min(pause * 2, MAX_PAUSE)


def _ended(client: Client, run_id: str) -> bool:
    """Whether the run's chain has ended: it publishes nothing more."""
    info = client.journal.describe(client.tip(run_id))
    if info is None:
        raise UnknownRun(run_id)
    return info.status.terminal and info.status is not RunStatus.CONTINUED
