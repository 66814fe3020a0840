"""What the journal's backends share for the authoring features (DESIGN.md §9): the order of
a continue-as-new chain's generations, which queries read newest first, and the fact an
attempt's heartbeat timeout leaves in its run's inbox."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from orchestrator.journal.inbox import timed_out_item
from orchestrator.journal.protocol import Published
from orchestrator.model import payloads
from orchestrator.model.deadlines import RUN_TIMEOUT_KEY, WORKFLOW_TIMEOUT, heartbeat_timeout_error
from orchestrator.model.events import EventType
from orchestrator.model.records import InboxItem


def newest_first(links: Mapping[str, tuple[str | None, float]]) -> list[str]:
    """A chain's run ids, its newest generation first, from each run's
    ``(continued_from_run_id, created_at)``: from the newest run no other continues, back
    along ``continued_from`` (creation times can tie; the links cannot)."""
    if not links:
        return []
    continued = {before for before, _ in links.values() if before is not None}
    tips = [run_id for run_id in links if run_id not in continued]
    run_id: str | None = max(tips or links, key=lambda r: links[r][1])
    order: list[str] = []
    while run_id is not None and run_id in links and run_id not in order:
        order.append(run_id)
        run_id = links[run_id][0]
    return order


def newest_published(
    generations: Sequence[str], rows: Iterable[tuple[str, int, str]], name: str
) -> Published | None:
    """The value published under ``name`` that a query returns: from ``rows`` (run id, seq
    and stored data of ``value_published`` events), the last one of the newest of
    ``generations`` (see :func:`newest_first`) that has one."""
    found: dict[str, Published] = {}
    for run_id, seq, text in rows:
        known = found.get(run_id)
        if known is not None and known.seq > seq:
            continue
        data = payloads.decode(text)
        if data.get("name") == name:
            found[run_id] = Published(run_id=run_id, seq=seq, value=data.get("value"))
    return next((found[g] for g in generations if g in found), None)


def heartbeat_timed_out_item(
    command_id: int, attempt: int, kind: str, task_name: str, heartbeat_timeout: float | None
) -> InboxItem:
    """The outcome of an attempt that went silent for longer than its heartbeat timeout: a
    timeout (so the activity's retry policy applies), under the attempt's outcome key."""
    item = timed_out_item(command_id, attempt, kind, task_name, None)
    error = heartbeat_timeout_error(task_name, attempt, heartbeat_timeout)
    return dataclasses.replace(item, data={"error": error})


def run_timed_out_item(run_id: str, timeout: float | None) -> InboxItem:
    """The fact that ``run_id``'s chain was still open at its deadline, ``timeout`` seconds
    after its start (the replayer fails the run with the error it carries)."""
    within = f" within {timeout:g} seconds" if timeout is not None else " by its deadline"
    error = {
        "type": WORKFLOW_TIMEOUT,
        "message": f"run {run_id} did not finish{within} (its execution timeout)",
        "traceback": None,
    }
    return InboxItem(
        dedupe_key=RUN_TIMEOUT_KEY, type=EventType.RUN_TIMED_OUT, data={"error": error}
    )
