"""Invariants of runs as a journal database stores them: each history on its own
(:func:`tests.invariants.check_history`), the links between runs, what is left behind by a
run that ended, and the activity executions measured against the attempts journaled.

"Exactly once journaled, at least once executed" is measured, not assumed: the test
activities record every execution (see :mod:`tests.chaos.chaosapp`), and :func:`check_runs`
holds those records against the ``activity_scheduled`` / ``compensation_scheduled`` events
and the outcomes of each command.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model.events import Event, EventType, RunInfo, RunStatus
from tests.invariants import check_history

_TERMINAL_EVENT = {
    RunStatus.COMPLETED: EventType.RUN_COMPLETED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
    RunStatus.CONTINUED: EventType.RUN_CONTINUED,
}
_CHILD_END = {
    EventType.CHILD_COMPLETED: RunStatus.COMPLETED,
    EventType.CHILD_FAILED: RunStatus.FAILED,
    EventType.CHILD_CANCELLED: RunStatus.CANCELLED,
}
_SCHEDULED = (EventType.ACTIVITY_SCHEDULED, EventType.COMPENSATION_SCHEDULED)
#: Outcomes that only an execution produces (a timeout is the absence of one).
_EXECUTED = (
    EventType.ACTIVITY_COMPLETED,
    EventType.ACTIVITY_FAILED,
    EventType.COMPENSATION_COMPLETED,
)


# -- executions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Execution:
    task_id: str
    task_name: str
    pid: int
    started_at: float
    seconds: float


@dataclass
class Executions:
    """Activity executions recorded by the test activities, keyed by Celery task id
    (``run:command:attempt``): ``started`` counts every execution, ``finished`` those that
    returned or raised; ``open`` are the started ones never finished (killed mid-flight);
    ``in_place`` counts those run in place, without a message."""

    started: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)
    open: list[Execution] = field(default_factory=list)
    in_place: int = 0

    @property
    def total(self) -> int:
        return sum(self.started.values())


def read_executions(directory: Path) -> Executions:
    """Parse the per-process effect files (``S``/``E`` lines) written by the activities."""
    result = Executions()
    pending: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) < 5:
                raise AssertionError(f"{path}: malformed effect line {line!r}")
            mark, task_id, name, pid = parts[0], parts[1], parts[2], int(parts[3])
            if mark == "S":
                result.started[task_id] += 1
                result.in_place += parts[6:] == ["in-place"]
                pending[(task_id, pid)].append(
                    Execution(task_id, name, pid, float(parts[4]), float(parts[5]))
                )
            elif mark == "E":
                result.finished[task_id] += 1
                if pending[(task_id, pid)]:
                    pending[(task_id, pid)].pop(0)
            else:
                raise AssertionError(f"{path}: unknown effect line {line!r}")
    result.open = [e for executions in pending.values() for e in executions]
    return result


def split_task_id(task_id: str) -> tuple[str, int, int]:
    run_id, command_id, attempt = task_id.rsplit(":", 2)
    return run_id, int(command_id), int(attempt)


# -- the report ------------------------------------------------------------------------------
@dataclass
class Report:
    """What :func:`check_runs` found: the problems, and figures worth printing."""

    runs: dict[str, RunInfo] = field(default_factory=dict)
    histories: dict[str, list[Event]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Activity and compensation attempts journaled (``*_scheduled`` events).
    attempts: int = 0
    #: Executions recorded by the activities.
    executions: int = 0
    #: Journaled outcomes that an execution produced (completed, failed).
    executed_outcomes: int = 0
    #: Attempts that ran more than once (a message delivered twice).
    same_attempt_reruns: int = 0

    @property
    def duplicate_executions(self) -> int:
        """Executions beyond one per journaled outcome: killed attempts, timed-out attempts
        that still ran, and attempts run twice."""
        return self.executions - self.executed_outcomes

    def fail(self, run_id: str, message: str) -> None:
        self.problems.append(f"{run_id}: {message}")


def check_runs(url: str, run_ids: Iterable[str], executions: Executions | None = None) -> Report:
    """Check every run reachable from ``run_ids`` (their children and continuations, both
    ways) in the journal at ``url``; every problem found is in the report, none is raised."""
    journal = SqlJournal(url)
    engine = sa.create_engine(journal.url, pool_pre_ping=True)
    report = Report()
    try:
        _load(journal, engine, list(run_ids), report)
        pending = _pending_inbox(engine)
        leftovers = _leftovers(engine)
        for run_id, info in report.runs.items():
            history = report.histories[run_id]
            _check_one(report, info, history)
            _check_links(report, info, history)
            if info.status.terminal:
                if pending.get(run_id):
                    report.fail(run_id, f"ended {info.status} with {pending[run_id]} inbox rows")
                if leftovers.get(run_id):
                    report.fail(run_id, f"ended {info.status} leaving {leftovers[run_id]}")
            if executions is not None:
                _check_executions(report, run_id, history, executions)
        if executions is not None:
            _check_every_execution_belongs(report, executions)
    finally:
        engine.dispose()
        journal.close()
    return report


def _load(journal: SqlJournal, engine: sa.Engine, roots: list[str], report: Report) -> None:
    """Every run linked to ``roots`` (children, parents, continuations), breadth first."""
    frontier = list(dict.fromkeys(roots))
    while frontier:
        linked: list[str] = []
        for run_id in frontier:
            if run_id in report.runs:
                continue
            info = journal.describe(run_id)
            if info is None:
                report.fail(run_id, "no such run")
                continue
            history = journal.history(run_id)
            report.runs[run_id], report.histories[run_id] = info, history
            linked += [
                str(e.data.get("child_run_id"))
                for e in history
                if e.type is EventType.CHILD_STARTED
            ]
            linked += [
                r
                for r in (info.parent_run_id, info.continued_from_run_id, info.continued_to_run_id)
                if r
            ]
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT run_id FROM runs WHERE parent_run_id = ANY(:ids)"
                    " OR continued_from_run_id = ANY(:ids)"
                ),
                {"ids": frontier},
            )
            linked += [r.run_id for r in rows]
        frontier = [r for r in dict.fromkeys(linked) if r not in report.runs]


def _pending_inbox(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT run_id, count(*) AS n FROM inbox WHERE NOT absorbed GROUP BY run_id")
        )
        return {r.run_id: r.n for r in rows}


def _leftovers(engine: sa.Engine) -> dict[str, str]:
    """Per run: unfinished outbox tasks, pending timers, a lease still held."""
    found: dict[str, list[str]] = defaultdict(list)
    with engine.connect() as conn:
        for r in conn.execute(
            sa.text("SELECT run_id, count(*) AS n FROM tasks WHERE NOT finished GROUP BY run_id")
        ):
            found[r.run_id].append(f"{r.n} unfinished tasks")
        for r in conn.execute(sa.text("SELECT run_id, count(*) AS n FROM timers GROUP BY run_id")):
            found[r.run_id].append(f"{r.n} timers")
        for r in conn.execute(
            sa.text("SELECT run_id, lease_owner FROM runs WHERE lease_owner IS NOT NULL")
        ):
            found[r.run_id].append(f"the lease of {r.lease_owner}")
    return {run_id: ", ".join(what) for run_id, what in found.items()}


def _check_one(report: Report, info: RunInfo, history: list[Event]) -> None:
    run_id = info.run_id
    try:
        check_history(history)
    except AssertionError as exc:
        report.fail(run_id, f"history: {exc}")
        return
    last = history[-1]
    expected = _TERMINAL_EVENT.get(info.status)
    if expected is not None:
        if last.type is not expected:
            report.fail(run_id, f"status {info.status} but the last event is {last.type}")
        if info.closed_at is None:
            report.fail(run_id, f"status {info.status} without closed_at")
    elif last.type in _TERMINAL_EVENT.values():
        report.fail(run_id, f"status {info.status} after a {last.type} event")
    if info.status is RunStatus.COMPLETED and last.data.get("result") != info.result:
        report.fail(run_id, f"result {info.result!r} but run_completed has {last.data!r}")
    if info.status is RunStatus.FAILED and last.data.get("error") != info.error:
        report.fail(run_id, f"error {info.error!r} but run_failed has {last.data!r}")


def _check_links(report: Report, info: RunInfo, history: list[Event]) -> None:
    run_id, runs = info.run_id, report.runs
    # Parent to child: every child_started names a child that points back.
    started: dict[int | None, Event] = {}
    for event in history:
        if event.type is EventType.CHILD_STARTED:
            started[event.command_id] = event
            child_id = str(event.data.get("child_run_id"))
            child = runs.get(child_id)
            if child is None:
                report.fail(run_id, f"child_started names {child_id}, which does not exist")
                continue
            if (child.parent_run_id, child.parent_command_id) != (run_id, event.command_id):
                report.fail(
                    run_id,
                    f"child {child_id} points to ({child.parent_run_id}, "
                    f"{child.parent_command_id}), not to command {event.command_id}",
                )
            if child.workflow != event.data.get("workflow"):
                report.fail(run_id, f"child {child_id} is {child.workflow}, not as recorded")
        elif event.type in _CHILD_END:
            _check_child_end(report, run_id, event, started.get(event.command_id))
    # Child to parent: a run with a parent is a child_started of it (its chain's root).
    if info.parent_run_id is not None:
        parent = report.histories.get(info.parent_run_id)
        if parent is None:
            report.fail(run_id, f"parent {info.parent_run_id} does not exist")
        else:
            root = info.correlation_id or run_id
            if not any(
                e.type is EventType.CHILD_STARTED
                and e.command_id == info.parent_command_id
                and e.data.get("child_run_id") == root
                for e in parent
            ):
                report.fail(
                    run_id,
                    f"parent {info.parent_run_id} has no child_started (command "
                    f"{info.parent_command_id}) for chain {root}",
                )
    # Continue-as-new, both ways, and the run_continued event agrees.
    if info.status is RunStatus.CONTINUED or info.continued_to_run_id is not None:
        successor = runs.get(info.continued_to_run_id or "")
        if info.status is not RunStatus.CONTINUED or successor is None:
            report.fail(
                run_id,
                f"status {info.status}, continued_to_run_id {info.continued_to_run_id!r} "
                f"({'missing' if successor is None else 'present'})",
            )
        else:
            if successor.continued_from_run_id != run_id:
                report.fail(
                    run_id,
                    f"successor {successor.run_id} continues {successor.continued_from_run_id}",
                )
            if history and history[-1].data.get("next_run_id") != successor.run_id:
                report.fail(run_id, f"run_continued names {history[-1].data.get('next_run_id')}")
            same = ("correlation_id", "parent_run_id", "parent_command_id", "workflow")
            for name in same:
                if getattr(successor, name) != getattr(info, name):
                    report.fail(run_id, f"successor {successor.run_id} has another {name}")
    if info.continued_from_run_id is not None:
        before = runs.get(info.continued_from_run_id)
        if before is None or before.continued_to_run_id != run_id:
            report.fail(run_id, f"predecessor {info.continued_from_run_id} does not point here")


def _check_child_end(report: Report, run_id: str, event: Event, started: Event | None) -> None:
    if started is None:
        report.fail(run_id, f"{event.type} seq {event.seq} for a child never started")
        return
    ended_id = str(event.data.get("child_run_id"))
    ended = report.runs.get(ended_id)
    if ended is None:
        report.fail(run_id, f"{event.type} names {ended_id}, which does not exist")
        return
    if ended.correlation_id != started.data.get("child_run_id"):
        report.fail(run_id, f"{event.type} names {ended_id}, not of the chain started")
    if ended.status is not _CHILD_END[event.type]:
        report.fail(run_id, f"{event.type} but child {ended_id} is {ended.status}")
    if event.type is EventType.CHILD_COMPLETED and event.data.get("result") != ended.result:
        report.fail(run_id, f"child {ended_id} result {ended.result!r} recorded differently")


def _check_executions(
    report: Report, run_id: str, history: list[Event], executions: Executions
) -> None:
    scheduled: Counter[int | None] = Counter()
    attempts: set[tuple[int | None, int | None]] = set()
    executed_outcome: set[tuple[int | None, int | None]] = set()
    for event in history:
        if event.type in _SCHEDULED:
            scheduled[event.command_id] += 1
            attempts.add((event.command_id, event.attempt))
        elif event.type in _EXECUTED or (
            event.type is EventType.COMPENSATION_FAILED
            and (event.data.get("error") or {}).get("type") != "TimeoutError"
        ):
            executed_outcome.add((event.command_id, event.attempt))
    report.attempts += sum(scheduled.values())
    report.executed_outcomes += len(executed_outcome)
    ran: Counter[int] = Counter()
    for command_id, attempt in attempts:
        assert command_id is not None and attempt is not None
        task_id = f"{run_id}:{command_id}:{attempt}"
        started = executions.started.get(task_id, 0)
        ran[command_id] += started
        if started > 1:
            report.same_attempt_reruns += 1
        if (command_id, attempt) in executed_outcome and executions.finished.get(task_id, 0) < 1:
            report.fail(
                run_id,
                f"command {command_id} attempt {attempt} has an outcome journaled "
                "but no execution of it finished",
            )
    for command_id, count in sorted(ran.items()):
        if count > scheduled[command_id]:
            report.fail(
                run_id,
                f"command {command_id} executed {count} times, "
                f"but {scheduled[command_id]} attempts are journaled",
            )


def _check_every_execution_belongs(report: Report, executions: Executions) -> None:
    """Every recorded execution is of an attempt some history journaled."""
    journaled = {
        f"{run_id}:{e.command_id}:{e.attempt}"
        for run_id, history in report.histories.items()
        for e in history
        if e.type in _SCHEDULED
    }
    report.executions = executions.total
    for task_id, count in sorted(executions.started.items()):
        if task_id not in journaled:
            run_id = task_id.rsplit(":", 2)[0]
            report.fail(run_id, f"{count} executions of {task_id}, an attempt never journaled")


def describe_run(report: Report, run_id: str) -> str:
    """A run's summary and history, for a failure message."""
    info = report.runs.get(run_id)
    summary = (
        "unknown"
        if info is None
        else (
            f"{info.workflow} {info.status} result={info.result!r} error={info.error!r} "
            f"reason={info.reason!r} parent={info.parent_run_id} "
            f"from={info.continued_from_run_id} to={info.continued_to_run_id}"
        )
    )
    lines = [f"run {run_id}: {summary}"]
    for e in report.histories.get(run_id, []):
        detail: dict[str, Any] = {
            k: v for k, v in e.data.items() if k in ("result", "error", "name", "child_run_id")
        }
        lines.append(f"  {e.seq:>3} {e.type.value:<22} cmd={e.command_id} att={e.attempt} {detail}")
    return "\n".join(lines)
