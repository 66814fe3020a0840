"""Drive a workflow through the replay engine against an in-memory history.

A :class:`Harness` holds one run's recorded history (a list of :class:`Event`, beginning with
``run_started``). :meth:`Harness.step` replays that history into a replayer, decides on the
given inbox items and appends the decision's events to the history, the way the replay task
commits a batch. By default every step replays the whole history into a fresh replayer;
with ``cached=True`` one replayer is kept and fed only what is new, as a worker's cache does.

The inbox helpers build the items the journal would deliver: ``failed``, ``timed_out``,
``timer_fired`` and ``cancel_requested`` (``completed`` is in :mod:`tests.builders`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from orchestrator.engine.context import WorkflowInfo
from orchestrator.engine.replay import Decision, Replayer, WorkflowFn
from orchestrator.journal.inbox import cancel_item, outcome_key, timer_key
from orchestrator.model.events import Event, EventType, NewEvent
from orchestrator.model.records import InboxItem

START = 1_700_000_000.0


def at(seconds: float) -> datetime:
    """Epoch seconds as the aware datetime an :class:`Event` carries."""
    return datetime.fromtimestamp(seconds, UTC)


class Harness:
    """One run of ``fn(ctx, *args)`` with its history, stepped by hand.

    ``now`` is the time of the next step unless :meth:`step` is given one; each step without
    an explicit time advances it by one second.
    """

    def __init__(
        self,
        fn: WorkflowFn,
        *args: Any,
        run_id: str = "run-1",
        start: float = START,
        cached: bool = False,
        **replayer_options: Any,
    ) -> None:
        self.fn = fn
        self.run_id = run_id
        self.cached = cached
        self.replayer_options = replayer_options
        self.info = WorkflowInfo(
            run_id=run_id,
            workflow=getattr(fn, "__name__", "workflow"),
            version="1",
            parent_run_id=None,
            correlation_id=run_id,
            continued_from_run_id=None,
        )
        self.now = start
        self.history: list[Event] = [
            Event(
                run_id=run_id,
                seq=1,
                type=EventType.RUN_STARTED,
                command_id=None,
                attempt=None,
                data={"args": list(args)},
                at=at(start),
            )
        ]
        self.decisions: list[Decision] = []
        self.cached_replayer: Replayer | None = None

    # -- replaying ----------------------------------------------------------------------------
    def new_replayer(self, fn: WorkflowFn | None = None) -> Replayer:
        """A fresh replayer for this run (optionally of other workflow code)."""
        return Replayer(fn or self.fn, self.info, **self.replayer_options)

    def replay(self, fn: WorkflowFn | None = None) -> Replayer:
        """A fresh replayer fed the whole history (raises what ``feed`` raises)."""
        replayer = self.new_replayer(fn)
        replayer.feed(self.history)
        return replayer

    def step(self, inbox: Iterable[InboxItem] = (), now: float | None = None) -> Decision:
        """Replay, decide on ``inbox`` at ``now`` and append the decision's events.

        Nothing is appended when replay raises (a nondeterministic history stays as it was).
        """
        if now is None:
            self.now += 1
        else:
            self.now = now
        replayer = self.cached_replayer if self.cached else None
        if replayer is None:
            replayer = self.new_replayer()
        try:
            replayer.feed(self.history)
            decision = replayer.decide(list(inbox), self.now)
        except BaseException:
            self.cached_replayer = None
            raise
        self.commit(decision.events)
        if self.cached:
            replayer.last_seq = self.history[-1].seq
            self.cached_replayer = replayer
        self.decisions.append(decision)
        return decision

    def commit(self, events: Iterable[NewEvent]) -> None:
        """Append ``events`` as the journal would: next sequence numbers, their own times."""
        for event in events:
            stamp = self.now if event.at is None else event.at
            self.history.append(
                Event(
                    run_id=self.run_id,
                    seq=len(self.history) + 1,
                    type=event.type,
                    command_id=event.command_id,
                    attempt=event.attempt,
                    data=event.data,
                    at=at(stamp),
                )
            )

    def copy(self, *, cached: bool = False) -> Harness:
        """Another harness of the same run and code, holding a copy of this history."""
        twin = Harness(self.fn, run_id=self.run_id, cached=cached, **self.replayer_options)
        twin.info = self.info
        twin.now = self.now
        twin.history = list(self.history)
        return twin

    # -- reading the history ------------------------------------------------------------------
    def command(self, task: str, index: int = 0) -> int:
        """The command id of the ``index``-th activity of ``task`` scheduled (retries aside)."""
        ids = list(dict.fromkeys(cid for cid, name, _ in self.scheduled() if name == task))
        cid = ids[index]
        assert cid is not None
        return cid

    def types(self) -> list[str]:
        """The history's event types, in order."""
        return [e.type.value for e in self.history]

    def events(self, kind: EventType) -> list[Event]:
        """The recorded events of one type, in order."""
        return [e for e in self.history if e.type == kind]

    def scheduled(self) -> list[tuple[int | None, str, int | None]]:
        """``(command_id, task, attempt)`` of every activity attempt scheduled, in order."""
        return [
            (e.command_id, e.data["task"], e.attempt)
            for e in self.history
            if e.type == EventType.ACTIVITY_SCHEDULED
        ]

    def terminal(self) -> Event | None:
        """The run's terminal event, if it has ended."""
        ends = {
            EventType.RUN_COMPLETED,
            EventType.RUN_FAILED,
            EventType.RUN_CANCELLED,
            EventType.RUN_CONTINUED,
        }
        return next((e for e in self.history if e.type in ends), None)


# -- inbox items ------------------------------------------------------------------------------
def failed(
    cmd: int, error_type: str = "ValueError", message: str = "boom", attempt: int = 1
) -> InboxItem:
    """An activity attempt that raised ``error_type(message)``."""
    return InboxItem(
        dedupe_key=outcome_key(cmd, attempt),
        type=EventType.ACTIVITY_FAILED,
        command_id=cmd,
        attempt=attempt,
        data={
            "error": {
                "type": error_type,
                "message": message,
                "traceback": f"Traceback (most recent call last):\n{error_type}: {message}\n",
            }
        },
    )


def timed_out(cmd: int, attempt: int = 1, task: str = "task", timeout: float = 30.0) -> InboxItem:
    """An activity attempt that ran past its start-to-close timeout."""
    return InboxItem(
        dedupe_key=outcome_key(cmd, attempt),
        type=EventType.ACTIVITY_TIMED_OUT,
        command_id=cmd,
        attempt=attempt,
        data={
            "error": {
                "type": "TimeoutError",
                "message": f"{task} attempt {attempt} did not finish within {timeout} seconds",
                "traceback": None,
            }
        },
    )


def timer_fired(cmd: int) -> InboxItem:
    """A durable timer that came due."""
    return InboxItem(dedupe_key=timer_key(cmd), type=EventType.TIMER_FIRED, command_id=cmd)


def cancel_requested(reason: str | None = None) -> InboxItem:
    """A request to cancel the run."""
    return cancel_item(reason)


# -- comparing decisions ----------------------------------------------------------------------
def summary(decision: Decision) -> dict[str, Any]:
    """Everything a decision would commit, as plain comparable values."""
    return {
        "events": [(e.type, e.command_id, e.attempt, e.data, e.at) for e in decision.events],
        "tasks": list(decision.tasks),
        "timers": list(decision.timers),
        "children": list(decision.children),
        "status": decision.status,
        "result": decision.result,
        "error": decision.error,
        "reason": decision.reason,
    }


def kinds(decision: Decision) -> list[tuple[str, int | None, int | None]]:
    """``(type, command_id, attempt)`` of each event a decision appends."""
    return [(e.type.value, e.command_id, e.attempt) for e in decision.events]
