"""``continuum dev``: worker, dispatcher and journal in one process, with no server installed.

The journal is a SQLite file and the broker is kombu's in-memory transport, so this is for
trying things and developing workflows, not for production. Messages in memory die with the
process; on start the journal's unfinished work is therefore handed out again (the file is
the only record, and this process its only user).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from orchestrator.journal.sql import migrate, schema
from orchestrator.model.events import Event, EventType, RunStatus

if TYPE_CHECKING:
    from orchestrator.client.facade import Orchestrator

DEFAULT_JOURNAL = "sqlite:///continuum-dev.sqlite3"

_SHOWN = {
    EventType.ACTIVITY_COMPLETED: "done",
    EventType.ACTIVITY_FAILED: "failed",
    EventType.ACTIVITY_TIMED_OUT: "timed out",
    EventType.COMPENSATION_COMPLETED: "compensated",
    EventType.COMPENSATION_FAILED: "compensation failed",
    EventType.TIMER_FIRED: "timer fired",
    EventType.SIGNAL_RECEIVED: "signal",
    EventType.CHILD_STARTED: "child started",
    EventType.CHILD_COMPLETED: "child done",
    EventType.CHILD_FAILED: "child failed",
    EventType.CHILD_CANCELLED: "child cancelled",
    EventType.CANCEL_REQUESTED: "cancel requested",
    EventType.RUN_CONTINUED: "continued as new",
}


def run(
    orc: Orchestrator,
    *,
    journal_url: str = DEFAULT_JOURNAL,
    start: str | None = None,
    args: list[Any] | None = None,
    run_id: str | None = None,
    concurrency: int = 4,
    echo: Callable[[str], None] = print,
) -> int:
    """Serve until Ctrl-C, or until the run started with ``start`` ends. Returns an exit
    code: 0, or 1 when that run did not complete."""
    app = orc.app
    app.conf.update(
        broker_url="memory://",
        broker_transport_options={"polling_interval": 0.01},
        result_backend=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_redirect_stdouts=False,
    )
    orc.configure(journal_url=journal_url, poll_interval=0.2, republish_after=5.0)
    migrate.upgrade(journal_url)
    resumed = _hand_out_unfinished(orc)
    echo(f"continuum dev: journal {journal_url}, in-memory broker")
    where = "--dev" if journal_url == DEFAULT_JOURNAL else f"--journal-url {journal_url}"
    echo(f"inspect its runs from another shell here: continuum runs list {where}")
    if resumed:
        echo(f"resuming {resumed} unfinished run(s) from the journal")

    stop = threading.Event()
    outcome: dict[str, int] = {"code": 0}
    threading.Thread(target=orc.dispatcher().run, args=(stop,), daemon=True).start()
    if start is not None:
        handle = orc.start(start, *(args or []), run_id=run_id)
        echo(f"started {start} as run {handle.run_id}")
        threading.Thread(
            target=_follow, args=(orc, handle.run_id, stop, outcome, echo), daemon=True
        ).start()
    # One process owned by whoever runs it: Celery's warning about running as root is
    # meant for shared workers, not for this.
    warnings.filterwarnings("ignore", message=".*superuser privileges.*")
    worker = app.Worker(
        hostname="dev@localhost",
        pool="threads",
        concurrency=concurrency,
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    )
    try:
        worker.start()
    except SystemExit:
        pass
    finally:
        stop.set()
    return outcome["code"]


def _hand_out_unfinished(orc: Orchestrator) -> int:
    """Make every unfinished run and task due again: the in-memory broker lost them."""
    engine = getattr(orc.journal, "engine", None)
    if engine is None:
        return 0
    with engine.begin() as conn:
        conn.execute(
            schema.tasks.update()
            .where(sa.not_(schema.tasks.c.finished))
            .values(published_at=None, started_at=None, deadline_at=None)
        )
        resumed = conn.execute(
            schema.runs.update()
            .where(schema.runs.c.status.in_(("runnable", "running", "suspended", "blocked")))
            .values(dispatched_at=None, lease_owner=None, lease_expires_at=None)
        ).rowcount
        conn.execute(
            schema.runs.update().where(schema.runs.c.status == "running").values(status="runnable")
        )
    return int(resumed)


def _follow(
    orc: Orchestrator,
    run_id: str,
    stop: threading.Event,
    outcome: dict[str, int],
    echo: Callable[[str], None],
) -> None:
    """Print each step of the run (and of its continuations) as it completes."""
    seen = 0
    tip = run_id
    names: dict[int | None, str] = {}

    def show_new() -> None:
        nonlocal seen
        for event in orc.journal.history(tip, after_seq=seen):
            seen = event.seq
            line = _describe(event, names)
            if line:
                echo(line)

    while not stop.wait(0.05):
        show_new()
        info = orc.journal.describe(tip)
        if info is None or not info.status.terminal:
            continue
        show_new()  # the steps committed since the read above, with the run's end
        if info.status is RunStatus.CONTINUED and info.continued_to_run_id:
            tip, seen, names = info.continued_to_run_id, 0, {}
            continue
        if info.status is RunStatus.COMPLETED:
            echo(f"result: {json.dumps(info.result, default=str)}")
        else:
            outcome["code"] = 1
            detail = info.error or {"reason": info.reason}
            echo(f"run {info.status.value}: {json.dumps(detail, default=str)}")
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own warm shutdown
        return


def _describe(event: Event, names: dict[int | None, str]) -> str | None:
    if event.type in (EventType.ACTIVITY_SCHEDULED, EventType.COMPENSATION_SCHEDULED):
        names[event.command_id] = str(event.data.get("task", "")).rsplit(".", 1)[-1]
        return None
    label = _SHOWN.get(event.type)
    if label is None:
        return None
    name = names.get(event.command_id, "")
    detail = ""
    if "result" in event.data:
        detail = json.dumps(event.data["result"], default=str)
    elif isinstance(event.data.get("error"), dict):
        detail = f"{event.data['error'].get('type')}: {event.data['error'].get('message')}"
    elif event.type is EventType.SIGNAL_RECEIVED:
        detail = f"{event.data.get('name')} {json.dumps(event.data.get('payload'), default=str)}"
    elif event.type is EventType.CHILD_STARTED:
        detail = f"{event.data.get('workflow')} {event.data.get('child_run_id')}"
    attempt = f" (attempt {event.attempt})" if event.attempt and event.attempt > 1 else ""
    return f"  {label:<14} {name}{attempt} {detail}".rstrip()
