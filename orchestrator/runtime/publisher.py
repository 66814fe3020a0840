"""The publisher interface: how the engine and the dispatcher hand work to a broker.

Only the Celery integration implements it for real; tests use :class:`RecordingPublisher`.
Keeping it this small is what lets the dispatcher and the replay driver run without Celery.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from orchestrator.journal.protocol import RunRef
from orchestrator.model.records import OutboxTask


class Publisher(Protocol):
    """Sends activity tasks and replay requests."""

    def publish_tasks(self, tasks: Sequence[OutboxTask]) -> None:
        """Publish activity (or compensation) task messages."""
        ...

    def publish_replays(self, runs: Sequence[RunRef]) -> None:
        """Publish a replay request per run."""
        ...


class RecordingPublisher:
    """Keeps what was published, for tests (thread-safe)."""

    def __init__(self) -> None:
        self.tasks: list[OutboxTask] = []
        self.replays: list[RunRef] = []
        self._lock = threading.Lock()

    def publish_tasks(self, tasks: Sequence[OutboxTask]) -> None:
        with self._lock:
            self.tasks.extend(tasks)

    def publish_replays(self, runs: Sequence[RunRef]) -> None:
        with self._lock:
            self.replays.extend(runs)

    def take(self) -> tuple[list[OutboxTask], list[RunRef]]:
        """Everything published since the last take."""
        with self._lock:
            tasks, replays = self.tasks, self.replays
            self.tasks, self.replays = [], []
        return tasks, replays
