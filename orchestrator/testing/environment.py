"""``WorkflowEnvironment``: workflows run in the test's own process, with time that skips.

The environment is production's runtime with its servers taken away, not a second engine:
the in-memory journal (same contract as Postgres), the same :class:`Driver` that a replay
task runs, the same :class:`Dispatcher` passes (timers, activity timeouts, delayed retries),
and the same :class:`Client` for ``start``, ``signal`` and ``cancel``. Only the broker is
replaced: what would be published is queued and run right here
(:mod:`orchestrator.testing.inprocess`), and every clock is one virtual clock.

Time stands still while there is work to do now. :meth:`WorkflowEnvironment.result` skips
it: when nothing can happen at the current time (every run waits on a timer, a delayed
retry, a signal or a child), the clock jumps to the next timer or retry. Before that,
:meth:`WorkflowEnvironment.advance` moves it by hand, firing what comes due on the way, as
Temporal's time-skipping environment does with ``sleep``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from orchestrator.celery import prune
from orchestrator.client import queries
from orchestrator.client.runs import Client
from orchestrator.journal import pruning
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.model.errors import NotPublished
from orchestrator.model.events import Event, RunInfo
from orchestrator.model.retry import Seconds, to_seconds
from orchestrator.runtime.dispatcher import Dispatcher
from orchestrator.runtime.driver import Driver
from orchestrator.testing.inprocess import Activity, ActivityRunner, QueuePublisher

if TYPE_CHECKING:
    from orchestrator.client.facade import Orchestrator

#: The owner named in the leases this environment takes.
OWNER = "workflow-environment"


class VirtualClock:
    """The one clock of an environment: stands still until moved, never goes back.

    It keeps whole microseconds, as a history's event times do: a step decided at a time
    read back from an event (``ctx.now()``) is then due at that very time, not half a
    microsecond after a clock that will never move on its own.
    """

    def __init__(self, start: float) -> None:
        self._micros = 0
        self.move_to(start)

    def __call__(self) -> float:
        return self._micros / 1_000_000

    def move_to(self, when: float) -> None:
        """Set the time to ``when``, or just after it (a time already past is ignored)."""
        micros = math.ceil(when * 1_000_000)
        while micros / 1_000_000 < when:
            micros += 1
        self._micros = max(self._micros, micros)


class WorkflowEnvironment:
    """Runs ``orc``'s workflows in this process, activities included, with no broker,
    database or worker.

    ``activities`` replaces tasks by name (``{"charge": fake}``); the others run as the
    app's own task functions, but for the built-in ``continuum.prune``, which prunes this
    environment's journal rather than the orchestrator's. ``start_time`` (an aware datetime)
    sets the virtual clock (default: now). Use it as a context manager; it is closed on exit.
    One thread at a time.
    """

    def __init__(
        self,
        orc: Orchestrator,
        activities: Mapping[str, Activity] | None = None,
        *,
        start_time: datetime | None = None,
    ) -> None:
        replacements = _replacements(orc, activities or {})
        if start_time is not None and start_time.utcoffset() is None:
            raise ValueError(
                f"start_time must be an aware datetime (in UTC, say), not {start_time!r}"
            )
        self.orc = orc
        self.clock = VirtualClock(time.time() if start_time is None else start_time.timestamp())
        self.settings = dataclasses.replace(orc.settings, eager_start=True)
        self.journal = InMemoryJournal(clock=self.clock)
        self.publisher = QueuePublisher()
        replacements = {prune.TASK: _pruning(self.journal), **replacements}
        self.driver = Driver(
            self.journal, orc.registry, self.publisher, self.settings, owner=OWNER, clock=self.clock
        )
        self.dispatcher = Dispatcher(
            self.journal, self.publisher, self.settings, clock=self.clock, wait=lambda _: None
        )
        self.client = Client(
            self.journal, orc.registry, self.publisher, self.settings, driver=self.driver
        )
        self.activities = ActivityRunner(
            self.journal,
            self.driver,
            self.publisher,
            self.clock,
            orc.app.tasks,
            replacements,
            self.settings.max_payload_bytes,
        )
        self._closed = False
        self._draining = False
        self._registered_at = 0.0
        self._register()

    # -- the context manager ----------------------------------------------------------------
    def __enter__(self) -> WorkflowEnvironment:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop every run; the environment can no longer be used."""
        self._closed = True
        self.journal.close()

    # -- the client's calls -----------------------------------------------------------------
    def start(
        self, workflow: Any, *args: Any, run_id: str | None = None, version: str | None = None
    ) -> str:
        """Start a run (idempotent by ``run_id``) and run it until it waits; its run id."""
        started: str = self._call(
            lambda: self.client.start(workflow, *args, run_id=run_id, version=version)
        )
        return started

    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send signal ``name`` to a run (its chain's live tip) and run what it wakes."""
        self._call(lambda: self.client.signal(run_id, name, payload))

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        """Cancel a run (its chain's live tip) and run its cancellation (compensations,
        children) as far as it goes without time passing."""
        self._call(lambda: self.client.cancel(run_id, reason))

    def result(self, run_id: str, timeout: Seconds | None = None) -> Any:
        """Run until ``run_id`` (followed along its continue-as-new chain) ends, skipping
        time, and return its result; raises ``WorkflowFailed`` or ``Cancelled`` as
        ``orc.result`` does. ``timeout`` is in virtual seconds: ``TimeoutError`` when the run
        is still open that much later, or at once when nothing is left that could end it
        (it waits for a signal, say, and no timer is set)."""
        self._check_open()
        if self._draining:
            raise RuntimeError("an activity cannot wait for a run's result in the test kit")
        limit = None if timeout is None else self.clock() + _positive(timeout, "timeout")
        self._drain()
        while not self._ended(run_id):
            wakeup = self._next_wakeup()
            if wakeup is None or (limit is not None and wakeup > limit):
                if limit is not None:
                    self._move_to(limit)
                raise TimeoutError(self._stuck(run_id, timeout))
            self._move_to(wakeup)
        return self.client.result(run_id, timeout=0)

    def describe(self, run_id: str) -> RunInfo:
        """A run's summary (its chain's live tip), as ``orc.describe`` gives it."""
        self._check_open()
        return self.client.describe(run_id)

    def history(self, run_id: str) -> list[Event]:
        """A run's events (its chain's live tip), as ``orc.history`` gives them."""
        self._check_open()
        return self.client.history(run_id)

    def query(self, run_id: str, name: str, timeout: Seconds | None = None) -> Any:
        """The latest value the run (its chain) published under ``name`` (``ctx.publish``),
        as ``orc.query`` gives it. ``timeout`` is in virtual seconds: time skips ahead, timer
        by timer, until a first value is published. ``NotPublished`` (a ``LookupError``) when
        there is none by then, or at once when the run ended or nothing could publish one."""
        self._check_open()
        limit = None if timeout is None else self.clock() + _positive(timeout, "timeout")
        self._drain()
        while True:
            try:
                return queries.query(self.client, run_id, name)
            except NotPublished:
                wakeup = self._next_wakeup()
                if limit is None or self._ended(run_id) or wakeup is None or wakeup > limit:
                    if limit is not None and not self._ended(run_id):
                        self._move_to(limit)
                    raise
                self._move_to(wakeup)

    # -- time -------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The virtual time (what ``ctx.now()`` gives a workflow stepped now)."""
        return datetime.fromtimestamp(self.clock(), UTC)

    def advance(self, seconds: Seconds) -> None:
        """Move the clock ``seconds`` forward, firing timers and retries as they come due and
        running what they wake. Called from an activity (to make it take that long), it only
        moves the clock: an activity that outlives its timeout times out."""
        self._check_open()
        target = self.clock() + _positive(seconds, "seconds", zero=True)
        if self._draining:
            self.clock.move_to(target)
            return
        self._drain()
        while (wakeup := self._next_wakeup()) is not None and wakeup <= target:
            self._move_to(wakeup)
        self._move_to(target)

    # -- running ----------------------------------------------------------------------------
    def _call(self, action: Callable[[], Any]) -> Any:
        """Do what the client does, then run what it made runnable. From inside an activity
        (one that starts or signals a run, say), what it made runnable runs once the
        activity returns, as the environment carries on."""
        self._check_open()
        value = action()
        if not self._draining:
            self._drain()
        return value

    def _next_wakeup(self) -> float | None:
        """When the next timer fires or delayed task comes due (``None``: nothing is set).
        Called after a drain, so it lies ahead; were it not, jumping would never end."""
        wakeup = self.journal.next_wakeup()
        if wakeup is not None and wakeup <= self.clock():
            raise RuntimeError(f"work due at {self.clock()} was left undone by the environment")
        return wakeup

    def _move_to(self, when: float) -> None:
        """Jump the clock and run what comes due at the new time."""
        self.clock.move_to(when)
        self._drain()

    def _drain(self) -> None:
        """Run everything that can happen at the current time: replays, then activities,
        then a dispatcher pass (due timers, timed-out and delayed tasks), until none is left."""
        self._draining = True
        try:
            while True:
                if self.publisher.replays:
                    self.driver.advance(self.publisher.replays.popleft().run_id)
                elif self.publisher.tasks:
                    self.activities.run(self.publisher.tasks.popleft())
                else:
                    if self._registered_at != self.clock():
                        self._register()
                    if not self.dispatcher.tick():
                        return
        finally:
            self._draining = False

    def _register(self) -> None:
        """Say this process has every loaded workflow version, at the current (virtual)
        time: the dispatcher only hands out runs of versions a live node has."""
        versions = [(n, v) for n, vs in self.orc.registry.versions().items() for v in vs]
        self.journal.register_node(OWNER, versions, node_ttl=self.settings.node_ttl)
        self._registered_at = self.clock()

    def _ended(self, run_id: str) -> bool:
        return self.client.describe(run_id).status.terminal

    def _stuck(self, run_id: str, timeout: Seconds | None) -> str:
        info = self.client.describe(run_id)
        waiting = f" ({info.reason})" if info.reason else ""
        if timeout is not None:
            return f"run {run_id} did not finish within {timeout} seconds{waiting}"
        return (
            f"run {run_id} can never finish: it is {info.status.value}{waiting}, and no timer "
            "or retry is due that could wake it"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this WorkflowEnvironment is closed")


def _replacements(orc: Orchestrator, activities: Mapping[str, Activity]) -> dict[str, Activity]:
    """``activities`` checked: callables by task name, either the full name
    (``"tasks.charge"``, also that of a task another service runs) or the last part of the
    name of one of the app's tasks (``"charge"``)."""
    short = {name.rpartition(".")[2] for name in orc.app.tasks}
    for name, fn in activities.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"activities must map task names to callables; {name!r} maps to {fn!r}")
        if "." not in name and name not in short:
            raise ValueError(
                f"activities names {name!r}, which is not a task of app {orc.app.main!r}; "
                "name a task by its full name to replace one the app does not have"
            )
    return dict(activities)


def _pruning(journal: InMemoryJournal) -> Activity:
    """The ``continuum.prune`` task on ``journal`` (the app's own prunes the orchestrator's)."""

    def prune_here(closed_before: float, workflow: str | None = None) -> int:
        return pruning.prune_all(journal, closed_before=closed_before, workflow=workflow)

    return prune_here


def _positive(value: Seconds, what: str, *, zero: bool = False) -> float:
    seconds = to_seconds(value, what)
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return seconds
