"""``Orchestrator``: the two lines a Celery app adds, and the client calls in one place."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, TypeVar

from celery import Celery

from orchestrator.celery import canvas, prune
from orchestrator.celery.install import install
from orchestrator.celery.publisher import CeleryPublisher
from orchestrator.celery.serializers import check_serializers
from orchestrator.celery.start_marks import LateStartMarks
from orchestrator.client import queries, signal_start
from orchestrator.client.retry import retry as retry_run
from orchestrator.client.runs import Client
from orchestrator.client.schedules import Schedules
from orchestrator.engine.registry import Registry
from orchestrator.journal.protocol import Journal
from orchestrator.model import limits
from orchestrator.model.events import Event, RunInfo
from orchestrator.model.retry import to_seconds
from orchestrator.model.schedules import ScheduleInfo
from orchestrator.model.settings import Settings
from orchestrator.runtime.dispatcher import Dispatcher
from orchestrator.runtime.driver import Driver

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RunHandle:
    """A started run: its id, and shortcuts to wait for it and read it."""

    run_id: str
    orchestrator: Orchestrator

    def result(self, timeout: float | None = None) -> Any:
        """The run's result (see :meth:`Orchestrator.result`)."""
        return self.orchestrator.result(self.run_id, timeout=timeout)

    def describe(self) -> RunInfo:
        """The run's summary."""
        return self.orchestrator.describe(self.run_id)


class Orchestrator:
    """Turns a Celery app into a durable workflow engine.

    The journal URL is the argument, else ``app.conf.orchestrator_journal_url``, else the
    ``ORCHESTRATOR_JOURNAL_URL`` environment variable, else a SQLite file (the dev default).
    Settings are read when first needed, so the app may be configured after this is made.
    """

    def __init__(
        self,
        app: Celery,
        journal_url: str | None = None,
        *,
        journal: Journal | None = None,
        **settings: Any,
    ) -> None:
        self.app = app
        self.registry = Registry()
        self._journal_url = journal_url
        self._journal = journal
        self._overrides = settings
        self._lock = threading.Lock()
        install(app, self)
        canvas.install(app, self)
        prune.install(app, self)
        _REGISTERED[id(app)] = self

    def configure(self, journal_url: str | None = None, **settings: Any) -> None:
        """Change settings before first use (e.g. ``continuum dev`` points at its own journal)."""
        if "settings" in self.__dict__ or self._journal is not None:
            raise RuntimeError("the orchestrator is already in use; configure it before that")
        if journal_url is not None:
            self._journal_url = journal_url
        self._overrides = {**self._overrides, **settings}

    @cached_property
    def settings(self) -> Settings:
        """Settings, resolved on first use."""
        check_serializers(self.app)
        return Settings.resolve(self.app.conf, self._journal_url, **self._overrides)

    @property
    def journal(self) -> Journal:
        """The journal (created on first use, one per process)."""
        if self._journal is None:
            with self._lock:
                if self._journal is None:
                    from orchestrator.journal.sql.journal import SqlJournal

                    self._journal = SqlJournal(
                        self.settings.journal_url, stall_timeout=self.settings.stall_timeout
                    )
        return self._journal

    @cached_property
    def publisher(self) -> CeleryPublisher:
        """Publishes activity tasks and replays on the app's broker."""
        return CeleryPublisher(self.app, self.settings)

    @cached_property
    def start_marks(self) -> LateStartMarks:
        """Activity start marks this process owes (see :mod:`~orchestrator.celery.start_marks`)."""
        settings = self.settings
        return LateStartMarks(
            self.journal, settings.mark_start_after, renew_every=settings.republish_after / 2
        )

    @cached_property
    def driver(self) -> Driver:
        """Advances runs in this process (the replay task's body)."""
        return Driver(self.journal, self.registry, self.publisher, self.settings, owner=self._owner)

    @property
    def _owner(self) -> str:
        """This process's name in leases."""
        return f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    @cached_property
    def client(self) -> Client:
        """The client API over this orchestrator's journal and broker."""
        driver = None
        if self.settings.eager_start:
            # A starter does not take the run's later steps: it keeps no replayers.
            driver = Driver(
                self.journal,
                self.registry,
                self.publisher,
                dataclasses.replace(self.settings, cache_size=0),
                owner=f"{self._owner}:start",
            )
        return Client(self.journal, self.registry, self.publisher, self.settings, driver=driver)

    def dispatcher(self) -> Dispatcher:
        """A dispatcher over this orchestrator's journal and broker."""
        return Dispatcher(self.journal, self.publisher, self.settings)

    # -- authoring --------------------------------------------------------------------------
    def workflow(
        self,
        name: str | None = None,
        version: str = "1",
        *,
        concurrency: int | None = None,
        concurrency_key: Callable[..., str] | None = None,
    ) -> Callable[[F], F]:
        """Register an ``async def`` workflow; ``name`` defaults to ``module.qualname``.

        With ``concurrency=N``, at most N runs of it are open at once (per value of
        ``concurrency_key(*args)``, a string, when given); the others wait ``queued`` and
        are admitted in start order as those end."""

        def register(fn: F) -> F:
            workflow_name = name or f"{fn.__module__}.{fn.__qualname__}"
            limit = limits.of(workflow_name, concurrency, concurrency_key)
            definition = self.registry.add(fn, name=workflow_name, version=version, limit=limit)
            fn.__workflow__ = definition  # type: ignore[attr-defined]
            return fn

        return register

    # -- client -----------------------------------------------------------------------------
    def start(
        self,
        workflow: Any,
        *args: Any,
        run_id: str | None = None,
        version: str | None = None,
        timeout: float | None = None,
        connection: Any = None,
    ) -> RunHandle:
        """Start a run (idempotent by ``run_id``); returns its handle. With ``timeout``
        (seconds), the run and its continuations fail with ``WorkflowTimeout`` if still open
        that long after the start (its children are cancelled). With ``connection``, the run
        is written in the caller's open transaction on it, and dispatched once that commits."""
        started = self.client.start(
            workflow, *args, run_id=run_id, version=version, timeout=timeout, connection=connection
        )
        return RunHandle(started, self)

    def start_canvas(
        self, signature: Any, run_id: str | None = None, *, timeout: float | None = None
    ) -> RunHandle:
        """Run a Celery canvas (a signature, chain, group or chord, nested at will) durably,
        with Celery's semantics; ``result`` returns what ``AsyncResult.get()`` would.

        ``timeout`` (seconds) is each task's start-to-close limit: an attempt with no outcome
        by then (its worker died) is made again. A canvas with a task the app does not know,
        an argument JSON cannot carry or an option a durable run cannot honour is refused
        here, before anything is written.
        """
        if timeout is not None:
            timeout = to_seconds(timeout, "start_canvas timeout")
        walked = canvas.prepare(
            self.app, signature, max_payload_bytes=self.settings.max_payload_bytes
        )
        return self.start(canvas.WORKFLOW, walked, {"timeout": timeout}, run_id=run_id)

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait for a run's result; raises ``WorkflowFailed``, ``Cancelled`` or ``TimeoutError``."""
        return self.client.result(run_id, timeout)

    def signal(
        self, run_id: str, name: str, payload: Any = None, *, signal_id: str | None = None
    ) -> None:
        """Send signal ``name`` with a JSON ``payload`` to a run (its chain's live tip)."""
        self.client.signal(run_id, name, payload, signal_id=signal_id)

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        """Cancel a run (its chain's live tip); its running children are cancelled too."""
        self.client.cancel(run_id, reason)

    def retry(self, run_id: str) -> RunHandle:
        """Retry a failed run (its chain's live tip) from its failure: completed activities
        are not run again, the failed step runs again under the code now deployed. The
        original stays ``failed``; its id reaches the retry from now on."""
        return RunHandle(retry_run(self.client, run_id), self)

    def describe(self, run_id: str) -> RunInfo:
        """A run's summary."""
        return self.client.describe(run_id)

    def history(self, run_id: str) -> list[Event]:
        """A run's events."""
        return self.client.history(run_id)

    def list_runs(
        self, status: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        """Runs, newest first."""
        return self.client.list_runs(status=status, workflow=workflow, limit=limit)

    # -- schedules --------------------------------------------------------------------------
    @cached_property
    def schedules(self) -> Schedules:
        """The schedules API over this orchestrator's journal (see the methods below)."""
        return Schedules(self.client)

    def schedule(
        self,
        schedule_id: str,
        workflow: Any,
        *args: Any,
        cron: str | None = None,
        every: float | timedelta | None = None,
        overlap: str = "skip",
        catchup_window: float = 60,
        timezone: str = "UTC",
        version: str | None = None,
    ) -> ScheduleInfo:
        """Create or update (idempotent by id) a schedule that starts ``workflow(*args)``
        at every slot of ``cron`` (five fields, in ``timezone``) or ``every`` (seconds or a
        timedelta): exactly one of them. The dispatchers start one run per slot, however
        many run. ``overlap="skip"`` starts none while the previous run is open, ``"allow"``
        does; after downtime, the latest missed slot is started if it is at most
        ``catchup_window`` seconds old. Bad input is refused here, before anything is
        written."""
        return self.schedules.schedule(
            schedule_id,
            workflow,
            *args,
            cron=cron,
            every=every,
            overlap=overlap,
            catchup_window=catchup_window,
            timezone=timezone,
            version=version,
        )

    def pause_schedule(self, schedule_id: str) -> ScheduleInfo:
        """Stop firing a schedule until it is resumed."""
        return self.schedules.pause(schedule_id)

    def resume_schedule(self, schedule_id: str) -> ScheduleInfo:
        """Fire a paused schedule again, from its first slot after now."""
        return self.schedules.resume(schedule_id)

    def trigger_schedule(self, schedule_id: str) -> RunHandle:
        """Start a schedule's run now, whatever its slots, pause or overlap policy."""
        return RunHandle(self.schedules.trigger(schedule_id), self)

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule (the runs it started stay)."""
        self.schedules.delete(schedule_id)

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule, by id."""
        return self.schedules.list()

    def query(self, run_id: str, name: str, timeout: float | None = None) -> Any:
        """The value the run last published under ``name`` (``ctx.publish``), waiting up to
        ``timeout`` seconds for a first one; ``LookupError`` (``NotPublished``) if none."""
        return queries.query(self.client, run_id, name, timeout)

    def signal_with_start(
        self,
        workflow: Any,
        *args: Any,
        run_id: str,
        signal: str,
        payload: Any = None,
        version: str | None = None,
        timeout: float | None = None,
        signal_id: str | None = None,
    ) -> RunHandle:
        """Start ``workflow(*args)`` as ``run_id`` unless that run exists, and deliver signal
        ``signal`` to it, as one step; returns the run's handle."""
        started = signal_start.signal_with_start(
            self.client,
            workflow,
            *args,
            run_id=run_id,
            signal=signal,
            payload=payload,
            version=version,
            timeout=timeout,
            signal_id=signal_id,
        )
        return RunHandle(started, self)


_REGISTERED: dict[int, Orchestrator] = {}


def of(app: Celery) -> Orchestrator:
    """The orchestrator installed on ``app`` (for the CLI)."""
    try:
        return _REGISTERED[id(app)]
    except KeyError:
        raise LookupError(
            f"Celery app {app.main!r} has no Orchestrator: add `orc = Orchestrator(app)`"
        ) from None
