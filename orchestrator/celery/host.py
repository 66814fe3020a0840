"""What the Celery integration needs of the orchestrator it serves.

The integration sits below :class:`~orchestrator.Orchestrator` in the layers, so it names
the parts it uses as a protocol rather than importing the class that provides them.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.celery.publisher import CeleryPublisher
from orchestrator.celery.start_marks import LateStartMarks
from orchestrator.engine.registry import Registry
from orchestrator.journal.protocol import Journal
from orchestrator.model.settings import Settings
from orchestrator.runtime.driver import Driver


class Host(Protocol):
    """An orchestrator, as the worker side of the integration sees it."""

    @property
    def registry(self) -> Registry: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def publisher(self) -> CeleryPublisher: ...
    @property
    def start_marks(self) -> LateStartMarks: ...
    @property
    def driver(self) -> Driver: ...
