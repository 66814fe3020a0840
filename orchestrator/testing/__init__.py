"""The test kit: workflows run in the test's own process, and recorded histories replayed.

:class:`WorkflowEnvironment` runs ``orc``'s workflows on the in-memory journal through the
production driver and dispatcher, activities called in-process (or replaced by name), with a
virtual clock that skips to the next timer. :func:`replay` checks a history recorded in
production against the workflow code loaded now (what ``continuum -A app replay`` does in
CI). The pytest plugin (:mod:`orchestrator.testing.pytest_plugin`) offers the
``workflow_environment`` fixture.
"""

from orchestrator.testing.environment import VirtualClock, WorkflowEnvironment
from orchestrator.testing.replayer import replay

__all__ = ["VirtualClock", "WorkflowEnvironment", "replay"]
