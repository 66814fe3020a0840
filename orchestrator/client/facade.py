"""``Orchestrator``: the two lines a Celery app adds, and the client calls in one place."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from celery import Celery

from orchestrator.celery.install import install
from orchestrator.celery.publisher import CeleryPublisher
from orchestrator.celery.serializers import check_serializers
from orchestrator.celery.start_marks import LateStartMarks
from orchestrator.client.runs import Client
from orchestrator.engine.registry import Registry
from orchestrator.journal.protocol import Journal
from orchestrator.model.events import Event, RunInfo
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
    def workflow(self, name: str | None = None, version: str = "1") -> Callable[[F], F]:
        """Register an ``async def`` workflow; ``name`` defaults to ``module.qualname``."""

        def register(fn: F) -> F:
            workflow_name = name or f"{fn.__module__}.{fn.__qualname__}"
            definition = self.registry.add(fn, name=workflow_name, version=version)
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
        connection: Any = None,
    ) -> RunHandle:
        """Start a run (idempotent by ``run_id``); returns its handle. With ``connection``,
        in the caller's open transaction on it, dispatched once that commits."""
        started = self.client.start(
            workflow, *args, run_id=run_id, version=version, connection=connection
        )
        return RunHandle(started, self)

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


_REGISTERED: dict[int, Orchestrator] = {}


def of(app: Celery) -> Orchestrator:
    """The orchestrator installed on ``app`` (for the CLI)."""
    try:
        return _REGISTERED[id(app)]
    except KeyError:
        raise LookupError(
            f"Celery app {app.main!r} has no Orchestrator: add `orc = Orchestrator(app)`"
        ) from None
