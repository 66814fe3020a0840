"""Reading runs with nothing but the journal's URL: no Celery app, no workflow code.

An operator's machine can list runs, show one and wait for its result without the workers'
code (``continuum runs list --journal-url ...``): reads need only the journal. A reader
cannot start, signal or cancel a run, which needs the app's broker.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.client.runs import Client
from orchestrator.engine.registry import Registry
from orchestrator.journal.protocol import RunRef
from orchestrator.model.errors import ConfigurationError
from orchestrator.model.records import OutboxTask
from orchestrator.model.settings import Settings


class _NoBroker:
    """The publisher of a reader: it has no broker, so anything that would publish is refused."""

    def publish_tasks(self, tasks: Sequence[OutboxTask]) -> None:
        raise ConfigurationError("reading runs without the app: name the app (-A) to change runs")

    def publish_replays(self, runs: Sequence[RunRef]) -> None:
        raise ConfigurationError("reading runs without the app: name the app (-A) to change runs")


def open_reader(journal_url: str) -> Client:
    """A client that reads runs (describe, history, list, result) from ``journal_url``."""
    from orchestrator.journal.sql.journal import SqlJournal

    settings = Settings(journal_url=journal_url)
    journal = SqlJournal(journal_url, stall_timeout=settings.stall_timeout)
    return Client(journal, Registry(), _NoBroker(), settings)
